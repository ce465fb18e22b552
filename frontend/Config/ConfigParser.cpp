//===- ConfigParser.cpp - Read and validate a DeepSeek-V4 config.json
//------===//
// SPDX-License-Identifier: Apache-2.0
//
// Turns either style of DeepSeek-V4 config.json (spec §1.1) into a validated
// ModelConfig. Every problem with the file is an llvm::Error whose message is
// "<path>: '<key>' <what is wrong, expected vs found>"; nothing here asserts
// on input.
//
//===----------------------------------------------------------------------===//
//
// The rules, in the order they are applied:
//
// Step 1. Scalar keys (both styles). Required: vocab_size, hidden_size,
//   num_hidden_layers, num_attention_heads, head_dim, q_lora_rank, o_groups,
//   o_lora_rank, sliding_window, index_n_heads, index_head_dim, index_topk,
//   n_routed_experts, n_shared_experts, num_experts_per_tok,
//   moe_intermediate_size, routed_scaling_factor, swiglu_limit, hc_mult,
//   hc_sinkhorn_iters, hc_eps, rms_norm_eps, max_position_embeddings.
//   Optional: num_nextn_predict_layers (absent -> 0: a config that does not
//   declare an MTP block gets none; the official files always declare it),
//   bos_token_id (0), eos_token_id (1; a list uses its first entry).
//   Sizes must be positive and below sanity bounds (num_hidden_layers <= 256,
//   n_routed_experts <= 2048, num_nextn_predict_layers <= 8, others
//   <= 2^24) so that no shape computation can overflow and a hostile file
//   cannot make the manifest exhaust memory. A JSON null counts as absent.
//
// Step 2. Layer kinds, hash layers, rope.
//   Official style (`compress_ratios`): one integer per layer; its length is
//   num_hidden_layers, num_hidden_layers + 1 or num_hidden_layers +
//   num_nextn_predict_layers; entries past num_hidden_layers describe the MTP
//   layer and must be 0. Value 0 -> sliding, 4 -> CSA (overlapping
//   compressor), any other positive value -> HCA with that ratio, negative ->
//   error. `num_hash_layers` (required, 0..L) gives the hash-routed prefix.
//   Rope dim = `qk_rope_head_dim`; main rope = `rope_theta`; compress rope =
//   `compress_rope_theta` (required when a CSA/HCA layer exists, else it
//   defaults to rope_theta) with YaRN from `rope_scaling` when present
//   (rope_scaling's own rope_theta is ignored, as in the demo).
//   Transformers style (`layer_types`): one string per main-stack layer
//   ("sliding_attention", "compressed_sparse_attention",
//   "heavily_compressed_attention"), ratios from `compress_rates`; routing
//   from `mlp_layer_types` ("hash_moe"/"moe", hash layers must be a prefix;
//   `num_hash_layers` is the fallback and must agree when both are present);
//   rope dim = head_dim * `partial_rotary_factor` (top level, else
//   rope_parameters.main's; else `qk_rope_head_dim`), which must be an
//   integer; `qk_rope_head_dim`, when also present, must agree. Rope
//   frequencies from `rope_parameters` {"main": {default}, "compress":
//   {yarn}}; without rope_parameters the official keys are used.
//   A YaRN block needs `factor` and `original_max_position_embeddings`;
//   beta_fast/beta_slow default to 32/1; an `attention_factor` other than 1
//   is unsupported (V4 uses none, spec §1.3).
//
// Step 3. Weight formats. `dtype` (else `torch_dtype`): "bfloat16" -> BF16,
//   "float32" -> F32, absent -> BF16; it sets floatFormat. With
//   `quantization_config` (quant_method "fp8", fmt "e4m3" if given,
//   weight_block_size [128, 128], scale_fmt "ue8m0", activation_scheme
//   "dynamic" if given; anything else is unsupported) the dense format is
//   FP8E4M3Block128, else it is floatFormat. `expert_dtype` "fp4" ->
//   FP4E2M1Block32, "fp8" -> FP8E4M3Block128, absent -> the dense format.
//
// Step 4. Cross-key checks: num_key_value_heads == 1; scoring_func
//   "sqrtsoftplus"; norm_topk_prob true; hidden_act "silu";
//   tie_word_embeddings, attention_bias and mlp_bias false (when present);
//   n_shared_experts == 1; rope dim positive and even; head_dim and
//   index_head_dim >= rope dim; num_attention_heads divisible by o_groups;
//   num_experts_per_tok <= n_routed_experts; FP4 experts need hidden_size and
//   moe_intermediate_size multiples of 32; token ids inside the vocabulary.
//
// Step 5. MTP layers: num_nextn_predict_layers entries, sliding, score MoE.
//
//===----------------------------------------------------------------------===//

#include "frontend/Config/ModelConfig.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>
#include <optional>

using namespace llvm;

