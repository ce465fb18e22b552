//===- OpEmitters.cpp - dsv4 ops -> CPU kernel code ---------------------===//
// SPDX-License-Identifier: Apache-2.0
//
// The entry point of op emission: the pattern set of every op family
// (Patterns/*.cpp) picks the emitter of an op.
//
//===----------------------------------------------------------------------===//

#include "lowering/DSV4ToKernels/OpEmitters.h"
#include "lowering/DSV4ToKernels/Emitter.h"
#include "lowering/DSV4ToKernels/Patterns.h"
#include "dialects/DSV4/IR/DSV4Ops.h"
#include "llvm/Support/MathExtras.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"

#include <cmath>

using namespace mlir;
using namespace mlir::compressa::cpu;
using namespace mlir::dsv4;

WeightView ExpertView::expert(KernelBuilder &kb, Value e) const {
  WeightView w;
  w.data = kb.loadPtr(table, e);
  w.scale = kb.loadPtr(table, kb.add(e, kb.c(count)));
  w.elt = elt;
  w.rows = rows;
  w.cols = cols;
  w.readOnly = true;
  return w;
}

void mlir::compressa::cpu::useScratchArea(KernelBuilder &kb, EmitContext &ctx,
                                          Value base, int64_t &perToken,
                                          int64_t &fixed) {
  perToken = fixed = 0;
  ctx.scratch = [&kb, &ctx, base, &perToken, &fixed](int64_t partPerToken,
                                                      int64_t partBytes) -> Value {
    partPerToken = llvm::alignTo(partPerToken, 64);
    partBytes = llvm::alignTo(partBytes, 64);
    Value off = kb.add(kb.mul(kb.c(perToken), ctx.tokens), kb.c(fixed));
    perToken += partPerToken;
    fixed += partBytes;
    return kb.offset(kb.builder().getI8Type(), base, off);
  };
}

void KernelPatternSet::addPattern(TypeID op, KernelPattern pattern) {
  patterns[op] = std::move(pattern);
}

const KernelPattern *KernelPatternSet::lookup(Operation *op) const {
  auto it = patterns.find(op->getName().getTypeID());
  return it == patterns.end() ? nullptr : &it->second;
}

void mlir::compressa::cpu::populateAllKernelPatterns(KernelPatternSet &patterns) {
  populateEmbedPatterns(patterns);
  populateNormPatterns(patterns);
  populateHyperConnPatterns(patterns);
  populateAttentionPatterns(patterns);
  populateCompressorPatterns(patterns);
  populateMoePatterns(patterns);
}

LogicalResult mlir::compressa::cpu::emitOp(KernelBuilder &kb, Operation *op, EmitContext &ctx,
                          const KernelPatternSet &patterns) {
  const KernelPattern *pattern = patterns.lookup(op);
  if (!pattern)
    return op->emitOpError("has no kernel pattern");
  Emitter emitter(kb, ctx);
  (*pattern)(emitter, op);
  return success();
}

LogicalResult mlir::compressa::cpu::emitOp(KernelBuilder &kb, Operation *op, EmitContext &ctx) {
  static const KernelPatternSet all = [] {
    KernelPatternSet set;
    populateAllKernelPatterns(set);
    return set;
  }();
  return emitOp(kb, op, ctx, all);
}
