// SPDX-License-Identifier: Apache-2.0
// Test support (not part of libcompressa_runtime): build synthetic artifacts
// with the FlatBuffers builder, and the "toy" model they run, whose kernels
// live in runtime/testing/test_kernels.c.
//
// The toy model (vocab 768, max context 64, BOS 0, EOS 1):
//   toy_embed: hidden[t] = {id, position p, running id sum s, running count c}
//              using state 0 ("toy.state": int64 {sum, count}).
//   toy_head:  logits[t][v] = bias[v] + 16 * (v == (7 id + 3 p + s) mod 768)
//              + proj[p % 2][id % 4] * scale + expert[id % 2][p % 4] *
//              expert_scale[id % 2] + c / 4
// so the logits of a token depend on every earlier token through the state,
// and on its absolute position: chunked prefill, decode and their mixes must
// all agree with toyReferenceLogits().
#ifndef COMPRESSA_RUNTIME_TESTING_TOY_ARTIFACT_H
#define COMPRESSA_RUNTIME_TESTING_TOY_ARTIFACT_H

#include "runtime/base/status.h"
#include "runtime/format/artifact_reader.h"
#include "runtime/weights/safetensors_writer.h"

#include <cstdint>
#include <string>
#include <vector>

namespace compressa {
namespace toy {

/// Plain descriptions of the artifact tables, serialized by buildArtifact().
struct ArgSpec {
  fb::ArgKind kind = fb::ArgKind::Buffer;
  uint32_t index = 0;
};
struct LaunchSpec {
  uint32_t kernel = 0;
  std::vector<ArgSpec> args;
};
struct BufferSpec {
  std::string name;
  uint64_t offset = 0;
  uint64_t bytes = 0;
};
/// One tile description of a CUDA program (schema: TensorMap).
struct TensorMapSpec {
  fb::ArgKind source = fb::ArgKind::Weight;
  uint32_t index = 0;
  uint64_t offset = 0, rows = 0, cols = 0;
  uint32_t boxRows = 0;
};
struct ProgramSpec {
  std::string name;
  uint32_t maxTokens = 1;
  uint64_t arenaBytes = 0;
  std::vector<BufferSpec> buffers;
  uint32_t inputIds = 0;
  uint32_t logits = 0;
  std::vector<LaunchSpec> launches;
  std::vector<TensorMapSpec> tensorMaps;
};
/// One entry of a kernel's signature (schema: Param).
struct ParamSpec {
  fb::ArgKind kind = fb::ArgKind::Buffer;
  uint64_t bytesPerToken = 0;
  uint64_t bytes = 0;
};
struct KernelSpec {
  std::string name;
  std::string symbol;
  uint64_t scratchBytesPerToken = 0;
  uint64_t scratchBytes = 0;
  /// CUDA launch geometry.
  uint32_t grid = 1;
  uint32_t block = 1;
  uint32_t sharedBytes = 0;
  std::vector<ParamSpec> params;
  /// False: leave `params` out of the FlatBuffer.
  bool hasParams = true;
  fb::Collective collective = fb::Collective::None;
};
struct StateSpec {
  std::string name;
  uint64_t bytes = 0;
  fb::StateInit init = fb::StateInit::Zero;
  /// Geometry: bytes == max(1, rowBytes * (rows + max_context /
  /// contextRatio)).
  uint64_t rowBytes = 0;
  uint64_t rows = 0;
  uint32_t contextRatio = 0;
};
struct WeightSpec {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::string scale;
  std::vector<int64_t> scaleShape;
  bool optional = false;
  uint64_t valuesBelow = 0;
};
struct ExpertTableSpec {
  std::string pattern;
  uint32_t count = 0;
  uint32_t first = 0;
};
struct ArtifactSpec {
  uint32_t version = kArtifactVersion;
  /// Append the digest trailer (sealArtifact); false writes the bare
  /// FlatBuffer, as versions before 2 did.
  bool seal = true;
  bool hasModel = true;
  std::string modelName = "toy";
  uint32_t vocabSize = 0;
  uint32_t hiddenSize = 0;
  int64_t bosTokenId = 0;
  int64_t eosTokenId = 1;
  uint32_t maxContext = 0;
  uint32_t nRoutedExperts = 0;
  std::string configJson;
  fb::Target target = fb::Target::Cpu;
  std::vector<ProgramSpec> programs;
  std::vector<KernelSpec> kernels;
  std::vector<StateSpec> states;
  std::vector<WeightSpec> weights;
  std::vector<ExpertTableSpec> expertTables;
  bool hasCpu = true;
  std::string triple = "x86_64-unknown-linux-gnu";
  std::vector<uint8_t> sharedObject;
  /// The CUDA code table (written when hasCuda).
  bool hasCuda = false;
  std::string cudaChip;
  std::string cudaPtx;
  std::vector<uint8_t> cudaCubin;
  /// Expert parallelism: this artifact is rank `rank` of `ranks`, and
  /// carries `peers` (rank i + 1's file each).
  uint32_t rank = 0;
  uint32_t ranks = 0;
  std::vector<std::vector<uint8_t>> peers;
};

/// The artifact file for `spec`: the FlatBuffer (identifier "CPA1"), then
/// the digest trailer when spec.seal.
std::vector<uint8_t> buildArtifact(const ArtifactSpec &spec);

inline constexpr uint32_t kVocab = 768;
inline constexpr uint32_t kMaxContext = 64;
inline constexpr int64_t kEos = 1;
/// Indices into ArtifactSpec::weights / states of toyArtifactSpec().
inline constexpr uint32_t kBiasWeight = 0;
inline constexpr uint32_t kProjWeight = 1;
inline constexpr uint32_t kMtpBiasWeight = 4;
inline constexpr uint32_t kCompressorState = 1;
/// Scratch of toy_head: bytes per token and fixed bytes.
inline constexpr uint64_t kScratchPerToken = 16;
inline constexpr uint64_t kScratchFixed = 64;

/// The bytes of the test kernels' shared object (compressa_test_kernels);
/// empty if it cannot be read.
std::vector<uint8_t> testKernelsBytes();

/// The toy program `name` with `maxTokens` tokens per call; `biasWeight` is
/// the weight its head reads as bias (kBiasWeight, or kMtpBiasWeight).
ProgramSpec toyProgram(const std::string &name, uint32_t maxTokens,
                       uint32_t biasWeight = kBiasWeight);

/// The toy artifact: programs "prefill" (prefillMaxTokens per call; left
/// out when 0), "decode" (1) and "mtp" (1, reading the optional weight
/// "mtp.toy.bias" that toy checkpoints lack); states "toy.state" (Zero, 16
/// bytes: 1 row of 16) and "toy.compressor.state" (CompressorState, 64
/// bytes: 4 rows of 16); 2 routed experts; each kernel with its signature.
ArtifactSpec toyArtifactSpec(uint32_t prefillMaxTokens = 16);

/// The toy checkpoint: its tensors, whose data pointers point into `storage`.
struct ToyWeights {
  std::vector<float> bias;
  std::vector<uint8_t> proj, projScale;
  std::vector<uint8_t> expert[2], expertScale[2];
};
ToyWeights toyWeights();
std::vector<TensorToWrite> toyWeightTensors(const ToyWeights &weights);

/// Recomputes the digest trailer of the artifact file `bytes` in place, as
/// an editor who re-seals an edited artifact would.
void reseal(std::vector<uint8_t> &bytes);

/// Writes `directory`/model.safetensors with the toy checkpoint.
Status writeToyWeights(const std::string &directory);

/// The logits [ids.size(), kVocab] of a fresh toy sequence.
std::vector<float> toyReferenceLogits(const std::vector<int64_t> &ids);
/// The greedy continuation of `prompt` by the toy model: `count` tokens,
/// stopping after `eos` if it comes.
std::vector<int64_t> toyGreedy(const std::vector<int64_t> &prompt,
                               int64_t count, int64_t eos);

/// A fresh directory under the test temporary directory.
std::string makeTempDir(const std::string &prefix);
/// Writes `bytes` to `path`; false on failure.
bool writeFile(const std::string &path, const std::string &bytes);
bool writeFile(const std::string &path, const std::vector<uint8_t> &bytes);
/// The whole file, or an empty string.
std::string readFile(const std::string &path);

} // namespace toy
} // namespace compressa

#endif // COMPRESSA_RUNTIME_TESTING_TOY_ARTIFACT_H
