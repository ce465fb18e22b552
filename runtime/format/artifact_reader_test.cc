// SPDX-License-Identifier: Apache-2.0
// Tests of ArtifactReader on synthetic artifacts: a valid toy artifact, then
// one mutation per check the reader makes. Every error must name the file and
// the field or index at fault.
#include "runtime/format/artifact_reader.h"

#include "runtime/testing/toy_artifact.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace compressa {
namespace {

using toy::ArtifactSpec;
using K = fb::ArgKind;

constexpr const char *kName = "toy.cpa";

/// Index of program "decode" in toyArtifactSpec().
size_t decodeIndex(const ArtifactSpec &spec) {
  for (size_t i = 0; i < spec.programs.size(); ++i)
    if (spec.programs[i].name == "decode")
      return i;
  return 0;
}

StatusOr<std::unique_ptr<Artifact>> readSpec(const ArtifactSpec &spec) {
  std::vector<uint8_t> bytes = toy::buildArtifact(spec);
  return ArtifactReader::readBuffer(bytes.data(), bytes.size(), kName);
}

/// Expects a failure whose message contains every one of `parts`.
void expectError(const Status &status, std::vector<std::string> parts) {
  ASSERT_FALSE(status.ok());
  for (const std::string &part : parts)
    EXPECT_NE(status.message().find(part), std::string::npos)
        << "message: " << status.message() << "\nmissing: " << part;
}

TEST(ArtifactReaderTest, ReadsTheToyArtifact) {
  ArtifactSpec spec = toy::toyArtifactSpec();
  ASSERT_FALSE(spec.sharedObject.empty()) << "test kernels not found";
  auto artifact = readSpec(spec);
  ASSERT_TRUE(artifact.ok()) << artifact.status().toString();
  const Artifact &a = **artifact;
  EXPECT_EQ(a.path(), kName);
  EXPECT_EQ(a.root().version(), kArtifactVersion);
  EXPECT_EQ(a.model().vocab_size(), toy::kVocab);
  EXPECT_EQ(a.model().max_context(), toy::kMaxContext);
  EXPECT_EQ(a.model().eos_token_id(), toy::kEos);
  EXPECT_EQ(a.target(), fb::Target::Cpu);
  EXPECT_STREQ(a.targetName(), "cpu");
  ASSERT_NE(a.findProgram("decode"), nullptr);
  EXPECT_EQ(a.findProgram("decode")->max_tokens(), 1u);
  ASSERT_NE(a.findProgram("prefill"), nullptr);
  EXPECT_EQ(a.findProgram("prefill")->max_tokens(), 16u);
  EXPECT_EQ(a.findProgram("nope"), nullptr);
  EXPECT_EQ(a.findWeight("toy.proj.weight"), 1);
  EXPECT_EQ(a.findWeight("toy.proj.scale"), -1);
  EXPECT_EQ(a.root().cpu()->shared_object()->size(), spec.sharedObject.size());
  EXPECT_EQ(a.root().config_json()->str(), spec.configJson);
}

TEST(ArtifactReaderTest, ExpertWeightNames) {
  EXPECT_EQ(Artifact::expertWeightName("layers.3.ffn.experts.*.w1.weight", 17),
            "layers.3.ffn.experts.17.w1.weight");
  EXPECT_EQ(Artifact::expertWeightName("*.a.*", 2), "2.a.2");
}

class ArtifactFileTest : public ::testing::Test {
protected:
  void SetUp() override {
    dir = toy::makeTempDir("compressa_art_");
    ASSERT_FALSE(dir.empty());
    bytes = toy::buildArtifact(toy::toyArtifactSpec());
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  std::string write(const std::string &name, const std::vector<uint8_t> &data) {
    std::string path = dir + "/" + name;
    EXPECT_TRUE(toy::writeFile(path, data));
    return path;
  }

  std::string dir;
  std::vector<uint8_t> bytes;
};

TEST_F(ArtifactFileTest, ReadsAFile) {
  std::string path = write("ok.cpa", bytes);
  auto artifact = ArtifactReader::readFile(path);
  ASSERT_TRUE(artifact.ok()) << artifact.status().toString();
  EXPECT_EQ((*artifact)->path(), path);
  EXPECT_EQ((*artifact)->size(), bytes.size());
}

TEST_F(ArtifactFileTest, MissingFile) {
  std::string path = dir + "/absent.cpa";
  auto artifact = ArtifactReader::readFile(path);
  EXPECT_EQ(artifact.status().code(), StatusCode::NotFound);
  expectError(artifact.status(), {path, "cannot open"});
}

TEST_F(ArtifactFileTest, DirectoryIsNotAnArtifact) {
  auto artifact = ArtifactReader::readFile(dir);
  expectError(artifact.status(), {dir, "not a regular file"});
}

TEST_F(ArtifactFileTest, TruncatedFile) {
  // (Cutting only the final alignment padding cannot be detected, and is
  // harmless: nothing refers to those bytes.)
  for (size_t keep : {bytes.size() / 2, bytes.size() - 8, size_t(64)}) {
    std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + keep);
    std::string path = write("cut.cpa", cut);
    auto artifact = ArtifactReader::readFile(path);
    expectError(artifact.status(),
                {path, "corrupt or truncated artifact (FlatBuffers "
                       "verification failed)"});
  }
}

TEST_F(ArtifactFileTest, TooShortForAHeader) {
  std::string path = write("tiny.cpa", {1, 2, 3});
  auto artifact = ArtifactReader::readFile(path);
  expectError(artifact.status(), {path, "corrupt or truncated", "3 bytes"});
  path = write("empty.cpa", {});
  expectError(ArtifactReader::readFile(path).status(), {path, "0 bytes"});
}

TEST_F(ArtifactFileTest, WrongIdentifier) {
  std::vector<uint8_t> other = bytes;
  std::memcpy(other.data() + 4, "GGUF", 4);
  std::string path = write("other.cpa", other);
  auto artifact = ArtifactReader::readFile(path);
  expectError(artifact.status(),
              {path + ": not a Compressa artifact (file identifier 'GGUF', "
                      "expected 'CPA1')"});
  // Unprintable identifiers are escaped.
  std::memcpy(other.data() + 4, "\x01\xff" "AB", 4);
  artifact = ArtifactReader::readBuffer(other.data(), other.size(), "x.cpa");
  expectError(artifact.status(), {"file identifier '\\x01\\xFFAB'"});
}

TEST_F(ArtifactFileTest, CorruptRootOffset) {
  std::vector<uint8_t> bad = bytes;
  uint32_t offset = 0xFFFFFF00u;
  std::memcpy(bad.data(), &offset, 4);
  auto artifact = ArtifactReader::readBuffer(bad.data(), bad.size(), kName);
  expectError(artifact.status(),
              {kName, "corrupt or truncated artifact (FlatBuffers "
                      "verification failed)"});
}

TEST_F(ArtifactFileTest, CorruptBytesNeverCrash) {
  // Every single-byte corruption of the table region either still verifies
  // and validates, or fails with the file name; none may crash.
  size_t soStart = 0, soSize = 0;
  {
    auto artifact = ArtifactReader::readBuffer(bytes.data(), bytes.size(), kName);
    ASSERT_TRUE(artifact.ok());
    const auto *so = (*artifact)->root().cpu()->shared_object();
    soStart = so->data() - (*artifact)->data();
    soSize = so->size();
  }
  size_t failures = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (i >= soStart && i < soStart + soSize)
      continue; // Inside the shared object's bytes: opaque to the reader.
    std::vector<uint8_t> bad = bytes;
    bad[i] ^= 0xA5;
    auto artifact = ArtifactReader::readBuffer(bad.data(), bad.size(), kName);
    if (!artifact.ok()) {
      ++failures;
      EXPECT_EQ(artifact.status().message().rfind(kName, 0), 0u)
          << artifact.status().message();
    }
  }
  EXPECT_GT(failures, 0u);
}

