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
uint32_t firstLocalRank = 0;
} // namespace

void setRankDevices(std::vector<int> devices) {
  std::lock_guard<std::mutex> lock(rankDevicesMutex);
  rankDevicesList = std::move(devices);
}

int rankDevice(uint32_t rank, uint32_t ranks) {
  std::lock_guard<std::mutex> lock(rankDevicesMutex);
  uint32_t local = rank >= firstLocalRank ? rank - firstLocalRank : rank;
  if (local < rankDevicesList.size())
    return rankDevicesList[local];
  return ranks < 2 ? -1 : static_cast<int>(local);
}

void setFirstLocalRank(uint32_t rank) {
  std::lock_guard<std::mutex> lock(rankDevicesMutex);
  firstLocalRank = rank;
}

std::vector<int> rankDevices() {
  std::lock_guard<std::mutex> lock(rankDevicesMutex);
  return rankDevicesList;
}

StatusOr<std::vector<int>> parseDeviceList(const std::string &text) {
  std::vector<int> devices;
  size_t start = 0;
  for (;;) {
    size_t comma = text.find(',', start);
    std::string item = text.substr(start, comma == std::string::npos
                                              ? std::string::npos
                                              : comma - start);
    bool digits = !item.empty() && item.size() <= 4 &&
                  item.find_first_not_of("0123456789") == std::string::npos;
    int device = digits ? std::stoi(item) : -1;
    if (!digits || device >= 1024)
      return COMPRESSA_ERROR(InvalidArgument,
                             "--devices '%s': '%s' is not a CUDA device "
                             "ordinal (expected a list like 0,1,2,3)",
                             text.c_str(), item.c_str());
    for (int d : devices)
      if (d == device)
        return COMPRESSA_ERROR(InvalidArgument,
                               "--devices '%s' names device %d twice",
                               text.c_str(), device);
    devices.push_back(device);
    if (comma == std::string::npos)
      return devices;
    start = comma + 1;
  }
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
