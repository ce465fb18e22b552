//===- TensorCoreGemm.cpp - act_quant and FP8 block-scaled GEMMs ---------===//
// SPDX-License-Identifier: Apache-2.0

#include "lowering/DSV4ToKernels/TensorCoreGemm.h"
#include "lowering/TensorCore/WgmmaExperts.h"
#include "lowering/TensorCore/WgmmaAttention.h"
#include "lowering/TensorCore/TopkSelect.h"
#include "lowering/TensorCore/WgmmaIndexer.h"
#include "lowering/DSV4ToKernels/Emitter.h"

#include "lowering/TensorCore/Numerics.h"
#include "dialects/DSV4/IR/DSV4Ops.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

using namespace mlir;
using namespace mlir::compressa::cpu;

namespace {

/// i32 bit arithmetic at the KernelBuilder's insertion point.
struct Bits {
  KernelBuilder &kb;
  OpBuilder &b() { return kb.builder(); }
  Location loc() { return kb.getLoc(); }
  Type i32() { return b().getI32Type(); }
  Value c(int64_t v) { return kb.c32(v); }
  Value fromF32(Value f) { return arith::BitcastOp::create(b(), loc(), i32(), f); }
  Value toF32(Value i) { return arith::BitcastOp::create(b(), loc(), kb.f32(), i); }
  Value add(Value x, Value y) { return arith::AddIOp::create(b(), loc(), x, y); }
  Value sub(Value x, Value y) { return arith::SubIOp::create(b(), loc(), x, y); }
  Value band(Value x, int64_t m) { return arith::AndIOp::create(b(), loc(), x, c(m)); }
  Value bor(Value x, Value y) { return arith::OrIOp::create(b(), loc(), x, y); }
  Value shr(Value x, int64_t n) { return arith::ShRUIOp::create(b(), loc(), x, c(n)); }
  Value shl(Value x, Value n) { return arith::ShLIOp::create(b(), loc(), x, n); }
  Value ugt(Value x, int64_t v) {
    return arith::CmpIOp::create(b(), loc(), arith::CmpIPredicate::ugt, x, c(v));
  }
  Value uge(Value x, int64_t v) {
    return arith::CmpIOp::create(b(), loc(), arith::CmpIPredicate::uge, x, c(v));
  }
  Value zext(Value i1) { return arith::ExtUIOp::create(b(), loc(), i32(), i1); }
  Value fromByte(Value i8) { return arith::ExtUIOp::create(b(), loc(), i32(), i8); }
  Value toByte(Value i) {
    return arith::TruncIOp::create(b(), loc(), b().getI8Type(), i);
  }
};

/// The e4m3fn code of f32 `v` with |v| <= 448, rounded to nearest even.
Value encodeE4M3(KernelBuilder &kb, Value v) {
  Bits i{kb};
  Value bits = i.fromF32(v);
  Value sign = i.shr(bits, 31);
  Value mag = i.band(bits, 0x7FFFFFFF);
  // Normal results (|v| >= 2^-6): keep 3 of the 23 mantissa bits, rounding
  // to nearest even on the exponent|mantissa field (a carry moves into the
  // exponent), then move the exponent bias from 127 to 7.
  Value lsb = i.band(i.shr(mag, 20), 1);
  Value rounded = i.shr(i.add(i.add(mag, i.c(0x7FFFF)), lsb), 20);
  Value normal = i.sub(rounded, i.c((127 - 7) << 3));
  // Subnormal results: |v| / 2^-9 rounded to an integer 0..8 (8 is the
  // smallest normal's code): adding 2^23 rounds to nearest even in the
  // f32 addition itself.
  Value scaled = kb.add(kb.mul(i.toF32(mag), kb.cf(512.0)), kb.cf(8388608.0));
  Value sub = i.sub(i.fromF32(scaled), i.c(0x4B000000));
  Value code = kb.select(i.uge(mag, 0x3C800000), normal, sub);
  return i.toByte(i.bor(i.shl(sign, i.c(7)), code));
}

/// The f32 value of e4m3fn code `byte` (i8): the magnitude as an integer
/// count of 2^-9 (exact in f32), then the sign.
Value decodeE4M3(KernelBuilder &kb, Value byte) {
  Bits i{kb};
  Value code = i.fromByte(byte);
  Value e = i.band(i.shr(code, 3), 0xF), m = i.band(code, 7);
  Value isSub = arith::CmpIOp::create(kb.builder(), kb.getLoc(),
                                      arith::CmpIPredicate::eq, e, i.c(0));
  Value eMinus1 = i.sub(kb.select(isSub, i.c(1), e), i.c(1));
  Value normal = i.shl(i.bor(m, i.c(8)), eMinus1);
  Value units = kb.select(isSub, m, normal);
  Value mag = kb.mul(arith::UIToFPOp::create(kb.builder(), kb.getLoc(), kb.f32(), units),
                     kb.cf(1.0 / 512.0));
  return kb.select(i.ugt(i.band(code, 0x80), 0), kb.neg(mag), mag);
}

/// 2^(byte - 127) for a UE8M0 byte (0 gives 2^-127, 255 is NaN).
Value decodeUE8M0(KernelBuilder &kb, Value byte) {
  Bits i{kb};
  Value code = i.fromByte(byte);
  Value normal = i.toF32(i.shl(code, i.c(23)));
  Value tiny = kb.cf(std::ldexp(1.0, -127));
  Value nan = kb.cf(std::numeric_limits<double>::quiet_NaN());
  Value isZero = arith::CmpIOp::create(kb.builder(), kb.getLoc(),
                                       arith::CmpIPredicate::eq, code, i.c(0));
  return kb.select(isZero, tiny, kb.select(i.ugt(code, 254), nan, normal));
}

} // namespace

