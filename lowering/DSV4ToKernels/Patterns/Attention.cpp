//===- Attention.cpp - attention kernels -===//
// SPDX-License-Identifier: Apache-2.0
//
// The query and shared K=V projections, RoPE, the sliding-window ring, the
// sparse attention with sink over window and selected entries, and the
// grouped output projection.
//
//===----------------------------------------------------------------------===//

#include "lowering/DSV4ToKernels/Emitter.h"
#include "lowering/DSV4ToKernels/Patterns.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"

#include <cmath>

using namespace mlir;
using namespace mlir::compressa;
using namespace mlir::compressa::cpu;
using namespace mlir::dsv4;

void Emitter::qProj(QProjOp op) {
  auto qShape = op.getQ().getType().getShape();
  int64_t h = qShape[1], d = qShape[2];
  WeightView wqa = w(op.getWqA()), qNorm = w(op.getQNorm()), wqb = w(op.getWqB());
  int64_t rank = wqa.rows, dm = wqa.cols;
  double eps = op.getEps().convertToDouble();
  View x = view(op.getX()), q = view(op.getQ()), qr = view(op.getQr());
  View t = scratchF32(rank, 0), r = scratchF32(h, 0);
  linearTokens(x, dm, wqa, t);
  rmsNormRows(t, qr, S(), rank, eps, &qNorm, r);
  linearTokens(qr, rank, wqb, q);
  rmsNormRows(q, q, kb.mul(S(), c(h)), d, eps, nullptr, r);
}

void Emitter::kvProj(KVProjOp op) {
  WeightView wkv = w(op.getWkv()), kvNorm = w(op.getKvNorm());
  int64_t d = wkv.rows, dm = wkv.cols;
  double eps = op.getEps().convertToDouble();
  View x = view(op.getX()), kv = view(op.getKv());
  View t = scratchF32(d, 0);
  linearTokens(x, dm, wkv, t);
  rmsNormRows(t, kv, S(), d, eps, &kvNorm, scratchF32(1, 0));
}

void Emitter::ropeOp(RopeOp op) {
  View x = view(op.getX()), y = view(op.getResult());
  int64_t len = op.getX().getType().getShape().back();
  int64_t per = perToken(op.getX()), rows = per / len;
  if (x.ptr != y.ptr)
    kb.parallelLoop(c(0), kb.mul(S(), c(per)),
                    [&](Value i) { kb.storeF(y, i, kb.loadF(x, i)); });
  ropeRows(y, kb.mul(S(), c(rows)), len, [&](Value row) { return pos(kb.div(row, c(rows))); },
           op.getRope(), op.getInverse());
}

void Emitter::windowUpdate(WindowUpdateOp op) {
  WindowKVType ring = op.getRing().getType();
  int64_t win = ring.getWindow(), d = ring.getDim();
  View kv = view(op.getKv());
  // Only the last `window` tokens of a chunk survive; their slots differ. In
  // a batched kernel every token is its own sequence's, into its own ring.
  Value first = ctx.batched ? c(0) : kb.max(c(0), kb.sub(S(), c(win)));
  kb.parallelLoop(c(0), kb.mul(kb.sub(S(), first), c(d)), [&](Value e) {
    Value s = kb.add(first, kb.div(e, c(d))), i = kb.rem(e, c(d));
    View dst{stateOf(op.getRing(), s), ring.getElementType()};
    Value slot = kb.rem(pos(s), c(win));
    kb.storeF(dst, kb.add(kb.mul(slot, c(d)), i), kb.loadF(kv, kb.add(kb.mul(s, c(d)), i)));
  });
}

