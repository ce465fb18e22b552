//===- Emitter.h - The loop nests of the dsv4 ops ---------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// Each dsv4 op's kernel code is the loop nest of its definition in
// shared/spec/deepseek-v4.md, in f32 with f32 accumulation; token `s` of a
// call is at absolute position `startPos + s`. The Emitter holds the helpers
// the ops share; each op family defines its ops' methods in its own file of
// Patterns/ and registers them in a KernelPatternSet (Patterns.h).
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_DSV4TOKERNELS_EMITTER_H
#define COMPRESSA_LOWERING_DSV4TOKERNELS_EMITTER_H

#include "dialects/DSV4/IR/DSV4Ops.h"
#include "lowering/DSV4ToKernels/OpEmitters.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "llvm/ADT/Hashing.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/bit.h"

#include <functional>

namespace mlir::compressa::cpu {

using namespace ::mlir::dsv4;

/// Elements per token of a tensor value (all dims but the first).
inline int64_t perToken(Value v) {
  auto shape = cast<RankedTensorType>(v.getType()).getShape();
  int64_t n = 1;
  for (int64_t d : shape.drop_front())
    n *= d;
  return n;
}

/// xb[i] = bf16(x[i]) for i < n (n even), two values a word through
/// packBf16x2: the very words mmaTileDots' f32-x path packs for its A
/// fragments, so MMAs that read xb instead see the same bits.
void storeBf16Pairs(KernelBuilder &kb, View x, View xb, Value n);

class Emitter {
public:
  Emitter(KernelBuilder &kb, EmitContext &ctx) : kb(kb), ctx(ctx) {}

  View view(Value v) { return ctx.tensors.lookup(v); }
  /// Element i of token s of tensor v: loaded, or computed where v is lazy
  /// (EmitContext::lazy).
  Value element(Value v, Value s, Value i) { return elementOf(kb, ctx, v, s, i); }
  static Value elementOf(KernelBuilder &kb, EmitContext &ctx, Value v, Value s, Value i) {
    if (auto it = ctx.lazy.find(v); it != ctx.lazy.end())
      return it->second(s, i);
    return kb.loadF(ctx.tensors.lookup(v), kb.add(kb.mul(s, kb.c(perToken(v))), i));
  }
  /// Stores lazy tensor v (EmitContext::lazy) in its view, a thread an
  /// element; nothing where v is not lazy.
  void materialize(Value v);
  /// Whether tensor v may be left lazy: it is read, and only by addf ops
  /// whose results may be left lazy and as the `a` operand (alone) of
  /// hc.post ops of the same kernel (nothing stores it for a later one).
  static bool mayStayLazy(Value v) {
    if (v.use_empty())
      return false;
    for (OpOperand &use : v.getUses()) {
      Operation *user = use.getOwner();
      if (auto add = dyn_cast<arith::AddFOp>(user)) {
        if (!mayStayLazy(add.getResult()))
          return false;
        continue;
      }
      auto post = dyn_cast<HcPostOp>(user);
      if (!post || post.getA() != v || post.getStreams() == v)
        return false;
    }
    return true;
  }
  WeightView w(Value v) { return ctx.weights.lookup(v); }
  Value S() { return ctx.tokens; }
  /// The absolute position of token s: startPos + s, or in a batched
  /// kernel the token's own position.
  Value pos(Value s) {
    if (ctx.batched)
      return kb.load(kb.i64(), ctx.positions, s);
    return kb.add(ctx.startPos, s);
  }
  /// The base pointer of decode state `v` that token s reads and writes: the
  /// one allocation, or in a batched kernel its slot's (a load from the
  /// state's table of per-slot pointers).
  Value stateOf(Value v, Value s) {
    Value base = ctx.states.lookup(v);
    if (!ctx.batched)
      return base;
    return kb.loadPtr(base, kb.load(kb.i64(), ctx.slotIds, s));
  }
  /// The largest of keys(s) over the tokens of the call: keys(S - 1) where
  /// positions grow with s, a loop over the tokens in a batched kernel.
  Value mostOver(function_ref<Value(Value)> keys) {
    if (!ctx.batched)
      return keys(kb.sub(S(), c(1)));
    return kb.reduce1(c(0), S(), c(0), [&](Value s, Value m) { return kb.max(m, keys(s)); });
  }
  Value c(int64_t v) { return kb.c(v); }
  /// v + r, or v itself for r == 0 (no add emitted).
  Value plus(Value v, int64_t r) { return r ? kb.add(v, c(r)) : v; }
  /// f32 scratch of `perTokenElems * S + elems` floats.
  View scratchF32(int64_t perTokenElems, int64_t elems) {
    return {ctx.scratch(perTokenElems * 4, elems * 4), kb.f32()};
  }

  /// rsqrt(mean(x^2) + eps) over the n elements at x, the squares summed
  /// lane-split (in a warpLoop body).
  Value inverseRms(View x, int64_t n, double eps, Value lane) {
    return inverseRmsOf(kb.dotLanes(x, x, n, lane), n, eps);
  }

  /// rsqrt(ss / n + eps): the inverse RMS of n elements whose squares sum
  /// to ss, written once so that every path computes the same bits.
  Value inverseRmsOf(Value ss, int64_t n, double eps) {
    return kb.rsqrt(kb.add(kb.div(ss, kb.cf(double(n))), kb.cf(eps)));
  }

