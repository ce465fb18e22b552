//===- TensorCoreGemm.h - act_quant and FP8 block-scaled GEMMs ---*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// The kernel code of --numerics=fast (lowering/TensorCore/Numerics.h) in the
// loop-nest language of KernelBuilder, so the CPU target and the CUDA target
// compute the same function (the CPU's is the reference of the tensor-core
// GEMM in lowering/TensorCore/WgmmaGemm.h):
//
//   act_quant (spec section 3, b = 128): per row and 128-column block
//     amax = max(|x_blk|, 1e-4)
//     s    = 2^ceil(log2(amax / 448))       (the UE8M0 byte is log2(s) + 127)
//     q    = e4m3fn_rne(clamp(x / s, -448, 448))
//   FP8 GEMM (spec section 3, weights [N, K] e4m3 with 128x128 UE8M0 scales):
//     y[m, n] = sum_kb (sum_{k in kb} q[m, k] * w[n, k]) * s_a[m, kb] * s_w[n/128, kb]
//     each block sum in f32 (products of two e4m3 values are exact in f32),
//     the block sums added into an f32 accumulator in block order.
//
// Every step is integer bit arithmetic or exact f32 arithmetic (divisions
// by powers of two are multiplications by their inverses; ceil(log2(amax /
// 448)) is read off amax's exponent and mantissa: amax = m 2^e, m in [1, 2),
// gives e - 8 when m <= 1.75 and e - 7 above), so every target produces
// the same bytes: no division, logarithm or conversion instruction whose
// rounding a target could choose.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_DSV4TOKERNELS_TENSORCOREGEMM_H
#define COMPRESSA_LOWERING_DSV4TOKERNELS_TENSORCOREGEMM_H

#include "lowering/DSV4ToKernels/KernelBuilder.h"

namespace mlir::compressa::cpu {

/// Columns per activation scale block, and rows/columns per weight block.
inline constexpr int64_t kQuantBlock = 128;

/// act_quant of `rows` rows of `k` values (row r at x + r * xStride): the
/// e4m3fn codes to the bytes `q` [rows, k] and the UE8M0 scale bytes to
/// `scales` [rows, ceil(k / 128)].
void emitActQuant(KernelBuilder &kb, const View &x, int64_t xStride, Value rows,
                  int64_t k, Value q, Value scales);

/// out[r, n] for r < rows and n < w.rows: the FP8 GEMM of the quantised rows
/// (`q`, `scales` as emitActQuant writes them) and the FP8 weight `w`.
void emitFp8BlockGemm(KernelBuilder &kb, Value q, Value scales, Value rows,
                      const WeightView &w, const View &out);

} // namespace mlir::compressa::cpu

#endif // COMPRESSA_LOWERING_DSV4TOKERNELS_TENSORCOREGEMM_H
