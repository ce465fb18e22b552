//===- KernelBuilder.h - Scalar loop code on raw pointers --------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// The body language of Compressa's generated kernels: scf loops over i64
// induction variables, arith/math on f32, and llvm.load/store through typed
// element pointers. Weights are read in their checkpoint format (FP8 e4m3 with
// UE8M0 128x128 block scales, FP4 e2m1 with 1x32 scales, bf16, f32) and
// decoded in the loop that consumes them: no dequantised copy exists.
//
//   dsv4 op ──emitter──▶ scf + arith + math + llvm.{load,store,gep}
//          ──convert-*-to-llvm──▶ LLVM dialect ──▶ LLVM IR ──▶ object code
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_CPU_KERNELBUILDER_H
#define COMPRESSA_LOWERING_CPU_KERNELBUILDER_H

#include "lowering/Target/TargetInfo.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/STLFunctionalExtras.h"

#include <array>
#include <cstdlib>
#include <string>

namespace mlir::compressa::cpu {

/// A tensor as a kernel sees it: a pointer to its first element and the
/// element type it is stored in (f32, bf16, i64 or i32), row-major.
struct View {
  Value ptr;
  Type elt;
};

/// A weight matrix [rows, cols] (logical shape) in a checkpoint format.
struct WeightView {
  Value data;   ///< !llvm.ptr to the weight bytes
  Value scale;  ///< !llvm.ptr to the UE8M0 scales, or null
  Type elt;     ///< f32, bf16, f8E4M3FN, f4E2M1FN, i64
  int64_t rows = 0, cols = 0;
  /// A matrix no thread writes while the launch runs (a checkpoint weight
  /// from a kernel slot): its loads may take the target's read-only,
  /// streaming path. Views of activations and state leave it false.
  bool readOnly = false;
};

/// Emits kernel code at the builder's insertion point, for the device that
/// `target` describes (lowering/Target/TargetInfo.h): the loop nests are the
/// same on every target; threads, barriers, shuffles, alignment, elementary
/// functions and weight decoding come from the target (lookup tables where
/// it has no hardware decoding).
class KernelBuilder {
public:
  /// `container` holds the kernel (its symbol table receives lookup tables).
  KernelBuilder(OpBuilder &b, Location loc, Operation *container,
                const TargetInfo &target);

  OpBuilder &builder() { return b; }
  Location getLoc() { return loc; }
  Type f32() { return b.getF32Type(); }
  Type i64() { return b.getI64Type(); }
  Type ptrType();

  /// A compile-time experiment switch: the integer in environment variable
  /// `name` (read by compressa-compile), or `fallback` where it is unset.
  static int64_t experimentInt(const char *name, int64_t fallback) {
    const char *v = std::getenv(name);
    return v ? std::atoll(v) : fallback;
  }
  /// The string in environment variable `name`, or "" where it is unset.
  static std::string experimentString(const char *name) {
    const char *v = std::getenv(name);
    return v ? v : "";
  }

  //===--------------------------------------------------------------------===//
  // Scalars (i64 for integers, f32 for floats; ops dispatch on the type)
  //===--------------------------------------------------------------------===//
  Value c(int64_t v);
  Value c32(int64_t v); ///< i32 constant
  Value cf(double v);
  Value add(Value x, Value y);
  Value sub(Value x, Value y);
  Value mul(Value x, Value y);
  Value fma(Value x, Value y, Value z); ///< x * y + z rounded once (f32)
  /// acc + v * pow2 for a power of two `pow2` (a block scale): the product
  /// is exact, so one fused multiply-add rounds as the product and the sum
  /// do (the same bits, unless the product is subnormal); the FMA where the
  /// target has it as one instruction (TargetInfo::fastFma), else the two.
  Value addTimesPow2(Value acc, Value v, Value pow2);
  Value div(Value x, Value y); ///< float division, or signed integer division
  Value rem(Value x, Value y); ///< signed integer remainder
  Value min(Value x, Value y);
  Value max(Value x, Value y);
  Value neg(Value x);
  Value exp(Value x);
  Value log(Value x);
  Value sqrt(Value x);
  Value rsqrt(Value x);
  Value sigmoid(Value x);
  Value silu(Value x);
  Value softplus(Value x);
  Value cos(Value x);
  Value sin(Value x);
  Value lt(Value x, Value y); ///< x < y (ordered for floats)
  Value le(Value x, Value y);
  Value gt(Value x, Value y);
  Value eq(Value x, Value y);
  Value select(Value cond, Value x, Value y);
  Value andI(Value x, Value y); ///< x && y (i1) or bitwise
  Value orI(Value x, Value y);  ///< x || y (i1) or bitwise
  Value toF32(Value i);  ///< signed i64/i32 -> f32
  Value toI64(Value v);  ///< i32 -> i64 (sign extension)
  Value truncI32(Value v);
  Value negInf() { return cf(-std::numeric_limits<double>::infinity()); }

