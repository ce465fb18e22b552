//===- WgmmaAttention.h - HCA attention on Hopper tensor cores -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// The sparse attention of --numerics=fast prefill for a layer that attends
// to the sliding window and every visible compressed entry (HCA: no top-k),
// on sm_90a (issue 12), generated through MLIR's NVGPU/NVVM dialects like
// the indexer's scores (WgmmaIndexer.h). For token s (position p = start +
// s) and head h, with the keys j of s (the window's positions max(0, p -
// window + 1) .. p, then the entries 0 .. (p + 1) / ratio - 1), which are
// also the values:
//
//   score_j = (sum over channels c of bf16(q[s, h, c]) bf16(key_j[c])) * scale
//   m       = max(sink[h], max_j score_j)
//   p_j     = exp(score_j - m)                  (f32)
//   out     = (sum_j bf16(p_j) bf16(key_j)) / (sum_j p_j + exp(sink[h] - m))
//
// the operations of the warp-MMA attention (Emitter::attention's fast
// path, whose CPU loop nests are the twin); only the order of the f32 sums
// differs, and p_j's exponential: the twin's goes through f64 (correctly
// rounded to f32), this kernel's is libdevice's expf (within 2 ulp; p_j is
// then rounded to bf16, 2^-9 relative), since the twenty-fifth session
// (COMPRESSA_ATTENTION_EXP=f64 at compile time: through f64 here too). Two kernels of the same structure:
// - Pass::Max computes the scores and writes m[s, h] (f32 [S, heads]);
// - Pass::Sums computes them again, the weights p with the m of pass 1, and
//   the weighted sums: so p is rounded once, from the final max, as in the
//   three-phase form (no online rescaling).
//
// A work item is (token, tile of 64 heads): 64 query rows that share their
// keys. Its keys stream in tiles of 64: ceil(window / 64) tiles of the
// window (rows of a bf16 copy of the call's window positions, [first
// position of the call's first window, end of the call)), then ceil(n / 64)
// tiles of the entries (a bf16 copy [capacity, dim]); keys past the token's
// last weigh nothing (the copies' padding rows must be finite: the part
// before zeroes them).
// - The first thread of warpgroup 2 (the producer, its registers given to
//   the consumers with setmaxnreg) loads each key tile (dim / 64 boxes of 64
//   rows x 128 bytes, 128-byte swizzle) through `stages` buffers with TMA.
// - Warpgroups 0 and 1 (the consumers) convert the item's 64 q rows (f32,
//   the attention's input) to bf16 in shared memory, in the swizzle the
//   wgmma descriptors read; then each computes the scores of 32 keys
//   of the tile (wgmma m64n32k16 over dim / 16 steps). Pass::Max keeps the
//   rows' maxima. Pass::Sums writes bf16(p) of its 32 keys into the tile's
//   64 x 64 weights in shared memory (two buffers), meets the other
//   warpgroup at a named barrier, and adds P V into its half of the output
//   channels (wgmma m64n(dim/2)k16 over the tile's 64 keys, V the same
//   shared-memory tile read MN-major). At the item's end the warpgroups
//   exchange their rows' maxima (or sums of p) through shared memory.
//
// With a top-k (CSA, `topk` = k > 0, the window and k multiples of 64;
// COMPRESSA_ATTENTION_WGMMA=hca at compile time keeps the warp MMA attention
// for these layers) the part before writes each token's keys as rows of their own: the window's
// 64 ceil(window / 64) rows (zeros past the token's), then the k selected
// entries (zeros for a slot of -1), [S (window + k), dim] in bf16 through
// the second map; a slot of -1 weighs nothing (its score is -inf, as in
// the warp MMA attention), read from the top-k ids (i32 [S, k]).
//
// Kernel: @<name>(argv): argv[0] -> S, argv[1] -> the first position,
// argv[2] -> the staging area, whose bytes 16..55 hold what the part before
// wrote (kAttentionHeader*), argv[3], argv[4] -> the tensor maps of the
// window copy and of the entries' copy.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_TENSORCORE_WGMMAATTENTION_H
#define COMPRESSA_LOWERING_TENSORCORE_WGMMAATTENTION_H

#include "llvm/ADT/StringRef.h"

#include <cstdint>
#include <string>

namespace mlir::compressa {

/// Byte offsets in the staging area of what the kernels read: the sinks'
/// address (f32 [heads]), the maxima's (f32 [S, heads]), the output's (f32
/// [S, heads, dim]), the window copy's first position (i64) and q's address
/// (f32 [S, heads, dim]); with a top-k, the top-k ids' address (i32 [S, k]).
inline constexpr int64_t kAttentionHeaderSink = 16, kAttentionHeaderMax = 24,
                         kAttentionHeaderOut = 32, kAttentionHeaderWindowBase = 40,
                         kAttentionHeaderQ = 48, kAttentionHeaderTopk = 56;

struct WgmmaAttentionShape {
  enum class Pass { Max, Sums };
  int64_t heads = 0, dim = 0; ///< query heads and the key width
  int64_t window = 0;         ///< sliding-window positions
  int64_t ratio = 0;          ///< positions per compressed entry
  int64_t capacity = 0;       ///< entries of the state
  /// 0: every visible entry (HCA). k > 0: the k entries a top-k selected
  /// (CSA); a token's keys are then rows of a per-token copy (below).
  int64_t topk = 0;
  double scale = 0;           ///< the scores' scale
  Pass pass = Pass::Sums;
  int64_t stages = 2;
  int64_t boxes() const { return dim / 64; }
  /// Key rows of a token's copy in the top-k form: the window's, then the
  /// selected entries'.
  int64_t keysPerToken() const { return windowTiles() * 64 + topk; }
  int64_t windowTiles() const { return (window + 63) / 64; }
  std::string name() const;
  /// Shared memory from the aligned base: q's boxes, the stages' key
  /// tiles, the weights' two buffers, the exchange (2 x 2 x 64 f32).
  int64_t keyOffset() const { return boxes() * kBoxBytes; }
  int64_t weightsOffset() const { return keyOffset() + stages * boxes() * kBoxBytes; }
  int64_t exchangeOffset() const {
    return weightsOffset() + (pass == Pass::Sums ? 2 * kBoxBytes : 0);
  }
  int64_t sharedBytes() const { return exchangeOffset() + 4 * 64 * 4 + 1024; }
  /// Whether the kernels exist: heads a multiple of 64, dim 128, 256 or 512
  /// (a warpgroup's half of the channels is one wgmma's n, at most 256).
  static bool fits(int64_t heads, int64_t dim) {
    return heads > 0 && heads % 64 == 0 && (dim == 128 || dim == 256 || dim == 512);
  }
  static constexpr int64_t kThreads = 384, kBoxBytes = 64 * 128;
};

/// The kernel as MLIR text (a module holding gpu.module @compressa_tc,
/// whose NVVM target links the CUDA toolkit's libdevice for exp in f64, as
/// the dispatch kernels' math does); empty with `error` set for a bad
/// shape, chip or toolkit.
std::string wgmmaAttentionModuleText(const WgmmaAttentionShape &shape, llvm::StringRef chip,
                                     llvm::StringRef cudaToolkit, std::string &error);

/// Its PTX (gpu-lower-to-nvvm-pipeline, in a context of its own).
std::string wgmmaAttentionPtx(const WgmmaAttentionShape &shape, llvm::StringRef chip,
                              llvm::StringRef cudaToolkit, std::string &error);

} // namespace mlir::compressa

#endif // COMPRESSA_LOWERING_TENSORCORE_WGMMAATTENTION_H
