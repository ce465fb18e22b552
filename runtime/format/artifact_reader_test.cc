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
/// A collective pseudo-kernel (artifact.fbs, Collective) of 16-byte rows.
toy::KernelSpec allReduceKernel() {
  toy::KernelSpec k;
  k.name = "all_reduce";
  k.collective = fb::Collective::AllReduceSum;
  k.params = {{K::Tokens}, {K::StartPos}, {K::Scratch}, {K::Buffer, 16, 0},
              {K::Buffer, 16, 0}};
  return k;
}

/// `spec` as rank 1 of 2 (the toy's 2 experts: one each).
void makeRankOneOfTwo(ArtifactSpec &spec) {
  spec.rank = 1;
  spec.ranks = 2;
  spec.expertTables[0].count = 1;
  spec.expertTables[0].first = 1;
  for (toy::KernelSpec &k : spec.kernels)
    for (toy::ParamSpec &p : k.params)
      if (p.kind == K::ExpertTable)
        p.bytes = 1; // The kernels index the rank's one expert.
}

size_t decodeIndex(const ArtifactSpec &spec) {
  for (size_t i = 0; i < spec.programs.size(); ++i)
    if (spec.programs[i].name == "decode")
      return i;
  return 0;
}

/// A CUDA launch of a kernel taking a TensorMap (the tensor-core GEMM's
/// kind of argument) in the decode program, reading `map`; a 16 x 16 e4m3
/// weight (weights[5]) to map.
void addTensorMapLaunch(ArtifactSpec &spec, toy::TensorMapSpec map) {
  spec.target = fb::Target::Cuda;
  spec.weights.push_back({"toy.tc.weight", "F8_E4M3", {16, 16}, "", {}, false});
  toy::KernelSpec k;
  k.name = "toy_gemm";
  k.symbol = "toy_gemm";
  k.scratchBytesPerToken = 16;
  k.scratchBytes = 64;
  k.params = {{K::Tokens}, {K::StartPos}, {K::Scratch}, {K::TensorMap}};
  spec.kernels.push_back(k);
  toy::ProgramSpec &decode = spec.programs[decodeIndex(spec)];
  decode.tensorMaps.push_back(map);
  decode.launches.push_back({uint32_t(spec.kernels.size() - 1),
                             {{K::Tokens, 0}, {K::StartPos, 0}, {K::Scratch, 0},
                              {K::TensorMap, 0}}});
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
  // Any cut loses the trailer: a FlatBuffer that no longer verifies, or
  // (the trailer alone cut) one without its digest.
  for (size_t keep : {bytes.size() / 2, size_t(64)}) {
    std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + keep);
    std::string path = write("cut.cpa", cut);
    auto artifact = ArtifactReader::readFile(path);
    expectError(artifact.status(),
                {path, "corrupt or truncated artifact (FlatBuffers "
                       "verification failed)"});
  }
  for (size_t cutBytes : {size_t(8), kArtifactTrailerBytes}) {
    std::vector<uint8_t> cut(bytes.begin(), bytes.end() - cutBytes);
    std::string path = write("cut.cpa", cut);
    expectError(ArtifactReader::readFile(path).status(),
                {path, "corrupt or truncated artifact (the 40-byte digest "
                       "trailer ending in 'CPASHA2' is missing)"});
  }
}

