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

#include <algorithm>
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
  if (x.ptr != y.ptr) {
    // Out of place: one grid step, a thread per unrotated channel (copied)
    // or rotated pair (from x into y, ropeRows' operations).
    RopeAttr rope = op.getRope();
    int64_t r = rope.getDim(), base = len - r, pairs = r / 2, items = base + pairs;
    Value table = ropeTable(rope);
    kb.parallelLoop(c(0), kb.mul(S(), c(rows * items)), [&](Value e) {
      Value row = kb.div(e, c(items)), k = kb.rem(e, c(items));
      View xr = kb.at(x, kb.mul(row, c(len))), yr = kb.at(y, kb.mul(row, c(len)));
      kb.ifElse(
          kb.lt(k, c(base)), TypeRange{},
          [&]() -> SmallVector<Value> {
            kb.storeF(yr, k, kb.loadF(xr, k));
            return {};
          },
          [&]() -> SmallVector<Value> {
            Value pk = kb.sub(k, c(base));
            Value phi = kb.mul(kb.toF32(pos(kb.div(row, c(rows)))),
                               kb.load(kb.f32(), table, pk));
            Value cs = kb.cos(phi), sn = kb.sin(phi);
            if (op.getInverse())
              sn = kb.neg(sn);
            Value ia = kb.add(c(base), kb.mul(pk, c(2))), ib = kb.add(ia, c(1));
            Value a = kb.loadF(xr, ia), b = kb.loadF(xr, ib);
            kb.storeF(yr, ia, kb.sub(kb.mul(a, cs), kb.mul(b, sn)));
            kb.storeF(yr, ib, kb.add(kb.mul(a, sn), kb.mul(b, cs)));
            return {};
          });
    });
    return;
  }
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
  // values) per channel. The sums' orders are fixed per token (not by the
  // spec's key order: lane-split dots, parts of the key range) and do not
  // depend on the call's token count: a token's row is the same in a
  // one-token decode, a batched decode and a prefill chunk.
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
  // The largest power of two up to `limit` that divides the heads.
  auto headGroup = [&](int64_t limit) {
    int64_t g = 1;
    while (g * 2 <= limit && h % (g * 2) == 0)
      g *= 2;
    return g;
  };
  // Phase 1: scores (-inf for a missing key), a warp per (token, key, group
  // of g1 heads): the key's segments are loaded once for the group's query
  // rows (dotRows with the query rows as f32 rows and the key as their x;
  // one butterfly for the g1 dots). The last token has the most keys (a
  // batched kernel: the token with the most). Warps of neighbouring head
  // groups read the same key.
  int64_t g1 = headGroup(4), groups1 = h / g1;
  Value most = mostOver(keysOf);
  kb.warpLoop(c(0), kb.mul(kb.mul(S(), most), c(groups1)), [&](Value e, Value lane) {
    Value hg = kb.rem(e, c(groups1)), sj = kb.div(e, c(groups1));
    Value s = kb.div(sj, most), j = kb.rem(sj, most);
    kb.ifThen(kb.lt(j, keysOf(s)), [&] {
      auto [key, valid] = keyAt(s, j);
      WeightView qs{kb.at(q, kb.mul(s, c(h * d))).ptr, Value(), q.elt, h, d};
      SmallVector<KernelBuilder::WeightRow> rows;
      for (int64_t g = 0; g < g1; ++g)
        rows.push_back({&qs, kb.add(kb.mul(hg, c(g1)), c(g))});
      SmallVector<Value> dots = kb.dotRows(key, rows, lane);
      for (int64_t g = 0; g < g1; ++g) {
        Value sh = kb.add(kb.mul(s, c(h)), rows[g].row);
        kb.storeOnce(weights, kb.add(kb.mul(sh, c(maxKeys)), j),
                     kb.select(valid, kb.mul(dots[g], kb.cf(scale)), kb.negInf()), lane);
      }
    });
  });
  // Phase 2: per (token, head), a warp: the max (with the sink), the
  // weights p = exp(score - max) and their sum; lane l takes keys l,
  // l + 32, ... (four per loop trip, so their loads overlap) and the lanes
  // meet in the warp's butterfly.
  kb.warpLoop(c(0), kb.mul(S(), c(h)), [&](Value sh, Value lane) {
    Value n = keysOf(kb.div(sh, c(h)));
    View wh = kb.at(weights, kb.mul(sh, c(maxKeys)));
    Value sinkLogit = kb.weight(sink, c(0), kb.rem(sh, c(h)));
    // Keys l, l + 32, ... below n.
    auto laneKeys = [&](Value l, Value init, function_ref<Value(Value, Value)> body) {
      Value trips = kb.div(kb.add(kb.sub(n, l), c(KernelBuilder::kLanes - 1)),
                           c(KernelBuilder::kLanes));
      return kb.reduceUnrolled(c(0), trips, 4, init, [&](Value t, Value a) {
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
  // Phase 3: out[s, h, i] = sum_j p_j key_j[i] / den. The n keys of a
  // token are cut into `parts` ranges of ceil(n / parts) consecutive keys;
  // each range's sum runs in key order from 0, and the ranges' sums are
  // added in range order (from -0, which adds exactly). A thread takes g3
  // heads and cpt channels (each key value loaded once for g3 heads; a
  // warp's lanes read consecutive channels of the key). With few tokens
  // each range is a thread of its own (then a thread per channel adds the
  // ranges' sums from scratch), so a decode step has enough threads and
  // short chains; with many tokens a thread computes the ranges in turn.
  // Same operations in the same order either way: a token's row does not
  // depend on how many tokens the call has. About 40 keys a range at the
  // most keys, 16 to 64 ranges (V4's CSA: 640 keys, 16 ranges; HCA at 1M
  // context: 8320 keys, 64 ranges).
  const int64_t parts = std::clamp<int64_t>((maxKeys + 39) / 40, 16, 64);
  int64_t cpt = d % 4 == 0 ? 4 : 1;
  int64_t g3 = headGroup(4), groups3 = h / g3, chans = d / cpt;
  // Tokens of a call that split the parts over threads: scratch of at most
  // 64 MiB for the parts' sums (32 tokens at V4's 64 heads x 512 and 16
  // parts), at least one token.
  int64_t splitTokens =
      std::clamp<int64_t>((int64_t(64) << 20) / (h * parts * d * 4), 1, 64);
  View partial = scratchF32(0, splitTokens * parts * h * d);
  // accs + p_j * key_j[c0 + i] for the group's heads, channels c0 + i.
  auto addKey = [&](Value s, View wq, Value c0, Value j, bool vec,
                    ArrayRef<Value> accs) -> SmallVector<Value> {
    auto [key, valid] = keyAt(s, j);
    Value kvals[4];
    if (vec)
      kb.targetInfo().loadF32x4(kb.builder(), kb.getLoc(), kb.at(key, c0).ptr, kvals);
    else
      for (int64_t i = 0; i < cpt; ++i)
        kvals[i] = kb.loadF(key, kb.add(c0, c(i)));
    SmallVector<Value> next(accs.begin(), accs.end());
    for (int64_t g = 0; g < g3; ++g) {
      Value pj = kb.loadF(wq, kb.add(c(g * maxKeys), j));
      for (int64_t i = 0; i < cpt; ++i)
        next[g * cpt + i] = kb.add(accs[g * cpt + i],
                                   kb.select(valid, kb.mul(pj, kvals[i]), kb.cf(0.0)));
    }
    return next;
  };
  // Keys [lo, hi), four per loop trip (their loads overlap), in order.
  auto sumKeys = [&](Value s, View wq, Value c0, Value lo, Value hi, bool vec) {
    constexpr int64_t kUnroll = 4;
    SmallVector<Value> zeros(g3 * cpt, kb.cf(0.0));
    Value trips = kb.div(kb.sub(hi, lo), c(kUnroll));
    SmallVector<Value> accs =
        kb.reduce(c(0), trips, zeros, [&](Value t, ValueRange a) {
          Value j = kb.add(lo, kb.mul(t, c(kUnroll)));
          SmallVector<Value> v(a.begin(), a.end());
          for (int64_t u = 0; u < kUnroll; ++u)
            v = addKey(s, wq, c0, kb.add(j, c(u)), vec, v);
          return v;
        });
    return kb.reduce(kb.add(lo, kb.mul(trips, c(kUnroll))), hi, accs,
                     [&](Value j, ValueRange a) {
                       return addKey(s, wq, c0, j, vec, SmallVector<Value>(a.begin(), a.end()));
                     });
  };
  // On targets with 16-byte loads: the four channels of a key as one load
  // where every key of the token is 16-byte aligned (the same for a whole
  // token, so the branch is uniform in practice).
  bool vecKeys = kb.targetInfo().wideLoads() && kv.elt.isF32() && cpt == 4;
  auto keysAligned = [&](Value s) {
    auto ok = [&](Value ptr) {
      Value addr = LLVM::PtrToIntOp::create(kb.builder(), kb.getLoc(), kb.i64(), ptr);
      return kb.eq(arith::AndIOp::create(kb.builder(), kb.getLoc(), addr, c(15)), c(0));
    };
    Value all = arith::AndIOp::create(kb.builder(), kb.getLoc(), ok(kv.ptr),
                                      ok(stateOf(op.getRing(), s)));
    if (ratio)
      all = arith::AndIOp::create(kb.builder(), kb.getLoc(), all,
                                  ok(stateOf(op.getEntries(), s)));
    return all;
  };
  // The sums of part p of token s, heads hg * g3 ..., channels c0 ...
  auto partSums = [&](Value s, Value hg, Value c0, Value p) -> SmallVector<Value> {
    Value n = keysOf(s);
    Value len = kb.div(kb.add(n, c(parts - 1)), c(parts));
    Value lo = kb.min(kb.mul(p, len), n), hi = kb.min(kb.add(lo, len), n);
    View wq = kb.at(weights, kb.mul(kb.add(kb.mul(s, c(h)), kb.mul(hg, c(g3))), c(maxKeys)));
    SmallVector<Type> types(g3 * cpt, kb.f32());
    if (!vecKeys)
      return sumKeys(s, wq, c0, lo, hi, false);
    return kb.ifElse(
        keysAligned(s), types, [&] { return sumKeys(s, wq, c0, lo, hi, true); },
        [&] { return sumKeys(s, wq, c0, lo, hi, false); });
  };
  // Head hg * g3 + g of token s, channel c0 + i: element of out.
  auto outIndex = [&](Value s, Value hg, Value c0, int64_t g, int64_t i) {
    Value head = kb.add(kb.mul(hg, c(g3)), c(g));
    return std::make_pair(kb.add(kb.mul(kb.add(kb.mul(s, c(h)), head), c(d)),
                                 kb.add(c0, c(i))),
                          kb.add(kb.mul(s, c(h)), head));
  };
  Value split = kb.le(S(), c(splitTokens));
  Value perToken = c(groups3 * chans);
  kb.parallelLoop(c(0), kb.mul(kb.mul(S(), perToken), kb.select(split, c(parts), c(1))),
                  [&](Value e) {
    Value c0 = kb.mul(kb.rem(e, c(chans)), c(cpt));
    Value hg = kb.rem(kb.div(e, c(chans)), c(groups3));
    Value rest = kb.div(e, perToken);
    kb.ifElse(
        split, TypeRange{},
        [&]() -> SmallVector<Value> {
          // Thread (s, p, hg, c0): part p's sums to partial[s, p, head, c].
          Value s = kb.div(rest, c(parts)), p = kb.rem(rest, c(parts));
          SmallVector<Value> sums = partSums(s, hg, c0, p);
          Value row = kb.mul(kb.add(kb.mul(s, c(parts)), p), c(h * d));
          for (int64_t g = 0; g < g3; ++g)
            for (int64_t i = 0; i < cpt; ++i) {
              Value head = kb.add(kb.mul(hg, c(g3)), c(g));
              kb.storeF(partial, kb.add(row, kb.add(kb.mul(head, c(d)), kb.add(c0, c(i)))),
                        sums[g * cpt + i]);
            }
          return {};
        },
        [&]() -> SmallVector<Value> {
          // Thread (s, hg, c0): every part in turn.
          Value s = rest;
          SmallVector<Value> init(g3 * cpt, kb.cf(-0.0));
          SmallVector<Value> totals =
              kb.reduce(c(0), c(parts), init, [&](Value p, ValueRange a) {
                SmallVector<Value> sums = partSums(s, hg, c0, p);
                SmallVector<Value> next;
                for (int64_t v = 0; v < g3 * cpt; ++v)
                  next.push_back(kb.add(a[v], sums[v]));
                return next;
              });
          for (int64_t g = 0; g < g3; ++g)
            for (int64_t i = 0; i < cpt; ++i) {
              auto [at, sh] = outIndex(s, hg, c0, g, i);
              kb.storeF(out, at, kb.div(totals[g * cpt + i], kb.loadF(den, sh)));
            }
          return {};
        });
  });
  // With few tokens: a thread per (token, head, channel) adds the parts'
  // sums in part order.
  kb.parallelLoop(c(0), kb.select(split, kb.mul(S(), c(h * d)), c(0)), [&](Value e) {
    Value sh = kb.div(e, c(d)), i = kb.rem(e, c(d));
    Value s = kb.div(sh, c(h)), head = kb.rem(sh, c(h));
    Value acc = kb.cf(-0.0);
    for (int64_t p = 0; p < parts; ++p)
      acc = kb.add(acc, kb.loadF(partial, kb.add(kb.mul(kb.add(kb.mul(s, c(parts)), c(p)),
                                                        c(h * d)),
                                                 kb.add(kb.mul(head, c(d)), i))));
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
  auto byToken = [&] {
    kb.warpLoop(c(0), kb.mul(S(), c(rows)), [&](Value e, Value lane) {
      Value s = kb.div(e, c(rows)), r = kb.rem(e, c(rows));
      Value grp = kb.div(r, c(per));
      View in = kb.at(o, kb.add(kb.mul(s, c(h * d)), kb.mul(grp, c(groupIn))));
      kb.storeOnce(z, e, kb.dotLanes(in, woa, r, lane), lane);
    });
  };
  // The group's input of the tile's tokens (a warp's rows lie in one group).
  auto groupInput = [&](Value firstRow) {
    return kb.at(o, kb.mul(kb.div(firstRow, c(per)), c(groupIn)));
  };
  if (ctx.fastLinear && !ctx.batched && mmaFits(woa, per) &&
      per % (8 * mmaTilesPerWarp(per)) == 0) {
    // --numerics=fast: warp tensor-core tiles (TokenTiles.cpp).
    Value tiles = kb.div(kb.add(S(), c(kMmaTokens - 1)), c(kMmaTokens));
    mmaTileDots(
        tiles, rows, mmaTilesPerWarp(per),
        [&](Value tile, Value first) {
          return mmaDenseTile(tile, groupInput(first), h * d, {woa});
        },
        [&](const MmaTile &, const MmaRow &row, Value r, ArrayRef<Value> y) {
          kb.storeF(z, kb.add(kb.mul(row.index, c(rows)), r), y[0]);
        });
  } else if (KernelBuilder::segmentsPerRow(woa, o.elt) > 0 &&
             per % rowsPerWarp(per) == 0) {
    // Prefill chunks: token tiles, the same dots as byToken's.
    branch(
        manyTokens(2 * kTileTokens),
        [&] {
          tileDots(denseTiles(), rows, rowsPerWarp(per), 1,
                   [&](Value tile, Value first) {
                     return denseTile(tile, groupInput(first), h * d, {woa});
                   },
                   [&](const TokenTile &tt, int64_t t, Value r, ArrayRef<Value> dots, Value,
                       Value lane) {
                     kb.storeOnce(z, kb.add(kb.mul(tt.tokens[t], c(rows)), r), dots[0], lane);
                   });
        },
        byToken);
  } else {
    byToken();
  }
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
