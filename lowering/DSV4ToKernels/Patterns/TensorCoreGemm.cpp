//===- TensorCoreGemm.cpp - act_quant and FP8 block-scaled GEMMs ---------===//
// SPDX-License-Identifier: Apache-2.0

#include "lowering/DSV4ToKernels/TensorCoreGemm.h"
#include "lowering/DSV4ToKernels/Emitter.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"

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

void mlir::compressa::cpu::emitActQuant(KernelBuilder &kb, const View &x,
                                        int64_t xStride, Value rows, int64_t k,
                                        Value q, Value scales) {
  Bits i{kb};
  int64_t blocks = (k + kQuantBlock - 1) / kQuantBlock;
  Type i8 = kb.builder().getI8Type();
  kb.parallelLoop(kb.c(0), kb.mul(rows, kb.c(blocks)), [&](Value e) {
    Value r = kb.div(e, kb.c(blocks)), blk = kb.rem(e, kb.c(blocks));
    Value first = kb.mul(blk, kb.c(kQuantBlock));
    Value len = kb.min(kb.c(kQuantBlock), kb.sub(kb.c(k), first));
    View row = kb.at(x, kb.add(kb.mul(r, kb.c(xStride)), first));
    Value amax = kb.reduce1(kb.c(0), len, kb.cf(1e-4), [&](Value j, Value acc) {
      Value v = kb.loadF(row, j);
      return kb.max(acc, math::AbsFOp::create(kb.builder(), kb.getLoc(), v));
    });
    // log2(s) = ceil(log2(amax / 448)) from amax = m 2^e (module comment).
    Value bits = i.fromF32(amax);
    Value exp = i.sub(i.shr(bits, 23), i.c(127));
    Value up = i.zext(i.ugt(i.band(bits, 0x7FFFFF), 0x600000));
    Value log2s = i.add(i.sub(exp, i.c(8)), up);
    kb.store(i.toByte(i.add(log2s, i.c(127))), scales, e);
    Value inv = i.toF32(i.shl(i.sub(i.c(127), log2s), i.c(23)));
    Value out = kb.offset(i8, q, kb.add(kb.mul(r, kb.c(k)), first));
    kb.loop(kb.c(0), len, [&](Value j) {
      Value v = kb.mul(kb.loadF(row, j), inv);
      v = kb.max(kb.min(v, kb.cf(448.0)), kb.cf(-448.0));
      kb.store(encodeE4M3(kb, v), out, j);
    });
  });
}

void mlir::compressa::cpu::emitFp8BlockGemm(KernelBuilder &kb, Value q,
                                            Value scales, Value rows,
                                            const WeightView &w, const View &out) {
  int64_t n = w.rows, k = w.cols;
  int64_t blocks = (k + kQuantBlock - 1) / kQuantBlock;
  Type i8 = kb.builder().getI8Type();
  kb.parallelLoop(kb.c(0), kb.mul(rows, kb.c(n)), [&](Value e) {
    Value r = kb.div(e, kb.c(n)), col = kb.rem(e, kb.c(n));
    Value qRow = kb.offset(i8, q, kb.mul(r, kb.c(k)));
    Value wRow = kb.offset(i8, w.data, kb.mul(col, kb.c(k)));
    Value wScales = kb.offset(i8, w.scale, kb.mul(kb.div(col, kb.c(kQuantBlock)),
                                                  kb.c(blocks)));
    Value aScales = kb.offset(i8, scales, kb.mul(r, kb.c(blocks)));
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

void Emitter::fastLinearTokens(View x, int64_t xStride, const WeightView &wt,
                               View out) {
  int64_t k = wt.cols, blocks = (k + kQuantBlock - 1) / kQuantBlock;
  Value q = ctx.scratch(k, 0), scales = ctx.scratch(blocks, 0);
  emitActQuant(kb, x, xStride, S(), k, q, scales);
  emitFp8BlockGemm(kb, q, scales, S(), wt, out);
}
