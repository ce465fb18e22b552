//===- WgmmaGemm.h - FP8 block-scaled GEMM on Hopper tensor cores -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// The tensor-core kernel of --numerics=fast for sm_90a, generated for one
// weight shape [N, K] through MLIR's NVGPU dialect:
//
//   y[m, n] = sum_kb (sum_{k in kb} a[m, k] w[n, k]) 2^(sa[m, kb] - 127)
//                                                    2^(sw[n/128, kb] - 127)
//
//   a  [M, K]  e4m3 activations (act_quant, TensorCoreGemm.h), M at run time
//   sa [M, K/128] UE8M0 bytes;  w [N, K] e4m3 (a checkpoint's [out, in]
//   weight: K-major, as FP8 wgmma needs both operands); sw [N/128, K/128]
//   UE8M0 bytes; y [M, N] f32.
//
// One block of 3 warpgroups computes a 128x128 tile of y. The first thread
// of warpgroup 2 (the producer) streams 128x128 tiles of a and w through
// `stages` shared-memory buffers with nvgpu.tma.async.load (128-byte
// swizzle, the one the wgmma descriptor generator supports): mbarrier
// full[s] counts a buffer's bytes in, empty[s] counts its 256 consumer
// threads out before the producer refills it. Warpgroups 0 and 1 (the
// consumers, 64 rows each) run, per 128-wide K block, 4 nvgpu.warpgroup.mma
// (wgmma m64n128k32 e4m3) into a fresh accumulator and then add it, times
// the two block scales of its rows (loaded before the MMAs), into f32
// registers: the block scales are applied per K block in f32
// ("promotion", as DeepGEMM does), and the tensor cores' own accumulation
// never spans more than 128 products. The two consumers never wait for each
// other, so one's promotion overlaps the other's MMAs.
//
// Each consumer keeps two accumulators (without pairs; COMPRESSA_GEMM_OVERLAP=0
// at compile time keeps one): per K block it waits for the previous block's
// MMAs (wgmma.wait_group 0), releases that buffer, issues this block's 4
// wgmma as one commit group, and only then promotes the previous block, so
// its own next MMAs run on the tensor cores while it promotes. The K loop
// takes two blocks a turn so that each accumulator keeps its registers, the
// FMAs are inline asm with side effects so that LLVM keeps them between the
// wait and the next issue (ptxas serialises the wgmma where an accumulator
// is read while a later wgmma is in flight, or where a read crosses a loop's
// back edge: its C7514), and the block scales are loaded a block ahead. 192
// accumulator registers a thread: the producer's warpgroup gives registers
// up (setmaxnreg 40) and the consumers take them (232).
//
// Tensor maps: nvgpu's descriptor type does not convert as a gpu.func
// argument, so the kernel takes the address of each CUtensorMap (64-byte
// aligned, in device global memory, filled by the host with
// cuTensorMapEncodeTiled: runtime/cuda/cuda_driver.h) as an !llvm.ptr and
// casts it to the descriptor type; cp.async.bulk.tensor takes the generic
// address of a tensor map in global memory.
//
// Kernel: gpu.func @<name>(%amap, %wmap, %sa, %sw, %y : !llvm.ptr, %m : i32),
// grid (N/128, ceil(M/128)), kThreads (384) threads, sharedBytes() of
// dynamic shared memory.
//
// With `program` (a launch of a prefill program, runtime/format/artifact.fbs)
// the kernel is @compressa_tc_gemm_n<N>_k<K>_s<stages>(argv) like the
// program's other kernels: argv[0] -> the token count M (a device int64),
// argv[2] -> the staging area the kernel before it filled
// (TensorCoreGemm.h): the address of y at byte 0, the codes a [maxTokens
// rows, K] at byte 64, their scales [M, ceil(K/128)] right after M rows of
// codes; argv[3], argv[4] -> the tensor maps of a and w; argv[5] -> sw.
// The grid is 1-D, nTiles() x ceil(maxTokens/128) blocks, the tiles at or
// past M idle, so the launch (and a CUDA graph holding it) serves every M.
// N and K need only be multiples of 16: the maps read the columns past K
// and the weight rows past N as zeros, and columns past N are not stored.
//
// With groups = G (wo_a's groups of heads, `_g<G>` in the name) the kernel
// computes G such GEMMs at once: a and its scales are [M, G K] and [M, G
// K/128] (the act_quant of the whole row, whose 128-column blocks never
// straddle two groups), w [N, K] stacks the groups' weights, and N tile t
// belongs to group t / (N / 128 G): its a columns start at g K.
//
// Two options trade the same arithmetic for fewer bytes from L2 and fewer
// idle tensor cores (the kernel name gains _c2 and _p):
// - cluster = 2: the blocks of a pair of N tiles (a cluster of 2, launched
//   with the PTX's .reqnctapercluster) share their a tile: each loads 64 of
//   its 128 rows with a multicast TMA copy into both blocks' shared memory
//   (24 KB from L2 a block and K block instead of 32). The a map's box is
//   then 64 rows. Each consumer warp's first two lanes release a buffer in
//   both blocks (a remote mbarrier arrive through mapa), and a block's
//   producer refills it when both blocks' consumers are done.
// - persistent: a fixed grid walks the tiles (the pairs, with cluster = 2)
//   in steps of the grid, N tiles fastest (with groupM = G: in groups of G
//   M tiles, M fastest within a group, `_m<G>`); the producer streams K
//   blocks across tiles, so the next tile's loads overlap this tile's
//   epilogue.
//   The launch's grid is then any multiple of `cluster` (the GPU's SMs).
//   COMPRESSA_GEMM_FLAT=1 at compile time (an experiment that lost 4-7 % on
//   an H100): with two accumulators and an even count of K blocks the
//   consumers run one K loop over all of their block's tiles; promoting a
//   tile's last block, they store the tile and start its successor's sums
//   at zero while the successor's first MMAs, issued just before, run.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_TENSORCORE_WGMMAGEMM_H
#define COMPRESSA_LOWERING_TENSORCORE_WGMMAGEMM_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"

