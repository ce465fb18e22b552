// SPDX-License-Identifier: Apache-2.0
// The CUDA backend: runs a CUDA artifact on one GPU (CudaDevice). Weights are
// uploaded as stored (packed FP8/FP4 bytes and their scales, BF16, F32, I64:
// the kernels decode them) into one device pool, each tensor 256-byte
// aligned; states, arenas and scratch are device allocations; each launch's
// argument vector is a device array of device addresses built once, and the
// Tokens/StartPos/LogitRows entries point to one device int64 triple that
// run() writes before the launches (artifact.fbs). A program prepared with `graph` is
// captured as a CUDA graph on its first run and replayed afterwards.
//
// Environment: COMPRESSA_CUDA_DEVICE picks the GPU (default 0);
// COMPRESSA_CUDA_SYNC=1 waits after every launch, so that a kernel fault is
// reported with the kernel's name (and disables graphs).
#ifndef COMPRESSA_RUNTIME_CUDA_CUDA_BACKEND_H
#define COMPRESSA_RUNTIME_CUDA_CUDA_BACKEND_H

#include "runtime/cuda/cuda_device.h"
#include "runtime/session/backend.h"

#include <memory>
#include <string>
#include <vector>

namespace compressa {

class CudaBackend final : public Backend {
public:
  /// Opens the GPU (CudaDevice::open). `artifactPath` starts the messages.
  /// A driver that cannot be loaded or a machine without a GPU gives
  /// "<artifactPath>: the artifact targets CUDA, but no CUDA GPU is
  /// available: <why>".
  /// `device`: the CUDA ordinal (-1: CudaDevice::open's default).
  static StatusOr<std::unique_ptr<CudaBackend>>
  create(const std::string &artifactPath, int device = -1);

  ~CudaBackend() override;

  const char *name() const override { return "cuda"; }
  std::string describe() const override;
  Status loadKernels(const Artifact &artifact) override;
  Status reserve(uint64_t bytes, const std::string &what) override;
  StatusOr<std::vector<uint64_t>>
  placeWeights(const std::vector<HostTensor> &tensors,
               const std::string &what) override;
  StatusOr<std::unique_ptr<BackendBuffer>>
  allocate(uint64_t bytes, const std::string &what) override;
  Status write(BackendBuffer &dst, uint64_t offset, const void *src,
               uint64_t bytes, const std::string &what) override;
  Status read(void *dst, const BackendBuffer &src, uint64_t offset,
              uint64_t bytes, const std::string &what) override;
  Status fill(BackendBuffer &dst, uint64_t offset, uint64_t bytes,
              uint32_t pattern, const std::string &what) override;
  /// Runs the runtime's generator kernel (runtime/cuda/random_weights.cu,
  /// PTX embedded at build time, JIT-compiled on first use).
  Status generate(BackendBuffer &dst, uint64_t offset, RandomSpec spec,
                  const std::string &what) override;
  /// A device-to-device copy kernel (16-byte loads and stores over every
  /// SM) between two allocations of `bytes`, timed with CUDA events.
  StatusOr<double> measureCopyBandwidth(uint64_t bytes, int repeats) override;
  Status memoryInUse(uint64_t &used, uint64_t &total) const override {
    uint64_t freeBytes = 0;
    if (Status status = dev->memoryInfo(freeBytes, total); !status.ok())
      return status;
    used = total - freeBytes;
    return okStatus();
  }
  /// Whether the runtime was built with its own device code (nvcc found).
  static bool hasRuntimeKernels();
  StatusOr<std::unique_ptr<BackendProgram>>
  prepareProgram(const std::string &name, std::vector<LaunchPlan> launches,
                 bool graph) override;
  Status run(BackendProgram &program, int64_t tokens, int64_t startPos,
             int64_t logitRows) override;
  int64_t launchesPerRun(const BackendProgram &program) const override;
  bool usesGraph(const BackendProgram &program) const override;
  LaunchCounters counters() const override;
  Status makeCurrent() override;
  Status startTimer() override;
  StatusOr<double> stopTimer() override;
  const char *timerName() const override { return "CUDA events"; }
  Status setKernelTiming(bool on) override;
  const std::vector<KernelTime> &kernelTimes() const override { return times; }

  const CudaDevice &device() const { return *dev; }
  /// The loaded module; null before loadKernels.
  const CudaModule *module() const { return mod.get(); }

  /// Alignment of every weight in the device pool.
  static constexpr uint64_t kWeightAlignment = 256;

private:
  CudaBackend() = default;
  /// Loads the runtime's own kernels once (generate, the copy).
  Status loadRuntimeKernels();

  /// A resolved kernel: its function and the artifact's launch geometry.
  struct Kernel {
    CUfunction fn = nullptr;
    uint32_t grid = 1;
    uint32_t block = 1;
    uint32_t sharedBytes = 0;
    std::string name;
    std::string symbol;
    /// A collective step (artifact.fbs): no function; f32 values per token.
    bool collective = false;
    /// Launched with programmatic dependent launch (its code waits for the
    /// grid before it: artifact.fbs, Kernel.programmatic; COMPRESSA_PDL=1).
    bool programmatic = false;
    uint64_t floatsPerToken = 0;
  };

  // Declared first, destroyed last: everything below lives on the device.
  std::unique_ptr<CudaDevice> dev;
  std::unique_ptr<CudaModule> mod;
  std::string path;
  std::vector<Kernel> kernels;
  CudaMemory weightPool;
  /// The device int64 triple {tokens, startPos, logitRows} that Tokens,
  /// StartPos and LogitRows entries point to.
  CudaMemory scalars;
  bool syncEachLaunch = false;
  /// startTimer/stopTimer's events.
  CudaEvent timerBegin, timerEnd;
  /// Kernel timing: one event before each launch of a run and one after.
  bool timing = false;
  std::vector<CudaEvent> launchEvents;
  std::vector<KernelTime> times;
  /// The runtime's own kernels and their argument block (64 bytes).
  std::unique_ptr<CudaModule> runtimeMod;
  CUfunction randomFillFn = nullptr;
  CUfunction copyFn = nullptr;
  CudaMemory runtimeArgs;
};

} // namespace compressa

#endif // COMPRESSA_RUNTIME_CUDA_CUDA_BACKEND_H
