//===- Moe.cpp - MoE kernels -===//
// SPDX-License-Identifier: Apache-2.0
//
// Routing (score and hash gates with their top-k), the routed experts with
// the clamped SwiGLU, the shared expert and their sum.
//
//===----------------------------------------------------------------------===//

#include "lowering/DSV4ToKernels/Emitter.h"
#include "lowering/DSV4ToKernels/Patterns.h"
#include "lowering/TensorCore/Numerics.h"

#include <algorithm>
#include <cmath>
#include <optional>

using namespace mlir;
using namespace mlir::compressa;
using namespace mlir::compressa::cpu;
using namespace mlir::dsv4;

// The routing weights' operations (spec: sigma of the pick over the sum of
// the picks' sigmas, times the route scale): the sum over the k picks of a
// token (ids: its k i32 expert ids), and pick j's weight from it.
static Value idAt(KernelBuilder &kb, Value ids, Value j) {
  return kb.toI64(kb.load(kb.builder().getI32Type(), ids, j));
}
static Value pickedSum(KernelBuilder &kb, View sigma, Value ids, int64_t k) {
  Value sum = kb.cf(0.0);
  for (int64_t j = 0; j < k; ++j)
    sum = kb.add(sum, kb.loadF(sigma, idAt(kb, ids, kb.c(j))));
  return sum;
}
static Value routeWeight(KernelBuilder &kb, View sigma, Value ids, Value sum, Value j,
                         double scale) {
  return kb.mul(kb.div(kb.loadF(sigma, idAt(kb, ids, j)), kb.add(sum, kb.cf(1e-20))),
                kb.cf(scale));
}

void Emitter::routeWeights(View sigma, View ids, View weights, int64_t k,
                           double scale) {
  Value sum = pickedSum(kb, sigma, ids.ptr, k);
  kb.parallelLoop(c(0), c(k), [&](Value j) {
    kb.storeF(weights, j, routeWeight(kb, sigma, ids.ptr, sum, j, scale));
  });
}

void Emitter::routerScores(View x, const WeightView &wt,
                           function_ref<void(Value, Value)> score, Value extraItems,
                           function_ref<void(Value, Value)> extra) {
  int64_t e = wt.rows;
  int64_t parts = KernelBuilder::segmentsPerRow(wt, x.elt) > 0
                      ? splitParts(wt, wt.rows, x.elt)
                      : 1;
  if (parts > 1 && !ctx.fastLinear) {
    // The dots split in parts (splitDots), their parts added in part order
    // by the thread that scores the dot: one grid-wide step fewer.
    View partial = scratchF32(e * parts, 0);
    Value dots = kb.mul(kb.mul(S(), c(e)), c(parts));
    Value items = extraItems ? kb.add(dots, extraItems) : dots;
    kb.warpLoop(c(0), items, [&](Value i, Value lane) {
      auto dot = [&] {
        splitDotPart(x, wt.cols, wt, e, /*diagonal=*/false, parts, partial, i, lane);
      };
      if (!extraItems)
        return dot();
      branch(kb.lt(i, dots), dot, [&] { extra(kb.sub(i, dots), lane); });
    });
    kb.parallelLoop(c(0), kb.mul(S(), c(e)),
                    [&](Value se) { score(se, sumParts(partial, se, parts)); });
    return;
  }
  if (extraItems)
    kb.warpLoop(c(0), extraItems, extra);
  View dots = rowDots(x, wt.cols, wt);
  kb.parallelLoop(c(0), kb.mul(S(), c(e)), [&](Value se) { score(se, kb.loadF(dots, se)); });
}

