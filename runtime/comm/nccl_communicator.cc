// SPDX-License-Identifier: Apache-2.0
// NCCL through dlopen. The few types and entry points used are declared
// here from NCCL's stable C ABI (nccl.h, NCCL 2.x), so the runtime builds
// without NCCL's headers.

#include "runtime/comm/nccl_communicator.h"

#include <dlfcn.h>

#include <cstdlib>
#include <string>
#include <condition_variable>
#include <mutex>
#include <type_traits>

namespace compressa {
namespace {

// nccl.h, NCCL 2.x.
using ncclComm_t = struct ncclComm *;
using ncclResult_t = int;
constexpr ncclResult_t kNcclSuccess = 0;
constexpr int kNcclFloat32 = 7; // ncclDataType_t
constexpr int kNcclUint8 = 1;
constexpr int kNcclSum = 0; // ncclRedOp_t

struct Nccl {
  ncclResult_t (*getVersion)(int *);
  const char *(*getErrorString)(ncclResult_t);
  ncclResult_t (*commInitAll)(ncclComm_t *, int, const int *);
  ncclResult_t (*commDestroy)(ncclComm_t);
  ncclResult_t (*commAbort)(ncclComm_t);
  ncclResult_t (*allReduce)(const void *, void *, size_t, int, int, ncclComm_t,
                            void *);
  ncclResult_t (*allGather)(const void *, void *, size_t, int, ncclComm_t,
                            void *);
  ncclResult_t (*getUniqueId)(NcclId *);
  // ncclUniqueId is passed by value: a struct of 128 chars.
  ncclResult_t (*commInitRank)(ncclComm_t *, int, NcclId, int);
  ncclResult_t (*groupStart)();
  ncclResult_t (*groupEnd)();
  std::string version;
};

std::once_flag loadOnce;
Nccl nccl;
Status loadStatus;

Status loadLibrary() {
  // The loader's path first, then the CUDA toolkit's lib64 (where the
  // toolkit's NCCL lives, often not on the loader's path).
  const char *chosen = std::getenv("COMPRESSA_NCCL_LIBRARY");
  std::vector<std::string> candidates;
  if (chosen && *chosen) {
    candidates.push_back(chosen);
  } else {
    candidates.push_back("libnccl.so.2");
    if (const char *home = std::getenv("CUDA_HOME"); home && *home)
      candidates.push_back(std::string(home) + "/lib64/libnccl.so.2");
    candidates.push_back("/usr/local/cuda/lib64/libnccl.so.2");
  }
  const char *library = candidates[0].c_str();
  void *handle = nullptr;
  std::string why;
  for (const std::string &candidate : candidates) {
    handle = ::dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle) {
      library = candidate.c_str();
      break;
    }
    const char *error = ::dlerror();
    why += (why.empty() ? "" : "; ") + std::string(error ? error : candidate);
  }
  if (!handle) {
    return COMPRESSA_ERROR(Unavailable,
                           "no NCCL: dlopen(%s) failed: %s (an artifact of "
                           "several ranks on CUDA needs NCCL: the CUDA "
                           "toolkit's lib64, or Debian's libnccl2)",
                           library, why.c_str());
  }
  auto bind = [&](auto &fn, const char *symbol) -> Status {
    void *p = ::dlsym(handle, symbol);
    if (!p)
      return COMPRESSA_ERROR(Unavailable, "%s has no symbol %s", library,
                             symbol);
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
    return okStatus();
  };
  COMPRESSA_RETURN_IF_ERROR(bind(nccl.getVersion, "ncclGetVersion"));
  COMPRESSA_RETURN_IF_ERROR(bind(nccl.getErrorString, "ncclGetErrorString"));
  COMPRESSA_RETURN_IF_ERROR(bind(nccl.commInitAll, "ncclCommInitAll"));
  COMPRESSA_RETURN_IF_ERROR(bind(nccl.commDestroy, "ncclCommDestroy"));
  COMPRESSA_RETURN_IF_ERROR(bind(nccl.commAbort, "ncclCommAbort"));
  COMPRESSA_RETURN_IF_ERROR(bind(nccl.allReduce, "ncclAllReduce"));
  COMPRESSA_RETURN_IF_ERROR(bind(nccl.allGather, "ncclAllGather"));
  COMPRESSA_RETURN_IF_ERROR(bind(nccl.getUniqueId, "ncclGetUniqueId"));
  COMPRESSA_RETURN_IF_ERROR(bind(nccl.commInitRank, "ncclCommInitRank"));
  COMPRESSA_RETURN_IF_ERROR(bind(nccl.groupStart, "ncclGroupStart"));
  COMPRESSA_RETURN_IF_ERROR(bind(nccl.groupEnd, "ncclGroupEnd"));
  int v = 0;
  if (nccl.getVersion(&v) != kNcclSuccess)
    return COMPRESSA_ERROR(Unavailable, "%s: ncclGetVersion failed", library);
  // NCCL >= 2.9 encodes the version as major*10000 + minor*100 + patch.
  if (v < 20900)
    return COMPRESSA_ERROR(Unavailable,
                           "%s is NCCL version code %d; Compressa needs 2.9 "
                           "or newer (CUDA graph capture of collectives)",
                           library, v);
  nccl.version = std::to_string(v / 10000) + "." +
                 std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
  return okStatus();
}

Status check(ncclResult_t result, const char *what, int rank) {
  if (result == kNcclSuccess)
    return okStatus();
  return COMPRESSA_ERROR(Internal, "NCCL %s on rank %d failed: %s (%d)", what,
                         rank, nccl.getErrorString(result), result);
}

/// The host barrier the ranks of one process share.
struct HostBarrier {
  explicit HostBarrier(int n) : size(n) {}
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
  void abort() {
    std::lock_guard<std::mutex> lock(mu);
    aborted = true;
    cv.notify_all();
  }
  const int size;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t epoch = 0;
  bool aborted = false;
};

class NcclCommunicator final : public Communicator {
public:
  NcclCommunicator(ncclComm_t comm, int rank, int size,
                   std::shared_ptr<HostBarrier> barrier)
      : comm(comm), me(rank), count(size), host(std::move(barrier)) {}
  ~NcclCommunicator() override {
    if (comm)
      nccl.commDestroy(comm);
  }

