//===- WgmmaIndexer.h - The indexer's scores on Hopper tensor cores -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// The lightning indexer's scores of --numerics=fast prefill on sm_90a
// (issue 12), generated through MLIR's NVGPU dialect like the grouped
// experts (WgmmaExperts.h):
//
//   score[s, j] = sum over heads h of hw[s, h] * relu(bf16(q[s, h]) . bf16(key[j]))
//
// or, FP8 (shape.fp8, the default; Emitter::indexer):
//
//   score[s, j] = sk[j] * sum over h of hw'[s, h] * relu(q8[s, h] . k8[j])
//
// where q8 are the e4m3 codes of act_quant(q[s, h]) (1 x 128 blocks: one
// per head row, UE8M0 scale sq[s, h]) that the part before writes, hw' =
// hw * sq (the same part), and k8, sk the act_quant of key j, computed here
// from the f32 state row (the same bytes as act_quant on the CPU; sk kept
// in shared memory). Scales are powers of two: the score is sum over h of
// hw * relu(q^ . k^) of the dequantised values q^ = q8 sq, k^ = k8 sk,
// DeepSeek-V3.2's FP8 indexer. wgmma m64n128k32 e4m3 (di / 32 a half
// instead of di / 16 bf16 steps), one 128-byte tile per row (q's rows of
// di = 64 padded to 128 bytes in the staging area, the pad never read).
//
// for every token s of the call and every compressed key j < avail(s) =
// (startPos + s + 1) / ratio. The products are those of the warp-MMA
// scores (indexerScoresFast in Patterns/Compressor.cpp, whose CPU loop
// nests are this kernel's twin): q and the keys rounded to bf16 (nearest
// even), exact products, f32 sums. Only the order of the sums differs.
//
// The block's tile is 256 keys x (128 / heads) tokens: rows of the MMA are
// keys, columns are (token, head) pairs, K is the key dimension di.
// - Warpgroups 0 and 1 (the consumers) own 128 keys each. At the start of a
//   work item each converts its keys (f32 rows of the decode state, one a
//   thread) to bf16 in its resident tiles, in the 128-byte swizzle the
//   wgmma descriptors read (fence.proxy.async, then a barrier of the
//   warpgroup). Per step it runs 2 x di/16 wgmma m64n128k16 (bf16, f32
//   accumulators: two 64-key halves), releases the step's buffer, takes
//   relu(dot) * hw[s, h] of its 128 accumulators, sums them over the
//   thread's heads and then over the quad's lanes (the head columns), and
//   lane 0 of the quad stores the score of its key for each token.
// - The first thread of warpgroup 2 (the producer) streams the q rows of
//   the item's tokens, 128 rows a step (bf16 [S heads, di], written by the
//   part before at byte kStagingHeader of the staging area), through
//   `stages` buffers with nvgpu.tma.async.load (a tensor map of the rows
//   as bytes, [max tokens x heads, 2 di], in 128 x 128-byte boxes).
// Each q byte brought from L2 serves 256 keys (with 128 keys a block the
// kernel was bound by the L2's bandwidth: 238 TFLOP/s on an H100).
//
// Work items are (key tile of 256, block of kTokenBlock tokens; of
// kLongTokenBlock where the call's last token sees kLongKeys keys), the key
// tile fastest; a block takes items bid, bid + grid, ... (the launch is
// grid_sync: one block per multiprocessor), skipping those no token of
// whose block sees a key of the tile.
//
// Kernel: @<name>(argv): argv[0] -> the token count S, argv[1] -> the
// first position, argv[2] -> the staging area, whose bytes 16..39 hold the
// addresses the part before wrote (kIndexerHeader*), argv[3] -> the tensor
// map of q.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_TENSORCORE_WGMMAINDEXER_H
#define COMPRESSA_LOWERING_TENSORCORE_WGMMAINDEXER_H

#include "llvm/ADT/StringRef.h"

#include <cstdint>
#include <string>

namespace mlir::compressa {

/// Byte offsets in the staging area of the pointers the indexer's kernel
/// reads: the keys in f32 [capacity, di] (the decode state), hw in f32 [S,
/// heads], the scores in f32 [S, capacity]. q is at kStagingHeader.
inline constexpr int64_t kIndexerHeaderKeys = 16, kIndexerHeaderHw = 24,
                         kIndexerHeaderScores = 32;

struct WgmmaIndexerShape {
  int64_t heads = 0, dim = 0; ///< index heads and their width di
  int64_t ratio = 0;          ///< positions per compressed key
  int64_t capacity = 0;       ///< keys of the state (max context / ratio)
  int64_t stages = 4;
  /// FP8 (the default of --numerics=fast): q as e4m3 codes whose scales the
  /// head weights carry, the keys act_quant'ed by the kernel (module
  /// comment); otherwise bf16 q and keys.
  bool fp8 = false;
  /// Tokens of one step (a step's 128 columns are their heads).
  int64_t tokensPerStep() const { return kColumns / heads; }
  /// 128-byte-wide tiles of a row: di bf16 or di <= 128 e4m3 values (a
  /// row of 64 padded to 128 bytes: the 128-byte swizzle's rows).
  int64_t kTiles() const { return fp8 ? 1 : dim / 64; }
  /// Bytes of one q row in the staging area (the tensor map's row).
  int64_t rowBytes() const { return fp8 ? 128 : 2 * dim; }
  std::string name() const;
  /// Shared memory from the aligned base: the keys' tiles (consumer w's
  /// 128 keys, tile kt: tile w kTiles() + kt), then each stage's q tiles,
  /// then (FP8) the 256 keys' scales in f32.
  int64_t stageOffset() const { return 2 * kTiles() * kTileBytes; }
  int64_t scaleOffset() const { return stageOffset() + stages * kTiles() * kTileBytes; }
  int64_t sharedBytes() const { return scaleOffset() + (fp8 ? kKeys * 4 : 0) + 1024; }
  /// Whether the kernel exists for this indexer: heads dividing 128, at
  /// least 8 (a quad's columns), di 64 or 128 (shared memory; FP8: one
  /// act_quant block, one 128-byte row).
  static bool fits(int64_t heads, int64_t dim) {
    return heads >= 8 && kColumns % heads == 0 && dim > 0 && dim % 64 == 0 && dim <= 128;
  }
  static constexpr int64_t kThreads = 384, kKeys = 256, kColumns = 128,
                           kTileBytes = 128 * 64 * 2, kTokenBlock = 128;
  /// Longer work items where a call's last token sees kLongKeys keys or
  /// more (a 64K context at ratio 4).
  static constexpr int64_t kLongTokenBlock = 512, kLongKeys = 16384;
};

/// The kernel as MLIR text (a module holding gpu.module @compressa_tc);
/// empty with `error` set for a bad shape or chip.
std::string wgmmaIndexerModuleText(const WgmmaIndexerShape &shape, llvm::StringRef chip,
                                   std::string &error);

/// Its PTX (gpu-lower-to-nvvm-pipeline, in a context of its own).
std::string wgmmaIndexerPtx(const WgmmaIndexerShape &shape, llvm::StringRef chip,
                            std::string &error);

} // namespace mlir::compressa

#endif // COMPRESSA_LOWERING_TENSORCORE_WGMMAINDEXER_H