// Leaves the routing weights `wv` lazy (EmitContext::lazy) where only
// routed experts of the whole model read them: the FP8 decode experts take
// them in their sums over the picks (hc.post), the others in the down
// projections of calls of few tokens, and larger calls store them first
// (Emitter::experts). A grid-wide step fewer than storing them here.
bool Emitter::lazyRouteWeights(Value wv, View sigma, View ids, int64_t k, int64_t e,
                               double scale) {
  static const bool stored = KernelBuilder::experimentString("COMPRESSA_ROUTE_WEIGHTS") == "stored";
  if (wv.use_empty() || !llvm::all_of(wv.getUsers(), [&](Operation *user) {
        auto experts = dyn_cast<MoeExpertsOp>(user);
        return experts && experts.getWeights() == wv && !experts.getFirstExpert() &&
               (usesFp8Experts(experts) || !stored);
      }))
    return false;
  KernelBuilder &kr = kb;
  ctx.lazy[wv] = [&kr, sigma, ids, k, e, scale](Value s, Value j) {
    // routeWeights' operations for pick j of token s (the sum emitted for
    // each pick: the same loads, which LLVM merges).
    View sig = kr.at(sigma, kr.mul(s, kr.c(e)));
    Value idsS = kr.offset(kr.builder().getI32Type(), ids.ptr, kr.mul(s, kr.c(k)));
    return routeWeight(kr, sig, idsS, pickedSum(kr, sig, idsS, k), j, scale);
  };
  return true;
}

void Emitter::gate(MoeGateOp op) {
  WeightView wt = w(op.getW()), bias = w(op.getBias());
  int64_t e = wt.rows, k = op.getTopk();
  View x = view(op.getX()), weights = view(op.getWeights()), ids = view(op.getIds());
  View sigma = scratchF32(e, 0), sel = scratchF32(e, 0);
  double scale = op.getRouteScale().convertToDouble();
  // fast-decode: the fused shared expert's gate/up in the dots' step.
  MoeExpertsOp experts;
  for (Operation *user : op.getIds().getUsers())
    if (auto m = dyn_cast<MoeExpertsOp>(user); m && m.getIds() == op.getIds())
      experts = m;
  SharedExpertOp shared = experts ? fp8SharedGateUpEarly(experts) : SharedExpertOp();
  View gu = shared ? fp8GateUpScratch(experts, shared) : View{};
  if (shared)
    ctx.fp8SharedGateUp[shared.getOperation()] = gu;
  routerScores(
      x, wt,
      [&](Value se, Value dot) {
        Value sg = kb.sqrt(kb.softplus(dot));
        kb.storeF(sigma, se, sg);
        kb.storeF(sel, se, kb.add(sg, kb.weight(bias, c(0), kb.rem(se, c(e)))));
      },
      shared ? fp8SharedGateUpItems(experts, shared) : Value(),
      [&](Value i, Value lane) {
        fp8SharedGateUpItem(experts, shared, gu, ctx.quantized.lookup(experts.getX()), i, lane);
      });
  // The top-k of the biased scores: expert i is picked at ids[rank] when
  // its rank (rankInRow) is below k.
  rankItems(kb.mul(S(), c(e)), [&](Value se, Value lane) {
    Value s = kb.div(se, c(e)), i = kb.rem(se, c(e));
    View row = kb.at(sel, kb.mul(s, c(e)));
    Value rank = rankInRow(row, kb.loadF(row, i), i, c(e), lane);
    kb.ifThen(kb.andI(kb.lt(rank, c(k)), storingLane(lane)), [&] {
      kb.store(kb.truncI32(i), ids.ptr, kb.add(kb.mul(s, c(k)), rank));
    });
  });
  if (lazyRouteWeights(op.getWeights(), sigma, ids, k, e, scale))
    return;
  // A thread per token: the weights of its picks.
  kb.parallelLoop(c(0), S(), [&](Value s) {
    View idsS = kb.at(ids, kb.mul(s, c(k)));
    routeWeights(kb.at(sigma, kb.mul(s, c(e))), idsS, kb.at(weights, kb.mul(s, c(k))), k,
                 scale);
  });
}

void Emitter::materialize(Value v) {
  auto it = ctx.lazy.find(v);
  if (it == ctx.lazy.end())
    return;
  View out = view(v);
  int64_t n = perToken(v);
  kb.parallelLoop(c(0), kb.mul(S(), c(n)), [&](Value e) {
    kb.storeF(out, e, it->second(kb.div(e, c(n)), kb.rem(e, c(n))));
  });
}

