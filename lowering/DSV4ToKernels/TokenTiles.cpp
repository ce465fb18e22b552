//===- TokenTiles.cpp - Weight rows read once for several tokens ---------===//
// SPDX-License-Identifier: Apache-2.0
//
// Where a call has many tokens (prefill chunks), a warp computes the dots of
// a few weight rows against a tile of up to kTileTokens tokens: each row
// segment is loaded and decoded once for the tile (KernelBuilder::dotRows
// shares a repeated row), instead of once per token. The routed experts
// first sort their (token, pick) slots by expert, so that a tile holds
// slots of one expert. Every dot takes the same operations in the same
// order as the per-token code (dotRows per entry, the same split parts),
// so both paths give the same bits; which one runs is a uniform branch on
// the call's token count.
//
//===----------------------------------------------------------------------===//

#include "lowering/DSV4ToKernels/Emitter.h"

using namespace mlir;
using namespace mlir::compressa;
using namespace mlir::compressa::cpu;
using namespace mlir::dsv4;

void Emitter::branch(Value cond, function_ref<void()> then,
                     function_ref<void()> otherwise) {
  kb.ifThen(cond, then);
  kb.ifThen(kb.eq(cond, kb.eq(c(0), c(1))), otherwise);
}

Value Emitter::manyTokens(int64_t itemsPerTile) {
  return kb.le(c(itemsPerTile), S());
}

Value Emitter::swiglu(Value gate, Value up, double limit) {
  Value g = kb.min(gate, kb.cf(limit));
  Value u = kb.max(kb.min(up, kb.cf(limit)), kb.cf(-limit));
  return kb.mul(kb.silu(g), u);
}

void Emitter::tileDots(Value tiles, int64_t rows, int64_t rowsPerWarp, int64_t parts,
                       function_ref<TokenTile(Value)> tileOf,
                       function_ref<void(const TokenTile &, int64_t, Value,
                                         ArrayRef<Value>, Value, Value)>
                           store) {
  int64_t groups = rows / rowsPerWarp;
  kb.warpLoop(c(0), kb.mul(tiles, c(groups * parts)), [&](Value e, Value lane) {
    Value p = kb.rem(e, c(parts)), tg = kb.div(e, c(parts));
    Value tile = kb.div(tg, c(groups));
    Value first = kb.mul(kb.rem(tg, c(groups)), c(rowsPerWarp));
    TokenTile tt = tileOf(tile);
    auto body = [&] {
      const WeightView &w0 = tt.weights.front();
      int64_t count = KernelBuilder::segmentsPerRow(w0, tt.xs.front().elt) / parts;
      SmallVector<Value> rowIds;
      for (int64_t r = 0; r < rowsPerWarp; ++r)
        rowIds.push_back(kb.add(first, c(r)));
      SmallVector<KernelBuilder::WeightRow> entries;
      for (const View &x : tt.xs)
        for (Value row : rowIds)
          for (const WeightView &w : tt.weights)
            entries.push_back({&w, row, &x});
      SmallVector<Value> dots =
          parts > 1 ? kb.dotRows(tt.xs.front(), entries, lane, kb.mul(p, c(count)), count)
                    : kb.dotRows(tt.xs.front(), entries, lane);
      size_t nw = tt.weights.size();
      for (size_t t = 0; t < tt.xs.size(); ++t)
        kb.ifThen(kb.lt(c(t), tt.count), [&] {
          for (int64_t r = 0; r < rowsPerWarp; ++r)
            store(tt, int64_t(t), rowIds[r],
                  ArrayRef<Value>(dots).slice((t * rowsPerWarp + r) * nw, nw), p, lane);
        });
    };
    if (tt.valid)
      kb.ifThen(tt.valid, body);
    else
      body();
  });
}

int64_t Emitter::rowsPerWarp(int64_t rows) {
  for (int64_t r : {4, 2})
    if (rows % r == 0)
      return r;
  return 1;
}

Emitter::TokenTile Emitter::denseTile(Value tile, View x, int64_t xStride,
                                      ArrayRef<WeightView> weights) {
  TokenTile tt;
  Value s0 = kb.mul(tile, c(kTileTokens));
  tt.count = kb.min(c(kTileTokens), kb.sub(S(), s0));
  for (int64_t t = 0; t < kTileTokens; ++t) {
    Value s = kb.min(kb.add(s0, c(t)), kb.sub(S(), c(1)));
    tt.tokens.push_back(kb.add(s0, c(t)));
    tt.xs.push_back(kb.at(x, kb.mul(s, c(xStride))));
  }
  tt.weights.assign(weights.begin(), weights.end());
  return tt;
}

Value Emitter::denseTiles() {
  return kb.div(kb.add(S(), c(kTileTokens - 1)), c(kTileTokens));
}