  //===--------------------------------------------------------------------===//
  // Memory
  //===--------------------------------------------------------------------===//
  /// Element `i` of type `elt` at `ptr`.
  Value load(Type elt, Value ptr, Value i);
  void store(Value v, Value ptr, Value i);
  /// `ptr` advanced by `i` elements of `elt`.
  Value offset(Type elt, Value ptr, Value i);
  /// Element `i` of a view, as f32 (or i64/i32 for integer views).
  Value loadF(const View &v, Value i);
  /// Stores f32 `x` as element `i` of a float view.
  void storeF(const View &v, Value i, Value x);
  /// The view advanced by `i` elements.
  View at(const View &v, Value i) { return {offset(v.elt, v.ptr, i), v.elt}; }
  /// Entry `i` of a table of pointers.
  Value loadPtr(Value table, Value i);
  /// The pointer in slot `slot` of the kernel's argument vector (an
  /// invariant load: no thread of the kernel writes the vector, so it never
  /// needs a barrier of its own).
  Value loadArgPtr(Value argv, int64_t slot);

  //===--------------------------------------------------------------------===//
  // Weights
  //===--------------------------------------------------------------------===//
  /// W[row, col] as f32.
  Value weight(const WeightView &w, Value row, Value col);
  /// W[row, col0 .. col0 + 7] as f32 times their block scale (exact), for
  /// col0 a multiple of 8: one word of FP4, two of FP8, decoded in registers.
  SmallVector<Value> weights8(const WeightView &w, Value row, Value col0);
  /// x rounded to bf16 (nearest even), as f32.
  Value roundBf16(Value x);
  /// lo and hi rounded to bf16 (nearest even), packed in an i32 (lo in the
  /// low half): a register of a bf16 matrix fragment.
  Value packBf16x2(Value lo, Value hi);
  /// W[row, col0 .. col0 + 7] times their block scale as the four bf16x2
  /// registers of a tensor-core fragment (register i: columns 2i, 2i + 1),
  /// packBf16x2 over weights8 (exact); bf16 weights with rows of a multiple
  /// of 8 columns: one 16-byte load where the target has the warp MMA.
  std::array<Value, 4> weightsBf16x2(const WeightView &w, Value row, Value col0);

  //===--------------------------------------------------------------------===//
  // Control flow
  //===--------------------------------------------------------------------===//
  /// for (i = lb; i < ub; ++i) body(i)
  void loop(Value lb, Value ub, function_ref<void(Value)> body);
  /// Loop with loop-carried values; body returns the next values.
  SmallVector<Value> reduce(Value lb, Value ub, ValueRange init,
                            function_ref<SmallVector<Value>(Value, ValueRange)> body);
  Value reduce1(Value lb, Value ub, Value init,
                function_ref<Value(Value, Value)> body);
  void ifThen(Value cond, function_ref<void()> then);

