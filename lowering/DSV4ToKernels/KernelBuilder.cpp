//===- KernelBuilder.cpp - Scalar loop code on raw pointers -------------===//
// SPDX-License-Identifier: Apache-2.0

#include "lowering/DSV4ToKernels/KernelBuilder.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/Interfaces/FunctionInterfaces.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include <cmath>
#include <cstdlib>
#include <string>

using namespace mlir;
using namespace mlir::compressa::cpu;

KernelBuilder::KernelBuilder(OpBuilder &b, Location loc, Operation *container,
                             const TargetInfo &target)
    : b(b), loc(loc), container(container), target(target) {}

Type KernelBuilder::ptrType() { return LLVM::LLVMPointerType::get(b.getContext()); }

//===----------------------------------------------------------------------===//
// Scalars
//===----------------------------------------------------------------------===//

Value KernelBuilder::c(int64_t v) {
  return arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(v));
}
Value KernelBuilder::c32(int64_t v) {
  return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(v));
}
Value KernelBuilder::cf(double v) {
  return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(static_cast<float>(v)));
}

static bool isFloat(Value v) { return isa<FloatType>(v.getType()); }

Value KernelBuilder::add(Value x, Value y) {
  return isFloat(x) ? Value(arith::AddFOp::create(b, loc, x, y))
                    : Value(arith::AddIOp::create(b, loc, x, y));
}
Value KernelBuilder::sub(Value x, Value y) {
  return isFloat(x) ? Value(arith::SubFOp::create(b, loc, x, y))
                    : Value(arith::SubIOp::create(b, loc, x, y));
}
Value KernelBuilder::mul(Value x, Value y) {
  return isFloat(x) ? Value(arith::MulFOp::create(b, loc, x, y))
                    : Value(arith::MulIOp::create(b, loc, x, y));
}
Value KernelBuilder::fma(Value x, Value y, Value z) {
  // llvm.fma (fma.rn.f32 on CUDA; on the CPU an FMA instruction or libm's
  // fmaf, correctly rounded either way).
  return LLVM::FMAOp::create(b, loc, x, y, z);
}
Value KernelBuilder::addTimesPow2(Value acc, Value v, Value pow2) {
  // COMPRESSA_SCALE_FMA=0 at compile time: the product and the sum (the
  // code before, for A/B runs; the same bits).
  static const bool off = experimentString("COMPRESSA_SCALE_FMA") == "0";
  return target.fastFma() && !off ? fma(v, pow2, acc) : add(acc, mul(v, pow2));
}
Value KernelBuilder::div(Value x, Value y) {
  return isFloat(x) ? Value(arith::DivFOp::create(b, loc, x, y))
                    : Value(arith::DivSIOp::create(b, loc, x, y));
}
Value KernelBuilder::rem(Value x, Value y) {
  return arith::RemSIOp::create(b, loc, x, y);
}
Value KernelBuilder::min(Value x, Value y) {
  return isFloat(x) ? Value(arith::MinimumFOp::create(b, loc, x, y))
                    : Value(arith::MinSIOp::create(b, loc, x, y));
}
Value KernelBuilder::max(Value x, Value y) {
  return isFloat(x) ? Value(arith::MaximumFOp::create(b, loc, x, y))
                    : Value(arith::MaxSIOp::create(b, loc, x, y));
}
Value KernelBuilder::neg(Value x) { return arith::NegFOp::create(b, loc, x); }
// Elementary functions: the target's (TargetInfo::math; the CUDA target
// evaluates them in f64 so both targets round alike).
Value KernelBuilder::exp(Value x) { return target.math(b, loc, MathFn::Exp, x); }
Value KernelBuilder::log(Value x) { return target.math(b, loc, MathFn::Log, x); }
Value KernelBuilder::sqrt(Value x) { return target.math(b, loc, MathFn::Sqrt, x); }
Value KernelBuilder::rsqrt(Value x) { return div(cf(1.0), sqrt(x)); }
Value KernelBuilder::cos(Value x) { return target.math(b, loc, MathFn::Cos, x); }
Value KernelBuilder::sin(Value x) { return target.math(b, loc, MathFn::Sin, x); }
Value KernelBuilder::sigmoid(Value x) {
  return div(cf(1.0), add(cf(1.0), exp(neg(x))));
}
Value KernelBuilder::silu(Value x) { return mul(x, sigmoid(x)); }
Value KernelBuilder::softplus(Value x) {
  // max(x, 0) + log(1 + exp(-|x|)): no overflow for large |x|.
  Value absX = max(x, neg(x));
  return add(max(x, cf(0.0)), log(add(cf(1.0), exp(neg(absX)))));
}

Value KernelBuilder::lt(Value x, Value y) {
  return isFloat(x) ? Value(arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, x, y))
                    : Value(arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, x, y));
}
Value KernelBuilder::le(Value x, Value y) {
  return isFloat(x) ? Value(arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLE, x, y))
                    : Value(arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sle, x, y));
}
Value KernelBuilder::gt(Value x, Value y) { return lt(y, x); }
Value KernelBuilder::eq(Value x, Value y) {
  return isFloat(x) ? Value(arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, x, y))
                    : Value(arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, x, y));
}
Value KernelBuilder::select(Value cond, Value x, Value y) {
  return arith::SelectOp::create(b, loc, cond, x, y);
}
Value KernelBuilder::andI(Value x, Value y) { return arith::AndIOp::create(b, loc, x, y); }
Value KernelBuilder::orI(Value x, Value y) { return arith::OrIOp::create(b, loc, x, y); }
Value KernelBuilder::toF32(Value i) { return arith::SIToFPOp::create(b, loc, f32(), i); }
Value KernelBuilder::toI64(Value v) {
  if (v.getType() == i64())
    return v;
  return arith::ExtSIOp::create(b, loc, i64(), v);
}
Value KernelBuilder::truncI32(Value v) {
  return arith::TruncIOp::create(b, loc, b.getI32Type(), v);
}

//===----------------------------------------------------------------------===//
// Memory
//===----------------------------------------------------------------------===//

Value KernelBuilder::offset(Type elt, Value ptr, Value i) {
  return LLVM::GEPOp::create(b, loc, ptrType(), elt, ptr, ValueRange{i});
}

Value KernelBuilder::load(Type elt, Value ptr, Value i) {
  return LLVM::LoadOp::create(b, loc, elt, offset(elt, ptr, i),
                              target.alignmentOf(elt));
}

void KernelBuilder::store(Value v, Value ptr, Value i) {
  if (regionDepth == 0)
    strayStore = true;
  LLVM::StoreOp::create(b, loc, v, offset(v.getType(), ptr, i),
                        target.alignmentOf(v.getType()));
}

Value KernelBuilder::loadF(const View &v, Value i) {
  if (v.elt.isBF16()) {
    // bf16 -> f32: the 16 bits become the high half of the f32.
    Value bits = load(b.getI16Type(), v.ptr, i);
    Value wide = arith::ExtUIOp::create(b, loc, b.getI32Type(), bits);
    Value shifted = arith::ShLIOp::create(
        b, loc, wide, arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(16)));
    return arith::BitcastOp::create(b, loc, f32(), shifted);
  }
  return load(v.elt, v.ptr, i);
}

