//===- Numerics.h - compressa-compile --numerics=exact|fast ------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// The numerics of an artifact (issue 12):
//
//   exact  every kernel computes in f32 from the checkpoint's weights, as
//          before (golden within 1e-3); the default.
//   fast   the FP8 dense linear layers of the PREFILL program quantise their
//          activations with DeepSeek's act_quant (1x128 blocks, UE8M0
//          power-of-two scales, e4m3 round-to-nearest-even after clamping to
//          +-448; spec section 3) and multiply FP8 x FP8 with the weights'
//          128x128 UE8M0 block scales, f32 accumulation per 128-K block
//          (TensorCoreGemm.h). The lightning indexer act_quant's its q and
//          keys (1 x 128 along the key width) and scores their dequantised
//          values, DeepSeek-V3.2's FP8 indexer (fastIndexerFp8, on sm_90a
//          wgmma e4m3: WgmmaIndexer.h). The decode program stays exact.
//   fast-decode  fast, and the decode programs' routed and shared experts
//          (calls of at most 8 tokens) on tensor cores too: act_quant
//          of x and of the SwiGLU hiddens (1x128, UE8M0), FP4 weights cast
//          to e4m3 (exact), each 32-column block's products summed on the
//          tensor cores, then times its scales, f32 accumulation (spec
//          section 3's FP4 GEMM; Emitter::expertsFp8Decode).
//
// dsv4-select-numerics records `fast` on the module (dsv4.numerics, read by
// the serializer into the artifact; absent means exact) and marks the prefill
// ops whose linear layers take the FP8 path with dsv4.numerics = "fast":
// the mark is part of the op, so a marked prefill kernel is never merged
// with its exact decode twin by dsv4-deduplicate-kernels. fast-decode also
// marks the decode programs' moe.experts with dsv4.numerics = "fp8".
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_TENSORCORE_NUMERICS_H
#define COMPRESSA_LOWERING_TENSORCORE_NUMERICS_H

#include "mlir/Pass/Pass.h"

#include <memory>
#include <optional>
#include <string>

namespace mlir::compressa {

enum class Numerics { Exact, Fast, FastDecode };

/// "exact", "fast" or "fast-decode"; nullopt for anything else.
std::optional<Numerics> parseNumerics(llvm::StringRef name);
const char *numericsName(Numerics numerics);

/// dsv4-select-numerics{numerics=exact|fast} on the module.
std::unique_ptr<Pass> createSelectNumericsPass(Numerics numerics);

/// Whether `op` (a dsv4 op being converted to kernel code) was marked for the
/// FP8 path.
bool usesFastLinear(Operation *op);
/// Whether `op` (a decode moe.experts) was marked for the e4m3 experts of
/// fast-decode.
bool usesFp8Experts(Operation *op);

void registerNumericsPasses();

} // namespace mlir::compressa

#endif // COMPRESSA_LOWERING_TENSORCORE_NUMERICS_H
