//===- DecodeExpertsFp8.cpp - Decode experts, FP8 GEMM semantics, MMAs ----===//
// SPDX-License-Identifier: Apache-2.0
//
// --numerics=fast-decode (lowering/TensorCore/Numerics.h): a decode call's
// routed experts and the shared expert they fuse, in the semantics of the
// spec's FP4 / FP8 GEMMs (section 3):
//
//   x and the SwiGLU hiddens h through act_quant (1x128, UE8M0 scales);
//   y[n] = sum_kb s_a[kb] * sum_{j in kb} s_w[j] * (sum_{k in j} q_a[k] w[n, k])
//   with j the 32-column blocks (an FP4 weight's scale blocks; an FP8
//   weight's scale is per 128 x 128 block), each block's 32 products summed
//   exactly enough by the tensor cores (CPU twin: in column order in f32),
//   f32 accumulation of the scaled block sums.
//
// The program, for calls of at most 8 tokens (Emitter::experts takes it
// there; larger calls keep the exact code):
//   1. act_quant of x (one warp a 128-column block);
//   2. the w1 and w3 rows of every (token, pick) and of the shared expert in
//      tiles of 16 rows, K split in parts (so every warp has work), the
//      parts' sums to scratch;
//   3. the parts added in order, the clamped SwiGLU, act_quant of h;
//   4. the w2 rows the same way (tiles of 32 rows);
//   5. per output, the parts added, then the picks' weighted sum in pick
//      order; the shared expert's output apart (the op after adds them).
//
// On CUDA the weights are the MMAs' A operand ("swap AB": a tile's 16 rows
// against 8 columns, x of the call's tokens, or for a routed pick its own
// token in column 0). sm_90 has no mma.sync on e4m3 operands (ptxas
// emulates it, unpacking both operands for every MMA), so the codes go to
// f16, where e4m3 and e2m1 values are exact, and a 32-column block takes
// two mma.sync m16n8k16 (f16, f32 accumulation): x's codes once per B
// fragment (cvt.rn.f16x2.e4m3x2), FP4 codes as the value times 2^-14 (bit
// placement, then one prmt a word of two), FP8 weight codes by the same
// conversion as x's. Lane (g, t) reads a row's 8
// columns 8t .. 8t + 7 of a block (one word of FP4 codes, 8 bytes of FP8)
// and x's same 8 columns; both sides pair columns (i, i + 4) in a word, so
// the MMAs' k order is the same permutation of the block on both sides.
// Each block's f32 sum is then scaled and accumulated as above.
//
//===----------------------------------------------------------------------===//

#include "lowering/DSV4ToKernels/Emitter.h"
#include "lowering/DSV4ToKernels/TensorCoreGemm.h"
#include "lowering/TensorCore/Numerics.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"

#include <cstdlib>
#include <string>

using namespace mlir;
using namespace mlir::compressa;
using namespace mlir::compressa::cpu;

namespace {

constexpr int64_t kSub = 32;       ///< columns of two f16 MMAs (an FP4 scale block)
constexpr int64_t kSubs = kQuantBlock / kSub; ///< 32-column blocks of an act_quant block
constexpr int64_t kTileRows = 16;  ///< weight rows of an m-tile
constexpr int64_t kCols = 8;       ///< B columns of an MMA
/// The most tokens a call of this program has (B's columns).
constexpr int64_t kMaxTokens = Emitter::kFp8ExpertsMaxTokens;
static_assert(kMaxTokens == kCols, "a call's tokens are one MMA's B columns");

bool fp8Format(const WeightView &w) {
  return (isa<Float4E2M1FNType>(w.elt) || isa<Float8E4M3FNType>(w.elt)) && w.scale;
}

/// K split in `want` parts of whole 128-column blocks (one part where K has
/// a partial block: it goes last, in the one part).
struct KParts {
  int64_t parts = 1, perPart = 0, full = 0, tailSubs = 0;
};

KParts kParts(int64_t K, int64_t want) {
  KParts p;
  p.full = K / kQuantBlock;
  p.tailSubs = (K % kQuantBlock) / kSub;
  int64_t n = p.tailSubs || p.full == 0 ? 1 : std::max<int64_t>(1, std::min(want, p.full));
  while (p.full % n)
    --n;
  p.parts = n;
  p.perPart = p.full / n;
  return p;
}

/// The parts of K of the gate/up and down steps: COMPRESSA_FP8_EXPERTS_SPLIT
/// = "A,C" at compile time (experiments), else 2 and 2 (on an H200 with
/// V4-Flash 2:6, 2 and 2 or 4 and 2 took the least time of (2..8, 2..8):
/// docs/perf.md, thirteenth session).
std::pair<int64_t, int64_t> wantedParts() {
  int64_t a = 2, cParts = 2;
  if (const char *v = std::getenv("COMPRESSA_FP8_EXPERTS_SPLIT")) {
    char *end = nullptr;
    long x = std::strtol(v, &end, 10);
    if (end && *end == ',' && x > 0) {
      long y = std::strtol(end + 1, nullptr, 10);
      if (y > 0) {
        a = x;
        cParts = y;
      }
    }
  }
  return {a, cParts};
}

/// The parts of K of a call's steps: gate/up (K = dm), the routed and the
/// shared w2; the larger w2 count sizes the partial sums [partsC, rows, dm].
struct Fp8Split {
  KParts pa, pc, ps;
  int64_t partsC = 1;
};

Fp8Split fp8Split(int64_t dm, int64_t inter, int64_t sInter) {
  auto [wantA, wantC] = wantedParts();
  Fp8Split f;
  // The shared expert's w1/w3 have the routed ones' K (dm): the same parts.
  f.pa = kParts(dm, wantA);
  f.pc = kParts(inter, wantC);
  // The shared expert's w2 runs in the routed w2's parts (its K may
  // differ): each its own split, the larger count sizing the scratch.
  f.ps = sInter ? kParts(sInter, wantC) : KParts{};
  f.partsC = std::max(f.pc.parts, f.ps.parts);
  return f;
}

} // namespace

bool Emitter::fp8ExpertsFit(MoeExpertsOp op, SharedExpertOp shared) {
  if (op.getFirstExpert())
    return false;
  // On a parallel target: its warp MMAs (mmaF16) and byte permutation.
  if (kb.lanesParallel() && !kb.targetInfo().hasWarpMmaBf16())
    return false;
  ExpertView e1 = ctx.experts.lookup(op.getW1()), e3 = ctx.experts.lookup(op.getW3());
  ExpertView e2 = ctx.experts.lookup(op.getW2());
  // Experts in FP4 or FP8 always come with their scale tensors.
  for (const ExpertView *e : {&e1, &e3, &e2})
    if (!isa<Float4E2M1FNType, Float8E4M3FNType>(e->elt))
      return false;
  int64_t dm = e1.cols, inter = e1.rows;
  if (dm % kSub || inter % kSub || e3.rows != inter || e3.cols != dm || e2.rows != dm ||
      e2.cols != inter)
    return false;
  if (!shared)
    return true;
  WeightView s1 = w(shared.getW1()), s3 = w(shared.getW3()), s2 = w(shared.getW2());
  for (const WeightView *m : {&s1, &s3, &s2})
    if (!fp8Format(*m))
      return false;
  return s1.cols == dm && s3.cols == dm && s1.rows == s3.rows && s2.rows == dm &&
         s2.cols == s1.rows && s1.rows % kSub == 0;
}