  //===--------------------------------------------------------------------===//
  // Work sharing. A CUDA kernel is one block of `threads()` threads that all
  // run the same (uniform) control flow; every store must sit in a
  // parallelLoop iteration (owned by one thread) or in a single region, each
  // fenced by block barriers, so no thread reads what another one is still
  // writing. On the CPU both are the plain sequential code. Nested inside a
  // region they are plain sequential code too.
  //===--------------------------------------------------------------------===//
  /// Threads per kernel block: 1 on the CPU.
  int64_t threads() const { return target.blockThreads(); }
  /// Whether the lanes of a warp run at once (warpLoop bodies run for every
  /// lane, shuffleXor exists); on the CPU a warpLoop body runs for lane 0.
  bool lanesParallel() const { return parallel(); }
  /// v of lane (lane ^ offset), in a warpLoop body where lanesParallel().
  Value shuffleXor(Value v, int64_t offset) {
    assert(parallel() && "lane shuffles need a parallel target");
    return target.shuffleXor(b, loc, v, offset, kLanes);
  }
  /// v of lane `srcLane` (a constant), in a warpLoop body where
  /// lanesParallel().
  Value shuffleIdx(Value v, int64_t srcLane) {
    assert(parallel() && "lane shuffles need a parallel target");
    return target.shuffleIdx(b, loc, v, c32(srcLane), kLanes);
  }
  /// The 32-bit word grid-wide barriers meet on (parallel targets).
  void setSyncWord(Value word) { syncWord = word; }
  /// The kernel serves single-token programs only (dsv4.single_token): a
  /// launch reads each weight row once, so dotRows streams the weights past
  /// L1 and shares block scales among a trip's lanes. Elsewhere (prefill,
  /// batched decode) a row is read again for each token, from L1.
  void setSingleToken(bool single) { singleToken = single; }
  const TargetInfo &targetInfo() const { return target; }
  /// Lanes of a lane-split dot product (a CUDA warp).
  static constexpr int64_t kLanes = 32;
  /// The iterations of [lb, ub), one per warp on CUDA (every lane of the
  /// warp runs body(i, lane)); a plain loop with lane 0 on the CPU.
  void warpLoop(Value lb, Value ub, function_ref<void(Value, Value)> body);
  /// sum_k x[k] * W[row, k] split over 32 lanes (dotRows of one row); the
  /// lane sums are added in the butterfly order of a warp shuffle (offsets
  /// 16, 8, 4, 2, 1). On CUDA each lane computes its own sum and the warp
  /// reduces them (call it in a warpLoop body; every lane gets the total);
  /// on the CPU one thread computes all 32 in the same order. Same bits on
  /// both targets.
  Value dotLanes(const View &x, const WeightView &w, Value row, Value lane);
  /// One weight row of dotRows.
  struct WeightRow {
    const WeightView *w;
    Value row;
    /// The row's own x (of the same element type as dotRows' x), or null:
    /// dotRows' x.
    const View *x = nullptr;
  };
  /// dot(x, W_r[row_r]) for a few rows of weights of one format and width,
  /// sharing the loads of x (call it in a warpLoop body; every lane gets the
  /// totals). Where a row is a whole number of segments (segmentBytes: 4
  /// FP8 or 8 FP4 columns in 4 bytes, 8 bf16 or 4 f32 columns in 16), lane l
  /// takes segments l, l + 32, ...: one load each, decoded in registers,
  /// summed in column order, times the segment's block scale (FP8 blocks
  /// hold 32 segments, FP4 blocks 4), added to the lane's sum in segment
  /// order (the x of a segment: 16-byte loads where x is aligned; a warp's
  /// lanes read x at 16 or 32 bytes apart); the lane sums then meet
  /// in the butterfly order of a warp shuffle. Other widths take
  /// dotLanesByColumn. Same order on every target (the CPU computes the 32
  /// lanes in turn).
  /// With `segCount` > 0: only the segments segBegin .. segBegin + segCount
  /// - 1 of each row (a part of a split dot; rows by segments only).
  SmallVector<Value> dotRows(const View &x, ArrayRef<WeightRow> rows, Value lane,
                             Value segBegin = {}, int64_t segCount = 0);
  /// The bytes of a segment of weights of element type `elt`: 4 for FP8 and
  /// FP4 (a warp's lanes then read x 16 or 32 bytes apart, which the L1
  /// cache serves in few wavefronts; 16-byte segments of FP4 put them 128
  /// bytes apart), 16 for bf16 and f32.
  static int64_t segmentBytes(Type elt);
  /// The segments of a row of `w` that dotRows reads by segment with an x
  /// of element type `xElt`, or 0 where it reads it by column.
  static int64_t segmentsPerRow(const WeightView &w, Type xElt);
  /// dotLanes with lane l summing columns l, l + 32, ... (FP8: per
  /// 128-column block, then times the block's scale; FP4: each term times
  /// its 32-block's scale).
  Value dotLanesByColumn(const View &x, const WeightView &w, Value row, Value lane);
  /// sum_k a[k] * b[k] for k < n, lane-split the same way.
  Value dotLanes(const View &a, const View &b, int64_t n, Value lane);
  /// The totals over the 32 lanes of the values laneValues(lane) returns
  /// (in a warpLoop body), added in the butterfly order of a warp shuffle;
  /// `max`: their maximum instead. On CUDA each lane computes its own
  /// values; on the CPU they are computed for lanes 0..31 in turn (kept in
  /// a stack array of the kernel's entry block). Every lane gets the totals.
  SmallVector<Value> laneTotals(Value lane, int64_t n,
                                function_ref<SmallVector<Value>(Value)> laneValues,
                                bool max = false);
  /// Hints the target to bring `bytes` at `ptr` into its L2 cache: chunks of
  /// 64 KiB spread over the launch's threads, no barrier (nothing is
  /// stored); nothing on the CPU.
  void prefetchL2(Value ptr, int64_t bytes);
  /// reduce1 with `unroll` iterations per trip of its loop (and a loop for
  /// the rest): the same operations in the same order, more loads in flight.
  Value reduceUnrolled(Value lb, Value ub, int64_t unroll, Value init,
                       function_ref<Value(Value, Value)> body);
  /// Stores x at v[i] once per warp (lane 0 on CUDA).
  void storeOnce(const View &v, Value i, Value x, Value lane);
  /// The iterations of [lb, ub), spread over the block's threads.
  void parallelLoop(Value lb, Value ub, function_ref<void(Value)> body);
  /// Code run by thread 0 of the block.
  void single(function_ref<void()> body);
  /// Drops the barriers that end the launch (nothing that touches memory
  /// follows them); call it before the kernel's return.
  void endLaunch();
  /// Independent work side by side: emit(p) for p < weights.size(), each on
  /// its own part of the launch's blocks, in proportion to weights[p] (at
  /// least one block each), with barriers among that part's blocks only;
  /// then a barrier of the whole launch. What emit(p) emits must neither
  /// read what emit(q) writes nor write what it reads or writes (q != p).
  /// With fewer blocks than parts, every block runs every part, in order. On
  /// a sequential target emit(0), emit(1), ... in turn. At most
  /// kMaxBranches parts (each has its own barrier word, KernelABI.h).
  void branches(ArrayRef<int64_t> weights, function_ref<void(size_t)> emit);
  static constexpr size_t kMaxBranches = 15;
  /// Whether a store was emitted outside any parallelLoop/single region
  /// (a lowering bug on CUDA: checked after each kernel, on both targets).
  bool storedOutsideRegion() const { return strayStore; }
  /// cond ? then() : otherwise(), each returning values of `types`.
  SmallVector<Value> ifElse(Value cond, TypeRange types,
                            function_ref<SmallVector<Value>()> then,
                            function_ref<SmallVector<Value>()> otherwise);

