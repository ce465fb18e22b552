//===- ReferenceTest.cpp - The reference vs the golden logits -------------===//
// SPDX-License-Identifier: Apache-2.0
//
// Proves the reference implementation against models/tiny-{a,c} (transformers,
// float64): every position's logits of tiny-a and tiny-c, float and quant
// weights, token by token; greedy generation; chunked prefill equal to
// token-by-token. Plus op-level checks of the details the spec pins down.
//
//===----------------------------------------------------------------------===//
#include "test/reference/Reference.h"

#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"

#include "gtest/gtest.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <sys/stat.h>
#include <tuple>

namespace compressa::reference {
namespace {

const char *const kGoldenDir = COMPRESSA_GOLDEN_DIR;

bool exists(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

//===----------------------------------------------------------------------===//
// Op-level checks
//===----------------------------------------------------------------------===//

TEST(ReferenceOps, YarnRampOfTheRealModels) {
  // Spec §1.3: r = 64, θ = 160000, orig 65536, β 32/1 -> low 15, high 25.
  RopeParams p;
  p.theta = 160000.0;
  p.yarn = true;
  p.factor = 16.0;
  p.originalMaxPositions = 65536;
  std::vector<double> f = ropeInverseFrequencies(p, 64);
  ASSERT_EQ(f.size(), 32u);
  for (int i = 0; i < 32; ++i) {
    double base = std::pow(160000.0, -2.0 * i / 64.0);
    double ramp = std::clamp((i - 15.0) / 10.0, 0.0, 1.0);
    EXPECT_DOUBLE_EQ(f[i], base * (1 - ramp) + base / 16.0 * ramp) << i;
  }
  EXPECT_DOUBLE_EQ(f[15], std::pow(160000.0, -30.0 / 64.0));
  EXPECT_DOUBLE_EQ(f[25], std::pow(160000.0, -50.0 / 64.0) / 16.0);
}

TEST(ReferenceOps, RopeInverseUndoesRope) {
  std::vector<double> freq = {1.0, 0.1};
  std::vector<double> x = {5, 6, 1, 2, 3, 4};
  std::vector<double> y = x;
  applyRope(y.data(), 6, 4, freq, 7);
  EXPECT_EQ(y[0], 5);
  EXPECT_EQ(y[1], 6);
  EXPECT_NEAR(y[2], std::cos(7.0) * 1 - std::sin(7.0) * 2, 1e-15);
  EXPECT_NEAR(y[3], std::sin(7.0) * 1 + std::cos(7.0) * 2, 1e-15);
  applyRope(y.data(), 6, 4, freq, 7, /*inverse=*/true);
  for (int i = 0; i < 6; ++i)
    EXPECT_NEAR(y[i], x[i], 1e-14);
}

TEST(ReferenceOps, SinkhornEndsOnColumns) {
  std::vector<double> logits = {0.3, -1.2, 2.0,  0.1, 0.5, 0.5, -0.7, 1.1,
                                0.0, 3.0,  -2.0, 0.4, 1.5, 0.2, -0.3, 0.9};
  std::vector<double> c = sinkhorn(logits, 4, 20, 1e-6);
  for (int k = 0; k < 4; ++k) {
    double col = 0, row = 0;
    for (int j = 0; j < 4; ++j) {
      col += c[j * 4 + k];
      row += c[k * 4 + j];
    }
    EXPECT_NEAR(col, 1.0, 1e-5);
    EXPECT_NEAR(row, 1.0, 1e-3);
  }
  // One iteration = row softmax + eps, then one column normalization.
  std::vector<double> one = sinkhorn({0.0, std::log(3.0), 0.0, 0.0}, 2, 1, 0.0);
  EXPECT_NEAR(one[0], 0.25 / 0.75, 1e-15);
  EXPECT_NEAR(one[1], 0.75 / 1.25, 1e-15);
}

TEST(ReferenceOps, TopKBreaksTiesByLowerIndex) {
  std::vector<double> s = {0.0, 2.0, 0.0, 2.0, 1.0, 0.0};
  EXPECT_EQ(topKIndices(s, 4), (std::vector<int64_t>{1, 3, 4, 0}));
  EXPECT_EQ(topKIndices(s, 10).size(), 6u);
}

TEST(ReferenceOps, SinkOnlyInTheDenominator) {
  // One head, one key: o = e^s k / (e^s + e^z).
  std::vector<double> q = {1.0, 0.0}, k = {2.0, 3.0};
  double sink = 0.5;
  std::vector<double> o = sinkAttention(q.data(), 1, 2, {k.data()}, &sink, 1.0);
  double p = std::exp(2.0) / (std::exp(2.0) + std::exp(0.5));
  EXPECT_NEAR(o[0], 2.0 * p, 1e-15);
  EXPECT_NEAR(o[1], 3.0 * p, 1e-15);
}

TEST(ReferenceOps, CompressorPoolIgnoresEmptySlots) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> kv = {7.0, 1.0, 3.0};
  std::vector<double> score = {-inf, 0.0, std::log(3.0)};
  std::vector<double> e = compressorPool(kv.data(), score.data(), 3, 1);
  EXPECT_NEAR(e[0], 0.25 * 1.0 + 0.75 * 3.0, 1e-15);
}

TEST(ReferenceOps, RoutingNormalizesOverChosenExperts) {
  std::vector<double> scores = {1.0, 3.0, 2.0, 0.5};
  Tensor bias;
  bias.shape = {4};
  bias.data = {0.0, -5.0, 0.0, 2.0};
  Routing r = scoreRouting(scores, bias, 2, 1.5);
  // Selection uses σ + bias (2.5 and 2.0), weights use σ only.
  EXPECT_EQ(r.experts, (std::vector<int64_t>{3, 2}));
  EXPECT_NEAR(r.weights[0], 0.5 / 2.5 * 1.5, 1e-15);
  EXPECT_NEAR(r.weights[1], 2.0 / 2.5 * 1.5, 1e-15);
  int64_t hashed[2] = {1, 0};
  Routing h = hashRouting(scores, hashed, 2, 1.5);
  EXPECT_EQ(h.experts, (std::vector<int64_t>{1, 0}));
  EXPECT_NEAR(h.weights[0], 3.0 / 4.0 * 1.5, 1e-15);
}

TEST(ReferenceOps, SwigluClampsGateAboveAndUpBothWays) {
  ExpertWeights e;
  e.w1.shape = {1, 1};
  e.w1.data = {20.0};
  e.w3.shape = {1, 1};
  e.w3.data = {-30.0};
  e.w2.shape = {1, 1};
  e.w2.data = {1.0};
  double x = 1.0;
  std::vector<double> y = swigluExpert(&x, e, 10.0);
  EXPECT_NEAR(y[0], 10.0 / (1.0 + std::exp(-10.0)) * -10.0, 1e-12);
}

//===----------------------------------------------------------------------===//
// Golden comparison
//===----------------------------------------------------------------------===//

/// The golden data of one case and one weight variant, and the reference's
/// token-by-token logits (computed once, shared by the tests).
struct Golden {
  std::unique_ptr<Model> model;
  std::vector<int64_t> inputIds;
  std::vector<double> logits;     ///< golden [T, V]
  std::vector<int64_t> generated; ///< golden greedy continuation
  int64_t prefill = 0;
  std::vector<double> ours; ///< reference token-by-token [T, V]
  std::string error;        ///< non-empty when loading failed
};

std::vector<int64_t> readI64(const TensorView &t) {
  std::vector<int64_t> v(t.numElements());
  for (int64_t i = 0; i < t.numElements(); ++i)
    v[i] = readUnaligned<int64_t>(t.data + 8 * i);
  return v;
}

std::unique_ptr<Golden> loadGolden(const std::string &name, bool quant) {
  auto g = std::make_unique<Golden>();
  const std::string dir = std::string(kGoldenDir) + "/" + name;
  auto config = mlir::compressa::parseModelConfig(dir + "/config.json");
  if (!config) {
    g->error = llvm::toString(config.takeError());
    return g;
  }
  StatusOr<Model> model =
      loadModel(*config, dir + (quant ? "/quant" : "/float"));
  if (!model.ok()) {
    g->error = model.status().toString();
    return g;
  }
  g->model = std::make_unique<Model>(std::move(model).value());

  auto file = SafetensorsFile::open(dir + "/golden.safetensors");
  if (!file.ok()) {
    g->error = file.status().toString();
    return g;
  }
  const TensorView *ids = (*file)->find("input_ids");
  const TensorView *logits =
      (*file)->find(quant ? "logits_quant" : "logits_float");
  const TensorView *gen =
      (*file)->find(quant ? "generated_quant" : "generated_float");
  if (!ids || !logits || !gen || ids->dtype != DType::I64 ||
      logits->dtype != DType::F64 || gen->dtype != DType::I64) {
    g->error = "golden.safetensors lacks input_ids/logits/generated";
    return g;
  }
  g->inputIds = readI64(*ids);
  g->generated = readI64(*gen);
  g->logits.resize(logits->numElements());
  for (int64_t i = 0; i < logits->numElements(); ++i)
    g->logits[i] = readUnaligned<double>(logits->data + 8 * i);

  auto buffer = llvm::MemoryBuffer::getFile(dir + "/golden.json");
  if (!buffer) {
    g->error = "cannot read golden.json";
    return g;
  }
  auto json = llvm::json::parse((*buffer)->getBuffer());
  if (!json) {
    g->error = llvm::toString(json.takeError());
    return g;
  }
  const llvm::json::Object *obj = json->getAsObject();
  std::optional<int64_t> prefill =
      obj ? obj->getInteger("prefill") : std::nullopt;
  if (!prefill) {
    g->error = "golden.json has no integer 'prefill'";
    return g;
  }
  g->prefill = *prefill;

  Session session(*g->model);
  for (size_t t = 0; t < g->inputIds.size(); ++t) {
    std::vector<double> row =
        session.forward({g->inputIds[t]}, static_cast<int64_t>(t));
    g->ours.insert(g->ours.end(), row.begin(), row.end());
  }
  return g;
}

using GoldenParam = std::tuple<const char *, bool>;

class ReferenceGolden : public ::testing::TestWithParam<GoldenParam> {
protected:
  void SetUp() override {
    const char *name = std::get<0>(GetParam());
    if (!exists(std::string(kGoldenDir) + "/" + name + "/golden.safetensors"))
      FAIL() << "golden data missing under " << kGoldenDir;
    static std::map<std::string, std::unique_ptr<Golden>> cache;
    std::string key = label();
    auto it = cache.find(key);
    if (it == cache.end())
      it = cache.emplace(key, loadGolden(name, quant())).first;
    golden = it->second.get();
    ASSERT_TRUE(golden->error.empty()) << golden->error;
  }