namespace mlir::compressa {

//===----------------------------------------------------------------------===//
// Names
//===----------------------------------------------------------------------===//

StringRef attentionKindName(AttentionKind kind) {
  switch (kind) {
  case AttentionKind::Sliding:
    return "sliding_attention";
  case AttentionKind::CSA:
    return "compressed_sparse_attention";
  case AttentionKind::HCA:
    return "heavily_compressed_attention";
  }
  return "unknown_attention";
}

StringRef moeKindName(MoeKind kind) {
  switch (kind) {
  case MoeKind::Hash:
    return "hash_moe";
  case MoeKind::Score:
    return "moe";
  }
  return "unknown_moe";
}

StringRef weightFormatName(WeightFormat format) {
  switch (format) {
  case WeightFormat::BF16:
    return "bf16";
  case WeightFormat::F32:
    return "f32";
  case WeightFormat::I64:
    return "i64";
  case WeightFormat::FP8E4M3Block128:
    return "fp8-e4m3-block128";
  case WeightFormat::FP4E2M1Block32:
    return "fp4-e2m1-block32";
  }
  return "unknown";
}

int64_t ModelConfig::numHashLayers() const {
  return llvm::count_if(layers, [](const LayerSpec &layer) {
    return layer.moe == MoeKind::Hash;
  });
}

int64_t ModelConfig::countAttention(AttentionKind kind) const {
  return llvm::count_if(
      layers, [&](const LayerSpec &layer) { return layer.attention == kind; });
}

namespace {

//===----------------------------------------------------------------------===//
// Value helpers
//===----------------------------------------------------------------------===//

/// Sanity bounds (see the file comment, Step 1).
constexpr int64_t kMaxSize = int64_t(1) << 24;
constexpr int64_t kMaxLayers = 256;
constexpr int64_t kMaxExperts = 2048;
constexpr int64_t kMaxMtpLayers = 8;
constexpr int64_t kMaxCompressRatio = 65536;

/// Deepest nesting of arrays and objects accepted in a config.json. The
/// official configs nest 3 deep (rope_parameters.compress.factor);
/// llvm::json::parse recurses once per level, so without a bound a hostile
/// file nested 50,000 deep overflows the stack.
constexpr int64_t kMaxJsonDepth = 64;

/// Checks, without recursion, that `text` nests arrays and objects at most
/// kMaxJsonDepth deep; strings (with their escapes) are skipped, so brackets
/// inside them do not count. Anything else is left to json::parse, which
/// runs only when this passes.
Error checkJsonDepth(StringRef text, StringRef path) {
  int64_t depth = 0;
  int64_t line = 1;
  size_t lineStart = 0;
  bool inString = false;
  for (size_t i = 0, e = text.size(); i < e; ++i) {
    char c = text[i];
    if (c == '\n') {
      ++line;
      lineStart = i + 1;
    }
    if (inString) {
      if (c == '\\')
        ++i; // the escaped character cannot end the string
      else if (c == '"')
        inString = false;
      continue;
    }
    switch (c) {
    case '"':
      inString = true;
      break;
    case '[':
    case '{':
      if (++depth > kMaxJsonDepth)
        return createStringError(
            inconvertibleErrorCode(),
            Twine(path) + ": not valid JSON: line " + Twine(line) +
                ", column " + Twine(i - lineStart + 1) +
                ": arrays and objects nested " + Twine(depth) +
                " deep, expected at most " + Twine(kMaxJsonDepth) +
                " (the depth limit of a config.json)");
      break;
    case ']':
    case '}':
      // An unbalanced closer is json::parse's to report.
      if (depth > 0)
        --depth;
      break;
    default:
      break;
    }
  }
  return Error::success();
}

/// "a string", "an array", ... for messages about a value of the wrong type.
std::string describeKind(const json::Value &value) {
  switch (value.kind()) {
  case json::Value::Null:
    return "null";
  case json::Value::Boolean:
    return "a boolean";
  case json::Value::Number:
    return "a number";
  case json::Value::String:
    return "a string";
  case json::Value::Array:
    return "an array";
  case json::Value::Object:
    return "an object";
  }
  return "an unknown value";
}

/// Prints a double the short way (1e-06, 0.25, 160000).
std::string formatNumber(double value) {
  std::string text;
  raw_string_ostream os(text);
  os << format("%.10g", value);
  return text;
}

/// Prints a JSON value compactly for "found ..." parts of messages.
std::string printValue(const json::Value &value) {
  std::string text;
  raw_string_ostream os(text);
  os << value;
  if (text.size() > 60)
    text = text.substr(0, 57) + "...";
  return text;
}

/// The "found ..." part of a wrong-type message: the kind, with the value for
/// scalars ("a string (\"768\")", "a boolean (true)", "null").
std::string describeFound(const json::Value &value) {
  switch (value.kind()) {
  case json::Value::Boolean:
  case json::Value::String:
    return describeKind(value) + " (" + printValue(value) + ")";
  case json::Value::Number:
    return printValue(value);
  case json::Value::Null:
  case json::Value::Array:
  case json::Value::Object:
    break;
  }
  return describeKind(value);
}

/// True when `key` is present in `obj` with a value other than null.
bool has(const json::Object &obj, StringRef key) {
  const json::Value *value = obj.get(key);
  return value && value->kind() != json::Value::Null;
}

/// The key of a config entry as messages name it: "rope_scaling.factor",
/// "compress_ratios[3]".
std::string qualify(StringRef prefix, StringRef key) {
  return prefix.empty() ? key.str() : (prefix + "." + key).str();
}

//===----------------------------------------------------------------------===//
// ConfigParser
//===----------------------------------------------------------------------===//

/// Reads one config object. Getters record the first error and return
/// std::nullopt (or a neutral value); a step checks `failed()` before
/// computing anything from what it read, so a message is always about the
/// file, never about a default.
class ConfigParser {
public:
  ConfigParser(StringRef path, const json::Object &root)
      : path(path.str()), root(root) {}

  Expected<ModelConfig> parse();

private:
  //===--- Error recording ------------------------------------------------===//

