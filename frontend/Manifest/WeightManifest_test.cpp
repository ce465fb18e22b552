//===- WeightManifest_test.cpp - Tests of the weight manifest -------------===//
// SPDX-License-Identifier: Apache-2.0
//
// Checks the manifest against the real golden checkpoints (every tensor's
// name, dtype, shape and byte size from the safetensors headers), against the
// Flash/Pro inventory of spec §2.2 (tensor count, dtype census, total bytes,
// sample shapes) and the logical parameter counts of spec §1.2.
//
//===----------------------------------------------------------------------===//

#include "frontend/Config/ModelConfig.h"
#include "frontend/Manifest/WeightManifest.h"

#include "llvm/ADT/StringMap.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"

#include "gtest/gtest.h"

#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <string>

using namespace llvm;
using namespace mlir::compressa;

namespace {

ModelConfig parseOrFail(const std::string &path) {
  Expected<ModelConfig> config = parseModelConfig(path);
  if (!config) {
    ADD_FAILURE() << toString(config.takeError());
    return ModelConfig();
  }
  return std::move(*config);
}

ModelConfig modelConfig(StringRef name) {
  return parseOrFail(
      (Twine(COMPRESSA_MODELS_DIR) + "/" + name + "/config.json").str());
}

std::string goldenPath(StringRef suffix) {
  return (Twine(COMPRESSA_GOLDEN_DIR) + "/" + suffix).str();
}

/// One tensor of a safetensors header.
struct HeaderTensor {
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t bytes = 0; ///< data_offsets[1] - data_offsets[0]
};

/// Reads the JSON header of a safetensors file (8-byte little-endian length,
/// then the JSON), without `__metadata__`. Records a test failure on error.
std::map<std::string, HeaderTensor> readHeader(const std::string &path) {
  std::map<std::string, HeaderTensor> tensors;
  ErrorOr<std::unique_ptr<MemoryBuffer>> buffer =
      MemoryBuffer::getFile(path, /*IsText=*/false,
                            /*RequiresNullTerminator=*/false);
  if (!buffer) {
    ADD_FAILURE() << path << ": " << buffer.getError().message();
    return tensors;
  }
  StringRef data = (*buffer)->getBuffer();
  if (data.size() < 8) {
    ADD_FAILURE() << path << ": too short";
    return tensors;
  }
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i)
    length = (length << 8) | static_cast<unsigned char>(data[i]);
  if (length > data.size() - 8) {
    ADD_FAILURE() << path << ": header length " << length << " too large";
    return tensors;
  }
  Expected<json::Value> header = json::parse(data.substr(8, length));
  if (!header) {
    ADD_FAILURE() << path << ": " << toString(header.takeError());
    return tensors;
  }
  const json::Object *root = header->getAsObject();
  if (!root) {
    ADD_FAILURE() << path << ": header is not an object";
    return tensors;
  }
  for (const auto &[key, value] : *root) {
    if (key == "__metadata__")
      continue;
    const json::Object *info = value.getAsObject();
    if (!info) {
      ADD_FAILURE() << path << ": " << key.str() << " is not an object";
      continue;
    }
    HeaderTensor tensor;
    if (std::optional<StringRef> dtype = info->getString("dtype"))
      tensor.dtype = dtype->str();
    if (const json::Array *shape = info->getArray("shape"))
      for (const json::Value &dim : *shape)
        tensor.shape.push_back(dim.getAsInteger().value_or(-1));
    if (const json::Array *offsets = info->getArray("data_offsets");
        offsets && offsets->size() == 2)
      tensor.bytes =
          *(*offsets)[1].getAsUINT64() - *(*offsets)[0].getAsUINT64();
    tensors[key.str()] = std::move(tensor);
  }
  return tensors;
}

