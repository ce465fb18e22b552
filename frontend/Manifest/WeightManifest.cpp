//===- WeightManifest.cpp - The tensors a DeepSeek-V4 checkpoint holds ----===//
// SPDX-License-Identifier: Apache-2.0
//
// Builds the official tensor inventory of spec §2.2 from a ModelConfig and
// derives byte sizes and logical parameter counts from it.
//
//===----------------------------------------------------------------------===//

#include "frontend/Manifest/WeightManifest.h"

#include "llvm/ADT/StringSwitch.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/MathExtras.h"

#include <cassert>

using namespace llvm;

namespace mlir::compressa {

namespace {

/// ceil(a / b) for positive b; 0 when b <= 0 (never for a validated config).
int64_t ceilDiv(int64_t a, int64_t b) { return b > 0 ? (a + b - 1) / b : 0; }

/// Element count of a shape, saturating.
uint64_t numElements(ArrayRef<int64_t> shape) {
  uint64_t count = 1;
  for (int64_t dim : shape)
    count = SaturatingMultiply(count, dim > 0 ? static_cast<uint64_t>(dim)
                                              : uint64_t(0));
  return count;
}

/// The safetensors dtype of a plain (unscaled) format.
StringRef plainDtype(WeightFormat format) {
  switch (format) {
  case WeightFormat::F32:
    return "F32";
  case WeightFormat::I64:
    return "I64";
  case WeightFormat::BF16:
  case WeightFormat::FP8E4M3Block128:
  case WeightFormat::FP4E2M1Block32:
    break;
  }
  return "BF16";
}

/// Appends the entries of one checkpoint in order.
class ManifestBuilder {
public:
  explicit ManifestBuilder(const ModelConfig &config) : c(config) {}

  std::vector<TensorEntry> build();

private:
  /// A tensor without scale in `format` (BF16, F32 or I64).
  void plain(const Twine &name, std::vector<int64_t> shape,
             WeightFormat format) {
    TensorEntry entry;
    entry.name = name.str();
    entry.shape = shape;
    entry.logicalShape = std::move(shape);
    entry.dtype = plainDtype(format).str();
    entry.format = format;
    entry.optional = optional;
    entries.push_back(std::move(entry));
  }

  /// A never-quantized float tensor (embed, head, norms, projections of the
  /// compressors/indexer, router weight) in the config's float dtype.
  void floatTensor(const Twine &name, std::vector<int64_t> shape) {
    plain(name, std::move(shape), c.floatFormat);
  }

  /// A tensor the official checkpoint keeps in fp32.
  void f32Tensor(const Twine &name, std::vector<int64_t> shape) {
    plain(name, std::move(shape), WeightFormat::F32);
  }

  /// A linear weight `<base>.weight` [out, in] in `format`, followed by its
  /// `<base>.scale` when the format is block-scaled.
  void linear(const Twine &base, int64_t out, int64_t in, WeightFormat format) {
    std::string weightName = (base + ".weight").str();
    std::string scaleName = (base + ".scale").str();
    TensorEntry weight;
    weight.name = weightName;
    weight.logicalShape = {out, in};
    weight.format = format;
    weight.optional = optional;
    weight.routedExpert = inRoutedExpert;
    TensorEntry scale;
    scale.name = scaleName;
    scale.dtype = "F8_E8M0";
    scale.format = format;
    scale.optional = optional;
    scale.isScale = true;
    scale.routedExpert = inRoutedExpert;
    switch (format) {
    case WeightFormat::FP8E4M3Block128:
      weight.dtype = "F8_E4M3";
      weight.shape = {out, in};
      scale.shape = {ceilDiv(out, 128), ceilDiv(in, 128)};
      break;
    case WeightFormat::FP4E2M1Block32:
      weight.dtype = "I8";
      weight.shape = {out, ceilDiv(in, 2)};
      scale.shape = {out, ceilDiv(in, 32)};
      break;
    case WeightFormat::BF16:
    case WeightFormat::F32:
    case WeightFormat::I64:
      weight.dtype = plainDtype(format).str();
      weight.shape = {out, in};
      entries.push_back(std::move(weight));
      return;
    }
    weight.scaleName = scaleName;
    scale.logicalShape = scale.shape;
    entries.push_back(std::move(weight));
    entries.push_back(std::move(scale));
  }

