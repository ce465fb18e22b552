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
#include "lowering/DSV4ToKernels/TensorCoreGemm.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"

#include <cmath>

using namespace mlir;
using namespace mlir::compressa;
using namespace mlir::compressa::cpu;
using namespace mlir::dsv4;

// The softmax over a window's slots of their scores (score(j), -inf for an
// empty slot, which weighs exactly 0), weighting their kv values (kv(j)):
// one channel of a compressed entry.
static Value poolSlots(KernelBuilder &kb, int64_t slots, function_ref<Value(int64_t)> score,
                       function_ref<Value(int64_t)> kv) {
  Value mx = kb.negInf();
  for (int64_t j = 0; j < slots; ++j)
    mx = kb.max(mx, score(j));
  Value num = kb.cf(0.0), den = kb.cf(0.0);
  for (int64_t j = 0; j < slots; ++j) {
    Value sc = score(j);
    Value e = kb.select(kb.eq(sc, kb.negInf()), kb.cf(0.0), kb.exp(kb.sub(sc, mx)));
    num = kb.add(num, kb.mul(e, kv(j)));
    den = kb.add(den, e);
  }
  return kb.div(num, den);
}

// Channel i of a compressed entry: poolSlots over the state's slots.
// Overlapping: slots 0..m-1 contribute their A half (channel i), m..2m-1
// their B half (channel dim + i).
Value Emitter::poolChannel(View kvState, View scoreState, Value i, int64_t slots,
                           int64_t width, bool overlap, int64_t m, int64_t dim) {
  auto at = [&](int64_t j) {
    return kb.add(c(j * width), overlap && j >= m ? kb.add(i, c(dim)) : i);
  };
  return poolSlots(
      kb, slots, [&](int64_t j) { return kb.loadF(scoreState, at(j)); },
      [&](int64_t j) { return kb.loadF(kvState, at(j)); });
}

// Calls of at least this many tokens (non-batched) take compressChunk; a
// decode step (S = 1) the token loop.
static constexpr int64_t kChunkTokens = 2;

// The compressor of a prefill chunk (a non-batched call of S >= 2 tokens at
// positions startPos .. startPos + S - 1) in a few parallel steps instead of
// compress()'s token loop, with the same operations per element: the state
// and the entries end as that loop leaves them.
//
// The slots an entry pools hold, when the loop pools it, the rows of its
// window's positions (overlapping: slots 0..m-1 those of the previous
// window); the row of position q is the chunk's row q - startPos where q >=
// startPos, and otherwise still in the state as the call found it: in the
// current window's slot q mod m (+ m overlapping) while q's window is still
// open at startPos, and (overlapping) in the previous window's slot q mod m
// when it closed before (with q < 0: the reset values there, as the loop
// reads them).
static void compressChunk(Emitter &em, CompressOp op, View kvRows, View scoreRows) {
  KernelBuilder &kb = em.kb;
  auto c = [&](int64_t v) { return kb.c(v); };
  CompressorStateType st = op.getState().getType();
  int64_t m = st.getRatio(), dim = st.getDim(), width = st.getWidth();
  int64_t slots = st.getSlots();
  bool overlap = st.getOverlap();
  Type entryElt = isa<CompressedKVType>(op.getEntries().getType())
                      ? cast<CompressedKVType>(op.getEntries().getType()).getElementType()
                      : cast<IndexerKeysType>(op.getEntries().getType()).getElementType();
  WeightView norm = em.w(op.getNorm());
  double eps = op.getEps().convertToDouble();
  Value start = em.ctx.startPos, S = em.S();
  // State layout: kv [slots, width] then score [slots, width], f32.
  View kvState{em.stateOf(op.getState(), c(0)), kb.f32()};
  View scoreState = kb.at(kvState, c(slots * width));
  View entries{em.stateOf(op.getEntries(), c(0)), entryElt};
  int64_t cur = overlap ? m : 0; // the current window's first slot
  // The kv and score rows of position q, in the chunk where q >= startPos,
  // else the state's `stateSlot`.
  auto rowOf = [&](Value q, Value stateSlot) -> std::pair<View, View> {
    Value inChunk = kb.le(start, q);
    Value s = kb.max(kb.sub(q, start), c(0));
    auto pick = [&](const View &rows, const View &state) {
      Value chunkRow = kb.at(rows, kb.mul(s, c(width))).ptr;
      Value stateRow = kb.at(state, kb.mul(stateSlot, c(width))).ptr;
      return View{LLVM::SelectOp::create(kb.builder(), kb.getLoc(), inChunk, chunkRow, stateRow),
                  kb.f32()};
    };
    return {pick(kvRows, kvState), pick(scoreRows, scoreState)};
  };
  // The windows that close in the chunk: w0 .. w0 + n - 1 (n <= S).
  Value w0 = kb.div(start, c(m));
  Value n = kb.sub(kb.div(kb.add(start, S), c(m)), w0);
  View pooled = em.scratchF32(dim, 0), rms = em.scratchF32(1, 0);
  kb.parallelLoop(c(0), kb.mul(n, c(dim)), [&](Value e) {
    Value w = kb.add(w0, kb.div(e, c(dim))), i = kb.rem(e, c(dim));
    SmallVector<View> kvs, scores;
    SmallVector<Value> channels;
    for (int64_t j = 0; j < slots; ++j) {
      std::pair<View, View> row;
      if (overlap && j < m) {
        // The previous window's position: still in the current window's
        // slots where that window was open at startPos (w m > startPos).
        Value q = kb.add(kb.mul(kb.sub(w, c(1)), c(m)), c(j));
        row = rowOf(q, kb.select(kb.lt(start, kb.mul(w, c(m))), c(m + j), c(j)));
        channels.push_back(i);
      } else {
        row = rowOf(kb.add(kb.mul(w, c(m)), c(j - cur)), c(j));
        channels.push_back(overlap ? kb.add(i, c(dim)) : i);
      }
      kvs.push_back(row.first);
      scores.push_back(row.second);
    }
    kb.storeF(pooled, e,
              poolSlots(
                  kb, slots, [&](int64_t j) { return kb.loadF(scores[j], channels[j]); },
                  [&](int64_t j) { return kb.loadF(kvs[j], channels[j]); }));
  });
  // The entries: RMS norm (rmsNormRows, a warp per row as for one), then
  // RoPE at each window's first position.
  View first = kb.at(entries, kb.mul(w0, c(dim)));
  em.rmsNormRows(pooled, first, n, dim, eps, &norm, rms);
  em.ropeRows(
      first, n, dim, [&](Value row) { return kb.mul(kb.add(w0, row), c(m)); }, op.getRope(),
      false);
  // The state after the chunk. Overlapping, where a window closed in the
  // chunk: the previous window's slots hold the last one's rows (read from
  // the chunk or the current window's slots, written before those change).
  if (overlap)
    kb.parallelLoop(c(0), c(m * width), [&](Value e) {
      Value j = kb.div(e, c(width)), i = kb.rem(e, c(width));
      kb.ifThen(kb.lt(c(0), n), [&] {
        Value last = kb.sub(kb.add(w0, n), c(1));
        std::pair<View, View> row = rowOf(kb.add(kb.mul(last, c(m)), j), kb.add(j, c(m)));
        Value at = kb.add(kb.mul(j, c(width)), i);
        kb.storeF(kvState, at, kb.loadF(row.first, i));
        kb.storeF(scoreState, at, kb.loadF(row.second, i));
      });
    });
  // The current window's slot j: the row of the chunk's last position q = j
  // mod m, where there is one.
  kb.parallelLoop(c(0), c(m * width), [&](Value e) {
    Value j = kb.div(e, c(width)), i = kb.rem(e, c(width));
    Value end = kb.sub(kb.add(start, S), c(1));
    Value q = kb.sub(end, kb.rem(kb.add(kb.sub(end, j), c(m)), c(m)));
    kb.ifThen(kb.le(start, q), [&] {
      Value from = kb.add(kb.mul(kb.sub(q, start), c(width)), i);
      Value at = kb.add(kb.mul(kb.add(j, c(cur)), c(width)), i);
      kb.storeF(kvState, at, kb.loadF(kvRows, from));
      kb.storeF(scoreState, at, kb.loadF(scoreRows, from));
    });
  });
}

