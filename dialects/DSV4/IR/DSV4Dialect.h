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

namespace mlir::dsv4 {

/// The contract attributes, written by the passes and read by the lowering;
/// the dialect verifies each (DSV4Dialect.cpp, "Contract attributes").
///
/// On ops:
///   dsv4.dispatch = N : i64      the op runs in dispatch N (one kernel launch)
///   dsv4.buffers = [array<i64: offset, bytes>, ...]
///                                one arena slot per result; offset -1 (bytes
///                                0): the value never leaves its dispatch
/// On a program (func.func):
///   dsv4.max_tokens = N : i64    1 <= tokens of one call <= N
///   dsv4.arena_bytes = B : i64   every slot of the program lies in [0, B)
/// On a program argument:
///   dsv4.buffer = array<i64: offset, bytes>   the arena slot of input_ids
///   dsv4.state = "name"          a decode-state argument and its name
///   dsv4.input = "name"          a runtime input (input_ids, start_pos, ...)
/// On the module:
///   dsv4.model = "name"          the model the programs compute
///   dsv4.model_info = {vocab_size, hidden_size, bos_token_id, eos_token_id,
///                      n_routed_experts : i64}   what the runtime needs of it
///   dsv4.config_json = "..."     the config.json it was built from
///   dsv4.max_context = N : i64   longest context the decode state holds
///   dsv4.numerics = "exact"|"fast"|"fast-decode"  compressa-compile --numerics
/// On a dsv4 op (--numerics=fast, set by dsv4-select-numerics):
///   dsv4.numerics = "fast"       its FP8 linear layers quantise activations
///                                (1x128, UE8M0) and run FP8 x FP8 GEMMs
///   dsv4.numerics = "fp8"        (a decode moe.experts, --numerics=fast-decode)
///                                the experts in FP8 GEMM semantics (e4m3
///                                activations) on tensor cores
/// On a kernel (func.func after outlining, the target's kernel after
/// conversion):
///   dsv4.kernel = "name"         a kernel and its readable name
///   dsv4.abi = {params = array<i64: kind, bytes_per_token, bytes, ...>,
///               scratch = array<i64: bytes_per_token, bytes>, block = N}
///                                the converted kernel's signature (KernelABI.h)
/// On a program and its kernels (compressa-compile --max-batch B > 1):
///   dsv4.batched = B : i64       @decode_batch: each of its up to B tokens
///                                is the next token of its own sequence, at
///                                its own position, in its own state slot;
///                                its kernels carry the attribute too and
///                                take Positions, SlotIds and StateTables
inline constexpr llvm::StringLiteral kBatchedAttr = "dsv4.batched";
/// A unit on a kernel function that only single-token programs launch (a
/// program of dsv4.max_tokens = 1, not batched): its weight rows are read
/// once a launch, so their loads may bypass L1 (KernelBuilder::dotRows).
inline constexpr llvm::StringLiteral kSingleTokenAttr = "dsv4.single_token";
inline constexpr llvm::StringLiteral kDispatchAttr = "dsv4.dispatch";
/// On ops of one dispatch that run side by side (dsv4-form-dispatches'
/// branches=true): the ops of branch i (an i64) read nothing the other
/// branches write; each branch runs on its own part of the grid.
inline constexpr llvm::StringLiteral kBranchAttr = "dsv4.branch";
inline constexpr llvm::StringLiteral kMaxTokensAttr = "dsv4.max_tokens";
inline constexpr llvm::StringLiteral kBuffersAttr = "dsv4.buffers";
inline constexpr llvm::StringLiteral kBufferAttr = "dsv4.buffer";
inline constexpr llvm::StringLiteral kArenaBytesAttr = "dsv4.arena_bytes";
inline constexpr llvm::StringLiteral kStateAttr = "dsv4.state";
inline constexpr llvm::StringLiteral kInputAttr = "dsv4.input";
inline constexpr llvm::StringLiteral kModelAttr = "dsv4.model";
inline constexpr llvm::StringLiteral kModelInfoAttr = "dsv4.model_info";
inline constexpr llvm::StringLiteral kConfigJsonAttr = "dsv4.config_json";
inline constexpr llvm::StringLiteral kMaxContextAttr = "dsv4.max_context";
inline constexpr llvm::StringLiteral kNumericsAttr = "dsv4.numerics";
/// A unit on a dsv4.moe.experts: its exact kernel takes the tensor-core
/// program (ExactMma.cpp; on the CPU its twin), as COMPRESSA_EXACT_MMA=1 at
/// compile time does for every such op; unit tests mark ops with it.
inline constexpr llvm::StringLiteral kExactMmaAttr = "dsv4.exact_mma";
inline constexpr llvm::StringLiteral kKernelAttr = "dsv4.kernel";
inline constexpr llvm::StringLiteral kAbiAttr = "dsv4.abi";
/// The keys of dsv4.model_info, each an i64.
inline constexpr llvm::StringLiteral kModelInfoKeys[] = {
    "vocab_size", "hidden_size", "bos_token_id", "eos_token_id",
    "n_routed_experts"};

} // namespace mlir::dsv4

#endif // COMPRESSA_DIALECTS_DSV4_IR_DSV4DIALECT_H
