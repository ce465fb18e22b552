// SPDX-License-Identifier: Apache-2.0
// One CUDA GPU as the runtime uses it: the device's primary context, one
// stream, device memory (RAII), copies and fills on that stream, modules
// loaded from a cubin with a PTX fallback, kernel launches in the artifact's
// ABI (one .u64 parameter: the device address of the argument vector), and
// CUDA graphs captured from a sequence of launches and replayed. Every driver
// call is checked; a failure names the call and what it was for.
#ifndef COMPRESSA_RUNTIME_CUDA_CUDA_DEVICE_H
#define COMPRESSA_RUNTIME_CUDA_CUDA_DEVICE_H

#include "runtime/base/status.h"
#include "runtime/cuda/cuda_driver.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace compressa {

class CudaDevice;

/// A device allocation (cuMemAlloc), freed when destroyed. It must not
/// outlive the CudaDevice that made it.
class CudaMemory {
public:
  CudaMemory() = default;
  ~CudaMemory();
  CudaMemory(CudaMemory &&other) noexcept;
  CudaMemory &operator=(CudaMemory &&other) noexcept;
  CudaMemory(const CudaMemory &) = delete;
  CudaMemory &operator=(const CudaMemory &) = delete;

  CUdeviceptr address() const { return ptr; }
  uint64_t size() const { return bytes; }

private:
  friend class CudaDevice;
  void release();

  const CudaDevice *device = nullptr;
  CUdeviceptr ptr = 0;
  uint64_t bytes = 0;
};

/// A loaded module (cuModuleLoadData / cuModuleLoadDataEx), unloaded when
/// destroyed. It must not outlive its CudaDevice.
class CudaModule {
public:
  ~CudaModule();
  CudaModule(const CudaModule &) = delete;
  CudaModule &operator=(const CudaModule &) = delete;

  /// How the code was loaded.
  enum class Source {
    /// The cubin, as assembled for the artifact's chip.
    Cubin,
    /// The PTX, compiled by the driver's JIT for this device.
    PtxJit,
  };
  Source source() const { return loadedFrom; }
  /// "cubin (sm_90a)" or "PTX JIT for sm_90 (the cubin is for sm_90a; ...)":
  /// which code was used, and why the cubin was not.
  const std::string &description() const { return how; }

  /// The kernel `symbol` of this module; NotFound naming the symbol and
  /// `kernelName` (the artifact's readable name) if it is absent.
  StatusOr<CUfunction> function(const std::string &symbol,
                                const std::string &kernelName) const;

private:
  friend class CudaDevice;
  CudaModule() = default;

  const CudaDevice *device = nullptr;
  CUmodule module = nullptr;
  Source loadedFrom = Source::Cubin;
  std::string name;
  std::string how;
};

/// An instantiated CUDA graph (cuGraphInstantiate), destroyed with it.
class CudaGraph {
public:
  CudaGraph() = default;
  ~CudaGraph();
  CudaGraph(CudaGraph &&other) noexcept;
  CudaGraph &operator=(CudaGraph &&other) noexcept;
  CudaGraph(const CudaGraph &) = delete;
  CudaGraph &operator=(const CudaGraph &) = delete;

  bool valid() const { return exec != nullptr; }
  /// Launches recorded into the graph.
  int64_t launches() const { return numLaunches; }

private:
  friend class CudaDevice;
  void release();

  const CudaDevice *device = nullptr;
  CUgraphExec exec = nullptr;
  int64_t numLaunches = 0;
};

/// A CUDA event (cuEventCreate), destroyed with it. It must not outlive its
/// CudaDevice.
class CudaEvent {
public:
  CudaEvent() = default;
  ~CudaEvent();
  CudaEvent(CudaEvent &&other) noexcept;
  CudaEvent &operator=(CudaEvent &&other) noexcept;
  CudaEvent(const CudaEvent &) = delete;
  CudaEvent &operator=(const CudaEvent &) = delete;
  bool valid() const { return event != nullptr; }

private:
  friend class CudaDevice;
  void release();
  const CudaDevice *device = nullptr;
  CUevent event = nullptr;
};