  /// out[s, i] = sum_j pre[s, j] X_j[s, i] over the n streams of width d.
  void mixStreams(View streams, View pre, int64_t n, int64_t d, View out) {
    kb.parallelLoop(c(0), kb.mul(S(), c(d)), [&](Value e) {
      Value s = kb.div(e, c(d)), i = kb.rem(e, c(d));
      kb.storeF(out, e, mixElement(streams, pre, n, d, s, i));
    });
  }
  Value mixElement(View streams, View pre, int64_t n, int64_t d, Value s, Value i) {
    View pres = kb.at(pre, kb.mul(s, c(n)));
    SmallVector<Value> p;
    for (int64_t j = 0; j < n; ++j)
      p.push_back(kb.loadF(pres, c(j)));
    return mixElementOf(streams, p, d, s, i);
  }
  /// mixElement with token s's pre values given.
  Value mixElementOf(View streams, ArrayRef<Value> pre, int64_t d, Value s, Value i) {
    int64_t n = pre.size();
    View xs = kb.at(streams, kb.mul(s, c(n * d)));
    Value acc = kb.cf(0.0);
    for (int64_t j = 0; j < n; ++j)
      acc = kb.add(acc, kb.mul(pre[j], kb.loadF(xs, kb.add(i, c(j * d)))));
    return acc;
  }
  /// Token s's n pre values (each computed as where they are stored).
  using PreValues = function_ref<SmallVector<Value>(Value s)>;
  /// The mix of the streams into `out`, the view of value x (hc.pre's or
  /// hc.head's output), where x's one reader is an rms_norm whose sums of
  /// squares are split in parts (rmsParts): the same step also takes those
  /// parts. A warp per (token, part) takes token s's pre values from
  /// preValues(s), mixes the part's elements, each lane the segments it then
  /// reads in splitDotPart (lane l: l, l + 32, ..., as dotRows), and stores
  /// the part's sum as the norm's own step would; the norm takes the sums
  /// from EmitContext::normPartials. With `extra`: one more warp per token
  /// runs extra(s, lane) in the same step (hc.pre's Sinkhorn iterations).
  /// Returns false, emitting nothing, where x is not read that way.
  bool mixStreamsAndNorm(Value x, View streams, PreValues preValues, int64_t n, int64_t d,
                         View out, function_ref<void(Value, Value)> extra = nullptr) {
    auto norm = x.hasOneUse() ? dyn_cast<RmsNormOp>(*x.getUsers().begin()) : RmsNormOp();
    int64_t parts = rmsParts(out, S(), d);
    WeightView self{out.ptr, Value(), out.elt, 1, d};
    int64_t segs = KernelBuilder::segmentsPerRow(self, out.elt);
    if (!norm || norm.getX() != x || perToken(x) != d || parts <= 1 || segs * 4 != d)
      return false;
    int64_t count = segs / parts; // segments of 4 elements in a part
    View partial = scratchF32(parts, 0);
    Value mixItems = kb.mul(S(), c(parts));
    auto mixItem = [&](Value e, Value lane) {
      Value s = kb.div(e, c(parts)), p = kb.rem(e, c(parts));
      SmallVector<Value> pre = preValues(s);
      auto mixSegment = [&](Value g) {
        Value first = kb.mul(kb.add(kb.mul(p, c(count)), g), c(4));
        for (int64_t u = 0; u < 4; ++u) {
          Value i = kb.add(first, c(u));
          kb.storeF(out, kb.add(kb.mul(s, c(d)), i), mixElementOf(streams, pre, d, s, i));
        }
      };
      if (kb.lanesParallel()) {
        for (int64_t m = 0; m * KernelBuilder::kLanes < count; ++m) {
          Value g = kb.add(lane, c(m * KernelBuilder::kLanes));
          if ((m + 1) * KernelBuilder::kLanes <= count)
            mixSegment(g);
          else
            kb.ifThen(kb.lt(g, c(count)), [&] { mixSegment(g); });
        }
      } else {
        kb.loop(c(0), c(count), mixSegment);
      }
      splitDotPart(out, d, self, 1, /*diagonal=*/true, parts, partial, e, lane);
    };
    Value items = extra ? kb.add(mixItems, S()) : mixItems;
    kb.warpLoop(c(0), items, [&](Value e, Value lane) {
      if (!extra)
        return mixItem(e, lane);
      branch(
          kb.lt(e, mixItems), [&] { mixItem(e, lane); },
          [&] { extra(kb.sub(e, mixItems), lane); });
    });
    ctx.normPartials[x] = {partial, parts};
    return true;
  }
  /// mixStreamsAndNorm with the pre values stored at `pre`, else mixStreams.
  void mixStreamsInto(Value x, View streams, View pre, int64_t n, int64_t d, View out) {
    auto loaded = [&](Value s) {
      SmallVector<Value> v;
      for (int64_t j = 0; j < n; ++j)
        v.push_back(kb.loadF(pre, kb.add(kb.mul(s, c(n)), c(j))));
      return v;
    };
    if (!mixStreamsAndNorm(x, streams, loaded, n, d, out))
      mixStreams(streams, pre, n, d, out);
  }

  /// Rotates the last rope.dim channels of the `len`-vector at `x` in place.
  void rope(View x, int64_t len, Value position, RopeAttr rope, bool inverse) {
    int64_t r = rope.getDim(), base = len - r;
    SmallVector<float> freqs;
    for (int64_t k = 0; k < r / 2; ++k)
      freqs.push_back(static_cast<float>(rope.frequency(k)));
    Value p = kb.toF32(position);
    for (int64_t k = 0; k < r / 2; ++k) {
      Value phi = kb.mul(p, kb.cf(freqs[k]));
      Value cs = kb.cos(phi), sn = kb.sin(phi);
      if (inverse)
        sn = kb.neg(sn);
      Value ia = c(base + 2 * k), ib = c(base + 2 * k + 1);
      Value a = kb.loadF(x, ia), b = kb.loadF(x, ib);
      kb.storeF(x, ia, kb.sub(kb.mul(a, cs), kb.mul(b, sn)));
      kb.storeF(x, ib, kb.add(kb.mul(a, sn), kb.mul(b, cs)));
    }
  }

  /// The f32 table of rope's rope.dim / 2 frequencies: one table per
  /// frequency set, named by a hash of its values.
  Value ropeTable(RopeAttr rope) {
    SmallVector<float> freqs;
    for (int64_t k = 0; k < rope.getDim() / 2; ++k)
      freqs.push_back(static_cast<float>(rope.frequency(k)));
    std::string key = "rope";
    for (float f : freqs)
      key += "_" + llvm::utohexstr(llvm::bit_cast<uint32_t>(f));
    return kb.table("rope_" + llvm::utohexstr(llvm::hash_value(key)), freqs);
  }

  /// rope() on `rows` rows of `len` elements at x, in place, a thread per
  /// (row, rotated pair): the same operations per pair as rope().
  void ropeRows(View x, Value rows, int64_t len, function_ref<Value(Value)> positionOf,
                RopeAttr rope, bool inverse) {
    int64_t r = rope.getDim(), base = len - r, pairs = r / 2;
    Value table = ropeTable(rope);
    kb.parallelLoop(c(0), kb.mul(rows, c(pairs)), [&](Value e) {
      Value row = kb.div(e, c(pairs)), k = kb.rem(e, c(pairs));
      Value phi = kb.mul(kb.toF32(positionOf(row)), kb.load(kb.f32(), table, k));
      Value cs = kb.cos(phi), sn = kb.sin(phi);
      if (inverse)
        sn = kb.neg(sn);
      View xr = kb.at(x, kb.mul(row, c(len)));
      Value ia = kb.add(c(base), kb.mul(k, c(2))), ib = kb.add(ia, c(1));
      Value a = kb.loadF(xr, ia), b = kb.loadF(xr, ib);
      kb.storeF(xr, ia, kb.sub(kb.mul(a, cs), kb.mul(b, sn)));
      kb.storeF(xr, ib, kb.add(kb.mul(a, sn), kb.mul(b, cs)));
    });
  }