Value mlir::compressa::cpu::decodeE4M3Code(KernelBuilder &kb, Value byte) {
  return decodeE4M3(kb, byte);
}

Value mlir::compressa::cpu::decodeUE8M0Byte(KernelBuilder &kb, Value byte) {
  return decodeUE8M0(kb, byte);
}

void mlir::compressa::cpu::emitActQuant(KernelBuilder &kb, const View &x,
                                        int64_t xStride, Value rows, int64_t k,
                                        Value q, Value scales) {
  emitActQuantOf(
      kb,
      [&](Value r, Value first, Value j) {
        return kb.loadF(kb.at(x, kb.add(kb.mul(r, kb.c(xStride)), first)), j);
      },
      rows, k, q, scales);
}

namespace {

/// The UE8M0 byte of a block of amax `amax` stored at scales[e] (by lane 0),
/// and 1/s: log2(s) = ceil(log2(amax / 448)) from amax = m 2^e (module
/// comment).
Value actQuantScale(KernelBuilder &kb, Value amax, Value scales, Value e, Value lane) {
  Bits i{kb};
  Value bits = i.fromF32(amax);
  Value exp = i.sub(i.shr(bits, 23), i.c(127));
  Value up = i.zext(i.ugt(i.band(bits, 0x7FFFFF), 0x600000));
  Value log2s = i.add(i.sub(exp, i.c(8)), up);
  kb.ifThen(kb.eq(lane, kb.c(0)),
            [&] { kb.store(i.toByte(i.add(log2s, i.c(127))), scales, e); });
  return i.toF32(i.shl(i.sub(i.c(127), log2s), i.c(23)));
}

/// The e4m3fn code of v times 1/s.
Value actQuantCode(KernelBuilder &kb, Value v, Value inv) {
  v = kb.mul(v, inv);
  return encodeE4M3(kb, kb.max(kb.min(v, kb.cf(448.0)), kb.cf(-448.0)));
}

/// act_quant of rows of k values, k a multiple of 128: a warp per (row,
/// block), lane l taking elements 4l .. 4l + 3 (a warp's loads cover the
/// block's 512 bytes at once), the block's amax by a butterfly of maxima
/// (exact, so the same as a scan), and the lane's four codes stored as one
/// word. On the CPU (a warpLoop body runs once) the 32 lanes in turn.
/// rowInit(r) (optional) is computed once a warp; amaxValue(r, init, first,
/// j) gives the values for the amax (once each), codeValue the same values
/// for the codes.
void actQuantWholeBlocks(
    KernelBuilder &kb, Value rows, int64_t k, Value q, Value scales,
    function_ref<Value(Value)> rowInit,
    function_ref<Value(Value r, Value init, Value first, Value j)> amaxValue,
    function_ref<Value(Value r, Value init, Value first, Value j)> codeValue) {
  Bits i{kb};
  int64_t blocks = k / kQuantBlock;
  Type i8 = kb.builder().getI8Type();
  constexpr int64_t per = kQuantBlock / KernelBuilder::kLanes;
  static_assert(per == 4, "four codes a word");
  kb.warpLoop(kb.c(0), kb.mul(rows, kb.c(blocks)), [&](Value e, Value lane) {
    Value r = kb.div(e, kb.c(blocks)), blk = kb.rem(e, kb.c(blocks));
    Value first = kb.mul(blk, kb.c(kQuantBlock));
    Value init = rowInit ? rowInit(r) : Value();
    Value amax = kb.laneTotals(
        lane, 1,
        [&](Value l) -> SmallVector<Value> {
          Value m = kb.cf(1e-4);
          for (int64_t u = 0; u < per; ++u)
            m = kb.max(m, math::AbsFOp::create(
                              kb.builder(), kb.getLoc(),
                              amaxValue(r, init, first, kb.add(kb.mul(l, kb.c(per)), kb.c(u)))));
          return {m};
        },
        /*max=*/true)[0];
    Value inv = actQuantScale(kb, amax, scales, e, lane);
    Value out = kb.offset(i8, q, kb.add(kb.mul(r, kb.c(k)), first));
    auto storeLane = [&](Value l) {
      Value word = i.c(0);
      for (int64_t u = 0; u < per; ++u) {
        Value v = codeValue(r, init, first, kb.add(kb.mul(l, kb.c(per)), kb.c(u)));
        word = i.bor(word, i.shl(i.fromByte(actQuantCode(kb, v, inv)), i.c(8 * u)));
      }
      kb.store(word, out, l);
    };
    if (kb.lanesParallel())
      storeLane(lane);
    else
      kb.loop(kb.c(0), kb.c(KernelBuilder::kLanes), storeLane);
  });
}

} // namespace

