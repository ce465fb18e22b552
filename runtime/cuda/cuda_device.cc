// SPDX-License-Identifier: Apache-2.0
// CudaDevice: context, stream, memory, copies, modules, launches and graphs
// on top of the dynamically loaded driver (cuda_driver.h).
#include "runtime/cuda/cuda_device.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace compressa {

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

bool parseCudaChip(const std::string &chip, int &major, int &minor,
                   bool &archSpecific) {
  if (chip.size() < 5 || chip.compare(0, 3, "sm_") != 0)
    return false;
  std::string digits = chip.substr(3);
  archSpecific = false;
  char last = digits.back();
  if (last == 'a' || last == 'f') {
    archSpecific = last == 'a';
    digits.pop_back();
  }
  if (digits.size() < 2 || digits.size() > 4)
    return false;
  for (char c : digits)
    if (c < '0' || c > '9')
      return false;
  minor = digits.back() - '0';
  major = std::atoi(digits.substr(0, digits.size() - 1).c_str());
  return major > 0;
}

namespace {

std::string gibibytes(uint64_t bytes) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.2f GiB",
                static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
  return text;
}

} // namespace

//===----------------------------------------------------------------------===//
// CudaMemory
//===----------------------------------------------------------------------===//

CudaMemory::~CudaMemory() { release(); }

CudaMemory::CudaMemory(CudaMemory &&other) noexcept
    : device(other.device), ptr(other.ptr), bytes(other.bytes) {
  other.device = nullptr;
  other.ptr = 0;
  other.bytes = 0;
}

CudaMemory &CudaMemory::operator=(CudaMemory &&other) noexcept {
  if (this != &other) {
    release();
    device = other.device;
    ptr = other.ptr;
    bytes = other.bytes;
    other.device = nullptr;
    other.ptr = 0;
    other.bytes = 0;
  }
  return *this;
}

void CudaMemory::release() {
  if (device && ptr) {
    // A destructor cannot report; a failing cuMemFree means the context is
    // already broken, and the memory goes with it.
    device->makeCurrent().ignoreError();
    (void)device->driver().cuMemFree(ptr);
  }
  device = nullptr;
  ptr = 0;
  bytes = 0;
}

//===----------------------------------------------------------------------===//
// CudaModule
//===----------------------------------------------------------------------===//

CudaModule::~CudaModule() {
  if (device && module) {
    device->makeCurrent().ignoreError();
    (void)device->driver().cuModuleUnload(module);
  }
}

StatusOr<CUfunction> CudaModule::function(const std::string &symbol,
                                          const std::string &kernelName) const {
  COMPRESSA_RETURN_IF_ERROR(device->makeCurrent());
  CUfunction fn = nullptr;
  CUresult result =
      device->driver().cuModuleGetFunction(&fn, module, symbol.c_str());
  if (result == CUDA_ERROR_NOT_FOUND)
    return COMPRESSA_ERROR(NotFound,
                           "%s: kernel '%s': no kernel symbol '%s' in the "
                           "device code",
                           name.c_str(), printable(kernelName).c_str(),
                           printable(symbol).c_str());
  COMPRESSA_CUDA_RETURN_IF_ERROR(result, "kernel '%s' (%s) in %s",
                                 printable(kernelName).c_str(),
                                 printable(symbol).c_str(), name.c_str());
  return fn;
}

//===----------------------------------------------------------------------===//
// CudaGraph
//===----------------------------------------------------------------------===//

CudaGraph::~CudaGraph() { release(); }

CudaGraph::CudaGraph(CudaGraph &&other) noexcept
    : device(other.device), exec(other.exec), numLaunches(other.numLaunches) {
  other.device = nullptr;
  other.exec = nullptr;
  other.numLaunches = 0;
}

CudaGraph &CudaGraph::operator=(CudaGraph &&other) noexcept {
  if (this != &other) {
    release();
    device = other.device;
    exec = other.exec;
    numLaunches = other.numLaunches;
    other.device = nullptr;
    other.exec = nullptr;
    other.numLaunches = 0;
  }
  return *this;
}

void CudaGraph::release() {
  if (device && exec) {
    device->makeCurrent().ignoreError();
    (void)device->driver().cuGraphExecDestroy(exec);
  }
  device = nullptr;
  exec = nullptr;
  numLaunches = 0;
}