void Emitter::compress(CompressOp op) {
  CompressorStateType st = op.getState().getType();
  int64_t m = st.getRatio(), dim = st.getDim(), width = st.getWidth();
  int64_t slots = st.getSlots();
  bool overlap = st.getOverlap();
  Type entryElt = isa<CompressedKVType>(op.getEntries().getType())
                      ? cast<CompressedKVType>(op.getEntries().getType()).getElementType()
                      : cast<IndexerKeysType>(op.getEntries().getType()).getElementType();
  WeightView wkv = w(op.getWkv()), wgate = w(op.getWgate()), ape = w(op.getApe());
  WeightView norm = w(op.getNorm());
  int64_t dm = wkv.cols;
  double eps = op.getEps().convertToDouble();
  View x = view(op.getX());
  // Every token's kv and score rows first (independent), ...
  View kvRows = scratchF32(width, 0), scoreRows = scratchF32(width, 0);
  // By the warp's lane 0 (`lane`), or by the calling thread without one.
  // The score row's position term.
  auto apeAt = [&](Value s, Value i) { return kb.weight(ape, kb.rem(pos(s), c(m)), i); };
  auto storeRows = [&](Value s, Value i, Value kv, Value score, Value lane) {
    Value e = kb.add(kb.mul(s, c(width)), i);
    score = kb.add(score, apeAt(s, i));
    if (lane) {
      kb.storeOnce(kvRows, e, kv, lane);
      kb.storeOnce(scoreRows, e, score, lane);
    } else {
      kb.storeF(kvRows, e, kv);
      kb.storeF(scoreRows, e, score);
    }
  };
  // Each row's two dots split in `parts` ranges of segments (as splitDots),
  // a warp each in calls of fewer than kTileCalls tokens, so that a decode
  // step has about 2048 warps reading the two matrices instead of `width`
  // (256 for V4's indexer, 6 % of an H200's warps, each waiting on 8 trips
  // to memory); prefill tiles take the same parts (the same bits). The
  // parts are added in part order where a decode step reads the rows
  // (splitKv, splitScore), and stored for compressChunk.
  constexpr int64_t kTileCalls = 16;
  int64_t segs = KernelBuilder::segmentsPerRow(wkv, x.elt);
  int64_t parts = KernelBuilder::segmentsPerRow(wgate, x.elt) == segs
                      ? splitParts(wkv, width, x.elt, /*items=*/2048)
                      : 1;
  bool mma = !ctx.batched && ctx.fastLinear && mmaFits(wkv, width) && mmaFits(wgate, width);
  int64_t partsPerToken = mma ? 0 : width * parts;
  View kvPart = scratchF32(partsPerToken, 0), scorePart = scratchF32(partsPerToken, 0);
  auto storePart = [&](Value s, Value i, Value p, Value kv, Value score, Value lane) {
    Value at = kb.add(kb.mul(kb.add(kb.mul(s, c(width)), i), c(parts)), p);
    kb.storeOnce(kvPart, at, kv, lane);
    kb.storeOnce(scorePart, at, score, lane);
  };
  auto rowsSplit = [&] {
    kb.warpLoop(c(0), kb.mul(S(), c(width * parts)), [&](Value e, Value lane) {
      Value t = kb.div(e, c(parts)), p = kb.rem(e, c(parts));
      Value s = kb.div(t, c(width)), i = kb.rem(t, c(width));
      View xs = kb.at(x, kb.mul(s, c(dm)));
      SmallVector<Value> kvScore =
          parts > 1 ? kb.dotRows(xs, {{&wkv, i}, {&wgate, i}}, lane, kb.mul(p, c(segs / parts)),
                                 segs / parts)
                    : kb.dotRows(xs, {{&wkv, i}, {&wgate, i}}, lane);
      storePart(s, i, p, kvScore[0], kvScore[1], lane);
    });
  };
  // Row element (s, i) of rowsSplit (the score with its ape term, as
  // storeRows adds it).
  auto splitKv = [&](Value s, Value i) {
    return sumParts(kvPart, kb.add(kb.mul(s, c(width)), i), parts);
  };
  auto splitScore = [&](Value s, Value i) {
    return kb.add(sumParts(scorePart, kb.add(kb.mul(s, c(width)), i), parts), apeAt(s, i));
  };
  auto storedKv = [&](Value s, Value i) {
    return kb.loadF(kvRows, kb.add(kb.mul(s, c(width)), i));
  };
  auto storedScore = [&](Value s, Value i) {
    return kb.loadF(scoreRows, kb.add(kb.mul(s, c(width)), i));
  };
  if (ctx.batched) {
    rowsSplit();
    return compressBatched(op, splitKv, splitScore);
  }
  if (mma) {
    // --numerics=fast (prefill): warp tensor-core tiles (TokenTiles.cpp),
    // wkv and wgate at the same rows in one warp, so that both dots of a row
    // are in the same lane. Two m-tiles and half the 8-row tiles a warp
    // could take, as the shared expert's two weights: within the registers
    // (V4-Flash's CSA compressor kernel does not spill).
    constexpr int64_t mTiles = 2, tokens = kMmaTokens * mTiles;
    Value tiles = kb.div(kb.add(S(), c(tokens - 1)), c(tokens));
    mmaTileDots(
        tiles, width, std::max<int64_t>(1, mmaTilesPerWarp(width) / 2),
        [&](Value tile, Value) { return mmaDenseTile(tile, x, dm, {wkv, wgate}, tokens); },
        [&](const MmaTile &, const MmaRow &row, Value i, ArrayRef<Value> dots) {
          storeRows(row.index, i, dots[0], dots[1], Value());
        },
        mTiles);
  } else {
    // Prefill chunks: in token tiles (wkv and wgate rows read once per tile;
    // the same dots).
    branch(
        manyTokens(kTileCalls),
        [&] {
          tileDots(
              denseTiles(), width, rowsPerWarp(width), parts,
              [&](Value tile, Value) { return denseTile(tile, x, dm, {wkv, wgate}); },
              [&](const TokenTile &tt, int64_t t, Value i, ArrayRef<Value> dots, Value p,
                  Value lane) { storePart(tt.tokens[t], i, p, dots[0], dots[1], lane); });
        },
        rowsSplit);
  }
  // ... then a prefill chunk's windows all at once (compressChunk), or (a
  // decode step) the tokens through the state one at a time: an entry
  // completes when the token closing its window has been written (spec
  // §5.2).
  auto byToken = [&](function_ref<Value(Value, Value)> kvAt,
                     function_ref<Value(Value, Value)> scoreAt) {
    View pooled = scratchF32(0, dim), pooledRms = scratchF32(0, 1);
    kb.loop(c(0), S(), [&](Value s) {
      // State layout: kv [slots, width] then score [slots, width], f32.
      View kvState{stateOf(op.getState(), s), kb.f32()};
      View scoreState = kb.at(kvState, c(slots * width));
      View entries{stateOf(op.getEntries(), s), entryElt};
      Value p = pos(s);
      Value inWindow = kb.rem(p, c(m));
      Value slot = overlap ? kb.add(inWindow, c(m)) : inWindow;
      View kvSlot = kb.at(kvState, kb.mul(slot, c(width)));
      View scSlot = kb.at(scoreState, kb.mul(slot, c(width)));
      kb.parallelLoop(c(0), c(width), [&](Value i) {
        kb.storeF(kvSlot, i, kvAt(s, i));
        kb.storeF(scSlot, i, scoreAt(s, i));
      });
      kb.ifThen(kb.eq(inWindow, c(m - 1)), [&] {
        kb.parallelLoop(c(0), c(dim), [&](Value i) {
          kb.storeF(pooled, i, poolChannel(kvState, scoreState, i, slots, width, overlap, m, dim));
        });
        Value w = kb.div(p, c(m));
        View entry = kb.at(entries, kb.mul(w, c(dim)));
        rmsNormRows(pooled, entry, c(1), dim, eps, &norm, pooledRms);
        ropeRows(
            entry, c(1), dim, [&](Value) { return kb.mul(w, c(m)); }, op.getRope(), false);
        if (overlap) {
          // The closed window becomes the previous window of the next one.
          kb.parallelLoop(c(0), c(m * width), [&](Value i) {
            kb.storeF(kvState, i, kb.loadF(kvState, kb.add(i, c(m * width))));
            kb.storeF(scoreState, i, kb.loadF(scoreState, kb.add(i, c(m * width))));
          });
        }
      });
    });
  };
  branch(
      manyTokens(kChunkTokens),
      [&] {
        // The rows stored for compressChunk's views.
        if (!mma)
          kb.parallelLoop(c(0), kb.mul(S(), c(width)), [&](Value e) {
            Value s = kb.div(e, c(width)), i = kb.rem(e, c(width));
            kb.storeF(kvRows, e, splitKv(s, i));
            kb.storeF(scoreRows, e, splitScore(s, i));
          });
        compressChunk(*this, op, kvRows, scoreRows);
      },
      [&] {
        if (mma)
          byToken(storedKv, storedScore);
        else
          byToken(splitKv, splitScore);
      });
}