void mlir::compressa::cpu::emitActQuantOf(KernelBuilder &kb, ActQuantValues valueAt,
                                          Value rows, int64_t k, Value q, Value scales) {
  int64_t blocks = (k + kQuantBlock - 1) / kQuantBlock;
  Type i8 = kb.builder().getI8Type();
  if (k % kQuantBlock == 0) {
    auto value = [&](Value r, Value, Value first, Value j) { return valueAt(r, first, j); };
    actQuantWholeBlocks(kb, rows, k, q, scales, nullptr, value, value);
    return;
  }
  kb.parallelLoop(kb.c(0), kb.mul(rows, kb.c(blocks)), [&](Value e) {
    Value r = kb.div(e, kb.c(blocks)), blk = kb.rem(e, kb.c(blocks));
    Value first = kb.mul(blk, kb.c(kQuantBlock));
    Value len = kb.min(kb.c(kQuantBlock), kb.sub(kb.c(k), first));
    Value amax = kb.reduce1(kb.c(0), len, kb.cf(1e-4), [&](Value j, Value acc) {
      Value v = valueAt(r, first, j);
      return kb.max(acc, math::AbsFOp::create(kb.builder(), kb.getLoc(), v));
    });
    Value inv = actQuantScale(kb, amax, scales, e, kb.c(0));
    Value out = kb.offset(i8, q, kb.add(kb.mul(r, kb.c(k)), first));
    kb.loop(kb.c(0), len, [&](Value j) { kb.store(actQuantCode(kb, valueAt(r, first, j), inv), out, j); });
  });
}

void mlir::compressa::cpu::emitActQuantKeeping(KernelBuilder &kb,
                                               function_ref<Value(Value)> rowInit,
                                               function_ref<Value(Value, Value, Value)> valueAt,
                                               const View &y, Value rows, int64_t k, Value q,
                                               Value scales) {
  assert(k % kQuantBlock == 0 && "whole 128-column blocks");
  auto at = [&](Value r, Value first, Value j) {
    return kb.add(kb.add(kb.mul(r, kb.c(k)), first), j);
  };
  actQuantWholeBlocks(
      kb, rows, k, q, scales, rowInit,
      [&](Value r, Value init, Value first, Value j) {
        Value v = valueAt(r, init, kb.add(first, j));
        kb.storeF(y, at(r, first, j), v);
        return v;
      },
      // The value as stored (read back by the lane that stored it).
      [&](Value r, Value, Value first, Value j) { return kb.loadF(y, at(r, first, j)); });
}

void mlir::compressa::cpu::emitActQuantDequant(KernelBuilder &kb, const View &x,
                                               int64_t k, Value rows, Value q, Value scales,
                                               const View &y) {
  emitActQuant(kb, x, k, rows, k, q, scales);
  int64_t blocks = (k + kQuantBlock - 1) / kQuantBlock;
  Type i8 = kb.builder().getI8Type();
  kb.parallelLoop(kb.c(0), kb.mul(rows, kb.c(k)), [&](Value e) {
    Value r = kb.div(e, kb.c(k)), col = kb.rem(e, kb.c(k));
    Value sb = kb.load(i8, scales, kb.add(kb.mul(r, kb.c(blocks)), kb.div(col, kb.c(kQuantBlock))));
    kb.storeF(y, e, kb.mul(decodeE4M3(kb, kb.load(i8, q, e)), decodeUE8M0(kb, sb)));
  });
}

