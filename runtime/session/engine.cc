// SPDX-License-Identifier: Apache-2.0
// The Engine: weight binding, kernel loading, state and arena allocation, and
// the launch loop that runs a program (artifact.fbs, "Execution model").
#include "runtime/session/engine.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>

#include <sys/mman.h>

namespace compressa {

//===----------------------------------------------------------------------===//
// AlignedBuffer
//===----------------------------------------------------------------------===//

AlignedBuffer::~AlignedBuffer() {
  if (ptr)
    ::munmap(ptr, mappedBytes(bytes));
}

AlignedBuffer::AlignedBuffer(AlignedBuffer &&other) noexcept
    : ptr(other.ptr), bytes(other.bytes) {
  other.ptr = nullptr;
  other.bytes = 0;
}

AlignedBuffer &AlignedBuffer::operator=(AlignedBuffer &&other) noexcept {
  if (this != &other) {
    if (ptr)
      ::munmap(ptr, mappedBytes(bytes));
    ptr = other.ptr;
    bytes = other.bytes;
    other.ptr = nullptr;
    other.bytes = 0;
  }
  return *this;
}

size_t AlignedBuffer::mappedBytes(uint64_t bytes) {
  return bytes ? static_cast<size_t>(bytes) : 1;
}

StatusOr<AlignedBuffer> AlignedBuffer::allocate(uint64_t bytes,
                                                const std::string &what) {
  AlignedBuffer buffer;
  if (bytes > std::numeric_limits<size_t>::max() / 2)
    return COMPRESSA_ERROR(ResourceExhausted,
                           "%s: %llu bytes do not fit the address space",
                           what.c_str(), static_cast<unsigned long long>(bytes));
  // Anonymous pages: page-aligned, zero-filled, and committed only when
  // touched, so a large arena costs nothing until a kernel uses it.
  void *memory = ::mmap(nullptr, mappedBytes(bytes), PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED)
    return COMPRESSA_ERROR(ResourceExhausted,
                           "%s: cannot allocate %llu bytes: %s", what.c_str(),
                           static_cast<unsigned long long>(bytes),
                           std::strerror(errno));
  buffer.ptr = static_cast<uint8_t *>(memory);
  buffer.bytes = bytes;
  return buffer;
}

//===----------------------------------------------------------------------===//
// Engine: construction
//===----------------------------------------------------------------------===//

/// One launch with its argument vector resolved; only the Tokens and
/// StartPos slots change from call to call.
struct Engine::PreparedLaunch {
  CpuModule::KernelFn fn = nullptr;
  std::vector<void *> argv;
  std::vector<uint32_t> tokenSlots;
  std::vector<uint32_t> startSlots;
};

struct Engine::PreparedProgram {
  std::string name;
  int64_t maxTokens = 0;
  AlignedBuffer arena;
  int64_t *inputIds = nullptr;
  const float *logits = nullptr;
  std::vector<PreparedLaunch> launches;
  /// Why the program cannot run (a missing optional weight); empty if it can.
  std::string unavailable;
};

namespace {

/// Checkpoints written by transformers' save_pretrained store the attention's
/// kv_norm as `layers.N.attn.norm.weight` (spec §2.3); accept that name.
const TensorView *findAlias(const WeightStore &store, const std::string &name) {
  static const std::string kvNorm = ".attn.kv_norm.weight";
  if (name.size() <= kvNorm.size() ||
      name.compare(name.size() - kvNorm.size(), kvNorm.size(), kvNorm) != 0)
    return nullptr;
  return store.find(name.substr(0, name.size() - kvNorm.size()) +
                    ".attn.norm.weight");
}

std::string_view view(const flatbuffers::String *str) {
  return str ? std::string_view(str->c_str(), str->size()) : std::string_view();
}

std::vector<int64_t> shapeOf(const flatbuffers::Vector<int64_t> *shape) {
  std::vector<int64_t> out;
  if (shape)
    out.assign(shape->begin(), shape->end());
  return out;
}

double secondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                       start)
      .count();
}
} // namespace

