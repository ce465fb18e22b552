// SPDX-License-Identifier: Apache-2.0
// Running a compiled artifact: the Engine binds the artifact's weight
// manifest to a checkpoint, loads the kernels, owns the decode state and the
// program arenas, and runs programs (artifact.fbs, "Execution model"). The
// Generator on top of it turns a prompt into generated tokens.
//
// The same Engine runs CPU and CUDA artifacts: what differs (where memory
// lives, how a kernel is called) sits behind the Backend interface
// (runtime/session/backend.h), chosen by the artifact's target. On CUDA the
// weights are uploaded to the GPU as stored, and the decode program is
// captured as a CUDA graph on its first call and replayed afterwards
// (COMPRESSA_CUDA_GRAPH=0 turns that off).
//
// One Engine holds the state of one sequence. It is not thread-safe: one call
// at a time. Positions are the caller's: forward(..., startPos) must continue
// the sequence the state holds (prefill from 0, then decode at the next
// position), and reset() starts a new one.
#ifndef COMPRESSA_RUNTIME_SESSION_ENGINE_H
#define COMPRESSA_RUNTIME_SESSION_ENGINE_H

#include "runtime/base/aligned_buffer.h"
#include "runtime/base/status.h"
#include "runtime/format/artifact_reader.h"
#include "runtime/session/backend.h"
#include "runtime/session/sampler.h"
#include "runtime/weights/safetensors.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace compressa {

class Engine {
public:
  /// Reads the artifact at `artifactPath` and opens the checkpoint directory
  /// `weightsDir` (model.safetensors, or an index and its shards).
  static StatusOr<std::unique_ptr<Engine>>
  create(const std::string &artifactPath, const std::string &weightsDir);
  /// The same with an artifact already read. Opens the backend for the
  /// artifact's target (a CUDA artifact on a machine without a usable GPU
  /// fails here, Unavailable, "...: the artifact targets CUDA, but no CUDA
  /// GPU is available: ..."), binds every manifest weight to the checkpoint
  /// tensor of that name (dtype, shape, and the scale's F8_E8M0 dtype and
  /// shape must match; a missing optional weight binds to null), loads the
  /// kernels, places the weights (on CUDA: checks the free device memory
  /// against everything the artifact needs, then uploads), builds the
  /// expert tables, allocates and initializes the states and the program
  /// arenas.
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
  /// Re-initializes every state (a new sequence starts at position 0). On
  /// a GPU the fills are queued on the stream; should queuing fail, the
  /// next forward/prefill/decode returns that error. Only what the calls
  /// since the last reset can have written is cleared: a state that grows
  /// with the context (context_ratio > 0) up to the row of the highest
  /// position used, fixed-size states whole.
  void reset();
  /// Bytes the last reset() (or create's initialization) filled.
  uint64_t bytesClearedByLastReset() const { return lastResetBytes; }

  /// Inspection, for tests and tools: state `index` of the artifact.
  /// stateData is the host copy the kernels use on the CPU, and nullptr on
  /// a device (use readState).
  const uint8_t *stateData(size_t index) const;
  uint64_t stateBytes(size_t index) const;
  /// State `index` copied to the host (any backend); OutOfRange for a bad
  /// index.
  StatusOr<std::vector<uint8_t>> readState(size_t index);
  /// Bytes of the scratch area shared by all launches.
  uint64_t scratchBytes() const;

  /// The backend: "cpu" or "cuda".
  const char *backendName() const;
  /// What runs the kernels: "cpu", or the GPU and how its code was loaded
  /// ("cuda: NVIDIA H100 80GB HBM3 (device 0, sm_90, ...); code: cubin
  /// (sm_90a)").
  std::string backendDescription() const;
  /// Launch calls per decode step: 1 (a cuGraphLaunch) when the decode
  /// program runs as a CUDA graph, else the number of its kernel launches.
  int64_t launchesPerDecodeStep() const;
  /// Kernel launches of the decode program (with or without a graph).
  int64_t decodeKernels() const;
  /// True when the decode program runs as a CUDA graph.
  bool decodeUsesGraph() const;
  /// What the backend handed to its device so far.
  LaunchCounters launchCounters() const;
  /// The backend itself, for its timers (compressa-bench).
  Backend &backendRef() { return *backend; }

private:
  struct PreparedProgram;

  Engine();
  Status bindWeights();
  Status placeWeights();
  Status buildExpertTables();
  Status allocateStates();
  Status prepareProgram(const fb::Program &program);
  /// Bytes the artifact needs on its device: weights, states, arenas,
  /// scratch and expert tables.
  uint64_t memoryNeeded() const;
  /// Checks the inputs of a run of `count` tokens at `startPos` against the
  /// program's limits and the vocabulary.
  Status checkInputs(const PreparedProgram &program, const int64_t *ids,
                     int64_t count, int64_t startPos) const;
  /// Runs a checked call; writes [count, vocab] logits to `logitsOut`.
  Status run(PreparedProgram &program, const int64_t *ids, int64_t count,
             int64_t startPos, float *logitsOut);
  PreparedProgram *findPrepared(std::string_view name);
  const PreparedProgram *findPrepared(std::string_view name) const;

  std::unique_ptr<Artifact> art;
  std::unique_ptr<WeightStore> store;
  /// Declared before everything it allocated, so destroyed after it.
  std::unique_ptr<Backend> backend;
  int64_t vocab = 0;
  int64_t contextLimit = 0;
  /// Whether the decode program may run as a graph (COMPRESSA_CUDA_GRAPH).
  bool decodeGraph = true;

  /// Bound manifest weights and scales in the checkpoint (null: a missing
  /// optional weight, or no scale).
  std::vector<const TensorView *> weightViews;
  std::vector<const TensorView *> scaleViews;
  /// Their addresses as the kernels see them (0 for null).
  std::vector<uint64_t> weightAddress;
  std::vector<uint64_t> scaleAddress;
  /// Per expert table: 2*count addresses, and the first missing expert's
  /// name.
  std::vector<std::unique_ptr<BackendBuffer>> expertTables;
  std::vector<std::string> expertTableMissing;
  std::vector<std::unique_ptr<BackendBuffer>> states;
  std::unique_ptr<BackendBuffer> scratch;
  std::vector<std::unique_ptr<PreparedProgram>> programs;
  /// Why the last reset() failed (device only); Ok otherwise.
  Status resetError;
  /// One past the highest position a call ran since the last reset (new
  /// states are zeroed by allocate, so 0 at first).
  int64_t positionsUsed = 0;
  uint64_t lastResetBytes = 0;
  /// COMPRESSA_DUMP_ARENA: whether the arena was written already.
  bool arenaDumped = false;
  Status dumpArena(const PreparedProgram &program, const char *path);
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