void Emitter::linearTokenTiles(View x, int64_t xStride, const WeightView &wt, View out) {
  int64_t parts = splitParts(wt, wt.rows, x.elt), rows = wt.rows;
  View partial = parts > 1 ? scratchF32(rows * parts, 0) : out;
  tileDots(denseTiles(), rows, rowsPerWarp(rows), parts,
           [&](Value tile) { return denseTile(tile, x, xStride, {wt}); },
           [&](const TokenTile &tt, int64_t t, Value row, ArrayRef<Value> dots, Value p,
               Value lane) {
             Value at = kb.add(kb.mul(tt.tokens[t], c(rows)), row);
             if (parts > 1)
               at = kb.add(kb.mul(at, c(parts)), p);
             kb.storeOnce(partial, at, dots[0], lane);
           });
  if (parts == 1)
    return;
  // The parts in order, as splitDots adds them.
  kb.parallelLoop(c(0), kb.mul(S(), c(rows)), [&](Value e) {
    View pt = kb.at(partial, kb.mul(e, c(parts)));
    Value acc = kb.loadF(pt, c(0));
    for (int64_t q = 1; q < parts; ++q)
      acc = kb.add(acc, kb.loadF(pt, c(q)));
    kb.storeF(out, e, acc);
  });
}

Emitter::ExpertTiles Emitter::expertTiles(View ids, int64_t k, int64_t experts) {
  int64_t T = kTileTokens;
  Type i64 = kb.i64(), i32 = kb.builder().getI32Type();
  auto ints = [&](int64_t perToken, int64_t fixed) {
    return ctx.scratch(perToken * 8, fixed * 8);
  };
  ExpertTiles et;
  Value counts = ints(0, experts), slotStart = ints(0, experts);
  et.tileStart = ints(0, experts + 1);
  et.order = ints(k, 0);
  // At most ceil(S k / T) + experts tiles.
  et.expert = ints(k, experts);
  et.first = ints(k, experts);
  et.count = ints(k, experts);
  et.experts = experts;
  et.most = kb.add(kb.div(kb.add(kb.mul(S(), c(k)), c(T - 1)), c(T)), c(experts));
  Value slots = kb.mul(S(), c(k));
  auto expertOf = [&](Value slot) { return kb.toI64(kb.load(i32, ids.ptr, slot)); };
  auto isOf = [&](Value slot, Value e) { return kb.eq(expertOf(slot), e); };
  // A thread per expert: its slots.
  kb.parallelLoop(c(0), c(experts), [&](Value e) {
    Value n = kb.reduce1(c(0), slots, c(0), [&](Value slot, Value acc) {
      return kb.add(acc, kb.select(isOf(slot, e), c(1), c(0)));
    });
    kb.store(n, counts, e);
  });
  // Where each expert's slots and tiles start.
  kb.single([&] {
    SmallVector<Value> totals = kb.reduce(
        c(0), c(experts), {c(0), c(0)}, [&](Value e, ValueRange acc) -> SmallVector<Value> {
          Value n = kb.load(i64, counts, e);
          kb.store(acc[0], slotStart, e);
          kb.store(acc[1], et.tileStart, e);
          return {kb.add(acc[0], n), kb.add(acc[1], kb.div(kb.add(n, c(T - 1)), c(T)))};
        });
    kb.store(totals[1], et.tileStart, c(experts));
  });
  // A thread per expert: its slots in order, and its tiles.
  kb.parallelLoop(c(0), c(experts), [&](Value e) {
    Value base = kb.load(i64, slotStart, e);
    Value n = kb.reduce1(c(0), slots, c(0), [&](Value slot, Value acc) {
      Value mine = isOf(slot, e);
      kb.ifThen(mine, [&] { kb.store(slot, et.order, kb.add(base, acc)); });
      return kb.add(acc, kb.select(mine, c(1), c(0)));
    });
    Value t0 = kb.load(i64, et.tileStart, e);
    kb.loop(c(0), kb.div(kb.add(n, c(T - 1)), c(T)), [&](Value i) {
      Value t = kb.add(t0, i);
      kb.store(e, et.expert, t);
      kb.store(kb.add(base, kb.mul(i, c(T))), et.first, t);
      kb.store(kb.min(c(T), kb.sub(n, kb.mul(i, c(T)))), et.count, t);
    });
  });
  return et;
}