std::string shapeString(const std::vector<int64_t> &shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

/// Compares the manifest (without optional entries unless `withOptional`)
/// with the golden checkpoint at `file`, entry by entry.
void expectManifestMatchesCheckpoint(const ModelConfig &config,
                                     const std::string &file,
                                     size_t expectedCount, bool withOptional) {
  std::map<std::string, HeaderTensor> golden = readHeader(file);
  ASSERT_EQ(golden.size(), expectedCount) << file;

  std::vector<TensorEntry> manifest = buildWeightManifest(config);
  std::set<std::string> seen;
  size_t compared = 0;
  for (const TensorEntry &entry : manifest) {
    EXPECT_TRUE(seen.insert(entry.name).second)
        << "duplicate entry " << entry.name;
    if (entry.optional && !withOptional)
      continue;
    auto it = golden.find(entry.name);
    if (it == golden.end()) {
      ADD_FAILURE() << entry.name << " is in the manifest but not in " << file;
      continue;
    }
    ++compared;
    EXPECT_EQ(entry.dtype, it->second.dtype) << entry.name;
    EXPECT_EQ(shapeString(entry.shape), shapeString(it->second.shape))
        << entry.name;
    EXPECT_EQ(tensorBytes(entry), it->second.bytes) << entry.name;
  }
  for (const auto &[name, tensor] : golden)
    EXPECT_TRUE(seen.count(name))
        << name << " of " << file << " is missing from the manifest";
  EXPECT_EQ(compared, expectedCount);
}

//===----------------------------------------------------------------------===//
// Golden checkpoints
//===----------------------------------------------------------------------===//

TEST(WeightManifestGoldenTest, TinyCQuantCheckpoint) {
  std::string config = goldenPath("tiny-c/config.json");
  std::string file = goldenPath("tiny-c/quant/model.safetensors");
  if (!sys::fs::exists(config) || !sys::fs::exists(file))
    FAIL() << "golden data missing: " << config << ", " << file;
  ModelConfig c = parseOrFail(config);
  // num_nextn_predict_layers 0: no optional entries at all.
  for (const TensorEntry &entry : buildWeightManifest(c))
    EXPECT_FALSE(entry.optional) << entry.name;
  expectManifestMatchesCheckpoint(c, file, 361, /*withOptional=*/true);
}

TEST(WeightManifestGoldenTest, TinyAFloatCheckpoint) {
  std::string config = goldenPath("tiny-a/config.json");
  std::string file = goldenPath("tiny-a/float/model.safetensors");
  if (!sys::fs::exists(config) || !sys::fs::exists(file))
    FAIL() << "golden data missing: " << config << ", " << file;
  ModelConfig c = parseOrFail(config);
  expectManifestMatchesCheckpoint(c, file, 304, /*withOptional=*/false);

  // The MTP block is listed (optional): a sliding block, no tid2eid.
  std::vector<TensorEntry> manifest = buildWeightManifest(c);
  size_t optional = 0;
  bool sawEProj = false;
  for (const TensorEntry &entry : manifest) {
    EXPECT_EQ(entry.optional, StringRef(entry.name).starts_with("mtp."))
        << entry.name;
    if (!entry.optional)
      continue;
    ++optional;
    sawEProj |= entry.name == "mtp.0.e_proj.weight";
    EXPECT_EQ(StringRef(entry.name).find("compressor"), StringRef::npos);
    EXPECT_EQ(StringRef(entry.name).find("tid2eid"), StringRef::npos);
  }
  EXPECT_TRUE(sawEProj);
  // Float MTP block of tiny-a (no scales): 2 norms + 6 mHC + attn_sink +
  // 7 attention tensors + gate weight/bias + 8 experts x 3 + 3 shared = 45,
  // plus e_proj, h_proj, enorm, hnorm, norm, hc_head_{fn,base,scale} = 8.
  EXPECT_EQ(optional, 53u);
}

// The same weights in the other format of each golden case: the format
// policy must not depend on the config style.
TEST(WeightManifestGoldenTest, TinyAQuantCheckpoint) {
  std::string config = goldenPath("tiny-a/config.json");
  std::string file = goldenPath("tiny-a/quant/model.safetensors");
  if (!sys::fs::exists(config) || !sys::fs::exists(file))
    FAIL() << "golden data missing: " << config << ", " << file;
  ModelConfig c = parseOrFail(config);
  c.quantized = true;
  c.floatFormat = WeightFormat::BF16;
  c.denseFormat = WeightFormat::FP8E4M3Block128;
  c.expertFormat = WeightFormat::FP4E2M1Block32;
  expectManifestMatchesCheckpoint(c, file, 498, /*withOptional=*/false);
}

TEST(WeightManifestGoldenTest, TinyCFloatCheckpoint) {
  std::string config = goldenPath("tiny-c/config.json");
  std::string file = goldenPath("tiny-c/float/model.safetensors");
  if (!sys::fs::exists(config) || !sys::fs::exists(file))
    FAIL() << "golden data missing: " << config << ", " << file;
  ModelConfig c = parseOrFail(config);
  c.quantized = false;
  c.floatFormat = WeightFormat::F32;
  c.denseFormat = WeightFormat::F32;
  c.expertFormat = WeightFormat::F32;
  expectManifestMatchesCheckpoint(c, file, 229, /*withOptional=*/true);
}

//===----------------------------------------------------------------------===//
// Flash and Pro (spec §1.2, §2.2)
//===----------------------------------------------------------------------===//

/// The manifest as a name -> entry map, failing on duplicates.
std::map<std::string, TensorEntry>
byName(const std::vector<TensorEntry> &manifest) {
  std::map<std::string, TensorEntry> map;
  for (const TensorEntry &entry : manifest)
    EXPECT_TRUE(map.emplace(entry.name, entry).second)
        << "duplicate " << entry.name;
  return map;
}

/// Expects `name` with `dtype` and `shape` (and, when `scaleShape` is given,
/// its `.scale` companion).
void expectTensor(const std::map<std::string, TensorEntry> &map,
                  const std::string &name, StringRef dtype,
                  std::vector<int64_t> shape,
                  std::vector<int64_t> scaleShape = {}) {
  auto it = map.find(name);
  ASSERT_NE(it, map.end()) << name;
  EXPECT_EQ(it->second.dtype, dtype.str()) << name;
  EXPECT_EQ(shapeString(it->second.shape), shapeString(shape)) << name;
  if (scaleShape.empty()) {
    EXPECT_TRUE(it->second.scaleName.empty()) << name;
    return;
  }
  std::string scale = name.substr(0, name.size() - strlen("weight")) + "scale";
  EXPECT_EQ(it->second.scaleName, scale);
  auto s = map.find(scale);
  ASSERT_NE(s, map.end()) << scale;
  EXPECT_EQ(s->second.dtype, "F8_E8M0") << scale;
  EXPECT_TRUE(s->second.isScale) << scale;
  EXPECT_EQ(shapeString(s->second.shape), shapeString(scaleShape)) << scale;
}

std::map<std::string, size_t> census(const std::vector<TensorEntry> &manifest) {
  std::map<std::string, size_t> counts;
  for (const TensorEntry &entry : manifest)
    ++counts[entry.dtype];
  return counts;
}

TEST(WeightManifestTest, FlashInventory) {
  ModelConfig c = modelConfig("deepseek-v4-flash");
  std::vector<TensorEntry> manifest = buildWeightManifest(c);
  EXPECT_EQ(manifest.size(), 69187u);
  EXPECT_EQ(manifestBytes(manifest), 159609485896ull);
  std::map<std::string, size_t> counts = census(manifest);
  EXPECT_EQ(counts["BF16"], 433u);
  EXPECT_EQ(counts["F32"], 417u);
  EXPECT_EQ(counts["F8_E4M3"], 375u);
  EXPECT_EQ(counts["F8_E8M0"], 34167u);
  EXPECT_EQ(counts["I8"], 33792u);
  EXPECT_EQ(counts["I64"], 3u);
  EXPECT_EQ(counts.size(), 6u);

  std::map<std::string, TensorEntry> map = byName(manifest);
  expectTensor(map, "embed.weight", "BF16", {129280, 4096});
  expectTensor(map, "head.weight", "BF16", {129280, 4096});
  expectTensor(map, "norm.weight", "BF16", {4096});
  expectTensor(map, "hc_head_fn", "F32", {4, 16384});
  expectTensor(map, "hc_head_base", "F32", {4});
  expectTensor(map, "hc_head_scale", "F32", {1});
  expectTensor(map, "layers.0.hc_attn_fn", "F32", {24, 16384});
  expectTensor(map, "layers.0.hc_ffn_base", "F32", {24});
  expectTensor(map, "layers.0.hc_ffn_scale", "F32", {3});
  expectTensor(map, "layers.0.attn.attn_sink", "F32", {64});
  expectTensor(map, "layers.0.attn.wq_a.weight", "F8_E4M3", {1024, 4096},
               {8, 32});
  expectTensor(map, "layers.0.attn.q_norm.weight", "BF16", {1024});
  expectTensor(map, "layers.0.attn.wq_b.weight", "F8_E4M3", {32768, 1024},
               {256, 8});
  expectTensor(map, "layers.0.attn.wkv.weight", "F8_E4M3", {512, 4096},
               {4, 32});
  expectTensor(map, "layers.0.attn.kv_norm.weight", "BF16", {512});
  expectTensor(map, "layers.0.attn.wo_a.weight", "F8_E4M3", {8192, 4096},
               {64, 32});
  expectTensor(map, "layers.0.attn.wo_b.weight", "F8_E4M3", {4096, 8192},
               {32, 64});
  EXPECT_EQ(map.count("layers.0.attn.compressor.wkv.weight"), 0u);
  EXPECT_EQ(map.count("layers.1.attn.compressor.ape"), 0u);
  // Layer 2: CSA.
  expectTensor(map, "layers.2.attn.compressor.wkv.weight", "BF16",
               {1024, 4096});
  expectTensor(map, "layers.2.attn.compressor.wgate.weight", "BF16",
               {1024, 4096});
  expectTensor(map, "layers.2.attn.compressor.ape", "F32", {4, 1024});
  expectTensor(map, "layers.2.attn.compressor.norm.weight", "BF16", {512});
  expectTensor(map, "layers.2.attn.indexer.wq_b.weight", "F8_E4M3",
               {8192, 1024}, {64, 8});
  expectTensor(map, "layers.2.attn.indexer.weights_proj.weight", "BF16",
               {64, 4096});
  expectTensor(map, "layers.2.attn.indexer.compressor.wkv.weight", "BF16",
               {256, 4096});
  expectTensor(map, "layers.2.attn.indexer.compressor.ape", "F32", {4, 256});
  expectTensor(map, "layers.2.attn.indexer.compressor.norm.weight", "BF16",
               {128});
  // Layer 3: HCA (no indexer).
  expectTensor(map, "layers.3.attn.compressor.wkv.weight", "BF16", {512, 4096});
  expectTensor(map, "layers.3.attn.compressor.ape", "F32", {128, 512});
  EXPECT_EQ(map.count("layers.3.attn.indexer.wq_b.weight"), 0u);
  // Routing: hash layers 0..2, biased score routing from layer 3 on.
  expectTensor(map, "layers.2.ffn.gate.tid2eid", "I64", {129280, 6});
  EXPECT_EQ(map.count("layers.2.ffn.gate.bias"), 0u);
  expectTensor(map, "layers.3.ffn.gate.bias", "F32", {256});
  EXPECT_EQ(map.count("layers.3.ffn.gate.tid2eid"), 0u);
  expectTensor(map, "layers.42.ffn.gate.weight", "BF16", {256, 4096});
  // Routed experts FP4, shared expert FP8.
  expectTensor(map, "layers.5.ffn.experts.255.w1.weight", "I8", {2048, 2048},
               {2048, 128});
  expectTensor(map, "layers.5.ffn.experts.0.w3.weight", "I8", {2048, 2048},
               {2048, 128});
  expectTensor(map, "layers.5.ffn.experts.0.w2.weight", "I8", {4096, 1024},
               {4096, 64});
  EXPECT_EQ(map.count("layers.5.ffn.experts.256.w1.weight"), 0u);
  const TensorEntry &fp4 = map["layers.5.ffn.experts.0.w2.weight"];
  EXPECT_EQ(shapeString(fp4.logicalShape), "[4096, 2048]");
  EXPECT_EQ(fp4.format, WeightFormat::FP4E2M1Block32);
  EXPECT_TRUE(fp4.routedExpert);
  expectTensor(map, "layers.5.ffn.shared_experts.w1.weight", "F8_E4M3",
               {2048, 4096}, {16, 32});
  expectTensor(map, "layers.5.ffn.shared_experts.w2.weight", "F8_E4M3",
               {4096, 2048}, {32, 16});
  EXPECT_FALSE(map["layers.5.ffn.shared_experts.w2.weight"].routedExpert);
  EXPECT_EQ(map.count("layers.43.attn_norm.weight"), 0u);
  // The MTP block: sliding, biased routing, its own projections and head.
  expectTensor(map, "mtp.0.attn.wq_a.weight", "F8_E4M3", {1024, 4096}, {8, 32});
  expectTensor(map, "mtp.0.ffn.gate.bias", "F32", {256});
  expectTensor(map, "mtp.0.ffn.experts.255.w2.weight", "I8", {4096, 1024},
               {4096, 64});
  expectTensor(map, "mtp.0.e_proj.weight", "F8_E4M3", {4096, 4096}, {32, 32});
  expectTensor(map, "mtp.0.h_proj.weight", "F8_E4M3", {4096, 4096}, {32, 32});
  expectTensor(map, "mtp.0.enorm.weight", "BF16", {4096});
  expectTensor(map, "mtp.0.hnorm.weight", "BF16", {4096});
  expectTensor(map, "mtp.0.norm.weight", "BF16", {4096});
  expectTensor(map, "mtp.0.hc_head_fn", "F32", {4, 16384});
  EXPECT_EQ(map.count("mtp.0.attn.compressor.wkv.weight"), 0u);
  EXPECT_EQ(map.count("mtp.0.ffn.gate.tid2eid"), 0u);
  EXPECT_TRUE(map["mtp.0.e_proj.scale"].optional);
  EXPECT_FALSE(map["layers.42.ffn_norm.weight"].optional);

  // The optional MTP block: 2 norms + 6 mHC + attn_sink + 5 FP8 attention
  // weights with scales + q_norm + kv_norm = 21; gate weight/bias + 256
  // experts x 3 x (weight, scale) + shared 3 x 2 = 1544; e_proj/h_proj with
  // scales, enorm, hnorm, norm, hc_head x 3 = 10.
  size_t mtpCount = 0;
  for (const TensorEntry &entry : manifest)
    mtpCount += entry.optional;
  EXPECT_EQ(mtpCount, 21u + 1544u + 10u);
}

TEST(WeightManifestTest, ProInventory) {
  ModelConfig c = modelConfig("deepseek-v4-pro");
  std::vector<TensorEntry> manifest = buildWeightManifest(c);
  EXPECT_EQ(manifestBytes(manifest), 864704792696ull);
  EXPECT_EQ(manifest.size(), 145116u);
  std::map<std::string, size_t> counts = census(manifest);
  EXPECT_EQ(counts["I8"], 62u * 384 * 3);
  EXPECT_EQ(counts["I64"], 3u);
  std::map<std::string, TensorEntry> map = byName(manifest);
  expectTensor(map, "embed.weight", "BF16", {129280, 7168});
  expectTensor(map, "hc_head_fn", "F32", {4, 28672});
  expectTensor(map, "layers.0.hc_attn_fn", "F32", {24, 28672});
  expectTensor(map, "layers.0.attn.attn_sink", "F32", {128});
  expectTensor(map, "layers.0.attn.wq_a.weight", "F8_E4M3", {1536, 7168},
               {12, 56});
  expectTensor(map, "layers.0.attn.wq_b.weight", "F8_E4M3", {65536, 1536},
               {512, 12});
  expectTensor(map, "layers.0.attn.wkv.weight", "F8_E4M3", {512, 7168},
               {4, 56});
  expectTensor(map, "layers.0.attn.wo_a.weight", "F8_E4M3", {16384, 4096},
               {128, 32});
  expectTensor(map, "layers.0.attn.wo_b.weight", "F8_E4M3", {7168, 16384},
               {56, 128});
  // Layers 0 and 1 are HCA in Pro.
  expectTensor(map, "layers.0.attn.compressor.wkv.weight", "BF16", {512, 7168});
  expectTensor(map, "layers.1.attn.compressor.ape", "F32", {128, 512});
  expectTensor(map, "layers.2.attn.compressor.wgate.weight", "BF16",
               {1024, 7168});
  expectTensor(map, "layers.2.attn.indexer.wq_b.weight", "F8_E4M3",
               {8192, 1536}, {64, 12});
  expectTensor(map, "layers.2.attn.indexer.weights_proj.weight", "BF16",
               {64, 7168});
  expectTensor(map, "layers.0.ffn.gate.weight", "BF16", {384, 7168});
  expectTensor(map, "layers.60.ffn.gate.bias", "F32", {384});
  expectTensor(map, "layers.7.ffn.experts.383.w1.weight", "I8", {3072, 3584},
               {3072, 224});
  expectTensor(map, "layers.7.ffn.experts.0.w2.weight", "I8", {7168, 1536},
               {7168, 96});
  expectTensor(map, "layers.7.ffn.shared_experts.w3.weight", "F8_E4M3",
               {3072, 7168}, {24, 56});
  expectTensor(map, "layers.7.ffn.shared_experts.w2.weight", "F8_E4M3",
               {7168, 3072}, {56, 24});
  expectTensor(map, "mtp.0.h_proj.weight", "F8_E4M3", {7168, 7168}, {56, 56});
}

//===----------------------------------------------------------------------===//
// Parameter counts (spec §1.2)
//===----------------------------------------------------------------------===//

/// `value` in units of 1e9, rounded to `digits` decimals.
double billions(uint64_t value, int digits) {
  double scale = std::pow(10.0, digits);
  return std::round(static_cast<double>(value) / 1e9 * scale) / scale;
}

TEST(ParamCountTest, Flash) {
  ParamCounts counts = countParams(modelConfig("deepseek-v4-flash"));
  EXPECT_EQ(counts.total, 290942289362ull);
  EXPECT_EQ(counts.mainStack, 284332240471ull);
  EXPECT_EQ(counts.activePerToken, 13799632471ull);
  EXPECT_EQ(counts.activePerTokenEmbedRow, 13270105687ull);
  // The rounded figures of spec §1.2.
  EXPECT_DOUBLE_EQ(billions(counts.total, 2), 290.94);
  EXPECT_DOUBLE_EQ(billions(counts.mainStack, 2), 284.33);
  EXPECT_DOUBLE_EQ(billions(counts.activePerToken, 2), 13.80);
  EXPECT_DOUBLE_EQ(billions(counts.activePerTokenEmbedRow, 2), 13.27);
}

TEST(ParamCountTest, Pro) {
  ParamCounts counts = countParams(modelConfig("deepseek-v4-pro"));
  EXPECT_EQ(counts.total, 1598837347742ull);
  EXPECT_EQ(counts.mainStack, 1572997201763ull);
  EXPECT_EQ(counts.activePerToken, 49779081059ull);
  EXPECT_EQ(counts.activePerTokenEmbedRow, 48852409187ull);
  EXPECT_DOUBLE_EQ(billions(counts.total, 2), 1598.84);
  EXPECT_DOUBLE_EQ(billions(counts.mainStack, 3), 1572.997);
  EXPECT_DOUBLE_EQ(billions(counts.activePerToken, 2), 49.78);
  EXPECT_DOUBLE_EQ(billions(counts.activePerTokenEmbedRow, 2), 48.85);
}

TEST(ParamCountTest, CountsDoNotDependOnStorageFormat) {
  // FP8/FP4 with scales and packed bytes vs plain BF16: same elements.
  ModelConfig c = modelConfig("deepseek-v4-flash");
  ParamCounts quantized = countParams(c);
  c.quantized = false;
  c.denseFormat = c.expertFormat = c.floatFormat = WeightFormat::BF16;
  ParamCounts plain = countParams(c);
  // The logical count does not depend on the storage format.
  EXPECT_EQ(plain.total, quantized.total);
  EXPECT_EQ(plain.activePerToken, quantized.activePerToken);
}

TEST(WeightManifestTest, TensorBytes) {
  TensorEntry entry;
  entry.dtype = "BF16";
  entry.shape = {3, 5};
  EXPECT_EQ(tensorBytes(entry), 30u);
  entry.dtype = "I64";
  EXPECT_EQ(tensorBytes(entry), 120u);
  entry.dtype = "F8_E8M0";
  EXPECT_EQ(tensorBytes(entry), 15u);
  entry.dtype = "F32";
  entry.shape = {};
  EXPECT_EQ(tensorBytes(entry), 4u); // a scalar
  entry.shape = {int64_t(1) << 40, int64_t(1) << 40};
  EXPECT_EQ(tensorBytes(entry), UINT64_MAX); // saturates
  EXPECT_EQ(dtypeBytes("F4"), 0u);
}

TEST(WeightManifestTest, DeterministicOrder) {
  ModelConfig c = modelConfig("deepseek-v4-flash");
  std::vector<TensorEntry> a = buildWeightManifest(c);
  std::vector<TensorEntry> b = buildWeightManifest(c);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_EQ(a[i].name, b[i].name) << i;
  EXPECT_EQ(a.front().name, "embed.weight");
  EXPECT_EQ(a[6].name, "layers.0.attn_norm.weight");
  EXPECT_EQ(a.back().name, "mtp.0.hc_head_scale");
  // A weight is immediately followed by its scale.
  for (size_t i = 0; i + 1 < a.size(); ++i) {
    if (!a[i].scaleName.empty()) {
      EXPECT_EQ(a[i + 1].name, a[i].scaleName) << a[i].name;
    }
  }
}

} // namespace