  /// The address of a constant f32 table `__compressa_lut_<key>` in the
  /// kernel container (created on first use).
  Value table(const std::string &key, ArrayRef<float> values) {
    return lut("__compressa_lut_" + key, values);
  }

  Value e8m0(Value byte); ///< UE8M0 code (i8) -> f32
  /// The e2m1 value (unscaled) of FP4 weight [row, col]; `odd`: col is odd.
  Value fp4At(const WeightView &w, Value row, Value col, Value odd);

private:
  Value lut(StringRef name, ArrayRef<float> values);
  Value fp8(Value byte);  ///< e4m3fn code (i8) -> f32
  Value fp4(Value nibble); ///< e2m1 code (i8, low 4 bits) -> f32
  /// The values of the weights in a 16-byte segment held as four i32 words,
  /// times 2^-k (k returned: a target's exact word-wise decoding may scale).
  int decodeSegment(Type elt, ArrayRef<Value> words, SmallVectorImpl<Value> &vals);

  OpBuilder &b;
  Location loc;
  Operation *container;
  const TargetInfo &target;
  Value syncWord;
  bool singleToken = false;
  /// Whether the kernel's block has several threads (work is shared).
  bool parallel() const { return target.blockThreads() > 1; }
  int regionDepth = 0;
  bool strayStore = false;
  /// A barrier of the launch, unless every way to the insertion point from
  /// a barrier or from the start of the launch touches no memory (then
  /// that one already separates what comes before and after: the
  /// back-to-back barriers of consecutive loops become one, a launch's
  /// first loop needs none).
  void barrier();
  /// A barrier of the launch (or of the branch's part) here, recorded.
  void emitBarrier();
  /// Whether every way to `it` in `block`, back to a barrier or the start
  /// of the launch, touches no memory that a thread may write.
  bool separated(Block *block, Block::iterator it);
  /// The first and last ops of each barrier emitted, in order.
  SmallVector<std::pair<Operation *, Operation *>> barriers;
  /// The blocks a branch runs on (branches()): its first block, their
  /// count (i64) and their barrier word; null outside branches.
  struct Part {
    Value first, blocks, syncWord;
  };
  Part part;
  /// This thread's index among the threads of the launch, or of the part
  /// of it that runs the branch being emitted.
  Value threadId();
  /// The threads of the launch, or of the branch's part: the stride of
  /// shared loops.
  Value threadCount();
  /// The lane-split sum of `full` chunks of `chunk` columns and a tail chunk
  /// of `tail` columns (laneTotals of the lanes' sums); step(acc, chunk
  /// index, lane, columns in this chunk) adds one lane's share of a chunk.
  Value laneSum(int64_t full, int64_t chunk, int64_t tail, Value lane,
                function_ref<Value(Value, Value, Value, int64_t)> step);
};

} // namespace mlir::compressa::cpu

#endif // COMPRESSA_LOWERING_CPU_KERNELBUILDER_H
