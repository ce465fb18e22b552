//===- Pipelines.cpp - The compiler's pass pipelines ---------------------===//
// SPDX-License-Identifier: Apache-2.0

#include "passes/Pipelines.h"
#include "passes/Model/Passes.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

void compressa::buildDispatchPipeline(OpPassManager &pm, int64_t prefillMaxTokens,
                                      bool bufferReuse) {
  // Bound each program's token count first: memory planning sizes buffers
  // from the bounds.
  pm.addPass(dsv4::createDSV4SpecializeShapesPass(
      dsv4::DSV4SpecializeShapesPassOptions{prefillMaxTokens}));
  // Drop what no program uses (e.g. weights of an unused program) before
  // grouping, so dispatches see only live ops.
  pm.addPass(createCSEPass());
  // Fusion decides which values never leave a kernel; memory planning then
  // places only those that do.
  OpPassManager &fpm = pm.nest<func::FuncOp>();
  fpm.addPass(dsv4::createDSV4FormDispatchesPass());
  fpm.addPass(dsv4::createDSV4PlanMemoryPass(
      dsv4::DSV4PlanMemoryPassOptions{bufferReuse}));
}

void compressa::registerPipelines() {
  PassPipelineRegistration<DispatchPipelineOptions>(
      "dsv4-dispatch-pipeline",
      "Bound token counts, form dispatches and plan memory of dsv4 programs",
      [](OpPassManager &pm, const DispatchPipelineOptions &options) {
        buildDispatchPipeline(pm, options.prefillMaxTokens);
      });
}
