//===- HyperConn.cpp - mHC kernels -===//
// SPDX-License-Identifier: Apache-2.0
//
// The manifold-constrained hyper-connections: dsv4.hc.expand, dsv4.hc.pre
// (the mixes and the Sinkhorn-normalised combination), dsv4.hc.post,
// dsv4.hc.head.
//
//===----------------------------------------------------------------------===//

#include "lowering/DSV4ToKernels/Emitter.h"
#include "lowering/DSV4ToKernels/Patterns.h"

#include <cmath>

using namespace mlir;
using namespace mlir::compressa;
using namespace mlir::compressa::cpu;
using namespace mlir::dsv4;

void Emitter::hcExpand(HcExpandOp op) {
  View x = view(op.getX()), out = view(op.getResult());
  auto shape = op.getResult().getType().getShape();
  int64_t n = shape[1], d = shape[2];
  kb.parallelLoop(c(0), kb.mul(S(), c(n * d)), [&](Value e) {
    Value s = kb.div(e, c(n * d)), i = kb.rem(e, c(d));
    kb.storeF(out, e, kb.loadF(x, kb.add(kb.mul(s, c(d)), i)));
  });
}

void Emitter::hcPre(HcPreOp op) {
  auto shape = op.getStreams().getType().getShape();
  int64_t n = shape[1], d = shape[2], mix = (2 + n) * n;
  View streams = view(op.getStreams()), x = view(op.getX());
  View post = view(op.getPost()), comb = view(op.getComb());
  WeightView fn = w(op.getFn()), base = w(op.getBase()), scale = w(op.getScale());
  double hcEps = op.getHcEps().convertToDouble();
  double normEps = op.getNormEps().convertToDouble();
  int64_t iters = op.getSinkhornIters();
  bool lanes = kb.lanesParallel() && n * n <= KernelBuilder::kLanes && (n & (n - 1)) == 0;
  int64_t rmsSplit = rmsParts(streams, S(), n * d);
  int64_t dotSplit = KernelBuilder::segmentsPerRow(fn, streams.elt) > 0
                         ? splitParts(fn, fn.rows, streams.elt)
                         : 1;
  if (lanes && !ctx.fastLinear && !ctx.batched && rmsSplit > 1 && dotSplit > 1) {
    // Both split sums (each token's sum of squares, and its mix rows' dots)
    // in one grid-wide step, and their parts added by the Sinkhorn warp in
    // part order: the same bits as inverseRmsRows and rowDots apart, three
    // grid barriers fewer (in an H200 decode step the parts' totals were
    // two steps of a few threads each, every other block waiting).
    WeightView self{streams.ptr, Value(), streams.elt, 1, n * d};
    View rmsPartial = scratchF32(rmsSplit, 0), dotPartial = scratchF32(mix * dotSplit, 0);
    Value rmsItems = kb.mul(S(), c(rmsSplit));
    kb.warpLoop(c(0), kb.add(rmsItems, kb.mul(S(), c(mix * dotSplit))),
                [&](Value e, Value lane) {
                  branch(
                      kb.lt(e, rmsItems),
                      [&] {
                        splitDotPart(streams, n * d, self, 1, /*diagonal=*/true, rmsSplit,
                                     rmsPartial, e, lane);
                      },
                      [&] {
                        splitDotPart(streams, n * d, fn, mix, /*diagonal=*/false, dotSplit,
                                     dotPartial, kb.sub(e, rmsItems), lane);
                      });
                });
    auto rhoAt = [&](Value s) {
      return inverseRmsOf(sumParts(rmsPartial, s, rmsSplit), n * d, normEps);
    };
    auto dotAt = [&](Value s, Value j) {
      return sumParts(dotPartial, kb.add(kb.mul(s, c(mix)), j), dotSplit);
    };
    // Where the rms_norm after takes its sums in the mix's step, the mix's
    // warps take the pre values themselves (the same operations as the
    // Sinkhorn warp's), and the Sinkhorn warps run in that step too (their
    // post and comb are read by hc.post, at the kernel's end).
    if (mixStreamsAndNorm(
            op.getX(), streams,
            [&](Value s) { return preValues(op, rhoAt(s), [&](Value j) { return dotAt(s, j); }); },
            n, d, x,
            [&](Value s, Value lane) { sinkhornWarp(op, rhoAt, dotAt, View{}, n, s, lane); }))
      return;
    View pre = scratchF32(n, 0);
    sinkhornLanes(op, rhoAt, dotAt, pre, n);
    mixStreams(streams, pre, n, d, x);
    return;
  }
  View rho = scratchF32(1, 0), pre = scratchF32(n, 0);
  inverseRmsRows(streams, S(), n * d, normEps, rho);
  View dots = rowDots(streams, n * d, fn);
  if (lanes) {
    sinkhornLanes(
        op, [&](Value s) { return kb.loadF(rho, s); },
        [&](Value s, Value j) { return kb.loadF(kb.at(dots, kb.mul(s, c(mix))), j); }, pre,
        n);
    mixStreamsInto(op.getX(), streams, pre, n, d, x);
    return;
  }
  // The n + n + n*n mixes and the Sinkhorn iterations: a thread per token,
  // with mu = rsqrt(mean(x^2) + eps) * (fn . x) over the token's flattened
  // streams computed where it is used (no grid-wide step of its own).
  kb.parallelLoop(c(0), S(), [&](Value s) {
    View dotsS = kb.at(dots, kb.mul(s, c(mix))), pres = kb.at(pre, kb.mul(s, c(n)));
    // Every input first: the thread's stores below could alias later loads
    // for all LLVM knows, so loads interleaved with them would each wait
    // for memory in turn (24 round trips for n = 4, most of this step).
    Value rhoS = kb.loadF(rho, s);
    SmallVector<Value> dotv, basev;
    for (int64_t j = 0; j < mix; ++j) {
      dotv.push_back(kb.loadF(dotsS, c(j)));
      basev.push_back(kb.weight(base, c(0), c(j)));
    }
    auto muAt = [&](int64_t j) { return kb.mul(rhoS, dotv[j]); };
    View postS = kb.at(post, kb.mul(s, c(n)));
    View cm = kb.at(comb, kb.mul(s, c(n * n)));
    Value s0 = kb.weight(scale, c(0), c(0)), s1 = kb.weight(scale, c(0), c(1));
    Value s2 = kb.weight(scale, c(0), c(2));
    for (int64_t j = 0; j < n; ++j) {
      kb.storeF(pres, c(j), preOf(s0, muAt(j), basev[j], hcEps));
      Value qj = kb.add(kb.mul(s1, muAt(n + j)), basev[n + j]);
      kb.storeF(postS, c(j), kb.mul(kb.cf(2.0), kb.sigmoid(qj)));
    }
    // comb: logits, row softmax + eps, column normalisation, then
    // (iters - 1) x (row, column) normalisations (spec §4.3 step 4). The
    // n x n matrix stays in registers (n is a compile-time constant); only
    // the result is stored.
    SmallVector<Value> m(n * n);
    for (int64_t i = 0; i < n * n; ++i)
      m[i] = kb.add(kb.mul(s2, muAt(2 * n + i)), basev[2 * n + i]);
    for (int64_t r = 0; r < n; ++r) {
      Value mx = m[r * n];
      for (int64_t k = 1; k < n; ++k)
        mx = kb.max(mx, m[r * n + k]);
      Value sum = kb.cf(0.0);
      for (int64_t k = 0; k < n; ++k) {
        m[r * n + k] = kb.exp(kb.sub(m[r * n + k], mx));
        sum = kb.add(sum, m[r * n + k]);
      }
      for (int64_t k = 0; k < n; ++k)
        m[r * n + k] = kb.add(kb.div(m[r * n + k], sum), kb.cf(hcEps));
    }
    // Divides each row (or column) by its sum + eps.
    auto normalize = [&](SmallVector<Value> &v, bool rows) {
      auto at = [&](int64_t line, int64_t i) -> Value & {
        return rows ? v[line * n + i] : v[i * n + line];
      };
      for (int64_t line = 0; line < n; ++line) {
        Value sum = kb.cf(0.0);
        for (int64_t i = 0; i < n; ++i)
          sum = kb.add(sum, at(line, i));
        Value den = kb.add(sum, kb.cf(hcEps));
        for (int64_t i = 0; i < n; ++i)
          at(line, i) = kb.div(at(line, i), den);
      }
    };
    auto normalizeColumns = [&](SmallVector<Value> &v) { normalize(v, false); };
    auto normalizeRows = [&](SmallVector<Value> &v) { normalize(v, true); };
    normalizeColumns(m);
    m = kb.reduce(c(1), c(iters), m,
                  [&](Value, ValueRange carried) -> SmallVector<Value> {
                    SmallVector<Value> v(carried.begin(), carried.end());
                    normalizeRows(v);
                    normalizeColumns(v);
                    return v;
                  });
    for (int64_t i = 0; i < n * n; ++i)
      kb.storeF(cm, c(i), m[i]);
  });
  // The mix takes the pre values where it is read by a split rms_norm
  // (the same values as stored above).
  if (!mixStreamsAndNorm(
          op.getX(), streams,
          [&](Value s) {
            View dotsS = kb.at(dots, kb.mul(s, c(mix)));
            return preValues(op, kb.loadF(rho, s),
                             [&](Value j) { return kb.loadF(dotsS, j); });
          },
          n, d, x))
    mixStreams(streams, pre, n, d, x);
}