TEST_F(ArtifactFileTest, DigestMismatchIsRefusedBeforeAnythingIsUsed) {
  // One bit flipped inside the embedded shared object: the FlatBuffer still
  // verifies and validates, so only the digest can tell; the file is
  // refused before its code is ever mapped or loaded.
  auto artifact = ArtifactReader::readBuffer(bytes.data(), bytes.size(), kName);
  ASSERT_TRUE(artifact.ok()) << artifact.status().toString();
  const auto *so = (*artifact)->root().cpu()->shared_object();
  size_t at = so->data() - (*artifact)->data() + so->size() / 2;
  std::string recorded = hexDigest((*artifact)->digest());
  EXPECT_EQ(recorded, hexDigest(sha256(bytes.data(),
                                       bytes.size() - kArtifactTrailerBytes)));
  std::vector<uint8_t> bad = bytes;
  bad[at] ^= 0x10;
  std::string path = write("flipped.cpa", bad);
  expectError(ArtifactReader::readFile(path).status(),
              {path + ": artifact is corrupt or was modified: digest "
                      "(SHA-256 of bytes 0..",
               "expected " + recorded,
               "found " + hexDigest(sha256(bad.data(), bad.size() -
                                                           kArtifactTrailerBytes))});
  // The digest itself edited: the same error.
  bad = bytes;
  bad[bytes.size() - kArtifactTrailerBytes] ^= 1;
  expectError(ArtifactReader::readBuffer(bad.data(), bad.size(), kName).status(),
              {"artifact is corrupt or was modified"});
  // Re-sealed, the flipped shared object passes the reader (the digest is
  // not a signature: see docs/artifact.md, "Trust model").
  bad = bytes;
  bad[at] ^= 0x10;
  toy::reseal(bad);
  EXPECT_TRUE(ArtifactReader::readBuffer(bad.data(), bad.size(), kName).ok());
}