void mlir::compressa::cpu::emitFp8BlockGemm(KernelBuilder &kb, Value q,
                                            Value scales, Value rows,
                                            const WeightView &w, const View &out,
                                            int64_t groups) {
  int64_t n = w.rows, k = w.cols;
  int64_t blocks = (k + kQuantBlock - 1) / kQuantBlock;
  Type i8 = kb.builder().getI8Type();
  kb.parallelLoop(kb.c(0), kb.mul(rows, kb.c(n)), [&](Value e) {
    Value r = kb.div(e, kb.c(n)), col = kb.rem(e, kb.c(n));
    Value qRow = kb.offset(i8, q, kb.mul(r, kb.c(k * groups)));
    Value aScales = kb.offset(i8, scales, kb.mul(r, kb.c(blocks * groups)));
    if (groups > 1) {
      // The column's group: its part of the row's codes and scales.
      Value g = kb.div(col, kb.c(n / groups));
      qRow = kb.offset(i8, qRow, kb.mul(g, kb.c(k)));
      aScales = kb.offset(i8, aScales, kb.mul(g, kb.c(blocks)));
    }
    Value wRow = kb.offset(i8, w.data, kb.mul(col, kb.c(k)));
    Value wScales = kb.offset(i8, w.scale, kb.mul(kb.div(col, kb.c(kQuantBlock)),
                                                  kb.c(blocks)));
    Value acc = kb.reduce1(kb.c(0), kb.c(blocks), kb.cf(0.0), [&](Value blk, Value acc) {
      Value first = kb.mul(blk, kb.c(kQuantBlock));
      Value last = kb.min(kb.add(first, kb.c(kQuantBlock)), kb.c(k));
      Value sum = kb.reduce1(first, last, kb.cf(0.0), [&](Value j, Value s) {
        return kb.add(s, kb.mul(decodeE4M3(kb, kb.load(i8, qRow, j)),
                                decodeE4M3(kb, kb.load(i8, wRow, j))));
      });
      Value scale = kb.mul(decodeUE8M0(kb, kb.load(i8, aScales, blk)),
                           decodeUE8M0(kb, kb.load(i8, wScales, blk)));
      return kb.add(acc, kb.mul(sum, scale));
    });
    kb.storeF(out, e, acc);
  });
}

//===----------------------------------------------------------------------===//
// TensorCoreSplit
//===----------------------------------------------------------------------===//

namespace {

/// The argument slot i when `v` is the load of argv[i] (KernelBuilder's
/// loadPtr of a constant slot), or -1.
int64_t argvSlot(Value v, Value argv) {
  auto load = v.getDefiningOp<LLVM::LoadOp>();
  auto gep = load ? load.getAddr().getDefiningOp<LLVM::GEPOp>() : nullptr;
  if (!gep || gep.getBase() != argv || gep.getIndices().size() != 1)
    return -1;
  auto index = gep.getIndices()[0];
  if (auto attr = llvm::dyn_cast_if_present<IntegerAttr>(index))
    return attr.getInt();
  Value dyn = llvm::dyn_cast_if_present<Value>(index);
  APInt c;
  if (dyn && matchPattern(dyn, m_ConstantInt(&c)))
    return c.getSExtValue();
  return -1;
}

/// Whether `load` reads the argument vector itself (a slot's pointer) or a
/// scalar behind a slot (the token count, the start position): memory no
/// kernel writes, so reading it again in a later part gives the same value.
bool readsArguments(LLVM::LoadOp load, ArrayRef<Block *> entries) {
  auto isArgv = [&](Value v) {
    auto arg = dyn_cast<BlockArgument>(v);
    return arg && arg.getArgNumber() == 0 && llvm::is_contained(entries, arg.getOwner());
  };
  auto slotAddress = [&](Value addr) {
    auto gep = addr.getDefiningOp<LLVM::GEPOp>();
    return isArgv(addr) || (gep && isArgv(gep.getBase()));
  };
  Value addr = load.getAddr();
  if (slotAddress(addr))
    return true;
  auto inner = addr.getDefiningOp<LLVM::LoadOp>();
  return inner && slotAddress(inner.getAddr());
}

} // namespace