Engine::Engine() = default;
Engine::~Engine() = default;

StatusOr<std::unique_ptr<Engine>>
Engine::create(const std::string &artifactPath, const std::string &weightsDir) {
  COMPRESSA_ASSIGN_OR_RETURN(std::unique_ptr<Artifact> artifact,
                             ArtifactReader::readFile(artifactPath));
  return create(std::move(artifact), weightsDir);
}

StatusOr<std::unique_ptr<Engine>>
Engine::create(std::unique_ptr<Artifact> artifact,
               const std::string &weightsDir) {
  if (!artifact)
    return COMPRESSA_ERROR(InvalidArgument, "Engine::create: no artifact");
  if (artifact->target() != fb::Target::Cpu)
    return COMPRESSA_ERROR(Unimplemented,
                           "%s: the artifact targets %s; this runtime runs CPU "
                           "artifacts only",
                           artifact->path().c_str(), artifact->targetName());
  std::unique_ptr<Engine> engine(new Engine());
  engine->art = std::move(artifact);
  engine->vocab = engine->art->model().vocab_size();
  engine->contextLimit = engine->art->model().max_context();
  COMPRESSA_ASSIGN_OR_RETURN(engine->store, WeightStore::open(weightsDir));
  COMPRESSA_RETURN_IF_ERROR(engine->bindWeights());
  COMPRESSA_RETURN_IF_ERROR(engine->buildExpertTables());
  COMPRESSA_RETURN_IF_ERROR(engine->loadKernels());
  COMPRESSA_RETURN_IF_ERROR(engine->allocateStates());
  const auto *programs = engine->art->root().programs();
  for (uint32_t i = 0; i < programs->size(); ++i)
    COMPRESSA_RETURN_IF_ERROR(engine->prepareProgram(*programs->Get(i)));
  return engine;
}

Status Engine::bindWeights() {
  const auto *manifest = art->root().weights();
  uint32_t count = manifest ? manifest->size() : 0;
  weightData.assign(count, nullptr);
  scaleData.assign(count, nullptr);
  const char *dir = store->directory().c_str();
  for (uint32_t i = 0; i < count; ++i) {
    const fb::Weight &weight = *manifest->Get(i);
    std::string name(view(weight.name()));
    std::string shown = printable(name);
    const TensorView *tensor = store->find(name);
    if (!tensor)
      tensor = findAlias(*store, name);
    if (!tensor) {
      if (weight.optional())
        continue; // Bound to null; a launch that needs it fails at run time.
      return COMPRESSA_ERROR(NotFound,
                             "weights %s: tensor '%s' is missing (the artifact "
                             "needs it)",
                             dir, shown.c_str());
    }
    DType expected = *parseDType(view(weight.dtype())); // Validated.
    if (tensor->dtype != expected)
      return COMPRESSA_ERROR(DataLoss,
                             "weights %s: tensor '%s' has dtype %s, the "
                             "artifact expects %s",
                             dir, shown.c_str(), dtypeName(tensor->dtype),
                             dtypeName(expected));
    std::vector<int64_t> shape = shapeOf(weight.shape());
    if (tensor->shape != shape)
      return COMPRESSA_ERROR(DataLoss,
                             "weights %s: tensor '%s' has shape %s, the "
                             "artifact expects %s",
                             dir, shown.c_str(),
                             formatShape(tensor->shape).c_str(),
                             formatShape(shape).c_str());
    weightData[i] = tensor->data;

    std::string scaleName(view(weight.scale()));
    if (scaleName.empty())
      continue;
    std::string scaleShown = printable(scaleName);
    const TensorView *scale = store->find(scaleName);
    if (!scale)
      return COMPRESSA_ERROR(NotFound,
                             "weights %s: tensor '%s' (the scale of '%s') is "
                             "missing",
                             dir, scaleShown.c_str(), shown.c_str());
    if (scale->dtype != DType::F8E8M0)
      return COMPRESSA_ERROR(DataLoss,
                             "weights %s: tensor '%s' (the scale of '%s') has "
                             "dtype %s, the artifact expects F8_E8M0",
                             dir, scaleShown.c_str(), shown.c_str(),
                             dtypeName(scale->dtype));
    std::vector<int64_t> scaleShape = shapeOf(weight.scale_shape());
    if (scale->shape != scaleShape)
      return COMPRESSA_ERROR(DataLoss,
                             "weights %s: tensor '%s' (the scale of '%s') has "
                             "shape %s, the artifact expects %s",
                             dir, scaleShown.c_str(), shown.c_str(),
                             formatShape(scale->shape).c_str(),
                             formatShape(scaleShape).c_str());
    scaleData[i] = scale->data;
  }
  return okStatus();
}

