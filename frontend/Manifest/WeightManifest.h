//===- WeightManifest.h - Tensors of a DeepSeek-V4 checkpoint --*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// The list of every tensor a checkpoint for a ModelConfig holds, under the
// official names of spec §2.2, with on-disk shapes and safetensors dtypes, and
// the logical parameter counts derived from it (spec §1.2).
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_FRONTEND_MANIFEST_WEIGHTMANIFEST_H
#define COMPRESSA_FRONTEND_MANIFEST_WEIGHTMANIFEST_H

#include "frontend/Config/ModelConfig.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mlir::compressa {

/// One tensor of the checkpoint.
struct TensorEntry {
  /// Official name, e.g. "layers.3.attn.wq_b.weight", "mtp.0.e_proj.scale".
  std::string name;
  /// On-disk shape (an FP4 weight [out, in] is stored as I8 [out, in/2]).
  std::vector<int64_t> shape;
  /// safetensors dtype string: "F32", "BF16", "F8_E4M3", "F8_E8M0", "I8",
  /// "I64".
  std::string dtype;
  /// The name of the companion `.scale` tensor of an FP8/FP4 weight, or
  /// empty.
  std::string scaleName;
  /// Element shape: for an FP4 weight [out, in]; for everything else equal
  /// to `shape` (a `.scale` entry's elements are its scales).
  std::vector<int64_t> logicalShape;
  /// True for mtp.* tensors: checkpoints made by transformers omit them.
  bool optional = false;
  /// True for a `.scale` entry (UE8M0 block scales of another entry).
  bool isScale = false;
  /// True for a routed expert's w1/w2/w3 weight or scale
  /// (`*.ffn.experts.<e>.*`).
  bool routedExpert = false;
  /// The storage format of the weight; for a `.scale` entry, the format of
  /// the weight it scales (which fixes the block shape: 128x128 or 1x32).
  WeightFormat format = WeightFormat::BF16;
};

/// Every tensor of a checkpoint for `config`, in a deterministic order:
/// embed/head/norm/hc_head, then layers 0..L-1 (norms, mHC, attention,
/// compressor, indexer, router, routed experts 0..E-1, shared expert), then
/// the MTP blocks (marked optional). A weight is immediately followed by its
/// `.scale`. Dtypes follow the config (spec §2.2):
/// - FP8 (`quantized`): wq_a, wq_b, wkv, wo_a, wo_b, indexer.wq_b, shared
///   experts w1/w2/w3, mtp e_proj/h_proj as F8_E4M3 + F8_E8M0 scales
///   [ceil(out/128), ceil(in/128)]; otherwise in `denseFormat`.
/// - routed experts in `expertFormat`: FP4 = I8 [out, in/2] + F8_E8M0
///   [out, ceil(in/32)]; FP8 as above; or plain BF16/F32.
/// - embed, head, all norms, compressor/indexer wkv+wgate, weights_proj,
///   gate.weight in `floatFormat` (BF16 in the official checkpoint).
/// - hc_* params, attn_sink, compressor ape, gate.bias: always F32.
/// - gate.tid2eid (hash layers): I64 [vocab, K].
/// Expects a config from parseModelConfig (validated sizes).
std::vector<TensorEntry> buildWeightManifest(const ModelConfig &config);

/// Bytes of one safetensors element of `dtype`; 0 for an unknown dtype.
uint64_t dtypeBytes(llvm::StringRef dtype);

/// On-disk bytes of a tensor: product(shape) * dtypeBytes(dtype)
/// (saturating at UINT64_MAX).
uint64_t tensorBytes(const TensorEntry &entry);

/// Sum of tensorBytes over `entries`, optional (mtp.*) ones included only
/// when `includeOptional`.
uint64_t manifestBytes(llvm::ArrayRef<TensorEntry> entries,
                       bool includeOptional = true);

/// Logical parameter counts: one per weight element (an FP4 element is one
/// parameter); `.scale` tensors and the hash-routing table `tid2eid` (an
/// int64 lookup table, not a learned parameter) are not counted. These are
/// the figures of spec §1.2 (Flash: 290,942,289,362 total, 284.33 B main
/// stack, 13.80 B active).
struct ParamCounts {
  /// Every parameter, MTP blocks included.
  uint64_t total = 0;
  /// The main stack only (total minus the MTP blocks).
  uint64_t mainStack = 0;
  /// The spec §1.2 "active params / token" figure: the main stack (no MTP)
  /// with each layer's routed experts counted K times instead of E times,
  /// i.e. every non-routed-expert parameter (embedding matrix in full, LM
  /// head, norms, mHC, attention, compressors, indexers, router, shared
  /// expert) plus K routed experts per layer.
  uint64_t activePerToken = 0;
  /// As activePerToken, but the embedding counts as the one row a token
  /// reads (hidden_size params) instead of the whole matrix; the parameters
  /// a token really touches. Spec §1.2's parenthesised figure (13.27 B for
  /// Flash) is this up to that one row.
  uint64_t activePerTokenEmbedRow = 0;
};

/// Counts the logical parameters of `config` from its manifest.
ParamCounts countParams(const ModelConfig &config);

/// The safetensors dtype of the checkpoint tensor `name`, or nullopt when the
/// checkpoint has no such tensor.
using CheckpointDtypeFn =
    llvm::function_ref<std::optional<std::string>(llvm::StringRef name)>;

/// Specialises the weight formats of `config` (quantized, denseFormat,
/// expertFormat, floatFormat) to the checkpoint whose tensor dtypes
/// `dtypeOf` reports, whatever the config says. Three tensors decide, the
/// first of each class in manifest order (`embed.weight`,
/// `layers.0.attn.wq_a.weight`, `layers.0.ffn.experts.0.w1.weight` for every
/// V4 config):
/// - a float tensor: BF16 or F32 -> floatFormat;
/// - a dense linear weight: F8_E4M3 -> FP8 block-scaled (quantized), BF16 or
///   F32 -> that plain format;
/// - a routed expert weight: I8 -> FP4 (packed e2m1), F8_E4M3 -> FP8, BF16
///   or F32 -> that plain format.
/// A missing tensor or another dtype is an error naming `checkpoint`, the
/// tensor, the dtype found and the ones expected.
llvm::Error inferWeightFormats(ModelConfig &config, CheckpointDtypeFn dtypeOf,
                               llvm::StringRef checkpoint);

} // namespace mlir::compressa

#endif // COMPRESSA_FRONTEND_MANIFEST_WEIGHTMANIFEST_H
