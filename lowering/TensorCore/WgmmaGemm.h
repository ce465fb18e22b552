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
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_TENSORCORE_WGMMAGEMM_H
#define COMPRESSA_LOWERING_TENSORCORE_WGMMAGEMM_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"

#include <cstdint>
#include <string>

namespace mlir::compressa {

struct WgmmaGemmShape {
  int64_t n = 0, k = 0; ///< multiples of 128
  int64_t stages = 4;   ///< shared-memory buffers of (a, w) tiles
  /// The kernel's symbol.
  std::string name() const;
  /// Dynamic shared memory of one block (the tiles and 1 KiB to align them).
  int64_t sharedBytes() const { return stages * 2 * 128 * 128 + 1024; }
  static constexpr int64_t kThreads = 384, kTile = 128;
};

/// The kernel as MLIR text (a module holding gpu.module @compressa_tc for
/// `chip`); empty with `error` set for a bad shape.
std::string wgmmaGemmModuleText(const WgmmaGemmShape &shape, llvm::StringRef chip,
                                std::string &error);

/// The kernel's PTX: the module text through gpu-lower-to-nvvm-pipeline
/// (NVGPU -> NVVM -> NVPTX); empty with `error` set on failure.
std::string wgmmaGemmPtx(MLIRContext &context, const WgmmaGemmShape &shape,
                         llvm::StringRef chip, std::string &error);

} // namespace mlir::compressa

#endif // COMPRESSA_LOWERING_TENSORCORE_WGMMAGEMM_H