void Emitter::fp8TileDots(ArrayRef<WeightView> ws, Value row0, int64_t mTiles,
                          const Fp8Operand &xo, Value kb0, int64_t nkb, int64_t tailSubs,
                          Value lane,
                          function_ref<void(Value, Value, ArrayRef<Value>)> store) {
  OpBuilder &b = kb.builder();
  Location loc = kb.getLoc();
  const TargetInfo &target = kb.targetInfo();
  Type i8 = b.getI8Type(), i32 = b.getI32Type();
  int64_t K = ws.front().cols, nw = ws.size();
  assert(K <= xo.stride && K % kSub == 0);
  int64_t xBlocks = (K + kQuantBlock - 1) / kQuantBlock;
  int64_t rowBlocks = (xo.stride + kQuantBlock - 1) / kQuantBlock;
  auto isFp4 = [](const WeightView &w) { return isa<Float4E2M1FNType>(w.elt); };
  // x's scale of B column n, block blk.
  auto xScale = [&](Value n, Value blk) {
    Value at = kb.add(kb.mul(xo.rowOf(n), c(rowBlocks)), blk);
    return kb.e8m0(kb.load(i8, xo.scales, at));
  };
  // An FP8 weight's scale byte of row `row`, 128-column block blk.
  auto blockScaleByte = [&](const WeightView &w, Value row, Value blk) {
    Value at = kb.add(kb.mul(kb.div(row, c(kQuantBlock)), c(xBlocks)), blk);
    return kb.load(i8, w.scale, at);
  };
  // An FP4 weight's scale of row `row`, 32-column block sb.
  auto subScale = [&](const WeightView &w, Value row, Value sb) {
    return kb.e8m0(kb.load(i8, w.scale, kb.add(kb.mul(row, c(K / kSub)), sb)));
  };

  if (!kb.lanesParallel()) {
    // The CPU twin: per row, B column and weight, each 32-column block's
    // products of the decoded codes in column order, then its scales.
    kb.loop(c(0), c(kTileRows * mTiles), [&](Value r) {
      Value row = kb.add(row0, r);
      kb.loop(c(0), c(kCols), [&](Value n) {
        kb.ifThen(xo.valid(n), [&] {
          Value xrow = kb.mul(xo.rowOf(n), c(xo.stride));
          SmallVector<Value> ys;
          for (const WeightView &w : ws) {
            auto block = [&](Value blk, int64_t subs, Value acc) {
              Value acc128 = kb.cf(0.0);
              for (int64_t j = 0; j < subs; ++j) {
                Value sb = kb.add(kb.mul(blk, c(kSubs)), c(j));
                Value d = kb.reduce1(c(0), c(kSub), kb.cf(0.0), [&](Value i, Value s) {
                  Value col = kb.add(kb.mul(sb, c(kSub)), i);
                  Value xv = decodeE4M3Code(kb, kb.load(i8, xo.codes, kb.add(xrow, col)));
                  // FP8: the scaled weight (its 128 x 128 scale included).
                  Value wv = isFp4(w) ? kb.fp4At(w, row, col, kb.eq(kb.rem(i, c(2)), c(1)))
                                      : kb.weight(w, row, col);
                  return kb.add(s, kb.mul(xv, wv));
                });
                acc128 = isFp4(w) ? kb.add(acc128, kb.mul(d, subScale(w, row, sb)))
                                  : kb.add(acc128, d);
              }
              return kb.add(acc, kb.mul(acc128, xScale(n, blk)));
            };
            Value acc = kb.reduce1(kb0, kb.add(kb0, c(nkb)), kb.cf(0.0),
                                   [&](Value blk, Value a) { return block(blk, kSubs, a); });
            if (tailSubs)
              acc = block(c(K / kQuantBlock), tailSubs, acc);
            ys.push_back(acc);
          }
          store(row, n, ys);
        });
      });
    });
    return;
  }

  Value g = kb.div(lane, c(4)), t = kb.rem(lane, c(4));
  Value zero32 = kb.c32(0);
  Value xRowG = kb.mul(xo.rowOf(g), c(xo.stride));
  Value col0 = kb.mul(t, c(2)), col1 = kb.add(col0, c(1));
  Value valid0 = xo.valid(col0), valid1 = xo.valid(col1);
  // Eight bytes at byte offset `at` of `ptr` as two words.
  auto load8 = [&](Value ptr, Value at, Value out[2]) {
    Value v = LLVM::LoadOp::create(b, loc, VectorType::get({2}, i32), kb.offset(i8, ptr, at),
                                   /*alignment=*/8);
    out[0] = LLVM::ExtractElementOp::create(b, loc, v, kb.c32(0));
    out[1] = LLVM::ExtractElementOp::create(b, loc, v, kb.c32(1));
  };
  // Eight e4m3 codes as f16x2 words (bytes i and i + 4: the order of ExactMma.cpp's e2m1F16x2).
  auto e4m3F16x2 = [&](Value two[2]) {
    std::array<Value, 4> w;
    bool ok = target.decodeE4M3x8F16x2(b, loc, two[0], two[1], w.data());
    assert(ok && "an MMA target decodes e4m3 into f16");
    (void)ok;
    return w;
  };
  auto shift = [&](Value v, int64_t by) -> Value {
    if (by == 0)
      return v;
    if (by > 0)
      return arith::ShLIOp::create(b, loc, v, kb.c32(by));
    return arith::ShRUIOp::create(b, loc, v, kb.c32(-by));
  };
  auto band = [&](Value v, uint32_t m) -> Value {
    return arith::AndIOp::create(b, loc, v, kb.c32(int64_t(int32_t(m))));
  };
  auto bor = [&](Value x, Value y) -> Value { return arith::OrIOp::create(b, loc, x, y); };
  // UE8M0 byte j of word w as f32: the byte in the exponent field (2^(s -
  // 127); bytes 0 and 255, 2^-127 and NaN for e8m0(), give 0 and +inf:
  // no checkpoint scale is either).
  auto scaleOfWord = [&](Value wd, int64_t j) {
    Value bits = band(shift(wd, 23 - 8 * j), 0x7F800000u);
    return arith::BitcastOp::create(b, loc, kb.f32(), bits).getResult();
  };
  // The eight FP4 codes of word w (code j at bits 4j: columns 8t + j) as
  // f16x2 words in ExactMma.cpp's e2m1F16x2 order and values (word i: codes i and i + 4,
  // each the f16 of its value times 2^-14). Such an f16 has a zero low byte
  // and the high byte (c & 8) << 4 | (c & 7) << 1: those bytes of the even
  // codes (the low nibbles) and of the odd ones in one word each, then one
  // prmt a result word places two of them over zero bytes.
  auto fp4F16x2 = [&](Value wd) {
    Value even = bor(band(shift(wd, 4), 0x80808080u), band(shift(wd, 1), 0x0E0E0E0Eu));
    Value odd = bor(band(wd, 0x80808080u), band(shift(wd, -3), 0x0E0E0E0Eu));
    // Codes (0, 4), (2, 6) are bytes (0, 2), (1, 3) of `even`; (1, 5),
    // (3, 7) the same bytes of `odd`.
    std::array<Value, 4> w = {target.selectBytes(b, loc, zero32, even, 0x6040),
                              target.selectBytes(b, loc, zero32, odd, 0x6040),
                              target.selectBytes(b, loc, zero32, even, 0x7050),
                              target.selectBytes(b, loc, zero32, odd, 0x7050)};
    return w;
  };

  // The two MMAs of 8 columns a lane: MMA h takes A words 2h, 2h + 1 of
  // both rows and B's words 2h, 2h + 1 (the same column order on both
  // sides), d accumulating.
  auto mmas = [&](const std::array<Value, 4> &a0, const std::array<Value, 4> &a1,
                  const std::array<Value, 4> &bw, Value d[4]) {
    for (int64_t h = 0; h < 2; ++h) {
      Value cIn[4] = {d[0], d[1], d[2], d[3]};
      Value aFrag[4] = {a0[2 * h], a1[2 * h], a0[2 * h + 1], a1[2 * h + 1]};
      Value bFrag[2] = {bw[2 * h], bw[2 * h + 1]};
      target.mmaF16(b, loc, aFrag, bFrag, cIn, d);
    }
  };

  // A row's FP4 scales of a 128-column block in one word where the block
  // is whole and the row's scales start 4-byte aligned.
  auto wordScalesOf = [&](int64_t subs) { return subs == kSubs && (K / kSub) % 4 == 0; };
  // That word: row `row`'s FP4 scales of 128-column block blk.
  auto scaleWord = [&](const WeightView &w, Value row, Value blk) {
    Value at = kb.add(kb.mul(row, c(K / kSub)), kb.mul(blk, c(kSubs)));
    return kb.load(i32, kb.offset(i8, w.scale, at), c(0));
  };
  // The weight bytes of a 128-column block (of `subs` 32-column blocks)
  // that the block's MMAs read, loaded: for each weight and m-tile, FP4:
  // the rows' scale words (wordScalesOf), then per 32-column block a word
  // of codes of rows g and g + 8; FP8: the tile's scale byte, then per
  // 32-column block two words of rows g and two of g + 8.
  auto loadBlock = [&](Value blk, int64_t subs) -> SmallVector<Value> {
    SmallVector<Value> words;
    for (int64_t wi = 0; wi < nw; ++wi) {
      const WeightView &w = ws[wi];
      for (int64_t mt = 0; mt < mTiles; ++mt) {
        Value r0 = kb.add(row0, kb.add(g, c(kTileRows * mt))), r1 = kb.add(r0, c(8));
        if (isFp4(w)) {
          if (wordScalesOf(subs))
            for (Value row : {r0, r1})
              words.push_back(scaleWord(w, row, blk));
          for (int64_t j = 0; j < subs; ++j) {
            Value sb = kb.add(kb.mul(blk, c(kSubs)), c(j));
            for (Value row : {r0, r1}) {
              Value byte = kb.add(kb.add(kb.mul(row, c(K / 2)), kb.mul(sb, c(kSub / 2))),
                                  kb.mul(t, c(4)));
              words.push_back(kb.load(i32, kb.offset(i8, w.data, byte), c(0)));
            }
          }
        } else {
          // Rows g and g + 8 of a 16-row tile share their 128-row block.
          words.push_back(blockScaleByte(w, r0, blk));
          for (int64_t j = 0; j < subs; ++j) {
            Value sb = kb.add(kb.mul(blk, c(kSubs)), c(j));
            for (Value row : {r0, r1}) {
              Value two[2];
              load8(w.data,
                    kb.add(kb.add(kb.mul(row, c(K)), kb.mul(sb, c(kSub))), kb.mul(t, c(8))),
                    two);
              words.append({two[0], two[1]});
            }
          }
        }
      }
    }
    return words;
  };

  // The block's MMAs and sums over the words loadBlock loaded: the
  // 32-column blocks in turn (x's B fragments of one of them live at a
  // time), each weight and m-tile's MMAs and sums in its own chain (the
  // same operations in the same order as a weight at a time).
  auto computeBlock = [&](Value blk, int64_t subs, ArrayRef<Value> words,
                          ArrayRef<Value> in) -> SmallVector<Value> {
    bool wordScales = wordScalesOf(subs);
    Value xs0 = xScale(col0, blk), xs1 = xScale(col1, blk);
    // Per weight and m-tile: where its words start, its scale words (FP4)
    // or its scale (FP8), and its running MMA sums (FP4: the scaled
    // 32-column sums; FP8: the block's MMA accumulators).
    struct Chain {
      size_t first = 0;
      Value sw0, sw1, scale;
      std::array<Value, 4> acc;
    };
    SmallVector<Chain> chains;
    size_t at = 0;
    for (int64_t wi = 0; wi < nw; ++wi)
      for (int64_t mt = 0; mt < mTiles; ++mt) {
        Chain ch;
        if (isFp4(ws[wi])) {
          if (wordScales) {
            ch.sw0 = words[at++];
            ch.sw1 = words[at++];
          }
          ch.first = at;
          at += 2 * subs;
        } else {
          ch.scale = words[at++];
          ch.first = at;
          at += 4 * subs;
        }
        for (Value &v : ch.acc)
          v = kb.cf(0.0);
        chains.push_back(ch);
      }
    assert(at == words.size() && "computeBlock reads what loadBlock loaded");
    for (int64_t j = 0; j < subs; ++j) {
      Value sb = kb.add(kb.mul(blk, c(kSubs)), c(j));
      // B: x's 8 codes of the lane's column as f16 (exact), two MMAs (k16)
      // a block. A column that is not used reads a row in range; its D
      // column is dropped (an MMA's columns do not mix).
      Value two[2];
      load8(xo.codes, kb.add(xRowG, kb.add(kb.mul(sb, c(kSub)), kb.mul(t, c(8)))), two);
      std::array<Value, 4> bf = e4m3F16x2(two);
      size_t ci = 0;
      for (int64_t wi = 0; wi < nw; ++wi)
        for (int64_t mt = 0; mt < mTiles; ++mt, ++ci) {
          const WeightView &w = ws[wi];
          Chain &ch = chains[ci];
          if (isFp4(w)) {
            Value r0 = kb.add(row0, kb.add(g, c(kTileRows * mt))), r1 = kb.add(r0, c(8));
            std::array<Value, 4> a0 = fp4F16x2(words[ch.first + 2 * j]);
            std::array<Value, 4> a1 = fp4F16x2(words[ch.first + 2 * j + 1]);
            Value d[4] = {kb.cf(0.0), kb.cf(0.0), kb.cf(0.0), kb.cf(0.0)};
            mmas(a0, a1, bf, d);
            Value s0 = wordScales ? scaleOfWord(ch.sw0, j) : subScale(w, r0, sb);
            Value s1 = wordScales ? scaleOfWord(ch.sw1, j) : subScale(w, r1, sb);
            Value ss[4] = {s0, s0, s1, s1};
            for (int64_t i = 0; i < 4; ++i)
              ch.acc[i] = kb.addTimesPow2(ch.acc[i], d[i], ss[i]);
          } else {
            auto rowCodes = [&](size_t first) {
              Value pair[2] = {words[first], words[first + 1]};
              return e4m3F16x2(pair);
            };
            std::array<Value, 4> a0 = rowCodes(ch.first + 4 * j);
            std::array<Value, 4> a1 = rowCodes(ch.first + 4 * j + 2);
            Value d[4] = {ch.acc[0], ch.acc[1], ch.acc[2], ch.acc[3]};
            mmas(a0, a1, bf, d);
            for (int64_t i = 0; i < 4; ++i)
              ch.acc[i] = d[i];
          }
        }
    }
    SmallVector<Value> out(in);
    size_t ci = 0;
    for (int64_t wi = 0; wi < nw; ++wi)
      for (int64_t mt = 0; mt < mTiles; ++mt, ++ci) {
        const Chain &ch = chains[ci];
        size_t o = (wi * mTiles + mt) * 4;
        // FP4: the f16 codes were the values times 2^-14; FP8: rows g and
        // g + 8 of a 16-row tile share their 128-row block's scale.
        Value f0, f1;
        if (isFp4(ws[wi])) {
          f0 = kb.mul(xs0, kb.cf(16384.0));
          f1 = kb.mul(xs1, kb.cf(16384.0));
        } else {
          Value ws0 = kb.e8m0(ch.scale);
          f0 = kb.mul(xs0, ws0);
          f1 = kb.mul(xs1, ws0);
        }
        Value fs[4] = {f0, f1, f0, f1};
        for (int64_t i = 0; i < 4; ++i)
          out[o + i] = kb.addTimesPow2(out[o + i], ch.acc[i], fs[i]);
      }
    return out;
  };
  auto block = [&](Value blk, int64_t subs, ArrayRef<Value> in) {
    return computeBlock(blk, subs, loadBlock(blk, subs), in);
  };
  // One 128-column block a loop trip (COMPRESSA_FP8_EXPERTS_UNROLL=2 at
  // compile time: two where they divide the part, an experiment; on an H200
  // with V4-Flash 2:6 one took hc_ffn x3 354 us against 366 us with two:
  // docs/perf.md, thirteenth session).
  static const int64_t most = [] {
    const char *v = std::getenv("COMPRESSA_FP8_EXPERTS_UNROLL");
    return v && std::string(v) == "2" ? 2 : 1;
  }();
  // Experiment (COMPRESSA_FP8_EXPERTS_PIPELINE=1 at compile time): the
  // weight words of the next block loaded at the start of a trip, before
  // the MMAs of the block loaded by the trip before (loop-carried), so a
  // trip waits on memory once at most. Without it ptxas, within the
  // kernel's 128 registers, issues about half of a trip's loads after the
  // first MMAs: two or three memory latencies a trip (the sixteenth
  // session's SASS of V4-Flash's hc_ffn). The last trip loads its own
  // block again (cache hits) instead of a branch.
  static const bool pipelined = KernelBuilder::experimentString(
                                    "COMPRESSA_FP8_EXPERTS_PIPELINE") == "1";
  // Experiment (COMPRESSA_FP8_EXPERTS_WIDE=1 at compile time): where B has
  // one column (a routed pick's own token) and every weight is FP4 without
  // a partial block, a lane reads a whole 32-column block of rows g and
  // g + 8 (16 bytes, one load: block t of each 128-column block, so a
  // warp's load covers 64 contiguous bytes a row instead of 16 of each of
  // 8 rows and the sectors are read whole), and the four blocks keep their
  // sums apart by the MMA's N: B column n holds x of block n in the k
  // slots of lane t = n and zeros elsewhere, so D column n is block n's
  // sum over the eight MMAs (4 words of 8 columns a lane). Lanes t = 0, 1
  // hold columns 0..3; each scales its two blocks' sums, and lane t = 0
  // adds lane 1's at the end. Other f32 rounding than the default tiles
  // (a block's 32 products in 8 MMAs of 4); the same CPU twin.
  static const bool wideSwitch =
      KernelBuilder::experimentString("COMPRESSA_FP8_EXPERTS_WIDE") == "1";
  bool wide = wideSwitch && xo.single && tailSubs == 0 && wordScalesOf(kSubs) &&
              llvm::all_of(ws, isFp4);
  SmallVector<Value> zeros(4 * nw * mTiles, kb.cf(0.0));
  SmallVector<Value> acc;
  if (wide) {
    Value on = kb.eq(g, t);
    Value xRow0 = kb.mul(xo.rowOf(c(0)), c(xo.stride));
    // Byte 2t + j (mod 4) of a scale word: the lane's blocks (t = 2, 3 hold
    // zero sums; any byte serves).
    Value shifts[2];
    for (int64_t j = 0; j < 2; ++j)
      shifts[j] = kb.truncI32(kb.mul(kb.rem(kb.add(kb.mul(t, c(2)), c(j)), c(4)), c(8)));
    auto scaleAt = [&](Value wd, Value sh) {
      Value byte = band(arith::ShRUIOp::create(b, loc, wd, sh), 0xFFu);
      return arith::BitcastOp::create(b, loc, kb.f32(), shift(byte, 23)).getResult();
    };
    auto span = [&](Value blk, ArrayRef<Value> in) -> SmallVector<Value> {
      // Loads first: per weight and m-tile, rows g and g + 8's scale words
      // and 16 bytes of codes; then x's 32 codes of block t.
      struct Rows {
        Value sw[2];
        Value words[2][4];
      };
      SmallVector<Rows> rows;
      for (int64_t wi = 0; wi < nw; ++wi)
        for (int64_t mt = 0; mt < mTiles; ++mt) {
          const WeightView &w = ws[wi];
          Rows rw;
          Value r0 = kb.add(row0, kb.add(g, c(kTileRows * mt)));
          for (int64_t h = 0; h < 2; ++h) {
            Value row = kb.add(r0, c(8 * h));
            rw.sw[h] = scaleWord(w, row, blk);
            Value byte = kb.add(kb.add(kb.mul(row, c(K / 2)), kb.mul(blk, c(kQuantBlock / 2))),
                                kb.mul(t, c(kSub / 2)));
            Value v = LLVM::LoadOp::create(b, loc, VectorType::get({4}, i32),
                                           kb.offset(i8, w.data, byte), /*alignment=*/16);
            for (int64_t i = 0; i < 4; ++i)
              rw.words[h][i] = LLVM::ExtractElementOp::create(b, loc, v, kb.c32(i));
          }
          rows.push_back(rw);
        }
      std::array<std::array<Value, 4>, 4> bx;
      for (int64_t i = 0; i < 4; ++i) {
        Value two[2];
        load8(xo.codes,
              kb.add(xRow0, kb.add(kb.mul(blk, c(kQuantBlock)),
                                   kb.add(kb.mul(t, c(kSub)), c(8 * i)))),
              two);
        std::array<Value, 4> f = e4m3F16x2(two);
        for (int64_t k = 0; k < 4; ++k)
          bx[i][k] = kb.select(on, f[k], LLVM::ZeroOp::create(b, loc, f[k].getType()));
      }
      Value f = kb.mul(xScale(c(0), blk), kb.cf(16384.0));
      SmallVector<Value> out(in);
      for (size_t ci = 0; ci < rows.size(); ++ci) {
        const Rows &rw = rows[ci];
        Value d[4] = {kb.cf(0.0), kb.cf(0.0), kb.cf(0.0), kb.cf(0.0)};
        for (int64_t i = 0; i < 4; ++i)
          mmas(fp4F16x2(rw.words[0][i]), fp4F16x2(rw.words[1][i]), bx[i], d);
        // d[i]: row g (i < 2) or g + 8, block 2t + i % 2.
        for (int64_t i = 0; i < 4; ++i) {
          Value s = scaleAt(rw.sw[i / 2], shifts[i % 2]);
          out[ci * 4 + i] = kb.addTimesPow2(out[ci * 4 + i], kb.mul(d[i], s), f);
        }
      }
      return out;
    };
    acc = kb.reduce(c(0), c(nkb), zeros, [&](Value it, ValueRange in) -> SmallVector<Value> {
      return span(kb.add(kb0, it), SmallVector<Value>(in.begin(), in.end()));
    });
    // Row g's value: its two blocks' sums, then lane t ^ 1's (lane 0 ends
    // with it; the store takes column 0 only).
    for (size_t ci = 0; ci < acc.size() / 4; ++ci)
      for (int64_t h = 0; h < 2; ++h) {
        Value v = kb.add(acc[ci * 4 + 2 * h], acc[ci * 4 + 2 * h + 1]);
        acc[ci * 4 + 2 * h] = kb.add(v, kb.shuffleXor(v, 1));
      }
  } else {
    int64_t unroll = nkb % 2 == 0 && nkb > 1 ? most : 1;
    if (pipelined && unroll == 1 && nkb > 1) {
      SmallVector<Value> init(zeros);
      SmallVector<Value> first = loadBlock(kb0, kSubs);
      size_t nAcc = init.size();
      init.append(first.begin(), first.end());
      SmallVector<Value> res = kb.reduce(
          c(0), c(nkb), init, [&](Value it, ValueRange in) -> SmallVector<Value> {
            SmallVector<Value> cur(in.begin() + nAcc, in.end());
            Value nextBlk = kb.add(kb0, kb.min(kb.add(it, c(1)), c(nkb - 1)));
            SmallVector<Value> next = loadBlock(nextBlk, kSubs);
            SmallVector<Value> a = computeBlock(kb.add(kb0, it), kSubs, cur,
                                                SmallVector<Value>(in.begin(), in.begin() + nAcc));
            a.append(next.begin(), next.end());
            return a;
          });
      acc.assign(res.begin(), res.begin() + nAcc);
    } else {
      acc = kb.reduce(
          c(0), c(nkb / unroll), zeros, [&](Value it, ValueRange in) -> SmallVector<Value> {
            SmallVector<Value> a(in);
            for (int64_t u = 0; u < unroll; ++u)
              a = block(kb.add(kb0, kb.add(kb.mul(it, c(unroll)), c(u))), kSubs, a);
            return a;
          });
    }
    if (tailSubs)
      acc = block(c(K / kQuantBlock), tailSubs, acc);
  }
  // d[i]: row g (i < 2) or g + 8, column 2t + i % 2.
  for (int64_t mt = 0; mt < mTiles; ++mt)
    for (int64_t i = 0; i < 4; ++i) {
      Value row = kb.add(row0, kb.add(g, c(kTileRows * mt + (i < 2 ? 0 : 8))));
      Value n = i % 2 ? col1 : col0;
      SmallVector<Value> vals;
      for (int64_t wi = 0; wi < nw; ++wi)
        vals.push_back(acc[(wi * mTiles + mt) * 4 + i]);
      kb.ifThen(i % 2 ? valid1 : valid0, [&] { store(row, n, vals); });
    }
}