  bool quant() const { return std::get<1>(GetParam()); }
  std::string label() const {
    return std::string(std::get<0>(GetParam())) +
           (quant() ? "/quant" : "/float");
  }
  int64_t vocab() const { return golden->model->config.vocabSize; }

  const Golden *golden = nullptr;
};

TEST_P(ReferenceGolden, TokenByTokenLogitsMatch) {
  const int64_t T = static_cast<int64_t>(golden->inputIds.size());
  const int64_t V = vocab();
  ASSERT_EQ(static_cast<int64_t>(golden->logits.size()), T * V);
  ASSERT_EQ(golden->ours.size(), golden->logits.size());
  double maxDiff = 0.0;
  int64_t worstPos = 0;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t v = 0; v < V; ++v) {
      double diff =
          std::fabs(golden->ours[t * V + v] - golden->logits[t * V + v]);
      if (!(diff <= maxDiff)) { // also catches NaN
        maxDiff = diff;
        worstPos = t;
      }
    }
  std::printf("[ reference ] %s: %lld positions x %lld logits, max |dlogit| = "
              "%.3e (at position %lld)\n",
              label().c_str(), static_cast<long long>(T),
              static_cast<long long>(V), maxDiff,
              static_cast<long long>(worstPos));
  RecordProperty("max_abs_logit_diff", std::to_string(maxDiff));
  EXPECT_LT(maxDiff, 1e-3) << label() << " worst position " << worstPos;
}

TEST_P(ReferenceGolden, GreedyGenerationMatches) {
  const int64_t P = golden->prefill;
  const int64_t G = static_cast<int64_t>(golden->generated.size());
  ASSERT_GT(P, 0);
  ASSERT_LE(P, static_cast<int64_t>(golden->inputIds.size()));
  ASSERT_GT(G, 0);
  const int64_t V = vocab();
  Session session(*golden->model);
  std::vector<int64_t> prompt(golden->inputIds.begin(),
                              golden->inputIds.begin() + P);
  std::vector<double> logits = session.forward(prompt, 0);
  std::vector<int64_t> generated;
  for (int64_t i = 0; i < G; ++i) {
    const double *last = logits.data() + logits.size() - V;
    int64_t next = std::max_element(last, last + V) - last;
    generated.push_back(next);
    if (i + 1 < G)
      logits = session.forward({next}, session.position());
  }
  int64_t agree = 0;
  while (agree < G && generated[agree] == golden->generated[agree])
    ++agree;
  std::printf("[ reference ] %s: greedy from %lld prompt tokens, %lld/%lld "
              "generated ids equal the golden ones\n",
              label().c_str(), static_cast<long long>(P),
              static_cast<long long>(agree), static_cast<long long>(G));
  EXPECT_EQ(generated, golden->generated) << label();
}

TEST_P(ReferenceGolden, ChunkedPrefillEqualsTokenByToken) {
  const int64_t T = static_cast<int64_t>(golden->inputIds.size());
  const std::vector<int64_t> &ids = golden->inputIds;
  for (int64_t chunk : {int64_t(7), T}) {
    Session session(*golden->model);
    std::vector<double> all;
    for (int64_t start = 0; start < T; start += chunk) {
      std::vector<int64_t> part(ids.begin() + start,
                                ids.begin() + std::min(T, start + chunk));
      std::vector<double> logits = session.forward(part, start);
      all.insert(all.end(), logits.begin(), logits.end());
    }
    ASSERT_EQ(all.size(), golden->ours.size());
    double maxDiff = 0.0;
    for (size_t i = 0; i < all.size(); ++i)
      maxDiff = std::max(maxDiff, std::fabs(all[i] - golden->ours[i]));
    EXPECT_LE(maxDiff, 1e-9) << label() << " chunk " << chunk;
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, ReferenceGolden,
                         ::testing::Combine(::testing::Values("tiny-a",
                                                              "tiny-c"),
                                            ::testing::Bool()),
                         [](const ::testing::TestParamInfo<GoldenParam> &info) {
                           std::string name = std::get<0>(info.param);
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name + (std::get<1>(info.param) ? "_quant"
                                                                  : "_float");
                         });

} // namespace
} // namespace compressa::reference
