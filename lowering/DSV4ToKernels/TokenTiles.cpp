//===- TokenTiles.cpp - Weight rows read once for several tokens ---------===//
// SPDX-License-Identifier: Apache-2.0
//
// Where a call has many tokens (prefill chunks, a batched decode step of
// several sequences), a warp computes the dots of a few weight rows against
// a tile of up to kTileTokens tokens: each row
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
#include "lowering/DSV4ToKernels/TensorCoreGemm.h"
#include "lowering/TensorCore/WgmmaExperts.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"

#include <array>
#include <cassert>

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
                       function_ref<TokenTile(Value, Value)> tileOf,
                       function_ref<void(const TokenTile &, int64_t, Value,
                                         ArrayRef<Value>, Value, Value)>
                           store) {
  int64_t groups = rows / rowsPerWarp;
  kb.warpLoop(c(0), kb.mul(tiles, c(groups * parts)), [&](Value e, Value lane) {
    Value p = kb.rem(e, c(parts)), tg = kb.div(e, c(parts));
    Value tile = kb.div(tg, c(groups));
    Value first = kb.mul(kb.rem(tg, c(groups)), c(rowsPerWarp));
    TokenTile tt = tileOf(tile, first);
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
           [&](Value tile, Value) { return denseTile(tile, x, xStride, {wt}); },
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

Emitter::ExpertTiles Emitter::expertTiles(View ids, int64_t k, int64_t experts, int64_t T) {
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
  // Where each expert's slots and tiles start, from the counts.
  auto starts = [&] {
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
  };
  // Expert e's tiles, its n slots from `base` on.
  auto tilesOf = [&](Value e, Value base, Value n) {
    Value t0 = kb.load(i64, et.tileStart, e);
    kb.loop(c(0), kb.div(kb.add(n, c(T - 1)), c(T)), [&](Value i) {
      Value t = kb.add(t0, i);
      kb.store(e, et.expert, t);
      kb.store(kb.add(base, kb.mul(i, c(T))), et.first, t);
      kb.store(kb.min(c(T), kb.sub(n, kb.mul(i, c(T)))), et.count, t);
    });
  };
  if (!ctx.fastLinear) {
    // A thread per expert: its slots.
    kb.parallelLoop(c(0), c(experts), [&](Value e) {
      Value n = kb.reduce1(c(0), slots, c(0), [&](Value slot, Value acc) {
        return kb.add(acc, kb.select(isOf(slot, e), c(1), c(0)));
      });
      kb.store(n, counts, e);
    });
    starts();
    // A thread per expert: its slots in order, and its tiles.
    kb.parallelLoop(c(0), c(experts), [&](Value e) {
      Value base = kb.load(i64, slotStart, e);
      Value n = kb.reduce1(c(0), slots, c(0), [&](Value slot, Value acc) {
        Value mine = isOf(slot, e);
        kb.ifThen(mine, [&] { kb.store(slot, et.order, kb.add(base, acc)); });
        return kb.add(acc, kb.select(mine, c(1), c(0)));
      });
      tilesOf(e, base, n);
    });
    return et;
  }
  // The prefill kernels of --numerics=fast: the slots in chunks of kChunk,
  // a thread per (chunk, expert) scanning its chunk (a thread per expert
  // scanning every slot made 2 S k dependent trips, 49152 for a 4096-token
  // chunk of V4-Flash): the counts, then a thread per expert adds its
  // chunks' counts in chunk order (each chunk's start among the expert's
  // slots), then the same threads per (chunk, expert) write the slots in
  // order. The order is the same as one scan: by expert, then by slot.
  // Decode's kernels keep the scan (their code stays as it was).
  constexpr int64_t kChunk = 256;
  Value chunks = kb.div(kb.add(slots, c(kChunk - 1)), c(kChunk));
  // chunks * experts counts: at most S * k * experts / kChunk + experts.
  Value chunkCounts = ctx.scratch((k * experts * 8 + kChunk - 1) / kChunk, experts * 8);
  auto inChunk = [&](Value ce, function_ref<void(Value e, Value lb, Value ub)> body) {
    Value chunk = kb.div(ce, c(experts)), e = kb.rem(ce, c(experts));
    Value lb = kb.mul(chunk, c(kChunk));
    body(e, lb, kb.min(slots, kb.add(lb, c(kChunk))));
  };
  kb.parallelLoop(c(0), kb.mul(chunks, c(experts)), [&](Value ce) {
    inChunk(ce, [&](Value e, Value lb, Value ub) {
      Value n = kb.reduce1(lb, ub, c(0), [&](Value slot, Value acc) {
        return kb.add(acc, kb.select(isOf(slot, e), c(1), c(0)));
      });
      kb.store(n, chunkCounts, ce);
    });
  });
  kb.parallelLoop(c(0), c(experts), [&](Value e) {
    Value n = kb.reduce1(c(0), chunks, c(0), [&](Value chunk, Value acc) {
      Value at = kb.add(kb.mul(chunk, c(experts)), e);
      Value here = kb.load(i64, chunkCounts, at);
      kb.store(acc, chunkCounts, at);
      return kb.add(acc, here);
    });
    kb.store(n, counts, e);
  });
  starts();
  // A thread per (chunk, expert): the chunk's slots of the expert, in order.
  kb.parallelLoop(c(0), kb.mul(chunks, c(experts)), [&](Value ce) {
    inChunk(ce, [&](Value e, Value lb, Value ub) {
      Value base = kb.add(kb.load(i64, slotStart, e), kb.load(i64, chunkCounts, ce));
      kb.reduce1(lb, ub, c(0), [&](Value slot, Value acc) {
        Value mine = isOf(slot, e);
        kb.ifThen(mine, [&] { kb.store(slot, et.order, kb.add(base, acc)); });
        return kb.add(acc, kb.select(mine, c(1), c(0)));
      });
    });
  });
  // A thread per expert: its tiles.
  kb.parallelLoop(c(0), c(experts), [&](Value e) {
    tilesOf(e, kb.load(i64, slotStart, e), kb.load(i64, counts, e));
  });
  return et;
}

Emitter::ExpertTileHead Emitter::expertTileHead(const ExpertTiles &et, Value tile) {
  Type i64 = kb.i64();
  ExpertTileHead head;
  head.valid = kb.lt(tile, kb.load(i64, et.tileStart, c(et.experts)));
  // Past the last tile: read tile 0's entries (always there when a tile
  // is; the warp then stores nothing).
  Value at = kb.select(head.valid, tile, c(0));
  head.expert = kb.load(i64, et.expert, at);
  head.first = kb.load(i64, et.first, at);
  head.count = kb.select(head.valid, kb.load(i64, et.count, at), c(0));
  return head;
}

Emitter::TokenTile Emitter::expertTile(const ExpertTiles &et, Value tile, View x,
                                       int64_t xStride, int64_t k, bool byToken,
                                       ArrayRef<const ExpertView *> tables) {
  ExpertTileHead head = expertTileHead(et, tile);
  TokenTile tt;
  tt.valid = head.valid;
  tt.count = head.count;
  Value last = kb.sub(kb.max(tt.count, c(1)), c(1));
  for (int64_t t = 0; t < kTileTokens; ++t) {
    Value slot = kb.load(kb.i64(), et.order, kb.add(head.first, kb.min(c(t), last)));
    tt.tokens.push_back(slot);
    Value row = byToken ? kb.div(slot, c(k)) : slot;
    tt.xs.push_back(kb.at(x, kb.mul(row, c(xStride))));
  }
  for (const ExpertView *table : tables)
    tt.weights.push_back(table->expert(kb, head.expert));
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
  ExpertTiles et = expertTiles(ids, k, e1.count, kTileTokens);
  // h[slot] = SwiGLU hiddens of the slot's token through the slot's expert.
  tileDots(et.most, inter, std::max<int64_t>(1, rowsPerWarp(inter) / 2), 1,
           [&](Value tile, Value) { return expertTile(et, tile, x, dm, k, true, {&e1, &e3}); },
           [&](const TokenTile &tt, int64_t t, Value i, ArrayRef<Value> gu, Value,
               Value lane) {
             kb.storeOnce(h, kb.add(kb.mul(tt.tokens[t], c(inter)), i),
                          swiglu(gu[0], gu[1], limit), lane);
           });
  // ys[slot] = W2 of the slot's expert times h[slot].
  tileDots(et.most, dm, rowsPerWarp(dm), 1,
           [&](Value tile, Value) { return expertTile(et, tile, h, inter, k, false, {&e2}); },
           [&](const TokenTile &tt, int64_t t, Value o, ArrayRef<Value> y, Value,
               Value lane) {
             kb.storeOnce(ys, kb.add(kb.mul(tt.tokens[t], c(dm)), o), y[0], lane);
           });
  combinePicks(ys, weights, k, dm, out);
  if (shared)
    sharedExpertTiled(shared);
}

void Emitter::combinePicks(View ys, View weights, int64_t k, int64_t dm, View out) {
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
}

void Emitter::sharedExpertTiled(SharedExpertOp op) {
  WeightView w1 = w(op.getW1()), w3 = w(op.getW3()), w2 = w(op.getW2());
  int64_t dm = w1.cols, inter = w1.rows;
  View x = view(op.getX()), out = view(op.getResult());
  View h = scratchF32(inter, 0);
  double limit = op.getSwigluLimit().convertToDouble();
  int64_t units = std::max<int64_t>(1, rowsPerWarp(inter) / 2);
  tileDots(denseTiles(), inter, units, 1,
           [&](Value tile, Value) { return denseTile(tile, x, dm, {w1, w3}); },
           [&](const TokenTile &tt, int64_t t, Value i, ArrayRef<Value> gu, Value,
               Value lane) {
             kb.storeOnce(h, kb.add(kb.mul(tt.tokens[t], c(inter)), i),
                          swiglu(gu[0], gu[1], limit), lane);
           });
  tileDots(denseTiles(), dm, rowsPerWarp(dm), 1,
           [&](Value tile, Value) { return denseTile(tile, h, inter, {w2}); },
           [&](const TokenTile &tt, int64_t t, Value o, ArrayRef<Value> y, Value,
               Value lane) {
             // 0 + 1 * y, the routed experts' accumulation with one pick.
             kb.storeOnce(out, kb.add(kb.mul(tt.tokens[t], c(dm)), o),
                          kb.add(kb.cf(0.0), kb.mul(kb.cf(1.0), y[0])), lane);
           });
}

//===----------------------------------------------------------------------===//
// Warp matrix tiles (--numerics=fast): bf16 tensor-core MMAs on CUDA, the
// same products on the CPU
//===----------------------------------------------------------------------===//

void Emitter::mmaTileDots(Value tiles, int64_t rows, int64_t nTiles,
                          function_ref<MmaTile(Value, Value)> tileOf,
                          function_ref<void(const MmaTile &, const MmaRow &, Value,
                                            ArrayRef<Value>)>
                              store,
                          int64_t mTiles) {
  int64_t groupRows = 8 * nTiles, groups = rows / groupRows;
  const TargetInfo &target = kb.targetInfo();
  bool mma = target.hasWarpMmaBf16();
  kb.warpLoop(c(0), kb.mul(tiles, c(groups)), [&](Value e, Value lane) {
    Value tile = kb.div(e, c(groups));
    Value first = kb.mul(kb.rem(e, c(groups)), c(groupRows));
    MmaTile mt = tileOf(tile, first);
    int64_t nw = mt.weights.size(), K = mt.weights.front().cols;
    auto body = [&] {
      if (!mma) {
        // One thread: every row of the tile and every column of the group,
        // sum over k in order of bf16(x[k]) * w[k] (exact products, f32 sums).
        kb.loop(c(0), c(kMmaTokens * mTiles), [&](Value r) {
          MmaRow row = mt.row(r);
          kb.ifThen(row.real, [&] {
            kb.loop(c(0), c(groupRows), [&](Value j) {
              Value col = kb.add(first, j);
              SmallVector<Value> sums;
              for (const WeightView &w : mt.weights)
                sums.push_back(kb.reduce1(c(0), c(K / 8), kb.cf(0.0), [&](Value ks, Value acc) {
                  Value k0 = kb.mul(ks, c(8));
                  SmallVector<Value> v = kb.weights8(w, col, k0);
                  for (int64_t i = 0; i < 8; ++i) {
                    // A bf16 x is already rounded (roundBf16 would be the identity).
                    Value xi = kb.loadF(row.x, kb.add(k0, c(i)));
                    if (!row.x.elt.isBF16())
                      xi = kb.roundBf16(xi);
                    acc = kb.add(acc, kb.mul(xi, v[i]));
                  }
                  return acc;
                }));
              store(mt, row, col, sums);
            });
          });
        });
        return;
      }
      // Lane (g, q) = (lane / 4, lane % 4) holds A rows g and g + 8 and B
      // column g of each 8-row tile; the MMAs' k index 2q + {0, 1} and
      // 2q + 8 + {0, 1} are columns 8q + {0, 1} and 8q + {2, 3} of a 32-wide
      // step (then 8q + 4 .. 8q + 7 for the second MMA), the same for A and
      // B, so every lane reads 8 consecutive columns of x and one word (FP4),
      // two (FP8) or 16 bytes (bf16) of each weight row.
      Value g = kb.div(lane, c(4)), q = kb.rem(lane, c(4));
      // Rows g and g + 8 of each 16-row m-tile.
      SmallVector<MmaRow> r0s, r1s;
      for (int64_t mi = 0; mi < mTiles; ++mi) {
        r0s.push_back(mt.row(kb.add(g, c(16 * mi))));
        r1s.push_back(mt.row(kb.add(g, c(16 * mi + 8))));
      }
      // x in bf16 (every row of a tile is a row of one View): a lane's 8
      // columns are one 16-byte load, the fragment's words as stored; the
      // rows must be 16-byte aligned (rows of a multiple of 8 bf16 columns
      // from an aligned base: the callers' scratch).
      bool xBf16 = r0s.front().x.elt.isBF16();
      assert((xBf16 || r0s.front().x.elt.isF32()) && "mmaTileDots reads f32 or bf16 x");
      assert(K % 32 == 0 && "a lane's 8 columns stay 16-byte aligned");
      int64_t perM = nw * nTiles * 4;
      SmallVector<Value> zeros(perM * mTiles, kb.cf(0.0));
      // Two 32-wide steps a loop trip where K allows (the second step's
      // loads in flight with the first's MMAs); one with several m-tiles
      // (their loads are already several, and two steps spilled).
      int64_t unroll = mTiles == 1 && K % 64 == 0 ? 2 : 1;
      auto step = [&](Value ks, ArrayRef<Value> in) -> SmallVector<Value> {
            Value k0 = kb.add(kb.mul(ks, c(32)), kb.mul(q, c(8)));
            auto eight = [&](const View &x) {
              SmallVector<Value> xs;
              for (int64_t h = 0; h < 2; ++h) {
                Value four[4];
                target.loadF32x4(kb.builder(), kb.getLoc(),
                                 kb.offset(kb.f32(), x.ptr, kb.add(k0, c(4 * h))), four);
                xs.append(std::begin(four), std::end(four));
              }
              return xs;
            };
            // Words (0, 1), (2, 3), (4, 5), (6, 7) of the 8 bf16 columns
            // k0 .. k0 + 7 (the lower column in the low half): what
            // packBf16x2 makes of the f32 columns.
            auto eightBf16 = [&](const View &x) {
              OpBuilder &bld = kb.builder();
              Type i32 = bld.getI32Type();
              Value ptr = kb.offset(bld.getBF16Type(), x.ptr, k0);
              Value v = LLVM::LoadOp::create(bld, kb.getLoc(), VectorType::get({4}, i32), ptr,
                                             /*alignment=*/16);
              std::array<Value, 4> words;
              for (int i = 0; i < 4; ++i)
                words[i] = LLVM::ExtractElementOp::create(bld, kb.getLoc(), v, kb.c32(i));
              return words;
            };
            SmallVector<std::array<std::array<Value, 4>, 2>> as(mTiles);
            for (int64_t mi = 0; mi < mTiles; ++mi) {
              if (xBf16) {
                std::array<Value, 4> w0 = eightBf16(r0s[mi].x), w1 = eightBf16(r1s[mi].x);
                for (int64_t h = 0; h < 2; ++h) {
                  as[mi][h][0] = w0[2 * h];
                  as[mi][h][1] = w1[2 * h];
                  as[mi][h][2] = w0[2 * h + 1];
                  as[mi][h][3] = w1[2 * h + 1];
                }
                continue;
              }
              SmallVector<Value> x0 = eight(r0s[mi].x), x1 = eight(r1s[mi].x);
              for (int64_t h = 0; h < 2; ++h) {
                as[mi][h][0] = kb.packBf16x2(x0[4 * h], x0[4 * h + 1]);
                as[mi][h][1] = kb.packBf16x2(x1[4 * h], x1[4 * h + 1]);
                as[mi][h][2] = kb.packBf16x2(x0[4 * h + 2], x0[4 * h + 3]);
                as[mi][h][3] = kb.packBf16x2(x1[4 * h + 2], x1[4 * h + 3]);
              }
            }
            SmallVector<Value> out(in);
            for (int64_t wi = 0; wi < nw; ++wi)
              for (int64_t nt = 0; nt < nTiles; ++nt) {
                Value row = kb.add(kb.add(first, c(nt * 8)), g);
                std::array<Value, 4> wf = kb.weightsBf16x2(mt.weights[wi], row, k0);
                Value bf[2][2];
                for (int64_t h = 0; h < 2; ++h) {
                  bf[h][0] = wf[2 * h];
                  bf[h][1] = wf[2 * h + 1];
                }
                for (int64_t mi = 0; mi < mTiles; ++mi) {
                  size_t at = mi * perM + (wi * nTiles + nt) * 4;
                  Value d[4] = {out[at], out[at + 1], out[at + 2], out[at + 3]};
                  for (int64_t h = 0; h < 2; ++h) {
                    Value cIn[4] = {d[0], d[1], d[2], d[3]};
                    target.mmaBf16(kb.builder(), kb.getLoc(), as[mi][h], bf[h], cIn, d);
                  }
                  for (int64_t j = 0; j < 4; ++j)
                    out[at + j] = d[j];
                }
              }
            return out;
      };
      SmallVector<Value> accs = kb.reduce(
          c(0), c(K / (32 * unroll)), zeros, [&](Value it, ValueRange in) -> SmallVector<Value> {
            SmallVector<Value> acc(in);
            for (int64_t u = 0; u < unroll; ++u)
              acc = step(kb.add(kb.mul(it, c(unroll)), c(u)), acc);
            return acc;
          });
      // d[j] is row g (j < 2) or g + 8 of the m-tile, column 2q + j % 2 of
      // the 8-row tile.
      for (int64_t mi = 0; mi < mTiles; ++mi)
        for (int64_t nt = 0; nt < nTiles; ++nt)
          for (int64_t j = 0; j < 4; ++j) {
            const MmaRow &row = j < 2 ? r0s[mi] : r1s[mi];
            Value col = kb.add(kb.add(first, c(nt * 8)), kb.add(kb.mul(q, c(2)), c(j % 2)));
            SmallVector<Value> vals;
            for (int64_t wi = 0; wi < nw; ++wi)
              vals.push_back(accs[mi * perM + (wi * nTiles + nt) * 4 + j]);
            kb.ifThen(row.real, [&] { store(mt, row, col, vals); });
          }
    };
    if (mt.valid)
      kb.ifThen(mt.valid, body);
    else
      body();
  });
}

void mlir::compressa::cpu::storeBf16Pairs(KernelBuilder &kb, View x, View xb, Value n) {
  kb.parallelLoop(kb.c(0), kb.div(n, kb.c(2)), [&](Value e) {
    Value i = kb.mul(e, kb.c(2));
    Value word = kb.packBf16x2(kb.loadF(x, i), kb.loadF(x, kb.add(i, kb.c(1))));
    kb.store(word, xb.ptr, e);
  });
}

/// v[i] = bf16(x) as roundBf16 rounds it (what packBf16x2 does to a value
/// of the A fragments).
static void storeRoundedBf16(KernelBuilder &kb, View v, Value i, Value x) {
  OpBuilder &b = kb.builder();
  Value bits = arith::BitcastOp::create(b, kb.getLoc(), b.getI32Type(), kb.roundBf16(x));
  Value high = arith::ShRUIOp::create(b, kb.getLoc(), bits, kb.c32(16));
  kb.store(arith::TruncIOp::create(b, kb.getLoc(), b.getI16Type(), high), v.ptr, i);
}

Emitter::MmaTile Emitter::mmaExpertTile(const ExpertTiles &et, Value tile, View x,
                                        int64_t xStride, int64_t k, bool byToken,
                                        ArrayRef<const ExpertView *> tables) {
  ExpertTileHead head = expertTileHead(et, tile);
  MmaTile mt;
  mt.valid = head.valid;
  for (const ExpertView *table : tables)
    mt.weights.push_back(table->expert(kb, head.expert));
  Value first = head.first, count = head.count;
  mt.row = [this, &et, first, count, x, xStride, k, byToken](Value r) {
    Value last = kb.sub(kb.max(count, c(1)), c(1));
    Value slot = kb.load(kb.i64(), et.order, kb.add(first, kb.min(r, last)));
    Value xRow = byToken ? kb.div(slot, c(k)) : slot;
    return MmaRow{kb.at(x, kb.mul(xRow, c(xStride))), slot, kb.lt(r, count)};
  };
  return mt;
}

Emitter::MmaTile Emitter::mmaDenseTile(Value tile, View x, int64_t xStride,
                                       ArrayRef<WeightView> weights, int64_t tokens) {
  MmaTile mt;
  mt.weights.assign(weights.begin(), weights.end());
  Value s0 = kb.mul(tile, c(tokens));
  mt.row = [this, s0, x, xStride](Value r) {
    Value s = kb.add(s0, r);
    Value clamped = kb.min(s, kb.sub(S(), c(1)));
    return MmaRow{kb.at(x, kb.mul(clamped, c(xStride))), s, kb.lt(s, S())};
  };
  return mt;
}

bool Emitter::mmaFits(const WeightView &w, int64_t rows) {
  return (isa<Float4E2M1FNType, Float8E4M3FNType>(w.elt) || w.elt.isBF16()) &&
         w.cols % 32 == 0 && rows % 8 == 0;
}

int64_t Emitter::mmaTilesPerWarp(int64_t rows) {
  for (int64_t n : {4, 2})
    if (rows % (8 * n) == 0)
      return n;
  return 1;
}

void Emitter::expertsMma(MoeExpertsOp op, SharedExpertOp shared) {
  ExpertView e1 = ctx.experts.lookup(op.getW1()), e3 = ctx.experts.lookup(op.getW3());
  ExpertView e2 = ctx.experts.lookup(op.getW2());
  if (ctx.tensorCore && ctx.tensorCore->handlesExperts(e1, e3, e2))
    return expertsGrouped(op, shared);
  int64_t dm = e1.cols, inter = e1.rows, k = op.getIds().getType().getShape()[1];
  View x = view(op.getX()), weights = view(op.getWeights()), ids = view(op.getIds());
  View out = view(op.getResult());
  double limit = op.getSwigluLimit().convertToDouble();
  // The MMAs read x and h in bf16: x rounded once here (not once per
  // weight-row group), h stored rounded (only the w2 tiles read it, and
  // they round it anyway). Rows of dm and inter bf16 keep mmaTileDots'
  // 16-byte loads aligned.
  assert(dm % 8 == 0 && inter % 8 == 0 && x.elt.isF32());
  Type bf16 = kb.builder().getBF16Type();
  View xb{ctx.scratch(dm * 2, 0), bf16};
  View h{ctx.scratch(k * inter * 2, 0), bf16}, ys = scratchF32(k * dm, 0);
  // Tiles of two 16-slot m-tiles: each weight fragment decoded once for
  // both (the decoding, not the MMAs, bounds these warps).
  constexpr int64_t mTiles = 2;
  ExpertTiles et = expertTiles(ids, k, e1.count, kMmaTokens * mTiles);
  storeBf16Pairs(kb, x, xb, kb.mul(S(), c(dm)));
  // h[slot] = SwiGLU of the slot's token through the slot's expert; w1 and
  // w3 at the same rows in one warp, so both values of a hidden unit are in
  // the same lane.
  mmaTileDots(et.most, inter, std::max<int64_t>(1, mmaTilesPerWarp(inter) / 2),
              [&](Value tile, Value) { return mmaExpertTile(et, tile, xb, dm, k, true, {&e1, &e3}); },
              [&](const MmaTile &, const MmaRow &row, Value i, ArrayRef<Value> gu) {
                storeRoundedBf16(kb, h, kb.add(kb.mul(row.index, c(inter)), i),
                                 swiglu(gu[0], gu[1], limit));
              },
              mTiles);
  mmaTileDots(et.most, dm, mmaTilesPerWarp(dm),
              [&](Value tile, Value) { return mmaExpertTile(et, tile, h, inter, k, false, {&e2}); },
              [&](const MmaTile &, const MmaRow &row, Value o, ArrayRef<Value> y) {
                kb.storeF(ys, kb.add(kb.mul(row.index, c(dm)), o), y[0]);
              },
              mTiles);
  combinePicks(ys, weights, k, dm, out);
  if (shared)
    sharedExpertFast(shared);
}

void Emitter::expertsGrouped(MoeExpertsOp op, SharedExpertOp shared) {
  ExpertView e1 = ctx.experts.lookup(op.getW1()), e3 = ctx.experts.lookup(op.getW3());
  ExpertView e2 = ctx.experts.lookup(op.getW2());
  int64_t dm = e1.cols, inter = e1.rows, k = op.getIds().getType().getShape()[1];
  View x = view(op.getX()), weights = view(op.getWeights()), ids = view(op.getIds());
  View out = view(op.getResult());
  // The same operands as expertsMma's tiles (x and h in bf16, h rounded
  // once), in slot tiles of 128 for the grouped GEMMs' blocks.
  assert(x.elt.isF32());
  Type bf16 = kb.builder().getBF16Type();
  View xb{ctx.scratch(dm * 2, 0), bf16};
  View h{ctx.scratch(k * inter * 2, 0), bf16}, ys = scratchF32(k * dm, 0);
  ExpertTiles et = expertTiles(ids, k, e1.count, WgmmaExpertsShape::kSlotTile);
  storeBf16Pairs(kb, x, xb, kb.mul(S(), c(dm)));
  // The GEMMs' blocks past the call's last tile (up to et.most) find no
  // slots.
  Value total = kb.load(kb.i64(), et.tileStart, c(e1.count));
  kb.parallelLoop(total, et.most, [&](Value t) { kb.store(c(0), et.count, t); });
  ctx.tensorCore->experts({xb.ptr, h.ptr, ys.ptr, et.order, et.expert, et.first, et.count},
                          e1, e3, e2, k, op.getSwigluLimit().convertToDouble());
  combinePicks(ys, weights, k, dm, out);
  if (shared)
    sharedExpertFast(shared);
}

bool Emitter::sharedExpertFp8(SharedExpertOp op) {
  WeightView w1 = w(op.getW1()), w3 = w(op.getW3()), w2 = w(op.getW2());
  for (const WeightView *m : {&w1, &w3, &w2})
    if (!isa<Float8E4M3FNType>(m->elt) || !m->scale)
      return false;
  return true;
}

void Emitter::sharedExpertFast(SharedExpertOp op) {
  if (!sharedExpertFp8(op))
    return sharedExpertMma(op);
  // FP8 weights: the three linear layers as the dense ones of the fast path
  // (act_quant of x and of h, FP8 x FP8 with the weights' block scales; on
  // sm_90a the tensor-core GEMM), the clamped SwiGLU in f32 between.
  WeightView w1 = w(op.getW1()), w3 = w(op.getW3()), w2 = w(op.getW2());
  int64_t dm = w1.cols, inter = w1.rows;
  View x = view(op.getX()), out = view(op.getResult());
  View gate = scratchF32(inter, 0), up = scratchF32(inter, 0);
  double limit = op.getSwigluLimit().convertToDouble();
  fastLinearTokens(x, dm, w1, gate);
  fastLinearTokens(x, dm, w3, up);
  kb.parallelLoop(c(0), kb.mul(S(), c(inter)), [&](Value e) {
    kb.storeF(gate, e, swiglu(kb.loadF(gate, e), kb.loadF(up, e), limit));
  });
  fastLinearTokens(gate, inter, w2, out);
}

void Emitter::sharedExpertMma(SharedExpertOp op) {
  WeightView w1 = w(op.getW1()), w3 = w(op.getW3()), w2 = w(op.getW2());
  int64_t dm = w1.cols, inter = w1.rows;
  View x = view(op.getX()), out = view(op.getResult());
  // x and h in bf16, as in expertsMma.
  assert(dm % 8 == 0 && inter % 8 == 0 && x.elt.isF32());
  Type bf16 = kb.builder().getBF16Type();
  View xb{ctx.scratch(dm * 2, 0), bf16}, h{ctx.scratch(inter * 2, 0), bf16};
  double limit = op.getSwigluLimit().convertToDouble();
  constexpr int64_t mTiles = 2, tokens = kMmaTokens * mTiles;
  Value tiles = kb.div(kb.add(S(), c(tokens - 1)), c(tokens));
  storeBf16Pairs(kb, x, xb, kb.mul(S(), c(dm)));
  mmaTileDots(tiles, inter, std::max<int64_t>(1, mmaTilesPerWarp(inter) / 2),
              [&](Value tile, Value) { return mmaDenseTile(tile, xb, dm, {w1, w3}, tokens); },
              [&](const MmaTile &, const MmaRow &row, Value i, ArrayRef<Value> gu) {
                storeRoundedBf16(kb, h, kb.add(kb.mul(row.index, c(inter)), i),
                                 swiglu(gu[0], gu[1], limit));
              },
              mTiles);
  mmaTileDots(tiles, dm, mmaTilesPerWarp(dm),
              [&](Value tile, Value) { return mmaDenseTile(tile, h, inter, {w2}, tokens); },
              [&](const MmaTile &, const MmaRow &row, Value o, ArrayRef<Value> y) {
                kb.storeF(out, kb.add(kb.mul(row.index, c(dm)), o),
                          kb.add(kb.cf(0.0), kb.mul(kb.cf(1.0), y[0])));
              },
              mTiles);
}