bool Emitter::fp8LinearFits(const WeightView &wt, int64_t per, int64_t groupIn) {
  if (kb.lanesParallel() && !kb.targetInfo().hasWarpMmaBf16())
    return false;
  return isa<Float8E4M3FNType>(wt.elt) && wt.scale && wt.cols % kQuantBlock == 0 &&
         per % kTileRows == 0 && wt.rows % per == 0 && groupIn % kQuantBlock == 0;
}

void Emitter::fp8DecodeLinear(View x, int64_t xStride, const WeightView &wt, View out,
                              int64_t per, int64_t groupIn, const EmitContext::Quantized *given,
                              const EmitContext::Quantized *quantOut) {
  constexpr int64_t T = kMaxTokens;
  Type i8 = kb.builder().getI8Type();
  int64_t K = wt.cols, rows = wt.rows;
  // One input: its K values quantised; groups: the whole row.
  int64_t qk = per == rows ? K : xStride;
  assert(qk % kQuantBlock == 0 && K <= qk && "fp8DecodeLinear of a layer that fits");
  Value xq, xsc;
  if (given) {
    xq = given->codes;
    xsc = given->scales;
  } else {
    xq = ctx.scratch(0, T * qk);
    xsc = ctx.scratch(0, T * (qk / kQuantBlock));
    emitActQuant(kb, x, xStride, S(), qk, xq, xsc);
  }
  int64_t nkb = K / kQuantBlock, tiles = rows / kTileRows, parts = 1;
  while (nkb % (parts * 2) == 0 && tiles * parts * 2 <= kFp8LinearItems)
    parts *= 2;
  int64_t perPart = nkb / parts;
  View partial = parts > 1 ? scratchF32(0, parts * T * rows) : View{};
  kb.warpLoop(c(0), c(tiles * parts), [&](Value e, Value lane) {
    Value u = kb.div(e, c(parts)), p = kb.rem(e, c(parts));
    Value row0 = kb.mul(u, c(kTileRows));
    Value first = kb.mul(kb.div(row0, c(per)), c(groupIn));
    Fp8Operand xo{kb.offset(i8, xq, first), kb.offset(i8, xsc, kb.div(first, c(kQuantBlock))),
                  qk, {}, {}};
    xo.rowOf = [this](Value n) { return kb.min(n, kb.sub(S(), c(1))); };
    xo.valid = [this](Value n) { return kb.lt(n, S()); };
    fp8TileDots({wt}, row0, 1, xo, kb.mul(p, c(perPart)), perPart, 0, lane,
                [&](Value row, Value n, ArrayRef<Value> v) {
                  if (parts == 1)
                    kb.storeF(out, kb.add(kb.mul(n, c(rows)), row), v[0]);
                  else
                    kb.storeF(partial,
                              kb.add(kb.mul(kb.add(kb.mul(p, c(T)), n), c(rows)), row), v[0]);
                });
  });
  // Token s's row r: its parts' sums added in part order.
  auto sum = [&](Value s, Value r) {
    auto part = [&](int64_t p) {
      return kb.loadF(partial, kb.add(kb.mul(kb.add(c(p * T), s), c(rows)), r));
    };
    Value y = part(0);
    for (int64_t p = 1; p < parts; ++p)
      y = kb.add(y, part(p));
    return y;
  };
  if (quantOut && parts > 1) {
    emitActQuantKeeping(
        kb, nullptr, [&](Value s, Value, Value r) { return sum(s, r); }, out, S(), rows,
        quantOut->codes, quantOut->scales);
    return;
  }
  if (parts > 1)
    kb.parallelLoop(c(0), kb.mul(S(), c(rows)), [&](Value e) {
      kb.storeF(out, e, sum(kb.div(e, c(rows)), kb.rem(e, c(rows))));
    });
  if (quantOut)
    emitActQuant(kb, out, rows, S(), rows, quantOut->codes, quantOut->scales);
}