std::unique_ptr<TensorCoreSplit>
TensorCoreSplit::create(func::FuncOp func, KernelBuilder &kb, EmitContext &ec,
                        const TargetInfo &target, Operation *container,
                        StringRef symbol) {
  // wgmma and the bulk tensor copies: sm_90a only.
  if (!StringRef(target.name()).starts_with("cuda:sm_90a"))
    return nullptr;
  int64_t maxK = 0;
  // The routed experts' grouped GEMMs (WgmmaExperts.h): FP4 experts of a
  // single-sequence program on the fast path, of widths the kernel tiles;
  // COMPRESSA_EXPERTS_WGMMA=0 at compile time keeps the warp MMA tiles
  // (Emitter::expertsMma), the CPU's twin of both.
  static const bool groupedOff = [] {
    const char *v = std::getenv("COMPRESSA_EXPERTS_WGMMA");
    return v && std::string(v) == "0";
  }();
  bool grouped = false;
  func.walk([&](dsv4::MoeExpertsOp op) {
    auto w1 = cast<dsv4::WeightType>(op.getW1().getType());
    grouped |= !groupedOff && !ec.batched && usesFastLinear(op) && !op.getFirstExpert() &&
               isa<Float4E2M1FNType>(w1.getElementType()) &&
               WgmmaExpertsShape::fits(w1.getShape()[2], w1.getShape()[1]);
  });
  func.walk([&](Operation *op) {
    // The routed experts' fast path is the warp MMA tiles or the grouped
    // GEMMs, not this GEMM (the shared expert's FP8 layers take it).
    if (!usesFastLinear(op) || isa<dsv4::MoeExpertsOp>(op))
      return;
    for (Type t : op->getOperandTypes()) {
      auto w = dyn_cast<dsv4::WeightType>(t);
      if (w && w.getRank() == 2 && isa<Float8E4M3FNType>(w.getElementType()) &&
          w.getShape()[0] % 16 == 0 && w.getShape()[1] % 16 == 0)
        maxK = std::max(maxK, w.getShape()[1]);
    }
  });
  // wo_a's groups as one grouped GEMM (Emitter::outProj): the act_quant
  // codes and scales of o's whole row.
  int64_t maxGroupedK = 0;
  func.walk([&](dsv4::OutProjOp op) {
    auto w = cast<dsv4::WeightType>(op.getWoA().getType());
    if (!usesFastLinear(op) || ec.batched || !Emitter::groupedWoA(op))
      return;
    maxGroupedK = std::max(maxGroupedK, w.getShape()[1] * int64_t(op.getGroups()));
  });
  // The indexer's scores (WgmmaIndexer.h): a single-sequence program's
  // fast indexer over f32 keys, of widths the kernel tiles; their q rows
  // (bf16) take the staging area. COMPRESSA_INDEXER_WGMMA=0 at compile
  // time keeps the warp MMA scores (indexerScoresFast, the CPU's twin of
  // both).
  static const bool indexerOff =
      KernelBuilder::experimentString("COMPRESSA_INDEXER_WGMMA") == "0";
  int64_t stagingPerToken = std::max(maxK + (maxK + kQuantBlock - 1) / kQuantBlock,
                                     maxGroupedK + maxGroupedK / kQuantBlock);
  bool indexer = false;
  func.walk([&](dsv4::IndexerTopkOp op) {
    dsv4::IndexerKeysType keys = op.getKeys().getType();
    if (indexerOff || ec.batched || !usesFastLinear(op) ||
        !keys.getElementType().isF32() ||
        !WgmmaIndexerShape::fits(op.getHeads(), keys.getDim()))
      return;
    indexer = true;
    stagingPerToken =
        std::max<int64_t>(stagingPerToken, int64_t(op.getHeads()) * keys.getDim() * 2);
  });
  // The sparse attention over the window and every visible entry (HCA) of
  // a single-sequence program (WgmmaAttention.h): q, the keys and the sinks
  // f32. The staging area takes the bf16 copies of the entries and the
  // window, and with a top-k (CSA) each token's keys as rows of their own.
  // COMPRESSA_ATTENTION_WGMMA at compile time: 0 keeps the warp MMA
  // attention (Emitter::attention, the CPU's twin of both) everywhere, hca
  // keeps it for CSA layers only (for A/B runs).
  static const std::string attentionMode =
      KernelBuilder::experimentString("COMPRESSA_ATTENTION_WGMMA");
  static const bool attentionOff = attentionMode == "0";
  static const bool attentionTopkOn = attentionMode != "hca";
  bool attention = false, attentionTopk = false;
  int64_t stagingFixed = 0;
  func.walk([&](dsv4::SparseAttentionOp op) {
    auto qShape = op.getQ().getType().getShape();
    dsv4::WindowKVType ring = op.getRing().getType();
    if (attentionOff || ec.batched || !usesFastLinear(op) || !op.getEntries() ||
        !WgmmaAttentionShape::fits(qShape[1], qShape[2]) ||
        !ring.getElementType().isF32() ||
        !op.getEntries().getType().getElementType().isF32() ||
        !op.getQ().getType().getElementType().isF32() ||
        !op.getKv().getType().getElementType().isF32() ||
        !cast<dsv4::WeightType>(op.getSink().getType()).getElementType().isF32())
      return;
    int64_t dim = qShape[2], ratio = op.getEntries().getType().getRatio();
    if (op.getTopk()) {
      // CSA: each token's keys as rows of their own, the window's and the
      // selected entries' (WgmmaAttention.h), per token in the staging.
      int64_t k = op.getTopk().getType().getShape()[1];
      if (!attentionTopkOn || k % 64 || ring.getWindow() % 64 ||
          !op.getTopk().getType().getElementType().isInteger(32))
        return;
      attentionTopk = true;
      stagingPerToken = std::max<int64_t>(stagingPerToken, (ring.getWindow() + k) * dim * 2);
      return;
    }
    attention = true;
    stagingPerToken = std::max<int64_t>(stagingPerToken, dim * 2);
    stagingFixed = std::max<int64_t>(
        stagingFixed,
        attentionFixedBytes(dim, ring.getWindow(), ec.maxContext / ratio));
  });
  if (maxK == 0 && !grouped && !indexer && !attention && !attentionTopk)
    return nullptr;
  std::unique_ptr<TensorCoreSplit> split(
      new TensorCoreSplit(kb, ec, target, container, symbol));
  split->maxK = maxK;
  split->maxGroupedK = maxGroupedK;
  split->groupedExperts = grouped;
  split->indexerScoresOn = indexer;
  split->attentionOn = attention;
  split->attentionTopkOn = attentionTopk;
  // The first part of the scratch: at offset 0 whatever S is.
  split->staging = ec.scratch(stagingPerToken, kStagingHeader + stagingFixed);
  return split;
}