void Emitter::hashGate(MoeHashGateOp op) {
  WeightView wt = w(op.getW()), tid2eid = w(op.getTid2eid());
  int64_t e = wt.rows, k = tid2eid.cols;
  View x = view(op.getX()), tokens = view(op.getTokenIds());
  View weights = view(op.getWeights()), ids = view(op.getIds());
  View sigma = scratchF32(e, 0);
  double scale = op.getRouteScale().convertToDouble();
  // The token id's experts, stored by the threads that store the first k
  // sigmas of its row (k <= e; else by a thread per token after them).
  auto storeIds = [&](Value s, Value j) {
    Value tok = kb.loadF(tokens, s);
    kb.store(kb.truncI32(kb.weight(tid2eid, tok, j)), ids.ptr, kb.add(kb.mul(s, c(k)), j));
  };
  routerScores(x, wt, [&](Value se, Value dot) {
    kb.storeF(sigma, se, kb.sqrt(kb.softplus(dot)));
    Value s = kb.div(se, c(e)), j = kb.rem(se, c(e));
    if (k <= e)
      kb.ifThen(kb.lt(j, c(k)), [&] { storeIds(s, j); });
  });
  if (k <= e && lazyRouteWeights(op.getWeights(), sigma, ids, k, e, scale))
    return;
  // A thread per token: the weights of its picks.
  kb.parallelLoop(c(0), S(), [&](Value s) {
    View idsS = kb.at(ids, kb.mul(s, c(k)));
    if (k > e)
      for (int64_t j = 0; j < k; ++j)
        storeIds(s, c(j));
    routeWeights(kb.at(sigma, kb.mul(s, c(e))), idsS, kb.at(weights, kb.mul(s, c(k))), k,
                 scale);
  });
}

Value Emitter::swigluHidden(View x, const WeightView &w1, const WeightView &w3,
                            double limit, Value i, Value lane) {
  return swigluHiddens(x, w1, w3, limit, i, 1, lane)[0];
}

SmallVector<Value> Emitter::swigluHiddens(View x, const WeightView &w1, const WeightView &w3,
                                          double limit, Value i0, int64_t n, Value lane) {
  SmallVector<KernelBuilder::WeightRow> rows;
  for (int64_t r = 0; r < n; ++r) {
    Value i = plus(i0, r);
    rows.push_back({&w1, i});
    rows.push_back({&w3, i});
  }
  SmallVector<Value> gu = kb.dotRows(x, rows, lane), hs;
  for (int64_t r = 0; r < n; ++r)
    hs.push_back(swiglu(gu[2 * r], gu[2 * r + 1], limit));
  return hs;
}

// sum over token s's k picks, in order, of weight_j * (W2_j h_j)[o]: the k
// rows in one dotRows, each with its own hidden vector (h_j at h + (s * k +
// j) * inter), so that all their loads are in flight together.
Value Emitter::routedDown(const ExpertView &e2, View h, Value weights, View ids, int64_t k,
                          Value s, Value o, Value lane) {
  return routedDowns(e2, h, weights, ids, k, s, o, 1, lane)[0];
}