  /// Records "<path>: '<key>' <message>" unless an error is already recorded.
  void fail(const Twine &key, const Twine &message) {
    if (!error)
      error = (Twine(path) + ": '" + key + "' " + message).str();
  }
  bool failed() const { return error.has_value(); }
  Error takeError() {
    return createStringError(inconvertibleErrorCode(), *error);
  }

  //===--- Typed getters --------------------------------------------------===//

  /// The value of `key` in `obj`, or nullptr when absent or null (then a
  /// "'key' is missing" error if `required`).
  const json::Value *find(const json::Object &obj, StringRef prefix,
                          StringRef key, bool required) {
    const json::Value *value = obj.get(key);
    if (value && value->kind() == json::Value::Null)
      value = nullptr;
    if (!value && required)
      fail(qualify(prefix, key), "is missing");
    return value;
  }

  /// An integer-valued entry (an integral JSON number).
  std::optional<int64_t> asInteger(const json::Value &value, const Twine &key) {
    if (std::optional<int64_t> result = value.getAsInteger())
      return result;
    fail(key, "has the wrong type: expected an integer, found " +
                  describeFound(value));
    return std::nullopt;
  }

  std::optional<int64_t> getInteger(const json::Object &obj, StringRef prefix,
                                    StringRef key, bool required) {
    const json::Value *value = find(obj, prefix, key, required);
    if (!value)
      return std::nullopt;
    return asInteger(*value, qualify(prefix, key));
  }

  std::optional<double> getNumber(const json::Object &obj, StringRef prefix,
                                  StringRef key, bool required) {
    const json::Value *value = find(obj, prefix, key, required);
    if (!value)
      return std::nullopt;
    if (std::optional<double> result = value->getAsNumber())
      return result;
    fail(qualify(prefix, key), "has the wrong type: expected a number, found " +
                                   describeFound(*value));
    return std::nullopt;
  }

  std::optional<StringRef> getString(const json::Object &obj, StringRef prefix,
                                     StringRef key, bool required) {
    const json::Value *value = find(obj, prefix, key, required);
    if (!value)
      return std::nullopt;
    if (std::optional<StringRef> result = value->getAsString())
      return result;
    fail(qualify(prefix, key), "has the wrong type: expected a string, found " +
                                   describeFound(*value));
    return std::nullopt;
  }

  std::optional<bool> getBool(const json::Object &obj, StringRef prefix,
                              StringRef key, bool required) {
    const json::Value *value = find(obj, prefix, key, required);
    if (!value)
      return std::nullopt;
    if (std::optional<bool> result = value->getAsBoolean())
      return result;
    fail(qualify(prefix, key),
         "has the wrong type: expected a boolean, found " +
             describeFound(*value));
    return std::nullopt;
  }

  const json::Array *getArray(const json::Object &obj, StringRef prefix,
                              StringRef key, bool required) {
    const json::Value *value = find(obj, prefix, key, required);
    if (!value)
      return nullptr;
    if (const json::Array *result = value->getAsArray())
      return result;
    fail(qualify(prefix, key), "has the wrong type: expected an array, found " +
                                   describeFound(*value));
    return nullptr;
  }

  const json::Object *getObject(const json::Object &obj, StringRef prefix,
                                StringRef key, bool required) {
    const json::Value *value = find(obj, prefix, key, required);
    if (!value)
      return nullptr;
    if (const json::Object *result = value->getAsObject())
      return result;
    fail(qualify(prefix, key),
         "has the wrong type: expected an object, found " +
             describeFound(*value));
    return nullptr;
  }

  /// A required size: an integer in [1, maxValue].
  int64_t getSize(StringRef key, int64_t maxValue = kMaxSize) {
    std::optional<int64_t> value = getInteger(root, "", key, true);
    if (!value)
      return 0;
    checkRange(key, *value, 1, maxValue);
    return *value;
  }

  /// Records an error unless minValue <= value <= maxValue.
  void checkRange(const Twine &key, int64_t value, int64_t minValue,
                  int64_t maxValue) {
    if (value < minValue) {
      if (minValue == 1)
        fail(key, "must be positive, found " + Twine(value));
      else
        fail(key,
             "must be at least " + Twine(minValue) + ", found " + Twine(value));
    } else if (value > maxValue) {
      fail(key, "is " + Twine(value) + ", more than the supported maximum " +
                    Twine(maxValue));
    }
  }

  /// Records an error unless 0 <= num_hash_layers <= num_hidden_layers.
  void checkHashLayers(int64_t hashLayers) {
    if (hashLayers < 0)
      fail("num_hash_layers", "must be at least 0, found " + Twine(hashLayers));
    else if (hashLayers > config.numLayers)
      fail("num_hash_layers",
           "is " + Twine(hashLayers) +
               ", more than num_hidden_layers = " + Twine(config.numLayers));
  }

  /// A required number > 0.
  double getPositiveNumber(const json::Object &obj, StringRef prefix,
                           StringRef key) {
    std::optional<double> value = getNumber(obj, prefix, key, true);
    if (!value)
      return 0.0;
    if (!(*value > 0.0) || !std::isfinite(*value))
      fail(qualify(prefix, key),
           "must be a positive number, found " + formatNumber(*value));
    return *value;
  }

  /// Records an error unless the optional string `key` is absent or equal to
  /// `expected` (a setting of the architecture this compiler does not vary).
  void expectStringIfPresent(const json::Object &obj, StringRef prefix,
                             StringRef key, StringRef expected) {
    std::optional<StringRef> value = getString(obj, prefix, key, false);
    if (value && *value != expected)
      fail(qualify(prefix, key), "is \"" + *value +
                                     "\", unsupported (expected \"" + expected +
                                     "\")");
  }