SmallVector<Value> Emitter::preValues(HcPreOp op, Value rhoS, function_ref<Value(Value)> dotAt) {
  int64_t n = op.getStreams().getType().getShape()[1];
  WeightView base = w(op.getBase()), scale = w(op.getScale());
  double hcEps = op.getHcEps().convertToDouble();
  Value s0 = kb.weight(scale, c(0), c(0));
  SmallVector<Value> pre;
  for (int64_t j = 0; j < n; ++j)
    pre.push_back(
        preOf(s0, kb.mul(rhoS, dotAt(c(j))), kb.weight(base, c(0), c(j)), hcEps));
  return pre;
}

Value Emitter::preOf(Value s0, Value mu, Value base, double hcEps) {
  return kb.add(kb.sigmoid(kb.add(kb.mul(s0, mu), base)), kb.cf(hcEps));
}

// hcPre's mixes and Sinkhorn iterations with a warp per token, lane l
// holding element (l / n, l % n) of the n x n matrix (lanes 0..n-1 also
// pre_l and post_l): each value takes the same operations in the same order
// as in the one-thread code above (a row's or column's sum adds its n
// elements in index order, gathered with lane shuffles), so the results are
// the same bits, but the divisions of an iteration run side by side instead
// of one after another (one thread ran ~9K dependent instructions: 27 us of
// an H200 decode step per hc.pre, every other warp of the grid waiting).
void Emitter::sinkhornLanes(HcPreOp op, function_ref<Value(Value)> rhoAt,
                            function_ref<Value(Value, Value)> dotAt, View pre, int64_t n) {
  kb.warpLoop(c(0), S(), [&](Value s, Value lane) {
    sinkhornWarp(op, rhoAt, dotAt, pre, n, s, lane);
  });
}

