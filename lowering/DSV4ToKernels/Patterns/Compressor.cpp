//===- Compressor.cpp - compressor and indexer kernels -===//
// SPDX-License-Identifier: Apache-2.0
//
// dsv4.kv.compress (CSA/HCA pooling of the compressor state into entries,
// with norm and RoPE) and dsv4.attn.indexer_topk (the lightning indexer
// scores and its top-k).
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

void Emitter::compress(CompressOp op) {
  CompressorStateType st = op.getState().getType();
  int64_t m = st.getRatio(), dim = st.getDim(), width = st.getWidth();
  int64_t slots = st.getSlots();
  bool overlap = st.getOverlap();
  Type entryElt = isa<CompressedKVType>(op.getEntries().getType())
                      ? cast<CompressedKVType>(op.getEntries().getType()).getElementType()
                      : cast<IndexerKeysType>(op.getEntries().getType()).getElementType();
  // State layout: kv [slots, width] then score [slots, width], f32.
  Value statePtr = ctx.states.lookup(op.getState());
  View kvState{statePtr, kb.f32()};
  View scoreState = kb.at(kvState, c(slots * width));
  View entries{ctx.states.lookup(op.getEntries()), entryElt};
  WeightView wkv = w(op.getWkv()), wgate = w(op.getWgate()), ape = w(op.getApe());
  WeightView norm = w(op.getNorm());
  int64_t dm = wkv.cols;
  double eps = op.getEps().convertToDouble();
  View x = view(op.getX());
  View pooled = scratchF32(0, dim), pooledRms = scratchF32(0, 1);
  // Every token's kv and score rows first (independent), ...
  View kvRows = scratchF32(width, 0), scoreRows = scratchF32(width, 0);
  kb.warpLoop(c(0), kb.mul(S(), c(width)), [&](Value e, Value lane) {
    Value s = kb.div(e, c(width)), i = kb.rem(e, c(width));
    View xs = kb.at(x, kb.mul(s, c(dm)));
    SmallVector<Value> kvScore = kb.dotRows(xs, {{&wkv, i}, {&wgate, i}}, lane);
    kb.storeOnce(kvRows, e, kvScore[0], lane);
    kb.storeOnce(scoreRows, e, kb.add(kvScore[1], kb.weight(ape, kb.rem(pos(s), c(m)), i)),
                 lane);
  });
  // ... then tokens go through the state one at a time: an entry completes
  // when the token closing its window has been written (spec §5.2).
  kb.loop(c(0), S(), [&](Value s) {
    Value p = pos(s);
    Value inWindow = kb.rem(p, c(m));
    Value slot = overlap ? kb.add(inWindow, c(m)) : inWindow;
    View kvSlot = kb.at(kvState, kb.mul(slot, c(width)));
    View scSlot = kb.at(scoreState, kb.mul(slot, c(width)));
    kb.parallelLoop(c(0), c(width), [&](Value i) {
      Value row = kb.add(kb.mul(s, c(width)), i);
      kb.storeF(kvSlot, i, kb.loadF(kvRows, row));
      kb.storeF(scSlot, i, kb.loadF(scoreRows, row));
    });
    kb.ifThen(kb.eq(inWindow, c(m - 1)), [&] {
      // Per channel softmax over the window's slots. Overlapping: slots
      // 0..m-1 contribute their A half (channel i), m..2m-1 their B half
      // (channel dim + i).
      kb.parallelLoop(c(0), c(dim), [&](Value i) {
        auto channel = [&](int64_t j) {
          return overlap && j >= m ? kb.add(i, c(dim)) : i;
        };
        Value mx = kb.negInf();
        for (int64_t j = 0; j < slots; ++j)
          mx = kb.max(mx, kb.loadF(scoreState, kb.add(c(j * width), channel(j))));
        Value num = kb.cf(0.0), den = kb.cf(0.0);
        for (int64_t j = 0; j < slots; ++j) {
          Value sc = kb.loadF(scoreState, kb.add(c(j * width), channel(j)));
          // An empty slot (score -inf) weighs exactly 0.
          Value e = kb.select(kb.eq(sc, kb.negInf()), kb.cf(0.0), kb.exp(kb.sub(sc, mx)));
          num = kb.add(num, kb.mul(e, kb.loadF(kvState, kb.add(c(j * width), channel(j)))));
          den = kb.add(den, e);
        }
        kb.storeF(pooled, i, kb.div(num, den));
      });
      Value w = kb.div(p, c(m));
      View entry = kb.at(entries, kb.mul(w, c(dim)));
      rmsNormRows(pooled, entry, c(1), dim, eps, &norm, pooledRms);
      kb.single([&] { rope(entry, dim, kb.mul(w, c(m)), op.getRope(), false); });
      if (overlap) {
        // The closed window becomes the previous window of the next one.
        kb.parallelLoop(c(0), c(m * width), [&](Value i) {
          kb.storeF(kvState, i, kb.loadF(kvState, kb.add(i, c(m * width))));
          kb.storeF(scoreState, i, kb.loadF(scoreState, kb.add(i, c(m * width))));
        });
      }
    });
  });
}