SmallVector<Value> Emitter::routedDowns(const ExpertView &e2, View h, Value weights, View ids,
                                        int64_t k, Value s, Value o0, int64_t n, Value lane) {
  int64_t inter = e2.cols;
  // The picks' weights first (their loads beside the rows').
  SmallVector<Value> wj;
  for (int64_t j = 0; j < k; ++j)
    wj.push_back(element(weights, s, c(j)));
  SmallVector<WeightView> w2s;
  SmallVector<View> hs;
  for (int64_t j = 0; j < k; ++j) {
    Value slot = kb.add(kb.mul(s, c(k)), c(j));
    Value ex = kb.toI64(kb.load(kb.builder().getI32Type(), ids.ptr, slot));
    w2s.push_back(e2.expert(kb, ex));
    hs.push_back(kb.at(h, kb.mul(slot, c(inter))));
  }
  // Rows (o0 + r, pick j) at r * k + j: the n rows of a pick share its h.
  SmallVector<KernelBuilder::WeightRow> rows;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < k; ++j)
      rows.push_back({&w2s[j], plus(o0, r), &hs[j]});
  SmallVector<Value> ys = kb.dotRows(hs[0], rows, lane), outs;
  for (int64_t r = 0; r < n; ++r) {
    Value acc = kb.cf(0.0);
    for (int64_t j = 0; j < k; ++j)
      acc = kb.add(acc, kb.mul(wj[j], ys[r * k + j]));
    outs.push_back(acc);
  }
  return outs;
}

void Emitter::experts(MoeExpertsOp op) {
  ExpertView e1 = ctx.experts.lookup(op.getW1());
  int64_t k = op.getIds().getType().getShape()[1];
  // --numerics=fast (prefill): the experts on warp matrix tiles.
  ExpertView e2 = ctx.experts.lookup(op.getW2());
  auto shape = [](const ExpertView &e) {
    return WeightView{Value(), Value(), e.elt, e.rows, e.cols};
  };
  if (ctx.fastLinear && !op.getFirstExpert() && !ctx.batched &&
      mmaFits(shape(e1), e1.rows) && mmaFits(shape(e2), e2.rows)) {
    materialize(op.getWeights());
    return expertsMma(op, cast_or_null<SharedExpertOp>(ctx.fusedShared));
  }
  // Expert tiles once the slots are at least two per expert on average in a
  // prefill chunk (fewer repeat a tile's weight rows for too few slots), one
  // in a batched decode step (whose steps read weights from memory: an
  // expert's rows read once for its sequences).
  if (!op.getFirstExpert()) {
    auto shared = cast_or_null<SharedExpertOp>(ctx.fusedShared);
    // --numerics=fast-decode: calls of at most 8 tokens in the FP8 GEMM
    // semantics on tensor cores (DecodeExpertsFp8.cpp), larger ones as below.
    if (ctx.fp8Decode && fp8ExpertsFit(op, shared)) {
      ctx.fp8Decode = false;
      return expertsFp8(op, shared);
    }
    // Routing weights the gate left lazy stored first where the code reads
    // them stored: the expert tiles of larger calls, the exact MMAs
    // (expertsWithShared and expertsByToken take them lazy).
    int64_t perExpert = ctx.batched ? 1 : 2;
    int64_t tiledFrom = (perExpert * e1.count + k - 1) / k;
    branch(
        manyTokens(tiledFrom),
        [&] {
          materialize(op.getWeights());
          expertsTiled(op, shared);
        },
        [&] {
          if (ctx.exactMma && !ctx.batched && exactMmaFits(e1) &&
              exactMmaFits(ctx.experts.lookup(op.getW3())) && exactMmaFits(e2)) {
            materialize(op.getWeights());
            expertsExactMma(op, shared, std::max<int64_t>(1, tiledFrom - 1));
          } else if (shared) {
            expertsWithShared(op, shared);
          } else {
            expertsByToken(op);
          }
        });
    return;
  }
  materialize(op.getWeights());
  expertsByToken(op);
}