//===----------------------------------------------------------------------===//
// CudaEvent
//===----------------------------------------------------------------------===//

CudaEvent::~CudaEvent() { release(); }

CudaEvent::CudaEvent(CudaEvent &&other) noexcept
    : device(other.device), event(other.event) {
  other.device = nullptr;
  other.event = nullptr;
}

CudaEvent &CudaEvent::operator=(CudaEvent &&other) noexcept {
  if (this != &other) {
    release();
    device = other.device;
    event = other.event;
    other.device = nullptr;
    other.event = nullptr;
  }
  return *this;
}

void CudaEvent::release() {
  if (device && event) {
    device->makeCurrent().ignoreError();
    (void)device->driver().cuEventDestroy(event);
  }
  device = nullptr;
  event = nullptr;
}

//===----------------------------------------------------------------------===//
// CudaDevice
//===----------------------------------------------------------------------===//

StatusOr<std::unique_ptr<CudaDevice>> CudaDevice::open(int ordinal) {
  COMPRESSA_ASSIGN_OR_RETURN(const CudaDriver *driver, loadCudaDriver());
  if (ordinal < 0) {
    ordinal = 0;
    const char *env = std::getenv("COMPRESSA_CUDA_DEVICE");
    if (env && *env) {
      char *end = nullptr;
      errno = 0;
      long value = std::strtol(env, &end, 10);
      if (errno || *end || value < 0 || value > INT_MAX)
        return COMPRESSA_ERROR(InvalidArgument,
                               "COMPRESSA_CUDA_DEVICE='%s' is not a device "
                               "number",
                               printable(env).c_str());
      ordinal = static_cast<int>(value);
    }
  }
  if (ordinal >= driver->deviceCount)
    return COMPRESSA_ERROR(InvalidArgument,
                           "CUDA device %d does not exist (the driver sees %d "
                           "device%s: 0..%d)",
                           ordinal, driver->deviceCount,
                           driver->deviceCount == 1 ? "" : "s",
                           driver->deviceCount - 1);

  std::unique_ptr<CudaDevice> dev(new CudaDevice());
  dev->drv = driver;
  dev->deviceOrdinal = ordinal;
  const CudaDriver &d = *driver;
  COMPRESSA_CUDA_RETURN_IF_ERROR(d.cuDeviceGet(&dev->device, ordinal),
                                 "device %d", ordinal);
  char name[256] = {0};
  COMPRESSA_CUDA_RETURN_IF_ERROR(
      d.cuDeviceGetName(name, sizeof(name) - 1, dev->device), "device %d",
      ordinal);
  dev->deviceName = name;
  COMPRESSA_CUDA_RETURN_IF_ERROR(
      d.cuDeviceGetAttribute(&dev->ccMajor,
                             CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                             dev->device),
      "the compute capability of device %d", ordinal);
  COMPRESSA_CUDA_RETURN_IF_ERROR(
      d.cuDeviceGetAttribute(&dev->ccMinor,
                             CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                             dev->device),
      "the compute capability of device %d", ordinal);
  COMPRESSA_CUDA_RETURN_IF_ERROR(
      d.cuDeviceGetAttribute(
          &dev->maxSharedOptin,
          CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, dev->device),
      "the shared memory limit of device %d", ordinal);
  COMPRESSA_CUDA_RETURN_IF_ERROR(
      d.cuDeviceGetAttribute(&dev->smCount,
                             CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
                             dev->device),
      "the multiprocessor count of device %d", ordinal);
  size_t total = 0;
  COMPRESSA_CUDA_RETURN_IF_ERROR(d.cuDeviceTotalMem(&total, dev->device),
                                 "device %d", ordinal);
  dev->totalBytes = total;

  // The primary context: the one the CUDA runtime and other libraries in
  // this process share; retained here, released in the destructor.
  COMPRESSA_CUDA_RETURN_IF_ERROR(
      d.cuDevicePrimaryCtxRetain(&dev->context, dev->device),
      "the primary context of device %d", ordinal);
  COMPRESSA_RETURN_IF_ERROR(dev->makeCurrent());
  // A non-blocking stream: no implicit synchronization with the legacy
  // default stream that other code in the process may use.
  COMPRESSA_CUDA_RETURN_IF_ERROR(
      d.cuStreamCreate(&dev->cuStream, CU_STREAM_NON_BLOCKING),
      "the stream of device %d", ordinal);
  return dev;
}

