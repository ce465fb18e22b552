// SPDX-License-Identifier: Apache-2.0
// Tests of the token samplers: argmax ties, greedy equivalences, top-k /
// top-p restriction, reproducibility by seed, the softmax distribution and
// option validation.
#include "runtime/session/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace compressa {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

TEST(SamplerTest, ArgmaxTiesPickTheLowestId) {
  std::vector<float> logits = {1, 5, 3, 5, 5};
  EXPECT_EQ(argmaxToken(logits.data(), 5), 1);
  std::vector<float> flat(10, 0.25f);
  EXPECT_EQ(argmaxToken(flat.data(), 10), 0);
  std::vector<float> negative = {-3, -1, -1, -2};
  EXPECT_EQ(argmaxToken(negative.data(), 4), 1);
}

TEST(SamplerTest, ArgmaxIgnoresNaN) {
  float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> logits = {nan, 2, nan, 7, nan};
  EXPECT_EQ(argmaxToken(logits.data(), 5), 3);
  std::vector<float> allNan = {nan, nan};
  EXPECT_EQ(argmaxToken(allNan.data(), 2), 0);
  std::vector<float> infs = {-kInf, -kInf, kInf, kInf};
  EXPECT_EQ(argmaxToken(infs.data(), 4), 2);
}

std::vector<float> randomLogits(uint64_t seed, size_t count) {
  std::mt19937_64 rng(seed);
  std::vector<float> logits(count);
  for (float &value : logits)
    value = static_cast<float>(static_cast<int>(rng() % 2000) - 1000) / 100.0f;
  return logits;
}

TEST(SamplerTest, GreedyTemperatureZeroAndTopOneAreArgmax) {
  SamplingOptions greedy;
  greedy.greedy = true;
  greedy.temperature = 3.0; // Ignored.
  SamplingOptions cold;
  cold.temperature = 0;
  SamplingOptions topOne;
  topOne.topK = 1;
  topOne.temperature = 1.5;
  topOne.seed = 99;
  Sampler a(greedy), b(cold), c(topOne);
  EXPECT_TRUE(a.isGreedy() && b.isGreedy() && c.isGreedy());
  for (uint64_t trial = 0; trial < 50; ++trial) {
    std::vector<float> logits = randomLogits(trial, 300);
    logits[trial % 300] = 10.0f; // Ties with any other 10.0.
    int64_t best = argmaxToken(logits.data(), 300);
    EXPECT_EQ(a.sample(logits.data(), 300), best);
    EXPECT_EQ(b.sample(logits.data(), 300), best);
    EXPECT_EQ(c.sample(logits.data(), 300), best);
  }
}

TEST(SamplerTest, TopKOneEqualsGreedyOnTies) {
  std::vector<float> logits = {0, 4, 1, 4, 4};
  SamplingOptions options;
  options.topK = 1;
  Sampler sampler(options);
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(sampler.sample(logits.data(), 5), 1);
}