void Emitter::attention(SparseAttentionOp op) {
  auto qShape = op.getQ().getType().getShape();
  int64_t h = qShape[1], d = qShape[2];
  WindowKVType ringType = op.getRing().getType();
  int64_t win = ringType.getWindow();
  Type ringElt = ringType.getElementType();
  View q = view(op.getQ()), kv = view(op.getKv()), out = view(op.getResult());
  WeightView sink = w(op.getSink());
  double scale = op.getScale().convertToDouble();
  Type entryElt;
  int64_t ratio = 0, k = 0;
  View topk;
  if (op.getEntries()) {
    CompressedKVType et = op.getEntries().getType();
    entryElt = et.getElementType();
    ratio = et.getRatio();
  }
  if (op.getTopk()) {
    topk = view(op.getTopk());
    k = op.getTopk().getType().getShape()[1];
  }
  // Keys of the query of token s: the window, then the selected (or all
  // visible) compressed entries. Three phases over every (token, head):
  // scores; per (token, head) the max and the weights p = exp(score - max)
  // with their sum; the weighted sum of the keys (which are also the
  // values) per channel. Every sum runs in key order, as in the spec.
  int64_t maxKeys = win + (k ? k : (ratio ? ctx.maxContext / ratio : 0));
  View weights = scratchF32(h * maxKeys, 0);
  View den = scratchF32(h, 0);
  auto firstOf = [&](Value s) { return kb.max(c(0), kb.sub(pos(s), c(win - 1))); };
  auto inWindowOf = [&](Value s) { return kb.add(kb.sub(pos(s), firstOf(s)), c(1)); };
  auto keysOf = [&](Value s) {
    Value extra = k ? c(k) : (ratio ? kb.div(kb.add(pos(s), c(1)), c(ratio)) : c(0));
    return kb.add(inWindowOf(s), extra);
  };
  // Key j of token s: its vector, and whether it exists (a top-k slot may
  // be -1). Positions from the call's first one come from the chunk; in a
  // batched kernel only the token's own position (its chunk is itself), the
  // others from its slot's ring and entries.
  auto keyAt = [&](Value s, Value j) -> std::pair<View, Value> {
    Value u = kb.add(firstOf(s), j);
    Value chunkStart = ctx.batched ? pos(s) : ctx.startPos;
    Value inChunk = kb.le(chunkStart, u);
    Value chunkRow = ctx.batched ? s : kb.sub(u, ctx.startPos);
    Value chunkPtr = kb.at(kv, kb.mul(chunkRow, c(d))).ptr;
    View ring{stateOf(op.getRing(), s), ringElt};
    Value ringPtr = kb.at(ring, kb.mul(kb.rem(u, c(win)), c(d))).ptr;
    Value windowPtr = kb.select(inChunk, chunkPtr, ringPtr);
    Value yes = kb.eq(c(0), c(0));
    if (!ratio)
      return {View{windowPtr, kv.elt}, yes};
    Value inWindow = inWindowOf(s);
    Value e = kb.max(kb.sub(j, inWindow), c(0));
    Value valid = yes;
    if (k) {
      View ts = kb.at(topk, kb.mul(s, c(k)));
      Value idx = kb.toI64(kb.load(kb.builder().getI32Type(), ts.ptr,
                                   kb.min(e, c(k - 1))));
      valid = kb.le(c(0), idx);
      e = kb.max(idx, c(0));
    }
    View entries{stateOf(op.getEntries(), s), entryElt};
    Value entryPtr = kb.at(entries, kb.mul(e, c(d))).ptr;
    Value isWindow = kb.lt(j, inWindow);
    return {View{kb.select(isWindow, windowPtr, entryPtr), kv.elt},
            arith::OrIOp::create(kb.builder(), kb.getLoc(), isWindow, valid)};
  };
  // Phase 1: scores (-inf for a missing key), a warp per (token, head, key)
  // with the lane-split dot; the last token has the most keys (a batched
  // kernel: the token with the most).
  Value most = mostOver(keysOf);
  kb.warpLoop(c(0), kb.mul(kb.mul(S(), c(h)), most), [&](Value e, Value lane) {
    Value sh = kb.div(e, most), j = kb.rem(e, most);
    Value s = kb.div(sh, c(h));
    kb.ifThen(kb.lt(j, keysOf(s)), [&] {
      auto [key, valid] = keyAt(s, j);
      Value dotv = kb.dotLanes(kb.at(q, kb.mul(sh, c(d))), key, d, lane);
      kb.storeOnce(weights, kb.add(kb.mul(sh, c(maxKeys)), j),
                   kb.select(valid, kb.mul(dotv, kb.cf(scale)), kb.negInf()), lane);
    });
  });
  // Phase 2: per (token, head), a warp: the max (with the sink), the
  // weights p = exp(score - max) and their sum; lane l takes keys l,
  // l + 32, ... and the lanes meet in the warp's butterfly.
  kb.warpLoop(c(0), kb.mul(S(), c(h)), [&](Value sh, Value lane) {
    Value n = keysOf(kb.div(sh, c(h)));
    View wh = kb.at(weights, kb.mul(sh, c(maxKeys)));
    Value sinkLogit = kb.weight(sink, c(0), kb.rem(sh, c(h)));
    // Keys l, l + 32, ... below n.
    auto laneKeys = [&](Value l, Value init, function_ref<Value(Value, Value)> body) {
      Value trips = kb.div(kb.add(kb.sub(n, l), c(KernelBuilder::kLanes - 1)),
                           c(KernelBuilder::kLanes));
      return kb.reduce1(c(0), trips, init, [&](Value t, Value a) {
        return body(kb.add(l, kb.mul(t, c(KernelBuilder::kLanes))), a);
      });
    };
    Value mx = kb.laneTotals(lane, 1, [&](Value l) -> SmallVector<Value> {
      return {laneKeys(l, sinkLogit, [&](Value j, Value a) {
        return kb.max(a, kb.loadF(wh, j));
      })};
    }, /*max=*/true)[0];
    Value sum = kb.laneTotals(lane, 1, [&](Value l) -> SmallVector<Value> {
      return {laneKeys(l, kb.cf(0.0), [&](Value j, Value a) {
        Value p = kb.exp(kb.sub(kb.loadF(wh, j), mx));
        kb.storeF(wh, j, p);
        return kb.add(a, p);
      })};
    })[0];
    kb.storeOnce(den, sh, kb.add(sum, kb.exp(kb.sub(sinkLogit, mx))), lane);
  });
  // Phase 3: out[s, h, i] = sum_j p_j key_j[i] / den, a thread per channel,
  // the keys in order (eight per loop trip, so their loads overlap).
  kb.parallelLoop(c(0), kb.mul(S(), c(h * d)), [&](Value e) {
    Value sh = kb.div(e, c(d)), i = kb.rem(e, c(d));
    Value s = kb.div(sh, c(h));
    View wh = kb.at(weights, kb.mul(sh, c(maxKeys)));
    Value acc = kb.reduceUnrolled(c(0), keysOf(s), 8, kb.cf(0.0), [&](Value j, Value a) {
      auto [key, valid] = keyAt(s, j);
      Value term = kb.mul(kb.loadF(wh, j), kb.loadF(key, i));
      return kb.add(a, kb.select(valid, term, kb.cf(0.0)));
    });
    kb.storeF(out, e, kb.div(acc, kb.loadF(den, sh)));
  });
}

