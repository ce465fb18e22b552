// SPDX-License-Identifier: Apache-2.0
// Sequence slots of the Engine on the synthetic toy artifact: every slot has
// its own state, interleaved steps of several sequences give each the logits
// it has alone, decodeStep equals per-slot decode, and bad slot counts and
// indices are errors.
#include "runtime/session/engine.h"
#include "runtime/testing/toy_artifact.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace compressa {
namespace {

class EngineSlotsTest : public ::testing::Test {
protected:
  void SetUp() override {
    dir = toy::makeTempDir("compressa_slots_");
    ASSERT_FALSE(dir.empty());
    std::string weights = dir + "/weights";
    std::filesystem::create_directory(weights);
    ASSERT_TRUE(toy::writeToyWeights(weights).ok());
    std::string path = dir + "/toy.cpa";
    ASSERT_TRUE(
        toy::writeFile(path, toy::buildArtifact(toy::toyArtifactSpec(16))));
    auto created = Engine::create(path, weights);
    ASSERT_TRUE(created.ok()) << created.status().toString();
    engine = std::move(*created);
  }
  void TearDown() override {
    engine.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }

  std::string dir;
  std::unique_ptr<Engine> engine;
};

TEST_F(EngineSlotsTest, InterleavedSequencesMatchTheirReferences) {
  ASSERT_EQ(engine->slotCount(), 1);
  // An artifact without max_batch counts as one sequence.
  EXPECT_EQ(engine->artifactMaxBatch(), 1);
  ASSERT_TRUE(engine->setSlotCount(3).ok());
  EXPECT_EQ(engine->slotCount(), 3);
  EXPECT_EQ(engine->selectedSlot(), 0);
  std::vector<std::vector<int64_t>> seqs = {
      {0, 17, 766, 5, 5, 300, 1, 9}, {42, 767, 128, 9, 3, 3, 2}, {7, 7, 7, 1}};
  std::vector<std::vector<float>> expected;
  for (const auto &ids : seqs)
    expected.push_back(toy::toyReferenceLogits(ids));
  const size_t v = toy::kVocab;
  // Prefill two tokens of each slot, then decode the rest round-robin.
  for (int64_t s = 0; s < 3; ++s) {
    ASSERT_TRUE(engine->selectSlot(s).ok());
    auto logits = engine->prefill(seqs[s].data(), 2, 0);
    ASSERT_TRUE(logits.ok()) << logits.status().toString();
    EXPECT_EQ(*logits, std::vector<float>(expected[s].begin(),
                                          expected[s].begin() + 2 * v));
  }
  for (size_t pos = 2; pos < 7; ++pos) {
    std::vector<int64_t> slotIds, ids, positions;
    for (int64_t s = 2; s >= 0; --s) // Another order than the prefill's.
      if (pos < seqs[s].size()) {
        slotIds.push_back(s);
        ids.push_back(seqs[s][pos]);
        positions.push_back(static_cast<int64_t>(pos));
      }
    ASSERT_TRUE(engine->selectSlot(1).ok());
    auto logits = engine->decodeStep(slotIds.data(), ids.data(),
                                     positions.data(),
                                     static_cast<int64_t>(slotIds.size()));
    ASSERT_TRUE(logits.ok()) << logits.status().toString();
    EXPECT_EQ(engine->selectedSlot(), 1) << "decodeStep keeps the selection";
    for (size_t i = 0; i < slotIds.size(); ++i) {
      const std::vector<float> &want = expected[slotIds[i]];
      std::vector<float> row(logits->begin() + i * v,
                             logits->begin() + (i + 1) * v);
      EXPECT_EQ(row, std::vector<float>(want.begin() + pos * v,
                                        want.begin() + (pos + 1) * v))
          << "slot " << slotIds[i] << " pos " << pos;
    }
  }
  // A reset of one slot leaves the others alone.
  ASSERT_TRUE(engine->selectSlot(2).ok());
  engine->reset();
  ASSERT_TRUE(engine->selectSlot(0).ok());
  auto next = engine->decode(seqs[0][7], 7);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, std::vector<float>(expected[0].begin() + 7 * v,
                                      expected[0].end()));
  ASSERT_TRUE(engine->selectSlot(2).ok());
  auto fresh = engine->prefill(seqs[2].data(), 4, 0);
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(*fresh, expected[2]);
}

TEST_F(EngineSlotsTest, ShrinkAndGrow) {
  ASSERT_TRUE(engine->setSlotCount(4).ok());
  ASSERT_TRUE(engine->selectSlot(3).ok());
  ASSERT_TRUE(engine->setSlotCount(2).ok());
  EXPECT_EQ(engine->slotCount(), 2);
  EXPECT_EQ(engine->selectedSlot(), 0);
  ASSERT_TRUE(engine->setSlotCount(5).ok());
  std::vector<int64_t> ids = {1, 2, 3};
  std::vector<float> want = toy::toyReferenceLogits(ids);
  ASSERT_TRUE(engine->selectSlot(4).ok());
  auto logits = engine->prefill(ids.data(), 3, 0);
  ASSERT_TRUE(logits.ok());
  EXPECT_EQ(*logits, want);
}

TEST_F(EngineSlotsTest, BadSlotsAreErrors) {
  Status zero = engine->setSlotCount(0);
  EXPECT_FALSE(zero.ok());
  EXPECT_NE(zero.message().find("expected 1 to 1024 slots"), std::string::npos)
      << zero.message();
  EXPECT_FALSE(engine->setSlotCount(5000).ok());
  Status bad = engine->selectSlot(1);
  EXPECT_EQ(bad.code(), StatusCode::OutOfRange);
  EXPECT_NE(bad.message().find("slot 1 is out of range"), std::string::npos);
  ASSERT_TRUE(engine->setSlotCount(2).ok());
  int64_t slotIds[2] = {1, 1}, ids[2] = {1, 2}, positions[2] = {0, 0};
  auto twice = engine->decodeStep(slotIds, ids, positions, 2);
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.status().message().find("distinct slots"), std::string::npos);
  int64_t one = 0, badId = toy::kVocab, pos = 0;
  EXPECT_FALSE(engine->decodeStep(&one, &badId, &pos, 1).ok());
}

} // namespace
} // namespace compressa
