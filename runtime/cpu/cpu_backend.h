// SPDX-License-Identifier: Apache-2.0
// The CPU backend: kernels from the artifact's shared object (CpuModule),
// called as `void symbol(void **argv)` with host pointers and the Tokens and
// StartPos values in their pointer slots; weights used in place in the
// mapped checkpoint; memory from AlignedBuffer.
#ifndef COMPRESSA_RUNTIME_CPU_CPU_BACKEND_H
#define COMPRESSA_RUNTIME_CPU_CPU_BACKEND_H

#include "runtime/cpu/cpu_module.h"
#include "runtime/session/backend.h"

#include <memory>
#include <vector>

namespace compressa {

class CpuBackend final : public Backend {
public:
  CpuBackend() = default;

  const char *name() const override { return "cpu"; }
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
  Status generate(BackendBuffer &dst, uint64_t offset, RandomSpec spec,
                  const std::string &what) override;
  StatusOr<double> measureCopyBandwidth(uint64_t bytes, int repeats) override;
  StatusOr<std::unique_ptr<BackendProgram>>
  prepareProgram(const std::string &name, std::vector<LaunchPlan> launches,
                 bool graph) override;
  Status run(BackendProgram &program, int64_t tokens, int64_t startPos,
             int64_t logitRows) override;
  int64_t launchesPerRun(const BackendProgram &program) const override;
  bool usesGraph(const BackendProgram &) const override { return false; }
  LaunchCounters counters() const override { return launchCounters; }
  Status setKernelTiming(bool on) override;
  const std::vector<KernelTime> &kernelTimes() const override { return times; }

private:
  bool timing = false;
  std::vector<KernelTime> times;
  std::unique_ptr<CpuModule> module;
  std::vector<CpuModule::KernelFn> kernels;
  /// Per kernel: f32 values per token of a collective step, else 0.
  std::vector<uint64_t> collectiveFloatsPerToken;
  LaunchCounters launchCounters;
};

} // namespace compressa

#endif // COMPRESSA_RUNTIME_CPU_CPU_BACKEND_H
