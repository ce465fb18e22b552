//===- CudaCodegen.h - Kernel gpu.module -> PTX and cubin --------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
//   gpu.module @compressa_kernels (NVVM, after lower-kernels-to-llvm)
//     ──gpu-module-to-binary isa (NVPTX back end, libdevice)──▶ PTX
//     ──ptxas (from the CUDA toolkit)──▶ cubin
//
// NVIDIA specifics live here and in CudaTarget.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_CUDA_CUDACODEGEN_H
#define COMPRESSA_LOWERING_CUDA_CUDACODEGEN_H

#include "mlir/IR/BuiltinOps.h"

#include <string>
#include <vector>

namespace mlir::compressa::cuda {

struct CudaCodegenOptions {
  std::string chip = "sm_90a";
  std::string features = "+ptx80";
  /// The CUDA toolkit: libdevice (for __nv_expf & co.) and ptxas.
  std::string toolkitPath = "/usr/local/cuda";
  /// Where to write `kernels.ptx` and `kernels.cubin` (empty = nowhere).
  std::string dumpDir;
  /// Kernels generated apart (the tensor-core GEMMs, lowering/TensorCore):
  /// PTX modules for the same chip whose entries are appended to the
  /// kernels' PTX (their .version/.target/.address_size lines dropped).
  std::vector<std::string> extraPtx;
};

struct CudaBinary {
  std::string ptx;
  std::string cubin;
};

/// Parses "sm_90a" / "sm_90" into 90; -1 when malformed.
int smVersion(llvm::StringRef chip);

/// PTX and cubin of the gpu.module of `module` (in NVVM); `module` is only
/// read.
FailureOr<CudaBinary> compileToCuda(ModuleOp module,
                                    const CudaCodegenOptions &options);

} // namespace mlir::compressa::cuda

#endif // COMPRESSA_LOWERING_CUDA_CUDACODEGEN_H
