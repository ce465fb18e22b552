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
#include "lowering/DSV4ToKernels/TensorCoreGemm.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <tuple>

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
  // fast-decode's FP8 wq_b: the norm's scaling step quantises qr too.
  EmitContext::Quantized quant;
  bool quantize = takesFp8Linear(wqb) && rank % kQuantBlock == 0;
  if (quantize)
    quant = {ctx.scratch(rank, 0), ctx.scratch(rank / kQuantBlock, 0)};
  rmsNormRows(t, qr, S(), rank, eps, &qNorm, r, quantize ? &quant : nullptr);
  linearTokens(qr, rank, wqb, q, quantize ? &quant : nullptr);
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

bool mlir::compressa::cpu::ropeFusesIntoAttention(Operation *attention, Operation *ropeOp) {
  static const bool off = KernelBuilder::experimentString("COMPRESSA_ATTENTION_ROPE") == "0";
  auto attn = dyn_cast<SparseAttentionOp>(attention);
  auto rope = dyn_cast<RopeOp>(ropeOp);
  if (off || !attn || !rope || !rope.getInverse() || rope.getX() != attn.getResult())
    return false;
  // The attention's last step takes 4 consecutive channels a thread (a
  // multiple of 4 from 0), and the rotated pairs start at such a channel.
  auto shape = attn.getQ().getType().getShape();
  int64_t d = shape[2], r = rope.getRope().getDim();
  return d % 4 == 0 && r % 2 == 0 && r <= d && (d - r) % 4 == 0 &&
         rope.getX().getType() == rope.getResult().getType();
}

bool mlir::compressa::cpu::windowFusesIntoAttention() {
  static const bool off = KernelBuilder::experimentString("COMPRESSA_ATTENTION_WINDOW") == "0";
  return !off;
}

void Emitter::ropeOp(RopeOp op) {
  if (ctx.fusedRope == op.getOperation()) {
    ctx.fusedRope = nullptr; // stored by the attention before it
    return;
  }
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
  if (ctx.fusedWindow == op.getOperation()) {
    ctx.fusedWindow = nullptr; // emitted by the attention before it
    return;
  }
  Value items;
  auto body = windowUpdateItems(op, items);
  kb.parallelLoop(c(0), items, body);
}