void Emitter::expertsByToken(MoeExpertsOp op) {
  ExpertView e1 = ctx.experts.lookup(op.getW1()), e3 = ctx.experts.lookup(op.getW3());
  ExpertView e2 = ctx.experts.lookup(op.getW2());
  int64_t dm = e1.cols, inter = e1.rows, k = op.getIds().getType().getShape()[1];
  View x = view(op.getX()), weights = view(op.getWeights()), ids = view(op.getIds());
  View out = view(op.getResult());
  View h = scratchF32(k * inter, 0);
  double limit = op.getSwigluLimit().convertToDouble();
  auto expertOf = [&](Value slot) {
    return kb.toI64(kb.load(kb.builder().getI32Type(), ids.ptr, slot));
  };
  // One rank of an expert-parallel artifact holds experts [first, first +
  // e1.count) of the model: a pick of another expert adds 0 (a warp-uniform
  // branch, so its weights are never read); the all-reduce after this op
  // sums the ranks' parts.
  std::optional<uint64_t> first = op.getFirstExpert();
  auto local = [&](Value ex) { return kb.sub(ex, c(int64_t(*first))); };
  auto isLocal = [&](Value l) {
    return arith::CmpIOp::create(kb.builder(), kb.getLoc(), arith::CmpIPredicate::ult, l,
                                 c(e1.count));
  };
  if (!first && ctx.fusedShared)
    return expertsWithShared(op, cast<SharedExpertOp>(ctx.fusedShared));
  // h[s, j] = SwiGLU hidden of token s through its j-th expert.
  kb.warpLoop(c(0), kb.mul(S(), c(k * inter)), [&](Value e, Value lane) {
    Value slot = kb.div(e, c(inter)), i = kb.rem(e, c(inter));
    Value ex = expertOf(slot);
    View xs = kb.at(x, kb.mul(kb.div(slot, c(k)), c(dm)));
    if (first) {
      Value l = local(ex);
      Value hv = kb.ifElse(
          isLocal(l), {kb.f32()},
          [&]() -> SmallVector<Value> {
            return {swigluHidden(xs, e1.expert(kb, l), e3.expert(kb, l), limit, i, lane)};
          },
          [&]() -> SmallVector<Value> { return {kb.cf(0.0)}; })[0];
      kb.storeOnce(h, e, hv, lane);
      return;
    }
    kb.storeOnce(h, e, swigluHidden(xs, e1.expert(kb, ex), e3.expert(kb, ex), limit, i, lane),
                 lane);
  });
  // out[s, o] = sum over the k picks, in order, of weight_j * (W2_j h_j)[o].
  if (!first) {
    // The k rows of an output element in one dotRows, each with its own
    // hidden vector, so that all their loads are in flight together.
    kb.warpLoop(c(0), kb.mul(S(), c(dm)), [&](Value e, Value lane) {
      Value s = kb.div(e, c(dm)), o = kb.rem(e, c(dm));
      kb.storeOnce(out, e, routedDown(e2, h, op.getWeights(), ids, k, s, o, lane), lane);
    });
    return;
  }
  kb.warpLoop(c(0), kb.mul(S(), c(dm)), [&](Value e, Value lane) {
    Value s = kb.div(e, c(dm)), o = kb.rem(e, c(dm));
    Value acc = kb.reduce1(c(0), c(k), kb.cf(0.0), [&](Value j, Value a) {
      Value slot = kb.add(kb.mul(s, c(k)), j);
      View hj = kb.at(h, kb.mul(slot, c(inter)));
      if (first) {
        Value l = local(expertOf(slot));
        return kb.add(a, kb.ifElse(
                             isLocal(l), {kb.f32()},
                             [&]() -> SmallVector<Value> {
                               return {kb.mul(kb.loadF(weights, slot),
                                              kb.dotLanes(hj, e2.expert(kb, l), o, lane))};
                             },
                             [&]() -> SmallVector<Value> { return {kb.cf(0.0)}; })[0]);
      }
      Value y = kb.dotLanes(hj, e2.expert(kb, expertOf(slot)), o, lane);
      return kb.add(a, kb.mul(kb.loadF(weights, slot), y));
    });
    kb.storeOnce(out, e, acc, lane);
  });
}

