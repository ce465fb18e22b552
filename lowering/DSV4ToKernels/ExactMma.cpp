//===- ExactMma.cpp - Exact dots of FP4/FP8 weights on tensor cores -------===//
// SPDX-License-Identifier: Apache-2.0
//
// The routed and shared experts of an exact single-sequence program (f32
// activations) on mma.sync, opt-in (COMPRESSA_EXACT_MMA=1 at compile time).
// As f32 dots a decode step's experts take about 7 warp instructions a
// weight (decode, convert, multiply, add); here a lane decodes 16 FP4 codes
// into f16 bits (four instructions a pair; FP8: prmt and cvt) and two MMAs
// take 256 products each.
//
// Exactness (Emitter.h, ExactParts): x is split per 32-column block into
// three f16 parts whose sum is x to 2^-33 of the block's largest value, the
// FP4 and FP8 codes are exact in f16, so every product is exact and only
// the sums round (in f32, in the MMA's order on CUDA and in column order on
// the CPU twin). The results differ from the f32 loop's in the last bits.
//
// Measured on an H200 (docs/perf.md, eighth session): V4-Flash's decode
// experts take 439 us a step this way against 402 us as f32 dots. Each warp
// walks a 16-row tile's blocks in a serial chain of loads, and the kernel's
// 128-register cap limits how many are in flight; hence off by default.
//
//===----------------------------------------------------------------------===//

#include "lowering/DSV4ToKernels/Emitter.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"

#include <array>
#include <cassert>
#include <cmath>

using namespace mlir;
using namespace mlir::compressa;
using namespace mlir::compressa::cpu;
using namespace mlir::dsv4;

namespace {

constexpr int64_t kParts = 3, kBlock = 32, kTileRows = 16;

/// v rounded to a multiple of 2^q, to nearest even (for |v| < 2^(q + 22)):
/// the same f32 operations on every target.
Value roundToMultiple(KernelBuilder &kb, Value v, int q) {
  const double magic = 12582912.0; // 1.5 * 2^23
  Value t = kb.add(kb.mul(v, kb.cf(std::ldexp(1.0, -q))), kb.cf(magic));
  return kb.mul(kb.sub(t, kb.cf(magic)), kb.cf(std::ldexp(1.0, q)));
}

/// 2^e as f32 for an i64 e in [-126, 127].
Value pow2(KernelBuilder &kb, Value e) {
  OpBuilder &b = kb.builder();
  Value biased = kb.truncI32(kb.add(e, kb.c(127)));
  Value bits = arith::ShLIOp::create(b, kb.getLoc(), biased, kb.c32(23));
  return arith::BitcastOp::create(b, kb.getLoc(), kb.f32(), bits);
}

/// The eight e2m1 codes of `word` (code i in bits 4i .. 4i + 3) as four
/// f16x2 words: word i holds codes i (low half) and i + 4, each as the f16
/// with bits (c & 8) << 12 | (c & 7) << 9, the code's value times 2^-14
/// (codes with exponent 0 land on f16's subnormals).
std::array<Value, 4> e2m1F16x2(KernelBuilder &kb, Value word) {
  OpBuilder &b = kb.builder();
  Location loc = kb.getLoc();
  auto shift = [&](Value v, int64_t by) -> Value {
    if (by == 0)
      return v;
    if (by > 0)
      return arith::ShLIOp::create(b, loc, v, kb.c32(by));
    return arith::ShRUIOp::create(b, loc, v, kb.c32(-by));
  };
  std::array<Value, 4> out;
  for (int64_t i = 0; i < 4; ++i) {
    Value mag = arith::AndIOp::create(b, loc, shift(word, 9 - 4 * i), kb.c32(0x0E000E00));
    Value sign = arith::AndIOp::create(b, loc, shift(word, 12 - 4 * i),
                                       kb.c32(int64_t(0x80008000u)));
    out[i] = arith::OrIOp::create(b, loc, mag, sign);
  }
  return out;
}

} // namespace