CudaDevice::~CudaDevice() {
  if (!drv)
    return;
  if (context) {
    makeCurrent().ignoreError();
    if (cuStream) {
      (void)drv->cuStreamSynchronize(cuStream);
      (void)drv->cuStreamDestroy(cuStream);
    }
    if (staging)
      (void)drv->cuMemFreeHost(staging);
    (void)drv->cuDevicePrimaryCtxRelease(device);
  }
}

std::string CudaDevice::chip() const {
  return "sm_" + std::to_string(ccMajor) + std::to_string(ccMinor);
}

std::string CudaDevice::describe() const {
  char text[512];
  std::snprintf(text, sizeof(text),
                "%s (device %d, %s, %d SMs, %s, driver %d)",
                deviceName.c_str(), deviceOrdinal, chip().c_str(), smCount,
                gibibytes(totalBytes).c_str(), drv->version);
  return text;
}

Status CudaDevice::makeCurrent() const {
  COMPRESSA_CUDA_RETURN_IF_ERROR(drv->cuCtxSetCurrent(context),
                                 "the primary context of device %d",
                                 deviceOrdinal);
  return okStatus();
}

Status CudaDevice::memoryInfo(uint64_t &freeBytes,
                              uint64_t &totalBytesOut) const {
  COMPRESSA_RETURN_IF_ERROR(makeCurrent());
  size_t freeMemory = 0, totalMemory = 0;
  COMPRESSA_CUDA_RETURN_IF_ERROR(drv->cuMemGetInfo(&freeMemory, &totalMemory),
                                 "device %d", deviceOrdinal);
  freeBytes = freeMemory;
  totalBytesOut = totalMemory;
  return okStatus();
}

Status CudaDevice::checkFree(uint64_t bytes, const std::string &what) const {
  uint64_t freeBytes = 0, total = 0;
  COMPRESSA_RETURN_IF_ERROR(memoryInfo(freeBytes, total));
  if (bytes <= freeBytes)
    return okStatus();
  return COMPRESSA_ERROR(
      ResourceExhausted,
      "%s needs %llu bytes (%s) of device memory; %s has %llu bytes (%s) "
      "free of %llu (%s)",
      what.c_str(), static_cast<unsigned long long>(bytes),
      gibibytes(bytes).c_str(), deviceName.c_str(),
      static_cast<unsigned long long>(freeBytes), gibibytes(freeBytes).c_str(),
      static_cast<unsigned long long>(total), gibibytes(total).c_str());
}

StatusOr<CudaMemory> CudaDevice::allocate(uint64_t bytes,
                                          const std::string &what) const {
  if (bytes > uint64_t(SIZE_MAX) / 2)
    return COMPRESSA_ERROR(ResourceExhausted,
                           "%s: %llu bytes do not fit the address space",
                           what.c_str(),
                           static_cast<unsigned long long>(bytes));
  COMPRESSA_RETURN_IF_ERROR(makeCurrent());
  CUdeviceptr ptr = 0;
  size_t size = bytes ? static_cast<size_t>(bytes) : 1;
  CUresult result = drv->cuMemAlloc(&ptr, size);
  if (result == CUDA_ERROR_OUT_OF_MEMORY) {
    uint64_t freeBytes = 0, total = 0;
    Status info = memoryInfo(freeBytes, total);
    if (info.ok())
      return COMPRESSA_ERROR(
          ResourceExhausted,
          "cuMemAlloc failed for %s: CUDA_ERROR_OUT_OF_MEMORY: %llu bytes "
          "(%s) requested, %llu bytes (%s) free of %llu on %s",
          what.c_str(), static_cast<unsigned long long>(bytes),
          gibibytes(bytes).c_str(),
          static_cast<unsigned long long>(freeBytes),
          gibibytes(freeBytes).c_str(), static_cast<unsigned long long>(total),
          deviceName.c_str());
  }
  COMPRESSA_CUDA_RETURN_IF_ERROR(result, "%s (%llu bytes)", what.c_str(),
                                 static_cast<unsigned long long>(bytes));
  CudaMemory memory;
  memory.device = this;
  memory.ptr = ptr;
  memory.bytes = bytes;
  return memory;
}