Status Engine::buildExpertTables() {
  const auto *tables = art->root().expert_tables();
  uint32_t count = tables ? tables->size() : 0;
  expertTables.resize(count);
  expertTableMissing.resize(count);
  for (uint32_t t = 0; t < count; ++t) {
    const fb::ExpertTable &table = *tables->Get(t);
    uint32_t experts = table.count();
    std::vector<void *> &pointers = expertTables[t];
    pointers.assign(size_t(2) * experts, nullptr);
    for (uint32_t e = 0; e < experts; ++e) {
      std::string name =
          Artifact::expertWeightName(view(table.pattern()), e);
      int64_t index = art->findWeight(name); // Validated to exist.
      // Weights are read-only mappings; kernels must not write through them.
      pointers[e] = const_cast<uint8_t *>(weightData[index]);
      pointers[experts + e] = const_cast<uint8_t *>(scaleData[index]);
      if (!weightData[index] && expertTableMissing[t].empty())
        expertTableMissing[t] = name;
    }
  }
  return okStatus();
}

Status Engine::loadKernels() {
  const fb::CpuCode &cpu = *art->root().cpu(); // Validated for CPU targets.
  COMPRESSA_ASSIGN_OR_RETURN(
      module, CpuModule::load(cpu.shared_object()->data(),
                              cpu.shared_object()->size(),
                              art->path() + ": cpu.shared_object"));
  const auto *list = art->root().kernels();
  uint32_t count = list ? list->size() : 0;
  kernels.assign(count, nullptr);
  for (uint32_t k = 0; k < count; ++k) {
    const fb::Kernel &kernel = *list->Get(k);
    StatusOr<CpuModule::KernelFn> fn =
        module->lookup(std::string(view(kernel.symbol())));
    if (!fn.ok())
      return fn.status().withContext(
          "kernels[%u] ('%s')", k, printable(view(kernel.name())).c_str());
    kernels[k] = *fn;
  }
  return okStatus();
}

Status Engine::allocateStates() {
  const auto *list = art->root().states();
  uint32_t count = list ? list->size() : 0;
  states.clear();
  states.reserve(count);
  for (uint32_t s = 0; s < count; ++s) {
    const fb::State &state = *list->Get(s);
    COMPRESSA_ASSIGN_OR_RETURN(
        AlignedBuffer buffer,
        AlignedBuffer::allocate(state.bytes(),
                                art->path() + ": states[" + std::to_string(s) +
                                    "] ('" + printable(view(state.name())) +
                                    "')"));
    states.push_back(std::move(buffer));
  }
  reset();

  // One scratch area serves every launch: programs and launches run one at a
  // time. Its size is the largest any launch with a Scratch argument needs.
  uint64_t scratchSize = 0;
  const auto *programList = art->root().programs();
  for (uint32_t p = 0; p < programList->size(); ++p) {
    const fb::Program &program = *programList->Get(p);
    const auto *launches = program.launches();
    for (uint32_t l = 0; launches && l < launches->size(); ++l) {
      const fb::Launch &launch = *launches->Get(l);
      const fb::Kernel &kernel = *art->root().kernels()->Get(launch.kernel());
      const auto *args = launch.args();
      for (uint32_t a = 0; args && a < args->size(); ++a) {
        if (args->Get(a)->kind() != fb::ArgKind::Scratch)
          continue;
        // No overflow: checked by the reader.
        uint64_t bytes = kernel.scratch_bytes_per_token() *
                             uint64_t(program.max_tokens()) +
                         kernel.scratch_bytes();
        scratchSize = std::max(scratchSize, bytes);
      }
    }
  }
  COMPRESSA_ASSIGN_OR_RETURN(
      scratch, AlignedBuffer::allocate(scratchSize, art->path() + ": scratch"));
  return okStatus();
}