bool Emitter::exactMmaFits(const ExpertView &e) {
  // Routed experts: FP4 only (the V4 checkpoints'), in the same tiles.
  return isa<Float4E2M1FNType>(e.elt) &&
         exactMmaFits(WeightView{Value(), Value(), e.elt, e.rows, e.cols});
}

bool Emitter::exactMmaFits(const WeightView &w) {
  return isa<Float4E2M1FNType, Float8E4M3FNType>(w.elt) && w.cols % kBlock == 0 &&
         w.rows % kTileRows == 0;
}

Emitter::ExactParts Emitter::allocParts(int64_t cols, int64_t maxRows) {
  assert(cols % kBlock == 0);
  bool mma = kb.targetInfo().hasWarpMmaBf16();
  int64_t blocks = cols / kBlock, perRow = blocks * kParts * kBlock;
  ExactParts xp;
  xp.blocks = blocks;
  xp.parts = View{ctx.scratch(0, maxRows * perRow * (mma ? 2 : 4)),
                  mma ? Type(kb.builder().getF16Type()) : kb.f32()};
  xp.factors = scratchF32(0, maxRows * blocks);
  return xp;
}

void Emitter::splitBlock(const ExactParts &xp, View v, Value blk, Value lane) {
  // blk = row * blocks + block: its 32 values start at blk * 32 of v.
  View block = kb.at(v, kb.mul(blk, c(kBlock)));
  splitBlock(xp, [&](Value j) { return kb.loadF(block, j); }, blk, lane);
}

void Emitter::splitBlock(const ExactParts &xp, function_ref<Value(Value)> valueAt, Value blk,
                         Value lane) {
  OpBuilder &b = kb.builder();
  bool mma = kb.targetInfo().hasWarpMmaBf16();
  // The largest magnitude: over the lanes (a value each) where lanes run in
  // parallel, else in a loop.
  Value most;
  if (kb.lanesParallel()) {
    Value x = valueAt(lane);
    most = kb.max(x, kb.neg(x));
    for (int64_t off = kBlock / 2; off >= 1; off /= 2)
      most = kb.max(most, kb.shuffleXor(most, off));
  } else {
    most = kb.cf(0.0);
    for (int64_t i = 0; i < kBlock; ++i) {
      Value x = valueAt(c(i));
      most = kb.max(most, kb.max(x, kb.neg(x)));
    }
  }
  // P = 14 - floor(log2(most)), at most 127 (a block of zeros, or of values
  // below 2^-113, keeps P = 127).
  Value bits = arith::BitcastOp::create(b, kb.getLoc(), b.getI32Type(), most);
  Value field = kb.toI64(arith::AndIOp::create(
      b, kb.getLoc(), arith::ShRUIOp::create(b, kb.getLoc(), bits, kb.c32(23)), kb.c32(255)));
  Value p = kb.min(kb.sub(c(14 + 127), field), c(127));
  Value up = pow2(kb, p);
  auto split = [&](Value j, Value value) {
    Value x = kb.mul(value, up);
    Value p0 = roundToMultiple(kb, x, 4), r1 = kb.sub(x, p0);
    Value p1 = roundToMultiple(kb, r1, -7), r2 = kb.sub(r1, p1);
    Value p2 = roundToMultiple(kb, r2, -18);
    Value at = kb.mul(blk, c(kParts * kBlock));
    if (mma) {
      // Lane q of a block loads positions 8q .. 8q + 7 as four f16x2 words,
      // word i holding columns 8q + i and 8q + i + 4 (the order in which
      // e2m1F16x2 decodes a word of FP4 codes).
      Value q = kb.div(j, c(8)), i = kb.rem(j, c(8));
      at = kb.add(at, kb.add(kb.mul(q, c(8)),
                             kb.add(kb.mul(kb.rem(i, c(4)), c(2)), kb.div(i, c(4)))));
    } else {
      at = kb.add(at, j);
    }
    Value parts[kParts] = {p0, p1, p2};
    for (int64_t n = 0; n < kParts; ++n) {
      Value part = parts[n];
      if (mma)
        part = arith::TruncFOp::create(b, kb.getLoc(), b.getF16Type(), part);
      kb.store(part, xp.parts.ptr, kb.add(at, c(n * kBlock)));
    }
  };
  if (kb.lanesParallel())
    split(lane, valueAt(lane));
  else
    kb.loop(c(0), c(kBlock), [&](Value j) { split(j, valueAt(j)); });
  kb.ifThen(kb.eq(lane, c(0)), [&] { kb.storeF(xp.factors, blk, pow2(kb, kb.sub(c(14), p))); });
}