  /// The parts inverseRmsRows splits the sum of squares of a row into: a
  /// long row (x . x of an mHC's flattened streams) is split over warps
  /// (splitDots) where the rows are tokens (rows == S()); 1: a warp a row.
  int64_t rmsParts(View x, Value rows, int64_t n) {
    WeightView self{x.ptr, Value(), x.elt, 1, n};
    return rows == S() ? splitParts(self, 1, x.elt) : 1;
  }

  /// r[row] = rsqrt(mean(x[row]^2) + eps) for `rows` rows of n elements.
  void inverseRmsRows(View x, Value rows, int64_t n, double eps, View r) {
    if (int64_t parts = rmsParts(x, rows, n); parts > 1) {
      WeightView self{x.ptr, Value(), x.elt, 1, n};
      splitDots(x, n, self, 1, /*diagonal=*/true, parts, r,
                [&](Value ss) { return inverseRmsOf(ss, n, eps); });
      return;
    }
    kb.warpLoop(c(0), rows, [&](Value row, Value lane) {
      kb.storeOnce(r, row, inverseRms(kb.at(x, kb.mul(row, c(n))), n, eps, lane), lane);
    });
  }

  /// rmsNorm over `rows` rows of n elements (x may be y); `r` is scratch of
  /// `rows` floats for the inverse RMS of each row. With `quant`: also
  /// act_quant of y into its codes and scales (TensorCoreGemm.h), in the
  /// step that scales the rows where n is a multiple of 128.
  void rmsNormRows(View x, View y, Value rows, int64_t n, double eps,
                   const WeightView *weight, View r,
                   const EmitContext::Quantized *quant = nullptr,
                   const EmitContext::NormPartials *given = nullptr) {
    auto normed = [&](Value v, Value inv, Value col) {
      v = kb.mul(v, inv);
      return weight ? kb.mul(v, kb.weight(*weight, c(0), col)) : v;
    };
    // The step that scales the rows (a thread an element; with `quant`, a
    // warp a 128-column block that quantises what it stores), the inverse
    // RMS of a row from invOf(row).
    auto scaleRows = [&](function_ref<Value(Value)> invOf, bool invFirst) {
      if (quant && n % kQuantBlock == 0) {
        emitQuantKeeping(
            invOf, [&](Value row, Value inv, Value col) {
              return normed(kb.loadF(x, kb.add(kb.mul(row, c(n)), col)), inv, col);
            },
            y, rows, n, *quant);
        return;
      }
      kb.parallelLoop(c(0), kb.mul(rows, c(n)), [&](Value e) {
        if (invFirst) {
          Value inv = invOf(kb.div(e, c(n)));
          kb.storeF(y, e, normed(kb.loadF(x, e), inv, kb.rem(e, c(n))));
        } else {
          kb.storeF(y, e, normed(kb.loadF(x, e), invOf(kb.div(e, c(n))), kb.rem(e, c(n))));
        }
      });
      if (quant)
        emitQuantOf(y, rows, n, *quant);
    };
    if (given) {
      // The sums of squares in parts, from the step that wrote x
      // (mixStreamsInto), added in part order as splitDots does: once a row
      // where rows are many, else by every element's thread (as below).
      auto inverse = [&](Value row) {
        return inverseRmsOf(sumParts(given->partial, row, given->parts), n, eps);
      };
      branch(
          manyTokens(kTileTokens),
          [&] {
            kb.parallelLoop(c(0), rows, [&](Value row) { kb.storeF(r, row, inverse(row)); });
            scaleRows([&](Value row) { return kb.loadF(r, row); }, false);
          },
          [&] { scaleRows(inverse, true); });
      return;
    }
    if (rmsParts(x, rows, n) == 1 && n % KernelBuilder::kLanes == 0 && n <= kWarpRowMax) {
      // A warp per row: it has the inverse RMS in every lane and scales the
      // row itself, lane l the elements l, l + 32, ... (every one on the
      // CPU, whose warpLoop body runs for lane 0): no barrier between. In
      // place too: a lane writes after the shuffles of the sum, which every
      // lane reaches after its loads of x.
      int64_t step = kb.lanesParallel() ? KernelBuilder::kLanes : 1;
      kb.warpLoop(c(0), rows, [&](Value row, Value lane) {
        View xr = kb.at(x, kb.mul(row, c(n))), yr = kb.at(y, kb.mul(row, c(n)));
        Value inv = inverseRms(xr, n, eps, lane);
        kb.loop(c(0), c(n / step), [&](Value j) {
          Value i = kb.add(lane, kb.mul(j, c(step)));
          kb.storeF(yr, i, normed(kb.loadF(xr, i), inv, i));
        });
      });
      if (quant)
        emitQuantOf(y, rows, n, *quant);
      return;
    }
    auto inverseThenScale = [&] {
      inverseRmsRows(x, rows, n, eps, r);
      scaleRows([&](Value row) { return kb.loadF(r, row); }, false);
    };
    int64_t parts = rmsParts(x, rows, n);
    if (parts == 1 || !kb.lanesParallel())
      return inverseThenScale();
    // Calls of few tokens (decode): the sums of squares in parts, then every
    // element's thread adds its row's parts itself (the same order, so the
    // same bits as inverseRmsRows' total): one grid barrier instead of two.
    branch(manyTokens(kTileTokens), inverseThenScale, [&] {
      WeightView self{x.ptr, Value(), x.elt, 1, n};
      View partial = scratchF32(parts, 0);
      kb.warpLoop(c(0), kb.mul(rows, c(parts)), [&](Value e, Value lane) {
        splitDotPart(x, n, self, 1, /*diagonal=*/true, parts, partial, e, lane);
      });
      scaleRows([&](Value row) { return inverseRmsOf(sumParts(partial, row, parts), n, eps); },
                true);
    });
  }
  /// emitActQuantKeeping and emitActQuant into `quant` (Norm.cpp: the
  /// headers of TensorCoreGemm.h stay out of this one).
  void emitQuantKeeping(function_ref<Value(Value)> rowInit,
                        function_ref<Value(Value, Value, Value)> valueAt, View y, Value rows,
                        int64_t n, const EmitContext::Quantized &quant);
  void emitQuantOf(View y, Value rows, int64_t n, const EmitContext::Quantized &quant);

  /// The longest rows rmsNormRows scales by the warp that sums them (at
  /// most 16 elements a lane); longer ones are scaled by every thread of
  /// the launch after a barrier.
  static constexpr int64_t kWarpRowMax = 512;

