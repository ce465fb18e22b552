// SPDX-License-Identifier: Apache-2.0
#include "runtime/comm/tcp_communicator.h"

#include <cstring>

namespace compressa {
namespace {

enum Op : uint64_t { kAllReduceSum = 1, kAllGather = 2, kBarrier = 3 };
/// The most bytes one rank sends in one collective (a sanity bound on what
/// a peer claims).
constexpr uint64_t kMaxMessage = uint64_t(1) << 34;

class TcpCommunicator final : public Communicator {
public:
  TcpCommunicator(TcpSocket hub, int rank, int size)
      : hub(std::move(hub)), me(rank), count(size) {}
  int rank() const override { return me; }
  int size() const override { return count; }
  const char *name() const override { return "tcp"; }

  Status allReduceSum(uint64_t in, uint64_t out, uint64_t n,
                      void *) override {
    return exchange(kAllReduceSum, in, n * 4, out, n * 4, "all-reduce");
  }
  Status allGather(uint64_t in, uint64_t out, uint64_t bytes,
                   void *) override {
    return exchange(kAllGather, in, bytes, out, bytes * count, "all-gather");
  }
  Status barrier() override {
    return exchange(kBarrier, 0, 0, 0, 0, "barrier");
  }
  void abort(const Status &) override { hub.shutdown(); }

private:
  Status exchange(uint64_t op, uint64_t in, uint64_t bytes, uint64_t out,
                  uint64_t outBytes, const char *what) {
    Status s = hub.sendU64(op, "the communicator hub");
    if (s.ok())
      s = hub.sendU64(bytes, "the communicator hub");
    if (s.ok() && bytes)
      s = hub.send(reinterpret_cast<const void *>(in), bytes,
                   "the communicator hub");
    uint64_t got = 0;
    if (s.ok()) {
      StatusOr<uint64_t> n = hub.recvU64("the communicator hub");
      s = n.status();
      got = n.ok() ? *n : 0;
    }
    if (s.ok() && got != outBytes)
      s = COMPRESSA_ERROR(DataLoss, "the hub answered %llu bytes, expected %llu",
                          (unsigned long long)got,
                          (unsigned long long)outBytes);
    if (s.ok() && outBytes)
      s = hub.recv(reinterpret_cast<void *>(out), outBytes,
                   "the communicator hub");
    if (!s.ok())
      return COMPRESSA_ERROR(Unavailable,
                             "tcp communicator, rank %d: %s abandoned: another "
                             "rank failed or left (%s)",
                             me, what, s.message().c_str());
    return okStatus();
  }

  TcpSocket hub;
  int me, count;
};

} // namespace

TcpHub::TcpHub(std::vector<TcpSocket> ranks)
    : sockets(std::move(ranks)), thread([this] { loop(); }) {}

TcpHub::~TcpHub() {
  for (TcpSocket &s : sockets)
    s.shutdown();
  thread.join();
}

void TcpHub::loop() {
  size_t n = sockets.size();
  std::vector<std::vector<uint8_t>> inputs(n);
  std::vector<uint8_t> result;
  auto fail = [&] {
    // One rank failed or left: every rank's next call fails.
    for (TcpSocket &s : sockets)
      s.shutdown();
  };
  for (;;) {
    uint64_t op = 0, bytes = 0;
    for (size_t r = 0; r < n; ++r) {
      StatusOr<uint64_t> o = sockets[r].recvU64("a rank");
      StatusOr<uint64_t> b =
          o.ok() ? sockets[r].recvU64("a rank") : StatusOr<uint64_t>(o.status());
      if (!b.ok() || *b > kMaxMessage || (r > 0 && (*o != op || *b != bytes)))
        return fail();
      op = *o;
      bytes = *b;
      inputs[r].resize(bytes);
      if (bytes && !sockets[r].recv(inputs[r].data(), bytes, "a rank").ok())
        return fail();
    }
    if (op == kAllReduceSum) {
      if (bytes % 4)
        return fail();
      result.assign(bytes, 0);
      float *sum = reinterpret_cast<float *>(result.data());
      std::vector<float> x(bytes / 4);
      for (size_t r = 0; r < n; ++r) {
        std::memcpy(x.data(), inputs[r].data(), bytes);
        for (size_t i = 0; i < x.size(); ++i)
          sum[i] += x[i];
      }
    } else if (op == kAllGather) {
      result.clear();
      for (size_t r = 0; r < n; ++r)
        result.insert(result.end(), inputs[r].begin(), inputs[r].end());
    } else if (op == kBarrier) {
      result.clear();
    } else {
      return fail();
    }
    for (size_t r = 0; r < n; ++r) {
      if (!sockets[r].sendU64(result.size(), "a rank").ok() ||
          (!result.empty() &&
           !sockets[r].send(result.data(), result.size(), "a rank").ok()))
        return fail();
    }
  }
}

std::unique_ptr<Communicator> createTcpCommunicator(TcpSocket hub, int rank,
                                                    int size) {
  return std::make_unique<TcpCommunicator>(std::move(hub), rank, size);
}

} // namespace compressa