Status CudaDevice::copyToDevice(CUdeviceptr dst, const void *src,
                                uint64_t bytes, const std::string &what) const {
  if (bytes == 0)
    return okStatus();
  COMPRESSA_RETURN_IF_ERROR(makeCurrent());
  COMPRESSA_CUDA_RETURN_IF_ERROR(
      drv->cuMemcpyHtoDAsync(dst, src, static_cast<size_t>(bytes), cuStream),
      "%s (%llu bytes)", what.c_str(), static_cast<unsigned long long>(bytes));
  return okStatus();
}

void *CudaDevice::stagingFor(uint64_t bytes) const {
  static const bool pinnedReads = [] {
    const char *v = std::getenv("COMPRESSA_PINNED_READS");
    return !(v && std::string(v) == "0");
  }();
  constexpr uint64_t kStagingLimit = uint64_t(64) << 20;
  if (!pinnedReads || stagingFailed || bytes > kStagingLimit)
    return nullptr;
  if (bytes > stagingBytes) {
    // The previous read has completed (copyToHost waits), so the buffer
    // is free. At least 1 MiB, in whole MiB: a few sizes share one buffer.
    if (staging)
      (void)drv->cuMemFreeHost(staging);
    staging = nullptr;
    stagingBytes = 0;
    uint64_t want = std::max<uint64_t>(uint64_t(1) << 20, (bytes + 0xfffff) & ~uint64_t(0xfffff));
    if (drv->cuMemAllocHost(&staging, static_cast<size_t>(want)) != CUDA_SUCCESS) {
      // Page-locked memory ran out: direct copies from now on, not a
      // failing allocation on every read.
      staging = nullptr;
      stagingFailed = true;
      return nullptr;
    }
    stagingBytes = want;
  }
  return staging;
}

Status CudaDevice::copyToHost(void *dst, CUdeviceptr src, uint64_t bytes,
                              const std::string &what) const {
  if (bytes == 0)
    return okStatus();
  COMPRESSA_RETURN_IF_ERROR(makeCurrent());
  if (void *pinned = stagingFor(bytes)) {
    COMPRESSA_CUDA_RETURN_IF_ERROR(
        drv->cuMemcpyDtoHAsync(pinned, src, static_cast<size_t>(bytes), cuStream),
        "%s (%llu bytes)", what.c_str(), static_cast<unsigned long long>(bytes));
    COMPRESSA_CUDA_RETURN_IF_ERROR(drv->cuStreamSynchronize(cuStream),
                                   "%s", what.c_str());
    std::memcpy(dst, pinned, static_cast<size_t>(bytes));
    return okStatus();
  }
  COMPRESSA_CUDA_RETURN_IF_ERROR(
      drv->cuMemcpyDtoHAsync(dst, src, static_cast<size_t>(bytes), cuStream),
      "%s (%llu bytes)", what.c_str(), static_cast<unsigned long long>(bytes));
  // The host buffer is only complete once the stream has caught up; any
  // earlier kernel fault also surfaces here.
  COMPRESSA_CUDA_RETURN_IF_ERROR(drv->cuStreamSynchronize(cuStream),
                                 "%s", what.c_str());
  return okStatus();
}

Status CudaDevice::fill(CUdeviceptr dst, uint64_t bytes, uint32_t pattern,
                        const std::string &what) const {
  if (bytes == 0)
    return okStatus();
  COMPRESSA_RETURN_IF_ERROR(makeCurrent());
  if (pattern == 0) {
    COMPRESSA_CUDA_RETURN_IF_ERROR(
        drv->cuMemsetD8Async(dst, 0, static_cast<size_t>(bytes), cuStream),
        "%s (%llu bytes)", what.c_str(),
        static_cast<unsigned long long>(bytes));
    return okStatus();
  }
  if (bytes % 4 || dst % 4)
    return COMPRESSA_ERROR(Internal,
                           "%s: a 32-bit fill of %llu bytes at 0x%llx is not "
                           "4-byte aligned",
                           what.c_str(),
                           static_cast<unsigned long long>(bytes),
                           static_cast<unsigned long long>(dst));
  COMPRESSA_CUDA_RETURN_IF_ERROR(
      drv->cuMemsetD32Async(dst, pattern, static_cast<size_t>(bytes / 4),
                            cuStream),
      "%s (%llu bytes)", what.c_str(), static_cast<unsigned long long>(bytes));
  return okStatus();
}

