//===- DSV4Ops.h - dsv4 operations -------------------------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
#ifndef COMPRESSA_DIALECTS_DSV4_IR_DSV4OPS_H
#define COMPRESSA_DIALECTS_DSV4_IR_DSV4OPS_H

#include "dialects/DSV4/IR/DSV4Dialect.h"

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#define GET_OP_CLASSES
#include "dialects/DSV4/IR/DSV4Ops.h.inc"

#include <string>

namespace mlir::dsv4 {

/// The checkpoint component an op computes ("layers.3.attn"): the NameLoc
/// the frontend gives it; the op's name when it has none.
std::string componentName(Operation *op);

/// The decode state that state value `v` updates in place (the ring of a
/// kv.window_update, the state or entries of a kv.compress), or null.
Value updatedState(Value v);

} // namespace mlir::dsv4

#endif // COMPRESSA_DIALECTS_DSV4_IR_DSV4OPS_H
