//===- CpuCodegen.cpp - Kernel module -> host shared object --------------===//
// SPDX-License-Identifier: Apache-2.0

#include "lowering/Target/CPU/CpuCodegen.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlow.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/TargetParser/Host.h"

using namespace mlir;

void compressa::cpu::registerCpuCodegenDialects(DialectRegistry &registry) {
  registry.insert<arith::ArithDialect, cf::ControlFlowDialect,
                  func::FuncDialect, LLVM::LLVMDialect, math::MathDialect,
                  scf::SCFDialect>();
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
}

FailureOr<std::string>
compressa::cpu::compileToSharedObject(ModuleOp kernels,
                                      const CpuCodegenOptions &options,
                                      std::string &triple) {
  Location loc = kernels.getLoc();

  // Step 1. LLVM IR for the host triple, optimised at O3.
  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();
  llvm::LLVMContext llvmCtx;
  std::unique_ptr<llvm::Module> llvmModule = translateModuleToLLVMIR(kernels, llvmCtx);
  if (!llvmModule)
    return emitError(loc) << "translating the CPU kernels to LLVM IR failed";
  llvm::Triple targetTriple(llvm::sys::getDefaultTargetTriple());
  triple = targetTriple.str();
  std::string error;
  const llvm::Target *target = llvm::TargetRegistry::lookupTarget(targetTriple, error);
  if (!target)
    return emitError(loc) << "no LLVM target for " << triple << ": " << error;
  std::string cpu = options.cpu == "native" ? llvm::sys::getHostCPUName().str()
                                           : options.cpu;
  llvm::TargetOptions targetOptions;
  std::unique_ptr<llvm::TargetMachine> machine(target->createTargetMachine(
      targetTriple, cpu, "", targetOptions, llvm::Reloc::PIC_, std::nullopt,
      llvm::CodeGenOptLevel::Aggressive));
  if (!machine)
    return emitError(loc) << "cannot create an LLVM target machine for CPU '"
                          << cpu << "'";
  llvmModule->setTargetTriple(targetTriple);
  llvmModule->setDataLayout(machine->createDataLayout());
  auto optimize = makeOptimizingTransformer(3, 0, machine.get());
  if (llvm::Error err = optimize(llvmModule.get()))
    return emitError(loc) << "optimising the CPU kernels failed: "
                          << llvm::toString(std::move(err));

  // Step 2. Object code.
  llvm::SmallVector<char, 0> object;
  {
    llvm::raw_svector_ostream os(object);
    llvm::legacy::PassManager codegen;
    if (machine->addPassesToEmitFile(codegen, os, nullptr,
                                     llvm::CodeGenFileType::ObjectFile))
      return emitError(loc) << "the target machine cannot emit object files";
    codegen.run(*llvmModule);
  }

  // Step 3. A shared object, linked by ld.lld in a scratch directory.
  llvm::SmallString<128> dir;
  if (std::error_code ec = llvm::sys::fs::createUniqueDirectory("compressa-cpu", dir))
    return emitError(loc) << "cannot create a temporary directory: " << ec.message();
  auto cleanup = llvm::make_scope_exit([&] { llvm::sys::fs::remove_directories(dir); });
  llvm::SmallString<128> objPath(dir), soPath(dir);
  llvm::sys::path::append(objPath, "kernels.o");
  llvm::sys::path::append(soPath, "kernels.so");
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(objPath, ec);
    if (ec)
      return emitError(loc) << "cannot write " << objPath << ": " << ec.message();
    os.write(object.data(), object.size());
  }
  if (!options.dumpDir.empty()) {
    llvm::SmallString<128> ll(options.dumpDir), obj(options.dumpDir);
    llvm::sys::path::append(ll, "kernels.ll");
    llvm::sys::path::append(obj, "kernels.o");
    std::error_code ec;
    llvm::raw_fd_ostream llOs(ll, ec);
    if (!ec)
      llvmModule->print(llOs, nullptr);
    llvm::raw_fd_ostream objOs(obj, ec);
    if (!ec)
      objOs.write(object.data(), object.size());
  }
  llvm::ErrorOr<std::string> lld = llvm::sys::findProgramByName("ld.lld");
  if (!lld)
    return emitError(loc) << "ld.lld not found on PATH (Debian package lld); "
                             "it links the CPU kernels into a shared object";
  std::string objArg = objPath.str().str(), soArg = soPath.str().str();
  llvm::SmallVector<llvm::StringRef> args = {*lld, "-shared", "--hash-style=both",
                                             "-o", soArg, objArg};
  std::string linkError;
  int rc = llvm::sys::ExecuteAndWait(*lld, args, std::nullopt, {}, 0, 0, &linkError);
  if (rc != 0)
    return emitError(loc) << "linking the CPU kernels failed (" << *lld
                          << " -shared -o " << soArg << " " << objArg
                          << "): exit " << rc << " " << linkError;
  auto buffer = llvm::MemoryBuffer::getFile(soPath);
  if (!buffer)
    return emitError(loc) << "cannot read " << soPath;
  return (*buffer)->getBuffer().str();
}
