//===- SerializeArtifact.h - dsv4 programs -> .cpa artifact ------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// After dsv4-specialize-shapes, dsv4-form-dispatches and dsv4-plan-memory:
//
//   program (func)  ──▶ Program { launches [kernel, args], arena, buffers }
//   dispatch (ops with one dsv4.dispatch id) ──emitters──▶ kernel function
//   kernels (deduplicated) ──CpuCodegen──▶ shared object
//   dsv4.param / state arguments ──▶ weight manifest / decode-state table
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_ARTIFACT_SERIALIZEARTIFACT_H
#define COMPRESSA_LOWERING_ARTIFACT_SERIALIZEARTIFACT_H

#include "frontend/Config/ModelConfig.h"
#include "lowering/Target/CPU/CpuCodegen.h"
#include "lowering/Target/CUDA/CudaCodegen.h"

#include "mlir/IR/BuiltinOps.h"

#include <functional>
#include <string>

namespace mlir::compressa {

struct ArtifactOptions {
  enum class Target { Cpu, Cuda } target = Target::Cpu;
  /// Longest context (prompt + generation) the decode state holds.
  int64_t maxContext = 4096;
  cpu::CpuCodegenOptions cpu;
  cuda::CudaCodegenOptions cuda;
  /// The text of the config.json, stored in the artifact.
  std::string configJson;
  /// Called after each dispatch is turned into a kernel (done, total), and
  /// with done == total when device code generation starts.
  std::function<void(int64_t done, int64_t total)> progress;
};

/// Statistics of a serialization, for tools and tests.
struct ArtifactStats {
  int64_t kernels = 0;     ///< distinct kernels compiled
  int64_t launches = 0;    ///< launches over all programs
  int64_t codeBytes = 0;   ///< size of the device code
  std::string ptx;         ///< the PTX text (CUDA target)
};

/// Serializes the programs of `module` for `options.target`. The kernels are
/// emitted into a separate module; `module` is only read.
FailureOr<std::string> serializeArtifact(ModuleOp module,
                                         const ModelConfig &config,
                                         const ArtifactOptions &options,
                                         ArtifactStats &stats);

} // namespace mlir::compressa

#endif // COMPRESSA_LOWERING_ARTIFACT_SERIALIZEARTIFACT_H
