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
#include "llvm/ADT/ScopeExit.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Program.h"
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

  // Step 1. PTX, through the NVPTX back end (gpu-module-to-binary, isa).
  CudaBinary binary;
  {
    OwningOpRef<ModuleOp> copy = module.clone();
    PassManager bpm(ctx);
    GpuModuleToBinaryPassOptions bopts;
    bopts.toolkitPath = options.toolkitPath;
    bopts.compilationTarget = "isa";
    bpm.addPass(createGpuModuleToBinaryPass(bopts));
    if (failed(bpm.run(*copy)))
      return emitError(loc) << "gpu-module-to-binary failed for " << options.chip
                            << "; the toolkit is expected at "
                            << options.toolkitPath;
    copy->walk([&](gpu::BinaryOp bin) {
      for (Attribute a : bin.getObjectsAttr())
        binary.ptx = cast<gpu::ObjectAttr>(a).getObject().getValue().str();
    });
    if (binary.ptx.empty())
      return emitError(loc) << "gpu-module-to-binary produced no PTX";
  }
  for (const std::string &extra : options.extraPtx) {
    // Everything after the module header.
    size_t at = extra.find(".address_size");
    at = at == std::string::npos ? 0 : extra.find('\n', at);
    binary.ptx += "\n" + extra.substr(at == std::string::npos ? 0 : at);
  }

  // Step 2. The cubin: ptxas of the toolkit on that PTX (one trip through
  // the NVPTX back end instead of two).
  llvm::SmallString<256> ptxas(options.toolkitPath);
  llvm::sys::path::append(ptxas, "bin", "ptxas");
  if (!llvm::sys::fs::can_execute(ptxas))
    return emitError(loc) << "ptxas not found at " << ptxas
                          << " (set --cuda-toolkit or CUDA_HOME)";
  llvm::SmallString<128> dir;
  if (std::error_code ec = llvm::sys::fs::createUniqueDirectory("compressa-cuda", dir))
    return emitError(loc) << "cannot create a temporary directory: " << ec.message();
  auto cleanup = llvm::make_scope_exit([&] { llvm::sys::fs::remove_directories(dir); });
  llvm::SmallString<128> ptxPath(dir), cubinPath(dir);
  llvm::sys::path::append(ptxPath, "kernels.ptx");
  llvm::sys::path::append(cubinPath, "kernels.cubin");
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(ptxPath, ec);
    if (ec)
      return emitError(loc) << "cannot write " << ptxPath << ": " << ec.message();
    os << binary.ptx;
  }
  std::string arch = "-arch=" + options.chip;
  llvm::SmallVector<llvm::StringRef> args = {ptxas, arch, "--opt-level=3",
                                             ptxPath, "-o", cubinPath};
  std::string runError;
  int rc = llvm::sys::ExecuteAndWait(ptxas, args, std::nullopt, {}, 0, 0, &runError);
  if (rc != 0)
    return emitError(loc) << "ptxas failed (" << ptxas << " " << arch
                          << " --opt-level=3 " << ptxPath << "): exit " << rc
                          << " " << runError;
  auto cubin = llvm::MemoryBuffer::getFile(cubinPath);
  if (!cubin)
    return emitError(loc) << "cannot read " << cubinPath;
  binary.cubin = (*cubin)->getBuffer().str();
  dump(options.dumpDir, "kernels.ptx", binary.ptx);
  dump(options.dumpDir, "kernels.cubin", binary.cubin);
  return binary;
}