bool mlir::compressa::fastIndexerFp8() {
  static const bool on = KernelBuilder::experimentString("COMPRESSA_INDEXER_FP8") != "0";
  return on;
}

bool TensorCoreSplit::handlesIndexer(int64_t heads, int64_t di, Type keyElt) const {
  return indexerScoresOn && keyElt.isF32() && WgmmaIndexerShape::fits(heads, di);
}

Value TensorCoreSplit::indexerQ() const {
  return kb.offset(kb.builder().getI8Type(), staging, kb.c(kStagingHeader));
}

bool TensorCoreSplit::handlesTopk(int64_t capacity, int64_t topk, int64_t ratio) const {
  // COMPRESSA_INDEXER_TOPK=0 at compile time keeps the radix selection's
  // loop nests on the GPU too (for A/B runs).
  static const bool off = KernelBuilder::experimentString("COMPRESSA_INDEXER_TOPK") == "0";
  return indexerScoresOn && !off && TopkSelectShape::fits(capacity, topk, ratio);
}

void TensorCoreSplit::indexerScores(Value keys, Value hw, Value scores, int64_t heads,
                                    int64_t di, int64_t ratio, int64_t capacity, bool fp8,
                                    Value picks, int64_t topk) {
  OpBuilder &b = kb.builder();
  kb.single([&] {
    // Pointers: element i of the staging area is its byte 8 i.
    kb.store(keys, staging, kb.c(kIndexerHeaderKeys / 8));
    kb.store(hw, staging, kb.c(kIndexerHeaderHw / 8));
    kb.store(scores, staging, kb.c(kIndexerHeaderScores / 8));
    if (picks)
      kb.store(picks, staging, kb.c(kIndexerHeaderPicks / 8));
  });
  SmallVector<Attribute> launched = {
      b.getDictionaryAttr({b.getNamedAttr("indexer", b.getStringAttr("scores")),
                           b.getNamedAttr("heads", b.getI64IntegerAttr(heads)),
                           b.getNamedAttr("dim", b.getI64IntegerAttr(di)),
                           b.getNamedAttr("ratio", b.getI64IntegerAttr(ratio)),
                           b.getNamedAttr("capacity", b.getI64IntegerAttr(capacity)),
                           b.getNamedAttr("fp8", b.getBoolAttr(fp8))})};
  if (picks)
    launched.push_back(
        b.getDictionaryAttr({b.getNamedAttr("indexer", b.getStringAttr("topk")),
                             b.getNamedAttr("topk", b.getI64IntegerAttr(topk)),
                             b.getNamedAttr("ratio", b.getI64IntegerAttr(ratio)),
                             b.getNamedAttr("capacity", b.getI64IntegerAttr(capacity))}));
  nextPart(launched);
}

bool TensorCoreSplit::handlesAttention(int64_t heads, int64_t dim, int64_t window,
                                       int64_t ratio, int64_t topk) const {
  if (!WgmmaAttentionShape::fits(heads, dim) || window < 1 || ratio < 1)
    return false;
  if (topk)
    return attentionTopkOn && topk % 64 == 0 && window % 64 == 0;
  return attentionOn;
}

Value TensorCoreSplit::attentionEntries() const {
  return kb.offset(kb.builder().getI8Type(), staging, kb.c(kStagingHeader));
}

Value TensorCoreSplit::attentionWindow(int64_t capacity, int64_t dim) const {
  return kb.offset(kb.builder().getI8Type(), staging,
                   kb.c(kStagingHeader + attentionEntryRows(capacity) * dim * 2));
}

void TensorCoreSplit::attention(Value q, Value sink, Value maxima, Value out,
                                Value windowBase, Value topkIds, int64_t heads, int64_t dim,
                                int64_t window, int64_t ratio, int64_t capacity, int64_t topk,
                                double scale) {
  OpBuilder &b = kb.builder();
  kb.single([&] {
    kb.store(sink, staging, kb.c(kAttentionHeaderSink / 8));
    kb.store(maxima, staging, kb.c(kAttentionHeaderMax / 8));
    kb.store(out, staging, kb.c(kAttentionHeaderOut / 8));
    kb.store(windowBase, staging, kb.c(kAttentionHeaderWindowBase / 8));
    kb.store(q, staging, kb.c(kAttentionHeaderQ / 8));
    if (topkIds)
      kb.store(topkIds, staging, kb.c(kAttentionHeaderTopk / 8));
  });
  auto step = [&](StringRef pass) {
    return b.getDictionaryAttr({b.getNamedAttr("attention", b.getStringAttr(pass)),
                                b.getNamedAttr("heads", b.getI64IntegerAttr(heads)),
                                b.getNamedAttr("dim", b.getI64IntegerAttr(dim)),
                                b.getNamedAttr("window", b.getI64IntegerAttr(window)),
                                b.getNamedAttr("ratio", b.getI64IntegerAttr(ratio)),
                                b.getNamedAttr("capacity", b.getI64IntegerAttr(capacity)),
                                b.getNamedAttr("topk", b.getI64IntegerAttr(topk)),
                                b.getNamedAttr("scale", b.getF64FloatAttr(scale))});
  };
  nextPart({step("max"), step("sums")});
}