void KernelBuilder::storeF(const View &v, Value i, Value x) {
  if (v.elt.isBF16()) {
    // f32 -> bf16 with round-to-nearest-even, in integer ops: no compiler-rt
    // helper (__truncsfbf2) is needed on targets without bf16 instructions.
    Type i32 = b.getI32Type();
    Value bits = arith::BitcastOp::create(b, loc, i32, x);
    Value lsb = arith::AndIOp::create(
        b, loc, arith::ShRUIOp::create(b, loc, bits, c32(16)), c32(1));
    Value rounded = arith::AddIOp::create(
        b, loc, bits, arith::AddIOp::create(b, loc, lsb, c32(0x7FFF)));
    // NaN stays a (quiet) NaN instead of rounding into infinity.
    Value isNan = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNO, x, x);
    Value quiet = arith::OrIOp::create(b, loc, bits, c32(0x00400000));
    Value chosen = arith::SelectOp::create(b, loc, isNan, quiet, rounded);
    Value high = arith::ShRUIOp::create(b, loc, chosen, c32(16));
    store(arith::TruncIOp::create(b, loc, b.getI16Type(), high), v.ptr, i);
    return;
  }
  store(x, v.ptr, i);
}

Value KernelBuilder::loadPtr(Value table, Value i) {
  return load(ptrType(), table, i);
}

Value KernelBuilder::loadArgPtr(Value argv, int64_t slot) {
  auto op = LLVM::LoadOp::create(b, loc, ptrType(), offset(ptrType(), argv, c(slot)),
                                 target.alignmentOf(ptrType()));
  op.setInvariant(true);
  return op;
}

//===----------------------------------------------------------------------===//
// Weights
//===----------------------------------------------------------------------===//

Value KernelBuilder::lut(StringRef name, ArrayRef<float> values) {
  auto arrayType = LLVM::LLVMArrayType::get(f32(), values.size());
  if (!SymbolTable::lookupSymbolIn(container, name)) {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&container->getRegion(0).front());
    auto tensorType = RankedTensorType::get({int64_t(values.size())}, f32());
    LLVM::GlobalOp::create(b, loc, arrayType, /*isConstant=*/true,
                           LLVM::Linkage::Internal, name,
                           DenseElementsAttr::get(tensorType, values));
  }
  return LLVM::AddressOfOp::create(b, loc, ptrType(), name);
}

/// The 256 values of e4m3fn (bias 7, no infinities, 0x7F/0xFF NaN).
static SmallVector<float> fp8Table() {
  SmallVector<float> t(256);
  for (int v = 0; v < 256; ++v) {
    int sign = v >> 7, e = (v >> 3) & 15, m = v & 7;
    double x = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
    if (e == 15 && m == 7)
      x = std::nan("");
    t[v] = static_cast<float>(sign ? -x : x);
  }
  return t;
}

/// The 256 values of UE8M0: 2^(v - 127), 0xFF NaN.
static SmallVector<float> e8m0Table() {
  SmallVector<float> t(256);
  for (int v = 0; v < 256; ++v)
    t[v] = v == 255 ? std::nanf("") : static_cast<float>(std::ldexp(1.0, v - 127));
  return t;
}