TEST_F(ArtifactFileTest, VerifiedButGarbageVectorLength) {
  // A vector length pointing past the end fails structurally.
  auto artifact = ArtifactReader::readBuffer(bytes.data(), bytes.size(), kName);
  ASSERT_TRUE(artifact.ok());
  const auto *so = (*artifact)->root().cpu()->shared_object();
  size_t lengthAt = so->data() - (*artifact)->data() - 4;
  std::vector<uint8_t> bad = bytes;
  uint32_t huge = 0x7FFFFFF0u;
  std::memcpy(bad.data() + lengthAt, &huge, 4);
  expectError(ArtifactReader::readBuffer(bad.data(), bad.size(), kName).status(),
              {kName, "verification failed"});
}

/// One semantic check: a mutation of the toy spec and the message parts.
struct Case {
  const char *title;
  std::function<void(ArtifactSpec &)> mutate;
  std::vector<std::string> parts;
};

class ArtifactValidationTest : public ::testing::TestWithParam<Case> {};

TEST_P(ArtifactValidationTest, Rejects) {
  ArtifactSpec spec = toy::toyArtifactSpec();
  GetParam().mutate(spec);
  auto artifact = readSpec(spec);
  std::vector<std::string> parts = GetParam().parts;
  parts.insert(parts.begin(), std::string(kName) + ": ");
  expectError(artifact.status(), parts);
}

