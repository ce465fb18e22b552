//===- CudaCodegen.cpp - Kernel gpu.module -> PTX and cubin --------------===//
// SPDX-License-Identifier: Apache-2.0

#include "lowering/Target/CUDA/CudaCodegen.h"

#include "mlir/Conversion/GPUToNVVM/GPUToNVVMPass.h"
#include "mlir/Conversion/ReconcileUnrealizedCasts/ReconcileUnrealizedCasts.h"
#include "mlir/Conversion/SCFToControlFlow/SCFToControlFlow.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;

int compressa::cuda::smVersion(llvm::StringRef chip) {
  if (!chip.consume_front("sm_"))
    return -1;
  chip.consume_back("a");
  chip.consume_back("f");
  int v = 0;
  if (chip.getAsInteger(10, v))
    return -1;
  return v;
}

static void dump(const std::string &dir, StringRef name, StringRef bytes) {
  if (dir.empty())
    return;
  llvm::sys::fs::create_directories(dir);
  llvm::SmallString<256> path(dir);
  llvm::sys::path::append(path, name);
  std::error_code ec;
  llvm::raw_fd_ostream os(path, ec);
  if (!ec)
    os << bytes;
}

FailureOr<compressa::cuda::CudaBinary>
compressa::cuda::compileToCuda(ModuleOp module, const CudaCodegenOptions &options) {
  MLIRContext *ctx = module.getContext();
  Location loc = module.getLoc();

  // Step 1. Attach the target: chip, PTX features, -O3.
  auto target = NVVM::NVVMTargetAttr::get(ctx, /*optLevel=*/3, "nvptx64-nvidia-cuda",
                                          options.chip, options.features);
  module.walk([&](gpu::GPUModuleOp gm) {
    gm.setTargetsAttr(ArrayAttr::get(ctx, {target}));
  });

  // Step 2. Kernels to NVVM: structured control flow first, then the GPU,
  // arith, math and LLVM-pointer code through the ConvertToLLVM interfaces.
  PassManager pm(ctx);
  OpPassManager &gpm = pm.nest<gpu::GPUModuleOp>();
  gpm.addPass(createSCFToControlFlowPass());
  gpm.addPass(createConvertGpuOpsToNVVMOps());
  gpm.addPass(createCanonicalizerPass());
  gpm.addPass(createCSEPass());
  gpm.addPass(createReconcileUnrealizedCastsPass());
  if (failed(pm.run(module)))
    return emitError(loc) << "lowering the CUDA kernels to NVVM failed";

  // Step 3. PTX and cubin, each from its own copy of the module.
  CudaBinary binary;
  for (StringRef format : {"isa", "bin"}) {
    OwningOpRef<ModuleOp> copy = module.clone();
    PassManager bpm(ctx);
    GpuModuleToBinaryPassOptions bopts;
    bopts.toolkitPath = options.toolkitPath;
    bopts.compilationTarget = format.str();
    bpm.addPass(createGpuModuleToBinaryPass(bopts));
    if (failed(bpm.run(*copy)))
      return emitError(loc) << "gpu-module-to-binary (" << format
                            << ") failed for " << options.chip
                            << "; the toolkit is expected at "
                            << options.toolkitPath;
    bool found = false;
    copy->walk([&](gpu::BinaryOp bin) {
      for (Attribute a : bin.getObjectsAttr()) {
        auto object = cast<gpu::ObjectAttr>(a);
        (format == "isa" ? binary.ptx : binary.cubin) = object.getObject().getValue().str();
        found = true;
      }
    });
    if (!found)
      return emitError(loc) << "gpu-module-to-binary produced no object";
  }
  dump(options.dumpDir, "kernels.ptx", binary.ptx);
  dump(options.dumpDir, "kernels.cubin", binary.cubin);
  return binary;
}
