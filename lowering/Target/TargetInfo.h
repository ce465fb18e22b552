//===- TargetInfo.h - What kernels need to know of their device -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// The target interface of the kernel lowering. Emitters and KernelBuilder
// describe a kernel once; everything that differs between devices sits
// behind this interface: where kernels live and how they start and end,
// thread ids, barriers and warp shuffles, the launch geometry, the alignment
// loads may assume, elementary functions, hardware decoding of FP8/FP4/UE8M0
// codes, and the passes that take kernels to the LLVM dialect. One
// implementation per target: lowering/Target/CPU, lowering/Target/CUDA.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_TARGET_TARGETINFO_H
#define COMPRESSA_LOWERING_TARGET_TARGETINFO_H

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"

#include <memory>
#include <string>

namespace mlir {
class OpPassManager;
namespace compressa {

/// Elementary functions of the kernels (f32 in, f32 out).
enum class MathFn { Exp, Log, Sqrt, Cos, Sin };

class TargetInfo {
public:
  virtual ~TargetInfo() = default;

  /// "cpu" or "cuda:<chip>", as `--target` spells it.
  virtual std::string name() const = 0;
  virtual bool isCuda() const { return false; }

  //===--------------------------------------------------------------------===//
  // Kernels in the module
  //===--------------------------------------------------------------------===//
  /// The symbol of the op holding the kernels (a nested module on the CPU,
  /// a gpu.module on CUDA); launches name kernels as @container::@kernel.
  static constexpr llvm::StringLiteral kContainer = "compressa_kernels";
  /// The op holding the kernels inside `top`, created on first use.
  virtual Operation *getOrCreateContainer(ModuleOp top) const = 0;
  /// Creates kernel `symbol` taking one `!llvm.ptr` (the argument vector)
  /// at the end of `container`; returns its entry block.
  virtual Block *createKernel(OpBuilder &b, Location loc, Operation *container,
                              StringRef symbol) const = 0;
  /// Ends a kernel body.
  virtual void createReturn(OpBuilder &b, Location loc) const = 0;
  /// Code at the start of a dispatch kernel's body (at b's insertion point),
  /// before anything touches memory; nothing by default. CUDA (sm_90 on):
  /// wait for the grids before it, then let the next grid be scheduled
  /// (programmatic dependent launch), and mark `kernel` so
  /// (kProgrammaticAttr).
  virtual void kernelPrologue(OpBuilder &b, Location loc, Operation *kernel) const {}
  /// The unit attribute kernelPrologue leaves on a kernel whose launch may
  /// overlap the grid before it (the artifact's Kernel.programmatic).
  static constexpr llvm::StringLiteral kProgrammaticAttr = "compressa.programmatic";

  //===--------------------------------------------------------------------===//
  // Parallelism and geometry
  //===--------------------------------------------------------------------===//
  /// Threads of one block of a kernel; 1: sequential code, and threadId,
  /// threadCount, barrier and shuffleXor are never called.
  virtual int64_t blockThreads() const { return 1; }
  /// This thread's index among all threads of the launch (i64).
  virtual Value threadId(OpBuilder &b, Location loc) const;
  /// The threads of the launch (i64): the stride of shared loops.
  virtual Value threadCount(OpBuilder &b, Location loc) const;
  /// This thread's block and the launch's blocks (i64).
  virtual Value blockId(OpBuilder &b, Location loc) const;
  virtual Value blockCount(OpBuilder &b, Location loc) const;
  /// A barrier of every thread of the launch; `syncWord` is the 32-bit word
  /// grid-wide barriers meet on (KernelABI.h: before the scratch area).
  /// With `block` and `blocks` (i64): a barrier of the blocks of a part of
  /// the launch only (KernelBuilder::branches), `block` this block's index
  /// among them, `syncWord` the part's own word.
  virtual void barrier(OpBuilder &b, Location loc, Value syncWord, Value block = {},
                       Value blocks = {}) const;
  /// `v` of the lane `offset` away in an xor butterfly of `width` lanes.
  virtual Value shuffleXor(OpBuilder &b, Location loc, Value v, int64_t offset,
                           int64_t width) const;
  /// `v` of lane `srcLane` (an i32) of `width` lanes; only where
  /// shuffleXor exists.
  virtual Value shuffleIdx(OpBuilder &b, Location loc, Value v, Value srcLane,
                           int64_t width) const;