  /// mHC parameters `<prefix>hc_<site>_{fn,base,scale}`.
  void hyperConnection(const std::string &prefix, StringRef site) {
    int64_t n = c.hcMult;
    std::string base = prefix + "hc_" + site.str();
    f32Tensor(base + "_fn", {(2 + n) * n, n * c.hiddenSize});
    f32Tensor(base + "_base", {(2 + n) * n});
    f32Tensor(base + "_scale", {3});
  }

  /// hc_head_{fn,base,scale} (top level or mtp.k.).
  void hyperConnectionHead(const std::string &prefix) {
    int64_t n = c.hcMult;
    f32Tensor(prefix + "hc_head_fn", {n, n * c.hiddenSize});
    f32Tensor(prefix + "hc_head_base", {n});
    f32Tensor(prefix + "hc_head_scale", {1});
  }

  /// One decoder block (`layers.i.` or `mtp.k.`).
  void block(const std::string &prefix, const LayerSpec &layer);

  const ModelConfig &c;
  std::vector<TensorEntry> entries;
  bool optional = false;
  bool inRoutedExpert = false;
};

void ManifestBuilder::block(const std::string &prefix, const LayerSpec &layer) {
  const int64_t dim = c.hiddenSize;
  const int64_t d = c.headDim;
  floatTensor(prefix + "attn_norm.weight", {dim});
  floatTensor(prefix + "ffn_norm.weight", {dim});
  hyperConnection(prefix, "attn");
  hyperConnection(prefix, "ffn");

  // Attention (spec §4.4).
  std::string attn = prefix + "attn.";
  int64_t groupIn = c.oGroups > 0 ? c.numHeads * d / c.oGroups : 0;
  f32Tensor(attn + "attn_sink", {c.numHeads});
  linear(attn + "wq_a", c.qLoraRank, dim, c.denseFormat);
  floatTensor(attn + "q_norm.weight", {c.qLoraRank});
  linear(attn + "wq_b", c.numHeads * d, c.qLoraRank, c.denseFormat);
  linear(attn + "wkv", d, dim, c.denseFormat);
  floatTensor(attn + "kv_norm.weight", {d});
  linear(attn + "wo_a", c.oGroups * c.oLoraRank, groupIn, c.denseFormat);
  linear(attn + "wo_b", dim, c.oGroups * c.oLoraRank, c.denseFormat);

  // Compressor (CSA: overlapping, two series -> 2d wide; HCA: d wide) and
  // the CSA lightning indexer with its own compressor (spec §4.5).
  if (layer.attention != AttentionKind::Sliding) {
    bool csa = layer.attention == AttentionKind::CSA;
    int64_t width = csa ? 2 * d : d;
    std::string comp = attn + "compressor.";
    floatTensor(comp + "wkv.weight", {width, dim});
    floatTensor(comp + "wgate.weight", {width, dim});
    f32Tensor(comp + "ape", {layer.compressRatio, width});
    floatTensor(comp + "norm.weight", {d});
    if (csa) {
      std::string index = attn + "indexer.";
      int64_t indexWidth = 2 * c.indexHeadDim;
      linear(index + "wq_b", c.indexNumHeads * c.indexHeadDim, c.qLoraRank,
             c.denseFormat);
      floatTensor(index + "weights_proj.weight", {c.indexNumHeads, dim});
      floatTensor(index + "compressor.wkv.weight", {indexWidth, dim});
      floatTensor(index + "compressor.wgate.weight", {indexWidth, dim});
      f32Tensor(index + "compressor.ape", {layer.compressRatio, indexWidth});
      floatTensor(index + "compressor.norm.weight", {c.indexHeadDim});
    }
  }

  // MoE (spec §4.6).
  std::string ffn = prefix + "ffn.";
  floatTensor(ffn + "gate.weight", {c.numRoutedExperts, dim});
  if (layer.moe == MoeKind::Hash)
    plain(ffn + "gate.tid2eid", {c.vocabSize, c.numExpertsPerTok},
          WeightFormat::I64);
  else
    f32Tensor(ffn + "gate.bias", {c.numRoutedExperts});
  inRoutedExpert = true;
  for (int64_t e = 0; e < c.numRoutedExperts; ++e) {
    std::string expert = ffn + "experts." + std::to_string(e) + ".";
    linear(expert + "w1", c.moeIntermediateSize, dim, c.expertFormat);
    linear(expert + "w2", dim, c.moeIntermediateSize, c.expertFormat);
    linear(expert + "w3", c.moeIntermediateSize, dim, c.expertFormat);
  }
  inRoutedExpert = false;
  // n_shared_experts is 1 (the parser rejects anything else).
  std::string shared = ffn + "shared_experts.";
  linear(shared + "w1", c.moeIntermediateSize, dim, c.denseFormat);
  linear(shared + "w2", dim, c.moeIntermediateSize, c.denseFormat);
  linear(shared + "w3", c.moeIntermediateSize, dim, c.denseFormat);
}

std::vector<TensorEntry> ManifestBuilder::build() {
  const int64_t dim = c.hiddenSize;
  // Step 1. Embedding, head, final norm, mHC head.
  floatTensor("embed.weight", {c.vocabSize, dim});
  floatTensor("head.weight", {c.vocabSize, dim});
  floatTensor("norm.weight", {dim});
  hyperConnectionHead("");

  // Step 2. The main stack.
  for (size_t i = 0; i < c.layers.size(); ++i)
    block("layers." + std::to_string(c.firstLayer + int64_t(i)) + ".",
          c.layers[i]);

  // Step 3. The MTP blocks: a sliding block plus the embedding/hidden
  // projections and their own norms and mHC head (spec §2.2, §4.8).
  optional = true;
  for (size_t k = 0; k < c.mtpLayers.size(); ++k) {
    std::string prefix = "mtp." + std::to_string(k) + ".";
    block(prefix, c.mtpLayers[k]);
    linear(prefix + "e_proj", dim, dim, c.denseFormat);
    linear(prefix + "h_proj", dim, dim, c.denseFormat);
    floatTensor(prefix + "enorm.weight", {dim});
    floatTensor(prefix + "hnorm.weight", {dim});
    floatTensor(prefix + "norm.weight", {dim});
    hyperConnectionHead(prefix);
  }
  optional = false;
  return std::move(entries);
}

} // namespace

std::vector<TensorEntry> buildWeightManifest(const ModelConfig &config) {
  return ManifestBuilder(config).build();
}

uint64_t dtypeBytes(StringRef dtype) {
  return StringSwitch<uint64_t>(dtype)
      .Cases({"F8_E4M3", "F8_E8M0", "I8", "U8"}, 1)
      .Cases({"BF16", "F16"}, 2)
      .Case("F32", 4)
      .Cases({"F64", "I64"}, 8)
      .Default(0);
}

uint64_t tensorBytes(const TensorEntry &entry) {
  return SaturatingMultiply(numElements(entry.shape), dtypeBytes(entry.dtype));
}

uint64_t manifestBytes(ArrayRef<TensorEntry> entries, bool includeOptional) {
  uint64_t total = 0;
  for (const TensorEntry &entry : entries)
    if (includeOptional || !entry.optional)
      total = SaturatingAdd(total, tensorBytes(entry));
  return total;
}

ParamCounts countParams(const ModelConfig &config) {
  uint64_t mtp = 0, main = 0, routedMain = 0;
  for (const TensorEntry &entry : buildWeightManifest(config)) {
    if (entry.isScale || entry.dtype == "I64")
      continue;
    uint64_t count = numElements(entry.logicalShape);
    if (entry.optional) {
      mtp = SaturatingAdd(mtp, count);
      continue;
    }
    main = SaturatingAdd(main, count);
    if (entry.routedExpert)
      routedMain = SaturatingAdd(routedMain, count);
  }
  ParamCounts counts;
  counts.total = SaturatingAdd(main, mtp);
  counts.mainStack = main;
  // Every layer holds E identical experts, so routedMain is a multiple of E.
  uint64_t experts = config.numRoutedExperts > 0
                         ? static_cast<uint64_t>(config.numRoutedExperts)
                         : 1;
  uint64_t activeRouted = SaturatingMultiply(
      routedMain / experts, static_cast<uint64_t>(config.numExpertsPerTok > 0
                                                      ? config.numExpertsPerTok
                                                      : 0));
  counts.activePerToken = SaturatingAdd(main - routedMain, activeRouted);
  uint64_t embedding = numElements({config.vocabSize, config.hiddenSize});
  uint64_t row = numElements({config.hiddenSize});
  counts.activePerTokenEmbedRow = counts.activePerToken >= embedding
                                      ? counts.activePerToken - embedding + row
                                      : counts.activePerToken;
  return counts;
}

llvm::Error inferWeightFormats(ModelConfig &config, CheckpointDtypeFn dtypeOf,
                               StringRef checkpoint) {
  // The official layout names one tensor of each class; which tensor is
  // which comes from the manifest, not from a list of names here.
  ModelConfig official = config;
  official.quantized = true;
  official.floatFormat = WeightFormat::BF16;
  official.denseFormat = WeightFormat::FP8E4M3Block128;
  official.expertFormat = WeightFormat::FP4E2M1Block32;
  const TensorEntry *floatRep = nullptr, *denseRep = nullptr,
                    *expertRep = nullptr;
  std::vector<TensorEntry> entries = buildWeightManifest(official);
  for (const TensorEntry &e : entries) {
    if (e.isScale || e.optional)
      continue;
    if (!floatRep && e.format == WeightFormat::BF16)
      floatRep = &e;
    else if (!denseRep && !e.routedExpert &&
             e.format == WeightFormat::FP8E4M3Block128)
      denseRep = &e;
    else if (!expertRep && e.routedExpert)
      expertRep = &e;
  }
  assert(floatRep && denseRep && expertRep && "every V4 manifest has all three");

  // The format of one representative, from the dtypes its class allows.
  auto decide = [&](const TensorEntry &rep, StringRef what,
                    ArrayRef<std::pair<StringRef, WeightFormat>> allowed)
      -> llvm::Expected<WeightFormat> {
    std::optional<std::string> dtype = dtypeOf(rep.name);
    if (!dtype)
      return llvm::createStringError(
          "%s: no tensor '%s' (%s), so the checkpoint's weight formats cannot "
          "be read; is it a checkpoint of config %s?",
          checkpoint.str().c_str(), rep.name.c_str(), what.str().c_str(),
          config.sourcePath.c_str());
    std::string expected;
    for (const auto &[name, format] : allowed) {
      if (*dtype == name)
        return format;
      expected += (expected.empty() ? "" : ", ") + name.str();
    }
    return llvm::createStringError(
        "%s: tensor '%s' (%s) has dtype %s, expected one of %s",
        checkpoint.str().c_str(), rep.name.c_str(), what.str().c_str(),
        dtype->c_str(), expected.c_str());
  };
  llvm::Expected<WeightFormat> floatFormat =
      decide(*floatRep, "a float tensor",
             {{"BF16", WeightFormat::BF16}, {"F32", WeightFormat::F32}});
  if (!floatFormat)
    return floatFormat.takeError();
  llvm::Expected<WeightFormat> denseFormat =
      decide(*denseRep, "a dense linear weight",
             {{"F8_E4M3", WeightFormat::FP8E4M3Block128},
              {"BF16", WeightFormat::BF16},
              {"F32", WeightFormat::F32}});
  if (!denseFormat)
    return denseFormat.takeError();
  llvm::Expected<WeightFormat> expertFormat =
      decide(*expertRep, "a routed expert weight",
             {{"I8", WeightFormat::FP4E2M1Block32},
              {"F8_E4M3", WeightFormat::FP8E4M3Block128},
              {"BF16", WeightFormat::BF16},
              {"F32", WeightFormat::F32}});
  if (!expertFormat)
    return expertFormat.takeError();
  config.floatFormat = *floatFormat;
  config.denseFormat = *denseFormat;
  config.expertFormat = *expertFormat;
  config.quantized = *denseFormat == WeightFormat::FP8E4M3Block128;
  return llvm::Error::success();
}

} // namespace mlir::compressa