void Emitter::sinkhornWarp(HcPreOp op, function_ref<Value(Value)> rhoAt,
                           function_ref<Value(Value, Value)> dotAt, View pre, int64_t n,
                           Value s, Value lane) {
  int64_t iters = op.getSinkhornIters();
  View post = view(op.getPost()), comb = view(op.getComb());
  WeightView base = w(op.getBase()), scale = w(op.getScale());
  double hcEps = op.getHcEps().convertToDouble();
  Value rhoS = rhoAt(s);
  auto muAt = [&](Value j) { return kb.mul(rhoS, dotAt(s, j)); };
  Value s0 = kb.weight(scale, c(0), c(0)), s1 = kb.weight(scale, c(0), c(1));
  Value s2 = kb.weight(scale, c(0), c(2));
  // pre and post: lane j < n.
  Value j = kb.min(lane, c(n - 1));
  Value qj = kb.add(kb.mul(s1, muAt(kb.add(j, c(n)))), kb.weight(base, c(0), kb.add(j, c(n))));
  kb.ifThen(kb.lt(lane, c(n)), [&] {
    if (pre.ptr)
      kb.storeF(pre, kb.add(kb.mul(s, c(n)), j),
                preOf(s0, muAt(j), kb.weight(base, c(0), j), hcEps));
    kb.storeF(post, kb.add(kb.mul(s, c(n)), j), kb.mul(kb.cf(2.0), kb.sigmoid(qj)));
  });
  Value l = kb.min(lane, c(n * n - 1));
  Value row = kb.div(l, c(n)), col = kb.rem(l, c(n));
  Value v = kb.add(kb.mul(s2, muAt(kb.add(l, c(2 * n)))),
                   kb.weight(base, c(0), kb.add(l, c(2 * n))));
  // The n values of this lane's row (stride 1) or column (stride n), in
  // index order: lane l ^ (d * stride) holds index (mine ^ d).
  auto gather = [&](Value x, Value mine, int64_t stride) {
    SmallVector<Value> got;
    for (int64_t d = 0; d < n; ++d)
      got.push_back(d ? kb.shuffleXor(x, d * stride) : x);
    SmallVector<Value> ordered;
    for (int64_t k = 0; k < n; ++k) {
      Value pick = got[0];
      for (int64_t d = 1; d < n; ++d)
        pick = kb.select(kb.eq(mine, c(k ^ d)), got[d], pick);
      ordered.push_back(pick);
    }
    return ordered;
  };
  auto sumOf = [&](ArrayRef<Value> xs) {
    Value sum = kb.cf(0.0);
    for (Value x : xs)
      sum = kb.add(sum, x);
    return sum;
  };
  // Row softmax + eps.
  SmallVector<Value> r = gather(v, col, 1);
  Value mx = r[0];
  for (int64_t k = 1; k < n; ++k)
    mx = kb.max(mx, r[k]);
  Value e = kb.exp(kb.sub(v, mx));
  v = kb.add(kb.div(e, sumOf(gather(e, col, 1))), kb.cf(hcEps));
  auto normalize = [&](Value x, bool rows) {
    Value den = kb.add(sumOf(rows ? gather(x, col, 1) : gather(x, row, n)), kb.cf(hcEps));
    return kb.div(x, den);
  };
  v = normalize(v, false);
  v = kb.reduce(c(1), c(iters), ValueRange{v},
                [&](Value, ValueRange carried) -> SmallVector<Value> {
                  return {normalize(normalize(carried[0], true), false)};
                })[0];
  kb.ifThen(kb.lt(lane, c(n * n)),
            [&] { kb.storeF(comb, kb.add(kb.mul(s, c(n * n)), l), v); });
}