TEST(SamplerTest, FixedSeedReproduces) {
  SamplingOptions options;
  options.temperature = 0.8;
  options.topP = 0.9;
  options.topK = 40;
  options.seed = 1234;
  Sampler first(options), second(options);
  options.seed = 1235;
  Sampler other(options);
  std::vector<int64_t> a, b, c;
  for (uint64_t step = 0; step < 100; ++step) {
    std::vector<float> logits = randomLogits(step, 500);
    for (float &value : logits)
      value *= 0.05f; // Flat enough to make draws vary.
    a.push_back(first.sample(logits.data(), 500));
    b.push_back(second.sample(logits.data(), 500));
    c.push_back(other.sample(logits.data(), 500));
  }
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(SamplerTest, TopKRestrictsToTheKLargest) {
  std::vector<float> logits = {1.0f, 3.0f, 0.5f, 2.9f, 2.95f, -1.0f};
  SamplingOptions options;
  options.topK = 2;
  options.temperature = 5.0; // Nearly uniform over what is kept.
  options.seed = 7;
  Sampler sampler(options);
  std::map<int64_t, int> seen;
  for (int i = 0; i < 2000; ++i)
    ++seen[sampler.sample(logits.data(), 6)];
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_GT(seen[1], 0);
  EXPECT_GT(seen[4], 0);
}

TEST(SamplerTest, TopPKeepsTheNucleus) {
  // Probabilities 0.5, 0.3, 0.2 (temperature 1).
  std::vector<float> logits = {std::log(0.2f), std::log(0.5f),
                               std::log(0.3f)};
  SamplingOptions options;
  options.topP = 0.45;
  options.seed = 3;
  Sampler only(options);
  for (int i = 0; i < 200; ++i)
    EXPECT_EQ(only.sample(logits.data(), 3), 1);
  options.topP = 0.75; // 0.5 + 0.3 reaches it: ids 1 and 2.
  Sampler two(options);
  std::map<int64_t, int> seen;
  for (int i = 0; i < 4000; ++i)
    ++seen[two.sample(logits.data(), 3)];
  EXPECT_EQ(seen.count(0), 0u);
  EXPECT_NEAR(seen[1] / 4000.0, 0.5 / 0.8, 0.04);
  EXPECT_NEAR(seen[2] / 4000.0, 0.3 / 0.8, 0.04);
}

TEST(SamplerTest, FollowsTheSoftmax) {
  std::vector<float> logits = {std::log(0.1f), std::log(0.2f), std::log(0.3f),
                               std::log(0.4f)};
  SamplingOptions options;
  options.seed = 11;
  Sampler sampler(options);
  std::vector<int> counts(4);
  const int draws = 40000;
  for (int i = 0; i < draws; ++i)
    ++counts[sampler.sample(logits.data(), 4)];
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(counts[i] / double(draws), 0.1 * (i + 1), 0.015) << i;
  // Temperature 0.5 squares the odds: p ~ {1, 4, 9, 16} / 30.
  options.temperature = 0.5;
  Sampler sharp(options);
  std::vector<int> sharpCounts(4);
  for (int i = 0; i < draws; ++i)
    ++sharpCounts[sharp.sample(logits.data(), 4)];
  EXPECT_NEAR(sharpCounts[3] / double(draws), 16.0 / 30, 0.015);
  EXPECT_NEAR(sharpCounts[0] / double(draws), 1.0 / 30, 0.01);
}

TEST(SamplerTest, NeverPicksMinusInfinityOrNaN) {
  float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> logits = {-kInf, 0.0f, nan, 0.0f, -kInf};
  SamplingOptions options;
  options.seed = 5;
  Sampler sampler(options);
  for (int i = 0; i < 500; ++i) {
    int64_t token = sampler.sample(logits.data(), 5);
    EXPECT_TRUE(token == 1 || token == 3) << token;
  }
  std::vector<float> dead = {-kInf, -kInf, -kInf};
  EXPECT_EQ(sampler.sample(dead.data(), 3), 0);
  std::vector<float> hot = {0.0f, kInf, 3.0f, kInf};
  EXPECT_EQ(sampler.sample(hot.data(), 4), 1);
}

TEST(SamplerTest, ValidatesOptions) {
  auto check = [](SamplingOptions options, const std::string &part) {
    Status status = validateSamplingOptions(options);
    ASSERT_FALSE(status.ok()) << part;
    EXPECT_EQ(status.code(), StatusCode::InvalidArgument);
    EXPECT_NE(status.message().find(part), std::string::npos)
        << status.message();
  };
  SamplingOptions options;
  EXPECT_TRUE(validateSamplingOptions(options).ok());
  options.temperature = -0.5;
  check(options, "temperature -0.5");
  options.temperature = std::nan("");
  check(options, "temperature");
  options = SamplingOptions();
  options.topK = -1;
  check(options, "top-k -1");
  options = SamplingOptions();
  options.topP = 0;
  check(options, "top-p 0");
  options.topP = 1.5;
  check(options, "top-p 1.5");
}

} // namespace
} // namespace compressa
