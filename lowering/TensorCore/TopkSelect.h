//===- TopkSelect.h - The indexer's top-k selection, a block a token -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// The lightning indexer's top-k of --numerics=fast prefill on sm_90a (issue
// 12), after its tensor-core scores (WgmmaIndexer.h), for a state of more
// than Emitter::kRankTopkMax keys. It picks what the radix selection of the
// loop nests (Emitter::radixTopk in Patterns/Compressor.cpp, the CPU's twin
// and the code it replaces on the GPU) picks, in the same order:
//
//   with n = avail(s) = (startPos + s + 1) / ratio visible keys and the
//   scores' u32 keys (negative floats with every bit flipped, others with
//   the sign bit set: the same order), the k = min(topk, n) largest, ties
//   to the lower index, written at out[s, 0 .. k) in index order.
//
// That radix selection runs a grid-wide pass per step over every score of
// the call (three histograms in global memory, a count, a write: five
// reads of [S, n] scores, the histograms' atomics in L2). Here a block of
// kThreads threads takes one token at a time (the launch is persistent,
// grid_sync: tokens bid, bid + grid, ...):
//
// 1. n <= topk: every key is picked, out[s, i] = i.
// 2. A histogram of the keys' top 11 bits in shared memory (each warp's
//    lanes that meet on a bin add once, match.any), then the digit where
//    the count from the top reaches the keys still to take (a scan of the
//    bins over the block: each thread sums bins/kThreads bins, the warps'
//    shuffles, the warps' totals). If that digit's bin is taken whole, the
//    picks are the keys >= its lowest key; else the next 11 bits among the
//    keys of that prefix, then the last 10: the key T of the last pick and
//    how many keys equal to T are taken (the lowest indices).
// 3. The picks in index order: tiles of 4 kThreads keys, each thread 4
//    consecutive ones; a scan over the block of (keys above T, keys equal
//    to T) per thread gives each pick its place, (above before) + min(equal
//    before, taken), as radixTopk's count-and-write steps do.
// So a token's scores are read two to four times (mostly three), from
// global memory once each, and the histograms' atomics stay in the SM.
//
// COMPRESSA_INDEXER_TOPK=0 at compile time keeps the radix selection's loop
// nests on the GPU too. gemm-bench --topk checks the picks against the same
// selection on the host (scripts/gemm-check.sh).
//
// Kernel: @<name>(argv): argv[0] -> S, argv[1] -> the first position,
// argv[2] -> the staging area: its bytes 32..39 hold the scores' address
// (f32 [S, capacity], kIndexerHeaderScores, written for the scores before
// it), bytes 40..47 the picks' (i32 [S, topk], kIndexerHeaderPicks).
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_TENSORCORE_TOPKSELECT_H
#define COMPRESSA_LOWERING_TENSORCORE_TOPKSELECT_H

#include "llvm/ADT/StringRef.h"

#include <cstdint>
#include <string>

namespace mlir::compressa {

/// Byte offset in the staging area of the picks' address (i32 [S, topk]);
/// the scores' is kIndexerHeaderScores (WgmmaIndexer.h).
inline constexpr int64_t kIndexerHeaderPicks = 40;

struct TopkSelectShape {
  int64_t capacity = 0; ///< keys a token's row of scores holds
  int64_t topk = 0;     ///< picks per token
  int64_t ratio = 0;    ///< positions per compressed key
  std::string name() const;
  static bool fits(int64_t capacity, int64_t topk, int64_t ratio) {
    return capacity > 0 && topk > 0 && ratio > 0 && capacity < (int64_t(1) << 30);
  }
  static constexpr int64_t kThreads = 512;
};

/// The kernel as MLIR text (a module holding gpu.module @compressa_tc);
/// empty with `error` set for a bad shape or chip.
std::string topkSelectModuleText(const TopkSelectShape &shape, llvm::StringRef chip,
                                 std::string &error);

/// Its PTX (gpu-lower-to-nvvm-pipeline, in a context of its own).
std::string topkSelectPtx(const TopkSelectShape &shape, llvm::StringRef chip,
                          std::string &error);

} // namespace mlir::compressa

#endif // COMPRESSA_LOWERING_TENSORCORE_TOPKSELECT_H