Emitter::ExactParts Emitter::exactParts(View v, Value rows, int64_t cols, int64_t maxRows) {
  ExactParts xp = allocParts(cols, maxRows);
  // A warp per block of 32 values (a lane each).
  kb.warpLoop(c(0), kb.mul(rows, c(xp.blocks)),
              [&](Value blk, Value lane) { splitBlock(xp, v, blk, lane); });
  return xp;
}

void Emitter::exactMmaTile(ArrayRef<WeightView> ws, Value row0, const ExactParts &xp, Value xRow,
                           Value lane, function_ref<void(Value, ArrayRef<Value>)> store,
                           Value blk0, int64_t nblk) {
  OpBuilder &b = kb.builder();
  Location loc = kb.getLoc();
  const TargetInfo &target = kb.targetInfo();
  int64_t nw = ws.size(), K = ws.front().cols, blocks = K / kBlock;
  assert(blocks == xp.blocks && "x and the weights have the same columns");
  if (!blk0) {
    blk0 = c(0);
    nblk = blocks;
  }
  assert(nblk > 0 && blocks % nblk == 0);
  Type i8 = b.getI8Type(), i32 = b.getI32Type();
  Value xBlock0 = kb.mul(xRow, c(blocks));
  auto factorAt = [&](Value blk) { return kb.loadF(xp.factors, kb.add(xBlock0, blk)); };
  // FP4: a UE8M0 scale per (row, 32 columns), the code in f16 times 2^-14;
  // FP8: per (128 rows, 128 columns), the code in f16 as it is.
  auto scaleAt = [&](const WeightView &w, Value row, Value blk) {
    if (isa<Float4E2M1FNType>(w.elt))
      return kb.e8m0(kb.load(i8, w.scale, kb.add(kb.mul(row, c(blocks)), blk)));
    Value at = kb.add(kb.mul(kb.div(row, c(128)), c((K + 127) / 128)), kb.div(blk, c(4)));
    return kb.mul(kb.e8m0(kb.load(i8, w.scale, at)), kb.cf(std::ldexp(1.0, -14)));
  };
  if (!target.hasWarpMmaBf16()) {
    // The CPU twin: per row, weight and part, each block's products in
    // column order, then the block's scale, then the parts' sum.
    kb.loop(c(0), c(kTileRows), [&](Value r) {
      Value row = kb.add(row0, r);
      SmallVector<Value> ys;
      for (const WeightView &w : ws) {
        SmallVector<Value> zeros(kParts, kb.cf(0.0));
        SmallVector<Value> acc = kb.reduce(
            blk0, kb.add(blk0, c(nblk)), zeros,
            [&](Value blk, ValueRange in) -> SmallVector<Value> {
              Value f = isa<Float4E2M1FNType>(w.elt)
                            ? kb.mul(scaleAt(w, row, blk), factorAt(blk))
                            : kb.mul(factorAt(blk), kb.cf(std::ldexp(1.0, -14)));
              SmallVector<Value> out;
              for (int64_t n = 0; n < kParts; ++n) {
                View part = kb.at(xp.parts, kb.add(kb.mul(kb.add(xBlock0, blk), c(kParts * kBlock)),
                                                   c(n * kBlock)));
                Value d = kb.reduce1(c(0), c(kBlock), kb.cf(0.0), [&](Value j, Value s) {
                  Value col = kb.add(kb.mul(blk, c(kBlock)), j);
                  // FP8: the scaled weight (its scale, a power of two, then
                  // left out of f: the same products up to that factor).
                  Value a = isa<Float4E2M1FNType>(w.elt)
                                ? kb.mul(kb.fp4At(w, row, col, kb.eq(kb.rem(j, c(2)), c(1))),
                                         kb.cf(std::ldexp(1.0, -14)))
                                : kb.weight(w, row, col);
                  return kb.add(s, kb.mul(a, kb.loadF(part, j)));
                });
                out.push_back(kb.add(in[n], kb.mul(d, f)));
              }
              return out;
            });
        ys.push_back(kb.add(kb.add(acc[0], acc[1]), acc[2]));
      }
      store(r, ys);
    });
    return;
  }
  // Lane (g, q) = (lane / 4, lane % 4): A rows g and g + 8 of the tile, B
  // column g (part g; columns 3 .. 7 are zero); in a block, columns 8q ..
  // 8q + 7: one word of FP4 codes per row, one 16-byte load of x's part.
  Value g = kb.div(lane, c(4)), q = kb.rem(lane, c(4));
  Value part = kb.min(g, c(kParts - 1)), hasPart = kb.lt(g, c(kParts));
  Value r0 = kb.add(row0, g), r1 = kb.add(r0, c(8));
  int64_t unroll = 1;
  for (int64_t u : {nw == 1 ? 8 : 4, 4, 2})
    if (nblk % u == 0) {
      unroll = u;
      break;
    }
  Value zero32 = kb.c32(0);
  auto step = [&](Value blk, ArrayRef<Value> in) -> SmallVector<Value> {
    Value off = kb.add(kb.mul(kb.add(kb.mul(kb.add(xBlock0, blk), c(kParts)), part), c(kBlock)),
                       kb.mul(q, c(8)));
    Value ptr = kb.offset(b.getF16Type(), xp.parts.ptr, off);
    Value v = LLVM::LoadOp::create(b, loc, VectorType::get({4}, i32), ptr, /*alignment=*/16);
    Value bw[4];
    for (int i = 0; i < 4; ++i)
      bw[i] = kb.select(hasPart, LLVM::ExtractElementOp::create(b, loc, v, kb.c32(i)), zero32);
    Value xf = factorAt(blk);
    SmallVector<Value> out(in);
    for (int64_t wi = 0; wi < nw; ++wi) {
      const WeightView &w = ws[wi];
      std::array<Value, 4> a0, a1;
      if (isa<Float4E2M1FNType>(w.elt)) {
        auto word = [&](Value row) {
          Value byte = kb.add(kb.add(kb.mul(row, c(K / 2)), kb.mul(blk, c(kBlock / 2))),
                              kb.mul(q, c(4)));
          return kb.load(i32, kb.offset(i8, w.data, byte), c(0));
        };
        a0 = e2m1F16x2(kb, word(r0));
        a1 = e2m1F16x2(kb, word(r1));
      } else {
        // FP8: the lane's 8 codes of a row are 8 bytes (one load).
        auto decode = [&](Value row, std::array<Value, 4> &a) {
          Value byte = kb.add(kb.add(kb.mul(row, c(K)), kb.mul(blk, c(kBlock))), kb.mul(q, c(8)));
          Value v = LLVM::LoadOp::create(b, loc, VectorType::get({2}, i32),
                                         kb.offset(i8, w.data, byte), /*alignment=*/8);
          Value words[2] = {LLVM::ExtractElementOp::create(b, loc, v, kb.c32(0)),
                            LLVM::ExtractElementOp::create(b, loc, v, kb.c32(1))};
          bool ok = target.decodeE4M3x8F16x2(b, loc, words[0], words[1], a.data());
          assert(ok && "the MMA target decodes e4m3 into f16");
          (void)ok;
        };
        decode(r0, a0);
        decode(r1, a1);
      }
      Value d[4] = {kb.cf(0.0), kb.cf(0.0), kb.cf(0.0), kb.cf(0.0)};
      for (int64_t h = 0; h < 2; ++h) {
        Value cIn[4] = {d[0], d[1], d[2], d[3]};
        Value aFrag[4] = {a0[2 * h], a1[2 * h], a0[2 * h + 1], a1[2 * h + 1]};
        Value bFrag[2] = {bw[2 * h], bw[2 * h + 1]};
        target.mmaF16(b, loc, aFrag, bFrag, cIn, d);
      }
      Value f0 = kb.mul(scaleAt(w, r0, blk), xf), f1 = kb.mul(scaleAt(w, r1, blk), xf);
      Value fs[4] = {f0, f0, f1, f1};
      for (int64_t i = 0; i < 4; ++i)
        out[4 * wi + i] = kb.add(in[4 * wi + i], kb.mul(d[i], fs[i]));
    }
    return out;
  };
  SmallVector<Value> zeros(4 * nw, kb.cf(0.0));
  SmallVector<Value> acc = kb.reduce(
      c(0), c(nblk / unroll), zeros, [&](Value it, ValueRange in) -> SmallVector<Value> {
        SmallVector<Value> a(in);
        for (int64_t u = 0; u < unroll; ++u)
          a = step(kb.add(blk0, kb.add(kb.mul(it, c(unroll)), c(u))), a);
        return a;
      });
  // d[0], d[1]: row g, parts 2q and 2q + 1; d[2], d[3]: row g + 8. Lane q = 0
  // holds parts 0 and 1, lane q = 1 part 2.
  SmallVector<Value> y0s, y1s;
  for (int64_t wi = 0; wi < nw; ++wi) {
    Value other0 = kb.shuffleXor(acc[4 * wi], 1), other2 = kb.shuffleXor(acc[4 * wi + 2], 1);
    y0s.push_back(kb.add(kb.add(acc[4 * wi], acc[4 * wi + 1]), other0));
    y1s.push_back(kb.add(kb.add(acc[4 * wi + 2], acc[4 * wi + 3]), other2));
  }
  kb.ifThen(kb.eq(q, c(0)), [&] {
    store(g, y0s);
    store(kb.add(g, c(8)), y1s);
  });
}