  /// How many parts each dot of a `rows`-row weight is split into so that a
  /// decode step's dots keep about a thousand warps busy: a power of two
  /// dividing the segments of a row with at least 32 segments (a lane's
  /// round) per part; 1 where rows are many or not read by segments.
  /// (`items`: the most rows x parts, 1024 unless a caller asks for more.)
  static int64_t splitParts(const WeightView &wt, int64_t rows, Type xElt,
                            int64_t items = 1024) {
    static const int64_t splitItems = KernelBuilder::experimentInt("COMPRESSA_SPLIT_ITEMS", 0);
    items = std::max(items, splitItems);
    int64_t segs = KernelBuilder::segmentsPerRow(wt, xElt), parts = 1;
    while (rows * parts * 2 <= items && segs % (parts * 2) == 0 &&
           segs / (parts * 2) >= KernelBuilder::kLanes)
      parts *= 2;
    return parts;
  }

  /// totals[t] = dot(x_t, W row r_t) for `items` dots: item t of token s =
  /// t / rows and row r = t % rows, x_t = x + s * xStride (`diagonal`: item
  /// t is token t with row t, as x . x). Each dot is split in `parts` equal
  /// ranges of segments computed by separate warps, the partial sums then
  /// added in range order by a thread per dot, which stores finish(total)
  /// (the total without `finish`) in `totals` (scratch of `rows` floats per
  /// token, or one with `diagonal`, where it is null). Returns the totals.
  View splitDots(View x, int64_t xStride, const WeightView &wt, int64_t rows,
                 bool diagonal, int64_t parts, View totals = {},
                 function_ref<Value(Value)> finish = nullptr) {
    Value items = diagonal ? S() : kb.mul(S(), c(rows));
    View partial = scratchF32((diagonal ? 1 : rows) * parts, 0);
    if (!totals.ptr)
      totals = scratchF32(diagonal ? 1 : rows, 0);
    kb.warpLoop(c(0), kb.mul(items, c(parts)), [&](Value e, Value lane) {
      splitDotPart(x, xStride, wt, rows, diagonal, parts, partial, e, lane);
    });
    kb.parallelLoop(c(0), items, [&](Value t) {
      Value acc = sumParts(partial, t, parts);
      kb.storeF(totals, t, finish ? finish(acc) : acc);
    });
    return totals;
  }

  /// The warp of splitDots' item e (dot e / parts, part e % parts): the
  /// part's sum stored in `partial`.
  void splitDotPart(View x, int64_t xStride, const WeightView &wt, int64_t rows,
                    bool diagonal, int64_t parts, View partial, Value e, Value lane) {
    int64_t count = KernelBuilder::segmentsPerRow(wt, x.elt) / parts;
    Value t = kb.div(e, c(parts)), p = kb.rem(e, c(parts));
    Value s = diagonal ? t : kb.div(t, c(rows)), r = diagonal ? t : kb.rem(t, c(rows));
    Value at = e;
    if (ctx.batched && !diagonal) {
      // A batched decode: the tokens' warps of one part of a row are
      // neighbours, so the part streams from memory once for all of them
      // (the same dots, stored where token-major order puts them).
      Value rp = kb.div(e, S());
      s = kb.rem(e, S());
      r = kb.div(rp, c(parts));
      p = kb.rem(rp, c(parts));
      at = kb.add(kb.mul(kb.add(kb.mul(s, c(rows)), r), c(parts)), p);
    }
    Value v = kb.dotRows(kb.at(x, kb.mul(s, c(xStride))), {{&wt, r}}, lane,
                         kb.mul(p, c(count)), count)[0];
    kb.storeOnce(partial, at, v, lane);
  }

  /// The rank of entry i (value v) among the n values of `row`: #{l :
  /// row[l] > v} + #{l < i : row[l] == v}, its place in the descending
  /// order with ties to the lower index (the order of repeated argmax).
  /// With `lane`, counted by its warp (lane l: entries l, l + 32, ...), the
  /// lanes' counts added in its butterfly as f32 (exact: n < 2^24); without,
  /// by the calling thread over all n. Eight loads in flight a trip.
  Value rankInRow(View row, Value v, Value i, Value n, Value lane) {
    int64_t step = lane ? KernelBuilder::kLanes : 1;
    auto count = [&](Value first) {
      Value trips = kb.div(kb.add(kb.sub(n, first), c(step - 1)), c(step));
      return kb.reduceUnrolled(c(0), trips, 8, c(0), [&](Value t, Value acc) {
        Value at = kb.add(first, kb.mul(t, c(step)));
        Value u = kb.loadF(row, at);
        Value before = kb.orI(kb.gt(u, v), kb.andI(kb.eq(u, v), kb.lt(at, i)));
        return kb.add(acc, kb.select(before, c(1), c(0)));
      });
    };
    if (!lane)
      return count(c(0));
    Value total = kb.laneTotals(lane, 1, [&](Value l) -> SmallVector<Value> {
      return {kb.toF32(count(l))};
    })[0];
    return arith::FPToSIOp::create(kb.builder(), kb.getLoc(), kb.builder().getI64Type(), total);
  }
  /// Calls of fewer tokens than this rank top-k entries a warp each
  /// (rankInRow): a decode step's few hundred or thousand entries then take
  /// a few trips to memory instead of n / 8; larger calls have entries
  /// enough to fill the grid a thread each.
  static constexpr int64_t kRankByWarpTokens = 16;
  /// pick(e, lane) for every item e < items: a warp each where the call
  /// has fewer than kRankByWarpTokens tokens, else a thread each (lane
  /// null).
  void rankItems(Value items, function_ref<void(Value e, Value lane)> pick) {
    branch(
        manyTokens(kRankByWarpTokens),
        [&] { kb.parallelLoop(c(0), items, [&](Value e) { pick(e, Value()); }); },
        [&] { kb.warpLoop(c(0), items, pick); });
  }
  /// Whether lane (null: a thread's own item) is the one that stores.
  Value storingLane(Value lane) { return lane ? kb.eq(lane, c(0)) : kb.eq(c(0), c(0)); }

  /// Dot t's partial sums added in part order (splitDots' total).
  Value sumParts(View partial, Value t, int64_t parts) {
    View pt = kb.at(partial, kb.mul(t, c(parts)));
    Value acc = kb.loadF(pt, c(0));
    for (int64_t p = 1; p < parts; ++p)
      acc = kb.add(acc, kb.loadF(pt, c(p)));
    return acc;
  }