void Emitter::compressBatched(CompressOp op, function_ref<Value(Value, Value)> kvAt,
                              function_ref<Value(Value, Value)> scoreAt) {
  // The tokens of a batched kernel are of distinct sequences, each with its
  // own state: every phase of the loop above runs for all tokens at once,
  // those that close a window taking the steps of an entry, with the same
  // operations per element as there.
  CompressorStateType st = op.getState().getType();
  int64_t m = st.getRatio(), dim = st.getDim(), width = st.getWidth();
  int64_t slots = st.getSlots();
  bool overlap = st.getOverlap();
  Type entryElt = isa<CompressedKVType>(op.getEntries().getType())
                      ? cast<CompressedKVType>(op.getEntries().getType()).getElementType()
                      : cast<IndexerKeysType>(op.getEntries().getType()).getElementType();
  WeightView norm = w(op.getNorm());
  double eps = op.getEps().convertToDouble();
  // State layout: kv [slots, width] then score [slots, width], f32.
  auto kvStateOf = [&](Value s) { return View{stateOf(op.getState(), s), kb.f32()}; };
  auto closes = [&](Value s) { return kb.eq(kb.rem(pos(s), c(m)), c(m - 1)); };
  kb.parallelLoop(c(0), kb.mul(S(), c(width)), [&](Value e) {
    Value s = kb.div(e, c(width)), i = kb.rem(e, c(width));
    View kvState = kvStateOf(s);
    View scoreState = kb.at(kvState, c(slots * width));
    Value inWindow = kb.rem(pos(s), c(m));
    Value slot = overlap ? kb.add(inWindow, c(m)) : inWindow;
    Value at = kb.add(kb.mul(slot, c(width)), i);
    kb.storeF(kvState, at, kvAt(s, i));
    kb.storeF(scoreState, at, scoreAt(s, i));
  });
  // Per channel softmax over the window's slots (as in compress()).
  View pooled = scratchF32(dim, 0), rms = scratchF32(1, 0);
  kb.parallelLoop(c(0), kb.mul(S(), c(dim)), [&](Value e) {
    Value s = kb.div(e, c(dim)), i = kb.rem(e, c(dim));
    kb.ifThen(closes(s), [&] {
      View kvState = kvStateOf(s);
      View scoreState = kb.at(kvState, c(slots * width));
      kb.storeF(pooled, e, poolChannel(kvState, scoreState, i, slots, width, overlap, m, dim));
    });
  });
  // The entry: RMS norm (a warp per token, as rmsNormRows of one row), ...
  kb.warpLoop(c(0), S(), [&](Value s, Value lane) {
    kb.ifThen(closes(s), [&] {
      kb.storeOnce(rms, s, inverseRms(kb.at(pooled, kb.mul(s, c(dim))), dim, eps, lane),
                   lane);
    });
  });
  auto entryOf = [&](Value s) {
    View entries{stateOf(op.getEntries(), s), entryElt};
    return kb.at(entries, kb.mul(kb.div(pos(s), c(m)), c(dim)));
  };
  kb.parallelLoop(c(0), kb.mul(S(), c(dim)), [&](Value e) {
    Value s = kb.div(e, c(dim)), i = kb.rem(e, c(dim));
    kb.ifThen(closes(s), [&] {
      Value v = kb.mul(kb.loadF(pooled, e), kb.loadF(rms, s));
      kb.storeF(entryOf(s), i, kb.mul(v, kb.weight(norm, c(0), i)));
    });
  });
  // ... RoPE at the window's first position (the pairs of rope()), ...
  RopeAttr ropeAttr = op.getRope();
  int64_t r = ropeAttr.getDim(), base = dim - r, pairs = r / 2;
  SmallVector<float> freqs;
  for (int64_t k = 0; k < pairs; ++k)
    freqs.push_back(static_cast<float>(ropeAttr.frequency(k)));
  std::string key = "rope";
  for (float f : freqs)
    key += "_" + llvm::utohexstr(llvm::bit_cast<uint32_t>(f));
  Value table = kb.table("rope_" + llvm::utohexstr(llvm::hash_value(key)), freqs);
  kb.parallelLoop(c(0), kb.mul(S(), c(pairs)), [&](Value e) {
    Value s = kb.div(e, c(pairs)), k = kb.rem(e, c(pairs));
    kb.ifThen(closes(s), [&] {
      Value first = kb.mul(kb.div(pos(s), c(m)), c(m));
      Value phi = kb.mul(kb.toF32(first), kb.load(kb.f32(), table, k));
      Value cs = kb.cos(phi), sn = kb.sin(phi);
      View entry = entryOf(s);
      Value ia = kb.add(c(base), kb.mul(k, c(2))), ib = kb.add(ia, c(1));
      Value a = kb.loadF(entry, ia), b = kb.loadF(entry, ib);
      kb.storeF(entry, ia, kb.sub(kb.mul(a, cs), kb.mul(b, sn)));
      kb.storeF(entry, ib, kb.add(kb.mul(a, sn), kb.mul(b, cs)));
    });
  });
  // ... and the closed window becomes the previous window of the next one.
  if (overlap)
    kb.parallelLoop(c(0), kb.mul(S(), c(m * width)), [&](Value e) {
      Value s = kb.div(e, c(m * width)), i = kb.rem(e, c(m * width));
      kb.ifThen(closes(s), [&] {
        View kvState = kvStateOf(s);
        View scoreState = kb.at(kvState, c(slots * width));
        kb.storeF(kvState, i, kb.loadF(kvState, kb.add(i, c(m * width))));
        kb.storeF(scoreState, i, kb.loadF(scoreState, kb.add(i, c(m * width))));
      });
    });
}