void Emitter::indexer(IndexerTopkOp op) {
  IndexerKeysType keysType = op.getKeys().getType();
  int64_t m = keysType.getRatio(), di = keysType.getDim();
  int64_t heads = op.getHeads(), topk = op.getTopk();
  WeightView wqb = w(op.getWqB()), wp = w(op.getWeightsProj());
  int64_t rank = wqb.cols, dm = wp.cols;
  View keys{ctx.states.lookup(op.getKeys()), keysType.getElementType()};
  View qr = view(op.getQr()), x = view(op.getX()), out = view(op.getIndices());
  int64_t capacity = ctx.maxContext / m;
  View q = scratchF32(heads * di, 0);
  View hw = scratchF32(heads, 0);
  View scores = scratchF32(capacity, 0);
  double headScale = 1.0 / std::sqrt(double(di)) / std::sqrt(double(heads));
  // Entries visible to token s: those completed by position pos(s).
  auto avail = [&](Value s) { return kb.div(kb.add(pos(s), c(1)), c(m)); };
  linearTokens(qr, rank, wqb, q);
  ropeRows(q, kb.mul(S(), c(heads)), di, [&](Value e) { return pos(kb.div(e, c(heads))); },
           op.getRope(), false);
  kb.warpLoop(c(0), kb.mul(S(), c(heads)), [&](Value e, Value lane) {
    Value s = kb.div(e, c(heads)), h = kb.rem(e, c(heads));
    Value dotv = kb.dotLanes(kb.at(x, kb.mul(s, c(dm))), wp, h, lane);
    kb.storeOnce(hw, e, kb.mul(dotv, kb.cf(headScale)), lane);
  });
  // q transposed per token to [di][heads], so that the lanes of a warp,
  // one head each, read consecutive floats.
  View qt = scratchF32(heads * di, 0);
  kb.parallelLoop(c(0), kb.mul(S(), c(heads * di)), [&](Value e) {
    Value s = kb.div(e, c(heads * di)), r = kb.rem(e, c(heads * di));
    Value h = kb.div(r, c(di)), i = kb.rem(r, c(di));
    kb.storeF(qt, kb.add(kb.mul(s, c(heads * di)), kb.add(kb.mul(i, c(heads)), h)),
              kb.loadF(q, e));
  });
  // Scores of every (token, visible entry), a warp each (the last token
  // sees the most): lane l takes heads l, l + 32, ..., each a dot over the
  // di channels in order, weighted by its head weight after the ReLU; the
  // lanes' sums meet in the warp's butterfly. The entry's key is read once
  // for all heads.
  Value most = avail(kb.sub(S(), c(1)));
  int64_t perLane = (heads + KernelBuilder::kLanes - 1) / KernelBuilder::kLanes;
  kb.warpLoop(c(0), kb.mul(S(), most), [&](Value e, Value lane) {
    Value s = kb.div(e, most), j = kb.rem(e, most);
    kb.ifThen(kb.lt(j, avail(s)), [&] {
      View qs = kb.at(qt, kb.mul(s, c(heads * di))), hws = kb.at(hw, kb.mul(s, c(heads)));
      View key = kb.at(keys, kb.mul(j, c(di)));
      Value score = kb.laneTotals(lane, 1, [&](Value l) -> SmallVector<Value> {
        Value acc = kb.cf(0.0);
        for (int64_t t = 0; t < perLane; ++t) {
          Value h = kb.add(l, c(t * KernelBuilder::kLanes));
          Value exists = kb.lt(h, c(heads));
          Value hc = kb.min(h, c(heads - 1));
          Value dotv = kb.reduceUnrolled(c(0), c(di), 8, kb.cf(0.0), [&](Value i, Value a) {
            return kb.add(a, kb.mul(kb.loadF(qs, kb.add(kb.mul(i, c(heads)), hc)),
                                    kb.loadF(key, i)));
          });
          Value term = kb.mul(kb.loadF(hws, hc), kb.max(dotv, kb.cf(0.0)));
          acc = kb.add(acc, kb.select(exists, term, kb.cf(0.0)));
        }
        return {acc};
      })[0];
      kb.storeOnce(scores, kb.add(kb.mul(s, c(capacity)), j), score, lane);
    });
  });
  // The top-k of each token, -1 where fewer are visible. Entry i of the n
  // visible ones has rank #{l : score_l > score_i} + #{l < i : score_l ==
  // score_i}: the place it takes in the order of descending score, ties to
  // the lower index (the order of repeated argmax), and it is picked, at
  // out[rank], when rank < min(topk, n). Every (token, entry) ranks itself
  // independently, so the selection spreads over all threads.
  kb.parallelLoop(c(0), kb.mul(S(), c(topk)), [&](Value e) {
    kb.store(kb.truncI32(c(-1)), out.ptr, e);
  });
  kb.parallelLoop(c(0), kb.mul(S(), most), [&](Value e) {
    Value s = kb.div(e, most), i = kb.rem(e, most);
    Value n = avail(s);
    kb.ifThen(kb.lt(i, n), [&] {
      View row = kb.at(scores, kb.mul(s, c(capacity)));
      Value v = kb.loadF(row, i);
      Value rank = kb.reduce1(c(0), n, c(0), [&](Value l, Value r) {
        Value u = kb.loadF(row, l);
        Value before = arith::OrIOp::create(
            kb.builder(), kb.getLoc(), kb.gt(u, v),
            arith::AndIOp::create(kb.builder(), kb.getLoc(), kb.eq(u, v),
                                  kb.lt(l, i)));
        return kb.add(r, kb.select(before, c(1), c(0)));
      });
      kb.ifThen(kb.lt(rank, kb.min(c(topk), n)), [&] {
        kb.store(kb.truncI32(i), out.ptr, kb.add(kb.mul(s, c(topk)), rank));
      });
    });
  });
}

void mlir::compressa::cpu::populateCompressorPatterns(KernelPatternSet &patterns) {
  patterns.add(&Emitter::compress);
  patterns.add(&Emitter::indexer);
}
