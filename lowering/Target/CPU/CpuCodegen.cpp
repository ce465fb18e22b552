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
#include "llvm/Bitcode/BitcodeReader.h"
#include "llvm/Bitcode/BitcodeWriter.h"
#include "llvm/Support/ThreadPool.h"
#include "llvm/Support/Threading.h"
#include "llvm/Transforms/Utils/Cloning.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/TargetParser/Host.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

using namespace mlir;

void compressa::cpu::registerCpuCodegenDialects(DialectRegistry &registry) {
  registry.insert<arith::ArithDialect, cf::ControlFlowDialect,
                  func::FuncDialect, LLVM::LLVMDialect, math::MathDialect,
                  scf::SCFDialect>();
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
}

namespace {

/// One kernel's code: its module as bitcode, then its object.
struct Part {
  std::string name, bitcode, object, error;
};

/// Objects compiled in this process, by their part's bitcode, CPU and
/// triple: the ranks of an artifact (compressa-compile --ranks) differ only
/// in their experts' kernels, so each other kernel is optimised and compiled
/// once, not once a rank.
std::mutex &memoMutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, std::string> &memo() {
  static std::map<std::string, std::string> m;
  return m;
}

/// The target machine every part is compiled with (null if the CPU is unknown).
std::unique_ptr<llvm::TargetMachine> makeMachine(const llvm::Target *target,
                                                 const llvm::Triple &triple,
                                                 const std::string &cpu) {
  llvm::TargetOptions targetOptions;
  return std::unique_ptr<llvm::TargetMachine>(target->createTargetMachine(
      triple, cpu, "", targetOptions, llvm::Reloc::PIC_, std::nullopt,
      llvm::CodeGenOptLevel::Aggressive));
}

std::string bitcodeOf(const llvm::Module &m) {
  std::string bytes;
  llvm::raw_string_ostream os(bytes);
  llvm::WriteBitcodeToFile(m, os);
  os.flush();
  return bytes;
}

/// Optimises (O3) and compiles one part in a context of its own.
void compilePart(Part &part, const llvm::Target *target, const llvm::Triple &triple,
                 const std::string &cpu) {
  llvm::LLVMContext ctx;
  llvm::Expected<std::unique_ptr<llvm::Module>> mod = llvm::parseBitcodeFile(
      llvm::MemoryBufferRef(part.bitcode, part.name), ctx);
  if (!mod) {
    part.error = "reading its bitcode: " + llvm::toString(mod.takeError());
    return;
  }
  std::unique_ptr<llvm::TargetMachine> machine = makeMachine(target, triple, cpu);
  if (!machine) {
    part.error = "cannot create an LLVM target machine for CPU '" + cpu + "'";
    return;
  }
  auto optimize = mlir::makeOptimizingTransformer(3, 0, machine.get());
  if (llvm::Error err = optimize(mod->get())) {
    part.error = "optimising: " + llvm::toString(std::move(err));
    return;
  }
  llvm::SmallVector<char, 0> object;
  {
    llvm::raw_svector_ostream os(object);
    llvm::legacy::PassManager codegen;
    if (machine->addPassesToEmitFile(codegen, os, nullptr, llvm::CodeGenFileType::ObjectFile)) {
      part.error = "the target machine cannot emit object files";
      return;
    }
    codegen.run(**mod);
  }
  part.object.assign(object.begin(), object.end());
}

} // namespace

