//===- CpuTarget.h - The CPU target of the kernel lowering ------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// Kernels are `func.func @k(%argv: !llvm.ptr)` in a nested
// `module @compressa_kernels`, sequential code (one thread), loads and stores
// with alignment 1 (checkpoint tensors sit at any byte offset of an mmap'd
// file), the C library's f32 functions, and lookup tables for FP8/FP4/UE8M0.
// The `llvm` stage is scf->cf and arith/math/cf/func->LLVM on that module;
// CpuCodegen.h turns it into a shared object.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_TARGET_CPU_CPUTARGET_H
#define COMPRESSA_LOWERING_TARGET_CPU_CPUTARGET_H

#include "lowering/Target/TargetInfo.h"

namespace mlir::compressa::cpu {

class CpuTarget : public TargetInfo {
public:
  std::string name() const override { return "cpu"; }
  Operation *getOrCreateContainer(ModuleOp top) const override;
  Block *createKernel(OpBuilder &b, Location loc, Operation *container,
                      StringRef symbol) const override;
  void createReturn(OpBuilder &b, Location loc) const override;
  void buildLowerToLLVM(OpPassManager &pm) const override;
  /// The `llvm` stage's passes, for a PassManager anchored on the kernels'
  /// module itself.
  static void addLowerToLLVMPasses(OpPassManager &kernelsPM);
  void registerDialects(DialectRegistry &registry) const override;
};

} // namespace mlir::compressa::cpu

#endif // COMPRESSA_LOWERING_TARGET_CPU_CPUTARGET_H