  /// dots[s, r] = dot(x_s, W row r) for every token s and row r (scratch),
  /// split over warps where rows are few (splitDots).
  /// In the prefill kernels of --numerics=fast (ops marked by
  /// dsv4-select-numerics), where a call has many tokens warps take token
  /// tiles (linearTokenTiles: the same dots, bits and split parts, each
  /// weight segment read once for a tile instead of once per token: the
  /// mHC mixes' and the router's dots of a 4096-token chunk read tens of GB
  /// from L2 one token at a time). Elsewhere (decode's kernels) without the
  /// branch (with it, the decode kernels holding hc.pre ran 4-6 us longer
  /// a launch on an H200).
  View rowDots(View x, int64_t xStride, const WeightView &wt) {
    if (KernelBuilder::segmentsPerRow(wt, x.elt) > 0) {
      int64_t parts = splitParts(wt, wt.rows, x.elt);
      if (!ctx.fastLinear)
        return splitDots(x, xStride, wt, wt.rows, false, parts);
      View dots = scratchF32(wt.rows, 0);
      branch(
          manyTokens(2 * kTileTokens), [&] { linearTokenTiles(x, xStride, wt, dots); },
          [&] { splitDots(x, xStride, wt, wt.rows, false, parts, dots); });
      return dots;
    }
    View dots = scratchF32(wt.rows, 0);
    kb.warpLoop(c(0), kb.mul(S(), c(wt.rows)), [&](Value e, Value lane) {
      Value s = kb.div(e, c(wt.rows)), i = kb.rem(e, c(wt.rows));
      kb.storeOnce(dots, e, kb.dotLanes(kb.at(x, kb.mul(s, c(xStride))), wt, i, lane), lane);
    });
    return dots;
  }

  /// out[s, i] = dot(x[s], W row i) for every token s of the call and row i;
  /// token s of x starts at s * xStride.
  /// (`xq`: x's act_quant, where the step that wrote x made it, for the
  /// FP8 path of fast-decode.)
  void linearTokens(View x, int64_t xStride, const WeightView &wt, View out,
                    const EmitContext::Quantized *xq = nullptr) {
    // --numerics=fast: act_quant + FP8 x FP8 GEMM (TensorCoreGemm.h).
    if (ctx.fastLinear && isa<Float8E4M3FNType>(wt.elt))
      return fastLinearTokens(x, xStride, wt, out);
    // fast-decode's decode calls of at most 8 tokens (an experiment):
    // act_quant + FP8 GEMM semantics on warp MMAs; larger calls as below.
    if (takesFp8Linear(wt)) {
      branch(
          kb.le(S(), c(kFp8ExpertsMaxTokens)),
          [&] { fp8DecodeLinear(x, xStride, wt, out, wt.rows, 0, xq); },
          [&] { linearTokensExact(x, xStride, wt, out); });
      return;
    }
    linearTokensExact(x, xStride, wt, out);
  }
  /// Whether linearTokens takes fp8DecodeLinear for `wt` (in calls of at
  /// most 8 tokens).
  bool takesFp8Linear(const WeightView &wt) {
    return ctx.fp8Decode && fp8LinearFits(wt, wt.rows, 0);
  }

  void linearTokensExact(View x, int64_t xStride, const WeightView &wt, View out) {
    if (KernelBuilder::segmentsPerRow(wt, x.elt) > 0) {
      branch(
          manyTokens(2 * kTileTokens), [&] { linearTokenTiles(x, xStride, wt, out); },
          [&] { linearTokensByToken(x, xStride, wt, out); });
      return;
    }
    linearTokensByToken(x, xStride, wt, out);
  }

  void linearTokensByToken(View x, int64_t xStride, const WeightView &wt, View out) {
    if (int64_t parts = splitParts(wt, wt.rows, x.elt); parts > 1) {
      splitDots(x, xStride, wt, wt.rows, false, parts, out);
      return;
    }
    // Short rows: a few per warp (sharing the loads of x), so that a warp
    // has up to 4 KiB of weights in flight (wq_b's 1 KiB rows of FP8 one
    // at a time kept ~2 MB in flight over an H200: 45 us for 32 MB).
    int64_t segs = KernelBuilder::segmentsPerRow(wt, x.elt), group = 1;
    int64_t rowBytes = segs * KernelBuilder::segmentBytes(wt.elt);
    while (segs > 0 && wt.rows % (group * 2) == 0 && rowBytes * group * 2 <= 4096)
      group *= 2;
    static const int64_t minGroup = KernelBuilder::experimentInt("COMPRESSA_DOT_GROUP_ROWS", 1);
    while (segs > 0 && group < minGroup && wt.rows % (group * 2) == 0)
      group *= 2;
    int64_t groups = wt.rows / group;
    kb.warpLoop(c(0), kb.mul(S(), c(groups)), [&](Value e, Value lane) {
      Value s = kb.div(e, c(groups)), first = kb.mul(kb.rem(e, c(groups)), c(group));
      if (ctx.batched) { // The tokens of a row group are neighbours (splitDots).
        s = kb.rem(e, S());
        first = kb.mul(kb.div(e, S()), c(group));
      }
      SmallVector<KernelBuilder::WeightRow> rows;
      for (int64_t j = 0; j < group; ++j)
        rows.push_back({&wt, kb.add(first, c(j))});
      SmallVector<Value> dots = kb.dotRows(kb.at(x, kb.mul(s, c(xStride))), rows, lane);
      Value base = kb.add(kb.mul(s, c(wt.rows)), first);
      for (int64_t j = 0; j < group; ++j)
        kb.storeOnce(out, kb.add(base, c(j)), dots[j], lane);
    });
  }

