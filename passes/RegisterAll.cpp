//===- RegisterAll.cpp - The one registry of Compressa's compiler -------===//
// SPDX-License-Identifier: Apache-2.0

#include "passes/RegisterAll.h"
#include "dialects/DSV4/IR/DSV4Dialect.h"
#include "lowering/DSV4ToKernels/Passes.h"
#include "lowering/TensorCore/Numerics.h"
#include "passes/Model/Passes.h"
#include "passes/Pipelines.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Affine/Transforms/Passes.h"
#include "mlir/Dialect/Arith/Transforms/Passes.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/Linalg/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Dialect/SCF/Transforms/Passes.h"
#include "mlir/Dialect/Tensor/Transforms/Passes.h"
#include "mlir/Dialect/Vector/Transforms/Passes.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

void compressa::registerAllDSV4Dialects(DialectRegistry &registry) {
  registry.insert<dsv4::DSV4Dialect>();
  // The upstream dialects we lower through (linalg/vector/scf -> LLVM for the
  // CPU, gpu -> nvvm for CUDA) and their ConvertToLLVM interfaces (TOOLCHAIN
  // pitfall P7), plus the GPU -> LLVM IR translations that
  // gpu-module-to-binary needs (pitfall P6).
  registerAllDialects(registry);
  registerAllExtensions(registry);
  registerAllGPUToLLVMIRTranslations(registry);
}

void compressa::registerAllDSV4Passes() {
  // Core transforms: canonicalize, cse, inline, symbol-dce, ...
  registerTransformsPasses();
  // Conversions between levels: linalg/scf/arith/... -> LLVM, gpu -> nvvm.
  registerConversionPasses();
  // The transforms of the dialects the lowering goes through.
  affine::registerAffinePasses();
  arith::registerArithPasses();
  bufferization::registerBufferizationPasses();
  registerGPUPasses();
  registerLinalgPasses();
  memref::registerMemRefPasses();
  registerSCFPasses();
  tensor::registerTensorPasses();
  vector::registerVectorPasses();
  // Ours.
  dsv4::registerDSV4ModelPasses();
  compressa::registerDSV4ToKernelsPasses();
  compressa::registerNumericsPasses();
  registerPipelines();
}