#include <cstdint>
#include <string>

namespace mlir::compressa {

struct WgmmaGemmShape {
  int64_t n = 0, k = 0; ///< multiples of 128 (of 16 with `program`)
  int64_t stages = 4;   ///< shared-memory buffers of (a, w) tiles
  /// The kernel of a program (the prefill's FP8 linear layers): argv ABI,
  /// 1-D grid, partial N and K tiles (see above).
  bool program = false;
  int64_t cluster = 1;     ///< 1, or 2: pairs of N tiles share a's tile
  bool persistent = false; ///< a fixed grid walks the tiles
  /// Independent GEMMs side by side (wo_a's groups): `n` = groups x the
  /// columns of one, a multiple of 128 x groups; group g's a is columns
  /// g k .. g k + k - 1 of a [M, groups k] (its scales likewise), its
  /// weight rows and y's columns are g n / groups onwards.
  int64_t groups = 1;
  /// A persistent grid's order of tiles: 0 walks N fastest over all of M;
  /// G > 0 walks groups of G M tiles, M fastest within a group (fewer rows
  /// of w at a time: wq_b's 32768 x 1024 ran 27 % faster with 8 on an
  /// H100, the shapes of K >= 2048 8-12 % slower; docs/perf.md). `_m<G>`
  /// in the name.
  int64_t groupM = 0;
  int64_t nTiles() const { return (n + kTile - 1) / kTile; }
  /// Units of work along N: pairs of N tiles with cluster = 2.
  int64_t nUnits() const { return (nTiles() + cluster - 1) / cluster; }
  /// The rows of a's box (its tensor map): 64 with cluster = 2, else 128.
  int64_t aBoxRows() const { return kTile / cluster; }
  int64_t kBlocks() const { return (k + kTile - 1) / kTile; }
  /// N tiles of one group.
  int64_t groupTiles() const { return nTiles() / groups; }
  /// The kernel's symbol.
  std::string name() const;
  /// Dynamic shared memory of one block (the tiles and 1 KiB to align them).
  int64_t sharedBytes() const { return stages * 2 * 128 * 128 + 1024; }
  static constexpr int64_t kThreads = 384, kTile = 128;
};

/// Sets the tile order of a program's GEMM by its shape (measured on an
/// H100 at M = 4096, docs/perf.md, twenty-ninth session): groups of 8 M
/// tiles (persistent) where N >= 16384 and K <= 2048 without groups (wq_b's
/// 32768 x 1024 ran 27 % faster alone and 16 % in the 4K prefill: walking
/// N fastest, the grid streams all of w, more than the L2 holds beside the
/// output's writes, once per M tile); every other shape lost 8-12 %, and
/// keeps N fastest. (Six buffers made wo_b's 4096 x 8192 2-3 % faster alone
/// but 13 % slower in the prefill: every shape keeps `stages`.)
void tuneWgmmaGemm(WgmmaGemmShape &shape);

/// The kernel as MLIR text (a module holding gpu.module @compressa_tc for
/// `chip`); empty with `error` set for a bad shape.
std::string wgmmaGemmModuleText(const WgmmaGemmShape &shape, llvm::StringRef chip,
                                std::string &error);

/// The kernel's PTX: the module text through gpu-lower-to-nvvm-pipeline
/// (NVGPU -> NVVM -> NVPTX); empty with `error` set on failure.
std::string wgmmaGemmPtx(MLIRContext &context, const WgmmaGemmShape &shape,
                         llvm::StringRef chip, std::string &error);

/// The same in a context of its own, with every dialect the kernel's text
/// and its lowering need (the compiler's context holds only its own).
std::string wgmmaGemmPtx(const WgmmaGemmShape &shape, llvm::StringRef chip,
                         std::string &error);

/// The PTX of a module of tensor-core kernels as MLIR text (a gpu.module
/// @compressa_tc) through gpu-lower-to-nvvm-pipeline; empty with `error`
/// set on failure. Empty text (a generator's failure, `error` set by it)
/// gives empty PTX, `error` untouched. Without a context: in one of its own, with every dialect
/// the text and its lowering need. A gpu.module that names its own
/// #nvvm.target with libraries to link (libdevice) gets a second target from
/// the pipeline; the PTX is then its own target's (with the libraries).
std::string wgmmaModulePtx(MLIRContext &context, llvm::StringRef text,
                           llvm::StringRef chip, std::string &error);
std::string wgmmaModulePtx(llvm::StringRef text, llvm::StringRef chip,
                           std::string &error);

} // namespace mlir::compressa

#endif // COMPRESSA_LOWERING_TENSORCORE_WGMMAGEMM_H