// The gate/up partial sums gu[p][m][hr][i] of expertsFp8Decode: K in
// pa.parts parts, m = 0 (w1) or 1 (w3), S (k + hasShared) rows hr (the S k
// routed slots, then the S shared ones) of hWidth values.
struct Fp8GateUp {
  KParts pa;
  int64_t k = 0, hasShared = 0, hWidth = 0;
};
static Fp8GateUp fp8GateUpOf(const ExpertView &e1, int64_t k, int64_t sInter, bool shared) {
  Fp8GateUp g;
  g.k = k;
  g.hasShared = shared ? 1 : 0;
  g.pa = fp8Split(e1.cols, e1.rows, sInter).pa;
  g.hWidth = std::max(e1.rows, sInter);
  return g;
}
static Value guIndex(KernelBuilder &kb, const Fp8GateUp &g, Value tokens, int64_t m, Value p,
                     Value hr, Value i) {
  Value hRows = kb.mul(tokens, kb.c(g.k + g.hasShared));
  return kb.add(kb.mul(kb.add(kb.mul(kb.add(kb.mul(p, kb.c(2)), kb.c(m)), hRows), hr),
                       kb.c(g.hWidth)),
                i);
}

SharedExpertOp Emitter::fp8SharedGateUpEarly(MoeExpertsOp op) {
  // Off by default: on an H100 the score-gated hc_ffn launches of V4-Flash
  // 2:6 took 370 us a step with it against 336 us without (docs/perf.md,
  // eighteenth session); COMPRESSA_FP8_SHARED_EARLY=1 turns it on.
  static const bool off =
      KernelBuilder::experimentString("COMPRESSA_FP8_SHARED_EARLY") != "1";
  if (off || op.getFirstExpert() || !usesFp8Experts(op) || usesFastLinear(op))
    return {};
  // The shared expert the experts' op fuses (ConvertDSV4ToKernels: the op
  // right after it on the same x).
  auto shared = dyn_cast_or_null<SharedExpertOp>(op->getNextNode());
  if (!shared || shared.getX() != op.getX() || usesFastLinear(shared) ||
      !fp8ExpertsFit(op, shared) || !ctx.quantized.count(op.getX()))
    return {};
  return shared;
}

