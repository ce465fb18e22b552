//===- Pipelines.cpp - The compiler's pass pipeline ----------------------===//
// SPDX-License-Identifier: Apache-2.0

#include "passes/Pipelines.h"
#include "lowering/DSV4ToKernels/Passes.h"
#include "lowering/Target/TargetInfo.h"
#include "lowering/TensorCore/Numerics.h"
#include "passes/Model/Passes.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/StringSwitch.h"

using namespace mlir;
using namespace mlir::compressa;

const char *compressa::stageName(Stage stage) {
  switch (stage) {
  case Stage::Dispatch:
    return "dispatch";
  case Stage::Outline:
    return "outline";
  case Stage::Kernels:
    return "kernels";
  case Stage::LLVM:
    return "llvm";
  }
  return "?";
}

LogicalResult compressa::buildCompressaPipeline(OpPassManager &pm,
                                                const PipelineOptions &options,
                                                std::string &error) {
  auto parseStage = [](StringRef name) {
    return llvm::StringSwitch<std::optional<int>>(name)
        .Case("none", -1)
        .Case("dispatch", int(Stage::Dispatch))
        .Case("outline", int(Stage::Outline))
        .Case("kernels", int(Stage::Kernels))
        .Case("llvm", int(Stage::LLVM))
        .Default(std::nullopt);
  };
  std::optional<int> stop = parseStage(options.stopAfter.getValue());
  if (!stop || *stop < 0) {
    error = "unknown stop-after stage '" + options.stopAfter.getValue() +
            "' (expected dispatch, outline, kernels or llvm)";
    return failure();
  }
  std::optional<int> start = parseStage(options.startAfter.getValue());
  if (!start || *start >= *stop) {
    error = "start-after stage '" + options.startAfter.getValue() +
            "' must be none, dispatch, outline or kernels, before stop-after '" +
            options.stopAfter.getValue() + "'";
    return failure();
  }
  auto runs = [&](Stage s) { return int(s) > *start && int(s) <= *stop; };
  if (!createTarget(options.target, error))
    return failure();
  if (options.prefillMaxTokens < 1 || options.maxContext < 1) {
    error = "prefill-max-tokens and max-context must be >= 1";
    return failure();
  }

  std::optional<Numerics> numerics = parseNumerics(options.numerics.getValue());
  if (!numerics) {
    error = "unknown numerics '" + options.numerics.getValue() +
            "' (expected exact, fast or fast-decode)";
    return failure();
  }

  // dispatch: bound each program's token count first (memory planning sizes
  // buffers from the bounds); drop what no program uses before grouping;
  // fusion decides which values never leave a kernel, memory planning then
  // places only those that do.
  if (runs(Stage::Dispatch)) {
    pm.addPass(dsv4::createDSV4SpecializeShapesPass(
        dsv4::DSV4SpecializeShapesPassOptions{options.prefillMaxTokens,
                                              options.maxContext}));
    pm.addPass(createCSEPass());
    // Before grouping: the ops `fast` marks must not merge with decode's.
    pm.addPass(createSelectNumericsPass(*numerics));
    OpPassManager &fpm = pm.nest<func::FuncOp>();
    // Decode's projections and compressors side by side (dsv4-form-dispatches'
    // branches=true): on an H100 the V4-Flash 2:6 decode step took 1438-1444
    // us with them against 1563 (docs/perf.md, eighteenth session).
    // COMPRESSA_BRANCHES=0 at compile time: each a launch of its own, for
    // A/B runs.
    dsv4::DSV4FormDispatchesPassOptions form;
    const char *sideBySide = std::getenv("COMPRESSA_BRANCHES");
    form.branches = !(sideBySide && std::string(sideBySide) == "0");
    // COMPRESSA_ATTENTION_LAUNCH=1 at compile time (an experiment): decode's
    // attention and output projection in the launch of the projections
    // before them (attention-launch=true). Measured on an H100 (docs/perf.md,
    // twentieth session): the same bits, but V4-Flash 2:6's step took
    // 1413-1416 us against 1401-1402 and V4-Pro 0:3's 2050-2055 against
    // 2008-2016, so it stays off.
    const char *attentionLaunch = std::getenv("COMPRESSA_ATTENTION_LAUNCH");
    form.attentionLaunch = attentionLaunch && std::string(attentionLaunch) == "1";
    fpm.addPass(dsv4::createDSV4FormDispatchesPass(form));
    fpm.addPass(dsv4::createDSV4PlanMemoryPass(
        dsv4::DSV4PlanMemoryPassOptions{options.bufferReuse}));
  }
  // outline: each dispatch a kernel function, one per structure.
  if (runs(Stage::Outline)) {
    pm.addPass(dsv4::createDSV4OutlineDispatchesPass());
    pm.addPass(dsv4::createDSV4DeduplicateKernelsPass());
  }
  // kernels: the target's kernels, built by the op families' patterns.
  if (runs(Stage::Kernels))
    pm.addPass(createConvertDSV4ToKernelsPass(ConvertDSV4ToKernelsPassOptions{
        options.target, options.gridWeightBytes, options.l2PrefetchBytes,
        options.maxRegisters}));
  // llvm: the target's lowering to the LLVM dialect.
  if (runs(Stage::LLVM))
    pm.addPass(createLowerKernelsToLLVMPass(
        LowerKernelsToLLVMPassOptions{options.target}));
  return success();
}

void compressa::registerPipelines() {
  PassPipelineRegistration<PipelineOptions>(
      "compressa-pipeline",
      "The whole compiler up to a stage: dispatch (bound token counts, form "
      "dispatches, plan memory), outline (kernel functions and launches, "
      "deduplicated), kernels (the target's kernels), llvm (in the LLVM "
      "dialect)",
      [](OpPassManager &pm, const PipelineOptions &options) {
        std::string error;
        if (failed(buildCompressaPipeline(pm, options, error)))
          llvm::report_fatal_error(llvm::Twine("compressa-pipeline: ") + error,
                                   /*gen_crash_diag=*/false);
      });
}