void Engine::reset() {
  const auto *list = art->root().states();
  for (size_t s = 0; s < states.size(); ++s) {
    AlignedBuffer &buffer = states[s];
    std::memset(buffer.data(), 0, static_cast<size_t>(buffer.size()));
    if (list->Get(s)->init() == fb::StateInit::CompressorState) {
      // kv half zero, score half -inf (spec §5.1); the size is a multiple
      // of 8 (checked by the reader).
      size_t half = static_cast<size_t>(buffer.size() / 2);
      float minusInf = -std::numeric_limits<float>::infinity();
      for (size_t offset = half; offset + 4 <= buffer.size(); offset += 4)
        std::memcpy(buffer.data() + offset, &minusInf, 4);
    }
  }
}

Status Engine::prepareProgram(const fb::Program &def) {
  auto program = std::make_unique<PreparedProgram>();
  program->name = std::string(view(def.name()));
  program->maxTokens = def.max_tokens();
  std::string where = art->path() + ": program '" + printable(program->name) +
                      "'";
  COMPRESSA_ASSIGN_OR_RETURN(program->arena,
                             AlignedBuffer::allocate(def.arena_bytes(),
                                                     where + " arena"));
  uint8_t *arena = program->arena.data();
  const auto *buffers = def.buffers();
  program->inputIds = reinterpret_cast<int64_t *>(
      arena + buffers->Get(def.input_ids())->offset());
  program->logits = reinterpret_cast<const float *>(
      arena + buffers->Get(def.logits())->offset());

  const auto *launches = def.launches();
  uint32_t numLaunches = launches ? launches->size() : 0;
  program->launches.resize(numLaunches);
  for (uint32_t l = 0; l < numLaunches; ++l) {
    const fb::Launch &launch = *launches->Get(l);
    PreparedLaunch &prepared = program->launches[l];
    prepared.fn = kernels[launch.kernel()];
    const fb::Kernel &kernel = *art->root().kernels()->Get(launch.kernel());
    const auto *args = launch.args();
    uint32_t numArgs = args ? args->size() : 0;
    prepared.argv.assign(numArgs, nullptr);
    auto needsMissing = [&](const std::string &weight) {
      if (program->unavailable.empty())
        program->unavailable =
            where + ": launch " + std::to_string(l) + " (kernel '" +
            printable(view(kernel.name())) + "') needs the optional weight '" +
            printable(weight) + "', which the checkpoint " +
            store->directory() + " lacks";
    };
    for (uint32_t a = 0; a < numArgs; ++a) {
      const fb::Arg &arg = *args->Get(a);
      uint32_t index = arg.index(); // Range-checked by the reader.
      void *&slot = prepared.argv[a];
      switch (arg.kind()) {
      case fb::ArgKind::Buffer:
        slot = arena + buffers->Get(index)->offset();
        break;
      case fb::ArgKind::Weight:
      case fb::ArgKind::WeightScale:
        slot = const_cast<uint8_t *>(arg.kind() == fb::ArgKind::Weight
                                         ? weightData[index]
                                         : scaleData[index]);
        if (!weightData[index])
          needsMissing(std::string(
              view(art->root().weights()->Get(index)->name())));
        break;
      case fb::ArgKind::ExpertTable:
        slot = expertTables[index].data();
        if (!expertTableMissing[index].empty())
          needsMissing(expertTableMissing[index]);
        break;
      case fb::ArgKind::State:
        slot = states[index].data();
        break;
      case fb::ArgKind::Tokens:
        prepared.tokenSlots.push_back(a);
        break;
      case fb::ArgKind::StartPos:
        prepared.startSlots.push_back(a);
        break;
      case fb::ArgKind::Scratch:
        slot = scratch.data();
        break;
      }
    }
  }
  programs.push_back(std::move(program));
  return okStatus();
}

