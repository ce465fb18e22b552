//===- Passes.h - Passes on dsv4 programs ------------------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
#ifndef COMPRESSA_PASSES_MODEL_PASSES_H
#define COMPRESSA_PASSES_MODEL_PASSES_H

#include "dialects/DSV4/IR/DSV4Dialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir::dsv4 {

#define GEN_PASS_DECL
#include "passes/Model/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "passes/Model/Passes.h.inc"

/// Whether `op` computes (runs in a dispatch), as opposed to naming a weight
/// or terminating the program.
bool isComputeOp(Operation *op);

} // namespace mlir::dsv4

#endif // COMPRESSA_PASSES_MODEL_PASSES_H
