//===- DSV4Dialect.h - The dsv4 dialect, its types and attributes -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
#ifndef COMPRESSA_DIALECTS_DSV4_IR_DSV4DIALECT_H
#define COMPRESSA_DIALECTS_DSV4_IR_DSV4DIALECT_H

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"

#include "dialects/DSV4/IR/DSV4Dialect.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/DSV4/IR/DSV4Attrs.h.inc"

#define GET_TYPEDEF_CLASSES
#include "dialects/DSV4/IR/DSV4Types.h.inc"

#endif // COMPRESSA_DIALECTS_DSV4_IR_DSV4DIALECT_H