//===----------------------------------------------------------------------===//
// Engine: running
//===----------------------------------------------------------------------===//

int64_t Engine::eosTokenId() const { return art->model().eos_token_id(); }

bool Engine::hasProgram(std::string_view name) const {
  return art->findProgram(name) != nullptr;
}

int64_t Engine::maxTokens(std::string_view name) const {
  const fb::Program *program = art->findProgram(name);
  return program ? program->max_tokens() : 0;
}

const uint8_t *Engine::stateData(size_t index) const {
  return index < states.size() ? states[index].data() : nullptr;
}

uint64_t Engine::stateBytes(size_t index) const {
  return index < states.size() ? states[index].size() : 0;
}

Engine::PreparedProgram *Engine::findPrepared(std::string_view name) {
  for (auto &program : programs)
    if (program->name == name)
      return program.get();
  return nullptr;
}

/// Checks positions and ids of `count` tokens at `startPos`.
static Status checkSequence(const int64_t *ids, int64_t count,
                            int64_t startPos, int64_t vocab,
                            int64_t contextLimit) {
  if (startPos < 0)
    return COMPRESSA_ERROR(InvalidArgument,
                           "start position %lld is negative",
                           static_cast<long long>(startPos));
  int64_t total;
  if (__builtin_add_overflow(startPos, count, &total))
    total = std::numeric_limits<int64_t>::max();
  if (total > contextLimit)
    return COMPRESSA_ERROR(OutOfRange,
                           "prompt of %lld tokens exceeds the artifact's "
                           "maximum context of %lld",
                           static_cast<long long>(total),
                           static_cast<long long>(contextLimit));
  for (int64_t i = 0; i < count; ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      return COMPRESSA_ERROR(OutOfRange,
                             "token id %lld at position %lld is outside the "
                             "vocabulary (0..%lld)",
                             static_cast<long long>(ids[i]),
                             static_cast<long long>(startPos + i),
                             static_cast<long long>(vocab - 1));
  return okStatus();
}

Status Engine::checkInputs(const PreparedProgram &program, const int64_t *ids,
                           int64_t count, int64_t startPos) const {
  if (count < 1 || count > program.maxTokens)
    return COMPRESSA_ERROR(OutOfRange,
                           "program '%s' runs 1 to %lld tokens per call, not "
                           "%lld",
                           printable(program.name).c_str(),
                           static_cast<long long>(program.maxTokens),
                           static_cast<long long>(count));
  if (!program.unavailable.empty())
    return Status(StatusCode::FailedPrecondition, program.unavailable,
                  __FILE__, __LINE__);
  return checkSequence(ids, count, startPos, vocab, contextLimit);
}

void Engine::run(PreparedProgram &program, const int64_t *ids, int64_t count,
                 int64_t startPos, float *logitsOut) {
  std::memcpy(program.inputIds, ids, static_cast<size_t>(count) * 8);
  void *tokens = reinterpret_cast<void *>(static_cast<intptr_t>(count));
  void *start = reinterpret_cast<void *>(static_cast<intptr_t>(startPos));
  for (PreparedLaunch &launch : program.launches) {
    for (uint32_t slot : launch.tokenSlots)
      launch.argv[slot] = tokens;
    for (uint32_t slot : launch.startSlots)
      launch.argv[slot] = start;
    launch.fn(launch.argv.data());
  }
  std::memcpy(logitsOut, program.logits,
              static_cast<size_t>(count) * static_cast<size_t>(vocab) * 4);
}

StatusOr<std::vector<float>> Engine::forward(const std::string &name,
                                             const int64_t *ids, int64_t count,
                                             int64_t startPos) {
  PreparedProgram *program = findPrepared(name);
  if (!program)
    return COMPRESSA_ERROR(NotFound, "%s: no program is named '%s'",
                           art->path().c_str(), printable(name).c_str());
  COMPRESSA_RETURN_IF_ERROR(checkInputs(*program, ids, count, startPos));
  std::vector<float> logits(static_cast<size_t>(count) *
                            static_cast<size_t>(vocab));
  run(*program, ids, count, startPos, logits.data());
  return logits;
}

StatusOr<std::vector<float>> Engine::prefill(const int64_t *ids, int64_t count,
                                             int64_t startPos, int64_t chunk) {
  if (count < 0)
    return COMPRESSA_ERROR(InvalidArgument, "token count %lld is negative",
                           static_cast<long long>(count));
  COMPRESSA_RETURN_IF_ERROR(
      checkSequence(ids, count, startPos, vocab, contextLimit));
  PreparedProgram *program = findPrepared("prefill");
  int64_t step = 1;
  if (program) {
    step = program->maxTokens;
    if (chunk > 0)
      step = std::min(step, chunk);
  } else {
    // Without a prefill program, decode one token at a time ("decode" is
    // always present: checked by the reader).
    program = findPrepared("decode");
  }
  if (!program->unavailable.empty())
    return Status(StatusCode::FailedPrecondition, program->unavailable,
                  __FILE__, __LINE__);
  std::vector<float> logits(static_cast<size_t>(count) *
                            static_cast<size_t>(vocab));
  for (int64_t done = 0; done < count; done += step) {
    int64_t n = std::min(step, count - done);
    run(*program, ids + done, n, startPos + done,
        logits.data() + static_cast<size_t>(done) * static_cast<size_t>(vocab));
  }
  return logits;
}

StatusOr<std::vector<float>> Engine::decode(int64_t id, int64_t pos) {
  return forward("decode", &id, 1, pos);
}

//===----------------------------------------------------------------------===//
// Generator
//===----------------------------------------------------------------------===//

Generator::Generator(Engine &engine, const SamplingOptions &options)
    : engine(engine), sampler(options) {}

StatusOr<GenerationResult> Generator::generate(const int64_t *prompt,
                                               int64_t promptLength,
                                               int64_t maxNewTokens,
                                               int64_t chunk) {
  if (promptLength < 1)
    return COMPRESSA_ERROR(InvalidArgument,
                           "the prompt is empty: generation needs at least "
                           "one token");
  if (maxNewTokens < 0)
    return COMPRESSA_ERROR(InvalidArgument,
                           "the number of tokens to generate, %lld, is "
                           "negative",
                           static_cast<long long>(maxNewTokens));
  GenerationResult result;
  if (maxNewTokens == 0)
    return result;
  int64_t vocab = engine.vocabSize();
  engine.reset();
  auto start = std::chrono::steady_clock::now();
  COMPRESSA_ASSIGN_OR_RETURN(std::vector<float> logits,
                             engine.prefill(prompt, promptLength, 0, chunk));
  result.prefillSeconds = secondsSince(start);
  const float *row =
      logits.data() + static_cast<size_t>(promptLength - 1) * vocab;

  start = std::chrono::steady_clock::now();
  int64_t pos = promptLength;
  for (;;) {
    int64_t token = sampler.sample(row, vocab);
    result.tokens.push_back(token);
    if (token == engine.eosTokenId()) {
      result.stoppedAtEos = true;
      break;
    }
    if (static_cast<int64_t>(result.tokens.size()) >= maxNewTokens)
      break;
    if (pos >= engine.maxContext()) {
      result.stoppedAtContext = true;
      break;
    }
    COMPRESSA_ASSIGN_OR_RETURN(logits, engine.decode(token, pos));
    row = logits.data();
    ++pos;
  }
  result.decodeSeconds = secondsSince(start);
  return result;
}

} // namespace compressa