// The routed experts and the shared expert on the same x in two grid-wide
// steps instead of four: the SwiGLU hiddens of every (token, pick) and of
// the shared expert in one warp loop, then per output element the k routed
// rows and the shared row. Every value is computed by the same operations
// in the same order as by experts() and sharedExpert() apart.
void Emitter::expertsWithShared(MoeExpertsOp op, SharedExpertOp shared) {
  ExpertView e1 = ctx.experts.lookup(op.getW1()), e3 = ctx.experts.lookup(op.getW3());
  ExpertView e2 = ctx.experts.lookup(op.getW2());
  WeightView s1 = w(shared.getW1()), s3 = w(shared.getW3()), s2 = w(shared.getW2());
  int64_t dm = e1.cols, inter = e1.rows, k = op.getIds().getType().getShape()[1];
  int64_t sInter = s1.rows;
  View x = view(op.getX()), ids = view(op.getIds());
  View out = view(op.getResult()), sharedOut = view(shared.getResult());
  View h = scratchF32(k * inter, 0), hs = scratchF32(sInter, 0);
  double limit = op.getSwigluLimit().convertToDouble();
  double sLimit = shared.getSwigluLimit().convertToDouble();
  auto expertOf = [&](Value slot) {
    return kb.toI64(kb.load(kb.builder().getI32Type(), ids.ptr, slot));
  };
  // On CUDA a warp takes four hidden units (w1 and w3 rows i .. i + 3:
  // eight rows sharing each load of x) and two output elements (each pick's
  // rows o, o + 1 sharing its h). Every row's dot takes the same operations
  // as alone, so the same bits; the CPU (lanes in turn) keeps one unit a
  // warp. On an H200 (V4-Flash 2:6) a 16-token exact prefill's hc_ffn took
  // 16 % less time, the 4K decode step 0.9 % less (docs/perf.md, twelfth
  // session); four outputs a warp made decode 6 % slower.
  int64_t pair = kb.lanesParallel() && inter % 4 == 0 && sInter % 4 == 0 ? 4 : 1;
  int64_t outPair = kb.lanesParallel() && dm % 2 == 0 ? 2 : 1;
  int64_t units = inter / pair, sUnits = sInter / pair, outs = dm / outPair;
  Value routedItems = kb.mul(S(), c(k * units));
  kb.warpLoop(c(0), kb.add(routedItems, kb.mul(S(), c(sUnits))), [&](Value e, Value lane) {
    branch(
        kb.lt(e, routedItems),
        [&] {
          Value slot = kb.div(e, c(units)), i0 = kb.mul(kb.rem(e, c(units)), c(pair));
          Value ex = expertOf(slot);
          View xs = kb.at(x, kb.mul(kb.div(slot, c(k)), c(dm)));
          SmallVector<Value> hv =
              swigluHiddens(xs, e1.expert(kb, ex), e3.expert(kb, ex), limit, i0, pair, lane);
          Value at = kb.add(kb.mul(slot, c(inter)), i0);
          for (int64_t r = 0; r < pair; ++r)
            kb.storeOnce(h, plus(at, r), hv[r], lane);
        },
        [&] {
          Value f = kb.sub(e, routedItems);
          Value s = kb.div(f, c(sUnits)), i0 = kb.mul(kb.rem(f, c(sUnits)), c(pair));
          View xs = kb.at(x, kb.mul(s, c(dm)));
          SmallVector<Value> hv = swigluHiddens(xs, s1, s3, sLimit, i0, pair, lane);
          Value at = kb.add(kb.mul(s, c(sInter)), i0);
          for (int64_t r = 0; r < pair; ++r)
            kb.storeOnce(hs, plus(at, r), hv[r], lane);
        });
  });
  kb.warpLoop(c(0), kb.mul(S(), c(outs)), [&](Value e, Value lane) {
    Value s = kb.div(e, c(outs)), o0 = kb.mul(kb.rem(e, c(outs)), c(outPair));
    SmallVector<Value> acc = routedDowns(e2, h, op.getWeights(), ids, k, s, o0, outPair, lane);
    SmallVector<KernelBuilder::WeightRow> rows;
    for (int64_t r = 0; r < outPair; ++r)
      rows.push_back({&s2, plus(o0, r)});
    SmallVector<Value> y = kb.dotRows(kb.at(hs, kb.mul(s, c(sInter))), rows, lane);
    Value at = kb.add(kb.mul(s, c(dm)), o0);
    for (int64_t r = 0; r < outPair; ++r) {
      Value i = plus(at, r);
      kb.storeOnce(out, i, acc[r], lane);
      kb.storeOnce(sharedOut, i, kb.add(kb.cf(0.0), kb.mul(kb.cf(1.0), y[r])), lane);
    }
  });
}

