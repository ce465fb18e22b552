//===- Norm.cpp - RMS norm kernels -===//
// SPDX-License-Identifier: Apache-2.0
//
// dsv4.rms_norm: one inverse RMS per token (a warp per row on CUDA), then
// the scaled elements.
//
//===----------------------------------------------------------------------===//

#include "lowering/DSV4ToKernels/Emitter.h"
#include "lowering/DSV4ToKernels/Patterns.h"

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
  rmsNormRows(x, y, kb.mul(S(), c(rows)), n, eps, op.getWeight() ? &weight : nullptr,
              scratchF32(rows, 0));
}

void mlir::compressa::cpu::populateNormPatterns(KernelPatternSet &patterns) {
  patterns.add(&Emitter::rmsNormOp);
}
