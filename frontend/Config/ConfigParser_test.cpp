//===- ConfigParser_test.cpp - Tests of the config.json parser
//-------------===//
// SPDX-License-Identifier: Apache-2.0
//
// Parses the golden tiny configs (both styles), the shipped Flash and Pro
// configs, and every file of test/frontend/Inputs/bad-configs, whose error
// message must name the wrong key.
//
// How to add a bad config: put <what-is-wrong>.json into
// test/frontend/Inputs/bad-configs (a small edit of a golden tiny config) and
// add a row {file, key} to kBadConfigs below; the coverage test fails for a
// file without a row.
//
//===----------------------------------------------------------------------===//

#include "frontend/Config/ModelConfig.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include "gtest/gtest.h"

#include <cctype>
#include <iterator>
#include <ostream>
#include <set>
#include <string>

using namespace llvm;
using namespace mlir::compressa;

namespace {

std::string goldenConfig(StringRef name) {
  return (Twine(COMPRESSA_GOLDEN_DIR) + "/" + name + "/config.json").str();
}

std::string modelConfig(StringRef name) {
  return (Twine(COMPRESSA_MODELS_DIR) + "/" + name + "/config.json").str();
}

/// Parses `path`, failing the test with the error message on error.
ModelConfig parseOrFail(StringRef path) {
  Expected<ModelConfig> config = parseModelConfig(path);
  if (!config) {
    ADD_FAILURE() << "parsing " << path.str()
                  << " failed: " << toString(config.takeError());
    return ModelConfig();
  }
  return std::move(*config);
}

/// The error message of parsing `text`, or "" when it parses.
std::string errorOfText(StringRef text, StringRef path = "test.json") {
  Expected<ModelConfig> config = parseModelConfigText(text, path);
  if (config)
    return "";
  return toString(config.takeError());
}

/// The Flash config as a JSON object, to derive variants from.
json::Object flashObject() {
  ErrorOr<std::unique_ptr<MemoryBuffer>> buffer =
      MemoryBuffer::getFile(modelConfig("deepseek-v4-flash"));
  if (!buffer) {
    ADD_FAILURE() << "cannot read the Flash config";
    return json::Object();
  }
  Expected<json::Value> value = json::parse((*buffer)->getBuffer());
  if (!value) {
    ADD_FAILURE() << toString(value.takeError());
    return json::Object();
  }
  return std::move(*value->getAsObject());
}

std::string print(json::Object object) {
  std::string text;
  raw_string_ostream os(text);
  os << json::Value(std::move(object));
  return text;
}

/// The attention kinds of `layers` as a string: S = sliding, C = CSA,
/// H = HCA.
std::string kinds(const std::vector<LayerSpec> &layers) {
  std::string out;
  for (const LayerSpec &layer : layers)
    out += layer.attention == AttentionKind::Sliding ? 'S'
           : layer.attention == AttentionKind::CSA   ? 'C'
                                                     : 'H';
  return out;
}

std::vector<int64_t> ratios(const std::vector<LayerSpec> &layers) {
  std::vector<int64_t> out;
  for (const LayerSpec &layer : layers)
    out.push_back(layer.compressRatio);
  return out;
}

std::string routing(const std::vector<LayerSpec> &layers) {
  std::string out;
  for (const LayerSpec &layer : layers)
    out += layer.moe == MoeKind::Hash ? 'h' : 's';
  return out;
}

/// The compress rope every real and golden config uses (spec §1.3).
void expectCompressYarn(const ModelConfig &config) {
  EXPECT_TRUE(config.compressRope.yarn);
  EXPECT_DOUBLE_EQ(config.compressRope.theta, 160000.0);
  EXPECT_DOUBLE_EQ(config.compressRope.factor, 16.0);
  EXPECT_EQ(config.compressRope.originalMaxPositions, 65536);
  EXPECT_DOUBLE_EQ(config.compressRope.betaFast, 32.0);
  EXPECT_DOUBLE_EQ(config.compressRope.betaSlow, 1.0);
  EXPECT_FALSE(config.mainRope.yarn);
  EXPECT_DOUBLE_EQ(config.mainRope.theta, 10000.0);
}

//===----------------------------------------------------------------------===//
// Golden configs
//===----------------------------------------------------------------------===//

TEST(ConfigParserTest, GoldenTinyATransformersStyle) {
  std::string path = goldenConfig("tiny-a");
  if (!sys::fs::exists(path))
    FAIL() << "golden data missing: " << path;
  ModelConfig c = parseOrFail(path);
  EXPECT_FALSE(c.officialStyle);
  EXPECT_EQ(c.name, "tiny-a");
  EXPECT_EQ(c.sourcePath, path);
  EXPECT_EQ(c.vocabSize, 512);
  EXPECT_EQ(c.hiddenSize, 64);
  EXPECT_EQ(c.numLayers, 6);
  EXPECT_EQ(c.numHeads, 4);
  EXPECT_EQ(c.headDim, 32);
  EXPECT_EQ(c.ropeHeadDim, 8); // 32 * partial_rotary_factor 0.25
  EXPECT_EQ(c.qLoraRank, 24);
  EXPECT_EQ(c.oGroups, 2);
  EXPECT_EQ(c.oLoraRank, 16);
  EXPECT_EQ(c.slidingWindow, 16);
  EXPECT_EQ(c.indexNumHeads, 16);
  EXPECT_EQ(c.indexHeadDim, 16);
  EXPECT_EQ(c.indexTopk, 8);
  EXPECT_EQ(c.numRoutedExperts, 8);
  EXPECT_EQ(c.numSharedExperts, 1);
  EXPECT_EQ(c.numExpertsPerTok, 2);
  EXPECT_EQ(c.moeIntermediateSize, 32);
  EXPECT_DOUBLE_EQ(c.routedScalingFactor, 1.5);
  EXPECT_DOUBLE_EQ(c.swigluLimit, 10.0);
  EXPECT_EQ(c.hcMult, 4);
  EXPECT_EQ(c.hcSinkhornIters, 20);
  EXPECT_DOUBLE_EQ(c.hcEps, 1e-6);
  EXPECT_DOUBLE_EQ(c.rmsNormEps, 1e-6);
  EXPECT_EQ(c.maxPositionEmbeddings, 65536);
  EXPECT_EQ(c.bosTokenId, 0);
  EXPECT_EQ(c.eosTokenId, 1);

  EXPECT_EQ(kinds(c.layers), "SCHCHS");
  EXPECT_EQ(ratios(c.layers), (std::vector<int64_t>{0, 4, 16, 4, 16, 0}));
  EXPECT_EQ(routing(c.layers), "hhssss");
  EXPECT_EQ(c.numHashLayers(), 2);
  EXPECT_EQ(c.countAttention(AttentionKind::Sliding), 2);
  EXPECT_EQ(c.countAttention(AttentionKind::CSA), 2);
  EXPECT_EQ(c.countAttention(AttentionKind::HCA), 2);
  EXPECT_EQ(c.numMtpLayers, 1);
  EXPECT_EQ(kinds(c.mtpLayers), "S");
  EXPECT_EQ(routing(c.mtpLayers), "s");
  expectCompressYarn(c);

  // "dtype": "float32", no quantization_config.
  EXPECT_FALSE(c.quantized);
  EXPECT_EQ(c.floatFormat, WeightFormat::F32);
  EXPECT_EQ(c.denseFormat, WeightFormat::F32);
  EXPECT_EQ(c.expertFormat, WeightFormat::F32);
}

TEST(ConfigParserTest, GoldenTinyCOfficialStyle) {
  std::string path = goldenConfig("tiny-c");
  if (!sys::fs::exists(path))
    FAIL() << "golden data missing: " << path;
  ModelConfig c = parseOrFail(path);
  EXPECT_TRUE(c.officialStyle);
  EXPECT_EQ(c.name, "tiny-c");
  EXPECT_EQ(c.vocabSize, 768);
  EXPECT_EQ(c.hiddenSize, 128);
  EXPECT_EQ(c.numLayers, 5);
  EXPECT_EQ(c.headDim, 64);
  EXPECT_EQ(c.ropeHeadDim, 16);
  EXPECT_EQ(c.qLoraRank, 48);
  EXPECT_EQ(c.oLoraRank, 32);
  EXPECT_EQ(c.slidingWindow, 128);
  EXPECT_EQ(c.indexHeadDim, 32);
  EXPECT_EQ(c.indexTopk, 24);
  EXPECT_EQ(c.numRoutedExperts, 6);
  EXPECT_EQ(c.moeIntermediateSize, 64);
  EXPECT_EQ(c.maxPositionEmbeddings, 1048576);
  // compress_ratios carries L + 1 = 6 entries with num_nextn_predict_layers 0.
  EXPECT_EQ(kinds(c.layers), "SCHCH");
  EXPECT_EQ(ratios(c.layers), (std::vector<int64_t>{0, 4, 128, 4, 128}));
  EXPECT_EQ(routing(c.layers), "hhsss");
  EXPECT_EQ(c.numMtpLayers, 0);
  EXPECT_TRUE(c.mtpLayers.empty());
  expectCompressYarn(c);

  EXPECT_TRUE(c.quantized);
  EXPECT_EQ(c.floatFormat, WeightFormat::BF16);
  EXPECT_EQ(c.denseFormat, WeightFormat::FP8E4M3Block128);
  EXPECT_EQ(c.expertFormat, WeightFormat::FP4E2M1Block32);
}

//===----------------------------------------------------------------------===//
// The shipped model configs
//===----------------------------------------------------------------------===//

TEST(ConfigParserTest, Flash) {
  ModelConfig c = parseOrFail(modelConfig("deepseek-v4-flash"));
  EXPECT_TRUE(c.officialStyle);
  EXPECT_EQ(c.name, "deepseek-v4-flash");
  EXPECT_EQ(c.vocabSize, 129280);
  EXPECT_EQ(c.hiddenSize, 4096);
  EXPECT_EQ(c.numLayers, 43);
  EXPECT_EQ(c.numHeads, 64);
  EXPECT_EQ(c.headDim, 512);
  EXPECT_EQ(c.ropeHeadDim, 64);
  EXPECT_EQ(c.qLoraRank, 1024);
  EXPECT_EQ(c.oGroups, 8);
  EXPECT_EQ(c.oLoraRank, 1024);
  EXPECT_EQ(c.slidingWindow, 128);
  EXPECT_EQ(c.indexNumHeads, 64);
  EXPECT_EQ(c.indexHeadDim, 128);
  EXPECT_EQ(c.indexTopk, 512);
  EXPECT_EQ(c.numRoutedExperts, 256);
  EXPECT_EQ(c.numExpertsPerTok, 6);
  EXPECT_EQ(c.moeIntermediateSize, 2048);
  EXPECT_DOUBLE_EQ(c.routedScalingFactor, 1.5);
  EXPECT_EQ(c.maxPositionEmbeddings, 1048576);

  ASSERT_EQ(c.layers.size(), 43u);
  EXPECT_EQ(c.countAttention(AttentionKind::Sliding), 2);
  EXPECT_EQ(c.countAttention(AttentionKind::CSA), 21);
  EXPECT_EQ(c.countAttention(AttentionKind::HCA), 20);
  for (int i = 0; i < 43; ++i) {
    AttentionKind want = i < 2        ? AttentionKind::Sliding
                         : i % 2 == 0 ? AttentionKind::CSA
                                      : AttentionKind::HCA;
    EXPECT_EQ(c.layers[i].attention, want) << "layer " << i;
    EXPECT_EQ(c.layers[i].compressRatio, want == AttentionKind::Sliding ? 0
                                         : want == AttentionKind::CSA   ? 4
                                                                        : 128)
        << "layer " << i;
    EXPECT_EQ(c.layers[i].moe, i < 3 ? MoeKind::Hash : MoeKind::Score)
        << "layer " << i;
  }
  EXPECT_EQ(c.numHashLayers(), 3);
  EXPECT_EQ(c.numMtpLayers, 1);
  EXPECT_EQ(kinds(c.mtpLayers), "S");
  EXPECT_EQ(routing(c.mtpLayers), "s");
  expectCompressYarn(c);
  EXPECT_TRUE(c.quantized);
  EXPECT_EQ(c.denseFormat, WeightFormat::FP8E4M3Block128);
  EXPECT_EQ(c.expertFormat, WeightFormat::FP4E2M1Block32);
  EXPECT_EQ(c.floatFormat, WeightFormat::BF16);
}

// --layers A:B keeps layers A..B-1 with their kinds and names, drops MTP.
TEST(ConfigParserTest, SliceLayersOfFlash) {
  ModelConfig c = parseOrFail(modelConfig("deepseek-v4-flash"));
  ASSERT_FALSE(static_cast<bool>(sliceLayers(c, "2:6")));
  EXPECT_EQ(c.numLayers, 4);
  EXPECT_EQ(c.firstLayer, 2);
  EXPECT_EQ(kinds(c.layers), "CHCH");
  EXPECT_EQ(routing(c.layers), "hsss");
  EXPECT_EQ(c.numHashLayers(), 1);
  EXPECT_EQ(c.numMtpLayers, 0);
  EXPECT_TRUE(c.mtpLayers.empty());
  // A slice of a slice counts from the original stack.
  ASSERT_FALSE(static_cast<bool>(sliceLayers(c, "1:3")));
  EXPECT_EQ(c.firstLayer, 3);
  EXPECT_EQ(kinds(c.layers), "HC");
}

TEST(ConfigParserTest, SliceLayersRejectsBadRanges) {
  for (const char *spec : {"6:2", "3:3", "0:44", "-1:2", "2", "a:b", "2:6:7"}) {
    ModelConfig c = parseOrFail(modelConfig("deepseek-v4-flash"));
    Error err = sliceLayers(c, spec);
    ASSERT_TRUE(static_cast<bool>(err)) << spec;
    std::string message = toString(std::move(err));
    EXPECT_NE(message.find("config.json: --layers '" + std::string(spec) + "'"),
              std::string::npos)
        << message;
    EXPECT_EQ(c.numLayers, 43) << "a rejected slice changed the config";
  }
  ModelConfig c = parseOrFail(modelConfig("deepseek-v4-flash"));
  std::string message = toString(sliceLayers(c, "0:44"));
  EXPECT_NE(message.find("expected 0 <= A < B <= num_hidden_layers = 43, "
                         "found A = 0, B = 44"),
            std::string::npos)
      << message;
}

TEST(ConfigParserTest, Pro) {
  ModelConfig c = parseOrFail(modelConfig("deepseek-v4-pro"));
  EXPECT_EQ(c.name, "deepseek-v4-pro");
  EXPECT_EQ(c.hiddenSize, 7168);
  EXPECT_EQ(c.numLayers, 61);
  EXPECT_EQ(c.numHeads, 128);
  EXPECT_EQ(c.qLoraRank, 1536);
  EXPECT_EQ(c.oGroups, 16);
  EXPECT_EQ(c.indexTopk, 1024);
  EXPECT_EQ(c.numRoutedExperts, 384);
  EXPECT_EQ(c.moeIntermediateSize, 3072);
  EXPECT_DOUBLE_EQ(c.routedScalingFactor, 2.5);
  ASSERT_EQ(c.layers.size(), 61u);
  EXPECT_EQ(c.countAttention(AttentionKind::Sliding), 0);
  EXPECT_EQ(c.countAttention(AttentionKind::CSA), 30);
  EXPECT_EQ(c.countAttention(AttentionKind::HCA), 31);
  for (int i = 0; i < 61; ++i) {
    AttentionKind want =
        (i < 2 || i % 2 == 1) ? AttentionKind::HCA : AttentionKind::CSA;
    EXPECT_EQ(c.layers[i].attention, want) << "layer " << i;
  }
  EXPECT_EQ(c.numHashLayers(), 3);
  EXPECT_EQ(kinds(c.mtpLayers), "S");
  expectCompressYarn(c);
  EXPECT_EQ(c.expertFormat, WeightFormat::FP4E2M1Block32);
}

//===----------------------------------------------------------------------===//
// Variants that must parse
//===----------------------------------------------------------------------===//

TEST(ConfigParserTest, RatioListOfExactlyLayers) {
  json::Object o = flashObject();
  json::Array list = *o.getArray("compress_ratios");
  list.pop_back(); // drop the MTP entry: 43 = L entries
  o["compress_ratios"] = std::move(list);
  Expected<ModelConfig> c = parseModelConfigText(print(std::move(o)), "v.json");
  ASSERT_TRUE(bool(c)) << toString(c.takeError());
  EXPECT_EQ(c->countAttention(AttentionKind::CSA), 21);
  EXPECT_EQ(c->mtpLayers.size(), 1u);
}

TEST(ConfigParserTest, DefaultsWhenOptionalKeysAbsent) {
  json::Object o = flashObject();
  o.erase("num_nextn_predict_layers");
  o.erase("quantization_config");
  o.erase("expert_dtype");
  o.erase("torch_dtype");
  o.erase("bos_token_id");
  o.erase("eos_token_id");
  o.erase("rope_scaling");
  json::Array list = *o.getArray("compress_ratios");
  list.pop_back();
  o["compress_ratios"] = std::move(list);
  Expected<ModelConfig> c = parseModelConfigText(print(std::move(o)), "v.json");
  ASSERT_TRUE(bool(c)) << toString(c.takeError());
  EXPECT_EQ(c->numMtpLayers, 0);
  EXPECT_TRUE(c->mtpLayers.empty());
  EXPECT_FALSE(c->quantized);
  EXPECT_EQ(c->floatFormat, WeightFormat::BF16);
  EXPECT_EQ(c->denseFormat, WeightFormat::BF16);
  EXPECT_EQ(c->expertFormat, WeightFormat::BF16);
  EXPECT_EQ(c->bosTokenId, 0);
  EXPECT_EQ(c->eosTokenId, 1);
  EXPECT_FALSE(c->compressRope.yarn);
  EXPECT_DOUBLE_EQ(c->compressRope.theta, 160000.0);
}

TEST(ConfigParserTest, ExpertDtypeFp8AndEosList) {
  json::Object o = flashObject();
  o["expert_dtype"] = "fp8";
  o["eos_token_id"] = json::Array{7, 1};
  Expected<ModelConfig> c = parseModelConfigText(print(std::move(o)), "v.json");
  ASSERT_TRUE(bool(c)) << toString(c.takeError());
  EXPECT_EQ(c->expertFormat, WeightFormat::FP8E4M3Block128);
  EXPECT_EQ(c->eosTokenId, 7);
}

TEST(ConfigParserTest, RatioClassificationByValue) {
  // 4 -> CSA, any other positive value -> HCA with that ratio.
  json::Object o = flashObject();
  json::Array list = *o.getArray("compress_ratios");
  list[2] = 16;
  o["compress_ratios"] = std::move(list);
  Expected<ModelConfig> c = parseModelConfigText(print(std::move(o)), "v.json");
  ASSERT_TRUE(bool(c)) << toString(c.takeError());
  EXPECT_EQ(c->layers[2].attention, AttentionKind::HCA);
  EXPECT_EQ(c->layers[2].compressRatio, 16);
  EXPECT_EQ(c->layers[4].attention, AttentionKind::CSA);
}

TEST(ConfigParserTest, TransformersStyleWithoutRopeParameters) {
  // layer_types + num_hash_layers + qk_rope_head_dim + the official rope keys.
  json::Object o = flashObject();
  json::Array types;
  for (const json::Value &ratio : *o.getArray("compress_ratios")) {
    if (types.size() == 43)
      break;
    int64_t m = *ratio.getAsInteger();
    types.push_back(m == 0   ? "sliding_attention"
                    : m == 4 ? "compressed_sparse_attention"
                             : "heavily_compressed_attention");
  }
  o.erase("compress_ratios");
  o["layer_types"] = std::move(types);
  o["compress_rates"] = json::Object{{"compressed_sparse_attention", 4},
                                     {"heavily_compressed_attention", 128}};
  Expected<ModelConfig> c = parseModelConfigText(print(std::move(o)), "v.json");
  ASSERT_TRUE(bool(c)) << toString(c.takeError());
  EXPECT_FALSE(c->officialStyle);
  EXPECT_EQ(c->ropeHeadDim, 64);
  EXPECT_EQ(c->numHashLayers(), 3);
  EXPECT_EQ(c->countAttention(AttentionKind::HCA), 20);
  expectCompressYarn(*c);
}

TEST(ConfigParserTest, MissingFileNamesThePath) {
  Expected<ModelConfig> c = parseModelConfig("/nonexistent/dir/config.json");
  ASSERT_FALSE(bool(c));
  std::string message = toString(c.takeError());
  EXPECT_EQ(message.rfind("/nonexistent/dir/config.json: cannot read", 0), 0u)
      << message;
}

TEST(ConfigParserTest, NamesAreStable) {
  EXPECT_EQ(attentionKindName(AttentionKind::Sliding), "sliding_attention");
  EXPECT_EQ(attentionKindName(AttentionKind::CSA),
            "compressed_sparse_attention");
  EXPECT_EQ(attentionKindName(AttentionKind::HCA),
            "heavily_compressed_attention");
  EXPECT_EQ(moeKindName(MoeKind::Hash), "hash_moe");
  EXPECT_EQ(moeKindName(MoeKind::Score), "moe");
  EXPECT_EQ(weightFormatName(WeightFormat::FP4E2M1Block32), "fp4-e2m1-block32");
}

//===----------------------------------------------------------------------===//
// Bad configs
//===----------------------------------------------------------------------===//

struct BadConfig {
  const char *file;
  /// The key the message must name ("" for files that are not a JSON
  /// object; then `fragment` must appear instead).
  const char *key;
  /// A further fragment the message must contain.
  const char *fragment;
};

const BadConfig kBadConfigs[] = {
    {"bad-quant-block.json", "quantization_config.weight_block_size",
     "expected [128, 128]"},
    {"bad-quant-method.json", "quantization_config.quant_method", "\"awq\""},
    {"bad-quant-scale-fmt.json", "quantization_config.scale_fmt", "ue8m0"},
    {"compress-rope-attention-factor.json",
     "rope_parameters.compress.attention_factor", "0.5"},
    {"eos-outside-vocab.json", "eos_token_id", "outside the vocabulary"},
    {"expert-dtype-int4.json", "expert_dtype", "\"int4\""},
    {"experts-per-tok-gt-experts.json", "num_experts_per_tok",
     "more than n_routed_experts = 6"},
    {"fp4-expert-hidden-size.json", "hidden_size", "multiples of 32"},
    {"fp4-expert-width.json", "moe_intermediate_size", "multiples of 32"},
    {"hash-layers-gt-layers.json", "num_hash_layers",
     "is 7, more than num_hidden_layers = 5"},
    {"hash-layers-not-prefix.json", "mlp_layer_types[1]", "prefix"},
    {"hc-mult-zero.json", "hc_mult", "must be positive, found 0"},
    {"head-dim-lt-rope.json", "head_dim", "smaller than the rope dimension 16"},
    {"heads-not-divisible-by-groups.json", "num_attention_heads",
     "not divisible by o_groups = 3"},
    {"hidden-size-zero.json", "hidden_size", "must be positive, found 0"},
    {"index-head-dim-lt-rope.json", "index_head_dim",
     "smaller than the rope dimension 16"},
    {"kv-heads-not-one.json", "num_key_value_heads", "expected 1"},
    {"layer-types-length.json", "layer_types",
     "has 5 entries, expected num_hidden_layers = 6"},
    {"missing-key-compress-rates.json", "compress_rates", "is missing"},
    {"missing-key-compress-ratios.json", "compress_ratios", "is missing"},
    {"missing-key-hidden-size.json", "hidden_size", "is missing"},
    {"missing-key-num-hash-layers.json", "num_hash_layers", "is missing"},
    {"missing-key-rope-main.json", "rope_parameters.main", "is missing"},
    {"mtp-compress-ratio-not-sliding.json", "compress_ratios[5]",
     "sliding attention"},
    {"negative-compress-ratio.json", "compress_ratios[2]", "is -128"},
    {"not-json.json", "", "not valid JSON"},
    {"partial-rotary-factor-not-integer.json", "partial_rotary_factor",
     "not an integer"},
    {"qk-rope-head-dim-mismatch.json", "qk_rope_head_dim", "is 16"},
    {"ratio-list-length.json", "compress_ratios",
     "has 4 entries, expected num_hidden_layers = 5"},
    {"rope-dim-odd.json", "qk_rope_head_dim", "positive even"},
    {"rope-scaling-missing-factor.json", "rope_scaling.factor", "is missing"},
    {"rope-scaling-not-yarn.json", "rope_scaling.rope_type", "\"linear\""},
    {"scoring-func-softmax.json", "scoring_func", "\"sqrtsoftplus\""},
    {"shared-experts-two.json", "n_shared_experts", "only 1"},
    {"sliding-window-zero.json", "sliding_window", "must be positive, found 0"},
    {"too-many-layers.json", "num_hidden_layers", "supported maximum 256"},
    {"top-level-array.json", "", "expected a JSON object at the top level"},
    {"unknown-layer-type.json", "layer_types[2]", "\"linear_attention\""},
    {"unknown-mlp-layer-type.json", "mlp_layer_types[2]", "\"dense\""},
    {"unsupported-dtype-float16.json", "dtype", "\"float16\""},
    {"wrong-type-vocab-size.json", "vocab_size",
     "expected an integer, found a string"},
};

/// Prints a case by its file name (gtest's default would print pointers,
/// which makes the ctest names unstable).
void PrintTo(const BadConfig &bad, std::ostream *os) { *os << bad.file; }

class BadConfigTest : public ::testing::TestWithParam<BadConfig> {};

TEST_P(BadConfigTest, MessageNamesFileAndKey) {
  const BadConfig &bad = GetParam();
  std::string path = (Twine(COMPRESSA_BAD_CONFIGS_DIR) + "/" + bad.file).str();
  ASSERT_TRUE(sys::fs::exists(path)) << path;
  Expected<ModelConfig> config = parseModelConfig(path);
  ASSERT_FALSE(bool(config)) << bad.file << " parsed without error";
  std::string message = toString(config.takeError());
  std::string prefix = path + ": ";
  if (*bad.key)
    prefix += "'" + std::string(bad.key) + "' ";
  EXPECT_EQ(message.rfind(prefix, 0), 0u)
      << "message does not start with \"" << prefix << "\": " << message;
  EXPECT_NE(message.find(bad.fragment), std::string::npos)
      << "message lacks \"" << bad.fragment << "\": " << message;
}

std::string badConfigName(const ::testing::TestParamInfo<BadConfig> &info) {
  std::string name;
  for (const char *p = info.param.file; *p && *p != '.'; ++p)
    name += isalnum(static_cast<unsigned char>(*p)) ? *p : '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(BadConfigs, BadConfigTest,
                         ::testing::ValuesIn(kBadConfigs), badConfigName);

TEST(BadConfigCoverageTest, EveryFileHasACase) {
  std::set<std::string> listed;
  for (const BadConfig &bad : kBadConfigs)
    listed.insert(bad.file);
  std::error_code ec;
  int files = 0;
  for (sys::fs::directory_iterator it(COMPRESSA_BAD_CONFIGS_DIR, ec), end;
       it != end && !ec; it.increment(ec)) {
    std::string name = sys::path::filename(it->path()).str();
    if (!StringRef(name).ends_with(".json"))
      continue;
    ++files;
    EXPECT_TRUE(listed.count(name)) << name << " has no row in kBadConfigs";
  }
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(files, static_cast<int>(std::size(kBadConfigs)));
}

/// Replaces every top-level value (and every compress_ratios entry) of the
/// Flash config by values of other types and ranges: the parser must either
/// accept the file or return an error "<path>: '<key>' ..."; never crash.
TEST(ConfigParserTest, HostileValuesNeverCrash) {
  json::Object base = flashObject();
  std::vector<json::Value> replacements = {nullptr,
                                           "x",
                                           -1,
                                           0,
                                           1,
                                           3,
                                           1.5,
                                           1e30,
                                           int64_t(1) << 62,
                                           json::Array{},
                                           json::Array{1, "a"},
                                           json::Object{},
                                           true};
  std::vector<std::string> keys;
  for (const auto &[key, value] : base)
    keys.push_back(key.str());
  int rejected = 0;
  auto check = [&](json::Object object, const std::string &what) {
    Expected<ModelConfig> c =
        parseModelConfigText(print(std::move(object)), "h.json");
    if (c) {
      EXPECT_EQ(static_cast<int64_t>(c->layers.size()), c->numLayers) << what;
      EXPECT_EQ(static_cast<int64_t>(c->mtpLayers.size()), c->numMtpLayers)
          << what;
      return;
    }
    ++rejected;
    std::string message = toString(c.takeError());
    EXPECT_EQ(message.rfind("h.json: '", 0), 0u) << what << ": " << message;
  };
  for (const std::string &key : keys) {
    for (const json::Value &replacement : replacements) {
      json::Object object = base;
      object[key] = replacement;
      std::string text;
      raw_string_ostream os(text);
      os << key << " = " << replacement;
      check(std::move(object), text);
    }
  }
  for (size_t i = 0; i < 44; ++i) {
    for (const json::Value &replacement : replacements) {
      json::Object object = base;
      (*object.getArray("compress_ratios"))[i] = replacement;
      check(std::move(object), "compress_ratios[" + std::to_string(i) + "]");
    }
  }
  EXPECT_GT(rejected, 0);
}

TEST(ConfigParserTest, TextErrorsNameThePathGiven) {
  EXPECT_EQ(errorOfText("[1, 2]", "x/config.json"),
            "x/config.json: expected a JSON object at the top level, found an "
            "array");
  std::string message = errorOfText("{\"vocab_size\": 5", "x/config.json");
  EXPECT_EQ(message.rfind("x/config.json: not valid JSON: ", 0), 0u) << message;
}

/// Finding 3: a config nested 50,000 deep overflowed the stack in the
/// recursive json::parse. The depth is bounded before parsing, and the
/// message names the file, the limit and the line and column.
TEST(ConfigParserTest, DeepNestingIsAnErrorNotAStackOverflow) {
  std::string deep = "{\"vocab_size\":\n" + std::string(50000, '[') +
                     std::string(50000, ']') + "}";
  EXPECT_EQ(errorOfText(deep, "deep/config.json"),
            "deep/config.json: not valid JSON: line 2, column 64: arrays and "
            "objects nested 65 deep, expected at most 64 (the depth limit of "
            "a config.json)");
  // Unbalanced, as a truncated file would be.
  std::string open = std::string(50000, '{');
  EXPECT_NE(errorOfText(open, "o.json").find("o.json: not valid JSON: line 1, "
                                             "column 65: arrays and objects "
                                             "nested 65 deep"),
            std::string::npos);
}

TEST(ConfigParserTest, DepthLimitCountsOnlyBracketsOutsideStrings) {
  // 64 levels are accepted by the scan (the message comes from the config
  // checks, not from the depth limit).
  std::string atLimit = "{\"vocab_size\":" + std::string(63, '[') +
                        std::string(63, ']') + "}";
  std::string message = errorOfText(atLimit, "l.json");
  EXPECT_EQ(message.rfind("l.json: 'vocab_size' ", 0), 0u) << message;
  // Brackets inside strings, also after escaped quotes and backslashes, are
  // text: the Flash config with such a string still parses.
  json::Object object = flashObject();
  object["note"] = std::string(200, '[') + "\"\\\"" + std::string(200, '{');
  Expected<ModelConfig> config =
      parseModelConfigText(print(std::move(object)), "s.json");
  EXPECT_TRUE(static_cast<bool>(config))
      << (config ? "" : toString(config.takeError()));
}

} // namespace