//===----------------------------------------------------------------------===//
// inferWeightFormats: the formats of a checkpoint, from its dtypes
//===----------------------------------------------------------------------===//

namespace {

/// The dtypes of a checkpoint: every tensor of `config`'s manifest in the
/// given formats, minus `drop`.
std::map<std::string, std::string>
checkpointDtypes(ModelConfig config, bool quantized, WeightFormat floatFormat,
                 WeightFormat denseFormat, WeightFormat expertFormat,
                 const std::string &drop = "") {
  config.quantized = quantized;
  config.floatFormat = floatFormat;
  config.denseFormat = denseFormat;
  config.expertFormat = expertFormat;
  std::map<std::string, std::string> dtypes;
  for (const TensorEntry &e : buildWeightManifest(config))
    if (e.name != drop)
      dtypes[e.name] = e.dtype;
  return dtypes;
}

Error infer(ModelConfig &config,
            const std::map<std::string, std::string> &dtypes) {
  return inferWeightFormats(
      config,
      [&](StringRef name) -> std::optional<std::string> {
        auto it = dtypes.find(name.str());
        if (it == dtypes.end())
          return std::nullopt;
        return it->second;
      },
      "/ckpt");
}

} // namespace

TEST(InferWeightFormatsTest, OfficialCheckpointUnderAFloatConfig) {
  ModelConfig c = modelConfig("tiny-a"); // transformers style, float32
  ASSERT_FALSE(c.quantized);
  auto dtypes = checkpointDtypes(c, true, WeightFormat::BF16,
                                 WeightFormat::FP8E4M3Block128,
                                 WeightFormat::FP4E2M1Block32);
  ASSERT_FALSE(infer(c, dtypes));
  EXPECT_TRUE(c.quantized);
  EXPECT_EQ(c.floatFormat, WeightFormat::BF16);
  EXPECT_EQ(c.denseFormat, WeightFormat::FP8E4M3Block128);
  EXPECT_EQ(c.expertFormat, WeightFormat::FP4E2M1Block32);
  // The specialised manifest is exactly the checkpoint's.
  for (const TensorEntry &e : buildWeightManifest(c))
    EXPECT_EQ(e.dtype, dtypes.at(e.name)) << e.name;
}