  //===--------------------------------------------------------------------===//
  // Memory and arithmetic
  //===--------------------------------------------------------------------===//
  /// The i64 scalar (token count, start position) of the argument slot whose
  /// entry is `entry`: the entry itself on the CPU; on CUDA the entry points
  /// to a device int64 (so argument vectors and captured graphs stay valid
  /// across calls).
  virtual Value loadScalarArg(OpBuilder &b, Location loc, Value entry) const;
  /// The alignment loads and stores of `elt` may assume.
  virtual unsigned alignmentOf(Type elt) const { return 1; }
  /// fn(x) for an f32 x.
  virtual Value math(OpBuilder &b, Location loc, MathFn fn, Value x) const;
  /// Hardware decoding of an e4m3 / UE8M0 / e2m1 code (an i8) to f32, or a
  /// null Value where the target has none (KernelBuilder then uses lookup
  /// tables).
  virtual Value decodeE4M3(OpBuilder &b, Location loc, Value byte) const {
    return {};
  }
  virtual Value decodeE8M0(OpBuilder &b, Location loc, Value byte) const {
    return {};
  }
  virtual Value decodeE2M1(OpBuilder &b, Location loc, Value nibble) const {
    return {};
  }
  /// The two e4m3 codes of an i16 (low byte first) as f32 values in `out`,
  /// or false where the target has no paired decoding.
  virtual bool decodeE4M3Pair(OpBuilder &b, Location loc, Value pair,
                              Value out[2]) const {
    return false;
  }
  /// The eight e2m1 codes of an i32 (bits 4j..4j+3 are code j) as f32 values
  /// times 2^-k in `out`; returns k, or -1 where the target has no word-wise
  /// decoding. A power-of-two factor keeps every product's rounding.
  virtual int decodeE2M1Word(OpBuilder &b, Location loc, Value word,
                             SmallVectorImpl<Value> &out) const {
    return -1;
  }
  /// Starts bringing `bytes` (a multiple of 16) at global address `ptr`
  /// into the L2 cache, without waiting; nothing where the target has no
  /// such hint.
  virtual void prefetchL2(OpBuilder &b, Location loc, Value ptr, Value bytes) const {}
  /// Whether a fused multiply-add is one instruction of the target's
  /// baseline (CUDA: fma.rn.f32); the CPU's default x86-64 has none (LLVM
  /// calls libm's fmaf).
  virtual bool fastFma() const { return false; }
  /// Whether loads of 16 bytes (vector<4xi32>, vector<4xf32>) are issued as
  /// such (aligned accesses); the CPU target leaves vectorisation to LLVM.
  virtual bool wideLoads() const { return false; }
  /// out[0..3] = the four f32 at `ptr` (16-byte aligned), loaded as one
  /// 16-byte access where the target has them (CUDA: as inline PTX, so that
  /// LLVM cannot split it into four loads); a vector load by default.
  virtual void loadF32x4(OpBuilder &b, Location loc, Value ptr, Value out[4]) const;
  /// `words` (1 or 4) 32-bit words at `ptr` that the launch reads once (a
  /// weight stream), into `out`, with the target's streaming-load hints;
  /// false where it has none (the caller loads them plainly).
  virtual bool loadStreamed(OpBuilder &b, Location loc, Value ptr, int64_t words,
                            SmallVectorImpl<Value> &out) const {
    return false;
  }
  /// Limits `kernel` to `count` registers per thread, so that more blocks
  /// share a multiprocessor; nothing where the target has no such limit.
  virtual void limitRegisters(Operation *kernel, int64_t count) const {}
  /// The bf16 bits of lo (low half) and hi (high half), each rounded to
  /// nearest even, as one i32 where the target converts both in one
  /// instruction (CUDA: cvt.rn.bf16x2.f32); null otherwise.
  virtual Value packBf16x2(OpBuilder &b, Location loc, Value lo, Value hi) const {
    return {};
  }
  /// Whether the target has the warp-wide bf16 matrix multiply of mmaBf16.
  virtual bool hasWarpMmaBf16() const { return false; }
  /// d = A B + c over a warp (PTX mma.sync.m16n8k16.row.col.f32.bf16.bf16.f32):
  /// A 16 x 16 and B 16 x 8 of bf16 in PTX's fragment layout (four and two
  /// i32 of two bf16 each per lane), c and d four f32 per lane. Only where
  /// hasWarpMmaBf16().
  virtual void mmaBf16(OpBuilder &b, Location loc, ArrayRef<Value> a, ArrayRef<Value> bFrag,
                       ArrayRef<Value> c, Value d[4]) const {}
  /// The e4m3 codes of words w0 (bytes 0..3) and w1 (bytes 4..7) as four
  /// f16x2 words, word i holding bytes i (low half) and i + 4, exactly;
  /// false where the target has no such conversion.
  virtual bool decodeE4M3x8F16x2(OpBuilder &b, Location loc, Value w0, Value w1,
                                 Value out[4]) const {
    return false;
  }
  /// The same with f16 A and B (mma.sync.m16n8k16.row.col.f32.f16.f16.f32):
  /// four and two i32 of two f16 each per lane (the lower index in the low
  /// half). Only where hasWarpMmaBf16().
  virtual void mmaF16(OpBuilder &b, Location loc, ArrayRef<Value> a, ArrayRef<Value> bFrag,
                      ArrayRef<Value> c, Value d[4]) const {}
  /// The i32 whose byte i is byte ((selector >> 4i) & 7) of the eight bytes
  /// lo (0..3), hi (4..7) (PTX prmt.b32 in its default mode), or null where
  /// the target has no byte permutation.
  virtual Value selectBytes(OpBuilder &b, Location loc, Value lo, Value hi,
                            uint32_t selector) const {
    return {};
  }
  /// The mask (i32) of the warp's active lanes whose v (i32) equals this
  /// lane's (PTX activemask and match.any.sync), or null where the target
  /// has no such match.
  virtual Value matchActiveLanes(OpBuilder &b, Location loc, Value v) const { return {}; }

  //===--------------------------------------------------------------------===//
  // Code generation
  //===--------------------------------------------------------------------===//
  /// Adds the passes that take the kernel container to the LLVM dialect
  /// (the `llvm` stage), nested on `pm` anchored on the top module.
  virtual void buildLowerToLLVM(OpPassManager &pm) const = 0;
  /// Registers the dialects (and LLVM IR translations) the target's kernels
  /// and their lowering use.
  virtual void registerDialects(DialectRegistry &registry) const = 0;
};

/// f32 fn(x) through the math dialect.
Value createMath(OpBuilder &b, Location loc, MathFn fn, Value x);

/// The target named `spec` ("cpu", "cuda:sm_90a", ...); null with `error`
/// set when `spec` names none. `toolkitPath` and `dumpDir` configure CUDA
/// code generation.
std::unique_ptr<TargetInfo> createTarget(StringRef spec, std::string &error);

} // namespace compressa
} // namespace mlir

#endif // COMPRESSA_LOWERING_TARGET_TARGETINFO_H