std::function<void(Value)> Emitter::windowUpdateItems(WindowUpdateOp op, Value &items) {
  WindowKVType ring = op.getRing().getType();
  int64_t win = ring.getWindow(), d = ring.getDim();
  View kv = view(op.getKv());
  // Only the last `window` tokens of a chunk survive; their slots differ. In
  // a batched kernel every token is its own sequence's, into its own ring.
  Value first = ctx.batched ? c(0) : kb.max(c(0), kb.sub(S(), c(win)));
  items = kb.mul(kb.sub(S(), first), c(d));
  Value ringV = op.getRing();
  Type elt = ring.getElementType();
  return [this, first, d, win, kv, ringV, elt](Value e) {
    Value s = kb.add(first, kb.div(e, c(d))), i = kb.rem(e, c(d));
    View dst{stateOf(ringV, s), elt};
    Value slot = kb.rem(pos(s), c(win));
    kb.storeF(dst, kb.add(kb.mul(slot, c(d)), i), kb.loadF(kv, kb.add(kb.mul(s, c(d)), i)));
  };
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
  // one-token decode, a batched decode and a prefill chunk. The prefill of
  // --numerics=fast computes phases 1 and 3 on warp tensor cores (below).
  int64_t maxKeys = win + (k ? k : (ratio ? ctx.maxContext / ratio : 0));
  // The rows of `weights` (a (token, head)'s scores, then weights) hold a
  // multiple of 16 keys: the fast path reads whole 16-key steps (16-byte
  // aligned) and masks the keys past the token's last.
  int64_t ldw = (maxKeys + 15) / 16 * 16;
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
  // --numerics=fast (the prefill program): scores and weighted sums on warp
  // tensor cores, mma.sync m16n8k16 bf16 with f32 accumulation. A tile's 16
  // rows are 16 heads of one token (a partial tile repeats its last head),
  // so its rows share the token's keys: scores = Q K^T with the channels as
  // the MMA's k and 8 keys an n-tile; the weighted sum P V with 16 keys as
  // k and 8 channels an n-tile. q, the keys and the weights p are rounded
  // to bf16 (nearest even); the scores times the scale, the softmax (max,
  // exp, the denominator with the sink) stay f32 as in the exact path. The
  // CPU (no MMA) sums the same exact products in k order (channels, keys).
  const TargetInfo &target = kb.targetInfo();
  bool mma = target.hasWarpMmaBf16();
  bool fast = ctx.fastLinear && !ctx.batched && d % 32 == 0;
  // The RoPE and window update after the attention are fused only into
  // the exact path (ConvertDSV4ToKernels: not where the op uses fast
  // numerics), whose last loop emits them.
  assert(!(fast && (ctx.fusedRope || ctx.fusedWindow)) &&
         "a fused RoPE or window update needs the exact path");
  // --numerics=fast on sm_90a, a layer over the window and every visible
  // entry (HCA): the tensor-core kernels of WgmmaAttention.h compute the
  // three phases below (the same operations, the sums in their own order).
  // This part writes bf16 copies of the keys they read: the entries the
  // call's last token sees, then zeros to the next 64 (a tile's rows past a
  // token's last weigh 0 but are read), and the window positions from the
  // first token's first on (the ring, then the chunk), then 128 zero rows.
  // With a top-k (CSA) it writes each token's keys as rows of their own:
  // the window's (zeros past the token's), then the selected entries'
  // (zeros for a slot of -1).
  if (fast && ratio && ctx.tensorCore &&
      ctx.tensorCore->handlesAttention(h, d, win, ratio, k)) {
    int64_t capacity = ctx.maxContext / ratio, half = d / 2;
    Type i32 = kb.builder().getI32Type();
    Value zero = kb.c32(0);
    View entries{stateOf(op.getEntries(), c(0)), entryElt};
    View ring{stateOf(op.getRing(), c(0)), ringElt};
    auto pairOf = [&](const View &row, Value pr) {
      Value i = kb.mul(pr, c(2));
      return kb.packBf16x2(kb.loadF(row, i), kb.loadF(row, kb.add(i, c(1))));
    };
    // The window key at position u (from the ring before the chunk).
    auto windowRow = [&](Value u) {
      Value ringPtr = kb.at(ring, kb.mul(kb.rem(u, c(win)), c(d))).ptr;
      Value chunkPtr = kb.at(kv, kb.mul(kb.sub(u, ctx.startPos), c(d))).ptr;
      return View{kb.select(kb.lt(u, ctx.startPos), ringPtr, chunkPtr), kv.elt};
    };
    View maxima = scratchF32(h, 0);
    Value windowBase = kb.max(c(0), kb.sub(ctx.startPos, c(win - 1)));
    if (k) {
      int64_t keysPer = win + k;
      Value own = ctx.tensorCore->attentionOwnKeys();
      // A warp a row: its source (and the top-k id) found once, the lanes'
      // pairs l, l + 32, ... (128-byte stores; the whole row by one thread
      // where lanes do not run at once).
      int64_t lanes = kb.lanesParallel() && half % KernelBuilder::kLanes == 0 ? KernelBuilder::kLanes : 1;
      kb.warpLoop(c(0), kb.mul(S(), c(keysPer)), [&](Value row, Value lane) {
        Value s = kb.div(row, c(keysPer)), r = kb.rem(row, c(keysPer));
        Value isWindow = kb.lt(r, c(win));
        Value slot = kb.max(kb.sub(r, c(win)), c(0));
        Value id = kb.toI64(kb.load(i32, kb.at(topk, kb.mul(s, c(k))).ptr, kb.min(slot, c(k - 1))));
        Value valid = kb.select(isWindow, kb.lt(r, inWindowOf(s)), kb.le(c(0), id));
        Value first = kb.add(kb.mul(row, c(half)), lanes > 1 ? lane : c(0));
        kb.ifElse(
            valid, TypeRange{},
            [&]() -> SmallVector<Value> {
              Value windowPtr = windowRow(kb.add(firstOf(s), kb.min(r, c(win - 1)))).ptr;
              Value entryPtr = kb.at(entries, kb.mul(kb.max(id, c(0)), c(d))).ptr;
              View src{kb.select(isWindow, windowPtr, entryPtr), kv.elt};
              kb.loop(c(0), c(half / lanes), [&](Value j) {
                Value pr = kb.add(kb.mul(j, c(lanes)), lanes > 1 ? lane : c(0));
                kb.store(pairOf(src, pr), own, kb.add(first, kb.mul(j, c(lanes))));
              });
              return {};
            },
            [&]() -> SmallVector<Value> {
              kb.loop(c(0), c(half / lanes), [&](Value j) {
                kb.store(zero, own, kb.add(first, kb.mul(j, c(lanes))));
              });
              return {};
            });
      });
      ctx.tensorCore->attention(q.ptr, sink.data, maxima.ptr, out.ptr, windowBase, topk.ptr, h,
                                d, win, ratio, capacity, k, scale);
      return;
    }
    Value entryCopy = ctx.tensorCore->attentionEntries();
    Value windowCopy = ctx.tensorCore->attentionWindow(capacity, d);
    // Entries past `most` (the capacity's last tile included) are zeros.
    Value most = kb.div(kb.add(ctx.startPos, S()), c(ratio));
    Value entryRows = kb.min(c(TensorCoreSplit::attentionEntryRows(capacity)),
                             kb.mul(kb.div(kb.add(most, c(63)), c(64)), c(64)));
    kb.parallelLoop(c(0), kb.mul(entryRows, c(half)), [&](Value e) {
      Value row = kb.div(e, c(half)), pr = kb.rem(e, c(half));
      Value word = kb.ifElse(
          kb.lt(row, most), TypeRange{i32},
          [&]() -> SmallVector<Value> {
            return {pairOf(kb.at(entries, kb.mul(row, c(d))), pr)};
          },
          [&]() -> SmallVector<Value> { return {zero}; })[0];
      kb.store(word, entryCopy, e);
    });
    Value windowRows = kb.add(kb.sub(kb.add(ctx.startPos, S()), windowBase), c(128));
    kb.parallelLoop(c(0), kb.mul(windowRows, c(half)), [&](Value e) {
      Value row = kb.div(e, c(half)), pr = kb.rem(e, c(half));
      Value u = kb.add(windowBase, row);
      Value inChunk = kb.lt(u, kb.add(ctx.startPos, S()));
      Value word = kb.ifElse(
          inChunk, TypeRange{i32},
          [&]() -> SmallVector<Value> { return {pairOf(windowRow(u), pr)}; },
          [&]() -> SmallVector<Value> { return {zero}; })[0];
      kb.store(word, windowCopy, e);
    });
    ctx.tensorCore->attention(q.ptr, sink.data, maxima.ptr, out.ptr, windowBase, Value(), h, d,
                              win, ratio, capacity, 0, scale);
    return;
  }
  // The three phases' scratch (the tensor-core kernels above need neither:
  // at a 1M context, HCA's weights are 2.1 MB a token).
  View weights = scratchF32(h * ldw, 0);
  View den = scratchF32(h, 0);
  int64_t hTiles = (h + 15) / 16;
  // Head r of head tile ht, clamped to the last head, and whether it is real.
  auto tileHead = [&](Value ht, Value r) {
    Value head = kb.add(kb.mul(ht, c(16)), r);
    return std::make_pair(kb.min(head, c(h - 1)), kb.lt(head, c(h)));
  };
  // Whether q and every key of token s are 16-byte aligned (f32 views):
  // then 16-byte loads.
  auto alignedFast = [&](Value s) {
    auto ok = [&](Value ptr) {
      Value addr = LLVM::PtrToIntOp::create(kb.builder(), kb.getLoc(), kb.i64(), ptr);
      return kb.eq(arith::AndIOp::create(kb.builder(), kb.getLoc(), addr, c(15)), c(0));
    };
    Value all = arith::AndIOp::create(kb.builder(), kb.getLoc(), ok(kv.ptr),
                                      ok(stateOf(op.getRing(), s)));
    all = arith::AndIOp::create(kb.builder(), kb.getLoc(), all, ok(q.ptr));
    if (ratio)
      all = arith::AndIOp::create(kb.builder(), kb.getLoc(), all,
                                  ok(stateOf(op.getEntries(), s)));
    return all;
  };
  bool vecPossible = target.wideLoads() && q.elt.isF32() && kv.elt.isF32();
  // n consecutive values of v from element i0 (n a multiple of 4): 16-byte
  // loads where `vec`.
  auto loadRun = [&](const View &v, Value i0, int64_t n, bool vec) {
    SmallVector<Value> xs;
    for (int64_t i = 0; i < n; i += 4) {
      if (vec) {
        Value four[4];
        target.loadF32x4(kb.builder(), kb.getLoc(),
                         kb.offset(kb.f32(), v.ptr, kb.add(i0, c(i))), four);
        xs.append(std::begin(four), std::end(four));
      } else {
        for (int64_t u = 0; u < 4; ++u)
          xs.push_back(kb.loadF(v, kb.add(i0, c(i + u))));
      }
    }
    return xs;
  };
  // body(vec) under a uniform branch on the alignment of token s's data.
  auto byAlignment = [&](Value s, function_ref<void(bool)> body) {
    if (!vecPossible)
      return body(false);
    kb.ifElse(
        alignedFast(s), TypeRange{},
        [&]() -> SmallVector<Value> {
          body(true);
          return {};
        },
        [&]() -> SmallVector<Value> {
          body(false);
          return {};
        });
  };
  // Scores: a warp per (token, head tile, block of kScoreTiles x 8 keys).
  // Lane (g, t) = (lane / 4, lane % 4) holds A rows g and g + 8 and B
  // column g of each n-tile; the MMA's k index 2t + {0, 1} and 2t + 8 +
  // {0, 1} are channels 8t + {0, 1} and 8t + {2, 3} of a 32-channel step
  // (8t + 4 .. 8t + 7 for its second MMA), the same for A and B
  // (Emitter::mmaTileDots' layout): a lane reads 8 consecutive channels of
  // its two query rows and of its key in each n-tile.
  constexpr int64_t kScoreTiles = 4, kBlockKeys = 8 * kScoreTiles;
  // The warps of a block take the same keys (or channels of the keys) for
  // every head tile of `tokensTogether` neighbouring tokens, so that the
  // keys come from L2 once for all of them and the block's other warps read
  // them from L1: a warp item is (token group, key block, token of the
  // group, head tile), the last fastest. Neighbouring tokens past the
  // window see the same compressed entries at the same key index (at a 1M
  // prompt, HCA's 8192 entries were read from L2 once per token and head
  // tile, L2's bandwidth the bound of the attention).
  int64_t warpsPerBlock = std::max<int64_t>(1, target.blockThreads() / KernelBuilder::kLanes);
  int64_t tokensTogether = std::max<int64_t>(1, warpsPerBlock / hTiles);
  int64_t together = tokensTogether * hTiles;
  Value tokenGroups = kb.div(kb.add(S(), c(tokensTogether - 1)), c(tokensTogether));
  // The token and head tile of item e of a loop of `perGroup` items a token
  // group (inner: e's index among them, slowest first, below `together`).
  auto groupItem = [&](Value e, Value perGroup) {
    Value inner = kb.rem(e, c(together)), outer = kb.div(e, c(together));
    Value s = kb.add(kb.mul(kb.div(outer, perGroup), c(tokensTogether)),
                     kb.div(inner, c(hTiles)));
    return std::make_tuple(s, kb.rem(inner, c(hTiles)), kb.rem(outer, perGroup));
  };
  auto scoresMma = [&](Value most) {
    Value blocks = kb.div(kb.add(most, c(kBlockKeys - 1)), c(kBlockKeys));
    kb.warpLoop(c(0), kb.mul(kb.mul(tokenGroups, blocks), c(together)), [&](Value e, Value lane) {
      Value s, ht, block;
      std::tie(s, ht, block) = groupItem(e, blocks);
      Value j0 = kb.mul(block, c(kBlockKeys));
      Value n = kb.select(kb.lt(s, S()), keysOf(kb.min(s, kb.sub(S(), c(1)))), c(0));
      View qs = kb.at(q, kb.mul(s, c(h * d)));
      // The score of key j (< n) for the tile's head (real).
      auto store = [&](Value head, Value j, Value dot) {
        Value valid = keyAt(s, j).second;
        kb.storeF(weights, kb.add(kb.mul(kb.add(kb.mul(s, c(h)), head), c(ldw)), j),
                  kb.select(valid, kb.mul(dot, kb.cf(scale)), kb.negInf()));
      };
      kb.ifThen(kb.lt(j0, n), [&] {
        if (!mma) {
          kb.loop(c(0), c(16), [&](Value r) {
            auto [head, real] = tileHead(ht, r);
            kb.ifThen(real, [&] {
              View qh = kb.at(qs, kb.mul(head, c(d)));
              kb.loop(j0, kb.min(kb.add(j0, c(kBlockKeys)), n), [&](Value j) {
                View key = keyAt(s, j).first;
                Value dot = kb.reduce1(c(0), c(d), kb.cf(0.0), [&](Value i, Value acc) {
                  return kb.add(acc, kb.mul(kb.roundBf16(kb.loadF(qh, i)),
                                            kb.roundBf16(kb.loadF(key, i))));
                });
                store(head, j, dot);
              });
            });
          });
          return;
        }
        Value g = kb.div(lane, c(4)), t = kb.rem(lane, c(4));
        auto [head0, real0] = tileHead(ht, g);
        auto [head1, real1] = tileHead(ht, kb.add(g, c(8)));
        View q0 = kb.at(qs, kb.mul(head0, c(d))), q1 = kb.at(qs, kb.mul(head1, c(d)));
        // The lane's key of each n-tile (a key past the last: the last).
        SmallVector<View> keys;
        for (int64_t nt = 0; nt < kScoreTiles; ++nt)
          keys.push_back(
              keyAt(s, kb.min(kb.add(kb.add(j0, c(nt * 8)), g), kb.sub(n, c(1)))).first);
        byAlignment(s, [&](bool vec) {
          int64_t unroll = d % 64 == 0 ? 2 : 1;
          auto step = [&](Value ks, ArrayRef<Value> in) -> SmallVector<Value> {
            Value k0 = kb.add(kb.mul(ks, c(32)), kb.mul(t, c(8)));
            SmallVector<Value> x0 = loadRun(q0, k0, 8, vec), x1 = loadRun(q1, k0, 8, vec);
            Value a[2][4];
            for (int64_t hh = 0; hh < 2; ++hh) {
              a[hh][0] = kb.packBf16x2(x0[4 * hh], x0[4 * hh + 1]);
              a[hh][1] = kb.packBf16x2(x1[4 * hh], x1[4 * hh + 1]);
              a[hh][2] = kb.packBf16x2(x0[4 * hh + 2], x0[4 * hh + 3]);
              a[hh][3] = kb.packBf16x2(x1[4 * hh + 2], x1[4 * hh + 3]);
            }
            SmallVector<Value> out(in);
            for (int64_t nt = 0; nt < kScoreTiles; ++nt) {
              SmallVector<Value> v = loadRun(keys[nt], k0, 8, vec);
              Value dd[4] = {out[nt * 4], out[nt * 4 + 1], out[nt * 4 + 2], out[nt * 4 + 3]};
              for (int64_t hh = 0; hh < 2; ++hh) {
                Value bf[2] = {kb.packBf16x2(v[4 * hh], v[4 * hh + 1]),
                               kb.packBf16x2(v[4 * hh + 2], v[4 * hh + 3])};
                Value cIn[4] = {dd[0], dd[1], dd[2], dd[3]};
                target.mmaBf16(kb.builder(), kb.getLoc(), a[hh], bf, cIn, dd);
              }
              for (int64_t u = 0; u < 4; ++u)
                out[nt * 4 + u] = dd[u];
            }
            return out;
          };
          SmallVector<Value> zeros(kScoreTiles * 4, kb.cf(0.0));
          SmallVector<Value> accs = kb.reduce(
              c(0), c(d / (32 * unroll)), zeros,
              [&](Value it, ValueRange in) -> SmallVector<Value> {
                SmallVector<Value> acc(in);
                for (int64_t u = 0; u < unroll; ++u)
                  acc = step(kb.add(kb.mul(it, c(unroll)), c(u)), acc);
                return acc;
              });
          // d[u] is row g (u < 2) or g + 8, column 2t + u % 2 of the n-tile.
          for (int64_t nt = 0; nt < kScoreTiles; ++nt)
            for (int64_t u = 0; u < 4; ++u) {
              Value j = kb.add(kb.add(j0, c(nt * 8)), kb.add(kb.mul(t, c(2)), c(u % 2)));
              Value head = u < 2 ? head0 : head1, real = u < 2 ? real0 : real1;
              kb.ifThen(arith::AndIOp::create(kb.builder(), kb.getLoc(), real, kb.lt(j, n)),
                        [&] { store(head, j, accs[nt * 4 + u]); });
            }
        });
      });
    });
  };
  // Phase 1: scores (-inf for a missing key), a warp per (token, key, group
  // of g1 heads): the key's segments are loaded once for the group's query
  // rows (dotRows with the query rows as f32 rows and the key as their x;
  // one butterfly for the g1 dots). The last token has the most keys (a
  // batched kernel: the token with the most). Warps of neighbouring head
  // groups read the same key.
  int64_t g1 = headGroup(4), groups1 = h / g1;
  Value most = mostOver(keysOf);
  if (fast) {
    scoresMma(most);
  } else {
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
          kb.storeOnce(weights, kb.add(kb.mul(sh, c(ldw)), j),
                       kb.select(valid, kb.mul(dots[g], kb.cf(scale)), kb.negInf()), lane);
        }
      });
    });
  }
  // Phase 2: per (token, head), a warp: the max (with the sink), the
  // weights p = exp(score - max) and their sum; lane l takes keys l,
  // l + 32, ... (four per loop trip, so their loads overlap) and the lanes
  // meet in the warp's butterfly.
  kb.warpLoop(c(0), kb.mul(S(), c(h)), [&](Value sh, Value lane) {
    Value n = keysOf(kb.div(sh, c(h)));
    View wh = kb.at(weights, kb.mul(sh, c(ldw)));
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
  // Weighted sums: out[s, head, ch] = sum_j bf16(p_j) bf16(key_j[ch]) / den,
  // a warp per (token, head tile, block of 8 kSumTiles channels), 16 keys a
  // loop trip. Lane (g, t) holds A's weights of keys 4t .. 4t + 3 of the
  // step (the MMA's k index 2t + {0, 1}, 2t + 8 + {0, 1}) for heads g and
  // g + 8, and B's values of those keys at the channel of column g of each
  // n-tile; column g of n-tile nt is channel c0 + g kSumTiles + nt, so a
  // lane reads kSumTiles consecutive channels of each of its four keys.
  // The accumulators (4 per n-tile) stay in registers. Keys past the
  // token's last, and missing ones (a top-k slot of -1), weigh 0 and their
  // values are taken as 0 (an unwritten entry may hold anything).
  const int64_t kSumTiles = d % 64 == 0 ? 8 : 4, blockChans = 8 * kSumTiles;
  auto sumsMma = [&] {
    int64_t chanBlocks = d / blockChans;
    kb.warpLoop(c(0), kb.mul(tokenGroups, c(chanBlocks * together)), [&](Value e, Value lane) {
      Value s, ht, block;
      std::tie(s, ht, block) = groupItem(e, c(chanBlocks));
      Value c0 = kb.mul(block, c(blockChans));
      // A token past the call's last (the tail of its group) stores nothing.
      kb.ifThen(kb.lt(s, S()), [&] {
        Value n = keysOf(s), last = kb.sub(n, c(1));
        auto weightsOf = [&](Value head) {
          return kb.at(weights, kb.mul(kb.add(kb.mul(s, c(h)), head), c(ldw)));
        };
        auto store = [&](Value head, Value ch, Value sum) {
          Value sh = kb.add(kb.mul(s, c(h)), head);
          kb.storeF(out, kb.add(kb.mul(sh, c(d)), ch), kb.div(sum, kb.loadF(den, sh)));
        };
        if (!mma) {
          kb.loop(c(0), c(16), [&](Value r) {
            auto [head, real] = tileHead(ht, r);
            kb.ifThen(real, [&] {
              View wh = weightsOf(head);
              SmallVector<Value> zeros(blockChans, kb.cf(0.0));
              SmallVector<Value> sums =
                  kb.reduce(c(0), n, zeros, [&](Value j, ValueRange in) -> SmallVector<Value> {
                    auto [key, valid] = keyAt(s, j);
                    Value p = kb.roundBf16(kb.loadF(wh, j));
                    SmallVector<Value> next;
                    for (int64_t i = 0; i < blockChans; ++i) {
                      Value v = kb.roundBf16(kb.loadF(key, kb.add(c0, c(i))));
                      next.push_back(kb.add(in[i], kb.select(valid, kb.mul(p, v), kb.cf(0.0))));
                    }
                    return next;
                  });
              for (int64_t i = 0; i < blockChans; ++i)
                store(head, kb.add(c0, c(i)), sums[i]);
            });
          });
          return;
        }
        Value g = kb.div(lane, c(4)), t = kb.rem(lane, c(4));
        auto [head0, real0] = tileHead(ht, g);
        auto [head1, real1] = tileHead(ht, kb.add(g, c(8)));
        View w0 = weightsOf(head0), w1 = weightsOf(head1);
        Value chan = kb.add(c0, kb.mul(g, c(kSumTiles)));
        byAlignment(s, [&](bool vec) {
          Value trips = kb.div(kb.add(n, c(15)), c(16));
          SmallVector<Value> zeros(kSumTiles * 4, kb.cf(0.0));
          SmallVector<Value> accs =
              kb.reduce(c(0), trips, zeros, [&](Value it, ValueRange in) -> SmallVector<Value> {
                Value jb = kb.add(kb.mul(it, c(16)), kb.mul(t, c(4)));
                // The weights (16-byte loads: ldw is a multiple of 16, the
                // scratch 64-byte aligned), 0 past the last key.
                SmallVector<Value> p0 = loadRun(w0, jb, 4, target.wideLoads());
                SmallVector<Value> p1 = loadRun(w1, jb, 4, target.wideLoads());
                SmallVector<Value> vals[4];
                for (int64_t u = 0; u < 4; ++u) {
                  Value j = kb.add(jb, c(u)), inRange = kb.lt(j, n);
                  p0[u] = kb.select(inRange, p0[u], kb.cf(0.0));
                  p1[u] = kb.select(inRange, p1[u], kb.cf(0.0));
                  auto [key, valid] = keyAt(s, kb.min(j, last));
                  Value use = arith::AndIOp::create(kb.builder(), kb.getLoc(), inRange, valid);
                  vals[u] = loadRun(key, chan, kSumTiles, vec);
                  for (Value &v : vals[u])
                    v = kb.select(use, v, kb.cf(0.0));
                }
                Value a[4] = {kb.packBf16x2(p0[0], p0[1]), kb.packBf16x2(p1[0], p1[1]),
                              kb.packBf16x2(p0[2], p0[3]), kb.packBf16x2(p1[2], p1[3])};
                SmallVector<Value> next(in.begin(), in.end());
                for (int64_t nt = 0; nt < kSumTiles; ++nt) {
                  Value bf[2] = {kb.packBf16x2(vals[0][nt], vals[1][nt]),
                                 kb.packBf16x2(vals[2][nt], vals[3][nt])};
                  Value cIn[4] = {next[nt * 4], next[nt * 4 + 1], next[nt * 4 + 2],
                                  next[nt * 4 + 3]};
                  Value dd[4];
                  target.mmaBf16(kb.builder(), kb.getLoc(), a, bf, cIn, dd);
                  for (int64_t u = 0; u < 4; ++u)
                    next[nt * 4 + u] = dd[u];
                }
                return next;
              });
          // d[u] is head g (u < 2) or g + 8, column 2t + u % 2 of n-tile nt:
          // channel c0 + (2t + u % 2) kSumTiles + nt.
          for (int64_t nt = 0; nt < kSumTiles; ++nt)
            for (int64_t u = 0; u < 4; ++u) {
              Value col = kb.add(kb.mul(t, c(2)), c(u % 2));
              Value ch = kb.add(c0, kb.add(kb.mul(col, c(kSumTiles)), c(nt)));
              Value head = u < 2 ? head0 : head1, real = u < 2 ? real0 : real1;
              kb.ifThen(real, [&] { store(head, ch, accs[nt * 4 + u]); });
            }
        });
      });
    });
  };
  if (fast) {
    sumsMma();
    return;
  }
  // The exact path's results of token s, head `head`, channels c0 ..
  // c0 + cpt - 1: into `out`, or through the inverse RoPE that reads them
  // (EmitContext::fusedRope: the operations of Emitter::ropeOp's out of
  // place form, on the values before they would be stored).
  auto rope = dyn_cast_or_null<RopeOp>(ctx.fusedRope);
  View roped = rope ? view(rope.getResult()) : View{};
  Value ropeTab = rope ? ropeTable(rope.getRope()) : Value();
  auto storeOut = [&](Value s, Value head, Value c0, ArrayRef<Value> vals) {
    Value at = kb.add(kb.mul(kb.add(kb.mul(s, c(h)), head), c(d)), c0);
    if (!rope) {
      for (size_t i = 0; i < vals.size(); ++i)
        kb.storeF(out, kb.add(at, c(int64_t(i))), vals[i]);
      return;
    }
    int64_t base = d - rope.getRope().getDim();
    kb.ifElse(
        kb.lt(c0, c(base)), TypeRange{},
        [&]() -> SmallVector<Value> {
          for (size_t i = 0; i < vals.size(); ++i)
            kb.storeF(roped, kb.add(at, c(int64_t(i))), vals[i]);
          return {};
        },
        [&]() -> SmallVector<Value> {
          for (size_t i = 0; i + 1 < vals.size(); i += 2) {
            Value pk = kb.div(kb.sub(kb.add(c0, c(int64_t(i))), c(base)), c(2));
            Value phi = kb.mul(kb.toF32(pos(s)), kb.load(kb.f32(), ropeTab, pk));
            Value cs = kb.cos(phi), sn = kb.neg(kb.sin(phi));
            Value a = vals[i], b = vals[i + 1];
            Value ia = kb.add(at, c(int64_t(i)));
            kb.storeF(roped, ia, kb.sub(kb.mul(a, cs), kb.mul(b, sn)));
            kb.storeF(roped, kb.add(ia, c(1)), kb.add(kb.mul(a, sn), kb.mul(b, cs)));
          }
          return {};
        });
  };
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
      Value pj = kb.loadF(wq, kb.add(c(g * ldw), j));
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
    View wq = kb.at(weights, kb.mul(kb.add(kb.mul(s, c(h)), kb.mul(hg, c(g3))), c(ldw)));
    SmallVector<Type> types(g3 * cpt, kb.f32());
    if (!vecKeys)
      return sumKeys(s, wq, c0, lo, hi, false);
    return kb.ifElse(
        keysAligned(s), types, [&] { return sumKeys(s, wq, c0, lo, hi, true); },
        [&] { return sumKeys(s, wq, c0, lo, hi, false); });
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
          for (int64_t g = 0; g < g3; ++g) {
            Value head = kb.add(kb.mul(hg, c(g3)), c(g));
            Value denom = kb.loadF(den, kb.add(kb.mul(s, c(h)), head));
            SmallVector<Value> vals;
            for (int64_t i = 0; i < cpt; ++i)
              vals.push_back(kb.div(totals[g * cpt + i], denom));
            storeOut(s, head, c0, vals);
          }
          return {};
        });
  });
  // With few tokens: a thread per (token, head, cpt channels) adds the
  // parts' sums of each channel in part order.
  auto combine = [&](Value e) {
    Value sh = kb.div(e, c(chans)), c0 = kb.mul(kb.rem(e, c(chans)), c(cpt));
    Value s = kb.div(sh, c(h)), head = kb.rem(sh, c(h));
    Value denom = kb.loadF(den, sh);
    SmallVector<Value> vals;
    for (int64_t i = 0; i < cpt; ++i) {
      Value acc = kb.cf(-0.0);
      for (int64_t p = 0; p < parts; ++p)
        acc = kb.add(acc, kb.loadF(partial, kb.add(kb.mul(kb.add(kb.mul(s, c(parts)), c(p)),
                                                          c(h * d)),
                                                   kb.add(kb.mul(head, c(d)), kb.add(c0, c(i))))));
      vals.push_back(kb.div(acc, denom));
    }
    storeOut(s, head, c0, vals);
  };
  // The ring's update after the attention in this kernel
  // (EmitContext::fusedWindow), in the same loop: beside the parts' sums
  // with few tokens (they read no key), after the weighted sums with many
  // (they read keys; the loop then has only the update's iterations).
  auto window = dyn_cast_or_null<WindowUpdateOp>(ctx.fusedWindow);
  Value windowItems = c(0);
  std::function<void(Value)> windowBody;
  if (window)
    windowBody = windowUpdateItems(window, windowItems);
  Value combineItems = kb.select(split, kb.mul(S(), c(h * chans)), c(0));
  kb.parallelLoop(c(0), kb.add(combineItems, windowItems), [&](Value e) {
    if (window) {
      kb.ifElse(
          kb.lt(e, combineItems), TypeRange{},
          [&]() -> SmallVector<Value> {
            combine(e);
            return {};
          },
          [&]() -> SmallVector<Value> {
            windowBody(kb.sub(e, combineItems));
            return {};
          });
      return;
    }
    combine(e);
  });
}