// The indexer's scores of --numerics=fast: score(s, j) = sum over heads h
// of hw[s, h] * relu(sum over d of bf16(q[s, h, d]) * bf16(key[j, d])), the
// products exact and summed in f32.
//
// CUDA (mma.sync m16n8k16 bf16 -> f32): q is rounded to bf16 once, [s][h][d]
// in pairs, so that a lane's B fragment (8 dims of one head) is one 16-byte
// load. A warp holds kKeys keys as A fragments (keys x di dims, 16 keys per
// MMA row tile) for the whole item and walks up to kTokens tokens of the
// chunk that can see the first of them; per token it runs di/16 k steps x
// heads/8 head tiles of MMAs, takes relu(dot) * hw[s, head] of its four
// outputs, sums them over the head tiles and then over the quad's lanes
// (the head columns), and lane 0 of the quad stores the keys' scores. The
// items are (token block, key tile) with the key tile fastest, so the warps
// of a block walk the same tokens (their q stays in L1). The MMA's k index
// is permuted as in mmaTileDots (a lane's 8 consecutive dims of a 32-wide
// step), the same for A and B.
//
// CPU (and targets without the MMA): one thread per (token, key), the dims
// summed in order, the heads in order: the same products, other f32 sums.
static void indexerScoresFast(Emitter &em, View keys, View q, View hw, int64_t heads,
                              int64_t di, int64_t m, int64_t capacity, Value most,
                              function_ref<Value(Value)> avail, View scores) {
  KernelBuilder &kb = em.kb;
  auto c = [&](int64_t v) { return kb.c(v); };
  Value S = em.S();
  const TargetInfo &target = kb.targetInfo();
  if (!target.hasWarpMmaBf16()) {
    kb.warpLoop(c(0), kb.mul(S, most), [&](Value e, Value lane) {
      Value s = kb.div(e, most), j = kb.rem(e, most);
      kb.ifThen(kb.lt(j, avail(s)), [&] {
        View qs = kb.at(q, kb.mul(s, c(heads * di))), hws = kb.at(hw, kb.mul(s, c(heads)));
        View key = kb.at(keys, kb.mul(j, c(di)));
        Value score = kb.reduce1(c(0), c(heads), kb.cf(0.0), [&](Value h, Value acc) {
          View qh = kb.at(qs, kb.mul(h, c(di)));
          Value dotv = kb.reduce1(c(0), c(di), kb.cf(0.0), [&](Value i, Value a) {
            return kb.add(a, kb.mul(kb.roundBf16(kb.loadF(qh, i)),
                                    kb.roundBf16(kb.loadF(key, i))));
          });
          return kb.add(acc, kb.mul(kb.loadF(hws, h), kb.max(dotv, kb.cf(0.0))));
        });
        kb.storeOnce(scores, kb.add(kb.mul(s, c(capacity)), j), score, lane);
      });
    });
    return;
  }
  OpBuilder &b = kb.builder();
  Location loc = kb.getLoc();
  Type i32 = b.getI32Type();
  constexpr int64_t kRowTiles = 2, kKeys = 16 * kRowTiles, kTokens = 32;
  int64_t words = heads * di / 2, steps = di / 32, headTiles = heads / 8;
  View qb{em.scratchF32(words, 0).ptr, i32};
  storeBf16Pairs(kb, q, qb, kb.mul(S, c(heads * di)));
  auto load4 = [&](Type elt, Value ptr, SmallVectorImpl<Value> &out) {
    Value four[4];
    target.loadF32x4(b, loc, ptr, four);
    for (Value v : four)
      out.push_back(elt == i32 ? Value(arith::BitcastOp::create(b, loc, i32, v)) : v);
  };
  Value keyTiles = kb.div(kb.add(most, c(kKeys - 1)), c(kKeys));
  Value tokenBlocks = kb.div(kb.add(S, c(kTokens - 1)), c(kTokens));
  // Token s sees key j when pos(s) + 1 >= (j + 1) m: from s = (j + 1) m -
  // startPos - 1 on.
  kb.warpLoop(c(0), kb.mul(keyTiles, tokenBlocks), [&](Value e, Value lane) {
    Value kt = kb.rem(e, keyTiles), tb = kb.div(e, keyTiles);
    Value j0 = kb.mul(kt, c(kKeys));
    Value sBegin = kb.mul(tb, c(kTokens));
    Value sFirst = kb.sub(kb.mul(kb.add(j0, c(1)), c(m)), kb.add(em.ctx.startPos, c(1)));
    Value sLo = kb.max(sBegin, sFirst), sHi = kb.min(S, kb.add(sBegin, c(kTokens)));
    kb.ifThen(kb.lt(sLo, sHi), [&] {
      Value g = kb.div(lane, c(4)), qd = kb.rem(lane, c(4));
      // A fragments: [row tile][step][half][4]; lane (g, qd) holds keys
      // g and g + 8 of each row tile, dims 32 step + 8 qd .. + 7.
      SmallVector<Value> a;
      for (int64_t rt = 0; rt < kRowTiles; ++rt) {
        Value rows[2];
        for (int64_t r = 0; r < 2; ++r) {
          // Keys past the visible ones are never stored; clamped to the
          // entries' capacity so that their loads stay in bounds.
          Value j = kb.min(kb.add(j0, kb.add(c(16 * rt + 8 * r), g)), c(capacity - 1));
          rows[r] = kb.mul(j, c(di));
        }
        for (int64_t st = 0; st < steps; ++st) {
          Value d0 = kb.add(c(32 * st), kb.mul(qd, c(8)));
          SmallVector<Value> x[2];
          for (int64_t r = 0; r < 2; ++r) {
            Value at = kb.add(rows[r], d0);
            if (keys.elt.isF32()) {
              load4(kb.f32(), kb.offset(kb.f32(), keys.ptr, at), x[r]);
              load4(kb.f32(), kb.offset(kb.f32(), keys.ptr, kb.add(at, c(4))), x[r]);
            } else {
              for (int64_t i = 0; i < 8; ++i)
                x[r].push_back(kb.loadF(keys, kb.add(at, c(i))));
            }
          }
          for (int64_t h = 0; h < 2; ++h) {
            a.push_back(kb.packBf16x2(x[0][4 * h], x[0][4 * h + 1]));
            a.push_back(kb.packBf16x2(x[1][4 * h], x[1][4 * h + 1]));
            a.push_back(kb.packBf16x2(x[0][4 * h + 2], x[0][4 * h + 3]));
            a.push_back(kb.packBf16x2(x[1][4 * h + 2], x[1][4 * h + 3]));
          }
        }
      }
      kb.loop(sLo, sHi, [&](Value s) {
        View hws = kb.at(hw, kb.mul(s, c(heads)));
        Value qs = kb.offset(i32, qb.ptr, kb.mul(s, c(words)));
        // sums[2 rt + r]: key 16 rt + 8 r + g, over this lane's two head
        // columns of every head tile. A loop over the head tiles, not
        // unrolled: the A fragments take half of the 128 registers a
        // grid-wide kernel gets.
        SmallVector<Value> sums = kb.reduce(
            c(0), c(headTiles), SmallVector<Value>(2 * kRowTiles, kb.cf(0.0)),
            [&](Value ht, ValueRange in) -> SmallVector<Value> {
              Value first = kb.mul(ht, c(8));
              Value qh = kb.offset(
                  i32, qs, kb.add(kb.mul(kb.add(first, g), c(di / 2)), kb.mul(qd, c(4))));
              SmallVector<Value> d(4 * kRowTiles, kb.cf(0.0));
              for (int64_t st = 0; st < steps; ++st) {
                SmallVector<Value> bw;
                load4(i32, kb.offset(i32, qh, c(16 * st)), bw);
                for (int64_t h = 0; h < 2; ++h) {
                  Value bf[2] = {bw[2 * h], bw[2 * h + 1]};
                  for (int64_t rt = 0; rt < kRowTiles; ++rt) {
                    size_t at = ((rt * steps + st) * 2 + h) * 4;
                    Value cIn[4] = {d[4 * rt], d[4 * rt + 1], d[4 * rt + 2], d[4 * rt + 3]};
                    Value dOut[4];
                    target.mmaBf16(b, loc, ArrayRef<Value>(a).slice(at, 4), bf, cIn, dOut);
                    for (int64_t i = 0; i < 4; ++i)
                      d[4 * rt + i] = dOut[i];
                  }
                }
              }
              // d[4 rt + i]: key 16 rt + g (i < 2) or + 8, head first + 2 qd
              // + i % 2.
              Value h0 = kb.add(first, kb.mul(qd, c(2)));
              Value w0 = kb.loadF(hws, h0), w1 = kb.loadF(hws, kb.add(h0, c(1)));
              SmallVector<Value> out(in);
              for (int64_t rt = 0; rt < kRowTiles; ++rt)
                for (int64_t r = 0; r < 2; ++r) {
                  Value t0 = kb.mul(w0, kb.max(d[4 * rt + 2 * r], kb.cf(0.0)));
                  Value t1 = kb.mul(w1, kb.max(d[4 * rt + 2 * r + 1], kb.cf(0.0)));
                  out[2 * rt + r] = kb.add(out[2 * rt + r], kb.add(t0, t1));
                }
              return out;
            });
        Value n = avail(s);
        for (int64_t i = 0; i < 2 * kRowTiles; ++i) {
          Value v = sums[i];
          v = kb.add(v, target.shuffleXor(b, loc, v, 1, KernelBuilder::kLanes));
          v = kb.add(v, target.shuffleXor(b, loc, v, 2, KernelBuilder::kLanes));
          Value j = kb.add(j0, kb.add(c(8 * i), g));
          kb.ifThen(arith::AndIOp::create(b, loc, kb.eq(qd, c(0)), kb.lt(j, n)),
                    [&] { kb.storeF(scores, kb.add(kb.mul(s, c(capacity)), j), v); });
        }
      });
    });
  });
}

