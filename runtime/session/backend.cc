// SPDX-License-Identifier: Apache-2.0
// Choosing the backend for an artifact's target.
#include "runtime/session/backend.h"

#include "runtime/cpu/cpu_backend.h"
#if COMPRESSA_HAVE_CUDA
#include "runtime/cuda/cuda_backend.h"
#endif

#include <mutex>

namespace compressa {

StatusOr<std::unique_ptr<Backend>> createBackend(const Artifact &artifact) {
  switch (artifact.target()) {
  case fb::Target::Cpu:
    return std::unique_ptr<Backend>(new CpuBackend());
  case fb::Target::Cuda: {
#if COMPRESSA_HAVE_CUDA
    COMPRESSA_ASSIGN_OR_RETURN(
        std::unique_ptr<CudaBackend> backend,
        CudaBackend::create(artifact.path(),
                            rankDevice(artifact.root().rank(),
                                       artifact.root().ranks())));
    return std::unique_ptr<Backend>(std::move(backend));
#else
    return COMPRESSA_ERROR(Unimplemented,
                           "%s: the artifact targets cuda, but this runtime "
                           "was built without CUDA support (cuda.h was not "
                           "found at configure time)",
                           artifact.path().c_str());
#endif
  }
  }
  return COMPRESSA_ERROR(Unimplemented, "%s: the artifact targets %s, which "
                         "this runtime cannot run",
                         artifact.path().c_str(), artifact.targetName());
}

namespace {
std::mutex rankDevicesMutex;
std::vector<int> rankDevicesList;
} // namespace

void setRankDevices(std::vector<int> devices) {
  std::lock_guard<std::mutex> lock(rankDevicesMutex);
  rankDevicesList = std::move(devices);
}

int rankDevice(uint32_t rank, uint32_t ranks) {
  if (ranks < 2)
    return -1;
  std::lock_guard<std::mutex> lock(rankDevicesMutex);
  return rank < rankDevicesList.size() ? rankDevicesList[rank]
                                       : static_cast<int>(rank);
}

Status Backend::startTimer() {
  timerStart = std::chrono::steady_clock::now();
  return okStatus();
}

StatusOr<double> Backend::stopTimer() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now() - timerStart)
      .count();
}

// Internal error unless [offset, offset + bytes) lies inside `buffer`.
Status checkBufferRange(const BackendBuffer &buffer, uint64_t offset,
                        uint64_t bytes, const std::string &what) {
  uint64_t end;
  if (__builtin_add_overflow(offset, bytes, &end) || end > buffer.size())
    return COMPRESSA_ERROR(Internal,
                           "%s: %llu bytes at offset %llu fall outside a "
                           "buffer of %llu bytes",
                           what.c_str(), static_cast<unsigned long long>(bytes),
                           static_cast<unsigned long long>(offset),
                           static_cast<unsigned long long>(buffer.size()));
  return okStatus();
}

} // namespace compressa