/// Counters of what was handed to the stream, for tests and reports.
struct CudaLaunchCounters {
  /// cuLaunchKernel calls that ran a kernel (not those recorded in a graph).
  int64_t kernelLaunches = 0;
  /// cuLaunchKernel calls recorded into a graph while capturing.
  int64_t capturedLaunches = 0;
  /// cuGraphLaunch calls.
  int64_t graphLaunches = 0;
};

/// A GPU, its primary context and one stream. Not thread-safe: one caller at
/// a time (each entry point makes the context current on the calling thread).
class CudaDevice {
public:
  /// Opens device `ordinal`; a negative ordinal means the environment
  /// variable COMPRESSA_CUDA_DEVICE, or 0 when it is unset. Loads the driver
  /// first (loadCudaDriver: its "no NVIDIA driver" / "cuInit failed" errors
  /// pass through). Retains the primary context and creates a stream.
  static StatusOr<std::unique_ptr<CudaDevice>> open(int ordinal = -1);

  /// Releases the stream and the primary context; everything allocated from
  /// this device must be gone by then.
  ~CudaDevice();
  CudaDevice(const CudaDevice &) = delete;
  CudaDevice &operator=(const CudaDevice &) = delete;

  const CudaDriver &driver() const { return *drv; }
  int ordinal() const { return deviceOrdinal; }
  /// cuDeviceGetName, e.g. "NVIDIA H100 80GB HBM3".
  const std::string &name() const { return deviceName; }
  int computeMajor() const { return ccMajor; }
  int computeMinor() const { return ccMinor; }
  /// "sm_90".
  std::string chip() const;
  uint64_t totalMemory() const { return totalBytes; }
  /// The largest dynamic shared memory a block may opt in to.
  int maxSharedBytesPerBlock() const { return maxSharedOptin; }
  int multiprocessors() const { return smCount; }
  /// "NVIDIA H100 80GB HBM3 (device 0, sm_90, 132 SMs, 79.1 GiB, driver
  /// 13000)".
  std::string describe() const;
  CUstream stream() const { return cuStream; }

  /// Makes the primary context current on the calling thread.
  Status makeCurrent() const;

  /// Free and total device memory (cuMemGetInfo).
  Status memoryInfo(uint64_t &freeBytes, uint64_t &totalBytes) const;
  /// ResourceExhausted unless `bytes` more fit in the free device memory:
  /// "<what> needs N bytes (X GiB) of device memory; the GPU has F bytes
  /// free of T".
  Status checkFree(uint64_t bytes, const std::string &what) const;

  /// `bytes` of device memory (at least 1 byte is allocated, so the address
  /// is never 0; 256-byte aligned). `what` names the allocation in errors.
  StatusOr<CudaMemory> allocate(uint64_t bytes, const std::string &what) const;

  /// Copies host -> device, ordered on the stream. The source may be reused
  /// when this returns (pageable memory is staged before the call returns).
  Status copyToDevice(CUdeviceptr dst, const void *src, uint64_t bytes,
                      const std::string &what) const;
  /// Copies device -> host on the stream and waits for the stream. Copies
  /// of up to 64 MiB go through a page-locked staging buffer of the device
  /// (cuMemAllocHost, kept for the next copy): a decode step's logits
  /// (about 0.5 MB for V4) copied into pageable memory cost the step tens
  /// of microseconds more (docs/perf.md). COMPRESSA_PINNED_READS=0 copies
  /// into `dst` directly; so does a copy when page-locked memory runs out.
  Status copyToHost(void *dst, CUdeviceptr src, uint64_t bytes,
                    const std::string &what) const;
  /// Sets `bytes` bytes at `dst` to the 32-bit `pattern` repeated (both 4-
  /// byte aligned unless the pattern is 0), ordered on the stream.
  Status fill(CUdeviceptr dst, uint64_t bytes, uint32_t pattern,
              const std::string &what) const;
  /// Waits for everything on the stream; `what` names the work in errors
  /// (a kernel fault surfaces here).
  Status synchronize(const std::string &what) const;

