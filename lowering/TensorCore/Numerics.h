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
//          (TensorCoreGemm.h). The decode program stays exact.
//
// dsv4-select-numerics records `fast` on the module (dsv4.numerics, read by
// the serializer into the artifact; absent means exact) and marks the prefill
// ops whose linear layers take the FP8 path with dsv4.numerics = "fast":
// the mark is part of the op, so a marked prefill kernel is never merged
// with its exact decode twin by dsv4-deduplicate-kernels.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_TENSORCORE_NUMERICS_H
#define COMPRESSA_LOWERING_TENSORCORE_NUMERICS_H

#include "mlir/Pass/Pass.h"

#include <memory>
#include <optional>
#include <string>

namespace mlir::compressa {

enum class Numerics { Exact, Fast };

/// "exact" or "fast"; nullopt for anything else.
std::optional<Numerics> parseNumerics(llvm::StringRef name);
const char *numericsName(Numerics numerics);

/// dsv4-select-numerics{numerics=exact|fast} on the module.
std::unique_ptr<Pass> createSelectNumericsPass(Numerics numerics);

/// Whether `op` (a dsv4 op being converted to kernel code) was marked for the
/// FP8 path.
bool usesFastLinear(Operation *op);

void registerNumericsPasses();

} // namespace mlir::compressa

#endif // COMPRESSA_LOWERING_TENSORCORE_NUMERICS_H
