//===- ActQuantKernel.cpp - act_quant as a kernel of its own --------------===//
// SPDX-License-Identifier: Apache-2.0

#include "lowering/TensorCore/ActQuantKernel.h"
#include "lowering/DSV4ToKernels/TensorCoreGemm.h"
#include "lowering/Target/CUDA/CudaCodegen.h"
#include "lowering/Target/TargetInfo.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;
using namespace mlir::compressa;

namespace {

/// Builds kernel `symbol` for `targetSpec` with `body(kb, argv)` and lowers
/// it to the LLVM dialect.
OwningOpRef<ModuleOp>
buildKernel(MLIRContext &context, llvm::StringRef targetSpec, llvm::StringRef symbol,
            llvm::function_ref<void(cpu::KernelBuilder &, const TargetInfo &, Value)> body,
            std::string &error) {
  std::unique_ptr<TargetInfo> target = createTarget(targetSpec, error);
  if (!target)
    return nullptr;
  DialectRegistry registry;
  target->registerDialects(registry);
  context.appendDialectRegistry(registry);
  context.loadAllAvailableDialects();

  OpBuilder b(&context);
  Location loc = b.getUnknownLoc();
  OwningOpRef<ModuleOp> top = ModuleOp::create(loc);
  Operation *container = target->getOrCreateContainer(*top);
  Block *entry = target->createKernel(b, loc, container, symbol);
  b.setInsertionPointToStart(entry);
  cpu::KernelBuilder kb(b, loc, container, *target);
  body(kb, *target, entry->getArgument(0));
  target->createReturn(b, loc);

  std::string diagnostics;
  llvm::raw_string_ostream diag(diagnostics);
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler handler(sourceMgr, &context, diag);
  PassManager pm(&context);
  target->buildLowerToLLVM(pm);
  if (failed(pm.run(*top))) {
    error = "lowering " + symbol.str() + " failed: " + diagnostics;
    return nullptr;
  }
  return top;
}

} // namespace

OwningOpRef<ModuleOp> compressa::buildActQuantKernel(MLIRContext &context, int64_t k,
                                                     llvm::StringRef targetSpec,
                                                     std::string &error) {
  if (k < 1) {
    error = "act_quant needs K >= 1";
    return nullptr;
  }
  return buildKernel(
      context, targetSpec, "compressa_act_quant_k" + std::to_string(k),
      [&](cpu::KernelBuilder &kb, const TargetInfo &target, Value argv) {
        Value rows = target.loadScalarArg(kb.builder(), kb.getLoc(),
                                          kb.loadPtr(argv, kb.c(0)));
        cpu::View x{kb.loadPtr(argv, kb.c(1)), kb.f32()};
        cpu::emitActQuant(kb, x, k, rows, k, kb.loadPtr(argv, kb.c(2)),
                          kb.loadPtr(argv, kb.c(3)));
      },
      error);
}

OwningOpRef<ModuleOp> compressa::buildActQuantKeepingKernel(MLIRContext &context, int64_t k,
                                                            llvm::StringRef targetSpec,
                                                            std::string &error) {
  if (k < 1 || k % cpu::kQuantBlock) {
    error = "act_quant keeping its values needs K a positive multiple of 128";
    return nullptr;
  }
  return buildKernel(
      context, targetSpec, "compressa_act_quant_keeping_k" + std::to_string(k),
      [&](cpu::KernelBuilder &kb, const TargetInfo &target, Value argv) {
        auto slot = [&](int64_t i) { return kb.loadPtr(argv, kb.c(i)); };
        Value rows = target.loadScalarArg(kb.builder(), kb.getLoc(), slot(0));
        cpu::View x{slot(1), kb.f32()}, f{slot(2), kb.f32()}, y{slot(3), kb.f32()};
        cpu::emitActQuantKeeping(
            kb, [&](Value r) { return kb.loadF(f, r); },
            [&](Value r, Value fr, Value col) {
              return kb.mul(kb.loadF(x, kb.add(kb.mul(r, kb.c(k)), col)), fr);
            },
            y, rows, k, slot(4), slot(5));
      },
      error);
}

OwningOpRef<ModuleOp> compressa::buildFastLinearKernel(MLIRContext &context, int64_t n,
                                                       int64_t k,
                                                       llvm::StringRef targetSpec,
                                                       std::string &error, int64_t groups) {
  if (n < 1 || k < 1 || groups < 1 || n % groups || (groups > 1 && k % 128)) {
    error = "the FP8 linear layer needs N, K >= 1 (groups: N a multiple of them, K of 128)";
    return nullptr;
  }
  return buildKernel(
      context, targetSpec,
      "compressa_fast_linear_n" + std::to_string(n) + "_k" + std::to_string(k) +
          (groups > 1 ? "_g" + std::to_string(groups) : ""),
      [&](cpu::KernelBuilder &kb, const TargetInfo &target, Value argv) {
        auto slot = [&](int64_t i) { return kb.loadPtr(argv, kb.c(i)); };
        Value rows = target.loadScalarArg(kb.builder(), kb.getLoc(), slot(0));
        cpu::View x{slot(1), kb.f32()};
        cpu::WeightView w;
        w.data = slot(2);
        w.scale = slot(3);
        w.elt = kb.builder().getType<Float8E4M3FNType>();
        w.rows = n;
        w.cols = k;
        Value q = slot(4), scales = slot(5);
        cpu::emitActQuant(kb, x, k * groups, rows, k * groups, q, scales);
        cpu::emitFp8BlockGemm(kb, q, scales, rows, w, cpu::View{slot(6), kb.f32()}, groups);
      },
      error);
}

std::string compressa::actQuantPtx(MLIRContext &context, int64_t k,
                                   llvm::StringRef chip, llvm::StringRef cudaToolkit,
                                   std::string &error) {
  OwningOpRef<ModuleOp> module =
      buildActQuantKernel(context, k, ("cuda:" + chip).str(), error);
  if (!module)
    return "";
  std::string diagnostics;
  llvm::raw_string_ostream diag(diagnostics);
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler handler(sourceMgr, &context, diag);
  cuda::CudaCodegenOptions options;
  options.chip = chip.str();
  options.toolkitPath = cudaToolkit.str();
  FailureOr<cuda::CudaBinary> binary = cuda::compileToCuda(*module, options);
  if (failed(binary)) {
    error = "act_quant code generation failed: " + diagnostics;
    return "";
  }
  return binary->ptx;
}
