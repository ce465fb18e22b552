//===- OpEmitters.h - dsv4 ops -> CPU kernel code ----------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// One emitter per dsv4 op. An emitter reads its operands and writes its
// results through the views of an EmitContext, so the same code serves an op
// whose values live in program buffers, in decode state or in the kernel's
// scratch (when a producer and its consumer are fused into one dispatch).
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_CPU_OPEMITTERS_H
#define COMPRESSA_LOWERING_CPU_OPEMITTERS_H

#include "lowering/DSV4ToKernels/KernelBuilder.h"

#include "llvm/ADT/DenseMap.h"

#include <functional>

namespace mlir::compressa::cpu {

/// Columns per activation scale block, and rows/columns per weight block.
inline constexpr int64_t kQuantBlock = 128;

/// A stack of routed experts: a table of 2*count pointers (data, then scales).
struct ExpertView {
  Value table;
  int64_t count = 0;
  Type elt;
  int64_t rows = 0, cols = 0;
  /// The weight of expert `e` (an i64 value).
  WeightView expert(KernelBuilder &kb, Value e) const;
};

/// Where each value of a dispatch lives inside the kernel being emitted.
struct EmitContext {
  Value tokens;   ///< S, i64
  Value startPos; ///< i64
  /// Compressed entries and ring capacity: the maximum context of the
  /// artifact (entries of ratio m hold maxContext / m vectors).
  int64_t maxContext = 0;
  llvm::DenseMap<Value, View> tensors;
  llvm::DenseMap<Value, WeightView> weights;
  llvm::DenseMap<Value, ExpertView> experts;
  /// Decode state (window ring, compressor state, entries): base pointers;
  /// in a batched kernel, tables of per-slot base pointers.
  llvm::DenseMap<Value, Value> states;
  /// A batched decode kernel (compressa-compile --max-batch): token s is the
  /// next token of its own sequence, at position positions[s], and reads and
  /// writes the decode state of slot slotIds[s] (states[v][slotIds[s]]).
  bool batched = false;
  Value positions; ///< S i64 (batched only)
  Value slotIds;   ///< S i64 (batched only)
  /// The op being emitted takes the FP8 path of --numerics=fast
  /// (dsv4.numerics = "fast" on it; TensorCoreGemm.h).
  bool fastLinear = false;
  /// The exact single-sequence experts take f32 dots of FP4/FP8 weights on
  /// tensor cores (Emitter::expertsExactMma; on the CPU its twin): opt-in,
  /// COMPRESSA_EXACT_MMA=1 at compile time or dsv4.exact_mma on the op.
  bool exactMma = false;
  /// The op is marked dsv4.numerics = "fp8" (--numerics=fast-decode's
  /// decode programs): decode experts take the e4m3 tensor-core program
  /// (Emitter::expertsFp8Decode), an op's dense FP8 layers fp8DecodeLinear
  /// (COMPRESSA_FP8_DECODE_LINEAR=1 marks those), in calls of at most 8
  /// tokens.
  bool fp8Decode = false;
  /// Where FP8 linear layers of the fast path run on tensor cores (sm_90a):
  /// the kernel's split into parts around them (TensorCoreGemm.h); null
  /// elsewhere (the loop nests).
  class TensorCoreSplit *tensorCore = nullptr;
  /// The shared expert that the routed experts' op being emitted computes
  /// in its own steps (the op right after it, on the same x), and that is
  /// then not emitted again; null otherwise.
  Operation *fusedShared = nullptr;
  /// The inverse RoPE (out of place) that is the only reader of the exact
  /// sparse attention being emitted, later in the same kernel: the
  /// attention's last step stores the rotated values in its result, and it
  /// is then not emitted again (a grid-wide step fewer); null otherwise.
  Operation *fusedRope = nullptr;
  /// The window update right after the exact sparse attention being
  /// emitted, on its ring and keys: emitted by the attention (its last step
  /// reads no key, so that in a call of few tokens the update runs beside
  /// it), then not again; null otherwise.
  Operation *fusedWindow = nullptr;
  /// fast-decode: the gate/up partial sums of a fused shared expert that
  /// the score router's dot step before the experts already computed
  /// (Emitter::gate, fp8SharedGateUpEarly), keyed by the shared expert op.
  llvm::DenseMap<Operation *, View> fp8SharedGateUp;
  /// Values that are never stored: element i of token s is computed where
  /// it is read (Emitter::element), from what the producer left in scratch.
  /// The experts' outputs and their sum where only the hc.post after them
  /// reads them (Emitter::mayStayLazy): their sums move into hc.post's step,
  /// one grid-wide step fewer each.
  llvm::DenseMap<Value, std::function<Value(Value s, Value i)>> lazy;
  /// act_quant of an rms_norm output that FP8 decode experts read, made in
  /// the norm's last step (Emitter::rmsNormOp): e4m3 codes [S, n] and UE8M0
  /// scales [S, n / 128].
  struct Quantized {
    Value codes, scales;
  };
  llvm::DenseMap<Value, Quantized> quantized;
  /// An rms_norm input's sums of squares in parts (Emitter::rmsParts),
  /// taken by the step that wrote it (Emitter::mixStreamsInto): partial
  /// [S, parts] f32.
  struct NormPartials {
    View partial;
    int64_t parts = 1;
  };
  llvm::DenseMap<Value, NormPartials> normPartials;
  /// Allocates `bytesPerToken * S + bytes` of kernel scratch; returns a pointer.
  std::function<Value(int64_t bytesPerToken, int64_t bytes)> scratch;
};

/// Sets `ctx.scratch` to carve the scratch area at `base` (needs
/// ctx.tokens): every part 64-byte rounded, each at (per-token bytes so far)
/// * S + (fixed bytes so far), so the parts never overlap and the area needs
/// `perToken` * maxTokens + `fixed` bytes; the totals accumulate in
/// `perToken` and `fixed`, which must outlive the emission.
void useScratchArea(KernelBuilder &kb, EmitContext &ctx, Value base,
                    int64_t &perToken, int64_t &fixed);

/// Emits `op`; the context must hold views for its operands and results
/// (results that are decode state alias the state they update).
LogicalResult emitOp(KernelBuilder &kb, Operation *op, EmitContext &ctx);

} // namespace mlir::compressa::cpu

#endif // COMPRESSA_LOWERING_CPU_OPEMITTERS_H