bool TensorCoreSplit::handles(const WeightView &w, const View &out, int64_t groups) const {
  // Groups (wo_a): create() reserved their staging (maxGroupedK) for the
  // ops Emitter::groupedWoA takes.
  if (groups > 1 && w.cols * groups > maxGroupedK)
    return false;
  return isa<Float8E4M3FNType>(w.elt) && w.scale && w.rows % 16 == 0 &&
         w.cols % 16 == 0 && w.cols <= maxK && out.elt.isF32() &&
         argvSlot(w.data, Value(w.data).getParentBlock()->getArgument(0)) >= 0;
}

void TensorCoreSplit::linear(View x, int64_t xStride, const WeightView &w, View out,
                             int64_t groups) {
  OpBuilder &b = kb.builder();
  Type i8 = b.getI8Type();
  // act_quant of the whole row: its 128-column blocks never straddle two
  // groups (Emitter::groupedWoA), so the codes are each group's own.
  int64_t k = w.cols * groups;
  Value codes = kb.offset(i8, staging, kb.c(kStagingHeader));
  Value scales = kb.offset(i8, codes, kb.mul(ec.tokens, kb.c(k)));
  emitActQuant(kb, x, xStride, ec.tokens, k, codes, scales);
  // The GEMM's output address (a view in the scratch moves with S).
  kb.single([&] { kb.store(out.ptr, staging, kb.c(0)); });
  int64_t slot = argvSlot(w.data, Value(w.data).getParentBlock()->getArgument(0));
  SmallVector<NamedAttribute> step = {
      b.getNamedAttr("gemm_n", b.getI64IntegerAttr(w.rows)),
      b.getNamedAttr("gemm_k", b.getI64IntegerAttr(w.cols)),
      b.getNamedAttr("weight_slot", b.getI64IntegerAttr(slot))};
  if (groups > 1)
    step.push_back(b.getNamedAttr("gemm_groups", b.getI64IntegerAttr(groups)));
  nextPart({b.getDictionaryAttr(step)});
}

void TensorCoreSplit::nextPart(ArrayRef<Attribute> launched) {
  OpBuilder &b = kb.builder();
  Location loc = kb.getLoc();
  kb.endLaunch();
  target.createReturn(b, loc);
  std::string next = symbol + "_p" + std::to_string(parts.size() + 1);
  llvm::append_range(steps, launched);
  steps.push_back(b.getDictionaryAttr({b.getNamedAttr("part", b.getStringAttr(next))}));
  Block *entry = target.createKernel(b, loc, container, next);
  parts.push_back(entry->getParentOp());
  b.setInsertionPointToStart(entry);
  target.kernelPrologue(b, loc, entry->getParentOp());
}

/// The argument slot of an expert table, or -1.
static int64_t tableSlot(const ExpertView &e) {
  return argvSlot(e.table, Value(e.table).getParentBlock()->getArgument(0));
}

bool TensorCoreSplit::handlesExperts(const ExpertView &w1, const ExpertView &w3,
                                     const ExpertView &w2) const {
  auto fp4 = [](const ExpertView &e) { return isa<Float4E2M1FNType>(e.elt); };
  return groupedExperts && fp4(w1) && fp4(w3) && fp4(w2) && w1.rows == w3.rows &&
         w1.cols == w3.cols && w2.rows == w1.cols && w2.cols == w1.rows &&
         w1.count == w2.count && w3.count == w1.count &&
         WgmmaExpertsShape::fits(w1.cols, w1.rows) && tableSlot(w1) >= 0 &&
         tableSlot(w3) >= 0 && tableSlot(w2) >= 0;
}

void TensorCoreSplit::experts(const ExpertsOperands &in, const ExpertView &w1,
                              const ExpertView &w3, const ExpertView &w2, int64_t topk,
                              double limit) {
  OpBuilder &b = kb.builder();
  kb.single([&] {
    // Pointers: element i of the staging area is its byte 8 i.
    kb.store(in.x, staging, kb.c(kExpertsHeaderX / 8));
    kb.store(in.h, staging, kb.c(kExpertsHeaderH / 8));
    kb.store(in.ys, staging, kb.c(kExpertsHeaderYs / 8));
    kb.store(in.order, staging, kb.c(kExpertsHeaderOrder / 8));
    kb.store(in.expert, staging, kb.c(kExpertsHeaderExpert / 8));
    kb.store(in.first, staging, kb.c(kExpertsHeaderFirst / 8));
    kb.store(in.count, staging, kb.c(kExpertsHeaderCount / 8));
  });
  auto step = [&](StringRef which, const ExpertView &w, int64_t table3) {
    SmallVector<NamedAttribute> a = {
        b.getNamedAttr("experts", b.getStringAttr(which)),
        b.getNamedAttr("n", b.getI64IntegerAttr(w.rows)),
        b.getNamedAttr("k", b.getI64IntegerAttr(w.cols)),
        b.getNamedAttr("topk", b.getI64IntegerAttr(topk)),
        b.getNamedAttr("count", b.getI64IntegerAttr(w.count)),
        b.getNamedAttr("table", b.getI64IntegerAttr(tableSlot(w))),
        b.getNamedAttr("table3", b.getI64IntegerAttr(table3)),
        b.getNamedAttr("limit", b.getF64FloatAttr(limit))};
    return b.getDictionaryAttr(a);
  };
  nextPart({step("gate_up", w1, tableSlot(w3)), step("down", w2, -1)});
}

