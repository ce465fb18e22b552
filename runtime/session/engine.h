// SPDX-License-Identifier: Apache-2.0
// Running a compiled artifact: the Engine binds the artifact's weight
// manifest to a checkpoint, loads the kernels, owns the decode state and the
// program arenas, and runs programs (artifact.fbs, "Execution model"). The
// Generator on top of it turns a prompt into generated tokens.
//
// One Engine holds the state of one sequence. It is not thread-safe: one call
// at a time. Positions are the caller's: forward(..., startPos) must continue
// the sequence the state holds (prefill from 0, then decode at the next
// position), and reset() starts a new one.
#ifndef COMPRESSA_RUNTIME_SESSION_ENGINE_H
#define COMPRESSA_RUNTIME_SESSION_ENGINE_H

#include "runtime/base/status.h"
#include "runtime/cpu/cpu_module.h"
#include "runtime/format/artifact_reader.h"
#include "runtime/session/sampler.h"
#include "runtime/weights/safetensors.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace compressa {

/// A zero-filled allocation, page-aligned (so 64-byte aligned), that reports
/// failure instead of aborting. Backed by anonymous pages: memory is only
/// committed when touched.
class AlignedBuffer {
public:
  AlignedBuffer() = default;
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer &&other) noexcept;
  AlignedBuffer &operator=(AlignedBuffer &&other) noexcept;
  AlignedBuffer(const AlignedBuffer &) = delete;
  AlignedBuffer &operator=(const AlignedBuffer &) = delete;

  /// `bytes` zeroed bytes (at least one is allocated, so data() is never
  /// null); ResourceExhausted naming `what` when memory runs out.
  static StatusOr<AlignedBuffer> allocate(uint64_t bytes,
                                          const std::string &what);

  uint8_t *data() const { return ptr; }
  uint64_t size() const { return bytes; }

private:
  static size_t mappedBytes(uint64_t bytes);

  uint8_t *ptr = nullptr;
  uint64_t bytes = 0;
};

class Engine {
public:
  /// Reads the artifact at `artifactPath` and opens the checkpoint directory
  /// `weightsDir` (model.safetensors, or an index and its shards).
  static StatusOr<std::unique_ptr<Engine>>
  create(const std::string &artifactPath, const std::string &weightsDir);
  /// The same with an artifact already read. Binds every manifest weight to
  /// the checkpoint tensor of that name (dtype, shape, and the scale's
  /// F8_E8M0 dtype and shape must match; a missing optional weight binds to
  /// null), builds the expert tables, loads the kernels, allocates and
  /// initializes the states and the program arenas.
  static StatusOr<std::unique_ptr<Engine>>
  create(std::unique_ptr<Artifact> artifact, const std::string &weightsDir);

  ~Engine();
  Engine(const Engine &) = delete;
  Engine &operator=(const Engine &) = delete;

  const Artifact &artifact() const { return *art; }
  const WeightStore &weights() const { return *store; }
  int64_t vocabSize() const { return vocab; }
  int64_t maxContext() const { return contextLimit; }
  int64_t eosTokenId() const;
  bool hasProgram(std::string_view name) const;
  /// max_tokens of program `name`, or 0 when there is no such program.
  int64_t maxTokens(std::string_view name) const;

  /// Runs program `program` on the `count` tokens `ids` at absolute
  /// positions startPos..startPos+count-1 and returns their logits,
  /// [count, vocab] row-major. Checks 1 <= count <= max_tokens, every id in
  /// [0, vocab), startPos >= 0 and startPos + count <= max_context before
  /// anything runs.
  StatusOr<std::vector<float>> forward(const std::string &program,
                                       const int64_t *ids, int64_t count,
                                       int64_t startPos);
  /// Runs `count` tokens through program "prefill" in chunks of
  /// min(chunk, prefill max_tokens) (chunk <= 0: max_tokens); without a
  /// "prefill" program, through "decode" one token at a time. Returns the
  /// logits of every token, [count, vocab]. Inputs are checked before
  /// anything runs.
  StatusOr<std::vector<float>> prefill(const int64_t *ids, int64_t count,
                                       int64_t startPos, int64_t chunk = 0);
  /// Runs one token at position `pos` through program "decode".
  StatusOr<std::vector<float>> decode(int64_t id, int64_t pos);
  /// Re-initializes every state (a new sequence starts at position 0).
  void reset();

  /// Inspection, for tests and tools: state `index` of the artifact.
  const uint8_t *stateData(size_t index) const;
  uint64_t stateBytes(size_t index) const;
  /// Bytes of the scratch area shared by all launches.
  uint64_t scratchBytes() const { return scratch.size(); }

private:
  struct PreparedLaunch;
  struct PreparedProgram;

  Engine();
  Status bindWeights();
  Status buildExpertTables();
  Status loadKernels();
  Status allocateStates();
  Status prepareProgram(const fb::Program &program);
  /// Checks the inputs of a run of `count` tokens at `startPos` against the
  /// program's limits and the vocabulary.
  Status checkInputs(const PreparedProgram &program, const int64_t *ids,
                     int64_t count, int64_t startPos) const;
  /// Runs a checked call; writes [count, vocab] logits to `logitsOut`.
  void run(PreparedProgram &program, const int64_t *ids, int64_t count,
           int64_t startPos, float *logitsOut);
  PreparedProgram *findPrepared(std::string_view name);

  std::unique_ptr<Artifact> art;
  std::unique_ptr<WeightStore> store;
  std::unique_ptr<CpuModule> module;
  int64_t vocab = 0;
  int64_t contextLimit = 0;

  /// Bound manifest weights (null: a missing optional weight) and scales.
  std::vector<const uint8_t *> weightData;
  std::vector<const uint8_t *> scaleData;
  /// Per expert table: 2*count pointers, and the first missing expert's name.
  std::vector<std::vector<void *>> expertTables;
  std::vector<std::string> expertTableMissing;
  std::vector<CpuModule::KernelFn> kernels;
  std::vector<AlignedBuffer> states;
  AlignedBuffer scratch;
  std::vector<std::unique_ptr<PreparedProgram>> programs;
};

/// What generate() produced.
struct GenerationResult {
  /// The generated tokens; ends with the EOS token when stoppedAtEos.
  std::vector<int64_t> tokens;
  bool stoppedAtEos = false;
  /// Stopped because the artifact's maximum context was reached.
  bool stoppedAtContext = false;
  double prefillSeconds = 0;
  double decodeSeconds = 0;
};

/// Prompt in, tokens out: prefill, then sample and decode one token at a
/// time. Stops after maxNewTokens tokens, after the EOS token (which is part
/// of the result), or when the next token would not fit the context.
class Generator {
public:
  /// `options` must have passed validateSamplingOptions.
  Generator(Engine &engine, const SamplingOptions &options);

  /// Starts a new sequence (Engine::reset) from the `promptLength` ids of
  /// `prompt` (at least one), prefilled in chunks of `chunk` (<= 0: the
  /// prefill program's max_tokens).
  StatusOr<GenerationResult> generate(const int64_t *prompt,
                                      int64_t promptLength,
                                      int64_t maxNewTokens, int64_t chunk = 0);

private:
  Engine &engine;
  Sampler sampler;
};

} // namespace compressa

#endif // COMPRESSA_RUNTIME_SESSION_ENGINE_H