/// The 16 values of e2m1: bit 3 sign, magnitudes {0, .5, 1, 1.5, 2, 3, 4, 6}.
static SmallVector<float> fp4Table() {
  const float mag[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  SmallVector<float> t(16);
  for (int v = 0; v < 16; ++v)
    t[v] = (v & 8) ? -mag[v & 7] : mag[v & 7];
  return t;
}

static Value byteIndex(OpBuilder &b, Location loc, Value byte) {
  return arith::ExtUIOp::create(b, loc, b.getI64Type(), byte);
}

Value KernelBuilder::fp8(Value byte) {
  if (Value v = target.decodeE4M3(b, loc, byte))
    return v;
  static const SmallVector<float> table = fp8Table();
  return load(f32(), lut("__compressa_lut_e4m3", table), byteIndex(b, loc, byte));
}
Value KernelBuilder::e8m0(Value byte) {
  if (Value v = target.decodeE8M0(b, loc, byte))
    return v;
  static const SmallVector<float> table = e8m0Table();
  return load(f32(), lut("__compressa_lut_e8m0", table), byteIndex(b, loc, byte));
}
Value KernelBuilder::fp4(Value nibble) {
  if (Value v = target.decodeE2M1(b, loc, nibble))
    return v;
  static const SmallVector<float> table = fp4Table();
  return load(f32(), lut("__compressa_lut_e2m1", table), byteIndex(b, loc, nibble));
}

Value KernelBuilder::fp4At(const WeightView &w, Value row, Value col, Value odd) {
  // Two codes a byte, the even column in the low nibble.
  Value byte = load(b.getI8Type(), w.data, add(mul(row, c(w.cols / 2)), div(col, c(2))));
  Value lo = arith::AndIOp::create(b, loc, byte,
                                   arith::ConstantOp::create(b, loc, b.getI8IntegerAttr(15)));
  Value hi = arith::ShRUIOp::create(b, loc, byte,
                                    arith::ConstantOp::create(b, loc, b.getI8IntegerAttr(4)));
  return fp4(select(odd, hi, lo));
}

Value KernelBuilder::weight(const WeightView &w, Value row, Value col) {
  Type i8 = b.getI8Type();
  if (isa<Float8E4M3FNType>(w.elt)) {
    Value q = load(i8, w.data, add(mul(row, c(w.cols)), col));
    int64_t scaleCols = (w.cols + 127) / 128;
    Value s = load(i8, w.scale,
                   add(mul(div(row, c(128)), c(scaleCols)), div(col, c(128))));
    return mul(fp8(q), e8m0(s));
  }
  if (isa<Float4E2M1FNType>(w.elt)) {
    Value s = load(i8, w.scale, add(mul(row, c(w.cols / 32)), div(col, c(32))));
    return mul(fp4At(w, row, col, eq(rem(col, c(2)), c(1))), e8m0(s));
  }
  if (w.elt.isInteger(64))
    return load(i64(), w.data, add(mul(row, c(w.cols)), col));
  return loadF(View{w.data, w.elt}, add(mul(row, c(w.cols)), col));
}

//===----------------------------------------------------------------------===//
// Control flow
//===----------------------------------------------------------------------===//

void KernelBuilder::loop(Value lb, Value ub, function_ref<void(Value)> body) {
  auto forOp = scf::ForOp::create(b, loc, lb, ub, c(1));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(forOp.getBody()->getTerminator());
  body(forOp.getInductionVar());
}

SmallVector<Value>
KernelBuilder::reduce(Value lb, Value ub, ValueRange init,
                      function_ref<SmallVector<Value>(Value, ValueRange)> body) {
  auto forOp = scf::ForOp::create(b, loc, lb, ub, c(1), init);
  {
    OpBuilder::InsertionGuard guard(b);
    Block *block = forOp.getBody();
    if (block->mightHaveTerminator())
      b.setInsertionPoint(block->getTerminator());
    else
      b.setInsertionPointToEnd(block);
    SmallVector<Value> next = body(forOp.getInductionVar(), forOp.getRegionIterArgs());
    if (block->mightHaveTerminator())
      block->getTerminator()->setOperands(next);
    else
      scf::YieldOp::create(b, loc, next);
  }
  return SmallVector<Value>(forOp.getResults());
}

Value KernelBuilder::reduce1(Value lb, Value ub, Value init,
                             function_ref<Value(Value, Value)> body) {
  return reduce(lb, ub, ValueRange{init}, [&](Value iv, ValueRange acc) {
    return SmallVector<Value>{body(iv, acc[0])};
  })[0];
}

void KernelBuilder::ifThen(Value cond, function_ref<void()> then) {
  auto ifOp = scf::IfOp::create(b, loc, cond, /*withElseRegion=*/false);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(ifOp.thenBlock()->getTerminator());
  then();
}

SmallVector<Value>
KernelBuilder::ifElse(Value cond, TypeRange types,
                      function_ref<SmallVector<Value>()> then,
                      function_ref<SmallVector<Value>()> otherwise) {
  auto ifOp = scf::IfOp::create(b, loc, types, cond, /*withElseRegion=*/true);
  auto fill = [&](Block *block, function_ref<SmallVector<Value>()> body) {
    OpBuilder::InsertionGuard guard(b);
    if (block->mightHaveTerminator()) {
      b.setInsertionPoint(block->getTerminator());
      block->getTerminator()->setOperands(body());
    } else {
      b.setInsertionPointToEnd(block);
      scf::YieldOp::create(b, loc, body());
    }
  };
  fill(ifOp.thenBlock(), then);
  fill(ifOp.elseBlock(), otherwise);
  return SmallVector<Value>(ifOp.getResults());
}

//===----------------------------------------------------------------------===//
// Work sharing
//===----------------------------------------------------------------------===//

/// Whether `op` neither reads nor writes memory that a thread of the launch
/// may write (a load of the argument vector or of a scalar argument reads
/// what none writes).
static bool touchesNoSharedMemory(Operation *op) {
  auto load = dyn_cast<LLVM::LoadOp>(op);
  // The kernel prologue's griddepcontrol (TargetInfo::kernelPrologue) orders
  // the launch after the grid before it, as the launch's start does.
  return (load && load.getInvariant()) || isMemoryEffectFree(op) ||
         op->getName().getStringRef() == "nvvm.griddepcontrol";
}

bool KernelBuilder::separated(Block *block, Block::iterator it) {
  while (it != block->begin()) {
    Operation *op = &*--it;
    if (llvm::any_of(barriers, [&](auto &range) { return range.second == op; }))
      return true;
    // Both ways through an scf.if (its then region, its else region or
    // none): the two ways of Emitter::branch each end at a barrier.
    if (auto ifOp = dyn_cast<scf::IfOp>(op)) {
      Block *then = ifOp.thenBlock(), *other = ifOp.elseBlock();
      return separated(then, then->getTerminator()->getIterator()) &&
             (other ? separated(other, other->getTerminator()->getIterator())
                    : separated(block, it));
    }
    if (op->getNumRegions() || !touchesNoSharedMemory(op))
      return false;
  }
  // The launch's start: the launches of a stream run one after the other.
  Operation *parent = block->getParentOp();
  if (isa<FunctionOpInterface>(parent))
    return true;
  return isa<scf::IfOp>(parent) && separated(parent->getBlock(), parent->getIterator());
}

Value KernelBuilder::threadId() {
  Value tid = target.threadId(b, loc);
  return part.first ? sub(tid, mul(part.first, c(threads()))) : tid;
}

Value KernelBuilder::threadCount() {
  return part.blocks ? mul(part.blocks, c(threads())) : target.threadCount(b, loc);
}

void KernelBuilder::branches(ArrayRef<int64_t> weights, function_ref<void(size_t)> emit) {
  size_t n = weights.size();
  assert(n <= kMaxBranches && "too many branches");
  if (!parallel() || n < 2) {
    for (size_t p = 0; p < n; ++p)
      emit(p);
    return;
  }
  // Everything before is done (unless the launch starts here).
  barrier();
  // Part p: blocks [lo_p, lo_{p+1}) with lo_p = p + (G - n) * W_p / W (W_p
  // the weights before p): at least one block each, the rest in
  // proportion. With G < n blocks every block runs every part.
  int64_t total = 0;
  SmallVector<int64_t> before;
  for (int64_t w : weights) {
    before.push_back(total);
    total += std::max<int64_t>(w, 1);
  }
  before.push_back(total);
  Value grid = target.blockCount(b, loc);
  Value block = target.blockId(b, loc);
  Value few = lt(grid, c(int64_t(n)));
  Value spare = max(sub(grid, c(int64_t(n))), c(0));
  auto lo = [&](size_t p) {
    return select(few, c(0), add(c(int64_t(p)), div(mul(spare, c(before[p])), c(total))));
  };
  for (size_t p = 0; p < n; ++p) {
    Value first = lo(p);
    Value end = select(few, grid, lo(p + 1));
    Value mine = andI(le(first, block), lt(block, end));
    ifThen(mine, [&] {
      part = Part{first, sub(end, first),
                  offset(b.getI8Type(), syncWord, c(4 * int64_t(p + 1)))};
      emit(p);
      part = Part{};
    });
  }
  // Every part is done: a barrier of the whole launch, always (the parts'
  // own barriers do not order one part against another).
  emitBarrier();
}

void KernelBuilder::barrier() {
  if (!separated(b.getInsertionBlock(), b.getInsertionPoint()))
    emitBarrier();
}

void KernelBuilder::emitBarrier() {
  auto ip = b.getInsertionPoint();
  Operation *before = ip == b.getInsertionBlock()->begin() ? nullptr : &*std::prev(ip);
  if (part.first)
    target.barrier(b, loc, part.syncWord, sub(target.blockId(b, loc), part.first), part.blocks);
  else
    target.barrier(b, loc, syncWord);
  Operation *last = &*std::prev(b.getInsertionPoint());
  barriers.push_back({before ? before->getNextNode() : &b.getInsertionBlock()->front(), last});
}

void KernelBuilder::endLaunch() {
  // From the last barrier back: one followed by nothing that touches
  // memory up to the end of the launch separates nothing (the next launch
  // starts after every thread of this one is done).
  for (auto [first, last] : llvm::reverse(barriers)) {
    Operation *op = last->getNextNode();
    Block *block = last->getBlock();
    bool ends = false;
    while (true) {
      if (!op || op->hasTrait<OpTrait::IsTerminator>()) {
        Operation *parent = block->getParentOp();
        if (isa<FunctionOpInterface>(parent))
          ends = true;
        if (!isa<scf::IfOp>(parent))
          break;
        op = parent->getNextNode();
        block = parent->getBlock();
        continue;
      }
      if (!touchesNoSharedMemory(op))
        break;
      op = op->getNextNode();
    }
    if (!ends)
      break;
    for (Operation *o = last, *stop = first->getPrevNode(); o != stop;) {
      Operation *prev = o->getPrevNode();
      o->erase();
      o = prev;
    }
  }
  barriers.clear();
}

void KernelBuilder::parallelLoop(Value lb, Value ub, function_ref<void(Value)> body) {
  ++regionDepth;
  if (!parallel() || regionDepth > 1) {
    loop(lb, ub, body);
    --regionDepth;
    return;
  }
  // Barrier before: every thread is done reading what the loop overwrites.
  // Barrier after: the loop's stores are visible to every thread.
  barrier();
  auto forOp = scf::ForOp::create(b, loc, add(lb, threadId()), ub,
                                  threadCount());
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(forOp.getBody()->getTerminator());
    body(forOp.getInductionVar());
  }
  --regionDepth;
  barrier();
}

