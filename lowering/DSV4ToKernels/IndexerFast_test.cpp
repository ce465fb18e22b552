//===- IndexerFast_test.cpp - The indexer of --numerics=fast ---------------===//
// SPDX-License-Identifier: Apache-2.0
//
// dsv4.attn.indexer_topk marked dsv4.numerics = "fast" (the prefill program
// of --numerics=fast) act_quant's q and the keys (1 x 128 blocks along the
// key width -- here one block of 32 --, UE8M0 scales: DeepSeek-V3.2's FP8
// indexer) and scores with products of the dequantised values summed in
// f32 (mma.sync bf16 -> f32 on CUDA, exact for them; the CPU target
// computes the same products). Its picks are checked against a plain
// reference of those semantics (ActQuantReference.h's act_quant, exact
// sums): every pick equal to the reference's, or a near-tie within f32
// accumulation tolerance; keys identical after act_quant tie exactly and
// go to the lower index. The keys include pairs that differ in f32 but not
// after act_quant, so the exact path's picks differ from these (checked:
// the test sees the fast code). Both top-k selections run: the ranking
// (capacity <= 4096) and the radix one. (COMPRESSA_INDEXER_FP8=0 at
// compile time gives bf16 q and keys instead; this test checks the
// default.)
//
//===----------------------------------------------------------------------===//

#include "lowering/DSV4ToKernels/KernelTestHarness.h"
#include "lowering/TensorCore/ActQuantReference.h"
#include "runtime/weights/dtype.h"
#include "test/reference/Reference.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

namespace ref = ::compressa::reference;
using ::compressa::cpu_test::Arg;
using ::compressa::cpu_test::GuardedBuffer;
using ::compressa::cpu_test::OpKernel;
using ::compressa::cpu_test::roundToBf16;
using ::compressa::cpu_test::subst;

constexpr double kRelTol = 1e-4;

/// A bf16 [rows, cols] weight of random values and its values.
struct Weight {
  std::string type;
  std::vector<uint16_t> data;
  ref::Tensor deq;
  Arg arg() { return Arg{data.data(), nullptr}; }
};

Weight bf16Weight(int64_t rows, int64_t cols, std::mt19937 &gen, double lo, double hi) {
  Weight w;
  w.type = "!dsv4.weight<tensor<" + std::to_string(rows) + "x" + std::to_string(cols) + "xbf16>>";
  w.deq.shape = {rows, cols};
  std::uniform_real_distribution<double> dist(lo, hi);
  for (int64_t i = 0; i < rows * cols; ++i) {
    float v = roundToBf16(static_cast<float>(dist(gen)));
    uint32_t u;
    std::memcpy(&u, &v, 4);
    w.data.push_back(static_cast<uint16_t>(u >> 16));
    w.deq.data.push_back(v);
  }
  return w;
}

ref::RopeParams yarnRope() {
  ref::RopeParams p;
  p.theta = 160000.0;
  p.yarn = true;
  p.factor = 16.0;
  p.originalMaxPositions = 65536;
  p.betaFast = 32.0;
  p.betaSlow = 1.0;
  return p;
}

// 16 heads of 32 dims (the MMA path needs heads % 8 == 0 and dims % 32 == 0;
// tiny-c's geometry), q from a rank-24 qr, head weights from a 64-wide x.
constexpr int64_t kHeads = 16, kDim = 32, kRank = 24, kModel = 64, kRatio = 4, kRopeDim = 8;

struct Case {
  std::string tag;
  int64_t maxContext, topk, S, start;
  bool positiveWeights;
};