void Emitter::outProj(OutProjOp op) {
  auto shape = op.getO().getType().getShape();
  int64_t h = shape[1], d = shape[2], g = op.getGroups();
  WeightView woa = w(op.getWoA()), wob = w(op.getWoB());
  int64_t rows = woa.rows, per = woa.rows / g, groupIn = (h / g) * d;
  View o = view(op.getO()), out = view(op.getResult());
  View z = scratchF32(rows, 0);
  static const int64_t groupRows = KernelBuilder::experimentInt("COMPRESSA_DOT_GROUP_ROWS", 1);
  int64_t rg = 1;
  while (rg < groupRows && per % (rg * 2) == 0 &&
         KernelBuilder::segmentsPerRow(woa, o.elt) > 0)
    rg *= 2;
  auto byToken = [&] {
    int64_t items = rows / rg;
    kb.warpLoop(c(0), kb.mul(S(), c(items)), [&](Value e, Value lane) {
      Value s = kb.div(e, c(items)), r = kb.mul(kb.rem(e, c(items)), c(rg));
      Value grp = kb.div(r, c(per));
      View in = kb.at(o, kb.add(kb.mul(s, c(h * d)), kb.mul(grp, c(groupIn))));
      SmallVector<KernelBuilder::WeightRow> wr;
      for (int64_t j = 0; j < rg; ++j)
        wr.push_back({&woa, kb.add(r, c(j))});
      SmallVector<Value> dots = kb.dotRows(in, wr, lane);
      Value base = kb.add(kb.mul(s, c(rows)), r);
      for (int64_t j = 0; j < rg; ++j)
        kb.storeOnce(z, kb.add(base, c(j)), dots[j], lane);
    });
  };
  // The group's input of the tile's tokens (a warp's rows lie in one group).
  auto groupInput = [&](Value firstRow) {
    return kb.at(o, kb.mul(kb.div(firstRow, c(per)), c(groupIn)));
  };
  auto exactWoA = [&] {
    if (ctx.fastLinear && !ctx.batched && mmaFits(woa, per) &&
        per % (8 * mmaTilesPerWarp(per)) == 0) {
      // --numerics=fast: warp tensor-core tiles (TokenTiles.cpp) of two
      // 16-token m-tiles (each weight fragment decoded once for both), on o
      // rounded to bf16 once here instead of once per weight-row group: the
      // same MMAs, the same bits.
      Type bf16 = kb.builder().getBF16Type();
      View ob{ctx.scratch(h * d * 2, 0), bf16};
      storeBf16Pairs(kb, o, ob, kb.mul(S(), c(h * d)));
      constexpr int64_t mTiles = 2, tokens = kMmaTokens * mTiles;
      Value tiles = kb.div(kb.add(S(), c(tokens - 1)), c(tokens));
      mmaTileDots(
          tiles, rows, mmaTilesPerWarp(per),
          [&](Value tile, Value first) {
            return mmaDenseTile(tile, kb.at(ob, kb.mul(kb.div(first, c(per)), c(groupIn))), h * d,
                                {woa}, tokens);
          },
          [&](const MmaTile &, const MmaRow &row, Value r, ArrayRef<Value> y) {
            kb.storeF(z, kb.add(kb.mul(row.index, c(rows)), r), y[0]);
          },
          mTiles);
    } else if (KernelBuilder::segmentsPerRow(woa, o.elt) > 0 && per % rowsPerWarp(per) == 0) {
      // Prefill chunks: token tiles, the same dots as byToken's.
      branch(
          manyTokens(2 * kTileTokens),
          [&] {
            tileDots(
                denseTiles(), rows, rowsPerWarp(per), 1,
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
  };
  // fast-decode's decode calls of at most 8 tokens (an experiment): the
  // groups' rows in the FP8 GEMM semantics (fp8DecodeLinear), z quantised
  // where its parts are added, then wo_b the same way.
  if (ctx.fp8Decode && fp8LinearFits(woa, per, groupIn) && takesFp8Linear(wob) &&
      rows % kQuantBlock == 0) {
    EmitContext::Quantized zq{ctx.scratch(rows, 0), ctx.scratch(rows / kQuantBlock, 0)};
    branch(
        kb.le(S(), c(kFp8ExpertsMaxTokens)),
        [&] {
          fp8DecodeLinear(o, h * d, woa, z, per, groupIn, nullptr, &zq);
          fp8DecodeLinear(z, rows, wob, out, wob.rows, 0, &zq);
        },
        [&] {
          exactWoA();
          linearTokensExact(z, rows, wob, out);
        });
    return;
  }
  // --numerics=fast: wo_a in the FP8 GEMM semantics like the dense layers
  // (act_quant of o's rows, whose 128-blocks lie within a group, then each
  // group's block-scaled FP8 GEMM); on sm_90a one grouped wgmma GEMM.
  if (ctx.fastLinear && !ctx.batched && groupedWoA(op)) {
    fastLinearTokens(o, h * d, woa, z, g);
    linearTokens(z, rows, wob, out);
    return;
  }
  exactWoA();
  linearTokens(z, rows, wob, out);
}

bool Emitter::groupedWoA(OutProjOp op) {
  static const bool off = KernelBuilder::experimentString("COMPRESSA_WOA_FP8") == "0";
  auto w = cast<dsv4::WeightType>(op.getWoA().getType());
  auto shape = op.getO().getType().getShape();
  int64_t h = shape[1], d = shape[2], g = op.getGroups();
  if (off || g < 1 || h % g || w.getRank() != 2 || !w.isQuantized() ||
      !isa<Float8E4M3FNType>(w.getElementType()))
    return false;
  int64_t groupIn = (h / g) * d;
  return w.getShape()[1] == groupIn && groupIn % kQuantBlock == 0 &&
         w.getShape()[0] % (g * kQuantBlock) == 0;
}

void mlir::compressa::cpu::populateAttentionPatterns(KernelPatternSet &patterns) {
  patterns.add(&Emitter::qProj);
  patterns.add(&Emitter::kvProj);
  patterns.add(&Emitter::ropeOp);
  patterns.add(&Emitter::windowUpdate);
  patterns.add(&Emitter::attention);
  patterns.add(&Emitter::outProj);
}