void Emitter::expertsExactMma(MoeExpertsOp op, SharedExpertOp shared, int64_t maxTokens) {
  ExpertView e1 = ctx.experts.lookup(op.getW1()), e3 = ctx.experts.lookup(op.getW3());
  ExpertView e2 = ctx.experts.lookup(op.getW2());
  int64_t dm = e1.cols, inter = e1.rows, k = op.getIds().getType().getShape()[1];
  View x = view(op.getX()), weights = view(op.getWeights()), ids = view(op.getIds());
  View out = view(op.getResult());
  double limit = op.getSwigluLimit().convertToDouble();
  auto expertOf = [&](Value slot) {
    return kb.toI64(kb.load(kb.builder().getI32Type(), ids.ptr, slot));
  };
  // Scratch for at most maxTokens tokens (the tiles take larger calls).
  View ys = scratchF32(0, maxTokens * k * dm);
  // The shared expert (fused): on the MMAs too where its weights fit (FP8
  // of the V4 checkpoints), else its dots as in expertsWithShared.
  WeightView s1, s3, s2;
  View hs, sharedOut;
  int64_t sInter = 0;
  double sLimit = 0;
  bool sharedMma = false;
  if (shared) {
    s1 = w(shared.getW1()), s3 = w(shared.getW3()), s2 = w(shared.getW2());
    sInter = s1.rows;
    sharedOut = view(shared.getResult());
    sLimit = shared.getSwigluLimit().convertToDouble();
    sharedMma = exactMmaFits(s1) && exactMmaFits(s3) && exactMmaFits(s2);
    if (!sharedMma)
      hs = scratchF32(0, maxTokens * sInter);
  }
  ExactParts xp = exactParts(x, S(), dm, maxTokens);
  auto notBelow = [&](Value e, Value n) { return kb.eq(kb.lt(e, n), kb.eq(c(0), c(1))); };
  // The gate and up dots of 16 hidden rows (of w1 and w3) a warp, over one
  // of kSplit runs of x's blocks: a tile's loads are a serial chain per
  // warp, and one run a warp halves it (on an H200, 896 warps each taking
  // all 128 blocks of a V4-Flash decode step left half the warps idle and
  // the rest waiting on memory 32 times in a row). The partial sums meet
  // in the parts step below, in run order.
  int64_t kSplit = xp.blocks % 2 == 0 ? 2 : 1, runBlocks = xp.blocks / kSplit;
  View gp = scratchF32(0, maxTokens * k * kSplit * inter);
  View upv = scratchF32(0, maxTokens * k * kSplit * inter);
  View sgp, sup;
  if (sharedMma) {
    sgp = scratchF32(0, maxTokens * kSplit * sInter);
    sup = scratchF32(0, maxTokens * kSplit * sInter);
  }
  int64_t upTiles = inter / kTileRows, sUpTiles = sInter / kTileRows;
  Value routedUp = kb.mul(S(), c(k * upTiles * kSplit));
  Value upItems = routedUp;
  if (shared)
    upItems = kb.add(routedUp, kb.mul(S(), c(sharedMma ? sUpTiles * kSplit : sInter)));
  kb.warpLoop(c(0), upItems, [&](Value e, Value lane) {
    kb.ifThen(kb.lt(e, routedUp), [&] {
      Value tile = kb.div(e, c(kSplit)), run = kb.rem(e, c(kSplit));
      Value slot = kb.div(tile, c(upTiles)), row0 = kb.mul(kb.rem(tile, c(upTiles)), c(kTileRows));
      Value ex = expertOf(slot);
      Value at = kb.add(kb.mul(kb.add(kb.mul(slot, c(kSplit)), run), c(inter)), row0);
      exactMmaTile(
          {e1.expert(kb, ex), e3.expert(kb, ex)}, row0, xp, kb.div(slot, c(k)), lane,
          [&](Value r, ArrayRef<Value> gu) {
            kb.storeF(gp, kb.add(at, r), gu[0]);
            kb.storeF(upv, kb.add(at, r), gu[1]);
          },
          kb.mul(run, c(runBlocks)), runBlocks);
    });
    if (!shared)
      return;
    kb.ifThen(notBelow(e, routedUp), [&] {
      Value f = kb.sub(e, routedUp);
      if (sharedMma) {
        Value tile = kb.div(f, c(kSplit)), run = kb.rem(f, c(kSplit));
        Value s = kb.div(tile, c(sUpTiles)), row0 = kb.mul(kb.rem(tile, c(sUpTiles)), c(kTileRows));
        Value at = kb.add(kb.mul(kb.add(kb.mul(s, c(kSplit)), run), c(sInter)), row0);
        exactMmaTile(
            {s1, s3}, row0, xp, s, lane,
            [&](Value r, ArrayRef<Value> gu) {
              kb.storeF(sgp, kb.add(at, r), gu[0]);
              kb.storeF(sup, kb.add(at, r), gu[1]);
            },
            kb.mul(run, c(runBlocks)), runBlocks);
        return;
      }
      View xs = kb.at(x, kb.mul(kb.div(f, c(sInter)), c(dm)));
      kb.storeOnce(hs, f, swigluHidden(xs, s1, s3, sLimit, kb.rem(f, c(sInter)), lane), lane);
    });
  });
  // The hiddens (the runs' sums in order, then the SwiGLU) straight into
  // their parts (routed, then shared), in one step.
  auto hidden = [&](View g, View u, int64_t n, int64_t blocks, double lim, Value blk, Value j) {
    Value row = kb.div(blk, c(blocks));
    Value i = kb.add(kb.mul(kb.rem(blk, c(blocks)), c(kBlock)), j);
    Value at = kb.add(kb.mul(row, c(kSplit * n)), i);
    Value gs = kb.loadF(g, at), us = kb.loadF(u, at);
    for (int64_t r = 1; r < kSplit; ++r) {
      gs = kb.add(gs, kb.loadF(g, kb.add(at, c(r * n))));
      us = kb.add(us, kb.loadF(u, kb.add(at, c(r * n))));
    }
    return swiglu(gs, us, lim);
  };
  ExactParts hp = allocParts(inter, maxTokens * k), hsp;
  Value hBlocks = kb.mul(S(), c(k * hp.blocks)), hsBlocks = c(0);
  if (sharedMma) {
    hsp = allocParts(sInter, maxTokens);
    hsBlocks = kb.mul(S(), c(hsp.blocks));
  }
  kb.warpLoop(c(0), kb.add(hBlocks, hsBlocks), [&](Value blk, Value lane) {
    kb.ifThen(kb.lt(blk, hBlocks), [&] {
      splitBlock(
          hp, [&](Value j) { return hidden(gp, upv, inter, hp.blocks, limit, blk, j); }, blk,
          lane);
    });
    if (sharedMma)
      kb.ifThen(notBelow(blk, hBlocks), [&] {
        Value b = kb.sub(blk, hBlocks);
        splitBlock(
            hsp, [&](Value j) { return hidden(sgp, sup, sInter, hsp.blocks, sLimit, b, j); }, b,
            lane);
      });
  });
  // ys[slot, o] = (W2 h_slot)[o], 16 rows a warp; then the shared expert's
  // outputs; then the picks' weighted sum (routedDown's order).
  int64_t downTiles = dm / kTileRows;
  Value routedDown = kb.mul(S(), c(k * downTiles));
  Value downItems = routedDown;
  if (shared)
    downItems = kb.add(routedDown, kb.mul(S(), c(sharedMma ? downTiles : dm)));
  kb.warpLoop(c(0), downItems, [&](Value e, Value lane) {
    kb.ifThen(kb.lt(e, routedDown), [&] {
      Value slot = kb.div(e, c(downTiles)), row0 = kb.mul(kb.rem(e, c(downTiles)), c(kTileRows));
      exactMmaTile({e2.expert(kb, expertOf(slot))}, row0, hp, slot, lane,
                   [&](Value r, ArrayRef<Value> y) {
                     kb.storeF(ys, kb.add(kb.mul(slot, c(dm)), kb.add(row0, r)), y[0]);
                   });
    });
    if (!shared)
      return;
    // The shared expert's output as 0 + 1 * y (expertsWithShared's).
    kb.ifThen(notBelow(e, routedDown), [&] {
      Value f = kb.sub(e, routedDown);
      if (sharedMma) {
        Value s = kb.div(f, c(downTiles)), row0 = kb.mul(kb.rem(f, c(downTiles)), c(kTileRows));
        exactMmaTile({s2}, row0, hsp, s, lane, [&](Value r, ArrayRef<Value> y) {
          kb.storeF(sharedOut, kb.add(kb.mul(s, c(dm)), kb.add(row0, r)),
                    kb.add(kb.cf(0.0), kb.mul(kb.cf(1.0), y[0])));
        });
        return;
      }
      Value s = kb.div(f, c(dm)), o = kb.rem(f, c(dm));
      Value y = kb.dotLanes(kb.at(hs, kb.mul(s, c(sInter))), s2, o, lane);
      kb.storeOnce(sharedOut, f, kb.add(kb.cf(0.0), kb.mul(kb.cf(1.0), y)), lane);
    });
  });
  combinePicks(ys, weights, k, dm, out);
}