TEST(InferWeightFormatsTest, FloatAndMixedCheckpointsUnderAnOfficialConfig) {
  ModelConfig base = modelConfig("tiny-c"); // official style, FP8/FP4
  ASSERT_TRUE(base.quantized);
  ModelConfig c = base;
  ASSERT_FALSE(infer(c, checkpointDtypes(base, false, WeightFormat::F32,
                                         WeightFormat::F32, WeightFormat::F32)));
  EXPECT_FALSE(c.quantized);
  EXPECT_EQ(c.floatFormat, WeightFormat::F32);
  EXPECT_EQ(c.denseFormat, WeightFormat::F32);
  EXPECT_EQ(c.expertFormat, WeightFormat::F32);

  // FP8 dense with FP8 experts (expert_dtype "fp8"), bf16 floats.
  c = base;
  ASSERT_FALSE(infer(c, checkpointDtypes(base, true, WeightFormat::BF16,
                                         WeightFormat::FP8E4M3Block128,
                                         WeightFormat::FP8E4M3Block128)));
  EXPECT_TRUE(c.quantized);
  EXPECT_EQ(c.expertFormat, WeightFormat::FP8E4M3Block128);
}

TEST(InferWeightFormatsTest, MissingTensorOrUnknownDtypeIsAnError) {
  ModelConfig c = modelConfig("tiny-c");
  auto dtypes = checkpointDtypes(c, true, WeightFormat::BF16,
                                 WeightFormat::FP8E4M3Block128,
                                 WeightFormat::FP4E2M1Block32,
                                 "layers.0.ffn.experts.0.w1.weight");
  std::string message = toString(infer(c, dtypes));
  EXPECT_NE(message.find("/ckpt: no tensor 'layers.0.ffn.experts.0.w1.weight' "
                         "(a routed expert weight)"),
            std::string::npos)
      << message;

  dtypes = checkpointDtypes(c, true, WeightFormat::BF16,
                            WeightFormat::FP8E4M3Block128,
                            WeightFormat::FP4E2M1Block32);
  dtypes["embed.weight"] = "F16";
  message = toString(infer(c, dtypes));
  EXPECT_EQ(message, "/ckpt: tensor 'embed.weight' (a float tensor) has dtype "
                     "F16, expected one of BF16, F32");
  // A failed inference leaves the config as it was.
  EXPECT_TRUE(c.quantized);
  EXPECT_EQ(c.floatFormat, WeightFormat::BF16);
}