void Emitter::indexer(IndexerTopkOp op) {
  IndexerKeysType keysType = op.getKeys().getType();
  int64_t m = keysType.getRatio(), di = keysType.getDim();
  int64_t heads = op.getHeads(), topk = op.getTopk();
  WeightView wqb = w(op.getWqB()), wp = w(op.getWeightsProj());
  int64_t rank = wqb.cols, dm = wp.cols;
  View qr = view(op.getQr()), x = view(op.getX()), out = view(op.getIndices());
  int64_t capacity = ctx.maxContext / m;
  View q = scratchF32(heads * di, 0);
  View hw = scratchF32(heads, 0);
  View scores = scratchF32(capacity, 0);
  double headScale = 1.0 / std::sqrt(double(di)) / std::sqrt(double(heads));
  // Entries visible to token s: those completed by position pos(s).
  auto avail = [&](Value s) { return kb.div(kb.add(pos(s), c(1)), c(m)); };
  linearTokens(qr, rank, wqb, q);
  bool fastScores = ctx.fastLinear && !ctx.batched && heads % 8 == 0 && di % 32 == 0;
  // The fast scores read q roped in place; the others read it transposed,
  // the rope applied where the transpose reads it (below).
  if (fastScores)
    ropeRows(q, kb.mul(S(), c(heads)), di, [&](Value e) { return pos(kb.div(e, c(heads))); },
             op.getRope(), false);
  kb.warpLoop(c(0), kb.mul(S(), c(heads)), [&](Value e, Value lane) {
    Value s = kb.div(e, c(heads)), h = kb.rem(e, c(heads));
    Value dotv = kb.dotLanes(kb.at(x, kb.mul(s, c(dm))), wp, h, lane);
    kb.storeOnce(hw, e, kb.mul(dotv, kb.cf(headScale)), lane);
  });
  Value most = mostOver(avail);
  // The top-k of each token, -1 where fewer are visible (stored where the
  // transpose runs: at least one step before the selection's stores).
  auto clearPicks = [&] {
    kb.parallelLoop(c(0), kb.mul(S(), c(topk)), [&](Value e) {
      kb.store(kb.truncI32(c(-1)), out.ptr, e);
    });
  };
  // --numerics=fast: q and the keys act_quant'ed (1 x 128 blocks along di,
  // UE8M0 scales), the FP8 indexer of DeepSeek-V3.2: the scores are those
  // of their dequantised values (exact products; COMPRESSA_INDEXER_FP8=0
  // at compile time keeps bf16 q and keys, for A/B runs).
  bool fp8 = fastScores && fastIndexerFp8();
  int64_t blocks = (di + kQuantBlock - 1) / kQuantBlock;
  Value rowsQ = kb.mul(S(), c(heads));
  // --numerics=fast prefill on sm_90a: the scores as a tensor-core kernel
  // of their own (lowering/TensorCore/WgmmaIndexer.h), q written in bf16
  // or as e4m3 codes to the staging area for it (FP8: hw times q's
  // scales; the kernel quantises the keys); the selection follows in the
  // next part.
  bool wgmmaScores = fastScores && ctx.tensorCore &&
                     ctx.tensorCore->handlesIndexer(heads, di, keysType.getElementType());
  if (fastScores)
    clearPicks();
  View keysFast{stateOf(op.getKeys(), c(0)), keysType.getElementType()};
  if (fp8 && wgmmaScores) {
    // The codes in rows of 128 bytes (WgmmaIndexerShape::rowBytes; di = 64
    // goes through a copy, the pad left as it is: never read).
    Value qScales = ctx.scratch(heads * blocks, 0);
    Type i8 = kb.builder().getI8Type();
    Value staged = ctx.tensorCore->indexerQ();
    if (di == 128) {
      cpu::emitActQuant(kb, q, di, rowsQ, di, staged, qScales);
    } else {
      Value codes = ctx.scratch(heads * di, 0);
      cpu::emitActQuant(kb, q, di, rowsQ, di, codes, qScales);
      kb.parallelLoop(c(0), kb.mul(rowsQ, c(di)), [&](Value e) {
        Value r = kb.div(e, c(di)), col = kb.rem(e, c(di));
        kb.store(kb.load(i8, codes, e), staged, kb.add(kb.mul(r, c(128)), col));
      });
    }
    kb.parallelLoop(c(0), rowsQ, [&](Value e) {
      kb.storeF(hw, e, kb.mul(kb.loadF(hw, e), cpu::decodeUE8M0Byte(kb, kb.load(i8, qScales, e))));
    });
  } else if (fp8) {
    // The CPU's (and warp MMA tiles') twin: the dequantised values, q in
    // place and the visible keys in a copy, then the scores of bf16-
    // rounded values (exact: e4m3 codes times powers of two).
    cpu::emitActQuantDequant(kb, q, di, rowsQ, ctx.scratch(heads * di, 0),
                             ctx.scratch(heads * blocks, 0), q);
    View copy = scratchF32(0, capacity * di);
    cpu::emitActQuantDequant(kb, keysFast, di, most, ctx.scratch(0, capacity * di),
                             ctx.scratch(0, capacity * blocks), copy);
    keysFast = copy;
  }
  if (wgmmaScores) {
    if (!fp8)
      storeBf16Pairs(kb, q, View{ctx.tensorCore->indexerQ(), kb.builder().getI32Type()},
                     kb.mul(S(), c(heads * di)));
    // The radix selection's states (capacity > kRankTopkMax): its picks as
    // a kernel of its own too, a block a token (TopkSelect.h; radixTopk
    // below is its CPU twin).
    if (capacity > kRankTopkMax && ctx.tensorCore->handlesTopk(capacity, topk, m)) {
      ctx.tensorCore->indexerScores(stateOf(op.getKeys(), c(0)), hw.ptr, scores.ptr, heads,
                                    di, m, capacity, fp8, out.ptr, topk);
      return;
    }
    ctx.tensorCore->indexerScores(stateOf(op.getKeys(), c(0)), hw.ptr, scores.ptr, heads, di,
                                  m, capacity, fp8);
  } else if (fastScores) {
    // --numerics=fast prefill: products of bf16-rounded q and keys summed
    // in f32 (tensor cores on CUDA).
    indexerScoresFast(*this, keysFast, q, hw, heads, di, m, capacity, most, avail, scores);
  } else {
    // q transposed per token to [di][heads], so that the lanes of a warp,
    // one head each, read consecutive floats.
    // The rope of ropeRows (the same operations per pair) taken here: a
    // thread per channel, the rotated pair's two values computed by both of
    // its threads. The picks cleared in the same step.
    View qt = scratchF32(heads * di, 0);
    RopeAttr rope = op.getRope();
    int64_t rdim = rope.getDim(), rbase = di - rdim;
    Value table = ropeTable(rope);
    Value clears = kb.mul(S(), c(topk)), transposes = kb.mul(S(), c(heads * di));
    kb.parallelLoop(c(0), kb.max(transposes, clears), [&](Value e) {
      kb.ifThen(kb.lt(e, clears), [&] { kb.store(kb.truncI32(c(-1)), out.ptr, e); });
      kb.ifThen(kb.lt(e, transposes), [&] {
        Value s = kb.div(e, c(heads * di)), r = kb.rem(e, c(heads * di));
        Value h = kb.div(r, c(di)), i = kb.rem(r, c(di));
        Value v = kb.loadF(q, e);
        Value rotated = kb.ifElse(
            kb.le(c(rbase), i), TypeRange{kb.f32()},
            [&]() -> SmallVector<Value> {
              Value k = kb.div(kb.sub(i, c(rbase)), c(2));
              Value second = kb.eq(kb.rem(kb.sub(i, c(rbase)), c(2)), c(1));
              View row = kb.at(q, kb.sub(e, i));
              Value ia = kb.add(c(rbase), kb.mul(k, c(2)));
              Value phi = kb.mul(kb.toF32(pos(s)), kb.load(kb.f32(), table, k));
              Value cs = kb.cos(phi), sn = kb.sin(phi);
              Value a = kb.loadF(row, ia), b = kb.loadF(row, kb.add(ia, c(1)));
              Value first = kb.sub(kb.mul(a, cs), kb.mul(b, sn));
              Value other = kb.add(kb.mul(a, sn), kb.mul(b, cs));
              return {kb.select(second, other, first)};
            },
            [&]() -> SmallVector<Value> { return {v}; })[0];
        kb.storeF(qt, kb.add(kb.mul(s, c(heads * di)), kb.add(kb.mul(i, c(heads)), h)),
                  rotated);
      });
    });
    // Scores of every (token, visible entry), a warp each (the last token
    // sees the most): lane l takes heads l, l + 32, ..., each a dot over the
    // di channels in order, weighted by its head weight after the ReLU; the
    // lanes' sums meet in the warp's butterfly. The entry's key is read once
    // for all heads.
    int64_t perLane = (heads + KernelBuilder::kLanes - 1) / KernelBuilder::kLanes;
    bool coopKey = kb.lanesParallel() && kb.targetInfo().wideLoads() &&
                   keysType.getElementType().isF32() && di % 4 == 0 &&
                   di <= 4 * KernelBuilder::kLanes;
    kb.warpLoop(c(0), kb.mul(S(), most), [&](Value e, Value lane) {
      Value s = kb.div(e, most), j = kb.rem(e, most);
      kb.ifThen(kb.lt(j, avail(s)), [&] {
        View qs = kb.at(qt, kb.mul(s, c(heads * di))), hws = kb.at(hw, kb.mul(s, c(heads)));
        View keys{stateOf(op.getKeys(), s), keysType.getElementType()};
        View key = kb.at(keys, kb.mul(j, c(di)));
        Value score = kb.laneTotals(lane, 1, [&](Value l) -> SmallVector<Value> {
          SmallVector<Value> hcs, dots;
          for (int64_t t = 0; t < perLane; ++t)
            hcs.push_back(kb.min(kb.add(l, c(t * KernelBuilder::kLanes)), c(heads - 1)));
          if (coopKey) {
            // The key in one 16-byte load a lane (lane l: channels 4l ..
            // 4l + 3), then channel i from lane i / 4: one trip to memory
            // an entry instead of one per 8 channels (at 1M context the
            // decode step's scores took 2.1 ms, waiting on those trips).
            // The same products summed in the same order.
            Value four[4];
            kb.targetInfo().loadF32x4(
                kb.builder(), kb.getLoc(),
                kb.offset(kb.f32(), key.ptr, kb.mul(kb.min(l, c(di / 4 - 1)), c(4))), four);
            dots.assign(perLane, kb.cf(0.0));
            for (int64_t i = 0; i < di; ++i) {
              Value ki = kb.shuffleIdx(four[i % 4], i / 4);
              for (int64_t t = 0; t < perLane; ++t)
                dots[t] = kb.add(dots[t],
                                 kb.mul(kb.loadF(qs, kb.add(c(i * heads), hcs[t])), ki));
            }
          } else {
            for (int64_t t = 0; t < perLane; ++t)
              dots.push_back(kb.reduceUnrolled(c(0), c(di), 8, kb.cf(0.0), [&](Value i, Value a) {
                return kb.add(a, kb.mul(kb.loadF(qs, kb.add(kb.mul(i, c(heads)), hcs[t])),
                                        kb.loadF(key, i)));
              }));
          }
          Value acc = kb.cf(0.0);
          for (int64_t t = 0; t < perLane; ++t) {
            Value h = kb.add(l, c(t * KernelBuilder::kLanes));
            Value exists = kb.lt(h, c(heads));
            Value term = kb.mul(kb.loadF(hws, hcs[t]), kb.max(dots[t], kb.cf(0.0)));
            acc = kb.add(acc, kb.select(exists, term, kb.cf(0.0)));
          }
          return {acc};
        })[0];
        kb.storeOnce(scores, kb.add(kb.mul(s, c(capacity)), j), score, lane);
      });
    });
  }
  // --numerics=fast's selection in a launch of its own (a part of the
  // kernel, TensorCoreSplit): ptxas then allocates the registers of the
  // tensor-core scores and of the selection apart. On an H100 the V4-Flash
  // 2:6 1M prompt's indexer took 27.87 s (scores) + 8.67 s (selection)
  // instead of 54.86 s in one launch, the 64K prompt's 111.3 + 59.5 ms
  // instead of 239.2 ms (docs/perf.md, twenty-first session).
  // COMPRESSA_INDEXER_SPLIT=0 at compile time keeps one launch, for A/B.
  static const bool splitSelection =
      KernelBuilder::experimentString("COMPRESSA_INDEXER_SPLIT") != "0";
  if (splitSelection && fastScores && ctx.tensorCore && !wgmmaScores)
    ctx.tensorCore->split();
  if (capacity > kRankTopkMax)
    return radixTopk(scores, capacity, most, avail, topk, out);
  // Entry i of the n visible ones is picked, at out[rank], when its rank
  // (rankInRow: its place in the order of descending score, ties to the
  // lower index) is below min(topk, n). Every (token, entry) ranks itself
  // independently.
  rankItems(kb.mul(S(), most), [&](Value e, Value lane) {
    Value s = kb.div(e, most), i = kb.rem(e, most);
    Value n = avail(s);
    kb.ifThen(kb.lt(i, n), [&] {
      View row = kb.at(scores, kb.mul(s, c(capacity)));
      Value rank = rankInRow(row, kb.loadF(row, i), i, n, lane);
      kb.ifThen(kb.andI(kb.lt(rank, kb.min(c(topk), n)), storingLane(lane)), [&] {
        kb.store(kb.truncI32(i), out.ptr, kb.add(kb.mul(s, c(topk)), rank));
      });
    });
  });
}