FailureOr<std::string>
compressa::cpu::compileToSharedObject(ModuleOp kernels,
                                      const CpuCodegenOptions &options,
                                      std::string &triple) {
  Location loc = kernels.getLoc();

  // Step 1. LLVM IR for the host triple.
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
  std::unique_ptr<llvm::TargetMachine> machine = makeMachine(target, targetTriple, cpu);
  if (!machine)
    return emitError(loc) << "cannot create an LLVM target machine for CPU '"
                          << cpu << "'";
  llvmModule->setTargetTriple(targetTriple);
  llvmModule->setDataLayout(machine->createDataLayout());

  // Step 2. A module a kernel (its function, the constant tables it reads,
  // the intrinsics' declarations), each optimised at O3 and compiled to an
  // object on its own, in parallel, unless this process compiled the same
  // bitcode for the same CPU before. The kernels are external functions
  // that call no other defined function, and their tables are internal
  // constants, so each part holds its own copies and the parts link as the
  // whole module did. LLVM never reassociates these kernels' floating-point
  // operations (no fast-math flags), so the parts compute the same bits.
  // A module whose functions call each other or share mutable globals
  // stays whole (one part).
  bool splittable = llvm::all_of(llvmModule->globals(), [](const llvm::GlobalVariable &gv) {
    return gv.isConstant();
  });
  for (llvm::Function &fn : *llvmModule)
    splittable = splittable && (fn.isDeclaration() || (fn.use_empty() && !fn.hasLocalLinkage()));
  std::vector<Part> parts;
  if (!splittable) {
    parts.push_back({"kernels", bitcodeOf(*llvmModule), "", ""});
  }
  for (llvm::Function &fn : *llvmModule) {
    if (fn.isDeclaration() || !splittable)
      continue;
    llvm::ValueToValueMapTy vmap;
    std::unique_ptr<llvm::Module> one =
        llvm::CloneModule(*llvmModule, vmap, [&](const llvm::GlobalValue *gv) {
          const auto *f = llvm::dyn_cast<llvm::Function>(gv);
          return !f || f->getName() == fn.getName();
        });
    // Tables other kernels read.
    for (llvm::GlobalVariable &gv : llvm::make_early_inc_range(one->globals()))
      if (gv.hasLocalLinkage() && gv.use_empty())
        gv.eraseFromParent();
    parts.push_back({fn.getName().str(), bitcodeOf(*one), "", ""});
  }
  auto keyOf = [&](const Part &p) { return cpu + "\n" + triple + "\n" + p.bitcode; };
  std::vector<Part *> todo;
  {
    std::lock_guard<std::mutex> lock(memoMutex());
    for (Part &p : parts) {
      auto it = memo().find(keyOf(p));
      if (it != memo().end())
        p.object = it->second;
      else
        todo.push_back(&p);
    }
  }
  {
    // COMPRESSA_CODEGEN_THREADS=N: at most N threads (default: the host's).
    unsigned threads = llvm::hardware_concurrency().compute_thread_count();
    if (const char *v = std::getenv("COMPRESSA_CODEGEN_THREADS"))
      threads = std::max(1, std::atoi(v));
    threads = std::max(1u, std::min<unsigned>(threads, todo.size()));
    llvm::DefaultThreadPool pool(llvm::hardware_concurrency(threads));
    for (Part *p : todo)
      pool.async([p, target, &targetTriple, &cpu] { compilePart(*p, target, targetTriple, cpu); });
    pool.wait();
  }
  for (Part *p : todo)
    if (!p->error.empty())
      return emitError(loc) << "compiling the CPU kernel " << p->name << ": " << p->error;
  {
    std::lock_guard<std::mutex> lock(memoMutex());
    for (Part *p : todo)
      memo().emplace(keyOf(*p), p->object);
  }

  // Step 3. A shared object, linked by ld.lld in a scratch directory.
  llvm::SmallString<128> dir;
  if (std::error_code ec = llvm::sys::fs::createUniqueDirectory("compressa-cpu", dir))
    return emitError(loc) << "cannot create a temporary directory: " << ec.message();
  auto cleanup = llvm::make_scope_exit([&] { llvm::sys::fs::remove_directories(dir); });
  llvm::SmallString<128> soPath(dir);
  llvm::sys::path::append(soPath, "kernels.so");
  std::vector<std::string> objPaths;
  for (auto [i, p] : llvm::enumerate(parts)) {
    llvm::SmallString<128> objPath(dir);
    llvm::sys::path::append(objPath, "kernel" + std::to_string(i) + ".o");
    std::error_code ec;
    llvm::raw_fd_ostream os(objPath, ec);
    if (ec)
      return emitError(loc) << "cannot write " << objPath << ": " << ec.message();
    os.write(p.object.data(), p.object.size());
    objPaths.push_back(objPath.str().str());
  }
  if (!options.dumpDir.empty()) {
    // The kernels' LLVM IR before optimisation, and each kernel's object.
    llvm::SmallString<128> ll(options.dumpDir);
    llvm::sys::path::append(ll, "kernels.ll");
    std::error_code ec;
    llvm::raw_fd_ostream llOs(ll, ec);
    if (!ec)
      llvmModule->print(llOs, nullptr);
    for (const Part &p : parts) {
      llvm::SmallString<128> obj(options.dumpDir);
      llvm::sys::path::append(obj, p.name + ".o");
      llvm::raw_fd_ostream objOs(obj, ec);
      if (!ec)
        objOs.write(p.object.data(), p.object.size());
    }
  }
  llvm::ErrorOr<std::string> lld = llvm::sys::findProgramByName("ld.lld");
  if (!lld)
    return emitError(loc) << "ld.lld not found on PATH (Debian package lld); "
                             "it links the CPU kernels into a shared object";
  std::string soArg = soPath.str().str();
  llvm::SmallVector<llvm::StringRef> args = {*lld, "-shared", "--hash-style=both", "-o", soArg};
  for (const std::string &o : objPaths)
    args.push_back(o);
  std::string linkError;
  int rc = llvm::sys::ExecuteAndWait(*lld, args, std::nullopt, {}, 0, 0, &linkError);
  if (rc != 0)
    return emitError(loc) << "linking the CPU kernels failed (" << *lld
                          << " -shared -o " << soArg << " <" << objPaths.size() << " objects>"
                          << "): exit " << rc << " " << linkError;
  auto buffer = llvm::MemoryBuffer::getFile(soPath);
  if (!buffer)
    return emitError(loc) << "cannot read " << soPath;
  return (*buffer)->getBuffer().str();
}
