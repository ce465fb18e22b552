//===- Patterns.h - Kernel patterns of the dsv4 ops --------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// One pattern set per op family, each in its own file of Patterns/: a
// pattern turns one dsv4 op into its kernel code through the Emitter
// (Emitter.h). The conversion to kernels (ConvertDSV4ToKernels.cpp) builds
// the set of every family; a new kernel enters as a pattern here.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_DSV4TOKERNELS_PATTERNS_H
#define COMPRESSA_LOWERING_DSV4TOKERNELS_PATTERNS_H

#include "lowering/DSV4ToKernels/OpEmitters.h"

#include "mlir/IR/Operation.h"
#include "mlir/Support/TypeID.h"
#include "llvm/ADT/DenseMap.h"

#include <functional>

namespace mlir::compressa::cpu {

class Emitter;

/// Emits the kernel code of one op.
using KernelPattern = std::function<void(Emitter &, Operation *)>;

/// The patterns of the ops a conversion can lower, by op.
class KernelPatternSet {
public:
  /// Registers Emitter method `fn` as the pattern of OpT.
  template <typename OpT>
  void add(void (Emitter::*fn)(OpT)) {
    addPattern(TypeID::get<OpT>(), [fn](Emitter &e, Operation *op) {
      (e.*fn)(llvm::cast<OpT>(op));
    });
  }
  void addPattern(TypeID op, KernelPattern pattern);
  /// The pattern of `op`, or null.
  const KernelPattern *lookup(Operation *op) const;
  size_t size() const { return patterns.size(); }

private:
  llvm::DenseMap<TypeID, KernelPattern> patterns;
};

/// embed, lm_head
void populateEmbedPatterns(KernelPatternSet &patterns);
/// rms_norm
void populateNormPatterns(KernelPatternSet &patterns);
/// hc.expand, hc.pre, hc.post, hc.head
void populateHyperConnPatterns(KernelPatternSet &patterns);
/// attn.q_proj, attn.kv_proj, rope, kv.window_update, attn.sparse,
/// attn.out_proj
void populateAttentionPatterns(KernelPatternSet &patterns);
/// Whether the exact sparse attention `attention` can store its result
/// through the inverse RoPE `rope` (out of place, its only reader) in its
/// last step (EmitContext::fusedRope); COMPRESSA_ATTENTION_ROPE=0 at
/// compile time: never.
bool ropeFusesIntoAttention(Operation *attention, Operation *rope);
/// Whether the window update right after the exact sparse attention on its
/// ring and keys is emitted by it (EmitContext::fusedWindow);
/// COMPRESSA_ATTENTION_WINDOW=0 at compile time: never.
bool windowFusesIntoAttention();
/// kv.compress, attn.indexer_topk
void populateCompressorPatterns(KernelPatternSet &patterns);
/// moe.gate, moe.hash_gate, moe.experts, moe.shared_expert, and the
/// arith.addf of routed and shared experts
void populateMoePatterns(KernelPatternSet &patterns);
/// Every family above.
void populateAllKernelPatterns(KernelPatternSet &patterns);

/// Emits `op` with the pattern `patterns` holds for it; an op without one
/// is an error naming it.
LogicalResult emitOp(KernelBuilder &kb, Operation *op, EmitContext &ctx,
                     const KernelPatternSet &patterns);

} // namespace mlir::compressa::cpu

#endif // COMPRESSA_LOWERING_DSV4TOKERNELS_PATTERNS_H
