//===- OpEmitters.cpp - dsv4 ops -> CPU kernel code ---------------------===//
// SPDX-License-Identifier: Apache-2.0
//
// Each emitter is the loop nest of its op's definition in
// shared/spec/deepseek-v4.md, in f32 with f32 accumulation. Token `s` of a
// call is at absolute position `startPos + s`.
//
//===----------------------------------------------------------------------===//

#include "lowering/DSV4ToKernels/OpEmitters.h"
#include "dialects/DSV4/IR/DSV4Ops.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>

using namespace mlir;
using namespace mlir::compressa::cpu;
using namespace mlir::dsv4;

WeightView ExpertView::expert(KernelBuilder &kb, Value e) const {
  WeightView w;
  w.data = kb.loadPtr(table, e);
  w.scale = kb.loadPtr(table, kb.add(e, kb.c(count)));
  w.elt = elt;
  w.rows = rows;
  w.cols = cols;
  return w;
}

namespace {

/// Elements per token of a tensor value (all dims but the first).
int64_t perToken(Value v) {
  auto shape = cast<RankedTensorType>(v.getType()).getShape();
  int64_t n = 1;
  for (int64_t d : shape.drop_front())
    n *= d;
  return n;
}

class Emitter {
public:
  Emitter(KernelBuilder &kb, EmitContext &ctx) : kb(kb), ctx(ctx) {}

  View view(Value v) { return ctx.tensors.lookup(v); }
  WeightView w(Value v) { return ctx.weights.lookup(v); }
  Value S() { return ctx.tokens; }
  Value pos(Value s) { return kb.add(ctx.startPos, s); }
  Value c(int64_t v) { return kb.c(v); }
  /// f32 scratch of `perTokenElems * S + elems` floats.
  View scratchF32(int64_t perTokenElems, int64_t elems) {
    return {ctx.scratch(perTokenElems * 4, elems * 4), kb.f32()};
  }

  /// rsqrt(mean(x^2) + eps) over the n elements at x, the squares summed
  /// lane-split (in a warpLoop body).
  Value inverseRms(View x, int64_t n, double eps, Value lane) {
    Value ss = kb.dotLanes(x, x, n, lane);
    return kb.rsqrt(kb.add(kb.div(ss, kb.cf(double(n))), kb.cf(eps)));
  }