void KernelBuilder::single(function_ref<void()> body) {
  ++regionDepth;
  if (!parallel() || regionDepth > 1) {
    body();
    --regionDepth;
    return;
  }
  barrier();
  ifThen(eq(threadId(), c(0)), body);
  --regionDepth;
  barrier();
}

void KernelBuilder::warpLoop(Value lb, Value ub, function_ref<void(Value, Value)> body) {
  if (!parallel() || regionDepth > 0) {
    parallelLoop(lb, ub, [&](Value i) { body(i, c(0)); });
    return;
  }
  ++regionDepth;
  barrier();
  Value tid = threadId();
  Value warp = div(tid, c(kLanes)), lane = rem(tid, c(kLanes));
  auto forOp = scf::ForOp::create(b, loc, add(lb, warp), ub,
                                  div(threadCount(), c(kLanes)));
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(forOp.getBody()->getTerminator());
    body(forOp.getInductionVar(), lane);
  }
  --regionDepth;
  barrier();
}

void KernelBuilder::storeOnce(const View &v, Value i, Value x, Value lane) {
  if (!parallel()) {
    storeF(v, i, x);
    return;
  }
  ifThen(eq(lane, c(0)), [&] { storeF(v, i, x); });
}

Value KernelBuilder::dotLanes(const View &x, const WeightView &w, Value row, Value lane) {
  return dotRows(x, {WeightRow{&w, row}}, lane)[0];
}

/// Bits of one weight of a format dotRows reads by segments; 0 otherwise.
static int64_t segmentBits(Type t) {
  if (isa<Float8E4M3FNType>(t))
    return 8;
  if (isa<Float4E2M1FNType>(t))
    return 4;
  if (t.isBF16())
    return 16;
  if (t.isF32())
    return 32;
  return 0;
}

SmallVector<Value> KernelBuilder::weights8(const WeightView &w, Value row, Value col0) {
  Type i8 = b.getI8Type(), i32 = b.getI32Type();
  SmallVector<Value> vals;
  Value scale;
  int k = 0;
  if (isa<Float4E2M1FNType>(w.elt)) {
    Value ptr = offset(i8, w.data, add(mul(row, c(w.cols / 2)), div(col0, c(2))));
    k = decodeSegment(w.elt, {load(i32, ptr, c(0))}, vals);
    scale = e8m0(load(i8, w.scale, add(mul(row, c(w.cols / 32)), div(col0, c(32)))));
  } else if (isa<Float8E4M3FNType>(w.elt)) {
    Value ptr = offset(i8, w.data, add(mul(row, c(w.cols)), col0));
    k = decodeSegment(w.elt, {load(i32, ptr, c(0)), load(i32, ptr, c(1))}, vals);
    scale = e8m0(load(i8, w.scale, add(mul(div(row, c(128)), c((w.cols + 127) / 128)),
                                       div(col0, c(128)))));
  } else {
    for (int64_t i = 0; i < 8; ++i)
      vals.push_back(weight(w, row, add(col0, c(i))));
    return vals;
  }
  if (k)
    scale = mul(scale, cf(std::ldexp(1.0, k)));
  for (Value &v : vals)
    v = mul(v, scale);
  return vals;
}

/// The bf16 bits of f32 x (round to nearest, ties to even) in the low half
/// of an i32: CUDA's cvt.rn.bf16.f32, elsewhere the same rounding on the
/// bits (CPU code has no bf16 conversion without compiler-rt; NaN stays a
/// NaN, quietened).
static Value bf16Bits(OpBuilder &b, Location loc, const mlir::compressa::TargetInfo &target,
                      Value x) {
  Type i16 = b.getI16Type(), i32 = b.getI32Type();
  auto k = [&](int64_t v) -> Value {
    return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(int32_t(v)));
  };
  if (target.isCuda()) {
    Value h = arith::TruncFOp::create(b, loc, b.getBF16Type(), x);
    return arith::ExtUIOp::create(b, loc, i32, arith::BitcastOp::create(b, loc, i16, h));
  }
  Value u = arith::BitcastOp::create(b, loc, i32, x);
  Value odd = arith::AndIOp::create(b, loc, arith::ShRUIOp::create(b, loc, u, k(16)), k(1));
  Value rounded = arith::AddIOp::create(b, loc, u, arith::AddIOp::create(b, loc, odd, k(0x7FFF)));
  Value nan = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNO, x, x);
  Value quiet = arith::OrIOp::create(b, loc, u, k(0x00400000));
  Value v = arith::SelectOp::create(b, loc, nan, quiet, rounded);
  return arith::ShRUIOp::create(b, loc, v, k(16));
}

Value KernelBuilder::roundBf16(Value x) {
  Value bits = bf16Bits(b, loc, target, x);
  return arith::BitcastOp::create(b, loc, f32(),
                                  arith::ShLIOp::create(b, loc, bits, c32(16)));
}

Value KernelBuilder::packBf16x2(Value lo, Value hi) {
  if (Value v = target.packBf16x2(b, loc, lo, hi))
    return v;
  return arith::OrIOp::create(b, loc, bf16Bits(b, loc, target, lo),
                              arith::ShLIOp::create(b, loc, bf16Bits(b, loc, target, hi),
                                                    c32(16)));
}

std::array<Value, 4> KernelBuilder::weightsBf16x2(const WeightView &w, Value row, Value col0) {
  std::array<Value, 4> regs;
  if (w.elt.isBF16() && target.hasWarpMmaBf16() && w.cols % 8 == 0) {
    // bf16: the eight values are the fragment's four registers as stored
    // (one 16-byte load; rows of a multiple of 8 columns keep it aligned).
    Type i32 = b.getI32Type();
    Value ptr = offset(b.getBF16Type(), w.data, add(mul(row, c(w.cols)), col0));
    Value v = LLVM::LoadOp::create(b, loc, VectorType::get({4}, i32), ptr, /*alignment=*/16);
    for (int i = 0; i < 4; ++i)
      regs[i] = LLVM::ExtractElementOp::create(b, loc, v, c32(i));
    return regs;
  }
  SmallVector<Value> v = weights8(w, row, col0);
  for (int i = 0; i < 4; ++i)
    regs[i] = packBf16x2(v[2 * i], v[2 * i + 1]);
  return regs;
}

int KernelBuilder::decodeSegment(Type elt, ArrayRef<Value> words,
                                 SmallVectorImpl<Value> &vals) {
  Type i8 = b.getI8Type(), i16 = b.getI16Type();
  auto shr = [&](Value w, int64_t by) -> Value {
    return by ? Value(arith::ShRUIOp::create(b, loc, w, c32(by))) : w;
  };
  int k = 0;
  for (Value w : words) {
    if (isa<Float8E4M3FNType>(elt)) {
      for (int64_t half = 0; half < 2; ++half) {
        Value pair = arith::TruncIOp::create(b, loc, i16, shr(w, 16 * half));
        Value two[2];
        if (!target.decodeE4M3Pair(b, loc, pair, two))
          for (int64_t i = 0; i < 2; ++i)
            two[i] = fp8(arith::TruncIOp::create(b, loc, i8, shr(w, 16 * half + 8 * i)));
        vals.append({two[0], two[1]});
      }
    } else if (isa<Float4E2M1FNType>(elt)) {
      SmallVector<Value> eight;
      k = target.decodeE2M1Word(b, loc, w, eight);
      if (k < 0) {
        k = 0;
        eight.clear();
        for (int64_t j = 0; j < 8; ++j)
          eight.push_back(fp4(arith::TruncIOp::create(
              b, loc, i8, arith::AndIOp::create(b, loc, shr(w, 4 * j), c32(15)))));
      }
      vals.append(eight.begin(), eight.end());
    } else if (elt.isBF16()) {
      // The low half is the first value; bf16 is the high half of an f32.
      vals.push_back(arith::BitcastOp::create(
          b, loc, f32(), arith::ShLIOp::create(b, loc, w, c32(16))));
      vals.push_back(arith::BitcastOp::create(
          b, loc, f32(), arith::AndIOp::create(b, loc, w, c32(int64_t(0xFFFF0000u)))));
    } else {
      vals.push_back(arith::BitcastOp::create(b, loc, f32(), w));
    }
  }
  return k;
}