TEST_F(ArtifactFileTest, Sha256KnownAnswer) {
  // FIPS 180-2 test vector "abc".
  EXPECT_EQ(hexDigest(sha256("abc", 3)),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
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
  toy::reseal(bad);
  auto artifact = ArtifactReader::readBuffer(bad.data(), bad.size(), kName);
  expectError(artifact.status(),
              {kName, "corrupt or truncated artifact (FlatBuffers "
                      "verification failed)"});
}

TEST_F(ArtifactFileTest, CorruptBytesNeverCrash) {
  // Every single-byte corruption of the table region, re-sealed (so that
  // the structural and semantic checks see it), either still verifies and
  // validates, or fails with the file name; none may crash. Unsealed, every
  // one fails the digest.
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
    if (i < bytes.size() - 8) // (The tag itself: a missing trailer.)
      EXPECT_FALSE(artifact.ok()) << "byte " << i;
    toy::reseal(bad);
    artifact = ArtifactReader::readBuffer(bad.data(), bad.size(), kName);
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
  toy::reseal(bad);
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
      {"OtherVersion", [](ArtifactSpec &s) { s.version = 3; },
       {"artifact version 3 is not supported", "reads version 2 only"}},
      {"VersionOneHasNoTrailer",
       [](ArtifactSpec &s) {
         s.version = 1;
         s.seal = false;
       },
       {"artifact version 1 is not supported", "reads version 2 only",
        "recompile the model"}},
      {"UnsealedVersionTwo", [](ArtifactSpec &s) { s.seal = false; },
       {"corrupt or truncated artifact (the 40-byte digest trailer"}},
      {"VersionZero", [](ArtifactSpec &s) { s.version = 0; },
       {"artifact version 0"}},
      {"NoModel", [](ArtifactSpec &s) { s.hasModel = false; },
       {"model is missing"}},
      {"ZeroVocab", [](ArtifactSpec &s) { s.vocabSize = 0; },
       {"model.vocab_size is 0"}},
      {"CollectiveInAOneRankArtifact",
       [](ArtifactSpec &s) { s.kernels.push_back(allReduceKernel()); },
       {"('all_reduce') is a collective, but the artifact has one rank"}},
      {"CollectiveWithASymbol",
       [](ArtifactSpec &s) {
         makeRankOneOfTwo(s);
         s.kernels.push_back(allReduceKernel());
         s.kernels.back().symbol = "toy_head";
       },
       {"('all_reduce') is a collective, but has symbol 'toy_head'"}},
      {"CollectiveWithAnotherSignature",
       [](ArtifactSpec &s) {
         makeRankOneOfTwo(s);
         s.kernels.push_back(allReduceKernel());
         s.kernels.back().params[4].bytesPerToken = 8;
       },
       {"a collective takes Tokens, StartPos, Scratch and two Buffers of the "
        "same f32 rows"}},
      {"RankNotBelowRanks",
       [](ArtifactSpec &s) {
         s.rank = 2;
         s.ranks = 2;
       },
       {"rank 2, but ranks is 2"}},
      {"RankZeroWithoutItsPeers", [](ArtifactSpec &s) { s.ranks = 2; },
       {"rank 0 of 2 carries 0 peer artifacts, expected 1"}},
      {"APeerCarryingPeers",
       [](ArtifactSpec &s) {
         makeRankOneOfTwo(s);
         s.peers = {{1, 2, 3}};
       },
       {"rank 1 of 2 carries 1 peer artifacts, expected 0"}},
      {"EmptyPeer",
       [](ArtifactSpec &s) {
         s.ranks = 2;
         s.expertTables[0].count = 1;
         s.peers = {{}};
       },
       {"peers[0] is rank 1 with 0 bytes, expected rank 1 and an artifact"}},
      {"ExpertOffsetInAOneRankArtifact",
       [](ArtifactSpec &s) { s.expertTables[0].first = 1; },
       {"expert_tables[0] ('toy.experts.*.weight'): first is 1, but the "
        "artifact has one rank"}},
      {"AnotherRanksExperts",
       [](ArtifactSpec &s) {
         makeRankOneOfTwo(s);
         s.expertTables[0].first = 0;
       },
       {"expert_tables[0] ('toy.experts.*.weight'): experts 0..1, but rank 1 "
        "of 2 holds n_routed_experts (2) / ranks from rank * that"}},
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
       [](ArtifactSpec &s) {
         s.expertTables[0].count = 3;
         s.nRoutedExperts = 3;
       },
       {"expert_tables[0] ('toy.experts.*.weight'): expert 2, weight "
        "'toy.experts.2.weight', is not in the weights manifest"}},
      {"CompressorStateOddSize",
       [](ArtifactSpec &s) { s.states[1].bytes = 60; },
       {"states[1] ('toy.compressor.state')", "60 bytes"}},
      // Cross-field invariants the kernels rely on.
      {"ExpertCountBelowConfig",
       [](ArtifactSpec &s) { s.expertTables[0].count = 1; },
       {"expert_tables[0] ('toy.experts.*.weight'): count 1, but "
        "model.n_routed_experts is 2"}},
      {"LaunchMissingArgument",
       [decode](ArtifactSpec &s) { decode(s).launches[1].args.pop_back(); },
       {"programs[1] ('decode').launches[1]: 7 arguments, but kernel "
        "'toy.head' (kernels[1]) takes 8"}},
      {"LaunchExtraArgument",
       [decode](ArtifactSpec &s) {
         decode(s).launches[0].args.push_back({K::Tokens, 0});
       },
       {"launches[0]: 6 arguments, but kernel 'toy.embed' (kernels[0]) "
        "takes 5"}},
      {"LogitRowsVsSignature",
       [decode](ArtifactSpec &s) {
         decode(s).launches[0].args[1] = {K::LogitRows, 0};
       },
       {"launches[0].args[1]: argument kind LogitRows, but kernel "
        "'toy.embed' expects Tokens in slot 1"}},
      {"LogitRowsInTheBatchedDecodeProgram",
       [decode](ArtifactSpec &s) {
         s.programs.push_back(decode(s));
         s.programs.back().name = "decode_batch";
         s.programs.back().launches[1].args[0] = {K::LogitRows, 0};
       },
       {"programs[3] ('decode_batch').launches[1].args[0]: a LogitRows "
        "argument (kernel 'toy.head') in the batched decode program, which "
        "computes every row"}},
      {"ArgumentKindVsSignature",
       [decode](ArtifactSpec &s) {
         decode(s).launches[0].args[1] = {K::StartPos, 0};
       },
       {"launches[0].args[1]: argument kind StartPos, but kernel "
        "'toy.embed' expects Tokens in slot 1"}},
      {"BufferSmallerThanSignature",
       [](ArtifactSpec &s) { s.kernels[0].params[4].bytesPerToken = 64; },
       {"programs[0] ('prefill').launches[0].args[4]: Buffer 1 ('hidden') "
        "has 512 bytes, but kernel 'toy.embed' needs 1024 in slot 4"}},
      {"WeightVsSignature",
       [decode](ArtifactSpec &s) { decode(s).launches[1].args[2].index = 1; },
       {"launches[1].args[2]: Weight weights[1] ('toy.proj.weight') has 8 "
        "bytes, but kernel 'toy.head' expects 3072 in slot 2"}},
      {"WeightScaleVsSignature",
       [](ArtifactSpec &s) { s.kernels[1].params[4].bytes = 4; },
       {"args[4]: WeightScale weights[1] ('toy.proj.weight') has 1 bytes, "
        "but kernel 'toy.head' expects 4 in slot 4"}},
      {"ExpertTableVsSignature",
       [](ArtifactSpec &s) { s.kernels[1].params[5].bytes = 4; },
       {"args[5]: ExpertTable expert_tables[0] ('toy.experts.*.weight') has "
        "2 experts, but kernel 'toy.head' expects 4 in slot 5"}},
      {"StateVsSignature",
       [](ArtifactSpec &s) { s.kernels[0].params[3].bytes = 32; },
       {"args[3]: State states[0] ('toy.state') has 16 bytes, but kernel "
        "'toy.embed' expects 32 in slot 3"}},
      {"KernelWithoutSignature",
       [](ArtifactSpec &s) { s.kernels[1].hasParams = false; },
       {"kernels[1] ('toy.head'): params (the kernel's signature) is "
        "missing"}},
      {"UnknownParamKind",
       [](ArtifactSpec &s) {
         s.kernels[0].params[0].kind = static_cast<K>(42);
       },
       {"kernels[0] ('toy.embed'): params[0] has unknown kind 42"}},
      {"StateOfZeroBytes",
       [](ArtifactSpec &s) { s.states[0].bytes = 0; },
       {"states[0] ('toy.state') has 0 bytes, expected 16 (row_bytes 16 * "
        "(rows 1 + max_context 64 / context_ratio 0))"}},
      {"StateGeometryEmpty",
       [](ArtifactSpec &s) { s.states[0].rowBytes = 0; },
       {"states[0] ('toy.state'): geometry row_bytes 0, rows 1, "
        "context_ratio 0 is empty"}},
      {"MaxContextRaisedPastTheState",
       [](ArtifactSpec &s) {
         s.states.push_back({"toy.entries", 128, fb::StateInit::Zero, 8, 0, 4});
         s.maxContext = 4096;
       },
       {"states[2] ('toy.entries') has 128 bytes, expected 8192 (row_bytes 8 "
        "* (rows 0 + max_context 4096 / context_ratio 4))"}},
      {"ValuesBelowOnAFloatTensor",
       [](ArtifactSpec &s) { s.weights[0].valuesBelow = 5; },
       {"weights[0] ('toy.bias'): values_below 5 on a tensor of dtype 'F32', "
        "expected an integer dtype"}},
      {"UnknownStateInit",
       [](ArtifactSpec &s) {
         s.states[0].init = static_cast<fb::StateInit>(5);
       },
       {"states[0] ('toy.state'): init 5 is unknown"}},
      {"TensorMapOnTheCpu",
       [](ArtifactSpec &s) {
         addTensorMapLaunch(s, {K::Weight, 5, 0, 16, 16});
         s.target = fb::Target::Cpu;
       },
       {"a TensorMap argument (kernel 'toy_gemm'), but the artifact's target "
        "is not cuda"}},
      {"TensorMapIndexOutOfRange",
       [](ArtifactSpec &s) {
         addTensorMapLaunch(s, {K::Weight, 5, 0, 16, 16});
         s.programs[decodeIndex(s)].launches.back().args[3].index = 1;
       },
       {"TensorMap index 1 is out of range (the program has 1 tensor_maps)"}},
      {"TensorMapOfAFloatWeight",
       [](ArtifactSpec &s) { addTensorMapLaunch(s, {K::Weight, 0, 0, 1, 16}); },
       {"tensor_maps[0]: 1 x 16 e4m3 bytes at offset 0 of weights[0] "
        "('toy.bias', F32), expected the whole F8_E4M3 weight"}},
      {"TensorMapOfPartOfAWeight",
       [](ArtifactSpec &s) { addTensorMapLaunch(s, {K::Weight, 5, 0, 8, 16}); },
       {"tensor_maps[0]: 8 x 16 e4m3 bytes", "expected the whole F8_E4M3 weight"}},
      {"TensorMapPastTheScratch",
       [](ArtifactSpec &s) {
         addTensorMapLaunch(s, {K::Scratch, 0, 64, 1, 32});
       },
       {"tensor_maps[0]: 32 bytes at offset 64 exceed the scratch area of "
        "kernel 'toy_gemm' (80 bytes)"}},
      {"TensorMapColumns",
       [](ArtifactSpec &s) { addTensorMapLaunch(s, {K::Scratch, 0, 0, 1, 24}); },
       {"tensor_maps[0]: 1 rows x 24 columns, expected rows >= 1 and columns "
        "a positive multiple of 16"}},
      {"TensorMapBoxRows",
       [](ArtifactSpec &s) { addTensorMapLaunch(s, {K::Scratch, 0, 0, 1, 16, 32}); },
       {"tensor_maps[0]: box_rows 32, expected 64 or 128 (0 for 128)"}},
      {"TensorMapOfAState",
       [](ArtifactSpec &s) { addTensorMapLaunch(s, {K::State, 0, 0, 1, 16}); },
       {"tensor_maps[0]: source State, expected Weight or Scratch"}},
  };
}

