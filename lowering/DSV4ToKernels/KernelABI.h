//===- KernelABI.h - How a kernel receives its operands ----------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// The calling convention between the runtime and every generated kernel. A
// kernel takes one pointer, the argument vector (runtime/format/artifact.fbs
// says what the runtime puts in each kind of slot):
//
//   slot 0  Tokens     S, the tokens of this call
//   slot 1  StartPos   the position of the call's first token
//   slot 2  Scratch    the kernel's scratch area
//   a batched decode kernel (dsv4.batched, program "decode_batch") then has
//   slot 3  Positions  the position of each token
//   slot 4  SlotIds    the sequence slot of each token
//   and its decode state operands are StateTables (one pointer per slot)
//   then, for each operand of the outlined dispatch, in order:
//     tensor                      Buffer       (1 slot)
//     routed experts (rank 3)     ExpertTable  (1 slot)
//     FP8/FP4 weight              Weight, WeightScale (2 slots)
//     other weight                Weight       (1 slot)
//     decode state                State        (1 slot)
//     index (start_pos)           -            (slot 1)
//   then, for each result: a tensor gets a Buffer slot; updated decode
//   state aliases the operand it updates and gets none;
//   then, last, in the one-sequence kernel that holds the model's head
//   (hc.head followed by nothing but rms_norm and lm_head):
//     LogitRows L (0 <= L <= S)   the head computes the logits of the
//                                 call's last L tokens into rows 0..L-1
//   (last rather than a fixed slot 3, so that no operand slot moves: a
//   kernel's operand slots are the same with or without it).
//
// The conversion to kernels binds values to these slots, the serializer
// resolves each launch's slots from the same list, and the runtime checks
// every launch against the sizes recorded here (the kernel's `dsv4.abi`).
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_DSV4TOKERNELS_KERNELABI_H
#define COMPRESSA_LOWERING_DSV4TOKERNELS_KERNELABI_H

#include "dialects/DSV4/IR/DSV4Dialect.h"
#include "runtime/format/artifact_generated.h"

#include "mlir/IR/BuiltinTypes.h"
#include "mlir/Support/LLVM.h"

#include <cstdint>
#include <string>

namespace mlir::compressa {

namespace fb = ::compressa::fb;

inline constexpr int64_t kTokensSlot = 0;
inline constexpr int64_t kStartPosSlot = 1;
inline constexpr int64_t kScratchSlot = 2;
/// Batched decode kernels only.
inline constexpr int64_t kPositionsSlot = 3;
inline constexpr int64_t kSlotIdsSlot = 4;
/// Grid-wide barriers meet on the 32-bit word this many bytes before the
/// scratch area (runtime/format/artifact.fbs, Kernel.grid_sync); the
/// barriers of part p of a grid (KernelBuilder::branches) on the word
/// 4 * (p + 1) bytes after it, all within the 64 bytes the runtime zeroes.
inline constexpr int64_t kSyncWordOffset = 64;

/// One argument slot: its kind and the size the kernel's code indexes
/// (schema table Param).
struct AbiParam {
  fb::ArgKind kind;
  uint64_t bytesPerToken = 0;
  uint64_t bytes = 0;
};

/// A decode-state allocation: `rows` fixed rows of `rowBytes` (a window,
/// compressor slots) plus, when `ratio` > 0, one row per `ratio` positions
/// of the context (compressed entries, indexer keys).
struct StateGeometry {
  int64_t rowBytes = 0;
  int64_t rows = 0;
  uint32_t ratio = 0;
  /// A compressor state (kv half zero, score half -inf at reset).
  bool compressor = false;
  /// The allocation's bytes for contexts up to `maxContext` (at least 1).
  int64_t bytes(int64_t maxContext) const;
};

/// The geometry of decode-state type `type`; failure for other types.
FailureOr<StateGeometry> stateGeometry(Type type);

/// The slots of one operand (`isResult` false) or result of a kernel
/// (`batched`: of a batched decode kernel).
SmallVector<AbiParam, 2> abiParamsOf(Type type, bool isResult,
                                     int64_t maxContext, bool batched = false);

/// The whole signature of an outlined dispatch of type `type`: the fixed
/// slots, then the operands' and the results' slots, then (`logitRows`: a
/// kernel holding the head) the LogitRows slot.
SmallVector<AbiParam> kernelAbi(FunctionType type, int64_t maxContext,
                                bool batched = false, bool logitRows = false);

//===----------------------------------------------------------------------===//
// Weights as the checkpoint stores them (spec §2.1)
//===----------------------------------------------------------------------===//

/// The safetensors dtype of one tensor of `type`: F32, BF16, I64, F8_E4M3,
/// or I8 (packed e2m1 pairs).
std::string weightDtype(dsv4::WeightType type);
/// The on-disk shape of one tensor (one expert of a rank-3 stack).
SmallVector<int64_t> weightDiskShape(dsv4::WeightType type);
/// The on-disk bytes of one tensor (one expert of a stack).
uint64_t weightBytes(dsv4::WeightType type);
/// The shape of the UE8M0 `.scale` companion of one tensor; empty when the
/// type has no block scales.
SmallVector<int64_t> scaleShape(dsv4::WeightType type);
uint64_t scaleBytes(dsv4::WeightType type);
/// "x.scale" for weight "x.weight".
std::string scaleName(StringRef weightName);

} // namespace mlir::compressa

#endif // COMPRESSA_LOWERING_DSV4TOKERNELS_KERNELABI_H