std::vector<Case> cases() {
  auto decode = [](ArtifactSpec &spec) -> toy::ProgramSpec & {
    return spec.programs[decodeIndex(spec)];
  };
  return {
      {"OtherVersion", [](ArtifactSpec &s) { s.version = 2; },
       {"artifact version 2 is not supported", "reads version 1"}},
      {"VersionZero", [](ArtifactSpec &s) { s.version = 0; },
       {"artifact version 0"}},
      {"NoModel", [](ArtifactSpec &s) { s.hasModel = false; },
       {"model is missing"}},
      {"ZeroVocab", [](ArtifactSpec &s) { s.vocabSize = 0; },
       {"model.vocab_size is 0"}},
      {"ZeroContext", [](ArtifactSpec &s) { s.maxContext = 0; },
       {"model.max_context is 0"}},
      {"UnknownTarget",
       [](ArtifactSpec &s) { s.target = static_cast<fb::Target>(9); },
       {"target 9 is unknown"}},
      {"CpuWithoutCode", [](ArtifactSpec &s) { s.hasCpu = false; },
       {"cpu.shared_object is empty"}},
      {"CpuEmptyCode", [](ArtifactSpec &s) { s.sharedObject.clear(); },
       {"cpu.shared_object is empty"}},
      {"KernelWithoutSymbol",
       [](ArtifactSpec &s) { s.kernels[1].symbol.clear(); },
       {"kernels[1] ('toy.head'): symbol is empty"}},
      {"LaunchKernelOutOfRange",
       [decode](ArtifactSpec &s) { decode(s).launches[1].kernel = 7; },
       {"programs[1] ('decode').launches[1]", "kernel index 7 is out of range",
        "2 kernels"}},
      {"BufferArgOutOfRange",
       [decode](ArtifactSpec &s) { decode(s).launches[0].args[4].index = 3; },
       {"programs[1] ('decode').launches[0].args[4]",
        "Buffer index 3 is out of range", "the program has 3 buffers"}},
      {"WeightArgOutOfRange",
       [decode](ArtifactSpec &s) { decode(s).launches[1].args[2].index = 99; },
       {"programs[1] ('decode').launches[1].args[2]",
        "Weight index 99 is out of range", "the artifact has 5 weights"}},
      {"WeightScaleArgOutOfRange",
       [decode](ArtifactSpec &s) { decode(s).launches[1].args[4].index = 5; },
       {"launches[1].args[4]", "WeightScale index 5 is out of range"}},
      {"WeightScaleWithoutScale",
       [decode](ArtifactSpec &s) { decode(s).launches[1].args[4].index = 0; },
       {"launches[1].args[4]", "WeightScale of weights[0] ('toy.bias')",
        "no scale"}},
      {"ExpertTableArgOutOfRange",
       [decode](ArtifactSpec &s) { decode(s).launches[1].args[5].index = 1; },
       {"launches[1].args[5]", "ExpertTable index 1 is out of range",
        "1 expert_tables"}},
      {"StateArgOutOfRange",
       [decode](ArtifactSpec &s) { decode(s).launches[0].args[3].index = 2; },
       {"launches[0].args[3]", "State index 2 is out of range", "2 states"}},
      {"UnknownArgKind",
       [decode](ArtifactSpec &s) {
         decode(s).launches[0].args[0].kind = static_cast<K>(42);
       },
       {"launches[0].args[0]", "argument kind 42 is unknown"}},
      {"ScratchOverflow",
       [](ArtifactSpec &s) {
         s.kernels[1].scratchBytesPerToken =
             std::numeric_limits<uint64_t>::max() / 2;
       },
       {"programs[0] ('prefill').launches[1].args[6]", "overflows 64 bits"}},
      {"BufferPastArena",
       [decode](ArtifactSpec &s) { decode(s).buffers[1].bytes += 1u << 20; },
       {"programs[1] ('decode')", "buffers[1] ('hidden')",
        "exceeds the arena"}},
      {"BufferOffsetOverflow",
       [decode](ArtifactSpec &s) {
         decode(s).buffers[1].offset = std::numeric_limits<uint64_t>::max();
       },
       {"buffers[1] ('hidden')", "exceeds the arena"}},
      {"InputIdsOutOfRange",
       [decode](ArtifactSpec &s) { decode(s).inputIds = 3; },
       {"programs[1] ('decode')", "input_ids buffer index 3 is out of range"}},
      {"LogitsOutOfRange", [decode](ArtifactSpec &s) { decode(s).logits = 9; },
       {"logits buffer index 9 is out of range"}},
      {"InputIdsTooSmall",
       [decode](ArtifactSpec &s) { decode(s).buffers[0].bytes = 7; },
       {"input_ids buffer 0 ('input_ids') has 7 bytes",
        "fewer than max_tokens 1 * 8"}},
      {"LogitsTooSmall",
       [decode](ArtifactSpec &s) { decode(s).buffers[2].bytes = 3071; },
       {"logits buffer 2 ('logits') has 3071 bytes", "768 * 4 = 3072"}},
      {"PrefillBuffersTooSmall",
       [](ArtifactSpec &s) { s.programs[0].maxTokens = 17; },
       {"programs[0] ('prefill')", "input_ids buffer 0"}},
      {"DuplicateProgram",
       [](ArtifactSpec &s) { s.programs[2].name = "decode"; },
       {"programs[2]: the name 'decode' is used twice"}},
      {"NoDecode",
       [decode](ArtifactSpec &s) { decode(s).name = "decode2"; },
       {"no program is named 'decode'"}},
      {"EmptyProgramName", [](ArtifactSpec &s) { s.programs[0].name = ""; },
       {"programs[0].name is empty"}},
      {"DecodeZeroTokens",
       [decode](ArtifactSpec &s) { decode(s).maxTokens = 0; },
       {"programs[1] ('decode'): max_tokens is 0"}},
      {"BadWeightDtype", [](ArtifactSpec &s) { s.weights[0].dtype = "F7"; },
       {"weights[0] ('toy.bias'): dtype 'F7' is not a safetensors dtype"}},
      {"NegativeWeightDim",
       [](ArtifactSpec &s) { s.weights[1].shape[1] = -4; },
       {"weights[1] ('toy.proj.weight'): shape[1] is -4"}},
      {"NegativeScaleDim",
       [](ArtifactSpec &s) { s.weights[1].scaleShape[0] = -1; },
       {"weights[1] ('toy.proj.weight'): scale_shape[0] is -1"}},
      {"DuplicateWeight",
       [](ArtifactSpec &s) { s.weights[4].name = "toy.bias"; },
       {"weights[4]: name 'toy.bias' is used by weights[0] too"}},
      {"EmptyWeightName", [](ArtifactSpec &s) { s.weights[2].name = ""; },
       {"weights[2].name is empty"}},
      {"ExpertPatternWithoutStar",
       [](ArtifactSpec &s) { s.expertTables[0].pattern = "toy.experts"; },
       {"expert_tables[0].pattern 'toy.experts' has no '*'"}},
      {"ExpertCountZero", [](ArtifactSpec &s) { s.expertTables[0].count = 0; },
       {"expert_tables[0] ('toy.experts.*.weight'): count is 0"}},
      {"ExpertCountHuge",
       [](ArtifactSpec &s) { s.expertTables[0].count = 4000000000u; },
       {"expert_tables[0]", "count 4000000000 exceeds the 5 weights"}},
      {"ExpertNotInManifest",
       [](ArtifactSpec &s) { s.expertTables[0].count = 3; },
       {"expert_tables[0] ('toy.experts.*.weight'): expert 2, weight "
        "'toy.experts.2.weight', is not in the weights manifest"}},
      {"CompressorStateOddSize",
       [](ArtifactSpec &s) { s.states[1].bytes = 60; },
       {"states[1] ('toy.compressor.state')", "60 bytes"}},
      {"UnknownStateInit",
       [](ArtifactSpec &s) {
         s.states[0].init = static_cast<fb::StateInit>(5);
       },
       {"states[0] ('toy.state'): init 5 is unknown"}},
  };
}

INSTANTIATE_TEST_SUITE_P(Semantic, ArtifactValidationTest,
                         ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case> &info) {
                           return std::string(info.param.title);
                         });

TEST(ArtifactReaderTest, CudaArtifactNeedsNoCpuCode) {
  ArtifactSpec spec = toy::toyArtifactSpec();
  spec.target = fb::Target::Cuda;
  spec.hasCpu = false;
  auto artifact = readSpec(spec);
  ASSERT_TRUE(artifact.ok()) << artifact.status().toString();
  EXPECT_STREQ((*artifact)->targetName(), "cuda");
}

TEST(ArtifactReaderTest, ProgramsMayOmitLaunchesAndOptionalTables) {
  ArtifactSpec spec = toy::toyArtifactSpec(0);
  spec.programs[0].launches.clear();
  auto artifact = readSpec(spec);
  ASSERT_TRUE(artifact.ok()) << artifact.status().toString();
  EXPECT_EQ((*artifact)->findProgram("prefill"), nullptr);
}

} // namespace
} // namespace compressa