  //===--------------------------------------------------------------------===//
  // Token tiles (TokenTiles.cpp): where a call has many tokens, a warp
  // computes a few weight rows against up to kTileTokens tokens, reading
  // and decoding each row segment once for all of them; the same
  // operations per dot as the per-token code, chosen by a uniform branch
  // on the call's token count.
  //===--------------------------------------------------------------------===//
  static constexpr int64_t kTileTokens = 8;
  /// A tile: its weights (one or two matrices read at the same rows), up to
  /// kTileTokens x vectors, how many of them are real (`count`; the others
  /// repeat the last), their token (or slot) indices, and, where tiles are
  /// counted at run time, whether the tile exists.
  struct TokenTile {
    SmallVector<WeightView, 2> weights;
    SmallVector<View, 8> xs;
    SmallVector<Value, 8> tokens;
    Value count, valid;
  };
  /// The slots (token s, pick j) = s k + j of the routed experts sorted by
  /// expert (scratch, i64): `order` the slots, tile t holds `count[t]`
  /// slots of expert `expert[t]` from order[first[t]]; tileStart[e] is
  /// expert e's first tile and tileStart[experts] the number of tiles (at
  /// most `most`).
  struct ExpertTiles {
    Value order, expert, first, count, tileStart, most;
    int64_t experts = 0;
  };
  /// then() where cond holds, otherwise() where not (a uniform branch).
  void branch(Value cond, function_ref<void()> then, function_ref<void()> otherwise);
  /// Whether the call has at least `tokens` tokens.
  Value manyTokens(int64_t tokens);
  /// The clamped SwiGLU of the gate and up values.
  Value swiglu(Value gate, Value up, double limit);
  /// Rows of a warp in tileDots: 4, 2 or 1, dividing `rows`.
  static int64_t rowsPerWarp(int64_t rows);
  /// A warp per (tile, group of `rowsPerWarp` rows, part of `parts`): the
  /// dots of the tile's weights at those rows (the segments of part p)
  /// with its x vectors (tileOf(tile, the group's first row)); store(tile, t, row, dots of each weight, p, lane)
  /// for each real token t.
  void tileDots(Value tiles, int64_t rows, int64_t rowsPerWarp, int64_t parts,
                function_ref<TokenTile(Value tile, Value firstRow)> tileOf,
                function_ref<void(const TokenTile &, int64_t, Value, ArrayRef<Value>,
                                  Value, Value)>
                    store);
  /// Tiles of kTileTokens consecutive tokens of x (rows xStride apart).
  Value denseTiles();
  TokenTile denseTile(Value tile, View x, int64_t xStride, ArrayRef<WeightView> weights);
  /// linearTokens in token tiles (with splitDots' parts where rows are few).
  void linearTokenTiles(View x, int64_t xStride, const WeightView &wt, View out);
  /// The expert tiles of `T` slots each.
  ExpertTiles expertTiles(View ids, int64_t k, int64_t experts, int64_t T);
  /// Tile `tile` of `et`: whether it exists, its expert, its first entry of
  /// `order` and its slot count (0 past the last tile, whose loads read
  /// tile 0's entries).
  struct ExpertTileHead {
    Value valid, expert, first, count;
  };
  ExpertTileHead expertTileHead(const ExpertTiles &et, Value tile);
  /// out[s, o] = sum over the k picks, in order, of weight_j ys[s k + j, o].
  void combinePicks(View ys, View weights, int64_t k, int64_t dm, View out);

  // Warp matrix tiles (--numerics=fast): 16 tokens (or slots) against 8
  // rows per MMA, x rounded to bf16, weights decoded to bf16 exactly (FP4
  // and FP8 times their power-of-two scales), f32 accumulation: mma.sync on
  // CUDA, the same products summed in k order by one thread on the CPU.
  static constexpr int64_t kMmaTokens = 16;
  /// Row r of a tile: its x, where its results go (a token or a slot), and
  /// whether it is real (a partial tile repeats its last row).
  struct MmaRow {
    View x;
    Value index, real;
  };
  struct MmaTile {
    SmallVector<WeightView, 2> weights;
    Value valid;
    std::function<MmaRow(Value)> row;
  };
  /// A warp per (tile, group of 8 nTiles rows): the dots of the group's rows
  /// of each of the tile's weights with the tile's rows; store(tile, row,
  /// weight row, the dot of each weight) for each real row. A tile has
  /// kMmaTokens * mTiles rows: each weight fragment, decoded once, feeds
  /// mTiles MMAs (the same MMAs per row as tiles of kMmaTokens).
  void mmaTileDots(Value tiles, int64_t rows, int64_t nTiles,
                   function_ref<MmaTile(Value tile, Value firstRow)> tileOf,
                   function_ref<void(const MmaTile &, const MmaRow &, Value, ArrayRef<Value>)>
                       store,
                   int64_t mTiles = 1);
  MmaTile mmaExpertTile(const ExpertTiles &et, Value tile, View x, int64_t xStride, int64_t k,
                        bool byToken, ArrayRef<const ExpertView *> tables);
  MmaTile mmaDenseTile(Value tile, View x, int64_t xStride, ArrayRef<WeightView> weights,
                       int64_t tokens = kMmaTokens);
  /// Whether a weight of `rows` rows can go through mmaTileDots.
  static bool mmaFits(const WeightView &w, int64_t rows);
  /// 8-row MMA tiles per warp: 4, 2 or 1, dividing rows / 8.
  static int64_t mmaTilesPerWarp(int64_t rows);
  void expertsMma(MoeExpertsOp op, SharedExpertOp shared);
  /// The same on sm_90a as the grouped GEMMs of
  /// lowering/TensorCore/WgmmaExperts.h (TensorCoreSplit::experts).
  void expertsGrouped(MoeExpertsOp op, SharedExpertOp shared);
  /// The shared expert of the fast path: its FP8 linear layers as the dense
  /// ones (act_quant + the FP8 GEMM) where all three are FP8 with block
  /// scales (sharedExpertFp8), else bf16 MMA tiles (sharedExpertMma).
  void sharedExpertFast(SharedExpertOp op);
  bool sharedExpertFp8(SharedExpertOp op);
  void sharedExpertMma(SharedExpertOp op);
  /// Tile `tile` of `et`: x rows of its slots' tokens (`byToken`) or of the
  /// slots themselves, with the tile expert's matrices of `tables`.
  TokenTile expertTile(const ExpertTiles &et, Value tile, View x, int64_t xStride, int64_t k,
                       bool byToken, ArrayRef<const ExpertView *> tables);
  /// The routed experts (then `shared`, when fused) in expert tiles.
  void expertsTiled(MoeExpertsOp op, SharedExpertOp shared);
  void sharedExpertTiled(SharedExpertOp op);
  /// experts() with a warp per (slot, hidden row): the decode path.
  void expertsByToken(MoeExpertsOp op);
  void sharedExpertByToken(SharedExpertOp op);

  /// linearTokens of an FP8 weight in --numerics=fast (TensorCoreGemm.cpp).
  /// With `groups` G (wo_a): x's rows hold G wt.cols values, output column
  /// n takes group n / (wt.rows / G)'s (emitFp8BlockGemm's groups).
  void fastLinearTokens(View x, int64_t xStride, const WeightView &wt, View out,
                        int64_t groups = 1);

  /// Indexer top-k by rank (n^2 comparisons, picks in descending score
  /// order) while the compressed entries a token can see are at most this
  /// many; radixTopk beyond.
  static constexpr int64_t kRankTopkMax = 4096;
  /// The indexer's top-k of each token over its avail(s) scores at
  /// scores[s * capacity], by a three-digit radix select of the scores'
  /// order-preserving u32 keys (histograms, then the threshold key), then
  /// the picks written in index order: the entries of a larger key and, of
  /// those equal to the threshold, the lowest indices. O(n) per token.
  void radixTopk(View scores, int64_t capacity, Value most,
                 function_ref<Value(Value)> avail, int64_t topk, View out);