Emitter::TokenTile Emitter::expertTile(const ExpertTiles &et, Value tile, View x,
                                       int64_t xStride, int64_t k, bool byToken,
                                       ArrayRef<const ExpertView *> tables) {
  Type i64 = kb.i64();
  TokenTile tt;
  tt.valid = kb.lt(tile, kb.load(i64, et.tileStart, c(et.experts)));
  // Past the last tile: read tile 0's entries (always there when a tile
  // is; the warp then stores nothing).
  Value at = kb.select(tt.valid, tile, c(0));
  Value ex = kb.load(i64, et.expert, at), first = kb.load(i64, et.first, at);
  tt.count = kb.select(tt.valid, kb.load(i64, et.count, at), c(0));
  Value last = kb.sub(kb.max(tt.count, c(1)), c(1));
  for (int64_t t = 0; t < kTileTokens; ++t) {
    Value slot = kb.load(i64, et.order, kb.add(first, kb.min(c(t), last)));
    tt.tokens.push_back(slot);
    Value row = byToken ? kb.div(slot, c(k)) : slot;
    tt.xs.push_back(kb.at(x, kb.mul(row, c(xStride))));
  }
  for (const ExpertView *table : tables)
    tt.weights.push_back(table->expert(kb, ex));
  return tt;
}

void Emitter::expertsTiled(MoeExpertsOp op, SharedExpertOp shared) {
  ExpertView e1 = ctx.experts.lookup(op.getW1()), e3 = ctx.experts.lookup(op.getW3());
  ExpertView e2 = ctx.experts.lookup(op.getW2());
  int64_t dm = e1.cols, inter = e1.rows, k = op.getIds().getType().getShape()[1];
  View x = view(op.getX()), weights = view(op.getWeights()), ids = view(op.getIds());
  View out = view(op.getResult());
  double limit = op.getSwigluLimit().convertToDouble();
  View h = scratchF32(k * inter, 0), ys = scratchF32(k * dm, 0);
  ExpertTiles et = expertTiles(ids, k, e1.count);
  // h[slot] = SwiGLU hiddens of the slot's token through the slot's expert.
  tileDots(et.most, inter, std::max<int64_t>(1, rowsPerWarp(inter) / 2), 1,
           [&](Value tile) { return expertTile(et, tile, x, dm, k, true, {&e1, &e3}); },
           [&](const TokenTile &tt, int64_t t, Value i, ArrayRef<Value> gu, Value,
               Value lane) {
             kb.storeOnce(h, kb.add(kb.mul(tt.tokens[t], c(inter)), i),
                          swiglu(gu[0], gu[1], limit), lane);
           });
  // ys[slot] = W2 of the slot's expert times h[slot].
  tileDots(et.most, dm, rowsPerWarp(dm), 1,
           [&](Value tile) { return expertTile(et, tile, h, inter, k, false, {&e2}); },
           [&](const TokenTile &tt, int64_t t, Value o, ArrayRef<Value> y, Value,
               Value lane) {
             kb.storeOnce(ys, kb.add(kb.mul(tt.tokens[t], c(dm)), o), y[0], lane);
           });
  // out[s, o] = sum over the k picks, in order, of weight_j * ys[s k + j, o]
  // (routedDown's sum).
  kb.parallelLoop(c(0), kb.mul(S(), c(dm)), [&](Value e) {
    Value s = kb.div(e, c(dm)), o = kb.rem(e, c(dm));
    Value acc = kb.cf(0.0);
    for (int64_t j = 0; j < k; ++j) {
      Value slot = kb.add(kb.mul(s, c(k)), c(j));
      acc = kb.add(acc, kb.mul(kb.loadF(weights, slot),
                               kb.loadF(ys, kb.add(kb.mul(slot, c(dm)), o))));
    }
    kb.storeF(out, e, acc);
  });
  if (shared)
    sharedExpertTiled(shared);
}

void Emitter::sharedExpertTiled(SharedExpertOp op) {
  WeightView w1 = w(op.getW1()), w3 = w(op.getW3()), w2 = w(op.getW2());
  int64_t dm = w1.cols, inter = w1.rows;
  View x = view(op.getX()), out = view(op.getResult());
  View h = scratchF32(inter, 0);
  double limit = op.getSwigluLimit().convertToDouble();
  int64_t units = std::max<int64_t>(1, rowsPerWarp(inter) / 2);
  tileDots(denseTiles(), inter, units, 1,
           [&](Value tile) { return denseTile(tile, x, dm, {w1, w3}); },
           [&](const TokenTile &tt, int64_t t, Value i, ArrayRef<Value> gu, Value,
               Value lane) {
             kb.storeOnce(h, kb.add(kb.mul(tt.tokens[t], c(inter)), i),
                          swiglu(gu[0], gu[1], limit), lane);
           });
  tileDots(denseTiles(), dm, rowsPerWarp(dm), 1,
           [&](Value tile) { return denseTile(tile, h, inter, {w2}); },
           [&](const TokenTile &tt, int64_t t, Value o, ArrayRef<Value> y, Value,
               Value lane) {
             // 0 + 1 * y, the routed experts' accumulation with one pick.
             kb.storeOnce(out, kb.add(kb.mul(tt.tokens[t], c(dm)), o),
                          kb.add(kb.cf(0.0), kb.mul(kb.cf(1.0), y[0])), lane);
           });
}
