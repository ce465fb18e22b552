//===- SpecializeShapes.cpp - Bound the token count of programs ---------===//
// SPDX-License-Identifier: Apache-2.0

#include "passes/Model/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"

namespace mlir::dsv4 {
#define GEN_PASS_DEF_DSV4SPECIALIZESHAPESPASS
#include "passes/Model/Passes.h.inc"
} // namespace mlir::dsv4

using namespace mlir;
using namespace mlir::dsv4;

namespace {
struct SpecializeShapes
    : dsv4::impl::DSV4SpecializeShapesPassBase<SpecializeShapes> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (prefillMaxTokens < 1) {
      module.emitError() << "prefill-max-tokens must be >= 1, got "
                         << static_cast<int64_t>(prefillMaxTokens);
      return signalPassFailure();
    }
    if (maxContext < 1) {
      module.emitError() << "max-context must be >= 1, got "
                         << static_cast<int64_t>(maxContext);
      return signalPassFailure();
    }
    OpBuilder b(module.getContext());
    module->setAttr(kMaxContextAttr, b.getI64IntegerAttr(maxContext));
    for (auto func : module.getOps<func::FuncOp>()) {
      int64_t bound;
      if (auto batch = func->getAttrOfType<IntegerAttr>(kBatchedAttr))
        bound = batch.getInt(); // @decode_batch: one token per sequence
      else if (func.getName() == "decode")
        bound = 1;
      else if (func.getName() == "prefill" || func.getName() == "mtp")
        bound = prefillMaxTokens;
      else
        continue;
      // The decode program's token dimension is static 1 already.
      auto ids = dyn_cast<RankedTensorType>(func.getArgumentTypes().front());
      if (ids && !ids.isDynamicDim(0) && ids.getDimSize(0) != bound) {
        func.emitError() << "program @" << func.getName() << " takes "
                         << ids.getDimSize(0) << " tokens, cannot bound it by "
                         << bound;
        return signalPassFailure();
      }
      func->setAttr(kMaxTokensAttr, b.getI64IntegerAttr(bound));
    }
  }
};
} // namespace
