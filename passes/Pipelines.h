//===- Pipelines.h - The compiler's pass pipeline ----------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// The whole pipeline, in one place: compressa-compile builds exactly what
// compressa-opt runs with `--compressa-pipeline`, stage by stage:
//
//   dispatch  dsv4-specialize-shapes, cse, dsv4-select-numerics,
//             dsv4-form-dispatches, dsv4-plan-memory
//   outline   dsv4-outline-dispatches, dsv4-deduplicate-kernels
//   kernels   convert-dsv4-to-kernels{target}
//   llvm      lower-kernels-to-llvm{target}
//
// then serializeArtifact (lowering/KernelsToArtifact) writes the artifact.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_PASSES_PIPELINES_H
#define COMPRESSA_PASSES_PIPELINES_H

#include "mlir/Pass/PassOptions.h"

#include <cstdint>
#include <string>

namespace mlir {
class OpPassManager;
namespace compressa {

/// The stages of the pipeline, in order.
enum class Stage { Dispatch, Outline, Kernels, LLVM };

/// "dispatch", "outline", "kernels" or "llvm".
const char *stageName(Stage stage);

struct PipelineOptions : public PassPipelineOptions<PipelineOptions> {
  Option<std::string> target{
      *this, "target",
      llvm::cl::desc("Target: cpu, or cuda:<chip> (e.g. cuda:sm_90a)"),
      llvm::cl::init("cpu")};
  Option<std::string> startAfter{
      *this, "start-after",
      llvm::cl::desc("Stage the input has been through already (none, "
                     "dispatch, outline or kernels): later stages only"),
      llvm::cl::init("none")};
  Option<std::string> stopAfter{
      *this, "stop-after",
      llvm::cl::desc("Last stage to run: dispatch, outline, kernels or llvm"),
      llvm::cl::init("llvm")};
  Option<int64_t> prefillMaxTokens{
      *this, "prefill-max-tokens",
      llvm::cl::desc("Most tokens one prefill call takes"), llvm::cl::init(64)};
  Option<int64_t> maxContext{
      *this, "max-context",
      llvm::cl::desc("Longest context (prompt + generation) the decode state "
                     "holds"),
      llvm::cl::init(4096)};
  Option<int64_t> gridWeightBytes{
      *this, "grid-weight-bytes",
      llvm::cl::desc("CUDA: kernels reading at least this many bytes of "
                     "weights and state use every multiprocessor; 0: all"),
      llvm::cl::init(int64_t(256) << 10)};
  Option<int64_t> l2PrefetchBytes{
      *this, "l2-prefetch-bytes",
      llvm::cl::desc("CUDA: bytes of weights a grid-wide kernel asks the L2 "
                     "cache to prefetch when it starts; 0: none"),
      llvm::cl::init(0)};
  Option<int64_t> maxRegisters{
      *this, "max-registers",
      llvm::cl::desc("CUDA: the most registers per thread of a grid-wide "
                     "kernel (PTX .maxnreg); 0: ptxas chooses"),
      llvm::cl::init(128)};
  Option<std::string> numerics{
      *this, "numerics",
      llvm::cl::desc("exact (f32 activations, the default) or fast (the "
                     "prefill program's FP8 linear layers quantise "
                     "activations 1x128 with UE8M0 scales and run FP8 x FP8 "
                     "block-scaled GEMMs) or fast-decode (fast, and the "
                     "decode programs' experts in FP8 GEMM semantics on tensor "
                     "cores)"),
      llvm::cl::init("exact")};
  Option<bool> bufferReuse{
      *this, "buffer-reuse",
      llvm::cl::desc("Reuse arena slots of dead values"), llvm::cl::init(true)};
};

/// Adds the stages up to and including `stop` to `pm` (anchored on the
/// module). Fails (with a message in `error`) on a bad option.
LogicalResult buildCompressaPipeline(OpPassManager &pm,
                                     const PipelineOptions &options,
                                     std::string &error);

/// Registers `compressa-pipeline`.
void registerPipelines();

} // namespace compressa
} // namespace mlir

#endif // COMPRESSA_PASSES_PIPELINES_H