View Emitter::fp8GateUpScratch(MoeExpertsOp op, SharedExpertOp shared) {
  ExpertView e1 = ctx.experts.lookup(op.getW1());
  int64_t sInter = shared ? w(shared.getW1()).rows : 0;
  Fp8GateUp g = fp8GateUpOf(e1, op.getIds().getType().getShape()[1], sInter, bool(shared));
  return scratchF32(0, g.pa.parts * 2 * kMaxTokens * (g.k + g.hasShared) * g.hWidth);
}

Value Emitter::fp8SharedGateUpItems(MoeExpertsOp op, SharedExpertOp shared) {
  ExpertView e1 = ctx.experts.lookup(op.getW1());
  int64_t sInter = w(shared.getW1()).rows;
  Fp8GateUp g = fp8GateUpOf(e1, op.getIds().getType().getShape()[1], sInter, true);
  return kb.select(kb.le(S(), c(kFp8ExpertsMaxTokens)), c(sInter / kTileRows * g.pa.parts),
                   c(0));
}

void Emitter::fp8SharedGateUpItem(MoeExpertsOp op, SharedExpertOp shared, View gu,
                                  const EmitContext::Quantized &xq, Value e, Value lane) {
  ExpertView e1 = ctx.experts.lookup(op.getW1());
  WeightView s1 = w(shared.getW1()), s3 = w(shared.getW3());
  int64_t k = op.getIds().getType().getShape()[1], dm = e1.cols;
  Fp8GateUp g = fp8GateUpOf(e1, k, s1.rows, true);
  // B column n: token n's x (n < S).
  Fp8Operand xo{xq.codes, xq.scales, dm, {}, {}};
  xo.rowOf = [this](Value n) { return kb.min(n, kb.sub(S(), c(1))); };
  xo.valid = [this](Value n) { return kb.lt(n, S()); };
  Value u = kb.div(e, c(g.pa.parts)), p = kb.rem(e, c(g.pa.parts));
  Value slots = kb.mul(S(), c(k));
  fp8TileDots({s1, s3}, kb.mul(u, c(kTileRows)), 1, xo, kb.mul(p, c(g.pa.perPart)),
              g.pa.perPart, g.pa.tailSubs, lane, [&](Value row, Value n, ArrayRef<Value> v) {
                Value hr = kb.add(slots, n);
                kb.storeF(gu, guIndex(kb, g, S(), 0, p, hr, row), v[0]);
                kb.storeF(gu, guIndex(kb, g, S(), 1, p, hr, row), v[1]);
              });
}

