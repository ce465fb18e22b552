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

#endif // COMPRESSA_DIALECTS_DSV4_IR_DSV4OPS_H