void Emitter::radixTopk(View scores, int64_t capacity, Value most,
                        function_ref<Value(Value)> avail, int64_t topk, View out) {
  OpBuilder &b = kb.builder();
  Location loc = kb.getLoc();
  Type i32 = b.getI32Type();
  auto c32 = [&](int64_t v) { return kb.c32(v); };
  auto ult = [&](Value x, Value y) {
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, x, y);
  };
  auto ueq = [&](Value x, Value y) {
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, x, y);
  };
  auto shr = [&](Value x, int64_t by) -> Value {
    return by ? Value(arith::ShRUIOp::create(b, loc, x, c32(by))) : x;
  };
  // Score -> a u32 key in the same order: negative floats have all their
  // bits flipped, others the sign bit set.
  auto keyAt = [&](Value s, Value i) -> Value {
    Value f = kb.loadF(kb.at(scores, kb.mul(s, c(capacity))), i);
    Value bits = arith::BitcastOp::create(b, loc, i32, f);
    Value negative = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, bits, c32(0));
    Value flipped = arith::XOrIOp::create(b, loc, bits, c32(-1));
    Value marked = arith::OrIOp::create(b, loc, bits, c32(int64_t(0x80000000u)));
    return kb.select(negative, flipped, marked);
  };
  // COMPRESSA_RADIX_SPLIT=1 at compile time (--numerics=fast prefill): each
  // step of the selection in a launch of its own, to time them apart.
  static const bool splitSteps = KernelBuilder::experimentString("COMPRESSA_RADIX_SPLIT") == "1";
  auto step = [&] {
    if (splitSteps && ctx.tensorCore)
      ctx.tensorCore->split();
  };
  constexpr int64_t kBins = 2048, kChunk = 256;
  View hist{scratchF32(kBins, 0).ptr, i32};
  View prefix{scratchF32(1, 0).ptr, i32}, need{scratchF32(1, 0).ptr, i32};
  int64_t chunks = (capacity + kChunk - 1) / kChunk;
  View gtCount{scratchF32(chunks, 0).ptr, i32}, eqCount{scratchF32(chunks, 0).ptr, i32};
  // need = min(topk, n): the entries still to take at or below the prefix.
  kb.parallelLoop(c(0), S(), [&](Value s) {
    kb.store(c32(0), prefix.ptr, s);
    kb.store(kb.truncI32(kb.min(c(topk), avail(s))), need.ptr, s);
  });
  // Three digits of the key (11, 11, 10 bits, most significant first): a
  // histogram of the entries whose key agrees with the prefix above the
  // digit, then, a thread per token, the digit where the count from the top
  // reaches `need`; the entries of larger digits are taken.
  const int64_t shifts[3] = {21, 10, 0}, widths[3] = {11, 11, 10};
  for (int pass = 0; pass < 3; ++pass) {
    int64_t shift = shifts[pass], bins = int64_t(1) << widths[pass];
    int64_t above = shift + widths[pass];
    kb.parallelLoop(c(0), kb.mul(S(), c(kBins)),
                    [&](Value e) { kb.store(c32(0), hist.ptr, e); });
    // A warp's lanes take 32 consecutive entries of one token (one 128-byte
    // read); consecutive warps take different tokens. So the atomics of the
    // threads at work at once spread over the bins of every token of the
    // call, instead of meeting on the few bins that the scores of one or two
    // tokens fall in (at a 1M prompt a token has up to 262144 entries, more
    // than the grid's threads, and its scores share a handful of leading
    // digits). The counts are the same in any order.
    Value groups = kb.div(kb.add(most, c(31)), c(32));
    kb.parallelLoop(c(0), kb.mul(kb.mul(S(), groups), c(32)), [&](Value e) {
      Value w = kb.div(e, c(32));
      Value s = kb.rem(w, S());
      Value i = kb.add(kb.mul(kb.div(w, S()), c(32)), kb.rem(e, c(32)));
      kb.ifThen(kb.lt(i, avail(s)), [&] {
        Value key = keyAt(s, i);
        Value agrees = above >= 32 ? kb.eq(c(0), c(0))
                                   : ueq(shr(key, above), shr(kb.load(i32, prefix.ptr, s), above));
        kb.ifThen(agrees, [&] {
          Value digit = arith::AndIOp::create(b, loc, shr(key, shift), c32(bins - 1));
          Value slot = kb.add(kb.mul(s, c(kBins)), kb.toI64(digit));
          Value bin = kb.offset(i32, hist.ptr, slot);
          // The lanes of a warp that count in the same bin add their count
          // once, by the lowest of them (CUDA: the scores of 32 neighbouring
          // entries share a few leading digits).
          Value peers = kb.targetInfo().matchActiveLanes(b, loc, kb.truncI32(slot));
          if (!peers) {
            LLVM::AtomicRMWOp::create(b, loc, LLVM::AtomicBinOp::add, bin, c32(1),
                                      LLVM::AtomicOrdering::monotonic);
            return;
          }
          // e's lane (the loop's stride, whole warps, is a multiple of 32).
          Value lane = kb.truncI32(kb.rem(e, c(32)));
          Value below = arith::SubIOp::create(
              b, loc, arith::ShLIOp::create(b, loc, c32(1), lane), c32(1));
          Value lowest = ueq(arith::AndIOp::create(b, loc, peers, below), c32(0));
          kb.ifThen(lowest, [&] {
            LLVM::AtomicRMWOp::create(b, loc, LLVM::AtomicBinOp::add, bin,
                                      LLVM::CtPopOp::create(b, loc, i32, peers),
                                      LLVM::AtomicOrdering::monotonic);
          });
        });
      });
    });
    step();
    kb.parallelLoop(c(0), S(), [&](Value s) {
      Value want = kb.load(i32, need.ptr, s);
      // Scan from the top digit: (digit found, count above it).
      SmallVector<Value> found = kb.reduce(
          c(0), c(bins), ValueRange{c32(-1), c32(0)},
          [&](Value t, ValueRange acc) -> SmallVector<Value> {
            Value digit = kb.sub(c(bins - 1), t);
            Value h = kb.load(i32, hist.ptr, kb.add(kb.mul(s, c(kBins)), digit));
            Value total = kb.add(acc[1], h);
            Value open = kb.eq(acc[0], c32(-1));
            Value hit = arith::AndIOp::create(
                b, loc, open,
                arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, total, want));
            Value d32 = kb.truncI32(digit);
            return {kb.select(hit, d32, acc[0]), kb.select(open, kb.select(hit, acc[1], total),
                                                           acc[1])};
          });
      // want > 0 always finds a digit (the counts add up to the entries
      // agreeing with the prefix, at least `want`); want == 0: nothing to take.
      Value digit = kb.max(found[0], c32(0));
      Value p = arith::OrIOp::create(
          b, loc, kb.load(i32, prefix.ptr, s),
          arith::ShLIOp::create(b, loc, digit, c32(shift)));
      kb.store(p, prefix.ptr, s);
      kb.store(kb.sub(want, found[1]), need.ptr, s);
    });
    step();
  }
  // prefix = the key T of the last entry taken; `need` = how many entries
  // with key T are taken (the lowest indices). The picks go out in index
  // order: a chunk of 256 entries counts its keys > T and == T, a thread per
  // token turns the counts into exclusive prefixes, then each chunk writes
  // its picks at (greater before) + min(equal before, need).
  kb.parallelLoop(c(0), kb.mul(S(), c(chunks)), [&](Value e) {
    Value s = kb.div(e, c(chunks)), ch = kb.rem(e, c(chunks));
    Value t = kb.load(i32, prefix.ptr, s), n = avail(s);
    Value lo = kb.mul(ch, c(kChunk)), hi = kb.min(kb.add(lo, c(kChunk)), n);
    SmallVector<Value> counts = kb.reduce(
        lo, kb.max(lo, hi), ValueRange{c32(0), c32(0)},
        [&](Value i, ValueRange acc) -> SmallVector<Value> {
          Value key = keyAt(s, i);
          return {kb.add(acc[0], kb.select(ult(t, key), c32(1), c32(0))),
                  kb.add(acc[1], kb.select(ueq(key, t), c32(1), c32(0)))};
        });
    kb.store(counts[0], gtCount.ptr, e);
    kb.store(counts[1], eqCount.ptr, e);
  });
  step();
  kb.parallelLoop(c(0), S(), [&](Value s) {
    kb.reduce(c(0), c(chunks), ValueRange{c32(0), c32(0)},
              [&](Value ch, ValueRange acc) -> SmallVector<Value> {
                Value e = kb.add(kb.mul(s, c(chunks)), ch);
                Value g = kb.load(i32, gtCount.ptr, e), q = kb.load(i32, eqCount.ptr, e);
                kb.store(acc[0], gtCount.ptr, e);
                kb.store(acc[1], eqCount.ptr, e);
                return {kb.add(acc[0], g), kb.add(acc[1], q)};
              });
  });
  step();
  kb.parallelLoop(c(0), kb.mul(S(), c(chunks)), [&](Value e) {
    Value s = kb.div(e, c(chunks)), ch = kb.rem(e, c(chunks));
    Value t = kb.load(i32, prefix.ptr, s), n = avail(s);
    Value taken = kb.load(i32, need.ptr, s);
    Value lo = kb.mul(ch, c(kChunk)), hi = kb.min(kb.add(lo, c(kChunk)), n);
    kb.reduce(lo, kb.max(lo, hi),
              ValueRange{kb.load(i32, gtCount.ptr, e), kb.load(i32, eqCount.ptr, e)},
              [&](Value i, ValueRange acc) -> SmallVector<Value> {
                Value key = keyAt(s, i);
                Value gt = ult(t, key), eq = ueq(key, t);
                Value eqTaken = kb.lt(acc[1], taken);
                Value pick = arith::OrIOp::create(
                    b, loc, gt, arith::AndIOp::create(b, loc, eq, eqTaken));
                kb.ifThen(pick, [&] {
                  Value at = kb.add(acc[0], kb.min(acc[1], taken));
                  kb.store(kb.truncI32(i), out.ptr, kb.add(kb.mul(s, c(topk)), kb.toI64(at)));
                });
                return {kb.add(acc[0], kb.select(gt, c32(1), c32(0))),
                        kb.add(acc[1], kb.select(eq, c32(1), c32(0)))};
              });
  });
}

void mlir::compressa::cpu::populateCompressorPatterns(KernelPatternSet &patterns) {
  patterns.add(&Emitter::compress);
  patterns.add(&Emitter::indexer);
}