  /// out[s, i] = sum_j pre[s, j] X_j[s, i] over the n streams of width d.
  void mixStreams(View streams, View pre, int64_t n, int64_t d, View out) {
    kb.parallelLoop(c(0), kb.mul(S(), c(d)), [&](Value e) {
      Value s = kb.div(e, c(d)), i = kb.rem(e, c(d));
      View xs = kb.at(streams, kb.mul(s, c(n * d))), pres = kb.at(pre, kb.mul(s, c(n)));
      Value acc = kb.cf(0.0);
      for (int64_t j = 0; j < n; ++j)
        acc = kb.add(acc, kb.mul(kb.loadF(pres, c(j)), kb.loadF(xs, kb.add(i, c(j * d)))));
      kb.storeF(out, e, acc);
    });
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

  /// r[row] = rsqrt(mean(x[row]^2) + eps) for `rows` rows of n elements.
  void inverseRmsRows(View x, Value rows, int64_t n, double eps, View r) {
    kb.warpLoop(c(0), rows, [&](Value row, Value lane) {
      kb.storeOnce(r, row, inverseRms(kb.at(x, kb.mul(row, c(n))), n, eps, lane), lane);
    });
  }

  /// rmsNorm over `rows` rows of n elements (x may be y); `r` is scratch of
  /// `rows` floats for the inverse RMS of each row.
  void rmsNormRows(View x, View y, Value rows, int64_t n, double eps,
                   const WeightView *weight, View r) {
    inverseRmsRows(x, rows, n, eps, r);
    kb.parallelLoop(c(0), kb.mul(rows, c(n)), [&](Value e) {
      Value v = kb.mul(kb.loadF(x, e), kb.loadF(r, kb.div(e, c(n))));
      if (weight)
        v = kb.mul(v, kb.weight(*weight, c(0), kb.rem(e, c(n))));
      kb.storeF(y, e, v);
    });
  }

  /// out[s, i] = dot(x[s], W row i) for every token s of the call and row i;
  /// token s of x starts at s * xStride.
  void linearTokens(View x, int64_t xStride, const WeightView &wt, View out) {
    kb.warpLoop(c(0), kb.mul(S(), c(wt.rows)), [&](Value e, Value lane) {
      Value s = kb.div(e, c(wt.rows)), i = kb.rem(e, c(wt.rows));
      kb.storeOnce(out, e, kb.dotLanes(kb.at(x, kb.mul(s, c(xStride))), wt, i, lane), lane);
    });
  }

  /// Writes into `ids`/`order` the k largest of `n` scores at `scores`
  /// (descending; ties go to the lower index), marking taken ones -inf.
  /// `store(k, index)` receives each pick.
  void selectTopk(View scores, Value n, Value k, function_ref<void(Value, Value)> store) {
    kb.loop(c(0), k, [&](Value j) {
      SmallVector<Value> best = kb.reduce(
          c(0), n, ValueRange{kb.negInf(), c(-1)},
          [&](Value i, ValueRange acc) -> SmallVector<Value> {
            Value v = kb.loadF(scores, i);
            // Strictly greater, so the lowest index wins ties; the first
            // candidate is taken whatever its score.
            Value better = kb.lt(acc[0], v);
            Value first = kb.eq(acc[1], c(-1));
            Value take = arith::OrIOp::create(kb.builder(), kb.getLoc(), better, first);
            return {kb.select(take, v, acc[0]), kb.select(take, i, acc[1])};
          });
      store(j, best[1]);
      kb.storeF(scores, best[1], kb.negInf());
    });
  }

  LogicalResult emit(Operation *op);

  // The ops.
  void embed(EmbedOp op);
  void hcExpand(HcExpandOp op);
  void rmsNormOp(RmsNormOp op);
  void hcPre(HcPreOp op);
  void hcPost(HcPostOp op);
  void hcHead(HcHeadOp op);
  void qProj(QProjOp op);
  void kvProj(KVProjOp op);
  void ropeOp(RopeOp op);
  void windowUpdate(WindowUpdateOp op);
  void compress(CompressOp op);
  void indexer(IndexerTopkOp op);
  void attention(SparseAttentionOp op);
  void outProj(OutProjOp op);
  void gate(MoeGateOp op);
  void hashGate(MoeHashGateOp op);
  void experts(MoeExpertsOp op);
  void sharedExpert(SharedExpertOp op);
  void lmHead(LmHeadOp op);
  void addF(arith::AddFOp op);

private:
  /// sigma[s, e] = sqrt(softplus(x[s] . w row e)) for every token and expert.
  Value routerScore(View x, const WeightView &wt, Value s, Value e, Value lane);
  /// routing weights: sigma[ids[k]] / sum * scale for the K picks.
  void routeWeights(View sigma, View ids, View weights, int64_t k, double scale);
  /// The clamped SwiGLU hidden value i of token vector x.
  Value swigluHidden(View x, const WeightView &w1, const WeightView &w3,
                     double limit, Value i, Value lane);

  KernelBuilder &kb;
  EmitContext &ctx;
};

} // namespace

//===----------------------------------------------------------------------===//
// Embedding, norms, mHC
//===----------------------------------------------------------------------===//

void Emitter::embed(EmbedOp op) {
  View ids = view(op.getIds()), out = view(op.getResult());
  WeightView table = w(op.getTable());
  int64_t d = table.cols;
  kb.parallelLoop(c(0), kb.mul(S(), c(d)), [&](Value e) {
    Value s = kb.div(e, c(d)), i = kb.rem(e, c(d));
    kb.storeF(out, e, kb.weight(table, kb.loadF(ids, s), i));
  });
}

void Emitter::hcExpand(HcExpandOp op) {
  View x = view(op.getX()), out = view(op.getResult());
  auto shape = op.getResult().getType().getShape();
  int64_t n = shape[1], d = shape[2];
  kb.parallelLoop(c(0), kb.mul(S(), c(n * d)), [&](Value e) {
    Value s = kb.div(e, c(n * d)), i = kb.rem(e, c(d));
    kb.storeF(out, e, kb.loadF(x, kb.add(kb.mul(s, c(d)), i)));
  });
}

void Emitter::rmsNormOp(RmsNormOp op) {
  View x = view(op.getX()), y = view(op.getResult());
  auto shape = op.getX().getType().getShape();
  int64_t n = shape.back(), rows = perToken(op.getX()) / n;
  WeightView weight;
  if (op.getWeight())
    weight = w(op.getWeight());
  double eps = op.getEps().convertToDouble();
  rmsNormRows(x, y, kb.mul(S(), c(rows)), n, eps, op.getWeight() ? &weight : nullptr,
              scratchF32(rows, 0));
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
  View rho = scratchF32(1, 0), mu = scratchF32(mix, 0), pre = scratchF32(n, 0);
  // mu = rsqrt(mean(x^2) + eps) * (fn . x) over each token's flattened streams.
  inverseRmsRows(streams, S(), n * d, normEps, rho);
  kb.warpLoop(c(0), kb.mul(S(), c(mix)), [&](Value e, Value lane) {
    Value s = kb.div(e, c(mix)), k = kb.rem(e, c(mix));
    View xs = kb.at(streams, kb.mul(s, c(n * d)));
    kb.storeOnce(mu, e, kb.mul(kb.loadF(rho, s), kb.dotLanes(xs, fn, k, lane)), lane);
  });
  // The n + n + n*n mixes and the Sinkhorn iterations: a thread per token.
  kb.parallelLoop(c(0), S(), [&](Value s) {
    View mus = kb.at(mu, kb.mul(s, c(mix))), pres = kb.at(pre, kb.mul(s, c(n)));
    View postS = kb.at(post, kb.mul(s, c(n)));
    View cm = kb.at(comb, kb.mul(s, c(n * n)));
    Value s0 = kb.weight(scale, c(0), c(0)), s1 = kb.weight(scale, c(0), c(1));
    Value s2 = kb.weight(scale, c(0), c(2));
    for (int64_t j = 0; j < n; ++j) {
      Value pj = kb.add(kb.mul(s0, kb.loadF(mus, c(j))), kb.weight(base, c(0), c(j)));
      kb.storeF(pres, c(j), kb.add(kb.sigmoid(pj), kb.cf(hcEps)));
      Value qj = kb.add(kb.mul(s1, kb.loadF(mus, c(n + j))),
                        kb.weight(base, c(0), c(n + j)));
      kb.storeF(postS, c(j), kb.mul(kb.cf(2.0), kb.sigmoid(qj)));
    }
    // comb: logits, row softmax + eps, column normalisation, then
    // (iters - 1) x (row, column) normalisations (spec §4.3 step 4). The
    // n x n matrix stays in registers (n is a compile-time constant); only
    // the result is stored.
    SmallVector<Value> m(n * n);
    for (int64_t i = 0; i < n * n; ++i)
      m[i] = kb.add(kb.mul(s2, kb.loadF(mus, c(2 * n + i))),
                    kb.weight(base, c(0), c(2 * n + i)));
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
  mixStreams(streams, pre, n, d, x);
}

void Emitter::hcPost(HcPostOp op) {
  auto shape = op.getStreams().getType().getShape();
  int64_t n = shape[1], d = shape[2];
  View a = view(op.getA()), streams = view(op.getStreams());
  View post = view(op.getPost()), comb = view(op.getComb()), out = view(op.getResult());
  // out[s, k, i] = post_k a[s, i] + sum_j comb[j, k] X_j[i].
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
  kb.warpLoop(c(0), kb.mul(S(), c(n)), [&](Value e, Value lane) {
    Value s = kb.div(e, c(n)), j = kb.rem(e, c(n));
    View xs = kb.at(streams, kb.mul(s, c(n * d)));
    Value mu = kb.mul(kb.loadF(rho, s), kb.dotLanes(xs, fn, j, lane));
    Value pj = kb.add(kb.mul(kb.weight(scale, c(0), c(0)), mu), kb.weight(base, c(0), j));
    kb.storeOnce(pre, e, kb.add(kb.sigmoid(pj), kb.cf(hcEps)), lane);
  });
  mixStreams(streams, pre, n, d, out);
}

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

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
  kb.parallelLoop(c(0), kb.mul(S(), c(rows)), [&](Value e) {
    Value off = kb.mul(e, c(len));
    View src = kb.at(x, off), dst = kb.at(y, off);
    if (x.ptr != y.ptr)
      kb.loop(c(0), c(len), [&](Value i) { kb.storeF(dst, i, kb.loadF(src, i)); });
    rope(dst, len, pos(kb.div(e, c(rows))), op.getRope(), op.getInverse());
  });
}

void Emitter::windowUpdate(WindowUpdateOp op) {
  WindowKVType ring = op.getRing().getType();
  int64_t win = ring.getWindow(), d = ring.getDim();
  View dst{ctx.states.lookup(op.getRing()), ring.getElementType()};
  View kv = view(op.getKv());
  // Only the last `window` tokens of the chunk survive; their slots differ.
  Value first = kb.max(c(0), kb.sub(S(), c(win)));
  kb.parallelLoop(c(0), kb.mul(kb.sub(S(), first), c(d)), [&](Value e) {
    Value s = kb.add(first, kb.div(e, c(d))), i = kb.rem(e, c(d));
    Value slot = kb.rem(pos(s), c(win));
    kb.storeF(dst, kb.add(kb.mul(slot, c(d)), i), kb.loadF(kv, kb.add(kb.mul(s, c(d)), i)));
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
    kb.storeOnce(kvRows, e, kb.dotLanes(xs, wkv, i, lane), lane);
    kb.storeOnce(scoreRows, e,
                 kb.add(kb.dotLanes(xs, wgate, i, lane),
                        kb.weight(ape, kb.rem(pos(s), c(m)), i)),
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
  kb.parallelLoop(c(0), kb.mul(S(), c(heads)), [&](Value e) {
    rope(kb.at(q, kb.mul(e, c(di))), di, pos(kb.div(e, c(heads))), op.getRope(), false);
  });
  kb.warpLoop(c(0), kb.mul(S(), c(heads)), [&](Value e, Value lane) {
    Value s = kb.div(e, c(heads)), h = kb.rem(e, c(heads));
    Value dotv = kb.dotLanes(kb.at(x, kb.mul(s, c(dm))), wp, h, lane);
    kb.storeOnce(hw, e, kb.mul(dotv, kb.cf(headScale)), lane);
  });
  // Scores of every (token, visible entry); the last token sees the most.
  Value most = avail(kb.sub(S(), c(1)));
  kb.parallelLoop(c(0), kb.mul(S(), most), [&](Value e) {
    Value s = kb.div(e, most), j = kb.rem(e, most);
    kb.ifThen(kb.lt(j, avail(s)), [&] {
      View qs = kb.at(q, kb.mul(s, c(heads * di))), hws = kb.at(hw, kb.mul(s, c(heads)));
      View key = kb.at(keys, kb.mul(j, c(di)));
      Value score = kb.reduce1(c(0), c(heads), kb.cf(0.0), [&](Value h, Value acc) {
        View qh = kb.at(qs, kb.mul(h, c(di)));
        Value dotv = kb.reduce1(c(0), c(di), kb.cf(0.0), [&](Value i, Value a) {
          return kb.add(a, kb.mul(kb.loadF(qh, i), kb.loadF(key, i)));
        });
        return kb.add(acc, kb.mul(kb.loadF(hws, h), kb.max(dotv, kb.cf(0.0))));
      });
      kb.storeF(scores, kb.add(kb.mul(s, c(capacity)), j), score);
    });
  });
  // A thread per token picks its top-k (-1 where fewer are visible).
  kb.parallelLoop(c(0), S(), [&](Value s) {
    View row = kb.at(out, kb.mul(s, c(topk)));
    kb.loop(c(0), c(topk), [&](Value j) { kb.store(kb.truncI32(c(-1)), row.ptr, j); });
    Value n = avail(s);
    selectTopk(kb.at(scores, kb.mul(s, c(capacity))), n, kb.min(c(topk), n),
               [&](Value j, Value idx) { kb.store(kb.truncI32(idx), row.ptr, j); });
  });
}

void Emitter::attention(SparseAttentionOp op) {
  auto qShape = op.getQ().getType().getShape();
  int64_t h = qShape[1], d = qShape[2];
  WindowKVType ringType = op.getRing().getType();
  int64_t win = ringType.getWindow();
  View ring{ctx.states.lookup(op.getRing()), ringType.getElementType()};
  View q = view(op.getQ()), kv = view(op.getKv()), out = view(op.getResult());
  WeightView sink = w(op.getSink());
  double scale = op.getScale().convertToDouble();
  View entries;
  int64_t ratio = 0, k = 0;
  View topk;
  if (op.getEntries()) {
    CompressedKVType et = op.getEntries().getType();
    entries = View{ctx.states.lookup(op.getEntries()), et.getElementType()};
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
  // be -1).
  auto keyAt = [&](Value s, Value j) -> std::pair<View, Value> {
    Value u = kb.add(firstOf(s), j);
    Value inChunk = kb.le(ctx.startPos, u);
    Value chunkPtr = kb.at(kv, kb.mul(kb.sub(u, ctx.startPos), c(d))).ptr;
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
    Value entryPtr = kb.at(entries, kb.mul(e, c(d))).ptr;
    Value isWindow = kb.lt(j, inWindow);
    return {View{kb.select(isWindow, windowPtr, entryPtr), kv.elt},
            arith::OrIOp::create(kb.builder(), kb.getLoc(), isWindow, valid)};
  };
  // Phase 1: scores (-inf for a missing key); the last token has the most.
  Value most = keysOf(kb.sub(S(), c(1)));
  kb.parallelLoop(c(0), kb.mul(kb.mul(S(), c(h)), most), [&](Value e) {
    Value sh = kb.div(e, most), j = kb.rem(e, most);
    Value s = kb.div(sh, c(h));
    kb.ifThen(kb.lt(j, keysOf(s)), [&] {
      auto [key, valid] = keyAt(s, j);
      View qh = kb.at(q, kb.mul(sh, c(d)));
      Value dotv = kb.reduce1(c(0), c(d), kb.cf(0.0), [&](Value i, Value a) {
        return kb.add(a, kb.mul(kb.loadF(qh, i), kb.loadF(key, i)));
      });
      kb.storeF(weights, kb.add(kb.mul(sh, c(maxKeys)), j),
                kb.select(valid, kb.mul(dotv, kb.cf(scale)), kb.negInf()));
    });
  });
  // Phase 2: per (token, head), the max (with the sink), weights, their sum.
  kb.parallelLoop(c(0), kb.mul(S(), c(h)), [&](Value sh) {
    Value n = keysOf(kb.div(sh, c(h)));
    View wh = kb.at(weights, kb.mul(sh, c(maxKeys)));
    Value sinkLogit = kb.weight(sink, c(0), kb.rem(sh, c(h)));
    Value mx = kb.reduce1(c(0), n, sinkLogit, [&](Value j, Value a) {
      return kb.max(a, kb.loadF(wh, j));
    });
    Value sum = kb.reduce1(c(0), n, kb.cf(0.0), [&](Value j, Value a) {
      Value p = kb.exp(kb.sub(kb.loadF(wh, j), mx));
      kb.storeF(wh, j, p);
      return kb.add(a, p);
    });
    kb.storeF(den, sh, kb.add(sum, kb.exp(kb.sub(sinkLogit, mx))));
  });
  // Phase 3: out[s, h, i] = sum_j p_j key_j[i] / den. One thread: key by
  // key into the output row. A block: a channel per thread. The same sums
  // in the same order either way.
  if (kb.threads() == 1) {
    kb.parallelLoop(c(0), kb.mul(S(), c(h)), [&](Value sh) {
      Value s = kb.div(sh, c(h));
      View wh = kb.at(weights, kb.mul(sh, c(maxKeys)));
      View oh = kb.at(out, kb.mul(sh, c(d)));
      kb.loop(c(0), c(d), [&](Value i) { kb.storeF(oh, i, kb.cf(0.0)); });
      kb.loop(c(0), keysOf(s), [&](Value j) {
        auto [key, valid] = keyAt(s, j);
        kb.ifThen(valid, [&] {
          Value p = kb.loadF(wh, j);
          kb.loop(c(0), c(d), [&](Value i) {
            kb.storeF(oh, i, kb.add(kb.loadF(oh, i), kb.mul(p, kb.loadF(key, i))));
          });
        });
      });
      Value dh = kb.loadF(den, sh);
      kb.loop(c(0), c(d), [&](Value i) { kb.storeF(oh, i, kb.div(kb.loadF(oh, i), dh)); });
    });
    return;
  }
  kb.parallelLoop(c(0), kb.mul(S(), c(h * d)), [&](Value e) {
    Value sh = kb.div(e, c(d)), i = kb.rem(e, c(d));
    Value s = kb.div(sh, c(h));
    View wh = kb.at(weights, kb.mul(sh, c(maxKeys)));
    Value acc = kb.reduce1(c(0), keysOf(s), kb.cf(0.0), [&](Value j, Value a) {
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

//===----------------------------------------------------------------------===//
// MoE
//===----------------------------------------------------------------------===//

Value Emitter::routerScore(View x, const WeightView &wt, Value s, Value e, Value lane) {
  return kb.sqrt(kb.softplus(kb.dotLanes(kb.at(x, kb.mul(s, c(wt.cols))), wt, e, lane)));
}

void Emitter::routeWeights(View sigma, View ids, View weights, int64_t k,
                           double scale) {
  auto idAt = [&](int64_t j) {
    return kb.toI64(kb.load(kb.builder().getI32Type(), ids.ptr, c(j)));
  };
  Value sum = kb.cf(0.0);
  for (int64_t j = 0; j < k; ++j)
    sum = kb.add(sum, kb.loadF(sigma, idAt(j)));
  kb.parallelLoop(c(0), c(k), [&](Value j) {
    Value id = kb.toI64(kb.load(kb.builder().getI32Type(), ids.ptr, j));
    kb.storeF(weights, j,
              kb.mul(kb.div(kb.loadF(sigma, id), kb.add(sum, kb.cf(1e-20))),
                     kb.cf(scale)));
  });
}

void Emitter::gate(MoeGateOp op) {
  WeightView wt = w(op.getW()), bias = w(op.getBias());
  int64_t e = wt.rows, k = op.getTopk();
  View x = view(op.getX()), weights = view(op.getWeights()), ids = view(op.getIds());
  View sigma = scratchF32(e, 0), sel = scratchF32(e, 0);
  double scale = op.getRouteScale().convertToDouble();
  kb.warpLoop(c(0), kb.mul(S(), c(e)), [&](Value se, Value lane) {
    Value s = kb.div(se, c(e)), i = kb.rem(se, c(e));
    Value sg = routerScore(x, wt, s, i, lane);
    kb.storeOnce(sigma, se, sg, lane);
    kb.storeOnce(sel, se, kb.add(sg, kb.weight(bias, c(0), i)), lane);
  });
  // A thread per token: top-k of the biased scores, then the weights.
  kb.parallelLoop(c(0), S(), [&](Value s) {
    View idsS = kb.at(ids, kb.mul(s, c(k)));
    selectTopk(kb.at(sel, kb.mul(s, c(e))), c(e), c(k), [&](Value j, Value idx) {
      kb.store(kb.truncI32(idx), idsS.ptr, j);
    });
    routeWeights(kb.at(sigma, kb.mul(s, c(e))), idsS, kb.at(weights, kb.mul(s, c(k))), k,
                 scale);
  });
}

void Emitter::hashGate(MoeHashGateOp op) {
  WeightView wt = w(op.getW()), tid2eid = w(op.getTid2eid());
  int64_t e = wt.rows, k = tid2eid.cols;
  View x = view(op.getX()), tokens = view(op.getTokenIds());
  View weights = view(op.getWeights()), ids = view(op.getIds());
  View sigma = scratchF32(e, 0);
  double scale = op.getRouteScale().convertToDouble();
  kb.warpLoop(c(0), kb.mul(S(), c(e)), [&](Value se, Value lane) {
    kb.storeOnce(sigma, se, routerScore(x, wt, kb.div(se, c(e)), kb.rem(se, c(e)), lane),
                 lane);
  });
  // A thread per token: the token id's experts, then the weights.
  kb.parallelLoop(c(0), S(), [&](Value s) {
    Value tok = kb.loadF(tokens, s);
    View idsS = kb.at(ids, kb.mul(s, c(k)));
    for (int64_t j = 0; j < k; ++j)
      kb.store(kb.truncI32(kb.weight(tid2eid, tok, c(j))), idsS.ptr, c(j));
    routeWeights(kb.at(sigma, kb.mul(s, c(e))), idsS, kb.at(weights, kb.mul(s, c(k))), k,
                 scale);
  });
}

Value Emitter::swigluHidden(View x, const WeightView &w1, const WeightView &w3,
                            double limit, Value i, Value lane) {
  Value g = kb.min(kb.dotLanes(x, w1, i, lane), kb.cf(limit));
  Value u = kb.max(kb.min(kb.dotLanes(x, w3, i, lane), kb.cf(limit)), kb.cf(-limit));
  return kb.mul(kb.silu(g), u);
}

void Emitter::experts(MoeExpertsOp op) {
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
  // h[s, j] = SwiGLU hidden of token s through its j-th expert.
  kb.warpLoop(c(0), kb.mul(S(), c(k * inter)), [&](Value e, Value lane) {
    Value slot = kb.div(e, c(inter)), i = kb.rem(e, c(inter));
    Value ex = expertOf(slot);
    View xs = kb.at(x, kb.mul(kb.div(slot, c(k)), c(dm)));
    kb.storeOnce(h, e, swigluHidden(xs, e1.expert(kb, ex), e3.expert(kb, ex), limit, i, lane),
                 lane);
  });
  // out[s, o] = sum over the k picks, in order, of weight_j * (W2_j h_j)[o].
  kb.warpLoop(c(0), kb.mul(S(), c(dm)), [&](Value e, Value lane) {
    Value s = kb.div(e, c(dm)), o = kb.rem(e, c(dm));
    Value acc = kb.reduce1(c(0), c(k), kb.cf(0.0), [&](Value j, Value a) {
      Value slot = kb.add(kb.mul(s, c(k)), j);
      View hj = kb.at(h, kb.mul(slot, c(inter)));
      Value y = kb.dotLanes(hj, e2.expert(kb, expertOf(slot)), o, lane);
      return kb.add(a, kb.mul(kb.loadF(weights, slot), y));
    });
    kb.storeOnce(out, e, acc, lane);
  });
}

void Emitter::sharedExpert(SharedExpertOp op) {
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

void Emitter::lmHead(LmHeadOp op) {
  WeightView head = w(op.getHead());
  linearTokens(view(op.getY()), head.cols, head, view(op.getLogits()));
}

void Emitter::addF(arith::AddFOp op) {
  View a = view(op.getLhs()), b = view(op.getRhs()), out = view(op.getResult());
  int64_t n = perToken(op.getResult());
  kb.parallelLoop(c(0), kb.mul(S(), c(n)), [&](Value i) {
    kb.storeF(out, i, kb.add(kb.loadF(a, i), kb.loadF(b, i)));
  });
}

LogicalResult Emitter::emit(Operation *op) {
  bool handled = true;
  llvm::TypeSwitch<Operation *>(op)
      .Case([&](EmbedOp o) { embed(o); })
      .Case([&](HcExpandOp o) { hcExpand(o); })
      .Case([&](RmsNormOp o) { rmsNormOp(o); })
      .Case([&](HcPreOp o) { hcPre(o); })
      .Case([&](HcPostOp o) { hcPost(o); })
      .Case([&](HcHeadOp o) { hcHead(o); })
      .Case([&](QProjOp o) { qProj(o); })
      .Case([&](KVProjOp o) { kvProj(o); })
      .Case([&](RopeOp o) { ropeOp(o); })
      .Case([&](WindowUpdateOp o) { windowUpdate(o); })
      .Case([&](CompressOp o) { compress(o); })
      .Case([&](IndexerTopkOp o) { indexer(o); })
      .Case([&](SparseAttentionOp o) { attention(o); })
      .Case([&](OutProjOp o) { outProj(o); })
      .Case([&](MoeGateOp o) { gate(o); })
      .Case([&](MoeHashGateOp o) { hashGate(o); })
      .Case([&](MoeExpertsOp o) { experts(o); })
      .Case([&](SharedExpertOp o) { sharedExpert(o); })
      .Case([&](LmHeadOp o) { lmHead(o); })
      .Case([&](arith::AddFOp o) { addF(o); })
      .Default([&](Operation *) { handled = false; });
  if (!handled)
    return op->emitOpError("has no CPU kernel emitter");
  return success();
}

LogicalResult mlir::compressa::cpu::emitOp(KernelBuilder &kb, Operation *op,
                                           EmitContext &ctx) {
  Emitter emitter(kb, ctx);
  return emitter.emit(op);
}
