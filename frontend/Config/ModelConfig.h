//===- ModelConfig.h - A validated DeepSeek-V4 model config ----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// The typed form of a DeepSeek-V4 config.json, in either of its two styles
// (the official one with `compress_ratios`, the transformers one with
// `layer_types`). Everything downstream of the parser reads this struct only.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_FRONTEND_CONFIG_MODELCONFIG_H
#define COMPRESSA_FRONTEND_CONFIG_MODELCONFIG_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mlir::compressa {

/// The attention kind of one layer.
enum class AttentionKind { Sliding, CSA, HCA };

/// The routing kind of one layer's MoE.
enum class MoeKind { Hash, Score };

/// Storage format of a weight tensor (spec §2.1).
enum class WeightFormat {
  BF16,
  F32,
  I64,
  FP8E4M3Block128, ///< e4m3 values + UE8M0 scale per 128x128 block.
  FP4E2M1Block32,  ///< e2m1 pairs packed in I8 + UE8M0 scale per 1x32 block.
};

/// The name of a layer kind as used in config files and diagnostics:
/// "sliding_attention", "compressed_sparse_attention", ...
llvm::StringRef attentionKindName(AttentionKind kind);

/// The name of a routing kind as used in `mlp_layer_types`: "hash_moe", "moe".
llvm::StringRef moeKindName(MoeKind kind);

/// A short name of a weight format for messages: "bf16", "f32", "i64",
/// "fp8-e4m3-block128", "fp4-e2m1-block32".
llvm::StringRef weightFormatName(WeightFormat format);

/// RoPE frequencies (spec §1.3). `yarn` = false gives plain frequencies.
struct RopeParams {
  double theta = 10000.0;
  bool yarn = false;
  double factor = 1.0;
  int64_t originalMaxPositions = 0;
  double betaFast = 32.0;
  double betaSlow = 1.0;
};

/// One layer of the main stack (or the MTP block).
struct LayerSpec {
  AttentionKind attention = AttentionKind::Sliding;
  /// 0 for sliding, else the compression ratio m (4 for CSA in the real
  /// models, 128 for HCA; the golden tiny-a uses 16 for HCA).
  int64_t compressRatio = 0;
  MoeKind moe = MoeKind::Score;
};

/// A validated DeepSeek-V4 configuration. Field names follow spec §1.1.
struct ModelConfig {
  std::string name;        ///< model name for messages (directory or file)
  std::string sourcePath;  ///< the config.json that was read
  bool officialStyle = true; ///< which config.json style it came from

  int64_t vocabSize = 0;
  int64_t hiddenSize = 0;        ///< D
  int64_t numLayers = 0;         ///< L (main stack, without MTP)
  /// The original index of layers[0]: 0, or A for a slice `--layers A:B`
  /// (sliceLayers). Layer i's checkpoint tensors are named
  /// `layers.<firstLayer + i>.*`, so a slice binds a full checkpoint.
  int64_t firstLayer = 0;
  int64_t numHeads = 0;          ///< H
  int64_t headDim = 0;           ///< d
  int64_t ropeHeadDim = 0;       ///< r (last r channels of each head)
  int64_t qLoraRank = 0;         ///< Q
  int64_t oGroups = 0;           ///< G
  int64_t oLoraRank = 0;         ///< R_o
  int64_t slidingWindow = 0;     ///< W
  int64_t indexNumHeads = 0;
  int64_t indexHeadDim = 0;
  int64_t indexTopk = 0;
  int64_t numRoutedExperts = 0;  ///< E
  int64_t numSharedExperts = 0;
  int64_t numExpertsPerTok = 0;  ///< K
  int64_t moeIntermediateSize = 0; ///< I
  double routedScalingFactor = 1.0;
  double swigluLimit = 0.0;
  int64_t hcMult = 0;            ///< N_hc
  int64_t hcSinkhornIters = 0;
  double hcEps = 0.0;
  double rmsNormEps = 0.0;
  int64_t numMtpLayers = 0;      ///< num_nextn_predict_layers
  int64_t maxPositionEmbeddings = 0;
  int64_t bosTokenId = 0;
  int64_t eosTokenId = 1;

  RopeParams mainRope;     ///< SWA layers and the MTP layer
  RopeParams compressRope; ///< every CSA/HCA layer (YaRN)

  /// Per main-stack layer, size numLayers.
  std::vector<LayerSpec> layers;
  /// The MTP layers (size numMtpLayers); always sliding attention, score MoE.
  std::vector<LayerSpec> mtpLayers;

  /// Weight formats. `quantized` = the checkpoint carries FP8 block-scaled
  /// dense weights (quantization_config present). Routed experts use
  /// `expertFormat` (FP4 when expert_dtype == "fp4").
  bool quantized = false;
  WeightFormat denseFormat = WeightFormat::BF16;  ///< FP8, BF16 or F32
  WeightFormat expertFormat = WeightFormat::BF16; ///< FP4, FP8, BF16 or F32
  /// The dtype of the float tensors that are never quantized (embedding,
  /// head, norms, router weight, compressor/indexer projections), from
  /// `dtype`/`torch_dtype` (BF16 when absent): BF16 or F32. The tensors the
  /// official checkpoint stores in fp32 (mHC params, attn_sink, ape,
  /// gate.bias) are F32 whatever this says.
  WeightFormat floatFormat = WeightFormat::BF16;

  /// The number of main-stack layers with hash routing (a prefix).
  int64_t numHashLayers() const;
  /// The number of main-stack layers with the given attention kind.
  int64_t countAttention(AttentionKind kind) const;
};

/// Keeps layers [begin, end) of the main stack (`compressa-compile --layers
/// A:B`): each keeps its attention and routing kind, embedding, final norm,
/// mHC head and LM head stay, the MTP layers are dropped, and the kept
/// layers keep their checkpoint names (firstLayer). `spec` is "A:B" with
/// 0 <= A < B <= num_hidden_layers; anything else is an error naming the
/// config file, the value and the allowed range.
llvm::Error sliceLayers(ModelConfig &config, llvm::StringRef spec);

/// Parses and validates a config.json file. Every inconsistency is an error
/// whose message names the file and the key, e.g.
///   "config.json: 'compress_ratios' has 5 entries, expected num_hidden_layers
///    = 43 or num_hidden_layers + 1 = 44".
/// The style is chosen by the keys: `layer_types` present -> transformers
/// style, else `compress_ratios` -> official style. Keys that may be absent,
/// and what their absence means: num_nextn_predict_layers (0: no MTP block),
/// bos_token_id / eos_token_id (0 / 1), dtype / torch_dtype (bfloat16),
/// quantization_config (unquantized), expert_dtype (the dense format),
/// rope_scaling / the compress entry's yarn keys (plain frequencies),
/// beta_fast / beta_slow (32 / 1). ConfigParser.cpp lists every rule.
llvm::Expected<ModelConfig> parseModelConfig(llvm::StringRef path);

/// Parses and validates config text (the path is used in messages only).
llvm::Expected<ModelConfig> parseModelConfigText(llvm::StringRef text,
                                                 llvm::StringRef path);

} // namespace mlir::compressa

#endif // COMPRESSA_FRONTEND_CONFIG_MODELCONFIG_H
