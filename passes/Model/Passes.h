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

/// Attribute names the passes write and the serializer reads.
inline constexpr llvm::StringLiteral kDispatchAttr = "dsv4.dispatch";
inline constexpr llvm::StringLiteral kMaxTokensAttr = "dsv4.max_tokens";
inline constexpr llvm::StringLiteral kBuffersAttr = "dsv4.buffers";
inline constexpr llvm::StringLiteral kBufferAttr = "dsv4.buffer";
inline constexpr llvm::StringLiteral kArenaBytesAttr = "dsv4.arena_bytes";

/// Whether `op` computes (runs in a dispatch), as opposed to naming a weight
/// or terminating the program.
bool isComputeOp(Operation *op);

} // namespace mlir::dsv4

#endif // COMPRESSA_PASSES_MODEL_PASSES_H