  // The ops.
  void embed(EmbedOp op);
  void hcExpand(HcExpandOp op);
  void rmsNormOp(RmsNormOp op);
  void hcPre(HcPreOp op);
  /// The mixes and the Sinkhorn iterations of hc.pre, a warp per token:
  /// rhoAt(s) = token s's inverse RMS, dotAt(s, j) = its dot with fn row j.
  void sinkhornLanes(HcPreOp op, function_ref<Value(Value)> rhoAt,
                     function_ref<Value(Value, Value)> dotAt, View pre, int64_t n);
  /// sinkhornLanes' warp of token s (in a warpLoop body; pre not stored
  /// where its view is null).
  void sinkhornWarp(HcPreOp op, function_ref<Value(Value)> rhoAt,
                    function_ref<Value(Value, Value)> dotAt, View pre, int64_t n, Value s,
                    Value lane);
  /// hc.pre's n pre values of a token from its inverse RMS rhoS and its mix
  /// dots dotAt(j): sigmoid(scale_0 rhoS dot_j + base_j) + hc_eps, the
  /// operations of the Sinkhorn code that stores them.
  SmallVector<Value> preValues(HcPreOp op, Value rhoS, function_ref<Value(Value)> dotAt);
  /// One pre value (hc.pre's, hc.head's) from its mix mu (the inverse RMS
  /// times the dot): sigmoid(scale_0 mu + base) + hc_eps, the one place
  /// that computes it.
  Value preOf(Value s0, Value mu, Value base, double hcEps);
  void hcPost(HcPostOp op);
  void hcHead(HcHeadOp op);
  void qProj(QProjOp op);
  void kvProj(KVProjOp op);
  void ropeOp(RopeOp op);
  void windowUpdate(WindowUpdateOp op);
  void compress(CompressOp op);
  /// compress() of a batched kernel after the kv and score rows: every
  /// token through its own slot's state at once.
  void compressBatched(CompressOp op, function_ref<Value(Value, Value)> kvAt,
                       function_ref<Value(Value, Value)> scoreAt);
  void indexer(IndexerTopkOp op);
  void attention(SparseAttentionOp op);
  /// The window update as `items` iterations of the returned body (a
  /// parallelLoop's).
  std::function<void(Value)> windowUpdateItems(WindowUpdateOp op, Value &items);
  void outProj(OutProjOp op);
  /// Whether --numerics=fast runs this output projection's wo_a in the FP8
  /// GEMM semantics, its groups as one grouped GEMM (FP8 wo_a with 128 x 128
  /// block scales, groups of whole 128-blocks; COMPRESSA_WOA_FP8=0 at
  /// compile time keeps the bf16 tiles of o, for A/B runs).
  static bool groupedWoA(OutProjOp op);
  void gate(MoeGateOp op);
  bool lazyRouteWeights(Value wv, View sigma, View ids, int64_t k, int64_t e, double scale);
  void hashGate(MoeHashGateOp op);
  void experts(MoeExpertsOp op);
  void sharedExpert(SharedExpertOp op);
  void expertsWithShared(MoeExpertsOp op, SharedExpertOp shared);