void runCase(const Case &tc, std::mt19937 &gen) {
  SCOPED_TRACE(tc.tag);
  const int64_t capacity = tc.maxContext / kRatio;
  // Emitter::kRankTopkMax: up to 4096 entries the picks come in rank order.
  const bool ranked = capacity <= 4096;
  Weight wqb = bf16Weight(kHeads * kDim, kRank, gen, -0.5, 0.5);
  Weight wp = bf16Weight(kHeads, kModel, gen, tc.positiveWeights ? 0.0 : -0.5, 0.5);
  std::string keysType = "!dsv4.indexer_keys<4, 32, f32>";
  std::string text = subst(R"(
    func.func @t(%qr: tensor<?x24xf32>, %x: tensor<?x64xf32>, %keys: $KEYS$, %pos: index) {
      %wqb = dsv4.param "attn.indexer.wq_b.weight" : $WQB$
      %wp = dsv4.param "attn.indexer.weights_proj.weight" : $WP$
      %idx = dsv4.attn.indexer_topk %qr, %x, %wqb, %wp, %keys, %pos {dsv4.numerics = "fast", heads = 16 : i64, rope = #dsv4.rope<dim = 8, theta = 160000.0, yarn = [16.0, 65536, 32.0, 1.0]>, topk = $TOPK$ : i64}
          : (tensor<?x24xf32>, tensor<?x64xf32>, $WQB$, $WP$, $KEYS$, index) -> tensor<?x$TOPK$xi32>
      return
    })",
                           {{"WQB", wqb.type},
                            {"WP", wp.type},
                            {"KEYS", keysType},
                            {"TOPK", std::to_string(tc.topk)}});
  OpKernel k;
  std::string error;
  ASSERT_TRUE(k.compile(text, tc.maxContext, error)) << error << "\n--- module ---\n" << text;

  std::uniform_real_distribution<double> unit(-1.0, 1.0);
  const int64_t S = tc.S, valid = (tc.start + S) / kRatio;
  GuardedBuffer qr(S * kRank * 4), x(S * kModel * 4), keys(capacity * kDim * 4);
  for (int64_t i = 0; i < S * kRank; ++i)
    qr.as<float>()[i] = static_cast<float>(unit(gen));
  for (int64_t i = 0; i < S * kModel; ++i)
    x.as<float>()[i] = static_cast<float>(tc.positiveWeights ? std::fabs(unit(gen)) : unit(gen));
  float *kv = keys.as<float>();
  std::fill(kv, kv + capacity * kDim, std::numeric_limits<float>::quiet_NaN());
  for (int64_t i = 0; i < valid * kDim; ++i)
    kv[i] = static_cast<float>(0.3 * unit(gen));
  // Near copies: entry e (e4m3 values below 256 times 2^-7: act_quant's
  // codes at scale 2^-7, or twice them at 2^-8) and entry e + 1 = entry e
  // scaled by 1 + 2^-11, whose act_quant gives the same values (less than
  // half an e4m3 step apart) but which scores 2^-11 higher in f32.
  std::vector<int64_t> tieGroup(capacity, -1);
  int64_t groups = 0;
  std::uniform_int_distribution<int> code(0, 0x76); // magnitudes below 256
  for (int64_t e = 3; e + 1 < valid; e += 11) {
    for (int64_t d = 0; d < kDim; ++d) {
      double m = ref::e4m3Value(code(gen)) / 128.0;
      float v = static_cast<float>(unit(gen) < 0 ? -m : m);
      kv[e * kDim + d] = v;
      kv[(e + 1) * kDim + d] = v * (1.0f + 1.0f / 2048.0f);
    }
    tieGroup[e] = tieGroup[e + 1] = groups++;
  }
  GuardedBuffer idx(S * tc.topk * 4);
  std::fill(idx.as<int32_t>(), idx.as<int32_t>() + S * tc.topk, 12345);
  ASSERT_TRUE(k.run(S, tc.start, {{qr.data()}, {x.data()}, wqb.arg(), wp.arg(), {keys.data()}, {}},
                    {idx.data()}));

  std::vector<double> freq = ref::ropeInverseFrequencies(yarnRope(), kRopeDim);
  // act_quant'ed values of a row of kDim floats (one block).
  auto actQuantValues = [](const float *x) {
    uint8_t codes[kDim], scale;
    ref::actQuantRow(x, kDim, codes, &scale);
    std::vector<double> out(kDim);
    for (int64_t d = 0; d < kDim; ++d)
      out[d] = ref::e4m3Value(codes[d]) * ref::ue8m0Value(scale);
    return out;
  };
  std::vector<std::vector<double>> keysQ(valid);
  for (int64_t j = 0; j < valid; ++j)
    keysQ[j] = actQuantValues(kv + j * kDim);
  int64_t fastDiffersFromExact = 0, fastDiffersFromBf16 = 0, tiesSeen = 0;
  for (int64_t s = 0; s < S; ++s) {
    const int64_t t = tc.start + s, avail = (t + 1) / kRatio;
    std::vector<double> q =
        ref::linear(std::vector<double>(qr.as<float>() + s * kRank, qr.as<float>() + (s + 1) * kRank)
                        .data(),
                    wqb.deq);
    for (int64_t h = 0; h < kHeads; ++h)
      ref::applyRope(q.data() + h * kDim, kDim, kRopeDim, freq, t);
    std::vector<double> w = ref::indexerHeadWeights(
        std::vector<double>(x.as<float>() + s * kModel, x.as<float>() + (s + 1) * kModel).data(),
        wp.deq, kDim);
    // The fast semantics (act_quant'ed q -- of its f32 values, as the
    // kernel computes them -- and keys, exact sums) and the exact ones.
    std::vector<std::vector<double>> qQ(kHeads);
    for (int64_t h = 0; h < kHeads; ++h) {
      float qf[kDim];
      for (int64_t d = 0; d < kDim; ++d)
        qf[d] = static_cast<float>(q[h * kDim + d]);
      qQ[h] = actQuantValues(qf);
    }
    // (And those of bf16 q and keys, COMPRESSA_INDEXER_FP8=0's: the data
    // must tell them apart too.)
    std::vector<double> fast(avail), exact(avail), bf16(avail);
    for (int64_t j = 0; j < avail; ++j) {
      double f = 0, e = 0, b = 0;
      for (int64_t h = 0; h < kHeads; ++h) {
        double df = 0, de = 0, db = 0;
        for (int64_t d = 0; d < kDim; ++d) {
          df += qQ[h][d] * keysQ[j][d];
          de += q[h * kDim + d] * double(kv[j * kDim + d]);
          db += double(roundToBf16(float(q[h * kDim + d]))) *
                double(roundToBf16(kv[j * kDim + d]));
        }
        f += w[h] * std::max(df, 0.0);
        e += w[h] * std::max(de, 0.0);
        b += w[h] * std::max(db, 0.0);
      }
      fast[j] = f;
      exact[j] = e;
      bf16[j] = b;
    }
    const int64_t n = std::min(tc.topk, avail);
    std::vector<int64_t> want = ref::topKIndices(fast, n), exactWant = ref::topKIndices(exact, n);
    if (want != exactWant)
      ++fastDiffersFromExact;
    if (want != ref::topKIndices(bf16, n))
      ++fastDiffersFromBf16;
    double maxScore = 0;
    for (double v : fast)
      maxScore = std::max(maxScore, std::fabs(v));
    const double tol = kRelTol * (1.0 + maxScore);
    const int32_t *got = idx.as<int32_t>() + s * tc.topk;
    for (int64_t r = n; r < tc.topk; ++r)
      EXPECT_EQ(got[r], -1) << "token at " << t << ": pick #" << r << " past the " << n
                            << " visible entries";
    if (n == 0)
      continue;
    for (int64_t r = 0; r + 1 < n; ++r)
      if (tieGroup[want[r]] >= 0 && tieGroup[want[r]] == tieGroup[want[r + 1]])
        ++tiesSeen;
    // Another entry only where its score is within tolerance of the
    // reference's and the two are not identical after act_quant.
    auto nearTie = [&](int64_t g, int64_t wr) {
      return g >= 0 && g < avail && std::fabs(fast[g] - fast[wr]) <= tol &&
             !(tieGroup[g] >= 0 && tieGroup[g] == tieGroup[wr]);
    };
    if (ranked) {
      // Picks in the order of descending score, ties to the lower index.
      for (int64_t r = 0; r < n; ++r) {
        int64_t g = got[r], wr = want[r];
        EXPECT_TRUE(g == wr || nearTie(g, wr))
            << "token at " << t << ": pick #" << r << " is " << g << ", reference " << wr
            << (g >= 0 && g < avail ? " (scores " + std::to_string(fast[g]) + " vs " +
                                          std::to_string(fast[wr]) + ")"
                                    : std::string());
      }
      continue;
    }
    // The radix selection writes its picks in index order: the same set as
    // the reference's, up to near-ties at the threshold (the score of the
    // reference's last pick).
    std::vector<int64_t> picks(got, got + n), wantSet(want);
    EXPECT_TRUE(std::is_sorted(picks.begin(), picks.end()) &&
                std::adjacent_find(picks.begin(), picks.end()) == picks.end())
        << "token at " << t << ": picks not in increasing index order";
    std::sort(picks.begin(), picks.end());
    std::sort(wantSet.begin(), wantSet.end());
    std::vector<int64_t> extra, missing;
    std::set_difference(picks.begin(), picks.end(), wantSet.begin(), wantSet.end(),
                        std::back_inserter(extra));
    std::set_difference(wantSet.begin(), wantSet.end(), picks.begin(), picks.end(),
                        std::back_inserter(missing));
    EXPECT_EQ(extra.size(), missing.size()) << "token at " << t;
    for (size_t i = 0; i < std::min(extra.size(), missing.size()); ++i)
      EXPECT_TRUE(nearTie(extra[i], want[n - 1]) && nearTie(missing[i], want[n - 1]) &&
                  nearTie(extra[i], missing[i]))
          << "token at " << t << ": picked " << extra[i] << " instead of " << missing[i];
  }
  // With positive head weights the data must tell fast from exact: FP8
  // ties among the picks, which the exact scores order the other way round.
  if (tc.positiveWeights && ranked) {
    EXPECT_GT(tiesSeen, 0) << "no act_quant tie among the reference's picks";
    EXPECT_GT(fastDiffersFromExact, 0) << "the exact scores pick the same: the test is blind";
    EXPECT_GT(fastDiffersFromBf16, 0) << "bf16 q and keys pick the same: the test is blind";
  }
  for (GuardedBuffer *b : {&qr, &x, &keys, &idx})
    EXPECT_TRUE(b->guardsIntact());
}

TEST(IndexerFast, RankTopkFirstChunk) {
  std::mt19937 gen(21);
  // A chunk from position 0 (tokens 0-2 see no entry): capacity 64, ranked.
  runCase({"first chunk, ranked top-k", 256, 16, 40, 0, true}, gen);
}

TEST(IndexerFast, RankTopkLaterChunk) {
  std::mt19937 gen(22);
  runCase({"later chunk, random head weights", 1024, 24, 33, 700, false}, gen);
}

TEST(IndexerFast, RadixTopk) {
  std::mt19937 gen(23);
  // Capacity 8192 > 4096: the radix selection.
  runCase({"radix top-k", 32768, 64, 37, 500, true}, gen);
}

} // namespace
