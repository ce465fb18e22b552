//===- TargetInfo.cpp - The target interface's defaults and registry -----===//
// SPDX-License-Identifier: Apache-2.0

#include "lowering/Target/TargetInfo.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"

using namespace mlir;
using namespace mlir::compressa;

// A target with blockThreads() == 1 runs sequential code: KernelBuilder
// never asks it for thread ids, barriers or shuffles.
Value TargetInfo::threadId(OpBuilder &, Location) const {
  llvm_unreachable("threadId on a sequential target");
}
Value TargetInfo::threadCount(OpBuilder &, Location) const {
  llvm_unreachable("threadCount on a sequential target");
}
Value TargetInfo::blockId(OpBuilder &, Location) const {
  llvm_unreachable("blockId on a sequential target");
}
Value TargetInfo::blockCount(OpBuilder &, Location) const {
  llvm_unreachable("blockCount on a sequential target");
}
void TargetInfo::barrier(OpBuilder &, Location, Value, Value, Value) const {
  llvm_unreachable("barrier on a sequential target");
}
Value TargetInfo::shuffleXor(OpBuilder &, Location, Value, int64_t, int64_t) const {
  llvm_unreachable("shuffleXor on a sequential target");
}
Value TargetInfo::shuffleIdx(OpBuilder &, Location, Value, Value, int64_t) const {
  llvm_unreachable("shuffleIdx on a sequential target");
}

void TargetInfo::loadF32x4(OpBuilder &b, Location loc, Value ptr, Value out[4]) const {
  Value v = LLVM::LoadOp::create(b, loc, VectorType::get({4}, b.getF32Type()), ptr,
                                 /*alignment=*/16);
  for (int i = 0; i < 4; ++i)
    out[i] = LLVM::ExtractElementOp::create(
        b, loc, v, arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(i)));
}

Value TargetInfo::loadScalarArg(OpBuilder &b, Location loc, Value entry) const {
  return LLVM::PtrToIntOp::create(b, loc, b.getI64Type(), entry);
}

Value TargetInfo::math(OpBuilder &b, Location loc, MathFn fn, Value x) const {
  return createMath(b, loc, fn, x);
}

Value compressa::createMath(OpBuilder &b, Location loc, MathFn fn, Value x) {
  switch (fn) {
  case MathFn::Exp:
    return math::ExpOp::create(b, loc, x);
  case MathFn::Log:
    return math::LogOp::create(b, loc, x);
  case MathFn::Sqrt:
    return math::SqrtOp::create(b, loc, x);
  case MathFn::Cos:
    return math::CosOp::create(b, loc, x);
  case MathFn::Sin:
    return math::SinOp::create(b, loc, x);
  }
  llvm_unreachable("unknown MathFn");
}