// The partial outputs of expertsFp8Decode: yp[p, hr, o] (hRows hidden rows
// a part: the slots' S k routed rows, then S shared ones).
struct Fp8Sums {
  View yp;
  Value hRows, slots;
  int64_t k, dm;
};
// Row hr's output element o: its parts summed in part order.
static Value fp8PartsSum(KernelBuilder &kb, const Fp8Sums &f, Value hr, Value o, int64_t parts) {
  Value y = kb.cf(0.0);
  for (int64_t p = 0; p < parts; ++p)
    y = kb.add(y, kb.loadF(f.yp, kb.add(kb.mul(kb.add(kb.mul(kb.c(p), f.hRows), hr),
                                               kb.c(f.dm)),
                                        o)));
  return y;
}
// Token s's routed output element o: its picks' rows (fp8PartsSum) weighted
// by `weights` (an element each, Emitter::elementOf), summed in pick order.
static Value fp8RoutedSum(KernelBuilder &kb, EmitContext &ctx, const Fp8Sums &f, Value weights,
                          int64_t parts, Value s, Value o) {
  Value acc = kb.cf(0.0);
  for (int64_t j = 0; j < f.k; ++j) {
    Value slot = kb.add(kb.mul(s, kb.c(f.k)), kb.c(j));
    acc = kb.add(acc, kb.mul(Emitter::elementOf(kb, ctx, weights, s, kb.c(j)),
                             fp8PartsSum(kb, f, slot, o, parts)));
  }
  return acc;
}