Status CudaDevice::synchronize(const std::string &what) const {
  COMPRESSA_RETURN_IF_ERROR(makeCurrent());
  COMPRESSA_CUDA_RETURN_IF_ERROR(drv->cuStreamSynchronize(cuStream), "%s",
                                 what.c_str());
  return okStatus();
}

StatusOr<std::unique_ptr<CudaModule>>
CudaDevice::loadModule(const std::string &chip, const char *ptx,
                       size_t ptxBytes, const uint8_t *cubin,
                       size_t cubinBytes, const std::string &name) const {
  COMPRESSA_RETURN_IF_ERROR(makeCurrent());
  std::unique_ptr<CudaModule> module(new CudaModule());
  module->device = this;
  module->name = name;
  std::string here = this->chip();

  // Step 1. The cubin, when this device can run it.
  std::string whyNotCubin;
  int major = 0, minor = 0;
  bool archSpecific = false;
  bool parsed = parseCudaChip(chip, major, minor, archSpecific);
  if (!cubin || cubinBytes == 0) {
    whyNotCubin = "the artifact has no cubin";
  } else if (!parsed) {
    whyNotCubin = "the artifact's chip '" + printable(chip) +
                  "' is not an sm_XY name";
  } else if (major != ccMajor ||
             (archSpecific ? minor != ccMinor : minor > ccMinor)) {
    whyNotCubin = "the cubin is for " + printable(chip) + ", this GPU is " +
                  here;
  } else {
    CUresult result = drv->cuModuleLoadData(&module->module, cubin);
    if (result == CUDA_SUCCESS) {
      module->loadedFrom = CudaModule::Source::Cubin;
      module->how = "cubin (" + printable(chip) + ")";
      return module;
    }
    module->module = nullptr;
    whyNotCubin = "cuModuleLoadData refused the " + printable(chip) +
                  " cubin: " + cudaErrorText(result);
  }

  // Step 2. The PTX, through the driver's JIT, with its logs.
  if (!ptx || ptxBytes == 0)
    return COMPRESSA_ERROR(Unavailable,
                           "%s: no code this GPU (%s, %s) can run: %s, and "
                           "the artifact has no PTX",
                           name.c_str(), deviceName.c_str(), here.c_str(),
                           whyNotCubin.c_str());
  std::vector<char> errorLog(16384, '\0');
  std::vector<char> infoLog(4096, '\0');
  CUjit_option options[] = {CU_JIT_ERROR_LOG_BUFFER,
                            CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
                            CU_JIT_INFO_LOG_BUFFER,
                            CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES};
  void *values[] = {
      errorLog.data(),
      reinterpret_cast<void *>(static_cast<uintptr_t>(errorLog.size() - 1)),
      infoLog.data(),
      reinterpret_cast<void *>(static_cast<uintptr_t>(infoLog.size() - 1))};
  CUresult result = drv->cuModuleLoadDataEx(
      &module->module, ptx, sizeof(options) / sizeof(options[0]), options,
      values);
  if (result != CUDA_SUCCESS) {
    module->module = nullptr;
    std::string log(errorLog.data());
    while (!log.empty() && (log.back() == '\n' || log.back() == ' '))
      log.pop_back();
    return cudaCallError(result, "cuModuleLoadDataEx", __FILE__, __LINE__,
                         "%s: the PTX JIT for %s (%s)%s%s", name.c_str(),
                         here.c_str(), whyNotCubin.c_str(),
                         log.empty() ? "" : "; JIT log: ",
                         printable(log, 2000).c_str());
  }
  module->loadedFrom = CudaModule::Source::PtxJit;
  module->how = "PTX JIT for " + here + " (" + whyNotCubin + ")";
  return module;
}