  void expectBoolIfPresent(StringRef key, bool expected) {
    std::optional<bool> value = getBool(root, "", key, false);
    if (value && *value != expected)
      fail(key, Twine("is ") + (*value ? "true" : "false") +
                    ", unsupported (expected " + (expected ? "true" : "false") +
                    ")");
  }

  //===--- Steps ----------------------------------------------------------===//

  void readScalars();
  void readOfficialLayers();
  void readTransformersLayers();
  void readRopeDimTransformers();
  void readOfficialRope(bool needCompress);
  void readYarn(const json::Object &obj, StringRef prefix, RopeParams &rope);
  void readFormats();
  void validate();

  bool hasCompressedLayer() const {
    return llvm::any_of(config.layers, [](const LayerSpec &layer) {
      return layer.attention != AttentionKind::Sliding;
    });
  }

  std::string path;
  const json::Object &root;
  std::optional<std::string> error;
  ModelConfig config;
  /// The key the rope dimension came from, for messages.
  std::string ropeKey = "qk_rope_head_dim";
};

//===----------------------------------------------------------------------===//
// Step 1. Scalars
//===----------------------------------------------------------------------===//

void ConfigParser::readScalars() {
  ModelConfig &c = config;
  c.vocabSize = getSize("vocab_size");
  c.hiddenSize = getSize("hidden_size");
  c.numLayers = getSize("num_hidden_layers", kMaxLayers);
  c.numHeads = getSize("num_attention_heads");
  c.headDim = getSize("head_dim");
  c.qLoraRank = getSize("q_lora_rank");
  c.oGroups = getSize("o_groups");
  c.oLoraRank = getSize("o_lora_rank");
  c.slidingWindow = getSize("sliding_window");
  c.indexNumHeads = getSize("index_n_heads");
  c.indexHeadDim = getSize("index_head_dim");
  c.indexTopk = getSize("index_topk");
  c.numRoutedExperts = getSize("n_routed_experts", kMaxExperts);
  c.numSharedExperts = getSize("n_shared_experts");
  c.numExpertsPerTok = getSize("num_experts_per_tok", kMaxExperts);
  c.moeIntermediateSize = getSize("moe_intermediate_size");
  c.hcMult = getSize("hc_mult", 64);
  c.hcSinkhornIters = getSize("hc_sinkhorn_iters");
  c.maxPositionEmbeddings =
      getSize("max_position_embeddings", int64_t(1) << 40);
  c.routedScalingFactor = getPositiveNumber(root, "", "routed_scaling_factor");
  c.swigluLimit = getPositiveNumber(root, "", "swiglu_limit");
  c.hcEps = getPositiveNumber(root, "", "hc_eps");
  c.rmsNormEps = getPositiveNumber(root, "", "rms_norm_eps");

  if (std::optional<int64_t> mtp =
          getInteger(root, "", "num_nextn_predict_layers", false)) {
    checkRange("num_nextn_predict_layers", *mtp, 0, kMaxMtpLayers);
    c.numMtpLayers = *mtp;
  }
  if (std::optional<int64_t> bos = getInteger(root, "", "bos_token_id", false))
    c.bosTokenId = *bos;
  if (const json::Value *eos = find(root, "", "eos_token_id", false)) {
    if (const json::Array *list = eos->getAsArray()) {
      if (list->empty())
        fail("eos_token_id", "is an empty list, expected an integer");
      else if (std::optional<int64_t> id =
                   asInteger((*list)[0], "eos_token_id[0]"))
        c.eosTokenId = *id;
    } else if (std::optional<int64_t> id = asInteger(*eos, "eos_token_id")) {
      c.eosTokenId = *id;
    }
  }
}

//===----------------------------------------------------------------------===//
// Step 2. Layers and rope
//===----------------------------------------------------------------------===//

void ConfigParser::readOfficialLayers() {
  ModelConfig &c = config;
  const json::Array *ratios = getArray(root, "", "compress_ratios", true);
  std::optional<int64_t> hashLayers =
      getInteger(root, "", "num_hash_layers", true);
  if (failed())
    return;

  int64_t count = static_cast<int64_t>(ratios->size());
  int64_t numLayers = c.numLayers;
  if (count != numLayers && count != numLayers + 1 &&
      count != numLayers + c.numMtpLayers) {
    std::string expected =
        "num_hidden_layers = " + std::to_string(numLayers) +
        " or num_hidden_layers + 1 = " + std::to_string(numLayers + 1);
    if (c.numMtpLayers > 1)
      expected += " or num_hidden_layers + num_nextn_predict_layers = " +
                  std::to_string(numLayers + c.numMtpLayers);
    fail("compress_ratios",
         "has " + Twine(count) + " entries, expected " + expected);
    return;
  }
  for (int64_t i = 0; i < count; ++i) {
    std::string key = "compress_ratios[" + std::to_string(i) + "]";
    std::optional<int64_t> ratio = asInteger((*ratios)[i], key);
    if (!ratio)
      return;
    if (*ratio < 0) {
      fail(key, "is " + Twine(*ratio) +
                    ", expected 0 (sliding), 4 (CSA) or another positive "
                    "ratio (HCA)");
      return;
    }
    if (*ratio > kMaxCompressRatio) {
      fail(key, "is " + Twine(*ratio) + ", more than the supported maximum " +
                    Twine(kMaxCompressRatio));
      return;
    }
    if (i >= numLayers) {
      // Entries past the main stack describe the MTP layer(s).
      if (*ratio != 0) {
        fail(key, "is " + Twine(*ratio) +
                      ", expected 0: entries past num_hidden_layers = " +
                      Twine(numLayers) +
                      " describe the MTP layer, which uses sliding attention");
        return;
      }
      continue;
    }
    LayerSpec layer;
    layer.compressRatio = *ratio;
    layer.attention = *ratio == 0   ? AttentionKind::Sliding
                      : *ratio == 4 ? AttentionKind::CSA
                                    : AttentionKind::HCA;
    c.layers.push_back(layer);
  }

  checkHashLayers(*hashLayers);
  if (failed())
    return;
  for (int64_t i = 0; i < *hashLayers; ++i)
    c.layers[i].moe = MoeKind::Hash;

  std::optional<int64_t> rope = getInteger(root, "", "qk_rope_head_dim", true);
  if (rope)
    c.ropeHeadDim = *rope;
  readOfficialRope(hasCompressedLayer());
}

/// Reads `rope_theta`, `compress_rope_theta` and `rope_scaling` (official
/// keys; also the transformers-style fallback without rope_parameters).
void ConfigParser::readOfficialRope(bool needCompress) {
  ModelConfig &c = config;
  c.mainRope = RopeParams();
  c.mainRope.theta = getPositiveNumber(root, "", "rope_theta");
  c.compressRope = RopeParams();
  if (needCompress || has(root, "compress_rope_theta"))
    c.compressRope.theta = getPositiveNumber(root, "", "compress_rope_theta");
  else
    c.compressRope.theta = c.mainRope.theta;
  if (const json::Object *scaling =
          getObject(root, "", "rope_scaling", false)) {
    // HF writes both "type" and "rope_type"; either names the method.
    StringRef typeKey = has(*scaling, "rope_type") ? "rope_type" : "type";
    std::optional<StringRef> type =
        getString(*scaling, "rope_scaling", typeKey, true);
    if (failed())
      return;
    if (*type != "yarn") {
      fail(qualify("rope_scaling", typeKey),
           "is \"" + *type + "\", unsupported (expected \"yarn\")");
      return;
    }
    readYarn(*scaling, "rope_scaling", c.compressRope);
  }
}

/// Reads YaRN parameters from `obj` into `rope` (theta is set by the caller).
void ConfigParser::readYarn(const json::Object &obj, StringRef prefix,
                            RopeParams &rope) {
  rope.yarn = true;
  rope.factor = getPositiveNumber(obj, prefix, "factor");
  if (std::optional<int64_t> orig =
          getInteger(obj, prefix, "original_max_position_embeddings", true)) {
    checkRange(qualify(prefix, "original_max_position_embeddings"), *orig, 1,
               int64_t(1) << 40);
    rope.originalMaxPositions = *orig;
  }
  if (has(obj, "beta_fast"))
    rope.betaFast = getPositiveNumber(obj, prefix, "beta_fast");
  if (has(obj, "beta_slow"))
    rope.betaSlow = getPositiveNumber(obj, prefix, "beta_slow");
  if (std::optional<double> attention =
          getNumber(obj, prefix, "attention_factor", false)) {
    if (*attention != 1.0)
      fail(qualify(prefix, "attention_factor"),
           "is " + formatNumber(*attention) +
               ", unsupported (DeepSeek-V4 uses no YaRN attention factor; "
               "expected 1)");
  }
}

void ConfigParser::readTransformersLayers() {
  ModelConfig &c = config;
  const json::Array *types = getArray(root, "", "layer_types", true);
  if (failed())
    return;
  if (static_cast<int64_t>(types->size()) != c.numLayers) {
    fail("layer_types",
         "has " + Twine(types->size()) +
             " entries, expected num_hidden_layers = " + Twine(c.numLayers));
    return;
  }
  const json::Object *rates = nullptr;
  for (size_t i = 0; i < types->size(); ++i) {
    std::string key = "layer_types[" + std::to_string(i) + "]";
    std::optional<StringRef> type = (*types)[i].getAsString();
    if (!type) {
      fail(key, "has the wrong type: expected a string, found " +
                    describeFound((*types)[i]));
      return;
    }
    LayerSpec layer;
    if (*type == "sliding_attention") {
      layer.attention = AttentionKind::Sliding;
    } else if (*type == "compressed_sparse_attention") {
      layer.attention = AttentionKind::CSA;
    } else if (*type == "heavily_compressed_attention") {
      layer.attention = AttentionKind::HCA;
    } else {
      fail(key, "is \"" + *type +
                    "\", expected one of \"sliding_attention\", "
                    "\"compressed_sparse_attention\", "
                    "\"heavily_compressed_attention\"");
      return;
    }
    if (layer.attention != AttentionKind::Sliding) {
      if (!rates)
        rates = getObject(root, "", "compress_rates", true);
      if (failed())
        return;
      StringRef name = attentionKindName(layer.attention);
      std::optional<int64_t> rate =
          getInteger(*rates, "compress_rates", name, true);
      if (!rate)
        return;
      checkRange(qualify("compress_rates", name), *rate, 1, kMaxCompressRatio);
      layer.compressRatio = *rate;
    }
    c.layers.push_back(layer);
  }
  if (failed())
    return;

  // Routing: mlp_layer_types, else num_hash_layers.
  std::optional<int64_t> hashLayers =
      getInteger(root, "", "num_hash_layers", false);
  if (const json::Array *mlp = getArray(root, "", "mlp_layer_types", false)) {
    if (static_cast<int64_t>(mlp->size()) != c.numLayers) {
      fail("mlp_layer_types",
           "has " + Twine(mlp->size()) +
               " entries, expected num_hidden_layers = " + Twine(c.numLayers));
      return;
    }
    int64_t numHash = 0;
    for (size_t i = 0; i < mlp->size(); ++i) {
      std::string key = "mlp_layer_types[" + std::to_string(i) + "]";
      std::optional<StringRef> type = (*mlp)[i].getAsString();
      if (!type) {
        fail(key, "has the wrong type: expected a string, found " +
                      describeFound((*mlp)[i]));
        return;
      }
      if (*type == "hash_moe") {
        if (numHash != static_cast<int64_t>(i)) {
          fail(key, "is \"hash_moe\" after a \"moe\" layer: hash-routed "
                    "layers must be a prefix of the stack");
          return;
        }
        ++numHash;
        c.layers[i].moe = MoeKind::Hash;
      } else if (*type == "moe") {
        c.layers[i].moe = MoeKind::Score;
      } else {
        fail(key,
             "is \"" + *type + "\", expected one of \"hash_moe\", \"moe\"");
        return;
      }
    }
    if (hashLayers && *hashLayers != numHash) {
      fail("num_hash_layers", "is " + Twine(*hashLayers) +
                                  ", but mlp_layer_types has " +
                                  Twine(numHash) + " \"hash_moe\" layers");
      return;
    }
  } else if (failed()) {
    return;
  } else if (hashLayers) {
    checkHashLayers(*hashLayers);
    if (failed())
      return;
    for (int64_t i = 0; i < *hashLayers; ++i)
      c.layers[i].moe = MoeKind::Hash;
  } else {
    fail("mlp_layer_types", "is missing (neither 'mlp_layer_types' nor "
                            "'num_hash_layers' is given)");
    return;
  }

  readRopeDimTransformers();
  if (failed())
    return;

  // Rope frequencies.
  const json::Object *params = getObject(root, "", "rope_parameters", false);
  if (failed())
    return;
  if (!params) {
    readOfficialRope(hasCompressedLayer());
    return;
  }
  const json::Object *main =
      getObject(*params, "rope_parameters", "main", true);
  if (failed())
    return;
  c.mainRope = RopeParams();
  expectStringIfPresent(*main, "rope_parameters.main", "rope_type", "default");
  if (has(*main, "rope_theta"))
    c.mainRope.theta =
        getPositiveNumber(*main, "rope_parameters.main", "rope_theta");
  else if (has(root, "rope_theta"))
    c.mainRope.theta = getPositiveNumber(root, "", "rope_theta");
  else
    fail("rope_parameters.main.rope_theta", "is missing");

  c.compressRope = RopeParams();
  const json::Object *compress =
      getObject(*params, "rope_parameters", "compress", hasCompressedLayer());
  if (failed())
    return;
  if (!compress) {
    c.compressRope.theta = c.mainRope.theta;
    return;
  }
  StringRef prefix = "rope_parameters.compress";
  if (has(*compress, "rope_theta"))
    c.compressRope.theta = getPositiveNumber(*compress, prefix, "rope_theta");
  else if (has(root, "compress_rope_theta"))
    c.compressRope.theta = getPositiveNumber(root, "", "compress_rope_theta");
  else
    fail("rope_parameters.compress.rope_theta", "is missing");
  std::optional<StringRef> type =
      getString(*compress, prefix, "rope_type", false);
  if (failed())
    return;
  if (!type || *type == "default")
    return;
  if (*type != "yarn") {
    fail("rope_parameters.compress.rope_type",
         "is \"" + *type +
             "\", unsupported (expected \"yarn\" or \"default\")");
    return;
  }
  readYarn(*compress, prefix, c.compressRope);
}

/// rope dim = head_dim * partial_rotary_factor (transformers style).
void ConfigParser::readRopeDimTransformers() {
  ModelConfig &c = config;
  std::optional<double> factor;
  if (has(root, "partial_rotary_factor")) {
    ropeKey = "partial_rotary_factor";
    factor = getNumber(root, "", "partial_rotary_factor", true);
  } else if (const json::Object *params =
                 getObject(root, "", "rope_parameters", false)) {
    if (const json::Object *main =
            getObject(*params, "rope_parameters", "main", false)) {
      if (has(*main, "partial_rotary_factor")) {
        ropeKey = "rope_parameters.main.partial_rotary_factor";
        factor = getNumber(*main, "rope_parameters.main",
                           "partial_rotary_factor", true);
      }
    }
  }
  std::optional<int64_t> explicitDim =
      getInteger(root, "", "qk_rope_head_dim", false);
  if (failed())
    return;
  if (!factor) {
    if (!explicitDim) {
      fail("partial_rotary_factor", "is missing (neither "
                                    "'partial_rotary_factor' nor "
                                    "'qk_rope_head_dim' is given)");
      return;
    }
    ropeKey = "qk_rope_head_dim";
    c.ropeHeadDim = *explicitDim;
    return;
  }
  double dim = static_cast<double>(c.headDim) * *factor;
  if (!(*factor > 0.0) || !(*factor <= 1.0)) {
    fail(ropeKey,
         "is " + formatNumber(*factor) + ", expected a value in (0, 1]");
    return;
  }
  if (std::fabs(dim - std::round(dim)) > 1e-6) {
    fail(ropeKey, "is " + formatNumber(*factor) + ": head_dim " +
                      Twine(c.headDim) + " x " + formatNumber(*factor) + " = " +
                      formatNumber(dim) + " is not an integer");
    return;
  }
  c.ropeHeadDim = static_cast<int64_t>(std::llround(dim));
  if (explicitDim && *explicitDim != c.ropeHeadDim)
    fail("qk_rope_head_dim", "is " + Twine(*explicitDim) + ", but head_dim x " +
                                 ropeKey + " = " + Twine(c.ropeHeadDim));
}

//===----------------------------------------------------------------------===//
// Step 3. Formats
//===----------------------------------------------------------------------===//

void ConfigParser::readFormats() {
  ModelConfig &c = config;
  StringRef dtypeKey = has(root, "dtype") ? "dtype" : "torch_dtype";
  c.floatFormat = WeightFormat::BF16;
  if (std::optional<StringRef> dtype = getString(root, "", dtypeKey, false)) {
    if (*dtype == "bfloat16")
      c.floatFormat = WeightFormat::BF16;
    else if (*dtype == "float32")
      c.floatFormat = WeightFormat::F32;
    else
      fail(dtypeKey, "is \"" + *dtype +
                         "\", unsupported (expected \"bfloat16\" or "
                         "\"float32\")");
  }

  c.quantized = false;
  if (const json::Object *quant =
          getObject(root, "", "quantization_config", false)) {
    StringRef prefix = "quantization_config";
    std::optional<StringRef> method =
        getString(*quant, prefix, "quant_method", true);
    if (method && *method != "fp8")
      fail("quantization_config.quant_method",
           "is \"" + *method + "\", unsupported (expected \"fp8\")");
    expectStringIfPresent(*quant, prefix, "fmt", "e4m3");
    std::optional<StringRef> scaleFmt =
        getString(*quant, prefix, "scale_fmt", true);
    if (scaleFmt && *scaleFmt != "ue8m0")
      fail("quantization_config.scale_fmt",
           "is \"" + *scaleFmt + "\", unsupported (expected \"ue8m0\")");
    expectStringIfPresent(*quant, prefix, "activation_scheme", "dynamic");
    if (const json::Array *block =
            getArray(*quant, prefix, "weight_block_size", true)) {
      bool ok = block->size() == 2;
      for (const json::Value &dim : *block)
        ok = ok && dim.getAsInteger() == std::optional<int64_t>(128);
      if (!ok)
        fail("quantization_config.weight_block_size",
             "is " + printValue(json::Value(json::Array(*block))) +
                 ", unsupported (expected [128, 128])");
    }
    c.quantized = true;
  }
  c.denseFormat = c.quantized ? WeightFormat::FP8E4M3Block128 : c.floatFormat;

  c.expertFormat = c.denseFormat;
  if (std::optional<StringRef> expert =
          getString(root, "", "expert_dtype", false)) {
    if (*expert == "fp4")
      c.expertFormat = WeightFormat::FP4E2M1Block32;
    else if (*expert == "fp8")
      c.expertFormat = WeightFormat::FP8E4M3Block128;
    else
      fail("expert_dtype", "is \"" + *expert +
                               "\", unsupported (expected \"fp4\" or "
                               "\"fp8\")");
  }
}

//===----------------------------------------------------------------------===//
// Step 4. Cross-key validation
//===----------------------------------------------------------------------===//

void ConfigParser::validate() {
  ModelConfig &c = config;
  if (std::optional<int64_t> kvHeads =
          getInteger(root, "", "num_key_value_heads", false)) {
    if (*kvHeads != 1)
      fail("num_key_value_heads",
           "is " + Twine(*kvHeads) +
               ", unsupported (DeepSeek-V4 attention shares one KV head; "
               "expected 1)");
  }
  expectStringIfPresent(root, "", "scoring_func", "sqrtsoftplus");
  expectStringIfPresent(root, "", "hidden_act", "silu");
  expectBoolIfPresent("norm_topk_prob", true);
  expectBoolIfPresent("tie_word_embeddings", false);
  expectBoolIfPresent("attention_bias", false);
  expectBoolIfPresent("mlp_bias", false);
  if (failed())
    return;

  if (c.numSharedExperts != 1) {
    fail("n_shared_experts", "is " + Twine(c.numSharedExperts) +
                                 ", unsupported (only 1 shared expert)");
    return;
  }
  if (c.ropeHeadDim <= 0 || c.ropeHeadDim % 2 != 0) {
    fail(ropeKey, "gives a rope dimension of " + Twine(c.ropeHeadDim) +
                      ", expected a positive even number");
    return;
  }
  if (c.headDim < c.ropeHeadDim) {
    fail("head_dim", "is " + Twine(c.headDim) +
                         ", smaller than the rope dimension " +
                         Twine(c.ropeHeadDim) + " (from '" + ropeKey + "')");
    return;
  }
  if (c.indexHeadDim < c.ropeHeadDim) {
    fail("index_head_dim",
         "is " + Twine(c.indexHeadDim) + ", smaller than the rope dimension " +
             Twine(c.ropeHeadDim) + " (from '" + ropeKey + "')");
    return;
  }
  if (c.numHeads % c.oGroups != 0) {
    fail("num_attention_heads",
         "is " + Twine(c.numHeads) +
             ", not divisible by o_groups = " + Twine(c.oGroups));
    return;
  }
  if (c.numExpertsPerTok > c.numRoutedExperts) {
    fail("num_experts_per_tok",
         "is " + Twine(c.numExpertsPerTok) +
             ", more than n_routed_experts = " + Twine(c.numRoutedExperts));
    return;
  }
  if (c.expertFormat == WeightFormat::FP4E2M1Block32) {
    for (auto [key, value] :
         {std::pair<StringRef, int64_t>("hidden_size", c.hiddenSize),
          std::pair<StringRef, int64_t>("moe_intermediate_size",
                                        c.moeIntermediateSize)}) {
      if (value % 32 != 0) {
        fail(key, "is " + Twine(value) +
                      ", not a multiple of 32: FP4 routed experts "
                      "(expert_dtype \"fp4\") use 1x32 scale blocks along "
                      "the input dimension, which need multiples of 32");
        return;
      }
    }
  }
  if (c.bosTokenId < 0 || c.bosTokenId >= c.vocabSize) {
    fail("bos_token_id", "is " + Twine(c.bosTokenId) +
                             ", outside the vocabulary [0, " +
                             Twine(c.vocabSize) + ")");
    return;
  }
  if (c.eosTokenId < 0 || c.eosTokenId >= c.vocabSize) {
    fail("eos_token_id", "is " + Twine(c.eosTokenId) +
                             ", outside the vocabulary [0, " +
                             Twine(c.vocabSize) + ")");
    return;
  }
}

//===----------------------------------------------------------------------===//
// Driver
//===----------------------------------------------------------------------===//

Expected<ModelConfig> ConfigParser::parse() {
  ModelConfig &c = config;
  c.sourcePath = path;
  // The model's name: the directory of a config.json, else the file's stem.
  StringRef fileName = sys::path::filename(path);
  StringRef parent = sys::path::filename(sys::path::parent_path(path));
  if (fileName == "config.json" && !parent.empty() && parent != "." &&
      parent != "..")
    c.name = parent.str();
  else
    c.name = sys::path::stem(path).str();
  if (c.name.empty())
    c.name = path;

  // Step 1. Scalars.
  readScalars();
  if (failed())
    return takeError();

  // Step 2. Layer kinds, routing and rope, by style.
  // A null layer_types (as HF may write) counts as absent.
  c.officialStyle = !has(root, "layer_types");
  if (c.officialStyle && !has(root, "compress_ratios")) {
    fail("compress_ratios", "is missing (a config needs 'compress_ratios' "
                            "(official style) or 'layer_types' "
                            "(transformers style))");
    return takeError();
  }
  if (c.officialStyle)
    readOfficialLayers();
  else
    readTransformersLayers();
  if (failed())
    return takeError();

  // Step 3. Formats.
  readFormats();
  if (failed())
    return takeError();

  // Step 4. Cross-key checks.
  validate();
  if (failed())
    return takeError();

  // Step 5. MTP layers: sliding attention, score routing (spec §4.8).
  c.mtpLayers.assign(c.numMtpLayers, LayerSpec());
  return std::move(config);
}

} // namespace

//===----------------------------------------------------------------------===//
// Entry points
//===----------------------------------------------------------------------===//

Expected<ModelConfig> parseModelConfigText(StringRef text, StringRef path) {
  if (Error error = checkJsonDepth(text, path))
    return std::move(error);
  Expected<json::Value> parsed = json::parse(text);
  if (!parsed)
    return createStringError(
        inconvertibleErrorCode(),
        Twine(path) + ": not valid JSON: " + toString(parsed.takeError()));
  const json::Object *root = parsed->getAsObject();
  if (!root)
    return createStringError(inconvertibleErrorCode(),
                             Twine(path) +
                                 ": expected a JSON object at the top level, "
                                 "found " +
                                 describeKind(*parsed));
  ConfigParser parser(path, *root);
  return parser.parse();
}

Error sliceLayers(ModelConfig &config, StringRef spec) {
  auto error = [&](const Twine &why) {
    return createStringError(inconvertibleErrorCode(),
                             Twine(config.sourcePath) + ": --layers '" + spec +
                                 "': " + why);
  };
  auto [first, last] = spec.split(':');
  int64_t begin = 0, end = 0;
  if (!spec.contains(':') || first.getAsInteger(10, begin) ||
      last.getAsInteger(10, end))
    return error("expected A:B, two layer indices (layers A..B-1 are kept)");
  if (begin < 0 || begin >= end || end > config.numLayers)
    return error("expected 0 <= A < B <= num_hidden_layers = " +
                 Twine(config.numLayers) + ", found A = " + Twine(begin) +
                 ", B = " + Twine(end));
  std::vector<LayerSpec> kept(config.layers.begin() + begin,
                              config.layers.begin() + end);
  // Hash routing is a prefix of the stack, so of any contiguous slice; the
  // builder relies on it (checked rather than assumed).
  bool score = false;
  for (size_t i = 0; i < kept.size(); ++i) {
    if (kept[i].moe == MoeKind::Score)
      score = true;
    else if (score)
      return error("layer " + Twine(begin + int64_t(i)) +
                   " has hash routing after a layer with score routing; "
                   "hash layers must be a prefix of the kept layers");
  }
  config.layers = std::move(kept);
  config.firstLayer += begin;
  config.numLayers = end - begin;
  config.mtpLayers.clear();
  config.numMtpLayers = 0;
  return Error::success();
}

Expected<ModelConfig> parseModelConfig(StringRef path) {
  ErrorOr<std::unique_ptr<MemoryBuffer>> buffer =
      MemoryBuffer::getFile(path, /*IsText=*/true);
  if (!buffer)
    return createStringError(
        buffer.getError(),
        Twine(path) + ": cannot read: " + buffer.getError().message());
  return parseModelConfigText((*buffer)->getBuffer(), path);
}

} // namespace mlir::compressa
