// SPDX-License-Identifier: Apache-2.0
// The in-process communicator: the ranks are threads that meet at a
// generation barrier; a collective publishes each rank's input address,
// then every rank reads all of them (host memory).

#include "runtime/comm/communicator.h"

#include <condition_variable>
#include <cstring>
#include <mutex>

namespace compressa {
namespace {

/// What the ranks of one group share.
struct Group {
  explicit Group(int ranks) : size(ranks), inputs(ranks, 0) {}

  /// Waits until all ranks arrived; false when the group was aborted.
  bool arrive() {
    std::unique_lock<std::mutex> lock(mu);
    if (aborted)
      return false;
    uint64_t generation = epoch;
    if (++arrived == size) {
      arrived = 0;
      ++epoch;
      cv.notify_all();
      return true;
    }
    cv.wait(lock, [&] { return epoch != generation || aborted; });
    return epoch != generation;
  }

  void abort(const Status &why) {
    std::lock_guard<std::mutex> lock(mu);
    if (!aborted)
      reason = why;
    aborted = true;
    cv.notify_all();
  }

  Status abortedStatus(const char *what) {
    std::lock_guard<std::mutex> lock(mu);
    return Status(StatusCode::Unavailable,
                  std::string("in-process communicator: ") + what +
                      " abandoned: another rank failed: " + reason.message());
  }

  const int size;
  std::vector<uint64_t> inputs;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t epoch = 0;
  bool aborted = false;
  Status reason;
};

class InProcessCommunicator final : public Communicator {
public:
  InProcessCommunicator(std::shared_ptr<Group> group, int rank)
      : group(std::move(group)), me(rank) {}

  int rank() const override { return me; }
  int size() const override { return group->size; }
  const char *name() const override { return "in-process"; }

  Status allReduceSum(uint64_t in, uint64_t out, uint64_t count,
                      void *) override {
    // Publish, read everyone's input into a private sum (in rank order),
    // wait until all have read (out may alias an input), then write.
    group->inputs[me] = in;
    if (!group->arrive())
      return group->abortedStatus("all-reduce");
    sum.assign(count, 0.0f);
    for (int r = 0; r < group->size; ++r) {
      const float *src = reinterpret_cast<const float *>(group->inputs[r]);
      for (uint64_t i = 0; i < count; ++i)
        sum[i] += src[i];
    }
    if (!group->arrive())
      return group->abortedStatus("all-reduce");
    if (count)
      std::memcpy(reinterpret_cast<void *>(out), sum.data(), count * 4);
    return okStatus();
  }

  Status allGather(uint64_t in, uint64_t out, uint64_t bytes,
                   void *) override {
    group->inputs[me] = in;
    if (!group->arrive())
      return group->abortedStatus("all-gather");
    gathered.resize(bytes * group->size);
    for (int r = 0; r < group->size; ++r)
      if (bytes)
        std::memcpy(gathered.data() + r * bytes,
                    reinterpret_cast<const void *>(group->inputs[r]), bytes);
    if (!group->arrive())
      return group->abortedStatus("all-gather");
    if (bytes)
      std::memcpy(reinterpret_cast<void *>(out), gathered.data(),
                  gathered.size());
    return okStatus();
  }

  Status barrier() override {
    if (!group->arrive())
      return group->abortedStatus("barrier");
    return okStatus();
  }

  void abort(const Status &why) override { group->abort(why); }

private:
  std::shared_ptr<Group> group;
  int me;
  std::vector<float> sum;
  std::vector<uint8_t> gathered;
};

} // namespace

std::vector<std::unique_ptr<Communicator>> createInProcessGroup(int ranks) {
  auto group = std::make_shared<Group>(ranks);
  std::vector<std::unique_ptr<Communicator>> comms;
  for (int r = 0; r < ranks; ++r)
    comms.push_back(std::make_unique<InProcessCommunicator>(group, r));
  return comms;
}

} // namespace compressa