void Emitter::outProj(OutProjOp op) {
  auto shape = op.getO().getType().getShape();
  int64_t h = shape[1], d = shape[2], g = op.getGroups();
  WeightView woa = w(op.getWoA()), wob = w(op.getWoB());
  int64_t rows = woa.rows, per = woa.rows / g, groupIn = (h / g) * d;
  View o = view(op.getO()), out = view(op.getResult());
  View z = scratchF32(rows, 0);
  kb.warpLoop(c(0), kb.mul(S(), c(rows)), [&](Value e, Value lane) {
    Value s = kb.div(e, c(rows)), r = kb.rem(e, c(rows));
    Value grp = kb.div(r, c(per));
    View in = kb.at(o, kb.add(kb.mul(s, c(h * d)), kb.mul(grp, c(groupIn))));
    kb.storeOnce(z, e, kb.dotLanes(in, woa, r, lane), lane);
  });
  linearTokens(z, rows, wob, out);
}

void mlir::compressa::cpu::populateAttentionPatterns(KernelPatternSet &patterns) {
  patterns.add(&Emitter::qProj);
  patterns.add(&Emitter::kvProj);
  patterns.add(&Emitter::ropeOp);
  patterns.add(&Emitter::windowUpdate);
  patterns.add(&Emitter::attention);
  patterns.add(&Emitter::outProj);
}