  int rank() const override { return me; }
  int size() const override { return count; }
  const char *name() const override { return "nccl"; }

  Status allReduceSum(uint64_t in, uint64_t out, uint64_t n,
                      void *stream) override {
    if (aborted)
      return COMPRESSA_ERROR(Unavailable, "NCCL rank %d: aborted", me);
    return check(nccl.allReduce(reinterpret_cast<const void *>(in),
                                reinterpret_cast<void *>(out), n, kNcclFloat32,
                                kNcclSum, comm, stream),
                 "all-reduce", me);
  }
  Status allGather(uint64_t in, uint64_t out, uint64_t bytes,
                   void *stream) override {
    if (aborted)
      return COMPRESSA_ERROR(Unavailable, "NCCL rank %d: aborted", me);
    return check(nccl.allGather(reinterpret_cast<const void *>(in),
                                reinterpret_cast<void *>(out), bytes,
                                kNcclUint8, comm, stream),
                 "all-gather", me);
  }
  Status barrier() override {
    if (!host->arrive())
      return COMPRESSA_ERROR(Unavailable, "NCCL rank %d: aborted", me);
    return okStatus();
  }
  void abort(const Status &) override {
    // Wakes the host barrier; a rank stuck inside NCCL is released by
    // ncclCommAbort (every communicator of the group).
    aborted = true;
    host->abort();
    if (comm) {
      nccl.commAbort(comm);
      comm = nullptr;
    }
  }

private:
  ncclComm_t comm;
  int me, count;
  std::shared_ptr<HostBarrier> host;
  bool aborted = false;
};

} // namespace

StatusOr<std::string> loadNccl() {
  std::call_once(loadOnce, [] { loadStatus = loadLibrary(); });
  if (!loadStatus.ok())
    return loadStatus;
  return nccl.version;
}

StatusOr<std::vector<std::unique_ptr<Communicator>>>
createNcclGroup(const std::vector<int> &devices) {
  COMPRESSA_RETURN_IF_ERROR(loadNccl().status());
  int n = static_cast<int>(devices.size());
  if (n < 1)
    return COMPRESSA_ERROR(InvalidArgument, "createNcclGroup: no devices");
  std::vector<ncclComm_t> comms(n, nullptr);
  COMPRESSA_RETURN_IF_ERROR(
      check(nccl.commInitAll(comms.data(), n, devices.data()),
            "ncclCommInitAll", 0));
  auto barrier = std::make_shared<HostBarrier>(n);
  std::vector<std::unique_ptr<Communicator>> out;
  for (int r = 0; r < n; ++r)
    out.push_back(
        std::make_unique<NcclCommunicator>(comms[r], r, n, barrier));
  return out;
}

StatusOr<NcclId> createNcclId() {
  COMPRESSA_RETURN_IF_ERROR(loadNccl().status());
  NcclId id{};
  COMPRESSA_RETURN_IF_ERROR(check(nccl.getUniqueId(&id), "ncclGetUniqueId", 0));
  return id;
}

StatusOr<std::vector<std::unique_ptr<Communicator>>>
createNcclRanks(const NcclId &id, int size, const std::vector<int> &ranks,
                const std::function<Status(size_t)> &makeCurrent) {
  COMPRESSA_RETURN_IF_ERROR(loadNccl().status());
  std::vector<ncclComm_t> comms(ranks.size(), nullptr);
  // One group: the ranks of this process join together (NCCL needs that
  // when one thread sets up several devices).
  COMPRESSA_RETURN_IF_ERROR(check(nccl.groupStart(), "ncclGroupStart", ranks[0]));
  Status status;
  for (size_t i = 0; i < ranks.size() && status.ok(); ++i) {
    status = makeCurrent(i);
    if (status.ok())
      status = check(nccl.commInitRank(&comms[i], size, id, ranks[i]),
                     "ncclCommInitRank", ranks[i]);
  }
  Status ended = check(nccl.groupEnd(), "ncclGroupEnd", ranks[0]);
  if (status.ok())
    status = ended;
  if (!status.ok()) {
    for (ncclComm_t c : comms)
      if (c)
        nccl.commAbort(c);
    return status;
  }
  auto barrier = std::make_shared<HostBarrier>(int(ranks.size()));
  std::vector<std::unique_ptr<Communicator>> out;
  for (size_t i = 0; i < ranks.size(); ++i)
    out.push_back(std::make_unique<NcclCommunicator>(comms[i], ranks[i], size,
                                                     barrier));
  return out;
}

} // namespace compressa