void Emitter::expertsFp8(MoeExpertsOp op, SharedExpertOp shared) {
  Value routedOut = op.getResult(), sharedOut = shared ? shared.getResult() : Value();
  bool lazy = mayStayLazy(routedOut) && (!shared || mayStayLazy(sharedOut));
  if (!lazy) {
    branch(
        kb.le(S(), c(kFp8ExpertsMaxTokens)), [&] { expertsFp8Decode(op, shared); },
        [&] { experts(op); });
    return;
  }
  ExpertView e1 = ctx.experts.lookup(op.getW1());
  int64_t dm = e1.cols, k = op.getIds().getType().getShape()[1];
  int64_t sInter = shared ? w(shared.getW1()).rows : 0, hasShared = shared ? 1 : 0;
  Fp8Split f = fp8Split(dm, e1.rows, sInter);
  // Before the branch, so that the readers' code (after it) sees it.
  View yp = scratchF32(0, f.partsC * kMaxTokens * (k + hasShared) * dm);
  branch(
      kb.le(S(), c(kFp8ExpertsMaxTokens)), [&] { expertsFp8Decode(op, shared, yp); },
      [&] { experts(op); });
  // Element (s, o): in calls of at most kMaxTokens tokens, the sums of the
  // last step of expertsFp8Decode (fp8RoutedSum, fp8PartsSum); in larger
  // calls, what experts() stored.
  KernelBuilder &kr = kb;
  Value weights = op.getWeights();
  EmitContext &cx = ctx;
  View routedView = view(routedOut);
  View sharedView = shared ? view(sharedOut) : View{};
  Fp8Sums sums{yp, kb.mul(S(), c(k + hasShared)), kb.mul(S(), c(k)), k, dm};
  int64_t partsR = f.pc.parts, partsS = f.ps.parts;
  Value tokens = S();
  auto orStored = [&kr, tokens, dm](function_ref<Value()> fp8, View stored, Value s, Value o) {
    return kr.ifElse(
        kr.le(tokens, kr.c(kFp8ExpertsMaxTokens)), TypeRange{kr.f32()},
        [&]() -> SmallVector<Value> { return {fp8()}; },
        [&]() -> SmallVector<Value> {
          return {kr.loadF(stored, kr.add(kr.mul(s, kr.c(dm)), o))};
        })[0];
  };
  ctx.lazy[routedOut] = [&kr, &cx, sums, orStored, weights, routedView, partsR](Value s,
                                                                               Value o) {
    return orStored([&]() { return fp8RoutedSum(kr, cx, sums, weights, partsR, s, o); },
                    routedView, s, o);
  };
  if (shared)
    ctx.lazy[sharedOut] = [&kr, sums, orStored, sharedView, partsS](Value s, Value o) {
      return orStored(
          [&]() { return fp8PartsSum(kr, sums, kr.add(sums.slots, s), o, partsS); },
          sharedView, s, o);
    };
}