LogicalResult TensorCoreSplit::finish(Operation *firstKernel) {
  if (parts.empty())
    return success();
  MLIRContext *ctx = firstKernel->getContext();
  SmallVector<Block *> entries = {&firstKernel->getRegion(0).front()};
  for (Operation *part : parts)
    entries.push_back(&part->getRegion(0).front());

  for (auto [i, part] : llvm::enumerate(parts)) {
    Block &entry = part->getRegion(0).front();
    Value argv = entry.getArgument(0);
    IRMapping map;
    OpBuilder b(ctx);
    b.setInsertionPointToStart(&entry);
    Operation *failedAt = nullptr;
    std::function<Value(Value)> local = [&](Value v) -> Value {
      if (Value m = map.lookupOrNull(v))
        return m;
      if (auto arg = dyn_cast<BlockArgument>(v)) {
        if (arg.getArgNumber() != 0 || !llvm::is_contained(entries, arg.getOwner()))
          return nullptr;
        map.map(v, argv);
        return argv;
      }
      Operation *def = v.getDefiningOp();
      auto load = dyn_cast<LLVM::LoadOp>(def);
      bool again = load ? readsArguments(load, entries)
                        : isMemoryEffectFree(def) && def->getNumRegions() == 0;
      if (!again || !llvm::is_contained(entries, def->getBlock())) {
        failedAt = def;
        return nullptr;
      }
      for (Value operand : def->getOperands())
        if (!local(operand))
          return nullptr;
      Operation *copy = b.clone(*def, map);
      b.setInsertionPointAfter(copy);
      return map.lookup(v);
    };
    SmallVector<OpOperand *> outside;
    part->walk([&](Operation *op) {
      for (OpOperand &use : op->getOpOperands())
        if (!part->isAncestor(use.get().getParentRegion()->getParentOp()))
          outside.push_back(&use);
    });
    for (OpOperand *use : outside) {
      Value v = local(use->get());
      if (!v) {
        InFlightDiagnostic diag =
            firstKernel->emitError()
            << "internal error: part " << i + 1
            << " of the kernel (after a tensor-core GEMM) uses a value of an "
               "earlier part that cannot be computed again";
        if (failedAt)
          diag.attachNote(failedAt->getLoc()) << "computed by " << *failedAt;
        return diag;
      }
      use->set(v);
    }
  }

  // Every part is a kernel like the first: its name, ABI and attributes.
  auto name = firstKernel->getAttrOfType<StringAttr>(kKernelAttr);
  for (auto [i, part] : llvm::enumerate(parts)) {
    // The dialect attributes (dsv4.kernel, dsv4.abi, nvvm.maxnreg, ...),
    // not the function's own (its symbol, type, block size).
    for (NamedAttribute a : firstKernel->getAttrs())
      if (a.getName().getValue().contains('.') &&
          a.getName().getValue() != "gpu.kernel")
        part->setAttr(a.getName(), a.getValue());
    if (name)
      part->setAttr(kKernelAttr, StringAttr::get(ctx, name.str() + "#" +
                                                         std::to_string(i + 1)));
  }
  SmallVector<Attribute> all = {DictionaryAttr::get(
      ctx, {NamedAttribute(StringAttr::get(ctx, "part"),
                           SymbolTable::getSymbolName(firstKernel))})};
  llvm::append_range(all, steps);
  firstKernel->setAttr(kTensorCoreStepsAttr, ArrayAttr::get(ctx, all));
  return success();
}

void Emitter::fastLinearTokens(View x, int64_t xStride, const WeightView &wt,
                               View out, int64_t groups) {
  if (ctx.tensorCore && ctx.tensorCore->handles(wt, out, groups))
    return ctx.tensorCore->linear(x, xStride, wt, out, groups);
  // act_quant of the whole row (a group's inputs are whole 128-blocks when
  // groups > 1: Emitter::groupedWoA).
  int64_t k = wt.cols * groups, blocks = (k + kQuantBlock - 1) / kQuantBlock;
  Value q = ctx.scratch(k, 0), scales = ctx.scratch(blocks, 0);
  emitActQuant(kb, x, xStride, S(), k, q, scales);
  emitFp8BlockGemm(kb, q, scales, S(), wt, out, groups);
}