int64_t KernelBuilder::segmentBytes(Type elt) {
  return isa<Float8E4M3FNType, Float4E2M1FNType>(elt) ? 4 : 16;
}

int64_t KernelBuilder::segmentsPerRow(const WeightView &w, Type xElt) {
  int64_t bits = segmentBits(w.elt), segBits = 8 * segmentBytes(w.elt);
  if (!bits || (w.cols * bits) % segBits != 0 || !(xElt.isF32() || xElt.isBF16()))
    return 0;
  return w.cols * bits / segBits;
}

SmallVector<Value> KernelBuilder::dotRows(const View &x, ArrayRef<WeightRow> rows,
                                          Value lane, Value segBegin, int64_t segCount) {
  const WeightView &w0 = *rows.front().w;
  int64_t bits = segmentBits(w0.elt);
  bool bySegment = segmentsPerRow(w0, x.elt) > 0;
  assert((segCount == 0 || bySegment) && "a split dot needs rows of segments");
  for (const WeightRow &r : rows)
    bySegment = bySegment && r.w->elt == w0.elt && r.w->cols == w0.cols &&
                (!r.x || r.x->elt == x.elt);
  if (!bySegment) {
    SmallVector<Value> out;
    for (const WeightRow &r : rows)
      out.push_back(dotLanesByColumn(r.x ? *r.x : x, *r.w, r.row, lane));
    return out;
  }
  Type i8 = b.getI8Type(), i32 = b.getI32Type();
  int64_t segBytes = segmentBytes(w0.elt);
  int64_t cps = segBytes * 8 / bits, rowBytes = w0.cols * bits / 8;
  int64_t nseg = segCount > 0 ? segCount : rowBytes / segBytes;
  int64_t rounds = nseg / kLanes, tailSegs = nseg % kLanes;
  size_t nr = rows.size();
  bool wide = parallel() && target.wideLoads();
  SmallVector<Value> bases;
  for (const WeightRow &r : rows)
    bases.push_back(offset(i8, r.w->data, mul(r.row, c(rowBytes))));

  bool fp8 = isa<Float8E4M3FNType>(w0.elt), fp4 = isa<Float4E2M1FNType>(w0.elt);
  // The index of absolute segment g's block scale in row r's scale table
  // (FP8: blocks of 128 x 128, FP4: 1 x 32).
  auto scaleIndex = [&](const WeightRow &r, Value g) -> Value {
    const WeightView &w = *r.w;
    if (fp8)
      return add(mul(div(r.row, c(128)), c((w.cols + 127) / 128)), div(g, c(128 / cps)));
    return add(mul(r.row, c(w.cols / 32)), div(g, c(32 / cps)));
  };
  // The block scale byte `raw` as f32, times 2^k (the decode's offset).
  auto decodeScale = [&](Value raw, int k) -> Value {
    Value s = e8m0(raw);
    return k ? mul(s, cf(std::ldexp(1.0, k))) : s;
  };
  // The first row with row r's matrix and index (rows of token tiles share
  // one weight row: its segment is loaded and decoded once).
  SmallVector<size_t> firstOf(nr);
  for (size_t r = 0; r < nr; ++r) {
    firstOf[r] = r;
    for (size_t q = 0; q < r; ++q)
      if (rows[q].w == rows[r].w && rows[q].row == rows[r].row) {
        firstOf[r] = q;
        break;
      }
  }

  // a * b + c: one fused multiply-add with COMPRESSA_DOT_FMA=1 (an
  // experiment: on the CPU target's default x86-64 it is a call of libm's
  // fmaf, which made tiny-c's token-by-token run 3x slower), else the
  // product rounded, then the sum.
  static const bool fmaOn = experimentString("COMPRESSA_DOT_FMA") == "1";
  auto madd = [&](Value a, Value m, Value c) -> Value {
    return fmaOn ? fma(a, m, c) : add(c, mul(a, m));
  };
  // Checkpoint weights (WeightView::readOnly) through the target's
  // streaming loads (CUDA: ld.global.nc.L1::no_allocate.L2::256B): on an
  // H100 the V4-Flash 2:6 exact decode step took 1508-1516 us with them
  // against 1563 (docs/perf.md, eighteenth session);
  // COMPRESSA_DOT_WEIGHT_LOADS=plain at compile time: plain loads, for A/B
  // runs. Single-token kernels only (setSingleToken): where a launch reads
  // a row again for each token, L1 serves the later reads.
  static const bool streamLoads = experimentString("COMPRESSA_DOT_WEIGHT_LOADS") != "plain";
  // The products of segment g (relative to segBegin) of every row with its
  // x, summed in column order (madd),
  // unscaled; k is set to the decode's offset (FP4 on CUDA: 14).
  // The words of segment g (relative to segBegin) of row r.
  auto segmentWords = [&](Value g, size_t r) -> SmallVector<Value> {
    if (segCount > 0)
      g = add(segBegin, g);
    Value ptr = offset(i8, bases[r], mul(g, c(segBytes)));
    SmallVector<Value> words;
    if (streamLoads && singleToken && parallel() && rows[r].w->readOnly &&
        target.loadStreamed(b, loc, ptr, segBytes / 4, words)) {
      // (COMPRESSA_DOT_WEIGHT_LOADS=plain turns them off.)
    } else if (segBytes == 4) {
      words.push_back(load(i32, ptr, c(0)));
    } else if (wide) {
      Value v = LLVM::LoadOp::create(b, loc, VectorType::get({4}, i32), ptr,
                                     /*alignment=*/16);
      for (int64_t i = 0; i < 4; ++i)
        words.push_back(LLVM::ExtractElementOp::create(b, loc, v, c32(i)));
    } else {
      for (int64_t i = 0; i < 4; ++i)
        words.push_back(load(i32, ptr, c(i)));
    }
    return words;
  };
  // (`pre`: the rows' words of the segment, loaded earlier, indexed by row;
  // null: loaded here.)
  auto segmentParts = [&](Value g, bool vecX, int &k,
                          const SmallVector<SmallVector<Value>> *pre = nullptr) -> SmallVector<Value> {
    Value gRel = g;
    if (segCount > 0)
      g = add(segBegin, g);
    Value col0 = mul(g, c(cps));
    auto loadXs = [&](const View &xv) {
      SmallVector<Value> xs;
      if (vecX) {
        for (int64_t q = 0; q < cps / 4; ++q) {
          Value four[4];
          target.loadF32x4(b, loc, offset(f32(), xv.ptr, add(col0, c(4 * q))), four);
          xs.append(std::begin(four), std::end(four));
        }
      } else {
        for (int64_t i = 0; i < cps; ++i)
          xs.push_back(loadF(xv, add(col0, c(i))));
      }
      return xs;
    };
    SmallVector<Value> shared;
    if (llvm::any_of(rows, [](const WeightRow &r) { return !r.x; }))
      shared = loadXs(x);
    // An x that several entries share is loaded once; every entry's sum
    // takes the same operations as alone.
    llvm::DenseMap<Value, SmallVector<Value>> ownXs;
    SmallVector<SmallVector<Value>> vals(nr);
    SmallVector<Value> parts;
    for (size_t r = 0; r < nr; ++r) {
      if (rows[r].x && !ownXs.count(rows[r].x->ptr))
        ownXs[rows[r].x->ptr] = loadXs(*rows[r].x);
      const SmallVector<Value> &xs = rows[r].x ? ownXs[rows[r].x->ptr] : shared;
      if (firstOf[r] == r) {
        SmallVector<Value> words = pre ? (*pre)[r] : segmentWords(gRel, r);
        k = decodeSegment(rows[r].w->elt, words, vals[r]);
      }
      const SmallVector<Value> &v = vals[firstOf[r]];
      Value part = mul(xs[0], v[0]);
      for (int64_t i = 1; i < cps; ++i)
        part = madd(xs[i], v[i], part);
      parts.push_back(part);
    }
    return parts;
  };
  // accs[r] + part_r times its block scale, a power of two (UE8M0, times
  // the decode's 2^k); a plain add for formats without scales. The product
  // and the sum: as one fused multiply-add (addTimesPow2, the same bits)
  // the V4-Flash 2:6 exact decode step took 1596-1601 us on an H100
  // against 1577 (docs/perf.md, eighteenth session); COMPRESSA_DOT_SCALE_FMA=1
  // at compile time takes the FMA, for A/B runs.
  static const bool scaleFma = experimentString("COMPRESSA_DOT_SCALE_FMA") == "1";
  auto addScaled = [&](ArrayRef<Value> accs, ArrayRef<Value> parts,
                       function_ref<Value(size_t)> scaleOf) {
    SmallVector<Value> next;
    for (size_t r = 0; r < nr; ++r) {
      Value scale = scaleOf(r);
      next.push_back(!scale     ? add(accs[r], parts[r])
                     : scaleFma ? addTimesPow2(accs[r], parts[r], scale)
                                : add(accs[r], mul(parts[r], scale)));
    }
    return next;
  };
  // One round by itself: each row's scale read where it is used.
  auto segment = [&](ArrayRef<Value> accs, Value g, bool vecX) -> SmallVector<Value> {
    int k = 0;
    SmallVector<Value> parts = segmentParts(g, vecX, k);
    Value gAbs = segCount > 0 ? add(segBegin, g) : g;
    SmallVector<Value> scales(nr);
    return addScaled(accs, parts, [&](size_t r) -> Value {
      if (!(fp8 || fp4))
        return k ? cf(std::ldexp(1.0, k)) : Value();
      if (firstOf[r] != r)
        return scales[firstOf[r]];
      return scales[r] = decodeScale(load(i8, rows[r].w->scale, scaleIndex(rows[r], gAbs)), k);
    });
  };
  SmallVector<Value> zeros(nr, cf(0.0));

  // The sums of lane l: its rounds in order; on CUDA several per loop trip
  // so that their loads are in flight together: about 32 bytes of each row
  // and at most 64 bytes in all per lane (four rounds of 16-byte segments,
  // eight of 4-byte ones for one or two rows). Twice that (the earlier
  // choice) made the decode step's FP4/FP8 dots slower on an H200, four
  // times that slower still: they wait on their own instructions and the
  // code's size, not on memory (an L2 prefetch of each warp's next rows
  // changed nothing); V4-Flash 2:6 at 4K, hc_ffn x3 441 -> 412 us a step.
  auto laneSums = [&](Value l, bool vecX) -> SmallVector<Value> {
    static const int64_t rowBytesInFlight = experimentInt("COMPRESSA_DOT_ROW_BYTES", 32);
    static const int64_t laneBytesInFlight = experimentInt("COMPRESSA_DOT_LANE_BYTES", 64);
    int64_t inFlight = std::max<int64_t>(
        1, std::min<int64_t>(rowBytesInFlight / segBytes,
                             laneBytesInFlight / (segBytes * int64_t(nr))));
    if (segBytes == 16)
      inFlight = 4;
    int64_t unroll = std::min<int64_t>(rounds, parallel() ? inFlight : 1);
    // Shared block scales (COMPRESSA_DOT_SHARED_SCALES: the formats that
    // share them, fp8,fp4 by default, "none" for none): where every round starts a block's first segment (segBegin a whole
    // number of rounds), the lanes of a trip share the loads and decodes
    // of its block scales. FP8's round of 32 segments is one 128-column
    // block, so lane l reads the block of round l % unroll; FP4's round
    // spans eight 32-column blocks, so lane l reads the trip's block l (and
    // l + 32, ...). The trip's products come first, then each round takes
    // its lanes' scales by a shuffle, in round order: the same values and
    // sums as read apart. (With the shuffles between the rounds, the
    // divergence check ptxas puts before the first one waits for the
    // scale's load, and the later rounds' loads with it: an H200 ran the
    // output projection 19-28 % slower.)
    // On an H100 the V4-Flash 2:6 exact decode step took 1562-1571 us
    // with both against 1596-1601 without (docs/perf.md, eighteenth
    // session). Single-token kernels only (setSingleToken): prefill and
    // batched decode keep the rounds' own reads.
    static const std::string sharedFormats = [] {
      const char *v = std::getenv("COMPRESSA_DOT_SHARED_SCALES");
      return std::string(v ? v : "fp8,fp4");
    }();
    bool shareScales = parallel() && singleToken &&
                       ((fp8 && sharedFormats.find("fp8") != std::string::npos) ||
                        (fp4 && sharedFormats.find("fp4") != std::string::npos)) &&
                       unroll > 1 && segCount % kLanes == 0;
    Value segFirst = segCount > 0 ? segBegin : c(0);
    // A trip's loads: the words of its rounds' segments (round-major, the
    // rows with their own weights in order) and, sharing scales, the scale
    // bytes (the rows in order), in one flat list.
    auto loadTrip = [&](Value m0) -> SmallVector<Value> {
      SmallVector<Value> flat;
      for (int64_t u = 0; u < unroll; ++u)
        for (size_t r = 0; r < nr; ++r)
          if (firstOf[r] == r)
            llvm::append_range(flat, segmentWords(add(mul(add(m0, c(u)), c(kLanes)), l), r));
      if (!shareScales)
        return flat;
      for (size_t r = 0; r < nr; ++r) {
        if (firstOf[r] != r)
          continue;
        Value first = scaleIndex(rows[r], add(segFirst, mul(m0, c(kLanes))));
        if (fp8)
          flat.push_back(load(i8, rows[r].w->scale, add(first, rem(l, c(unroll)))));
        else
          for (int64_t j = 0; j * kLanes < 8 * unroll; ++j)
            flat.push_back(load(i8, rows[r].w->scale,
                                add(first, min(add(c(j * kLanes), l), c(8 * unroll - 1)))));
      }
      return flat;
    };
    // The trip's sums from its loads (`pre`, as loadTrip lists them) or,
    // with none, loading as it goes.
    auto trip = [&](Value m0, ArrayRef<Value> in, ArrayRef<Value> pre = {}) -> SmallVector<Value> {
      SmallVector<Value> acc(in);
      size_t at = 0;
      // The rows' words of round u from `pre`.
      auto wordsOf = [&]() {
        SmallVector<SmallVector<Value>> w(nr);
        for (size_t r = 0; r < nr; ++r)
          if (firstOf[r] == r)
            for (int64_t i = 0; i < segBytes / 4; ++i)
              w[r].push_back(pre[at++]);
        return w;
      };
      if (!shareScales) {
        for (int64_t u = 0; u < unroll; ++u) {
          Value g = add(mul(add(m0, c(u)), c(kLanes)), l);
          if (pre.empty()) {
            acc = segment(acc, g, vecX);
            continue;
          }
          // segment() with the words loaded before (formats without scales).
          SmallVector<SmallVector<Value>> w = wordsOf();
          int k = 0;
          SmallVector<Value> parts = segmentParts(g, vecX, k, &w);
          acc = addScaled(acc, parts, [&](size_t) -> Value {
            return k ? cf(std::ldexp(1.0, k)) : Value();
          });
        }
        return acc;
      }
      // The scale bytes first (their loads in flight with the weights').
      SmallVector<SmallVector<Value, 2>> raw(nr);
      size_t rawAt = 0;
      if (!pre.empty()) {
        for (int64_t u = 0; u < unroll; ++u)
          for (size_t r = 0; r < nr; ++r)
            if (firstOf[r] == r)
              rawAt += segBytes / 4;
      }
      for (size_t r = 0; r < nr; ++r) {
        if (firstOf[r] != r)
          continue;
        if (!pre.empty()) {
          int64_t n = fp8 ? 1 : (8 * unroll + kLanes - 1) / kLanes;
          for (int64_t j = 0; j < n; ++j)
            raw[r].push_back(pre[rawAt++]);
          continue;
        }
        Value first = scaleIndex(rows[r], add(segFirst, mul(m0, c(kLanes))));
        if (fp8)
          raw[r].push_back(load(i8, rows[r].w->scale, add(first, rem(l, c(unroll)))));
        else
          for (int64_t j = 0; j * kLanes < 8 * unroll; ++j)
            raw[r].push_back(load(i8, rows[r].w->scale,
                                  add(first, min(add(c(j * kLanes), l), c(8 * unroll - 1)))));
      }
      int k = 0;
      SmallVector<SmallVector<Value>> parts;
      for (int64_t u = 0; u < unroll; ++u) {
        Value g = add(mul(add(m0, c(u)), c(kLanes)), l);
        if (pre.empty()) {
          parts.push_back(segmentParts(g, vecX, k));
          continue;
        }
        SmallVector<SmallVector<Value>> w = wordsOf();
        parts.push_back(segmentParts(g, vecX, k, &w));
      }
      SmallVector<SmallVector<Value, 2>> scales(nr);
      for (size_t r = 0; r < nr; ++r)
        for (Value v : raw[r])
          scales[r].push_back(decodeScale(v, k));
      for (int64_t u = 0; u < unroll; ++u)
        acc = addScaled(acc, parts[u], [&](size_t r) -> Value {
          const SmallVector<Value, 2> &sc = scales[firstOf[r]];
          if (fp8)
            return target.shuffleIdx(b, loc, sc[0], c32(u), kLanes);
          Value src = add(c(8 * (u % 4)), div(l, c(4)));
          return target.shuffleIdx(b, loc, sc[u / 4], truncI32(src), kLanes);
        });
      return acc;
    };
    SmallVector<Value> accs = zeros;
    int64_t done = 0;
    if (unroll > 0) {
      int64_t iters = rounds / unroll;
      done = iters * unroll;
      // Software pipelining (COMPRESSA_DOT_PIPELINE=1 at compile time, an
      // experiment): the next trip's loads are issued before this trip's
      // math, so a warp's loads of a row overlap its arithmetic; the last
      // trip loads its own segments again (no branch). The same operations
      // on the same values, so the same bits.
      static const bool pipeline = experimentInt("COMPRESSA_DOT_PIPELINE", 0) != 0;
      bool scaled = fp8 || fp4;
      if (pipeline && parallel() && singleToken && iters >= 2 && (shareScales || !scaled)) {
        SmallVector<Value> init = accs;
        llvm::append_range(init, loadTrip(c(0)));
        size_t na = accs.size();
        SmallVector<Value> out =
            reduce(c(0), c(iters), init, [&](Value it, ValueRange a) -> SmallVector<Value> {
              Value nextM0 = mul(min(add(it, c(1)), c(iters - 1)), c(unroll));
              SmallVector<Value> next = loadTrip(nextM0);
              SmallVector<Value> cur(a.begin() + na, a.end());
              SmallVector<Value> res =
                  trip(mul(it, c(unroll)), SmallVector<Value>(a.begin(), a.begin() + na), cur);
              llvm::append_range(res, next);
              return res;
            });
        accs.assign(out.begin(), out.begin() + na);
      } else {
        accs = reduce(c(0), c(iters), accs, [&](Value it, ValueRange a) -> SmallVector<Value> {
          return trip(mul(it, c(unroll)), SmallVector<Value>(a));
        });
      }
    }
    for (int64_t m = done; m < rounds; ++m)
      accs = segment(accs, add(c(m * kLanes), l), vecX);
    if (tailSegs)
      accs = ifElse(lt(l, c(tailSegs)), SmallVector<Type>(nr, f32()),
                    [&]() { return segment(accs, add(c(rounds * kLanes), l), vecX); },
                    [&]() { return accs; });
    return accs;
  };
  if (!wide || !x.elt.isF32())
    return laneTotals(lane, nr, [&](Value l) { return laneSums(l, false); });
  // x read 16 bytes at a time where every x is 16-byte aligned (the same
  // for the whole warp, so the branch is uniform).
  Value aligned;
  auto alsoAligned = [&](const View &xv) {
    Value addr = LLVM::PtrToIntOp::create(b, loc, i64(), xv.ptr);
    Value ok = eq(arith::AndIOp::create(b, loc, addr, c(15)), c(0));
    aligned = aligned ? Value(arith::AndIOp::create(b, loc, aligned, ok)) : ok;
  };
  if (llvm::any_of(rows, [](const WeightRow &r) { return !r.x; }))
    alsoAligned(x);
  for (const WeightRow &r : rows)
    if (r.x)
      alsoAligned(*r.x);
  return ifElse(
      aligned, SmallVector<Type>(nr, f32()),
      [&]() { return laneTotals(lane, nr, [&](Value l) { return laneSums(l, true); }); },
      [&]() { return laneTotals(lane, nr, [&](Value l) { return laneSums(l, false); }); });
}

