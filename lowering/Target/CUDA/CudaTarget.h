//===- CudaTarget.h - The CUDA target of the kernel lowering ----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// Kernels are `gpu.func @k(%argv: !llvm.ptr) kernel` in
// `gpu.module @compressa_kernels [#nvvm.target<chip = ...>]`, one block of
// 256 threads sharing each kernel's loops (barriers between phases, warp
// shuffles for lane-split sums), natural alignment, elementary functions in
// f64 (libdevice's f32 ones are up to 2 ULP off), FP8 decoded by
// cvt.rn.f16x2.e4m3x2 (sm_89+), e2m1 and UE8M0 by integer ops. The `llvm`
// stage is scf->cf and gpu->NVVM on the gpu.module; CudaCodegen.h makes PTX
// and a cubin of it.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_TARGET_CUDA_CUDATARGET_H
#define COMPRESSA_LOWERING_TARGET_CUDA_CUDATARGET_H

#include "lowering/Target/CUDA/CudaCodegen.h"
#include "lowering/Target/TargetInfo.h"

namespace mlir::compressa::cuda {

class CudaTarget : public TargetInfo {
public:
  explicit CudaTarget(std::string chip);

  std::string name() const override { return "cuda:" + chip; }
  bool isCuda() const override { return true; }
  const std::string &getChip() const { return chip; }
  /// PTX features for the chip: +ptx81 below sm_90 (sm_89's e4m3x2
  /// conversions), +ptx80 (the first PTX with sm_90a) up to sm_9x, +ptx86
  /// beyond.
  std::string features() const;

  Operation *getOrCreateContainer(ModuleOp top) const override;
  Block *createKernel(OpBuilder &b, Location loc, Operation *container,
                      StringRef symbol) const override;
  void createReturn(OpBuilder &b, Location loc) const override;

  int64_t blockThreads() const override { return kThreads; }
  void limitRegisters(Operation *kernel, int64_t count) const override;
  void loadF32x4(OpBuilder &b, Location loc, Value ptr, Value out[4]) const override;
  bool loadStreamed(OpBuilder &b, Location loc, Value ptr, int64_t words,
                    SmallVectorImpl<Value> &out) const override;
  Value packBf16x2(OpBuilder &b, Location loc, Value lo, Value hi) const override;
  bool hasWarpMmaBf16() const override { return true; }
  void mmaBf16(OpBuilder &b, Location loc, ArrayRef<Value> a, ArrayRef<Value> bFrag,
               ArrayRef<Value> c, Value d[4]) const override;
  Value selectBytes(OpBuilder &b, Location loc, Value lo, Value hi,
                    uint32_t selector) const override;
  Value matchActiveLanes(OpBuilder &b, Location loc, Value v) const override;
  bool decodeE4M3x8F16x2(OpBuilder &b, Location loc, Value w0, Value w1,
                         Value out[4]) const override;
  void mmaF16(OpBuilder &b, Location loc, ArrayRef<Value> a, ArrayRef<Value> bFrag,
               ArrayRef<Value> c, Value d[4]) const override;
  Value threadId(OpBuilder &b, Location loc) const override;
  Value threadCount(OpBuilder &b, Location loc) const override;
  Value blockId(OpBuilder &b, Location loc) const override;
  Value blockCount(OpBuilder &b, Location loc) const override;
  void barrier(OpBuilder &b, Location loc, Value syncWord, Value block = {},
               Value blocks = {}) const override;
  Value shuffleXor(OpBuilder &b, Location loc, Value v, int64_t offset,
                   int64_t width) const override;
  Value shuffleIdx(OpBuilder &b, Location loc, Value v, Value srcLane,
                   int64_t width) const override;
  unsigned alignmentOf(Type elt) const override;
  Value loadScalarArg(OpBuilder &b, Location loc, Value entry) const override;
  Value math(OpBuilder &b, Location loc, MathFn fn, Value x) const override;
  Value decodeE4M3(OpBuilder &b, Location loc, Value byte) const override;
  Value decodeE8M0(OpBuilder &b, Location loc, Value byte) const override;
  Value decodeE2M1(OpBuilder &b, Location loc, Value nibble) const override;
  bool decodeE4M3Pair(OpBuilder &b, Location loc, Value pair,
                      Value out[2]) const override;
  int decodeE2M1Word(OpBuilder &b, Location loc, Value word,
                     SmallVectorImpl<Value> &out) const override;
  bool wideLoads() const override { return true; }
  bool fastFma() const override { return true; }
  void kernelPrologue(OpBuilder &b, Location loc, Operation *kernel) const override;
  void prefetchL2(OpBuilder &b, Location loc, Value ptr, Value bytes) const override;

  void buildLowerToLLVM(OpPassManager &pm) const override;
  void registerDialects(DialectRegistry &registry) const override;

  /// Threads of a kernel's block: enough to cover a Hopper SM's schedulers
  /// several times over for the row-parallel loops, few enough that
  /// barriers stay cheap.
  static constexpr int64_t kThreads = 256;

private:
  std::string chip;
};

} // namespace mlir::compressa::cuda

#endif // COMPRESSA_LOWERING_TARGET_CUDA_CUDATARGET_H