  /// Loads device code for the chip `chip` ("sm_90a"): the cubin when it is
  /// non-empty and the device can run it (same compute capability for an
  /// arch-specific "a" chip, else same major and at least its minor), else
  /// or when cuModuleLoadData refuses it, the PTX through the driver's JIT
  /// (cuModuleLoadDataEx with an error log that goes into the message).
  /// `ptx` must be NUL-terminated at ptx[ptxBytes]. `name` starts errors.
  StatusOr<std::unique_ptr<CudaModule>>
  loadModule(const std::string &chip, const char *ptx, size_t ptxBytes,
             const uint8_t *cubin, size_t cubinBytes,
             const std::string &name) const;

  /// Launches `fn` in the artifact's ABI: `grid` blocks of `block` threads,
  /// `sharedBytes` of dynamic shared memory, one parameter: `argv`. Errors
  /// name `kernelName` and `symbol`. The context must be current.
  /// `programmatic`: with programmatic dependent launch (the kernel may be
  /// scheduled while the grid before it runs: its code must wait for that
  /// grid first, griddepcontrol.wait), where the driver has cuLaunchKernelEx.
  Status launch(CUfunction fn, uint32_t grid, uint32_t block,
                uint32_t sharedBytes, CUdeviceptr argv,
                const std::string &kernelName, const std::string &symbol,
                bool programmatic = false);

  /// Captures the launches `record` makes on the stream into a graph
  /// (cuStreamBeginCapture in thread-local mode ... cuStreamEndCapture,
  /// cuGraphInstantiate). Nothing runs while capturing. If `record` fails,
  /// the capture is ended and its error returned.
  StatusOr<CudaGraph> capture(const std::function<Status()> &record,
                              const std::string &what);
  /// Launches `graph` on the stream.
  Status launchGraph(const CudaGraph &graph, const std::string &what);

  const CudaLaunchCounters &counters() const { return launchCounters; }

  /// A new event; `what` names it in errors.
  StatusOr<CudaEvent> createEvent(const std::string &what) const;
  /// Records `event` on the stream (after the work queued so far).
  Status recordEvent(const CudaEvent &event, const std::string &what) const;
  /// The milliseconds from `start` to `end`; both must have been recorded
  /// and reached (synchronize() first).
  StatusOr<double> elapsedMs(const CudaEvent &start, const CudaEvent &end,
                             const std::string &what) const;

private:
  CudaDevice() = default;

  const CudaDriver *drv = nullptr;
  int deviceOrdinal = 0;
  CUdevice device = 0;
  CUcontext context = nullptr;
  CUstream cuStream = nullptr;
  std::string deviceName;
  int ccMajor = 0;
  int ccMinor = 0;
  int maxSharedOptin = 0;
  int smCount = 0;
  uint64_t totalBytes = 0;
  bool capturing = false;
  int64_t recordedLaunches = 0;
  /// copyToHost's page-locked staging buffer for a read of `bytes`, grown
  /// on demand; null where the read copies directly (switched off, too
  /// large, or cuMemAllocHost failed once).
  void *stagingFor(uint64_t bytes) const;
  /// That buffer (cuMemAllocHost), freed with the device.
  mutable void *staging = nullptr;
  mutable uint64_t stagingBytes = 0;
  mutable bool stagingFailed = false;
  CudaLaunchCounters launchCounters;
};

/// Parses "sm_90a" / "sm_100" / "sm_89" into compute capability major and
/// minor (the last digit is the minor) and whether it is arch-specific (a
/// trailing 'a': such code runs on exactly that compute capability). A
/// trailing 'f' (family) is accepted and treated like a plain chip. False for
/// anything else.
bool parseCudaChip(const std::string &chip, int &major, int &minor,
                   bool &archSpecific);

} // namespace compressa

#endif // COMPRESSA_RUNTIME_CUDA_CUDA_DEVICE_H
