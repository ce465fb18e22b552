//===- CpuCodegen.h - Kernel module -> host shared object --------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
//   kernels (module @compressa_kernels, lowered to the LLVM dialect by
//   lower-kernels-to-llvm)
//     ──translateModuleToLLVMIR──▶ LLVM IR ──split: a module a kernel──▶
//     each: O3, TargetMachine ──▶ an object (in parallel, on the host's
//     threads or COMPRESSA_CODEGEN_THREADS; memoised in the process by the
//     kernel's bitcode, so the ranks of compressa-compile --ranks compile
//     each kernel they share once)
//     ──ld.lld -shared──▶ ELF shared object (bytes, carried in the artifact)
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_CPU_CPUCODEGEN_H
#define COMPRESSA_LOWERING_CPU_CPUCODEGEN_H

#include "mlir/IR/BuiltinOps.h"

#include <string>

namespace mlir::compressa::cpu {

struct CpuCodegenOptions {
  /// LLVM CPU name; "x86-64" runs on any x86-64 machine, "native" tunes for
  /// the compiling host.
  std::string cpu = "x86-64";
  /// Where to write `kernels.ll` (before optimisation) and each kernel's
  /// object, `<kernel>.o` (empty = nowhere).
  std::string dumpDir;
};

/// Compiles `kernels` (in the LLVM dialect) to a shared object. Returns its
/// bytes; diagnostics go to the module's context.
FailureOr<std::string> compileToSharedObject(ModuleOp kernels,
                                             const CpuCodegenOptions &options,
                                             std::string &triple);

/// Registers the dialects and translations kernel modules need.
void registerCpuCodegenDialects(DialectRegistry &registry);

} // namespace mlir::compressa::cpu

#endif // COMPRESSA_LOWERING_CPU_CPUCODEGEN_H
