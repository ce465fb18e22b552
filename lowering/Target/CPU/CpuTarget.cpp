//===- CpuTarget.cpp - The CPU target of the kernel lowering --------------===//
// SPDX-License-Identifier: Apache-2.0

#include "lowering/Target/CPU/CpuTarget.h"
#include "lowering/Target/CPU/CpuCodegen.h"

#include "mlir/Conversion/ArithToLLVM/ArithToLLVM.h"
#include "mlir/Conversion/ControlFlowToLLVM/ControlFlowToLLVM.h"
#include "mlir/Conversion/FuncToLLVM/ConvertFuncToLLVMPass.h"
#include "mlir/Conversion/MathToLLVM/MathToLLVM.h"
#include "mlir/Conversion/ReconcileUnrealizedCasts/ReconcileUnrealizedCasts.h"
#include "mlir/Conversion/SCFToControlFlow/SCFToControlFlow.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"

using namespace mlir;
using namespace mlir::compressa;
using namespace mlir::compressa::cpu;

Operation *CpuTarget::getOrCreateContainer(ModuleOp top) const {
  if (Operation *found = SymbolTable::lookupSymbolIn(top, kContainer))
    return found;
  OpBuilder b(top.getContext());
  b.setInsertionPointToEnd(top.getBody());
  return ModuleOp::create(b, top.getLoc(), kContainer);
}

Block *CpuTarget::createKernel(OpBuilder &b, Location loc, Operation *container,
                               StringRef symbol) const {
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToEnd(&container->getRegion(0).front());
  Type ptr = LLVM::LLVMPointerType::get(b.getContext());
  auto fn = func::FuncOp::create(b, loc, symbol, b.getFunctionType({ptr}, {}));
  return fn.addEntryBlock();
}

void CpuTarget::createReturn(OpBuilder &b, Location loc) const {
  func::ReturnOp::create(b, loc);
}

void CpuTarget::buildLowerToLLVM(OpPassManager &pm) const {
  addLowerToLLVMPasses(pm.nest<ModuleOp>());
}

void CpuTarget::addLowerToLLVMPasses(OpPassManager &kpm) {
  kpm.addPass(createSCFToControlFlowPass());
  kpm.addPass(createArithToLLVMConversionPass());
  kpm.addPass(createConvertMathToLLVMPass());
  kpm.addPass(createConvertControlFlowToLLVMPass());
  kpm.addPass(createConvertFuncToLLVMPass());
  kpm.addPass(createReconcileUnrealizedCastsPass());
}

void CpuTarget::registerDialects(DialectRegistry &registry) const {
  registerCpuCodegenDialects(registry);
}
