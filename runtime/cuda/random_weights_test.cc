// SPDX-License-Identifier: Apache-2.0
// The random weight generator (runtime/cuda/random_weights.h): every
// encoding's values, determinism per seed, and an Engine on the CPU that
// generates the toy artifact's weights byte for byte as the host twin of the
// CUDA generator computes them.
#include "runtime/cuda/random_weights.h"
#include "runtime/session/engine.h"
#include "runtime/testing/toy_artifact.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <vector>

namespace compressa {
namespace {

/// The value of an e4m3 code (NaN for 0x7F/0xFF).
double e4m3Value(uint8_t code) {
  int sign = code & 0x80 ? -1 : 1;
  int exponent = (code >> 3) & 0xF, mantissa = code & 7;
  if ((code & 0x7F) == 0x7F)
    return NAN;
  if (exponent == 0)
    return sign * std::ldexp(mantissa / 8.0, -6);
  return sign * std::ldexp(1 + mantissa / 8.0, exponent - 7);
}

std::vector<uint8_t> generate(const RandomSpec &spec) {
  std::vector<uint8_t> out(spec.count * randomElementBytes(spec.kind));
  for (uint64_t i = 0; i < spec.count; ++i)
    randomElement(spec, spec.first + i,
                  out.data() + i * randomElementBytes(spec.kind));
  return out;
}

TEST(RandomWeightsTest, E4M3EncodesEveryMagnitudeToItsNearestCode) {
  for (uint32_t q = 0; q <= 448; ++q) {
    uint8_t code = randomE4M3Magnitude(q);
    ASSERT_NE(code & 0x7F, 0x7F) << q;
    double value = e4m3Value(code);
    // No other positive code is nearer to q.
    for (int other = 0; other < 0x7F; ++other)
      ASSERT_LE(std::fabs(value - q), std::fabs(e4m3Value(other) - q) + 1e-12)
          << "q = " << q << " code " << int(code) << " vs " << other;
  }
  EXPECT_EQ(randomE4M3Magnitude(448), 0x7E);
  EXPECT_EQ(randomE4M3Magnitude(1), 0x38);
}

TEST(RandomWeightsTest, E4M3WeightsAreNeverNaNAndSpreadOverTheRange) {
  RandomSpec spec;
  spec.kind = kRandomE4M3;
  spec.key = randomStreamKey(7, 3);
  spec.count = 1 << 16;
  std::vector<uint8_t> bytes = generate(spec);
  double sum = 0, sumSquares = 0;
  for (uint8_t b : bytes) {
    ASSERT_NE(b & 0x7F, 0x7F);
    double v = e4m3Value(b);
    sum += v;
    sumSquares += v * v;
  }
  double n = double(bytes.size());
  EXPECT_NEAR(sum / n, 0, 5);
  // Uniform on [-448, 448]: rms 448/sqrt(3) = 258.7.
  EXPECT_NEAR(std::sqrt(sumSquares / n), 258.7, 5);
}

TEST(RandomWeightsTest, FloatsAreUniformAroundTheCenter) {
  for (uint32_t kind : {kRandomF32, kRandomBF16}) {
    RandomSpec spec;
    spec.kind = kind;
    spec.key = randomStreamKey(1, 0);
    spec.count = 1 << 15;
    spec.center = 1.0f;
    spec.amplitude = 0.05f;
    std::vector<uint8_t> bytes = generate(spec);
    double lo = 10, hi = -10, sum = 0;
    for (uint64_t i = 0; i < spec.count; ++i) {
      float v;
      if (kind == kRandomF32) {
        std::memcpy(&v, bytes.data() + 4 * i, 4);
      } else {
        uint32_t u = uint32_t(bytes[2 * i]) << 16 |
                     uint32_t(bytes[2 * i + 1]) << 24;
        std::memcpy(&v, &u, 4);
      }
      lo = std::min<double>(lo, v);
      hi = std::max<double>(hi, v);
      sum += v;
    }
    EXPECT_GE(lo, 0.95 - 1e-3) << kind;
    EXPECT_LE(hi, 1.05 + 1e-3) << kind;
    EXPECT_LT(lo, 0.955) << kind; // bf16 steps are 2^-7 near 1
    EXPECT_GT(hi, 1.045) << kind;
    EXPECT_NEAR(sum / spec.count, 1.0, 1e-3) << kind;
  }
}

TEST(RandomWeightsTest, IndexRowsAreDistinctAndInRange) {
  RandomSpec spec;
  spec.kind = kRandomI64Index;
  spec.key = randomStreamKey(3, 9);
  spec.rowLength = 6;
  spec.below = 256;
  spec.count = 6 * 1000;
  std::vector<uint8_t> bytes = generate(spec);
  std::set<int64_t> starts;
  for (uint64_t row = 0; row < 1000; ++row) {
    std::set<int64_t> seen;
    for (uint64_t c = 0; c < 6; ++c) {
      int64_t v;
      std::memcpy(&v, bytes.data() + 8 * (row * 6 + c), 8);
      ASSERT_GE(v, 0);
      ASSERT_LT(v, 256);
      seen.insert(v);
    }
    EXPECT_EQ(seen.size(), 6u) << "row " << row;
    starts.insert(*seen.begin());
  }
  EXPECT_GT(starts.size(), 200u); // rows differ
}

TEST(RandomWeightsTest, StatePairsAreFiniteAsF32AndAsBF16Pairs) {
  RandomSpec spec;
  spec.kind = kRandomStatePairs;
  spec.key = randomStreamKey(5, 1);
  spec.count = 1 << 14;
  std::vector<uint8_t> bytes = generate(spec);
  for (uint64_t i = 0; i < spec.count; ++i) {
    uint32_t w;
    std::memcpy(&w, bytes.data() + 4 * i, 4);
    float asF32, hi, lo;
    std::memcpy(&asF32, &w, 4);
    uint32_t h = w & 0xFFFF0000u, l = w << 16;
    std::memcpy(&hi, &h, 4);
    std::memcpy(&lo, &l, 4);
    ASSERT_TRUE(std::isfinite(asF32) && std::isfinite(hi) &&
                std::isfinite(lo));
    ASSERT_LE(std::fabs(hi), 1.0f);
    ASSERT_LE(std::fabs(lo), 1.0f);
    ASSERT_LE(std::fabs(asF32 - hi), std::fabs(hi) * 0.01f + 1e-30f);
  }
}

TEST(RandomWeightsTest, SameSeedSameBytesOtherSeedOtherBytes) {
  RandomSpec spec;
  spec.kind = kRandomBF16;
  spec.amplitude = 1;
  spec.count = 4096;
  spec.key = randomStreamKey(42, 5);
  std::vector<uint8_t> a = generate(spec), b = generate(spec);
  EXPECT_EQ(a, b);
  spec.key = randomStreamKey(43, 5);
  EXPECT_NE(generate(spec), a);
  spec.key = randomStreamKey(42, 6);
  EXPECT_NE(generate(spec), a);
  // A range generated from `first` equals the same range of the whole.
  spec.key = randomStreamKey(42, 5);
  spec.first = 1000;
  spec.count = 96;
  std::vector<uint8_t> part = generate(spec);
  EXPECT_TRUE(std::equal(part.begin(), part.end(), a.begin() + 2000));
}

// The CPU engine's generated weights are the host twin's bytes, and the
// scales follow randomWeightSpecs.
TEST(RandomWeightsTest, CpuEngineGeneratesTheHostTwinsBytes) {
  std::string dir = toy::makeTempDir("compressa_random_");
  ASSERT_FALSE(dir.empty());
  std::string path = dir + "/toy.cpa";
  ASSERT_TRUE(toy::writeFile(path, toy::buildArtifact(toy::toyArtifactSpec())));
  for (uint64_t seed : {1ull, 2ull}) {
    auto engine = Engine::createWithRandomWeights(path, seed);
    ASSERT_TRUE(engine.ok()) << engine.status().toString();
    Engine &e = **engine;
    EXPECT_FALSE(e.hasCheckpoint());
    EXPECT_EQ(e.weightsDescription(),
              "random weights (seed " + std::to_string(seed) + ")");
    const auto *weights = e.artifact().root().weights();
    for (uint32_t i = 0; i < weights->size(); ++i) {
      auto specs = randomWeightSpecs(*weights->Get(i), i, seed);
      ASSERT_TRUE(specs.ok()) << specs.status().toString();
      std::vector<uint8_t> want = generate(specs->weight);
      ASSERT_EQ(want.size(), specs->weightBytes);
      const uint8_t *got =
          reinterpret_cast<const uint8_t *>(e.weightAddressOf(i));
      ASSERT_NE(got, nullptr);
      EXPECT_TRUE(std::equal(want.begin(), want.end(), got))
          << "weight " << i << " seed " << seed;
      if (specs->hasScale) {
        const uint8_t *scale =
            reinterpret_cast<const uint8_t *>(e.scaleAddressOf(i));
        ASSERT_NE(scale, nullptr);
        for (uint64_t b = 0; b < specs->scaleBytes; ++b)
          EXPECT_EQ(scale[b], specs->scale.byteValue);
      }
    }
    // It runs: finite logits.
    int64_t ids[3] = {2, 3, 4};
    auto logits = e.prefill(ids, 3, 0);
    ASSERT_TRUE(logits.ok()) << logits.status().toString();
    for (float v : *logits)
      ASSERT_TRUE(std::isfinite(v));
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

TEST(RandomWeightsTest, SpecsFollowTheTensorsRole) {
  auto specOf = [](const toy::WeightSpec &w) {
    flatbuffers::FlatBufferBuilder fbb;
    auto weight = fb::CreateWeightDirect(
        fbb, w.name.c_str(), w.dtype.c_str(), &w.shape,
        w.scale.empty() ? nullptr : w.scale.c_str(), &w.scaleShape,
        w.optional, w.valuesBelow);
    fbb.Finish(weight);
    const fb::Weight *read =
        flatbuffers::GetRoot<fb::Weight>(fbb.GetBufferPointer());
    return randomWeightSpecs(*read, 3, 9);
  };
  auto norm = specOf({"layers.2.attn_norm.weight", "BF16", {4096}});
  ASSERT_TRUE(norm.ok());
  EXPECT_EQ(norm->weight.kind, kRandomBF16);
  EXPECT_FLOAT_EQ(norm->weight.center, 1.0f);
  EXPECT_FLOAT_EQ(norm->weight.amplitude, 0.05f);
  auto fp8 = specOf({"layers.2.attn.wq_b.weight", "F8_E4M3", {32768, 1024},
                     "layers.2.attn.wq_b.scale", {256, 8}});
  ASSERT_TRUE(fp8.ok());
  EXPECT_EQ(fp8->weight.kind, kRandomE4M3);
  // sqrt(3/1024) / 448 = 2^-13.0: 127 - 13.
  EXPECT_EQ(fp8->scale.byteValue, 114u);
  EXPECT_EQ(fp8->scaleBytes, 256u * 8);
  auto fp4 = specOf({"layers.2.ffn.experts.0.w1.weight", "I8", {2048, 2048},
                     "layers.2.ffn.experts.0.w1.scale", {2048, 128}});
  ASSERT_TRUE(fp4.ok());
  EXPECT_EQ(fp4->weight.kind, kRandomE2M1);
  // fan_in 4096: rms 1/64 / 2.926 = 2^-7.55 -> 2^-8.
  EXPECT_EQ(fp4->scale.byteValue, 119u);
  auto table = specOf({"layers.2.ffn.gate.tid2eid", "I64", {129280, 6}, "",
                       {}, false, 256});
  ASSERT_TRUE(table.ok());
  EXPECT_EQ(table->weight.kind, kRandomI64Index);
  EXPECT_EQ(table->weight.below, 256u);
  EXPECT_EQ(table->weight.rowLength, 6u);
  auto bad = specOf({"layers.2.odd", "I8", {4}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(
                "random weights: tensor 'layers.2.odd' has dtype I8"),
            std::string::npos)
      << bad.status().message();
}

} // namespace
} // namespace compressa