SmallVector<Value> KernelBuilder::laneTotals(Value lane, int64_t n,
                                             function_ref<SmallVector<Value>(Value)> laneValues,
                                             bool isMax) {
  auto combine = [&](Value x, Value y) { return isMax ? max(x, y) : add(x, y); };
  if (parallel()) {
    SmallVector<Value> v = laneValues(lane);
    for (Value &acc : v)
      for (int64_t off = kLanes / 2; off >= 1; off /= 2)
        acc = combine(acc, target.shuffleXor(b, loc, acc, off, kLanes));
    return v;
  }
  // The 32 lanes in turn, their values kept in a stack array in the
  // kernel's entry block, then the butterfly over the array.
  Operation *fn = b.getInsertionBlock()->getParentOp();
  while (!isa<FunctionOpInterface>(fn))
    fn = fn->getParentOp();
  Value arr;
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&fn->getRegion(0).front());
    arr = LLVM::AllocaOp::create(b, loc, ptrType(), f32(), c(n * kLanes), 16);
  }
  loop(c(0), c(kLanes), [&](Value l) {
    SmallVector<Value> v = laneValues(l);
    for (int64_t r = 0; r < n; ++r)
      LLVM::StoreOp::create(b, loc, v[r], offset(f32(), arr, add(c(r * kLanes), l)));
  });
  SmallVector<Value> out;
  for (int64_t r = 0; r < n; ++r) {
    SmallVector<Value> a;
    for (int64_t l = 0; l < kLanes; ++l)
      a.push_back(load(f32(), arr, c(r * kLanes + l)));
    for (int64_t off = kLanes / 2; off >= 1; off /= 2)
      for (int64_t l = 0; l < off; ++l)
        a[l] = combine(a[l], a[l + off]);
    out.push_back(a[0]);
  }
  return out;
}

