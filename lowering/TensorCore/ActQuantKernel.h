//===- ActQuantKernel.h - act_quant as a kernel of its own -------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// The act_quant code of --numerics=fast (emitActQuant, TensorCoreGemm.h) as
// a stand-alone kernel of a target, built exactly as the artifact's kernels
// are (KernelBuilder on the target's TargetInfo, the target's lowering and
// code generation), so its bytes can be compared with a reference on a GPU
// (gemm-bench) as well as on the CPU (the unit tests).
//
// Kernel @compressa_act_quant_k<K>(argv): argv[0] -> the row count (on CUDA
// a device int64, as the kernel ABI passes token counts), argv[1] x f32
// [rows, K], argv[2] codes [rows, K], argv[3] UE8M0 scales [rows, K/128
// rounded up]. CUDA: one block of the target's threads.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_TENSORCORE_ACTQUANTKERNEL_H
#define COMPRESSA_LOWERING_TENSORCORE_ACTQUANTKERNEL_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"

#include <string>

namespace mlir::compressa {

/// The module holding the kernel for `target` ("cpu" or "cuda:<chip>"),
/// lowered to the LLVM dialect; null with `error` set on failure.
OwningOpRef<ModuleOp> buildActQuantKernel(MLIRContext &context, int64_t k,
                                          llvm::StringRef target,
                                          std::string &error);

/// emitActQuantKeeping (the rms_norm of --numerics=fast-decode's decode
/// experts) as kernel @compressa_act_quant_keeping_k<K>(argv), K a multiple
/// of 128: argv[0] rows (as above), [1] x f32 [rows, K], [2] a factor f32 per
/// row, [3] y f32 [rows, K] (may be x) = x times its row's factor, [4] codes
/// of y [rows, K], [5] its UE8M0 scales [rows, K/128].
OwningOpRef<ModuleOp> buildActQuantKeepingKernel(MLIRContext &context, int64_t k,
                                                 llvm::StringRef target,
                                                 std::string &error);

/// The whole FP8 linear layer of --numerics=fast (act_quant, then the FP8
/// GEMM with the loop-nest code of TensorCoreGemm.h) as kernel
/// @compressa_fast_linear_n<N>_k<K>(argv): argv[0] rows (as above), [1] x
/// f32 [rows, K], [2] weight codes [N, K], [3] weight UE8M0 scales [N/128,
/// K/128 rounded up], [4] codes scratch [rows, K], [5] scales scratch
/// [rows, K/128 rounded up], [6] y f32 [rows, N]. With `groups` G > 1
/// (wo_a's groups; K a multiple of 128): x, the codes and their scales hold
/// rows of G K values, N is G x the rows of one group, and the kernel is
/// @compressa_fast_linear_n<N>_k<K>_g<G>.
OwningOpRef<ModuleOp> buildFastLinearKernel(MLIRContext &context, int64_t n,
                                            int64_t k, llvm::StringRef target,
                                            std::string &error, int64_t groups = 1);

/// The act_quant kernel's PTX for CUDA chip `chip`; empty with `error` set on failure.
std::string actQuantPtx(MLIRContext &context, int64_t k, llvm::StringRef chip,
                        llvm::StringRef cudaToolkit, std::string &error);

} // namespace mlir::compressa

#endif // COMPRESSA_LOWERING_TENSORCORE_ACTQUANTKERNEL_H