void Emitter::hcPost(HcPostOp op) {
  auto shape = op.getStreams().getType().getShape();
  int64_t n = shape[1], d = shape[2];
  View a = view(op.getA()), streams = view(op.getStreams());
  View post = view(op.getPost()), comb = view(op.getComb()), out = view(op.getResult());
  // out[s, k, i] = post_k a[s, i] + sum_j comb[j, k] X_j[i].
  if (ctx.lazy.count(op.getA())) {
    // `a` computed here (the experts' sums, EmitContext::lazy): a thread per
    // (s, i) takes it once for its n outputs, each with the operations below.
    kb.parallelLoop(c(0), kb.mul(S(), c(d)), [&](Value e) {
      Value s = kb.div(e, c(d)), i = kb.rem(e, c(d));
      View xs = kb.at(streams, kb.mul(s, c(n * d)));
      View cs = kb.at(comb, kb.mul(s, c(n * n)));
      Value av = element(op.getA(), s, i);
      View outS = kb.at(out, kb.mul(s, c(n * d)));
      for (int64_t k = 0; k < n; ++k) {
        Value acc = kb.mul(kb.loadF(post, kb.add(kb.mul(s, c(n)), c(k))), av);
        for (int64_t j = 0; j < n; ++j)
          acc = kb.add(acc, kb.mul(kb.loadF(cs, c(j * n + k)),
                                   kb.loadF(xs, kb.add(i, c(j * d)))));
        kb.storeF(outS, kb.add(i, c(k * d)), acc);
      }
    });
    return;
  }
  kb.parallelLoop(c(0), kb.mul(S(), c(n * d)), [&](Value e) {
    Value s = kb.div(e, c(n * d)), r = kb.rem(e, c(n * d));
    Value k = kb.div(r, c(d)), i = kb.rem(r, c(d));
    View xs = kb.at(streams, kb.mul(s, c(n * d)));
    View cs = kb.at(comb, kb.mul(s, c(n * n)));
    Value pk = kb.loadF(post, kb.add(kb.mul(s, c(n)), k));
    Value acc = kb.mul(pk, kb.loadF(a, kb.add(kb.mul(s, c(d)), i)));
    for (int64_t j = 0; j < n; ++j)
      acc = kb.add(acc, kb.mul(kb.loadF(cs, kb.add(c(j * n), k)),
                               kb.loadF(xs, kb.add(i, c(j * d)))));
    kb.storeF(out, e, acc);
  });
}

void Emitter::hcHead(HcHeadOp op) {
  auto shape = op.getStreams().getType().getShape();
  int64_t n = shape[1], d = shape[2];
  View streams = view(op.getStreams()), out = view(op.getResult());
  WeightView fn = w(op.getFn()), base = w(op.getBase()), scale = w(op.getScale());
  double hcEps = op.getHcEps().convertToDouble();
  double normEps = op.getNormEps().convertToDouble();
  View rho = scratchF32(1, 0), pre = scratchF32(n, 0);
  inverseRmsRows(streams, S(), n * d, normEps, rho);
  View dots = rowDots(streams, n * d, fn);
  kb.parallelLoop(c(0), kb.mul(S(), c(n)), [&](Value e) {
    Value s = kb.div(e, c(n)), j = kb.rem(e, c(n));
    Value mu = kb.mul(kb.loadF(rho, s), kb.loadF(dots, e));
    kb.storeF(pre, e, preOf(kb.weight(scale, c(0), c(0)), mu, kb.weight(base, c(0), j), hcEps));
  });
  mixStreamsInto(op.getResult(), streams, pre, n, d, out);
}

void mlir::compressa::cpu::populateHyperConnPatterns(KernelPatternSet &patterns) {
  patterns.add(&Emitter::hcExpand);
  patterns.add(&Emitter::hcPre);
  patterns.add(&Emitter::hcPost);
  patterns.add(&Emitter::hcHead);
}