void Emitter::sharedExpert(SharedExpertOp op) {
  // Computed with the routed experts before it (expertsWithShared).
  if (ctx.fusedShared == op.getOperation()) {
    ctx.fusedShared = nullptr;
    return;
  }
  if (ctx.fastLinear && !ctx.batched &&
      (sharedExpertFp8(op) || (mmaFits(w(op.getW1()), w(op.getW1()).rows) &&
                               mmaFits(w(op.getW2()), w(op.getW2()).rows))))
    return sharedExpertFast(op);
  branch(
      manyTokens(2 * kTileTokens), [&] { sharedExpertTiled(op); },
      [&] { sharedExpertByToken(op); });
}

void Emitter::sharedExpertByToken(SharedExpertOp op) {
  WeightView w1 = w(op.getW1()), w3 = w(op.getW3()), w2 = w(op.getW2());
  int64_t dm = w1.cols, inter = w1.rows;
  View x = view(op.getX()), out = view(op.getResult());
  View h = scratchF32(inter, 0);
  double limit = op.getSwigluLimit().convertToDouble();
  kb.warpLoop(c(0), kb.mul(S(), c(inter)), [&](Value e, Value lane) {
    View xs = kb.at(x, kb.mul(kb.div(e, c(inter)), c(dm)));
    kb.storeOnce(h, e, swigluHidden(xs, w1, w3, limit, kb.rem(e, c(inter)), lane), lane);
  });
  kb.warpLoop(c(0), kb.mul(S(), c(dm)), [&](Value e, Value lane) {
    Value s = kb.div(e, c(dm)), o = kb.rem(e, c(dm));
    Value y = kb.dotLanes(kb.at(h, kb.mul(s, c(inter))), w2, o, lane);
    // 0 + 1 * y, the routed experts' accumulation with one weight-1 pick.
    kb.storeOnce(out, e, kb.add(kb.cf(0.0), kb.mul(kb.cf(1.0), y)), lane);
  });
}

void Emitter::addF(arith::AddFOp op) {
  Value lhs = op.getLhs(), rhs = op.getRhs();
  if (mayStayLazy(op.getResult())) {
    // Read only by the hc.post after it: the sum is taken there (no step).
    KernelBuilder &k = kb;
    EmitContext &cx = ctx;
    ctx.lazy[op.getResult()] = [&k, &cx, lhs, rhs](Value s, Value i) {
      return k.add(elementOf(k, cx, lhs, s, i), elementOf(k, cx, rhs, s, i));
    };
    return;
  }
  View out = view(op.getResult());
  int64_t n = perToken(op.getResult());
  if (ctx.lazy.count(lhs) || ctx.lazy.count(rhs)) {
    kb.parallelLoop(c(0), kb.mul(S(), c(n)), [&](Value e) {
      Value s = kb.div(e, c(n)), i = kb.rem(e, c(n));
      kb.storeF(out, e, kb.add(element(lhs, s, i), element(rhs, s, i)));
    });
    return;
  }
  View a = view(lhs), b = view(rhs);
  kb.parallelLoop(c(0), kb.mul(S(), c(n)), [&](Value i) {
    kb.storeF(out, i, kb.add(kb.loadF(a, i), kb.loadF(b, i)));
  });
}

void mlir::compressa::cpu::populateMoePatterns(KernelPatternSet &patterns) {
  patterns.add(&Emitter::gate);
  patterns.add(&Emitter::hashGate);
  patterns.add(&Emitter::experts);
  patterns.add(&Emitter::sharedExpert);
  patterns.add(&Emitter::addF);
}
