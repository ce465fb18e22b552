//===- Norm.cpp - RMS norm kernels -===//
// SPDX-License-Identifier: Apache-2.0
//
// dsv4.rms_norm: one inverse RMS per token (a warp per row on CUDA), then
// the scaled elements.
//
//===----------------------------------------------------------------------===//

#include "lowering/DSV4ToKernels/Emitter.h"
#include "lowering/DSV4ToKernels/Patterns.h"
#include "lowering/DSV4ToKernels/TensorCoreGemm.h"
#include "lowering/TensorCore/Numerics.h"

#include <cmath>

using namespace mlir;
using namespace mlir::compressa;
using namespace mlir::compressa::cpu;
using namespace mlir::dsv4;

void Emitter::rmsNormOp(RmsNormOp op) {
  View x = view(op.getX()), y = view(op.getResult());
  auto shape = op.getX().getType().getShape();
  int64_t n = shape.back(), rows = perToken(op.getX()) / n;
  WeightView weight;
  if (op.getWeight())
    weight = w(op.getWeight());
  double eps = op.getEps().convertToDouble();
  // Read by decode experts of --numerics=fast-decode (a row a token): their
  // act_quant of x is made here, in the step that scales the row
  // (Emitter::expertsFp8Decode uses it instead of a step of its own).
  bool quantize = rows == 1 && n % kQuantBlock == 0 &&
                  llvm::any_of(op.getResult().getUsers(), [&](Operation *user) {
                    auto experts = dyn_cast<MoeExpertsOp>(user);
                    return experts && experts.getX() == op.getResult() &&
                           !experts.getFirstExpert() && usesFp8Experts(experts);
                  });
  EmitContext::Quantized quant;
  if (quantize) {
    quant = {ctx.scratch(n, 0), ctx.scratch(n / kQuantBlock, 0)};
    ctx.quantized[op.getResult()] = quant;
  }
  auto given = ctx.normPartials.find(op.getX());
  rmsNormRows(x, y, kb.mul(S(), c(rows)), n, eps, op.getWeight() ? &weight : nullptr,
              scratchF32(rows, 0), quantize ? &quant : nullptr,
              given == ctx.normPartials.end() ? nullptr : &given->second);
}

void Emitter::emitQuantKeeping(function_ref<Value(Value)> rowInit,
                               function_ref<Value(Value, Value, Value)> valueAt, View y,
                               Value rows, int64_t n, const EmitContext::Quantized &quant) {
  emitActQuantKeeping(kb, rowInit, valueAt, y, rows, n, quant.codes, quant.scales);
}

void Emitter::emitQuantOf(View y, Value rows, int64_t n, const EmitContext::Quantized &quant) {
  emitActQuant(kb, y, n, rows, n, quant.codes, quant.scales);
}

void mlir::compressa::cpu::populateNormPatterns(KernelPatternSet &patterns) {
  patterns.add(&Emitter::rmsNormOp);
}