TEST(ArtifactReaderTest, ReadsTensorMaps) {
  ArtifactSpec spec = toy::toyArtifactSpec();
  addTensorMapLaunch(spec, {K::Weight, 5, 0, 16, 16});
  spec.programs[decodeIndex(spec)].tensorMaps.push_back({K::Scratch, 0, 64, 1, 16});
  auto artifact = readSpec(spec);
  ASSERT_TRUE(artifact.ok()) << artifact.status().message();
  const fb::Program *decode = (*artifact)->findProgram("decode");
  ASSERT_NE(decode, nullptr);
  ASSERT_NE(decode->tensor_maps(), nullptr);
  EXPECT_EQ(decode->tensor_maps()->size(), 2u);
}

INSTANTIATE_TEST_SUITE_P(Semantic, ArtifactValidationTest,
                         ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case> &info) {
                           return std::string(info.param.title);
                         });

TEST(ArtifactReaderTest, ReadsOneRankOfSeveral) {
  ArtifactSpec spec = toy::toyArtifactSpec();
  makeRankOneOfTwo(spec);
  spec.kernels.push_back(allReduceKernel());
  auto artifact = readSpec(spec);
  ASSERT_TRUE(artifact.ok()) << artifact.status().message();
  const fb::Artifact &root = (*artifact)->root();
  EXPECT_EQ(root.rank(), 1u);
  EXPECT_EQ(root.ranks(), 2u);
  EXPECT_EQ(root.expert_tables()->Get(0)->first(), 1u);
  EXPECT_EQ(root.kernels()->Get(root.kernels()->size() - 1)->collective(),
            fb::Collective::AllReduceSum);
}

TEST(ArtifactReaderTest, StatesSizedForTheContext) {
  // A state that grows with the context is accepted at exactly the size
  // max_context needs; a ratio past the context keeps 1 byte.
  ArtifactSpec spec = toy::toyArtifactSpec();
  spec.states.push_back({"toy.entries", 128, fb::StateInit::Zero, 8, 0, 4});
  spec.states.push_back({"toy.far", 1, fb::StateInit::Zero, 8, 0, 128});
  auto artifact = readSpec(spec);
  ASSERT_TRUE(artifact.ok()) << artifact.status().toString();
  uint64_t bytes = 0, rows = 0;
  const fb::State &entries = *(*artifact)->root().states()->Get(2);
  ASSERT_TRUE(stateBytesFor(entries, 64, bytes));
  EXPECT_EQ(bytes, 128u);
  ASSERT_TRUE(stateRowsFor(entries, 10, rows));
  EXPECT_EQ(rows, 2u);
}

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