void Emitter::expertsFp8Decode(MoeExpertsOp op, SharedExpertOp shared, View partials) {
  ExpertView e1 = ctx.experts.lookup(op.getW1()), e3 = ctx.experts.lookup(op.getW3());
  ExpertView e2 = ctx.experts.lookup(op.getW2());
  // Without a fused shared expert (unit tests, a model without one): its
  // steps are left out.
  WeightView s1, s3, s2;
  View sharedOut;
  double limit = op.getSwigluLimit().convertToDouble(), sLimit = limit;
  if (shared) {
    s1 = w(shared.getW1());
    s3 = w(shared.getW3());
    s2 = w(shared.getW2());
    sharedOut = view(shared.getResult());
    sLimit = shared.getSwigluLimit().convertToDouble();
  }
  int64_t dm = e1.cols, inter = e1.rows, k = op.getIds().getType().getShape()[1];
  int64_t sInter = shared ? s1.rows : 0, hasShared = shared ? 1 : 0;
  View x = view(op.getX()), ids = view(op.getIds());
  View out = view(op.getResult());
  Fp8Split split = fp8Split(dm, inter, sInter);
  KParts pa = split.pa, pc = split.pc, ps = split.ps;
  int64_t partsC = split.partsC;
  auto blocksOf = [](int64_t K) { return (K + kQuantBlock - 1) / kQuantBlock; };
  // Rows of h: the (token, pick) slots, then the shared expert's tokens.
  Value slots = kb.mul(S(), c(k)), hRows = kb.mul(S(), c(k + hasShared));
  int64_t hWidth = std::max(inter, sInter);
  // Scratch for kMaxTokens tokens (the program runs for no more).
  constexpr int64_t T = kMaxTokens;
  // x's act_quant: made by the rms_norm before (EmitContext::quantized),
  // else step 1 below.
  auto made = ctx.quantized.find(op.getX());
  bool xMade = made != ctx.quantized.end();
  Value xq = xMade ? made->second.codes : ctx.scratch(0, T * dm);
  Value xsc = xMade ? made->second.scales : ctx.scratch(0, T * blocksOf(dm));
  int64_t perToken = k + hasShared;
  // The shared expert's gate/up: done by the router's step before, or here.
  auto early = shared ? ctx.fp8SharedGateUp.find(shared.getOperation())
                      : ctx.fp8SharedGateUp.end();
  bool sharedDone = early != ctx.fp8SharedGateUp.end();
  View gu = sharedDone ? early->second : fp8GateUpScratch(op, shared);
  Value hq = ctx.scratch(0, T * perToken * hWidth);
  Value hsc = ctx.scratch(0, T * perToken * blocksOf(hWidth));
  View yp = partials.ptr ? partials : scratchF32(0, partsC * T * perToken * dm);
  auto expertOf = [&](Value slot) {
    return kb.toI64(kb.load(kb.builder().getI32Type(), ids.ptr, slot));
  };
  auto tokenColumns = [&](Value codes, Value scales, int64_t stride, Value first) {
    // B column n: token n's row (first + n) where n < S.
    Fp8Operand o{codes, scales, stride, {}, {}};
    o.rowOf = [this, first](Value n) { return kb.add(first, kb.min(n, kb.sub(S(), c(1)))); };
    o.valid = [this](Value n) { return kb.lt(n, S()); };
    return o;
  };
  auto oneColumn = [&](Value codes, Value scales, int64_t stride, Value row) {
    Fp8Operand o{codes, scales, stride, {}, {}};
    o.rowOf = [row](Value) { return row; };
    o.valid = [this](Value n) { return kb.eq(n, c(0)); };
    o.single = true;
    return o;
  };

  // A warp item of the routed experts or (where fused) of the shared one
  // (step 2 without the shared expert's items where the router's step
  // took them).
  auto routedOrShared = [&](Value isRouted, function_ref<void()> routed,
                            function_ref<void()> sharedItem, bool sharedHere = true) {
    if (shared && sharedHere)
      branch(isRouted, routed, sharedItem);
    else
      routed();
  };

  // 1. act_quant of x.
  if (!xMade)
    emitActQuant(kb, x, dm, S(), dm, xq, xsc);

  // 2. gate and up partial sums: gu[p][m][hr][i].
  Fp8GateUp layout = fp8GateUpOf(e1, k, sInter, bool(shared));
  auto guAt = [&](int64_t m, Value p, Value hr, Value i) {
    return guIndex(kb, layout, S(), m, p, hr, i);
  };
  {
    int64_t tiles = inter / kTileRows, sTiles = sInter / kTileRows;
    Value routedItems = kb.mul(slots, c(tiles * pa.parts));
    Value items = kb.add(routedItems, c(sharedDone ? 0 : hasShared * sTiles * pa.parts));
    kb.warpLoop(c(0), items, [&](Value e, Value lane) {
      routedOrShared(
          kb.lt(e, routedItems),
          [&] {
            Value slot = kb.div(e, c(tiles * pa.parts));
            Value rest = kb.rem(e, c(tiles * pa.parts));
            Value u = kb.div(rest, c(pa.parts)), p = kb.rem(rest, c(pa.parts));
            Value ex = expertOf(slot);
            WeightView w1 = e1.expert(kb, ex), w3 = e3.expert(kb, ex);
            Fp8Operand xo = oneColumn(xq, xsc, dm, kb.div(slot, c(k)));
            fp8TileDots({w1, w3}, kb.mul(u, c(kTileRows)), 1, xo, kb.mul(p, c(pa.perPart)),
                        pa.perPart, pa.tailSubs, lane,
                        [&](Value row, Value, ArrayRef<Value> v) {
                          kb.storeF(gu, guAt(0, p, slot, row), v[0]);
                          kb.storeF(gu, guAt(1, p, slot, row), v[1]);
                        });
          },
          [&] {
            fp8SharedGateUpItem(op, shared, gu, {xq, xsc}, kb.sub(e, routedItems), lane);
          },
          !sharedDone);
    });
  }

  // 3. h = SwiGLU of the parts' sums (in part order) and its act_quant in
  // one step (rows of hWidth; a shared expert narrower than the routed ones
  // leaves its tail columns 0).
  auto hValue = [&](Value hr, Value first, Value j) {
    Value i = kb.add(first, j);
    Value routed = kb.lt(hr, slots);
    Value used = kb.lt(i, kb.select(routed, c(inter), c(sInter)));
    auto sum = [&](int64_t m) {
      Value a = kb.cf(0.0);
      for (int64_t p = 0; p < pa.parts; ++p)
        a = kb.add(a, kb.loadF(gu, guAt(m, c(p), hr, i)));
      return a;
    };
    Value gate = sum(0), up = sum(1);
    Value hv = swiglu(gate, up, limit);
    if (sLimit != limit)
      hv = kb.select(routed, hv, swiglu(gate, up, sLimit));
    return kb.select(used, hv, kb.cf(0.0));
  };
  emitActQuantOf(kb, hValue, hRows, hWidth, hq, hsc);

  // 4. down partial sums: yp[p][hr][o].
  auto ypAt = [&](Value p, Value hr, Value o) {
    return kb.add(kb.mul(kb.add(kb.mul(p, hRows), hr), c(dm)), o);
  };
  int64_t mTiles = dm % (2 * kTileRows) == 0 ? 2 : 1, rowsPer = kTileRows * mTiles;
  {
    int64_t tiles = dm / rowsPer;
    Value routedItems = kb.mul(slots, c(tiles * pc.parts));
    Value items = kb.add(routedItems, c(hasShared * tiles * ps.parts));
    kb.warpLoop(c(0), items, [&](Value e, Value lane) {
      routedOrShared(
          kb.lt(e, routedItems),
          [&] {
            Value slot = kb.div(e, c(tiles * pc.parts));
            Value rest = kb.rem(e, c(tiles * pc.parts));
            Value u = kb.div(rest, c(pc.parts)), p = kb.rem(rest, c(pc.parts));
            WeightView w2 = e2.expert(kb, expertOf(slot));
            Fp8Operand ho = oneColumn(hq, hsc, hWidth, slot);
            fp8TileDots({w2}, kb.mul(u, c(rowsPer)), mTiles, ho, kb.mul(p, c(pc.perPart)),
                        pc.perPart, pc.tailSubs, lane,
                        [&](Value row, Value, ArrayRef<Value> v) {
                          kb.storeF(yp, ypAt(p, slot, row), v[0]);
                        });
          },
          [&] {
            Value f = kb.sub(e, routedItems);
            Value u = kb.div(f, c(ps.parts)), p = kb.rem(f, c(ps.parts));
            Fp8Operand ho = tokenColumns(hq, hsc, hWidth, slots);
            fp8TileDots({s2}, kb.mul(u, c(rowsPer)), mTiles, ho, kb.mul(p, c(ps.perPart)),
                        ps.perPart, ps.tailSubs, lane,
                        [&](Value row, Value n, ArrayRef<Value> v) {
                          kb.storeF(yp, ypAt(p, kb.add(slots, n), row), v[0]);
                        });
          });
    });
  }

  // 5. out[s, o] = sum over the picks in order of weight_j * y_j[o], each
  // y_j its parts' sum in part order; the shared expert's output apart.
  // (With `partials`: taken where the outputs are read, expertsFp8.)
  if (partials.ptr)
    return;
  Fp8Sums sums{yp, hRows, slots, k, dm};
  kb.parallelLoop(c(0), kb.mul(S(), c(dm)), [&](Value e) {
    Value s = kb.div(e, c(dm)), o = kb.rem(e, c(dm));
    kb.storeF(out, e, fp8RoutedSum(kb, ctx, sums, op.getWeights(), pc.parts, s, o));
    if (shared)
      kb.storeF(sharedOut, e, fp8PartsSum(kb, sums, kb.add(slots, s), o, ps.parts));
  });
}