void KernelBuilder::prefetchL2(Value ptr, int64_t bytes) {
  bytes &= ~int64_t(15);
  if (!parallel() || bytes <= 0)
    return;
  // Chunks go to lane 0 of each warp, block-major (chunk i to block
  // i % blocks): every multiprocessor's copy engine issues a few. Given to
  // the launch's first threads (one block) they queued behind each other
  // and that block's own loads, and every grid barrier waited on it.
  static const int64_t kChunk = experimentInt("COMPRESSA_L2_PREFETCH_CHUNK", 16 << 10);
  int64_t chunks = (bytes + kChunk - 1) / kChunk;
  Value tid = threadId();
  Value perBlock = c(threads());
  Value blocks = div(threadCount(), perBlock);
  Value inBlock = rem(tid, perBlock);
  Value warps = div(threadCount(), c(32));
  Value first0 = add(mul(div(inBlock, c(32)), blocks), div(tid, perBlock));
  ifThen(eq(rem(tid, c(32)), c(0)), [&] {
    auto forOp = scf::ForOp::create(b, loc, first0, c(chunks), warps);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(forOp.getBody()->getTerminator());
    Value first = mul(forOp.getInductionVar(), c(kChunk));
    Value size = min(c(kChunk), sub(c(bytes), first));
    target.prefetchL2(b, loc, offset(b.getI8Type(), ptr, first), size);
  });
}