Status CudaDevice::launch(CUfunction fn, uint32_t grid, uint32_t block,
                          uint32_t sharedBytes, CUdeviceptr argv,
                          const std::string &kernelName,
                          const std::string &symbol, bool programmatic) {
  // The ABI: one .u64 parameter, the device address of the argument vector.
  // kernelParams holds a pointer to each parameter's value.
  void *params[] = {&argv};
  if (programmatic && drv->cuLaunchKernelEx) {
    CUlaunchAttribute attr{};
    attr.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attr.value.programmaticStreamSerializationAllowed = 1;
    CUlaunchConfig config{};
    config.gridDimX = grid;
    config.gridDimY = config.gridDimZ = 1;
    config.blockDimX = block;
    config.blockDimY = config.blockDimZ = 1;
    config.sharedMemBytes = sharedBytes;
    config.hStream = cuStream;
    config.attrs = &attr;
    config.numAttrs = 1;
    COMPRESSA_CUDA_RETURN_IF_ERROR(
        drv->cuLaunchKernelEx(&config, fn, params, nullptr),
        "kernel '%s' (%s), programmatic dependent launch",
        printable(kernelName).c_str(), printable(symbol).c_str());
  } else {
    COMPRESSA_CUDA_RETURN_IF_ERROR(
        drv->cuLaunchKernel(fn, grid, 1, 1, block, 1, 1, sharedBytes, cuStream,
                            params, nullptr),
        "kernel '%s' (%s)", printable(kernelName).c_str(),
        printable(symbol).c_str());
  }
  if (capturing) {
    ++launchCounters.capturedLaunches;
    ++recordedLaunches;
  } else {
    ++launchCounters.kernelLaunches;
  }
  return okStatus();
}

StatusOr<CudaGraph> CudaDevice::capture(const std::function<Status()> &record,
                                        const std::string &what) {
  COMPRESSA_RETURN_IF_ERROR(makeCurrent());
  COMPRESSA_CUDA_RETURN_IF_ERROR(
      drv->cuStreamBeginCapture(cuStream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
      "%s", what.c_str());
  capturing = true;
  recordedLaunches = 0;
  Status recorded = record();
  capturing = false;
  // Always end the capture, so the stream is usable again even after an
  // error; a capture invalidated by an error still returns (and must free)
  // its graph.
  CUgraph graph = nullptr;
  CUresult ended = drv->cuStreamEndCapture(cuStream, &graph);
  if (!recorded.ok()) {
    if (graph)
      (void)drv->cuGraphDestroy(graph);
    return recorded.withContext("capturing %s", what.c_str());
  }
  COMPRESSA_CUDA_RETURN_IF_ERROR(ended, "%s", what.c_str());
  CUgraphExec exec = nullptr;
  CUresult instantiated = drv->cuGraphInstantiate(&exec, graph, 0);
  (void)drv->cuGraphDestroy(graph);
  COMPRESSA_CUDA_RETURN_IF_ERROR(instantiated, "%s", what.c_str());
  CudaGraph result;
  result.device = this;
  result.exec = exec;
  result.numLaunches = recordedLaunches;
  return result;
}

StatusOr<CudaEvent> CudaDevice::createEvent(const std::string &what) const {
  COMPRESSA_RETURN_IF_ERROR(makeCurrent());
  CudaEvent event;
  COMPRESSA_CUDA_RETURN_IF_ERROR(
      drv->cuEventCreate(&event.event, CU_EVENT_DEFAULT), "%s", what.c_str());
  event.device = this;
  return event;
}

Status CudaDevice::recordEvent(const CudaEvent &event,
                               const std::string &what) const {
  if (!event.valid())
    return COMPRESSA_ERROR(Internal, "%s: the event was never created",
                           what.c_str());
  COMPRESSA_CUDA_RETURN_IF_ERROR(drv->cuEventRecord(event.event, cuStream),
                                 "%s", what.c_str());
  return okStatus();
}

StatusOr<double> CudaDevice::elapsedMs(const CudaEvent &start,
                                       const CudaEvent &end,
                                       const std::string &what) const {
  float ms = 0;
  COMPRESSA_CUDA_RETURN_IF_ERROR(
      drv->cuEventElapsedTime(&ms, start.event, end.event), "%s", what.c_str());
  return double(ms);
}

Status CudaDevice::launchGraph(const CudaGraph &graph,
                               const std::string &what) {
  if (!graph.valid())
    return COMPRESSA_ERROR(Internal, "%s: the CUDA graph is empty",
                           what.c_str());
  COMPRESSA_CUDA_RETURN_IF_ERROR(drv->cuGraphLaunch(graph.exec, cuStream),
                                 "%s", what.c_str());
  ++launchCounters.graphLaunches;
  return okStatus();
}

} // namespace compressa