  // Exact dots of FP4/FP8 weights on tensor cores (ExactMma.cpp; opt-in,
  // EmitContext::exactMma). Each 32-column block of an f32 row is scaled by
  // a power of two 2^P (its largest magnitude to [2^14, 2^15)) and split
  // into three parts that are multiples of 2^4, 2^-7 and 2^-18: each exact
  // in f16, their sum the scaled value to within 2^-19 (2^-33 of the block's
  // largest). FP4 codes go into f16 bits as the value times 2^-14, FP8
  // codes as they are, so every product is exact; an MMA sums a block's 32
  // columns for three part columns at once, and the block's sum is scaled
  // by 2^(14 - P) times the weight's UE8M0 scale (times 2^-14 for FP8) into
  // an f32 accumulator per part. The CPU twin computes the same products
  // and sums them in column order.
  struct ExactParts {
    View parts;   ///< f16 on CUDA (in MMA fragment order), f32 on the CPU
    View factors; ///< 2^(14 - P) per (row, block)
    int64_t blocks = 0;
  };
  /// Scratch for the parts of at most maxRows rows of `cols` values.
  ExactParts allocParts(int64_t cols, int64_t maxRows);
  /// Block `blk` (row * blocks + block) of the rows at v into xp: in a warp
  /// loop (a lane a value where lanes run in parallel).
  void splitBlock(const ExactParts &xp, View v, Value blk, Value lane);
  /// The same with the block's value j (0..31) from valueAt(j).
  void splitBlock(const ExactParts &xp, function_ref<Value(Value)> valueAt, Value blk,
                  Value lane);
  /// The parts of `rows` (at most maxRows) rows of `cols` f32 at v.
  ExactParts exactParts(View v, Value rows, int64_t cols, int64_t maxRows);
  /// The dots of rows row0 .. row0 + 15 of each FP4/FP8 weight of `ws` with
  /// row xRow of `xp` (over blocks blk0 .. blk0 + nblk - 1 of 32 columns;
  /// all without blk0): store(row offset, a value per weight) once per row.
  void exactMmaTile(ArrayRef<WeightView> ws, Value row0, const ExactParts &xp, Value xRow,
                    Value lane, function_ref<void(Value, ArrayRef<Value>)> store,
                    Value blk0 = {}, int64_t nblk = 0);
  static bool exactMmaFits(const ExpertView &e);
  static bool exactMmaFits(const WeightView &w);
  /// expertsWithShared / expertsByToken (without expert parallelism) with
  /// the routed experts' dots through exactMmaTile; the shared expert's as
  /// there. For calls of at most maxTokens tokens.
  void expertsExactMma(MoeExpertsOp op, SharedExpertOp shared, int64_t maxTokens);
  // The decode experts of --numerics=fast-decode on tensor cores
  // (DecodeExpertsFp8.cpp).
  /// B of fp8TileDots: act_quant'ed rows (e4m3 codes `codes` [rows,
  /// stride], UE8M0 scales `scales` [rows, ceil(stride / 128)]); B column n
  /// (0..7) is row rowOf(n), used where valid(n) (rowOf stays a row in range
  /// everywhere).
  struct Fp8Operand {
    Value codes, scales;
    int64_t stride = 0;
    std::function<Value(Value)> rowOf, valid;
    /// Only column 0 is valid (a routed pick's own token).
    bool single = false;
  };
  /// The dots of rows row0 .. row0 + 16 mTiles - 1 of each FP4/FP8 weight
  /// of `ws` (of one K) with B's columns over the 128-column blocks kb0 ..
  /// kb0 + nkb - 1, then the partial block of tailSubs 32-column blocks at
  /// K's end: store(row, column, a value per weight) for each valid column.
  void fp8TileDots(ArrayRef<WeightView> ws, Value row0, int64_t mTiles, const Fp8Operand &xo,
                   Value kb0, int64_t nkb, int64_t tailSubs, Value lane,
                   function_ref<void(Value, Value, ArrayRef<Value>)> store);
  /// Whether fp8DecodeLinear takes `wt` with input groups of `per` rows
  /// starting `groupIn` values apart: FP8 with its 128 x 128 scales, K a
  /// multiple of 128, groups of whole 16-row tiles, group inputs on 128-value
  /// blocks, and (on a parallel target) the warp MMAs.
  bool fp8LinearFits(const WeightView &wt, int64_t per, int64_t groupIn);
  /// Items (16-row tiles x parts of K) fp8DecodeLinear aims at.
  static constexpr int64_t kFp8LinearItems = 2048;
  /// A dense FP8 layer of a decode call of at most kFp8ExpertsMaxTokens
  /// tokens in the FP8 GEMM semantics of fp8TileDots (COMPRESSA_FP8_DECODE_LINEAR=1
  /// with --numerics=fast-decode): act_quant of each token's row of x
  /// (xStride values, or the weight's K where one input serves all rows),
  /// then out[s, r] = W_r . x_s with rows in tiles of 16 and K in parts of
  /// whole 128-column blocks over the warps, the parts' sums added in part
  /// order. Rows r of group r / per read the input at x_s + (r / per) *
  /// groupIn (wo_a's groups; per = rows and groupIn = 0 for one input).
  /// `given`: x's act_quant made already (rows of the quantised length).
  /// `quantOut`: out's act_quant made in the step that adds the parts
  /// (emitActQuantKeeping; rows a multiple of 128), for the layer after.
  void fp8DecodeLinear(View x, int64_t xStride, const WeightView &wt, View out, int64_t per,
                       int64_t groupIn, const EmitContext::Quantized *given = nullptr,
                       const EmitContext::Quantized *quantOut = nullptr);
  /// The shared expert's gate/up for expertsFp8Decode computed in the score
  /// router's dot step (its warps take the shared expert's tiles as extra
  /// items: they need x's act_quant only, not the routing), where `op` (the
  /// routed experts the gate feeds) takes the FP8 program with a fused
  /// shared expert and x's act_quant is made by the norm before:
  /// only with COMPRESSA_FP8_SHARED_EARLY=1 at compile time (an H100 ran it
  /// slower). Returns the shared expert op, or null.
  SharedExpertOp fp8SharedGateUpEarly(MoeExpertsOp op);
  /// The shared expert's gate/up warp items of expertsFp8Decode (a call of
  /// at most kFp8ExpertsMaxTokens tokens; none otherwise) and item e of
  /// them on x's act_quant `xq`, into `gu` (fp8GateUpScratch).
  Value fp8SharedGateUpItems(MoeExpertsOp op, SharedExpertOp shared);
  void fp8SharedGateUpItem(MoeExpertsOp op, SharedExpertOp shared, View gu,
                           const EmitContext::Quantized &xq, Value e, Value lane);
  /// expertsFp8Decode's gate/up partial sums gu[p][m][hr][i] (scratch).
  View fp8GateUpScratch(MoeExpertsOp op, SharedExpertOp shared);
  /// Whether the routed experts and their fused shared expert fit
  /// expertsFp8Decode (FP4/FP8 weights, widths of whole 32-column blocks,
  /// a target with e4m3 MMAs or the CPU).
  bool fp8ExpertsFit(MoeExpertsOp op, SharedExpertOp shared);
  /// The most tokens of a call expertsFp8Decode takes (an MMA's B columns).
  static constexpr int64_t kFp8ExpertsMaxTokens = 8;
  /// expertsFp8Decode for calls of at most kFp8ExpertsMaxTokens tokens, the
  /// code of experts() for larger ones; where only hc.post reads the
  /// outputs (mayStayLazy), they are left lazy: their sums over the picks
  /// and parts are taken where hc.post reads them.
  void expertsFp8(MoeExpertsOp op, SharedExpertOp shared);
  /// The routed experts and the shared expert of a call of at most
  /// kFp8ExpertsMaxTokens tokens. With `partials` (allocated by
  /// expertsFp8): the down step's partial sums go there and the last step
  /// (the sums over the parts and picks) is left to the readers.
  void expertsFp8Decode(MoeExpertsOp op, SharedExpertOp shared, View partials = {});
  Value poolChannel(View kvState, View scoreState, Value i, int64_t slots, int64_t width,
                    bool overlap, int64_t m, int64_t dim);
  /// (`weights`: the routing weights' tensor, read by Emitter::element:
  /// stored, or computed where the gate left them lazy.)
  Value routedDown(const ExpertView &e2, View h, Value weights, View ids, int64_t k, Value s,
                   Value o, Value lane);
  /// routedDown for the n outputs o0 .. o0 + n - 1 in one dotRows (each
  /// pick's rows sharing its h loads).
  SmallVector<Value> routedDowns(const ExpertView &e2, View h, Value weights, View ids,
                                 int64_t k, Value s, Value o0, int64_t n, Value lane);
  void lmHead(LmHeadOp op);
  void addF(arith::AddFOp op);

  /// score(s * e + i, dot(x_s, router row i)) for every token s and router
  /// row i, a thread each (the dots in splitDots' parts where it splits
  /// them, added by that thread).
  /// `extraItems` (a count, or null) more warp items extra(i, lane) run in
  /// the dots' step (in a step of their own where the dots are not split).
  void routerScores(View x, const WeightView &wt, function_ref<void(Value, Value)> score,
                    Value extraItems = {}, function_ref<void(Value, Value)> extra = nullptr);
  /// routing weights: sigma[ids[k]] / sum * scale for the K picks.
  void routeWeights(View sigma, View ids, View weights, int64_t k, double scale);
  /// The clamped SwiGLU hidden value i of token vector x.
  Value swigluHidden(View x, const WeightView &w1, const WeightView &w3,
                     double limit, Value i, Value lane);
  /// swigluHidden for the n hidden values i0 .. i0 + n - 1 in one dotRows
  /// (the 2n rows sharing the loads of x).
  SmallVector<Value> swigluHiddens(View x, const WeightView &w1, const WeightView &w3,
                                   double limit, Value i0, int64_t n, Value lane);

  KernelBuilder &kb;
  EmitContext &ctx;
};


} // namespace mlir::compressa::cpu

#endif // COMPRESSA_LOWERING_DSV4TOKERNELS_EMITTER_H