Value KernelBuilder::reduceUnrolled(Value lb, Value ub, int64_t unroll, Value init,
                                    function_ref<Value(Value, Value)> body) {
  Value trips = div(sub(ub, lb), c(unroll));
  Value mid = add(lb, mul(trips, c(unroll)));
  Value acc = reduce1(c(0), trips, init, [&](Value t, Value a) {
    Value base = add(lb, mul(t, c(unroll)));
    for (int64_t u = 0; u < unroll; ++u)
      a = body(add(base, c(u)), a);
    return a;
  });
  return reduce1(mid, ub, acc, body);
}

Value KernelBuilder::dotLanesByColumn(const View &x, const WeightView &w, Value row,
                                      Value lane) {
  Type i8 = b.getI8Type();
  bool isFp8 = isa<Float8E4M3FNType>(w.elt), isFp4 = isa<Float4E2M1FNType>(w.elt);
  // Chunks of columns: 128 (one FP8 scale block, 4 columns a lane) or 32.
  int64_t chunk = isFp8 ? 128 : 32;
  int64_t full = w.cols / chunk, tail = w.cols % chunk;
  // Term of column k (unscaled for FP8/FP4).
  // Term of column k (unscaled for FP8/FP4); `odd` says whether k is odd.
  auto term = [&](Value k, Value odd) -> Value {
    if (isFp8)
      return mul(loadF(x, k), fp8(load(i8, w.data, add(mul(row, c(w.cols)), k))));
    if (isFp4)
      return mul(loadF(x, k), fp4At(w, row, k, odd));
    return mul(loadF(x, k), loadF(View{w.data, w.elt}, add(mul(row, c(w.cols)), k)));
  };
  auto scaleOf = [&](Value blk) -> Value {
    if (isFp8)
      return e8m0(load(i8, w.scale, add(mul(div(row, c(128)), c((w.cols + 127) / 128)), blk)));
    return e8m0(load(i8, w.scale, add(mul(row, c(w.cols / 32)), blk)));
  };
  // `acc` updated with chunk `ck` for lane `l`. `limit` < chunk: the tail
  // chunk, whose columns at offsets >= limit do not exist.
  auto step = [&](Value acc, Value ck, Value l, int64_t limit) -> Value {
    Value base = mul(ck, c(chunk));
    // Adds f(offset) for the in-chunk offset l + 32 m if it exists.
    auto addIf = [&](Value a, int64_t m, function_ref<Value(Value)> f) -> Value {
      Value off = add(c(m * kLanes), l);
      if ((m + 1) * kLanes <= limit) // every lane has this column
        return f(add(base, off));
      if (m * kLanes >= limit)
        return a;
      return ifElse(lt(off, c(limit)), TypeRange{f32()},
                    [&]() -> SmallVector<Value> { return {f(add(base, off))}; },
                    [&]() -> SmallVector<Value> { return {a}; })[0];
    };
    if (isFp8) {
      Value part = cf(0.0);
      for (int64_t m = 0; m < chunk / kLanes; ++m)
        part = addIf(part, m, [&](Value k) { return add(part, term(k, Value())); });
      return add(acc, mul(part, scaleOf(ck)));
    }
    if (isFp4) {
      // Chunks start at even columns: the parity is the lane's.
      Value odd = eq(rem(l, c(2)), c(1));
      return addIf(acc, 0, [&](Value k) { return add(acc, mul(term(k, odd), scaleOf(ck))); });
    }
    return addIf(acc, 0, [&](Value k) { return add(acc, term(k, Value())); });
  };

  return laneSum(full, chunk, tail, lane, step);
}

Value KernelBuilder::laneSum(int64_t full, int64_t chunk, int64_t tail, Value lane,
                             function_ref<Value(Value, Value, Value, int64_t)> step) {
  return laneTotals(lane, 1, [&](Value l) -> SmallVector<Value> {
    Value acc = reduce1(c(0), c(full), cf(0.0),
                        [&](Value ck, Value a) { return step(a, ck, l, chunk); });
    if (tail)
      acc = step(acc, c(full), l, tail);
    return {acc};
  })[0];
}

Value KernelBuilder::dotLanes(const View &a, const View &bv, int64_t n, Value lane) {
  int64_t full = n / kLanes, tail = n % kLanes;
  auto step = [&](Value acc, Value ck, Value l, int64_t limit) -> Value {
    auto add1 = [&]() -> Value {
      Value k = add(mul(ck, c(kLanes)), l);
      return add(acc, mul(loadF(a, k), loadF(bv, k)));
    };
    if (limit == kLanes)
      return add1();
    return ifElse(lt(l, c(limit)), TypeRange{f32()},
                  [&]() -> SmallVector<Value> { return {add1()}; },
                  [&]() -> SmallVector<Value> { return {acc}; })[0];
  };
  return laneSum(full, kLanes, tail, lane, step);
}
