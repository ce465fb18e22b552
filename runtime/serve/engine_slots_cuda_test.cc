// SPDX-License-Identifier: Apache-2.0
// Sequence slots of the Engine on CUDA (label gpu; skips without a GPU,
// fails under COMPRESSA_REQUIRE_GPU=1; also run against the fake driver of
// runtime/testing/fake_cuda_driver.c): each slot has its own states and its
// own decode program, captured as its own CUDA graph, so interleaved decode
// steps of three sequences give each exactly the toy reference logits, with
// graphs and without.
#include "runtime/session/engine.h"

#include "runtime/cuda/cuda_device.h"
#include "runtime/testing/gpu_test.h"
#include "runtime/testing/toy_cuda.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

namespace compressa {
namespace {

class CudaSlotsTest : public ::testing::TestWithParam<bool> {
protected:
  void SetUp() override {
    COMPRESSA_SKIP_WITHOUT_GPU();
    auto device = CudaDevice::open();
    ASSERT_TRUE(device.ok()) << device.status().toString();
    if ((*device)->computeMajor() < 9)
      GTEST_SKIP() << "the toy kernels are sm_90 PTX; this GPU is "
                   << (*device)->chip();
    dir = toy::makeTempDir("compressa_cuda_slots_");
    ASSERT_FALSE(dir.empty());
    std::string weights = dir + "/weights";
    std::filesystem::create_directory(weights);
    ASSERT_TRUE(toy::writeToyWeights(weights).ok());
    std::string path = dir + "/toy.cpa";
    ASSERT_TRUE(toy::writeFile(
        path, toy::buildArtifact(toy::toyCudaArtifactSpec(16, false))));
    // COMPRESSA_CUDA_GRAPH is read when the engine is created.
    const char *old = std::getenv("COMPRESSA_CUDA_GRAPH");
    std::string saved = old ? old : "";
    if (GetParam())
      ::unsetenv("COMPRESSA_CUDA_GRAPH");
    else
      ::setenv("COMPRESSA_CUDA_GRAPH", "0", 1);
    auto created = Engine::create(path, weights);
    if (old)
      ::setenv("COMPRESSA_CUDA_GRAPH", saved.c_str(), 1);
    else
      ::unsetenv("COMPRESSA_CUDA_GRAPH");
    ASSERT_TRUE(created.ok()) << created.status().toString();
    engine = std::move(*created);
  }
  void TearDown() override {
    engine.reset();
    if (dir.empty())
      return;
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }

  std::string dir;
  std::unique_ptr<Engine> engine;
};

TEST_P(CudaSlotsTest, InterleavedSequencesMatchTheirReferences) {
  ASSERT_TRUE(engine->setSlotCount(3).ok());
  std::vector<std::vector<int64_t>> seqs = {
      {0, 17, 766, 5, 5, 300, 1, 9}, {42, 767, 128, 9, 3, 3, 2}, {7, 7, 7, 1}};
  const size_t v = toy::kVocab;
  for (int64_t s = 0; s < 3; ++s) {
    ASSERT_TRUE(engine->selectSlot(s).ok());
    auto logits = engine->prefill(seqs[s].data(), 2, 0);
    ASSERT_TRUE(logits.ok()) << logits.status().toString();
  }
  for (size_t pos = 2; pos < 8; ++pos) {
    std::vector<int64_t> slotIds, ids, positions;
    for (int64_t s = 2; s >= 0; --s)
      if (pos < seqs[s].size()) {
        slotIds.push_back(s);
        ids.push_back(seqs[s][pos]);
        positions.push_back(static_cast<int64_t>(pos));
      }
    auto logits = engine->decodeStep(slotIds.data(), ids.data(),
                                     positions.data(),
                                     static_cast<int64_t>(slotIds.size()));
    ASSERT_TRUE(logits.ok()) << logits.status().toString();
    for (size_t i = 0; i < slotIds.size(); ++i) {
      std::vector<float> want = toy::toyReferenceLogits(seqs[slotIds[i]]);
      std::vector<float> row(logits->begin() + i * v,
                             logits->begin() + (i + 1) * v);
      ASSERT_EQ(row, std::vector<float>(want.begin() + pos * v,
                                        want.begin() + (pos + 1) * v))
          << "slot " << slotIds[i] << " pos " << pos;
    }
  }
  // Every slot's decode program runs as a graph of its own (one launch
  // call per step and slot) or as its kernels.
  for (int64_t s = 0; s < 3; ++s) {
    ASSERT_TRUE(engine->selectSlot(s).ok());
    EXPECT_EQ(engine->decodeUsesGraph(), GetParam()) << "slot " << s;
    EXPECT_EQ(engine->launchesPerDecodeStep(), GetParam() ? 1 : 2);
  }
}

INSTANTIATE_TEST_SUITE_P(Graphs, CudaSlotsTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool> &info) {
                           return info.param ? "Graph" : "NoGraph";
                         });

} // namespace
} // namespace compressa
