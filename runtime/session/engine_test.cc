// SPDX-License-Identifier: Apache-2.0
// Tests of Engine and Generator on the synthetic toy artifact (see
// runtime/testing/toy_artifact.h): state persistence across chunked prefill
// and decode, weight binding and its errors, checkpoint errors surfacing
// through Engine::create, input checks, and generation.
#include "runtime/session/engine.h"

#include "runtime/testing/toy_artifact.h"
#include "runtime/weights/safetensors_writer.h"
#if COMPRESSA_HAVE_CUDA
#include "runtime/cuda/cuda_driver.h"
#endif

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace compressa {
namespace {

using toy::ArtifactSpec;

void expectError(const Status &status, std::vector<std::string> parts) {
  ASSERT_FALSE(status.ok());
  for (const std::string &part : parts)
    EXPECT_NE(status.message().find(part), std::string::npos)
        << "message: " << status.message() << "\nmissing: " << part;
}

/// 11 ids spread over the vocabulary.
std::vector<int64_t> sampleIds() {
  return {0, 17, 766, 5, 5, 300, 1, 42, 767, 128, 9};
}

class EngineTest : public ::testing::Test {
protected:
  void SetUp() override {
    dir = toy::makeTempDir("compressa_engine_");
    ASSERT_FALSE(dir.empty());
    weightsDir = dir + "/weights";
    std::filesystem::create_directory(weightsDir);
    ASSERT_TRUE(toy::writeToyWeights(weightsDir).ok());
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }

  /// Writes `spec` to a file and returns its path.
  std::string writeArtifact(const ArtifactSpec &spec,
                            const std::string &name = "toy.cpa") {
    std::string path = dir + "/" + name;
    EXPECT_TRUE(toy::writeFile(path, toy::buildArtifact(spec)));
    return path;
  }

  StatusOr<std::unique_ptr<Engine>> makeEngine(const ArtifactSpec &spec) {
    return Engine::create(writeArtifact(spec), weightsDir);
  }

  std::unique_ptr<Engine> toyEngine(uint32_t prefillMaxTokens = 16) {
    auto engine = makeEngine(toy::toyArtifactSpec(prefillMaxTokens));
    EXPECT_TRUE(engine.ok()) << engine.status().toString();
    return engine.ok() ? std::move(*engine) : nullptr;
  }

  /// A weights directory `name` holding the toy tensors after `edit`.
  std::string writeWeights(
      const std::string &name,
      const std::function<void(std::vector<TensorToWrite> &)> &edit) {
    std::string path = dir + "/" + name;
    std::filesystem::create_directory(path);
    toy::ToyWeights w = toy::toyWeights();
    std::vector<TensorToWrite> tensors = toy::toyWeightTensors(w);
    edit(tensors);
    Status status = writeSafetensors(path + "/model.safetensors", tensors);
    EXPECT_TRUE(status.ok()) << status.toString();
    return path;
  }

  std::string dir;
  std::string weightsDir;
};

TEST_F(EngineTest, DecodeTokenByTokenMatchesTheReference) {
  auto engine = toyEngine();
  ASSERT_TRUE(engine);
  EXPECT_EQ(engine->vocabSize(), toy::kVocab);
  EXPECT_EQ(engine->maxContext(), toy::kMaxContext);
  EXPECT_EQ(engine->eosTokenId(), toy::kEos);
  std::vector<int64_t> ids = sampleIds();
  std::vector<float> expected = toy::toyReferenceLogits(ids);
  for (size_t pos = 0; pos < ids.size(); ++pos) {
    auto logits = engine->decode(ids[pos], static_cast<int64_t>(pos));
    ASSERT_TRUE(logits.ok()) << logits.status().toString();
    ASSERT_EQ(logits->size(), toy::kVocab);
    for (uint32_t v = 0; v < toy::kVocab; ++v)
      ASSERT_EQ((*logits)[v], expected[pos * toy::kVocab + v])
          << "pos " << pos << " v " << v;
  }
}

TEST_F(EngineTest, ChunkedPrefillEqualsDecode) {
  std::vector<int64_t> ids = sampleIds();
  int64_t n = static_cast<int64_t>(ids.size());
  std::vector<float> expected = toy::toyReferenceLogits(ids);
  auto engine = toyEngine();
  ASSERT_TRUE(engine);
  // Chunks of 1, 3, 4, everything (11 <= prefill max_tokens 16), and the
  // default (max_tokens).
  for (int64_t chunk : {1, 3, 4, 11, 0, 100}) {
    engine->reset();
    auto logits = engine->prefill(ids.data(), n, 0, chunk);
    ASSERT_TRUE(logits.ok()) << logits.status().toString();
    EXPECT_EQ(*logits, expected) << "chunk " << chunk;
  }
  // Prefill a prefix, then decode the rest.
  engine->reset();
  auto head = engine->prefill(ids.data(), 6, 0, 4);
  ASSERT_TRUE(head.ok());
  std::vector<float> all = *head;
  for (int64_t pos = 6; pos < n; ++pos) {
    auto row = engine->decode(ids[pos], pos);
    ASSERT_TRUE(row.ok());
    all.insert(all.end(), row->begin(), row->end());
  }
  EXPECT_EQ(all, expected);
  // Prefill, decode, prefill again: chunks may follow decode steps.
  engine->reset();
  std::vector<float> mixed;
  auto a = engine->prefill(ids.data(), 3, 0);
  auto b = engine->decode(ids[3], 3);
  auto c = engine->prefill(ids.data() + 4, n - 4, 4, 2);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  mixed.insert(mixed.end(), a->begin(), a->end());
  mixed.insert(mixed.end(), b->begin(), b->end());
  mixed.insert(mixed.end(), c->begin(), c->end());
  EXPECT_EQ(mixed, expected);
}

TEST_F(EngineTest, ForwardRunsANamedProgram) {
  std::vector<int64_t> ids = sampleIds();
  auto engine = toyEngine(4);
  ASSERT_TRUE(engine);
  EXPECT_EQ(engine->maxTokens("prefill"), 4);
  EXPECT_EQ(engine->maxTokens("decode"), 1);
  EXPECT_EQ(engine->maxTokens("absent"), 0);
  auto logits = engine->forward("prefill", ids.data(), 4, 0);
  ASSERT_TRUE(logits.ok()) << logits.status().toString();
  std::vector<float> expected = toy::toyReferenceLogits(
      std::vector<int64_t>(ids.begin(), ids.begin() + 4));
  EXPECT_EQ(*logits, expected);
}

TEST_F(EngineTest, PrefillWithoutPrefillProgramUsesDecode) {
  std::vector<int64_t> ids = sampleIds();
  auto engine = toyEngine(0);
  ASSERT_TRUE(engine);
  EXPECT_FALSE(engine->hasProgram("prefill"));
  auto logits = engine->prefill(ids.data(), static_cast<int64_t>(ids.size()),
                                0, 8);
  ASSERT_TRUE(logits.ok()) << logits.status().toString();
  EXPECT_EQ(*logits, toy::toyReferenceLogits(ids));
}

TEST_F(EngineTest, ResetRestoresTheInitialState) {
  auto engine = toyEngine();
  ASSERT_TRUE(engine);
  ASSERT_EQ(engine->stateBytes(0), 16u);
  ASSERT_EQ(engine->stateBytes(toy::kCompressorState), 64u);
  EXPECT_EQ(engine->stateBytes(9), 0u);
  EXPECT_EQ(engine->stateData(9), nullptr);
  auto checkInitial = [&] {
    const uint8_t *zero = engine->stateData(0);
    for (int i = 0; i < 16; ++i)
      EXPECT_EQ(zero[i], 0) << i;
    const uint8_t *compressor = engine->stateData(toy::kCompressorState);
    for (int i = 0; i < 32; ++i)
      EXPECT_EQ(compressor[i], 0) << i;
    for (int i = 32; i < 64; i += 4) {
      float value;
      std::memcpy(&value, compressor + i, 4);
      EXPECT_TRUE(std::isinf(value) && value < 0) << i;
    }
    EXPECT_EQ(reinterpret_cast<uintptr_t>(zero) % 64, 0u);
  };
  checkInitial();
  std::vector<int64_t> ids = sampleIds();
  auto first = engine->prefill(ids.data(), 5, 0);
  ASSERT_TRUE(first.ok());
  int64_t sum;
  std::memcpy(&sum, engine->stateData(0), 8);
  EXPECT_EQ(sum, 0 + 17 + 766 + 5 + 5);
  engine->reset();
  checkInitial();
  auto again = engine->prefill(ids.data(), 5, 0);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*first, *again);
}

TEST_F(EngineTest, ScratchIsSizedForTheLargestLaunch) {
  auto engine = toyEngine(16);
  ASSERT_TRUE(engine);
  EXPECT_EQ(engine->scratchBytes(),
            toy::kScratchPerToken * 16 + toy::kScratchFixed);
}

TEST_F(EngineTest, TokenOutsideTheVocabulary) {
  auto engine = toyEngine();
  ASSERT_TRUE(engine);
  std::vector<int64_t> ids = sampleIds();
  ids[7] = 1234;
  auto logits = engine->prefill(ids.data(), 11, 0);
  EXPECT_EQ(logits.status().code(), StatusCode::OutOfRange);
  expectError(logits.status(), {"token id 1234 at position 7 is outside the "
                                "vocabulary (0..767)"});
  ids[7] = -1;
  expectError(engine->prefill(ids.data(), 11, 0).status(),
              {"token id -1 at position 7"});
  expectError(engine->decode(768, 3).status(),
              {"token id 768 at position 3 is outside the vocabulary"});
  // Nothing ran: the state is still the initial one.
  int64_t sum;
  std::memcpy(&sum, engine->stateData(0), 8);
  EXPECT_EQ(sum, 0);
}

TEST_F(EngineTest, PromptLongerThanTheContext) {
  auto engine = toyEngine();
  ASSERT_TRUE(engine);
  std::vector<int64_t> ids(65, 3);
  expectError(engine->prefill(ids.data(), 65, 0).status(),
              {"prompt of 65 tokens exceeds the artifact's maximum context "
               "of 64"});
  expectError(engine->prefill(ids.data(), 10, 60).status(),
              {"prompt of 70 tokens exceeds the artifact's maximum context "
               "of 64"});
  expectError(engine->decode(3, 64).status(),
              {"prompt of 65 tokens exceeds"});
  expectError(
      engine->decode(3, std::numeric_limits<int64_t>::max()).status(),
      {"exceeds the artifact's maximum context of 64"});
  expectError(engine->decode(3, -1).status(), {"start position -1"});
  EXPECT_TRUE(engine->decode(3, 63).ok());
}

TEST_F(EngineTest, CountOutsideTheProgramLimits) {
  auto engine = toyEngine(4);
  ASSERT_TRUE(engine);
  std::vector<int64_t> ids = sampleIds();
  expectError(engine->forward("prefill", ids.data(), 5, 0).status(),
              {"program 'prefill' runs 1 to 4 tokens per call, not 5"});
  expectError(engine->forward("decode", ids.data(), 2, 0).status(),
              {"program 'decode' runs 1 to 1 tokens per call, not 2"});
  expectError(engine->forward("prefill", ids.data(), 0, 0).status(),
              {"not 0"});
  expectError(engine->forward("verify", ids.data(), 1, 0).status(),
              {"toy.cpa: no program is named 'verify'"});
  expectError(engine->prefill(ids.data(), -2, 0).status(), {"negative"});
  auto none = engine->prefill(ids.data(), 0, 0);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_F(EngineTest, MissingOptionalWeightFailsOnlyTheProgramThatNeedsIt) {
  auto engine = toyEngine();
  ASSERT_TRUE(engine);
  int64_t id = 5;
  auto logits = engine->forward("mtp", &id, 1, 0);
  EXPECT_EQ(logits.status().code(), StatusCode::FailedPrecondition);
  expectError(logits.status(),
              {"program 'mtp'", "launch 1 (kernel 'toy.head')",
               "optional weight 'mtp.toy.bias'", weightsDir});
  EXPECT_TRUE(engine->forward("decode", &id, 1, 0).ok());
}

TEST_F(EngineTest, PresentOptionalWeightIsBound) {
  std::vector<float> mtpBias(toy::kVocab, 100.0f);
  std::string weights = writeWeights("with_mtp", [&](auto &tensors) {
    tensors.push_back(
        {"mtp.toy.bias", DType::F32, {toy::kVocab}, mtpBias.data()});
  });
  auto engine = Engine::create(writeArtifact(toy::toyArtifactSpec()), weights);
  ASSERT_TRUE(engine.ok()) << engine.status().toString();
  int64_t id = 42;
  auto logits = (*engine)->forward("mtp", &id, 1, 0);
  ASSERT_TRUE(logits.ok()) << logits.status().toString();
  std::vector<float> expected = toy::toyReferenceLogits({42});
  toy::ToyWeights w = toy::toyWeights();
  for (uint32_t v = 0; v < toy::kVocab; ++v)
    EXPECT_EQ((*logits)[v], expected[v] - w.bias[v] + 100.0f) << v;
}

TEST_F(EngineTest, WeightsAreReadThroughTheirBindings) {
  // Change the FP8 projection, its scale and an expert's scale: the logits
  // must move exactly as the kernel formula says.
  toy::ToyWeights w = toy::toyWeights();
  std::vector<uint8_t> proj(8, 0x40); // 2.0 everywhere
  std::vector<uint8_t> projScale = {129}; // * 4
  std::vector<uint8_t> expertScale = {130}; // * 8
  std::string weights = writeWeights("changed", [&](auto &tensors) {
    for (TensorToWrite &t : tensors) {
      if (t.name == "toy.proj.weight")
        t.data = proj.data();
      if (t.name == "toy.proj.scale")
        t.data = projScale.data();
      if (t.name == "toy.experts.1.scale")
        t.data = expertScale.data();
    }
  });
  auto engine = Engine::create(writeArtifact(toy::toyArtifactSpec()), weights);
  ASSERT_TRUE(engine.ok()) << engine.status().toString();
  int64_t id = 3; // expert 1, position 0: expert value e4m3(0x44) = 3
  auto logits = (*engine)->decode(id, 0);
  ASSERT_TRUE(logits.ok());
  int64_t target = (7 * 3 + 0 + 3) % toy::kVocab;
  for (uint32_t v = 0; v < toy::kVocab; ++v) {
    float expected = w.bias[v];
    expected += static_cast<int64_t>(v) == target ? 16.0f : 0.0f;
    expected += 2.0f * 4.0f;
    expected += 3.0f * 8.0f;
    expected += 0.25f;
    EXPECT_EQ((*logits)[v], expected) << v;
  }
}

TEST_F(EngineTest, ShardedCheckpoint) {
  std::string sharded = dir + "/sharded";
  std::filesystem::create_directory(sharded);
  toy::ToyWeights w = toy::toyWeights();
  std::vector<TensorToWrite> tensors = toy::toyWeightTensors(w);
  std::vector<TensorToWrite> first(tensors.begin(), tensors.begin() + 3);
  std::vector<TensorToWrite> second(tensors.begin() + 3, tensors.end());
  ASSERT_TRUE(
      writeSafetensors(sharded + "/model-00001-of-00002.safetensors", first)
          .ok());
  ASSERT_TRUE(
      writeSafetensors(sharded + "/model-00002-of-00002.safetensors", second)
          .ok());
  std::string index = "{\"metadata\": {}, \"weight_map\": {";
  for (size_t i = 0; i < tensors.size(); ++i)
    index += std::string(i ? "," : "") + "\"" + tensors[i].name + "\": \"" +
             (i < 3 ? "model-00001-of-00002.safetensors"
                    : "model-00002-of-00002.safetensors") +
             "\"";
  index += "}}";
  ASSERT_TRUE(toy::writeFile(sharded + "/model.safetensors.index.json", index));
  auto engine = Engine::create(writeArtifact(toy::toyArtifactSpec()), sharded);
  ASSERT_TRUE(engine.ok()) << engine.status().toString();
  std::vector<int64_t> ids = sampleIds();
  auto logits = (*engine)->prefill(ids.data(), 11, 0, 3);
  ASSERT_TRUE(logits.ok());
  EXPECT_EQ(*logits, toy::toyReferenceLogits(ids));

  // A truncated shard.
  std::string shard = sharded + "/model-00002-of-00002.safetensors";
  std::string bytes = toy::readFile(shard);
  ASSERT_TRUE(toy::writeFile(shard, bytes.substr(0, bytes.size() - 3)));
  auto truncated =
      Engine::create(writeArtifact(toy::toyArtifactSpec()), sharded);
  expectError(truncated.status(), {"model-00002-of-00002.safetensors"});

  // An index naming a shard that does not exist.
  std::filesystem::remove(shard);
  auto missing = Engine::create(writeArtifact(toy::toyArtifactSpec()), sharded);
  expectError(missing.status(), {"model-00002-of-00002.safetensors"});
}

TEST_F(EngineTest, HeaderThatLies) {
  // data_offsets claim more bytes than the file holds.
  std::string liar = dir + "/liar";
  std::filesystem::create_directory(liar);
  std::string header =
      "{\"toy.bias\":{\"dtype\":\"F32\",\"shape\":[768],"
      "\"data_offsets\":[0,3072]}}";
  std::string file(8, '\0');
  uint64_t length = header.size();
  std::memcpy(file.data(), &length, 8);
  file += header + std::string(100, '\0');
  ASSERT_TRUE(toy::writeFile(liar + "/model.safetensors", file));
  auto engine = Engine::create(writeArtifact(toy::toyArtifactSpec()), liar);
  expectError(engine.status(), {liar + "/model.safetensors", "toy.bias"});
  // A header length larger than the file.
  std::string shortFile(8, '\0');
  length = 1 << 20;
  std::memcpy(shortFile.data(), &length, 8);
  ASSERT_TRUE(toy::writeFile(liar + "/model.safetensors", shortFile + "{}"));
  engine = Engine::create(writeArtifact(toy::toyArtifactSpec()), liar);
  expectError(engine.status(), {liar + "/model.safetensors", "header length"});
}

TEST_F(EngineTest, WeightsDirectoryWithoutCheckpoint) {
  std::string empty = dir + "/empty";
  std::filesystem::create_directory(empty);
  auto engine = Engine::create(writeArtifact(toy::toyArtifactSpec()), empty);
  expectError(engine.status(), {empty});
}

/// One weight-binding failure: an edit of the toy tensors, and the message.
struct BindCase {
  const char *title;
  std::function<void(std::vector<TensorToWrite> &)> edit;
  std::string message; // after "weights <dir>: "
};

class EngineBindTest : public EngineTest,
                       public ::testing::WithParamInterface<BindCase> {};

TEST_P(EngineBindTest, Rejects) {
  std::string weights = writeWeights("bad", GetParam().edit);
  auto engine = Engine::create(writeArtifact(toy::toyArtifactSpec()), weights);
  expectError(engine.status(), {"weights " + weights + ": " +
                                GetParam().message});
}

std::vector<TensorToWrite>::iterator
findTensor(std::vector<TensorToWrite> &tensors, const std::string &name) {
  for (auto it = tensors.begin(); it != tensors.end(); ++it)
    if (it->name == name)
      return it;
  return tensors.end();
}

std::vector<BindCase> bindCases() {
  static std::vector<uint8_t> zeros(4096, 0);
  return {
      {"MissingTensor",
       [](auto &t) { t.erase(findTensor(t, "toy.proj.weight")); },
       "tensor 'toy.proj.weight' is missing"},
      {"MissingExpert",
       [](auto &t) { t.erase(findTensor(t, "toy.experts.1.weight")); },
       "tensor 'toy.experts.1.weight' is missing"},
      {"WrongShape",
       [](auto &t) { findTensor(t, "toy.proj.weight")->shape = {4, 2}; },
       "tensor 'toy.proj.weight' has shape [4, 2], the artifact expects "
       "[2, 4]"},
      {"WrongRank",
       [](auto &t) { findTensor(t, "toy.bias")->shape = {1, 768}; },
       "tensor 'toy.bias' has shape [1, 768], the artifact expects [768]"},
      {"WrongDtype",
       [](auto &t) {
         auto it = findTensor(t, "toy.proj.weight");
         it->dtype = DType::BF16;
         it->shape = {2, 2};
       },
       "tensor 'toy.proj.weight' has dtype BF16, the artifact expects "
       "F8_E4M3"},
      {"WrongBiasDtype",
       [](auto &t) {
         auto it = findTensor(t, "toy.bias");
         it->dtype = DType::BF16;
         it->data = zeros.data();
       },
       "tensor 'toy.bias' has dtype BF16, the artifact expects F32"},
      {"MissingScale",
       [](auto &t) { t.erase(findTensor(t, "toy.proj.scale")); },
       "tensor 'toy.proj.scale' (the scale of 'toy.proj.weight') is missing"},
      {"ScaleDtype",
       [](auto &t) { findTensor(t, "toy.proj.scale")->dtype = DType::U8; },
       "tensor 'toy.proj.scale' (the scale of 'toy.proj.weight') has dtype "
       "U8, the artifact expects F8_E8M0"},
      {"ScaleShape",
       [](auto &t) { findTensor(t, "toy.experts.0.scale")->shape = {1, 1}; },
       "tensor 'toy.experts.0.scale' (the scale of 'toy.experts.0.weight') "
       "has shape [1, 1], the artifact expects [1]"},
  };
}

INSTANTIATE_TEST_SUITE_P(Weights, EngineBindTest,
                         ::testing::ValuesIn(bindCases()),
                         [](const ::testing::TestParamInfo<BindCase> &info) {
                           return std::string(info.param.title);
                         });

TEST_F(EngineTest, ResetClearsWhatWasUsedNotTheCapacity) {
  // A state that grows with the context (one 8-byte row per 4 positions:
  // 128 bytes for the 64-token context) is cleared up to the row of the
  // highest position used; fixed-size states (16 + 64 bytes) whole.
  ArtifactSpec spec = toy::toyArtifactSpec();
  spec.states.push_back({"toy.entries", 128, fb::StateInit::Zero, 8, 0, 4});
  auto engine = makeEngine(spec);
  ASSERT_TRUE(engine.ok()) << engine.status().toString();
  Engine &e = **engine;
  const uint64_t fixed = 16 + 64;
  // Creation: the allocation is zeroed; nothing was used yet.
  EXPECT_EQ(e.bytesClearedByLastReset(), fixed);
  std::vector<int64_t> ids = sampleIds();
  ASSERT_TRUE(e.prefill(ids.data(), 10, 0).ok());
  // What a kernel would have written for positions 0..9: rows 0..2.
  uint8_t *entries = const_cast<uint8_t *>(e.stateData(2));
  std::memset(entries, 0x5A, 24);
  e.reset();
  EXPECT_EQ(e.bytesClearedByLastReset(), fixed + 24); // ceil(10 / 4) rows
  for (int i = 0; i < 128; ++i)
    ASSERT_EQ(entries[i], 0) << i;
  e.reset();
  EXPECT_EQ(e.bytesClearedByLastReset(), fixed);
  for (int64_t pos = 0; pos <= 40; ++pos)
    ASSERT_TRUE(e.decode(ids[pos % ids.size()], pos).ok()) << pos;
  e.reset();
  EXPECT_EQ(e.bytesClearedByLastReset(), fixed + 11 * 8); // ceil(41 / 4)
  // The whole context used: the whole state.
  ASSERT_TRUE(e.decode(ids[0], toy::kMaxContext - 1).ok());
  e.reset();
  EXPECT_EQ(e.bytesClearedByLastReset(), fixed + 128);
}

TEST_F(EngineTest, IndexTensorOutOfRangeIsRefusedAtBind) {
  // tid2eid picks routed experts: a value outside [0, n_routed_experts)
  // would index past the expert tables. The first bad element is named.
  ArtifactSpec spec = toy::toyArtifactSpec();
  spec.weights.push_back(
      {"toy.gate.tid2eid", "I64", {4, 2}, "", {}, false, 2});
  std::vector<int64_t> table = {0, 1, 1, 0, 0, 1, 1, 0};
  auto withTable = [&](const std::string &name) {
    return writeWeights(name, [&](std::vector<TensorToWrite> &t) {
      t.push_back({"toy.gate.tid2eid", DType::I64, {4, 2}, table.data()});
    });
  };
  std::string path = writeArtifact(spec);
  auto good = Engine::create(path, withTable("good"));
  ASSERT_TRUE(good.ok()) << good.status().toString();

  table[5] = 2; // [2][1]
  std::string bad = withTable("bad");
  expectError(Engine::create(path, bad).status(),
              {"weights " + bad + ": tensor 'toy.gate.tid2eid'[2][1] is 2, "
                                  "outside the allowed range [0, 2) "
                                  "(element 5 of 8"});
  table[5] = 1;
  table[1] = -1; // [0][1]
  std::string negative = withTable("negative");
  expectError(Engine::create(path, negative).status(),
              {"tensor 'toy.gate.tid2eid'[0][1] is -1, outside the allowed "
               "range [0, 2)"});
}

TEST_F(EngineTest, FormatMismatchSaysHowToRecompile) {
  // A checkpoint in other dtypes than the artifact was compiled for: the
  // message names the compile flags that fix it. The toy checkpoint holds
  // FP8 tensors, so its format is `official`.
  static std::vector<uint8_t> zeros(4096, 0);
  std::string weights = writeWeights("bf16", [](auto &t) {
    auto it = findTensor(t, "toy.bias");
    it->dtype = DType::BF16;
    it->data = zeros.data();
  });
  auto engine = Engine::create(writeArtifact(toy::toyArtifactSpec()), weights);
  expectError(engine.status(),
              {"tensor 'toy.bias' has dtype BF16, the artifact expects F32; "
               "the artifact was compiled for other weight formats: "
               "recompile with `compressa-compile MODEL --weights " +
                   weights + "` (reads the formats from the checkpoint) or "
                             "with `compressa-compile MODEL "
                             "--weight-format=official`"});
  // Without FP8 tensors, the found float type.
  std::string plain = writeWeights("plain", [](auto &t) {
    t.erase(t.begin() + 1, t.end());
    t[0].dtype = DType::BF16;
    t[0].data = zeros.data();
  });
  engine = Engine::create(writeArtifact(toy::toyArtifactSpec()), plain);
  expectError(engine.status(), {"--weight-format=bf16`"});
}

TEST_F(EngineTest, CudaArtifactNeedsAGpuAndCudaCode) {
  // A CUDA artifact without cuda code: refused for want of a GPU here, for
  // want of code on a GPU machine (runtime_cuda_engine_test runs real ones).
  ArtifactSpec spec = toy::toyArtifactSpec();
  spec.target = fb::Target::Cuda;
  auto engine = makeEngine(spec);
  ASSERT_FALSE(engine.ok());
#if COMPRESSA_HAVE_CUDA
  if (!loadCudaDriver().ok()) {
    EXPECT_EQ(engine.status().code(), StatusCode::Unavailable);
    expectError(engine.status(),
                {"toy.cpa: the artifact targets CUDA, but no CUDA GPU is "
                 "available: "});
  } else {
    EXPECT_EQ(engine.status().code(), StatusCode::DataLoss);
    expectError(engine.status(),
                {"toy.cpa: the target is cuda, but the artifact has no "
                 "cuda.ptx and no cuda.cubin"});
  }
#else
  EXPECT_EQ(engine.status().code(), StatusCode::Unimplemented);
  expectError(engine.status(), {"toy.cpa", "built without CUDA support"});
#endif
}

TEST_F(EngineTest, CpuBackendCountsLaunchesAndReadsStates) {
  auto engine = toyEngine();
  ASSERT_TRUE(engine);
  EXPECT_STREQ(engine->backendName(), "cpu");
  EXPECT_EQ(engine->backendDescription(), "cpu");
  EXPECT_FALSE(engine->decodeUsesGraph());
  EXPECT_EQ(engine->decodeKernels(), 2);
  EXPECT_EQ(engine->launchesPerDecodeStep(), 2);
  std::vector<int64_t> ids = sampleIds();
  ASSERT_TRUE(engine->prefill(ids.data(), 5, 0, 2).ok()); // 3 calls
  ASSERT_TRUE(engine->decode(ids[5], 5).ok());
  LaunchCounters counters = engine->launchCounters();
  EXPECT_EQ(counters.kernelLaunches, 4 * 2);
  EXPECT_EQ(counters.graphLaunches, 0);
  EXPECT_EQ(counters.capturedLaunches, 0);
  auto state = engine->readState(0);
  ASSERT_TRUE(state.ok()) << state.status().toString();
  ASSERT_EQ(state->size(), 16u);
  EXPECT_EQ(std::memcmp(state->data(), engine->stateData(0), 16), 0);
  int64_t count;
  std::memcpy(&count, state->data() + 8, 8);
  EXPECT_EQ(count, 6);
  auto bad = engine->readState(2);
  EXPECT_EQ(bad.status().code(), StatusCode::OutOfRange);
  expectError(bad.status(), {"state index 2 is out of range"});
}

TEST_F(EngineTest, MissingKernelSymbol) {
  ArtifactSpec spec = toy::toyArtifactSpec();
  spec.kernels[1].symbol = "toy_tail";
  auto engine = makeEngine(spec);
  expectError(engine.status(),
              {"kernels[1] ('toy.head')", "toy.cpa: cpu.shared_object",
               "kernel symbol 'toy_tail'"});
}

TEST_F(EngineTest, MissingArtifact) {
  auto engine = Engine::create(dir + "/nope.cpa", weightsDir);
  EXPECT_EQ(engine.status().code(), StatusCode::NotFound);
  expectError(engine.status(), {dir + "/nope.cpa", "cannot open"});
}

TEST_F(EngineTest, HugeArenaIsAnErrorNotACrash) {
  ArtifactSpec spec = toy::toyArtifactSpec();
  spec.programs[0].arenaBytes = uint64_t(1) << 62;
  auto engine = makeEngine(spec);
  EXPECT_EQ(engine.status().code(), StatusCode::ResourceExhausted);
  expectError(engine.status(), {"program 'prefill' arena"});
}

//===----------------------------------------------------------------------===//
// Generator
//===----------------------------------------------------------------------===//

TEST_F(EngineTest, GreedyGenerationFollowsTheModel) {
  auto engine = toyEngine(4);
  ASSERT_TRUE(engine);
  std::vector<int64_t> prompt = {3, 14, 15, 92, 65, 35};
  SamplingOptions options;
  options.greedy = true;
  Generator generator(*engine, options);
  auto result = generator.generate(prompt.data(), 6, 8);
  ASSERT_TRUE(result.ok()) << result.status().toString();
  std::vector<int64_t> expected = toy::toyGreedy(prompt, 8, toy::kEos);
  EXPECT_EQ(result->tokens, expected);
  EXPECT_EQ(result->stoppedAtEos, expected.back() == toy::kEos);
  // Generating again starts a new sequence: same result.
  auto again = generator.generate(prompt.data(), 6, 8, 1);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->tokens, expected);
}

TEST_F(EngineTest, GenerationStopsAtEosAndIncludesIt) {
  std::vector<int64_t> prompt = {3, 14, 15, 92, 65, 35};
  std::vector<int64_t> free = toy::toyGreedy(prompt, 6, -1);
  ASSERT_EQ(free.size(), 6u);
  // Make the third generated token the EOS (if it appears earlier, the run
  // stops there: compute where).
  int64_t eos = free[2];
  size_t stop = 0;
  while (free[stop] != eos)
    ++stop;
  ArtifactSpec spec = toy::toyArtifactSpec();
  spec.eosTokenId = eos;
  auto engine = makeEngine(spec);
  ASSERT_TRUE(engine.ok());
  SamplingOptions options;
  options.temperature = 0;
  Generator generator(**engine, options);
  auto result = generator.generate(prompt.data(), 6, 6);
  ASSERT_TRUE(result.ok()) << result.status().toString();
  EXPECT_TRUE(result->stoppedAtEos);
  EXPECT_EQ(result->tokens,
            std::vector<int64_t>(free.begin(), free.begin() + stop + 1));
  EXPECT_EQ(result->tokens.back(), eos);
}

TEST_F(EngineTest, GenerationStopsWhenTheContextIsFull) {
  ArtifactSpec spec = toy::toyArtifactSpec();
  spec.eosTokenId = -1;
  auto engine = makeEngine(spec);
  ASSERT_TRUE(engine.ok());
  std::vector<int64_t> prompt(60, 2);
  SamplingOptions options;
  options.greedy = true;
  Generator generator(**engine, options);
  auto result = generator.generate(prompt.data(), 60, 10);
  ASSERT_TRUE(result.ok()) << result.status().toString();
  // Positions 60..63 are decoded: 1 token from the prompt + 4 decoded.
  EXPECT_EQ(result->tokens.size(), 5u);
  EXPECT_TRUE(result->stoppedAtContext);
  EXPECT_EQ(result->tokens, toy::toyGreedy(prompt, 5, -1));
}

TEST_F(EngineTest, SampledGenerationIsReproducible) {
  auto engine = toyEngine();
  ASSERT_TRUE(engine);
  std::vector<int64_t> prompt = {7, 7, 7};
  SamplingOptions options;
  options.temperature = 4.0; // Flat enough that draws vary.
  options.topP = 0.99;
  options.seed = 2024;
  auto first = Generator(*engine, options).generate(prompt.data(), 3, 12);
  auto second = Generator(*engine, options).generate(prompt.data(), 3, 12);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->tokens, second->tokens);
  options.topK = 1;
  auto topOne = Generator(*engine, options).generate(prompt.data(), 3, 12);
  ASSERT_TRUE(topOne.ok());
  EXPECT_EQ(topOne->tokens, toy::toyGreedy(prompt, 12, toy::kEos));
}

TEST_F(EngineTest, GenerationInputErrors) {
  auto engine = toyEngine();
  ASSERT_TRUE(engine);
  SamplingOptions options;
  Generator generator(*engine, options);
  int64_t id = 4;
  expectError(generator.generate(&id, 0, 3).status(), {"prompt is empty"});
  expectError(generator.generate(&id, 1, -1).status(), {"negative"});
  auto none = generator.generate(&id, 1, 0);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->tokens.empty());
  int64_t bad = 999;
  expectError(generator.generate(&bad, 1, 2).status(),
              {"token id 999 at position 0"});
}

} // namespace
} // namespace compressa
