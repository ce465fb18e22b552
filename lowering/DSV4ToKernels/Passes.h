//===- Passes.h - dsv4 dispatches -> kernels ---------------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
#ifndef COMPRESSA_LOWERING_DSV4TOKERNELS_PASSES_H
#define COMPRESSA_LOWERING_DSV4TOKERNELS_PASSES_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir::compressa {

#define GEN_PASS_DECL
#include "lowering/DSV4ToKernels/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "lowering/DSV4ToKernels/Passes.h.inc"

} // namespace mlir::compressa

#endif // COMPRESSA_LOWERING_DSV4TOKERNELS_PASSES_H
