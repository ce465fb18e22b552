//===- Pipelines.h - The compiler's pass pipelines ---------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// Every pipeline, in one place: compressa-compile builds exactly what
// compressa-opt runs with `--dsv4-dispatch-pipeline`.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_PASSES_PIPELINES_H
#define COMPRESSA_PASSES_PIPELINES_H

#include "mlir/Pass/PassOptions.h"

#include <cstdint>

namespace mlir {
class OpPassManager;
namespace compressa {

struct DispatchPipelineOptions
    : public PassPipelineOptions<DispatchPipelineOptions> {
  Option<int64_t> prefillMaxTokens{
      *this, "prefill-max-tokens",
      llvm::cl::desc("Most tokens one prefill call takes"), llvm::cl::init(64)};
};

/// dsv4 programs -> bounded, dispatched, memory-planned programs, ready for
/// a target's serializer.
void buildDispatchPipeline(OpPassManager &pm, int64_t prefillMaxTokens,
                           bool bufferReuse = true);

/// Registers `dsv4-dispatch-pipeline`.
void registerPipelines();

} // namespace compressa
} // namespace mlir

#endif // COMPRESSA_PASSES_PIPELINES_H
