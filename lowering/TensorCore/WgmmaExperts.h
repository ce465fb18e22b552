//===- WgmmaExperts.h - Routed experts as grouped GEMMs on wgmma -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// The routed experts of --numerics=fast prefill on sm_90a, as two grouped
// GEMMs over the slots routed to each expert (issue 12), generated through
// MLIR's NVGPU dialect like the FP8 GEMM (WgmmaGemm.h):
//
//   gate_up: h[slot, i] = bf16(SwiGLU(x_t . w1_e[i], x_t . w3_e[i]))
//   down:    ys[slot, o] = h[slot] . w2_e[o]
//
// for every slot = t * topk + j routed to expert e. The products are those
// of the warp-MMA experts (Emitter::expertsMma, whose CPU loop nests are
// this program's twin): x and h in bf16, the FP4 weights decoded to bf16
// exactly (each e2m1 code times its 32-column block's UE8M0 scale is a bf16
// value), sums in f32. Only the order of the f32 sums differs.
//
// One block of 4 warpgroups takes one tile of up to 128 slots of one expert
// (the slot tiles of Emitter::expertTiles) and 128 weight rows: 64 rows of
// w1 and the same 64 rows of w3 for gate_up (both values of a hidden unit
// land in one thread's accumulators), 128 rows of w2 for down.
// - Warpgroups 2 and 3 (the producers, 256 threads) fill `stages`
//   shared-memory buffers, each a 64-column step of K: thread 2 r + h
//   gathers half h of slot row r of the activations (16-byte loads; zeros
//   past the tile's slots) and decodes half h of weight row r from FP4 to
//   bf16 (bit placement and one bf16x2 multiply by the block scale per
//   pair), both stored in the 128-byte swizzle the wgmma descriptors read;
//   then fence.proxy.async and an arrive on full[s].
// - Warpgroups 0 and 1 (the consumers, 64 slot rows each; the second idles
//   when the tile has at most 64 slots) wait on full[s], run 4 wgmma
//   m64n128k16 (bf16, f32 accumulators carried over the whole K) issued
//   with wait_group 4, which leaves the previous step's 4 done, and arrive
//   on the previous step's empty buffer for the producer to refill it (the
//   last step's after the loop; COMPRESSA_EXPERTS_PIPELINE=0 at compile
//   time waits for each step's own MMAs before its arrive).
// - The epilogue: gate_up clamps, applies SiLU, rounds to bf16 and stores h;
//   down stores f32 pairs of ys.
//
// Kernel: @<name>(argv) with the argument vector of the dispatch's kernel
// (it is launched between two parts of it, TensorCoreGemm.h): argv[0] ->
// the token count S, argv[2] -> the staging area, whose bytes 8..63 hold
// the addresses the part before wrote (kExpertsHeader*), argv[tableSlot]
// (and argv[tableSlot3]) -> the expert tables (2 * experts pointers: the
// codes, then the scales). The grid is 1-D: nTiles() x maxSlotTiles(max
// tokens) blocks; tiles at or past ceil(S topk / 128) + experts, or with no
// slots, idle, so one launch (and a CUDA graph holding it) serves every S.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_TENSORCORE_WGMMAEXPERTS_H
#define COMPRESSA_LOWERING_TENSORCORE_WGMMAEXPERTS_H

#include "mlir/IR/MLIRContext.h"

#include <algorithm>
#include <cstdint>
#include <string>

namespace mlir::compressa {

/// Byte offsets in the staging area (after the FP8 GEMM's output address at
/// byte 0) of the pointers the experts' GEMMs read: x in bf16 [S, dm], h in
/// bf16 [S topk, inter], ys in f32 [S topk, dm], and the slot tiles (i64
/// arrays: the slots in expert order, then per tile its expert, its first
/// entry of that order and its slot count).
inline constexpr int64_t kExpertsHeaderX = 8, kExpertsHeaderH = 16,
                         kExpertsHeaderYs = 24, kExpertsHeaderOrder = 32,
                         kExpertsHeaderExpert = 40, kExpertsHeaderFirst = 48,
                         kExpertsHeaderCount = 56;

struct WgmmaExpertsShape {
  bool gateUp = true;   ///< w1/w3 and SwiGLU to h; else w2 to ys
  int64_t n = 0;        ///< rows of one weight (inter for gate_up, dm for down)
  int64_t k = 0;        ///< its columns (dm, inter)
  int64_t topk = 0, experts = 0;
  int64_t tableSlot = -1, tableSlot3 = -1; ///< argv slots of the expert tables
  double limit = 0;     ///< the SwiGLU clamp (gate_up)
  int64_t stages = 4;
  /// Weight rows of one matrix a block takes.
  int64_t rowsPerBlock() const { return gateUp ? 64 : 128; }
  int64_t nTiles() const { return n / rowsPerBlock(); }
  int64_t kSteps() const { return k / kKStep; }
  /// Slot tiles of a call of `maxTokens` tokens, at most: each tile holds
  /// at least one slot, and an expert's slots fill all its tiles but the
  /// last (Emitter::expertTiles). A decode step of V4-Flash: 6 tiles.
  int64_t maxSlotTiles(int64_t maxTokens) const {
    return std::min(maxTokens * topk,
                    (maxTokens * topk + kSlotTile - 1) / kSlotTile + experts);
  }
  std::string name() const;
  int64_t sharedBytes() const { return stages * 2 * kSlotTile * kKStep * 2 + 1024; }
  /// Whether the kernel exists for hidden size dm and expert width inter:
  /// gate_up takes 64-row blocks of inter and 64-column steps of dm, down
  /// 128-row blocks of dm and 64-column steps of inter.
  static bool fits(int64_t dm, int64_t inter) {
    return dm > 0 && inter > 0 && inter % 64 == 0 && dm % 128 == 0;
  }
  static constexpr int64_t kThreads = 512, kSlotTile = 128, kKStep = 64;
};

/// The kernel as MLIR text (a module holding gpu.module @compressa_tc);
/// empty with `error` set for a bad shape or chip.
std::string wgmmaExpertsModuleText(const WgmmaExpertsShape &shape, llvm::StringRef chip,
                                   std::string &error);

/// Its PTX (gpu-lower-to-nvvm-pipeline, in a context of its own).
std::string wgmmaExpertsPtx(const WgmmaExpertsShape &shape, llvm::StringRef chip,
                            std::string &error);

} // namespace mlir::compressa

#endif // COMPRESSA_LOWERING_TENSORCORE_WGMMAEXPERTS_H
