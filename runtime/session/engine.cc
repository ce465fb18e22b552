// SPDX-License-Identifier: Apache-2.0
// The Engine: weight binding, backend setup (kernels, weights, states,
// arenas), argument resolution, and the calls that run a program
// (artifact.fbs, "Execution model"). Everything device-specific goes through
// the Backend (runtime/session/backend.h).
#include "runtime/session/engine.h"
#include "runtime/session/multi_rank.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <unordered_map>

namespace compressa {

/// The batched decode program (compressa-compile --max-batch B > 1).
static constexpr char kBatchedDecode[] = "decode_batch";

//===----------------------------------------------------------------------===//
// Engine: construction
//===----------------------------------------------------------------------===//

struct Engine::PreparedProgram {
  std::string name;
  int64_t maxTokens = 0;
  /// Shared by the slots' copies of the program: one program runs at a time.
  std::shared_ptr<BackendBuffer> arena;
  uint64_t inputIdsOffset = 0;
  uint64_t logitsOffset = 0;
  /// The launches as the backend prepared them.
  std::unique_ptr<BackendProgram> launches;
  int64_t numLaunches = 0;
  /// Why the program cannot run (a missing optional weight); empty if it can.
  std::string unavailable;
  /// The batched decode program (its tokens are sequences: runBatched).
  bool batched = false;
  /// Its head computes only the logit rows a call asks for, into rows
  /// 0..L-1 (a LogitRows argument; artifact.fbs); without one, every row.
  bool logitRows = false;
  /// Names of the per-call copies, for messages (built once).
  std::string idsWhat;
  std::string logitsWhat;
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

/// How to compile an artifact that matches the checkpoint `store`, whose
/// tensor `found` has another dtype than the artifact expects: the
/// --weight-format of compressa-compile that fits (official when the
/// checkpoint holds FP8 tensors, else the found tensor's float type), and
/// --weights, which reads the formats from the checkpoint itself.
std::string recompileHint(const WeightStore &store, const TensorView &found) {
  const char *format = nullptr;
  for (const auto &file : store.files())
    for (const TensorView &tensor : file->tensors())
      if (tensor.dtype == DType::F8E4M3)
        format = "official";
  if (!format && found.dtype == DType::BF16)
    format = "bf16";
  if (!format && found.dtype == DType::F32)
    format = "f32";
  std::string hint = "recompile with `compressa-compile MODEL --weights " +
                     store.directory() +
                     "` (reads the formats from the checkpoint)";
  if (format)
    hint += std::string(" or with `compressa-compile MODEL --weight-format=") +
            format + "`";
  return hint;
}

/// Element `i` of the integer tensor `tensor` (I64, I32, I16, I8 or U8).
int64_t integerAt(const TensorView &tensor, size_t i) {
  const uint8_t *at = tensor.data + i * dtypeSize(tensor.dtype);
  switch (tensor.dtype) {
  case DType::I64: {
    int64_t v;
    std::memcpy(&v, at, 8);
    return v;
  }
  case DType::I32: {
    int32_t v;
    std::memcpy(&v, at, 4);
    return v;
  }
  case DType::I16: {
    int16_t v;
    std::memcpy(&v, at, 2);
    return v;
  }
  case DType::I8:
    return static_cast<int8_t>(*at);
  default:
    return *at;
  }
}

/// Every element of the integer tensor `tensor` lies in [0, limit): the
/// kernels index with these values (tid2eid picks experts), so one out of
/// range would read or write outside a table. The first bad element is
/// named with its index (row-major) and value.
Status checkValueRange(const TensorView &tensor, uint64_t limit,
                       const char *dir) {
  size_t count = tensor.nbytes / dtypeSize(tensor.dtype);
  for (size_t i = 0; i < count; ++i) {
    int64_t value = integerAt(tensor, i);
    if (value >= 0 && static_cast<uint64_t>(value) < limit)
      continue;
    std::string index;
    size_t rest = i;
    for (size_t d = tensor.shape.size(); d-- > 0;) {
      size_t dim = static_cast<size_t>(tensor.shape[d]);
      index = "[" + std::to_string(rest % dim) + "]" + index;
      rest /= dim;
    }
    return COMPRESSA_ERROR(DataLoss,
                           "weights %s: tensor '%s'%s is %lld, outside the "
                           "allowed range [0, %llu) (element %zu of %zu; the "
                           "kernels index with these values)",
                           dir, printable(tensor.name).c_str(), index.c_str(),
                           static_cast<long long>(value),
                           static_cast<unsigned long long>(limit), i, count);
  }
  return okStatus();
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
Engine::startCreate(std::unique_ptr<Artifact> artifact, const char *who) {
  if (!artifact)
    return COMPRESSA_ERROR(InvalidArgument, "%s: no artifact", who);
  std::unique_ptr<Engine> engine(new Engine());
  engine->art = std::move(artifact);
  engine->vocab = engine->art->model().vocab_size();
  engine->contextLimit = engine->art->model().max_context();
  const char *graphs = std::getenv("COMPRESSA_CUDA_GRAPH");
  engine->decodeGraph = !(graphs && std::strcmp(graphs, "0") == 0);
  COMPRESSA_ASSIGN_OR_RETURN(engine->backend, createBackend(*engine->art));
  return engine;
}

StatusOr<std::unique_ptr<Engine>>
Engine::create(std::unique_ptr<Artifact> artifact,
               const std::string &weightsDir) {
  // Step 1. The device first: a CUDA artifact on a machine without a GPU
  // fails here, before any file is mapped.
  COMPRESSA_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine,
                             startCreate(std::move(artifact), "Engine::create"));
  // Step 2. The checkpoint, checked against the manifest.
  COMPRESSA_ASSIGN_OR_RETURN(engine->store, WeightStore::open(weightsDir));
  engine->weightsWhat = "weights " + engine->store->directory();
  COMPRESSA_RETURN_IF_ERROR(withRank(*engine->art, engine->bindWeights()));
  COMPRESSA_ASSIGN_OR_RETURN(engine, finishCreate(std::move(engine)));
  // Rank 0 of an expert-parallel artifact: the other ranks join it.
  COMPRESSA_RETURN_IF_ERROR(RankGroup::join(*engine, weightsDir, false, 0));
  return engine;
}

StatusOr<std::unique_ptr<Engine>>
Engine::createWithRandomWeights(const std::string &artifactPath,
                                uint64_t seed) {
  COMPRESSA_ASSIGN_OR_RETURN(std::unique_ptr<Artifact> artifact,
                             ArtifactReader::readFile(artifactPath));
  return createWithRandomWeights(std::move(artifact), seed);
}

StatusOr<std::unique_ptr<Engine>>
Engine::createWithRandomWeights(std::unique_ptr<Artifact> artifact,
                                uint64_t seed) {
  COMPRESSA_ASSIGN_OR_RETURN(
      std::unique_ptr<Engine> engine,
      startCreate(std::move(artifact), "Engine::createWithRandomWeights"));
  engine->randomWeights = true;
  engine->randomSeed = seed;
  engine->weightsWhat =
      "random weights (seed " + std::to_string(seed) + ")";
  COMPRESSA_RETURN_IF_ERROR(engine->planRandomWeights());
  COMPRESSA_ASSIGN_OR_RETURN(engine, finishCreate(std::move(engine)));
  COMPRESSA_RETURN_IF_ERROR(RankGroup::join(*engine, "", true, seed));
  return engine;
}

StatusOr<std::unique_ptr<Engine>>
Engine::finishCreate(std::unique_ptr<Engine> engine) {
  // Step 3. The kernels, before anything large is allocated or uploaded.
  COMPRESSA_RETURN_IF_ERROR(engine->backend->loadKernels(*engine->art));
  // Step 4. Memory: all of it checked at once, then the weights placed. The
  // CPU backend reads a checkpoint where it is mapped: there only what is
  // allocated counts.
  bool mapped = !engine->randomWeights &&
                std::strcmp(engine->backend->name(), "cpu") == 0;
  COMPRESSA_RETURN_IF_ERROR(engine->backend->reserve(
      engine->memoryNeeded(/*withWeights=*/!mapped),
      engine->art->path() +
          (mapped ? " (states, arenas and scratch; the largest: " +
                        engine->largestMemoryPart() + ")"
                  : std::string(" (weights, states, arenas and scratch)"))));
  COMPRESSA_RETURN_IF_ERROR(engine->placeWeights());
  COMPRESSA_RETURN_IF_ERROR(engine->buildExpertTables());
  COMPRESSA_RETURN_IF_ERROR(engine->allocateStates());
  // Step 5. The programs: arenas and argument vectors.
  const auto *programs = engine->art->root().programs();
  for (uint32_t i = 0; i < programs->size(); ++i)
    COMPRESSA_RETURN_IF_ERROR(
        engine->prepareProgram(*programs->Get(i), nullptr));
  engine->slots.resize(1);
  engine->current = 0;
  return engine;
}

uint32_t Engine::clearWeightBindings() {
  const auto *manifest = art->root().weights();
  uint32_t count = manifest ? manifest->size() : 0;
  weightViews.assign(count, nullptr);
  scaleViews.assign(count, nullptr);
  weightBytes.assign(count, 0);
  scaleBytes.assign(count, 0);
  return count;
}

Status Engine::bindWeights() {
  const auto *manifest = art->root().weights();
  uint32_t count = clearWeightBindings();
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
                             "artifact expects %s; the artifact was compiled "
                             "for other weight formats: %s",
                             dir, shown.c_str(), dtypeName(tensor->dtype),
                             dtypeName(expected),
                             recompileHint(*store, *tensor).c_str());
    std::vector<int64_t> shape = shapeOf(weight.shape());
    if (tensor->shape != shape)
      return COMPRESSA_ERROR(DataLoss,
                             "weights %s: tensor '%s' has shape %s, the "
                             "artifact expects %s",
                             dir, shown.c_str(),
                             formatShape(tensor->shape).c_str(),
                             formatShape(shape).c_str());
    if (weight.values_below() > 0)
      COMPRESSA_RETURN_IF_ERROR(
          checkValueRange(*tensor, weight.values_below(), dir));
    weightViews[i] = tensor;
    weightBytes[i] = tensor->nbytes;

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
    scaleViews[i] = scale;
    scaleBytes[i] = scale->nbytes;
  }
  return okStatus();
}

//===----------------------------------------------------------------------===//
// Random weights
//===----------------------------------------------------------------------===//

namespace {

bool endsWith(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// The UE8M0 byte of the power of two nearest to `value` (> 0), clamped to
/// the finite range.
uint32_t ue8m0Near(double value) {
  long exponent = std::lround(std::log2(value));
  return static_cast<uint32_t>(std::clamp<long>(127 + exponent, 1, 254));
}

uint64_t elementCount(const std::vector<int64_t> &shape) {
  uint64_t count = 1;
  for (int64_t d : shape)
    count *= static_cast<uint64_t>(d);
  return count;
}

} // namespace

StatusOr<RandomWeightSpecs> randomWeightSpecs(const fb::Weight &weight,
                                              uint32_t index, uint64_t seed) {
  std::string name(view(weight.name()));
  std::string dtypeText(view(weight.dtype()));
  std::vector<int64_t> shape = shapeOf(weight.shape());
  bool scaled = !view(weight.scale()).empty();
  RandomWeightSpecs out;
  RandomSpec &spec = out.weight;
  spec.key = randomStreamKey(seed, uint64_t(2) * index);
  spec.count = elementCount(shape);
  auto unsupported = [&]() {
    return COMPRESSA_ERROR(InvalidArgument,
                           "random weights: tensor '%s' has dtype %s%s, which "
                           "the generator does not make (expected F32, BF16, "
                           "F8_E4M3 or I8 with a scale, or I64 with "
                           "values_below)",
                           printable(name).c_str(), dtypeText.c_str(),
                           scaled ? " with a scale" : "");
  };
  // fan_in: the last logical dimension (an FP4 I8 [out, in/2] holds in).
  double fanIn = shape.empty() ? 1.0 : double(shape.back());
  if (dtypeText == "I8" && scaled)
    fanIn *= 2;
  bool matrix = shape.size() >= 2;
  double amplitude = matrix ? std::sqrt(3.0 / std::max(fanIn, 1.0)) : 0.1;
  if (name.find("hc_") != std::string::npos)
    amplitude = matrix ? amplitude / 10 : 0.1;
  double center = 0;
  if (endsWith(name, "norm.weight")) {
    center = 1;
    amplitude = 0.05;
  } else if (name == "embed.weight") {
    amplitude = 1;
  }
  uint32_t scaleByte = 127;
  if (dtypeText == "F32" || dtypeText == "BF16") {
    if (scaled)
      return unsupported();
    spec.kind = dtypeText == "F32" ? kRandomF32 : kRandomBF16;
    spec.center = static_cast<float>(center);
    spec.amplitude = static_cast<float>(amplitude);
  } else if (dtypeText == "F8_E4M3" && scaled) {
    spec.kind = kRandomE4M3;
    scaleByte = ue8m0Near(amplitude / 448.0);
  } else if (dtypeText == "I8" && scaled) {
    spec.kind = kRandomE2M1;
    scaleByte = ue8m0Near(amplitude / std::sqrt(3.0) / 2.926);
  } else if (dtypeText == "I64" && !scaled && weight.values_below() > 0 &&
             !shape.empty() && shape.back() > 0) {
    spec.kind = kRandomI64Index;
    spec.below = weight.values_below();
    spec.rowLength = static_cast<uint32_t>(shape.back());
  } else {
    return unsupported();
  }
  out.weightBytes = spec.count * randomElementBytes(spec.kind);
  if (scaled) {
    out.hasScale = true;
    out.scale.kind = kRandomConst8;
    out.scale.key = randomStreamKey(seed, uint64_t(2) * index + 1);
    out.scale.count = elementCount(shapeOf(weight.scale_shape()));
    out.scale.byteValue = scaleByte;
    out.scaleBytes = out.scale.count;
  }
  return out;
}

Status Engine::planRandomWeights() {
  const auto *manifest = art->root().weights();
  uint32_t count = clearWeightBindings();
  randomSpecs.clear();
  randomSpecs.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    COMPRESSA_ASSIGN_OR_RETURN(
        RandomWeightSpecs specs,
        randomWeightSpecs(*manifest->Get(i), i, randomSeed));
    weightBytes[i] = specs.weightBytes;
    scaleBytes[i] = specs.hasScale ? specs.scaleBytes : 0;
    randomSpecs.push_back(specs);
  }
  return okStatus();
}

/// `value` rounded up to a multiple of `alignment`.
static uint64_t alignUp(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

/// The bytes before the Scratch argument's address that hold the grid
/// barriers' word.
static constexpr uint64_t kScratchSyncBytes = 64;

/// The scratch area's size: the largest any launch with a Scratch argument
/// needs.
static uint64_t scratchNeeded(const Artifact &artifact) {
  uint64_t scratchSize = 0;
  const auto *programList = artifact.root().programs();
  for (uint32_t p = 0; p < programList->size(); ++p) {
    const fb::Program &program = *programList->Get(p);
    const auto *launches = program.launches();
    for (uint32_t l = 0; launches && l < launches->size(); ++l) {
      const fb::Launch &launch = *launches->Get(l);
      const fb::Kernel &kernel =
          *artifact.root().kernels()->Get(launch.kernel());
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
  return scratchSize;
}

uint64_t Engine::memoryNeeded(bool withWeights) const {
  // Sizes were checked by the reader and the checkpoint loader; the sum of
  // a few thousand of them cannot overflow 64 bits in practice, and
  // saturates if it would.
  uint64_t total = 0;
  auto add = [&total](uint64_t bytes) {
    if (__builtin_add_overflow(total, bytes, &total))
      total = std::numeric_limits<uint64_t>::max();
  };
  for (size_t i = 0; withWeights && i < weightBytes.size(); ++i) {
    if (weightBytes[i])
      add(alignUp(weightBytes[i], 256));
    if (scaleBytes[i])
      add(alignUp(scaleBytes[i], 256));
  }
  const auto *tables = art->root().expert_tables();
  for (uint32_t t = 0; tables && t < tables->size(); ++t)
    add(uint64_t(16) * tables->Get(t)->count());
  const auto *stateList = art->root().states();
  for (uint32_t s = 0; stateList && s < stateList->size(); ++s)
    add(stateList->Get(s)->bytes());
  const auto *programList = art->root().programs();
  for (uint32_t p = 0; p < programList->size(); ++p)
    add(programList->Get(p)->arena_bytes());
  add(kScratchSyncBytes + scratchNeeded(*art));
  if (const fb::Program *batch = art->findProgram(kBatchedDecode)) {
    add(uint64_t(stateList ? stateList->size() : 0) * kMaxBatchLimit * 8);
    add(uint64_t(2) * batch->max_tokens() * 8);
  }
  return total;
}

std::string Engine::largestMemoryPart() const {
  std::string name = "scratch";
  uint64_t most = kScratchSyncBytes + scratchNeeded(*art);
  auto consider = [&](uint64_t bytes, const std::string &what) {
    if (bytes > most) {
      most = bytes;
      name = what;
    }
  };
  const auto *stateList = art->root().states();
  for (uint32_t s = 0; stateList && s < stateList->size(); ++s)
    consider(stateList->Get(s)->bytes(),
             "state '" + printable(view(stateList->Get(s)->name())) + "'");
  const auto *programList = art->root().programs();
  for (uint32_t p = 0; p < programList->size(); ++p)
    consider(programList->Get(p)->arena_bytes(),
             "program '" + printable(view(programList->Get(p)->name())) +
                 "' arena");
  return name + ", " + std::to_string(most) + " bytes";
}

Status Engine::generateWeights() {
  // One buffer, each tensor 256-byte aligned, filled where it lives.
  size_t count = randomSpecs.size();
  std::vector<uint64_t> weightOffset(count), scaleOffset(count);
  uint64_t total = 0;
  for (size_t i = 0; i < count; ++i) {
    weightOffset[i] = total;
    total += alignUp(std::max<uint64_t>(weightBytes[i], 1), 256);
    if (randomSpecs[i].hasScale) {
      scaleOffset[i] = total;
      total += alignUp(std::max<uint64_t>(scaleBytes[i], 1), 256);
    }
  }
  COMPRESSA_ASSIGN_OR_RETURN(generatedWeights,
                             backend->allocate(total, weightsWhat));
  const auto *manifest = art->root().weights();
  weightAddress.assign(count, 0);
  scaleAddress.assign(count, 0);
  for (size_t i = 0; i < count; ++i) {
    std::string what = weightsWhat + ": tensor '" +
                       printable(view(manifest->Get(i)->name())) + "'";
    COMPRESSA_RETURN_IF_ERROR(backend->generate(
        *generatedWeights, weightOffset[i], randomSpecs[i].weight, what));
    weightAddress[i] = generatedWeights->address() + weightOffset[i];
    if (!randomSpecs[i].hasScale)
      continue;
    COMPRESSA_RETURN_IF_ERROR(backend->generate(
        *generatedWeights, scaleOffset[i], randomSpecs[i].scale,
        what + " (its scale)"));
    scaleAddress[i] = generatedWeights->address() + scaleOffset[i];
  }
  return okStatus();
}

Status Engine::placeWeights() {
  if (randomWeights)
    return generateWeights();
  // Each checkpoint tensor once, even if two manifest entries bind to it.
  std::vector<HostTensor> tensors;
  std::unordered_map<const TensorView *, size_t> slot;
  auto indexOf = [&](const TensorView *view) -> size_t {
    auto [it, inserted] = slot.emplace(view, tensors.size());
    if (inserted)
      tensors.push_back({view->data, view->nbytes, view->name});
    return it->second;
  };
  size_t count = weightViews.size();
  std::vector<size_t> weightSlot(count, SIZE_MAX), scaleSlot(count, SIZE_MAX);
  for (size_t i = 0; i < count; ++i) {
    if (weightViews[i])
      weightSlot[i] = indexOf(weightViews[i]);
    if (scaleViews[i])
      scaleSlot[i] = indexOf(scaleViews[i]);
  }
  COMPRESSA_ASSIGN_OR_RETURN(
      std::vector<uint64_t> addresses,
      backend->placeWeights(tensors, "weights " + store->directory()));
  weightAddress.assign(count, 0);
  scaleAddress.assign(count, 0);
  for (size_t i = 0; i < count; ++i) {
    if (weightSlot[i] != SIZE_MAX)
      weightAddress[i] = addresses[weightSlot[i]];
    if (scaleSlot[i] != SIZE_MAX)
      scaleAddress[i] = addresses[scaleSlot[i]];
  }
  return okStatus();
}

Status Engine::buildExpertTables() {
  const auto *tables = art->root().expert_tables();
  uint32_t count = tables ? tables->size() : 0;
  expertTables.clear();
  expertTableMissing.assign(count, std::string());
  for (uint32_t t = 0; t < count; ++t) {
    const fb::ExpertTable &table = *tables->Get(t);
    uint32_t experts = table.count();
    // The data addresses of experts 0..count-1, then their scale addresses
    // (0 if unscaled). Weights are read-only; kernels must not write them.
    std::vector<uint64_t> addresses(size_t(2) * experts, 0);
    for (uint32_t e = 0; e < experts; ++e) {
      std::string name =
          Artifact::expertWeightName(view(table.pattern()), table.first() + e);
      int64_t index = art->findWeight(name); // Validated to exist.
      addresses[e] = weightAddress[index];
      addresses[experts + e] = scaleAddress[index];
      if (!weightAddress[index] && expertTableMissing[t].empty())
        expertTableMissing[t] = name;
    }
    std::string what = art->path() + ": expert_tables[" + std::to_string(t) +
                       "] ('" + printable(view(table.pattern())) + "')";
    uint64_t bytes = uint64_t(addresses.size()) * 8;
    COMPRESSA_ASSIGN_OR_RETURN(std::unique_ptr<BackendBuffer> buffer,
                               backend->allocate(bytes, what));
    COMPRESSA_RETURN_IF_ERROR(
        backend->write(*buffer, 0, addresses.data(), bytes, what));
    expertTables.push_back(std::move(buffer));
  }
  return okStatus();
}

Status Engine::allocateStateBuffers() {
  const auto *list = art->root().states();
  uint32_t count = list ? list->size() : 0;
  states.clear();
  states.reserve(count);
  std::string slotWhat =
      current ? " of slot " + std::to_string(current) : std::string();
  for (uint32_t s = 0; s < count; ++s) {
    const fb::State &state = *list->Get(s);
    COMPRESSA_ASSIGN_OR_RETURN(
        std::unique_ptr<BackendBuffer> buffer,
        backend->allocate(state.bytes(),
                          art->path() + ": states[" + std::to_string(s) +
                              "] ('" + printable(view(state.name())) + "')" +
                              slotWhat));
    states.push_back(std::move(buffer));
  }
  reset();
  return resetError;
}

Status Engine::allocateStates() {
  COMPRESSA_RETURN_IF_ERROR(allocateStateBuffers());

  // One scratch area serves every launch: programs and launches run one at a
  // time. Its first 64 bytes, zeroed here, are the grid barriers' word; the
  // Scratch argument points past them (artifact.fbs, Kernel.grid_sync).
  COMPRESSA_ASSIGN_OR_RETURN(
      scratch, backend->allocate(kScratchSyncBytes + scratchNeeded(*art),
                                 art->path() + ": scratch"));
  COMPRESSA_RETURN_IF_ERROR(backend->fill(*scratch, 0, kScratchSyncBytes, 0,
                                          art->path() + ": scratch sync word"));

  // The batched decode program's tables of per-slot state addresses (room
  // for every slot an engine may hold, so that their address, which its
  // argument vectors and CUDA graph hold, never changes) and its per-token
  // inputs; slot 0's entries now, the others' as slots are added.
  if (const fb::Program *batch = art->findProgram(kBatchedDecode)) {
    batchTokens = batch->max_tokens();
    uint64_t tableBytes =
        std::max<uint64_t>(1, uint64_t(states.size()) * kMaxBatchLimit * 8);
    COMPRESSA_ASSIGN_OR_RETURN(
        stateTables,
        backend->allocate(tableBytes, art->path() + ": state tables"));
    COMPRESSA_ASSIGN_OR_RETURN(
        batchInputs,
        backend->allocate(uint64_t(2) * batchTokens * 8,
                          art->path() + ": batched decode positions and slots"));
    COMPRESSA_RETURN_IF_ERROR(writeStateTable(0));
  }
  return okStatus();
}

Status Engine::writeStateTable(int64_t slot, bool clear) {
  if (!stateTables)
    return okStatus();
  std::string what = art->path() + ": state tables, slot " + std::to_string(slot);
  for (size_t s = 0; s < states.size(); ++s) {
    uint64_t address = clear ? 0 : states[s]->address();
    COMPRESSA_RETURN_IF_ERROR(backend->write(
        *stateTables, (uint64_t(s) * kMaxBatchLimit + uint64_t(slot)) * 8,
        &address, 8, what));
  }
  return okStatus();
}

void Engine::reset() {
  if (rankGroup)
    rankGroup->resetPeers();
  const auto *list = art->root().states();
  resetError = okStatus();
  lastResetBytes = 0;
  for (size_t s = 0; s < states.size(); ++s) {
    BackendBuffer &buffer = *states[s];
    const fb::State &state = *list->Get(s);
    std::string what = art->path() + ": resetting states[" +
                       std::to_string(s) + "] ('" +
                       printable(view(state.name())) + "')";
    // Only what the positions since the last reset can have written: a
    // state that grows with the context (compressed entries, indexer keys:
    // one row per context_ratio positions, possibly GiBs) is cleared up to
    // the row of the highest position used; a fixed-size one (a window,
    // compressor slots) whole. Kernels write the row of position p at
    // p / context_ratio and read only completed rows, so rows past the
    // high-water mark still hold their initial value.
    uint64_t bytes = buffer.size();
    if (state.context_ratio() > 0 &&
        state.init() == fb::StateInit::Zero) {
      uint64_t ratio = state.context_ratio();
      uint64_t used = static_cast<uint64_t>(positionsUsed);
      uint64_t rows = state.rows() + (used + ratio - 1) / ratio;
      uint64_t prefix;
      if (!__builtin_mul_overflow(rows, state.row_bytes(), &prefix))
        bytes = std::min(bytes, prefix);
    }
    Status status = okStatus();
    if (state.init() == fb::StateInit::CompressorState) {
      // kv half zero, score half -inf (spec §5.1); the size is a multiple
      // of 8 (checked by the reader), so the half is a multiple of 4.
      uint64_t half = buffer.size() / 2;
      uint32_t minusInf = 0xFF800000u; // f32 -inf
      status = backend->fill(buffer, 0, half, 0, what);
      if (status.ok())
        status = backend->fill(buffer, half, buffer.size() - half, minusInf,
                               what);
    } else if (bytes > 0) {
      status = backend->fill(buffer, 0, bytes, 0, what);
    }
    lastResetBytes += bytes;
    if (!status.ok() && resetError.ok())
      resetError = status;
  }
  positionsUsed = 0;
}

Status Engine::prepareProgram(const fb::Program &def,
                              std::shared_ptr<BackendBuffer> sharedArena) {
  auto program = std::make_unique<PreparedProgram>();
  program->name = std::string(view(def.name()));
  program->maxTokens = def.max_tokens();
  std::string where = art->path() + ": program '" + printable(program->name) +
                      "'";
  if (sharedArena) {
    program->arena = std::move(sharedArena);
  } else {
    COMPRESSA_ASSIGN_OR_RETURN(std::unique_ptr<BackendBuffer> arena,
                               backend->allocate(def.arena_bytes(),
                                                 where + " arena"));
    program->arena = std::move(arena);
  }
  uint64_t arena = program->arena->address();
  const auto *buffers = def.buffers();
  program->inputIdsOffset = buffers->Get(def.input_ids())->offset();
  program->logitsOffset = buffers->Get(def.logits())->offset();

  const auto *launches = def.launches();
  uint32_t numLaunches = launches ? launches->size() : 0;
  std::vector<LaunchPlan> plans(numLaunches);
  for (uint32_t l = 0; l < numLaunches; ++l) {
    const fb::Launch &launch = *launches->Get(l);
    LaunchPlan &plan = plans[l];
    plan.kernel = launch.kernel();
    const fb::Kernel &kernel = *art->root().kernels()->Get(launch.kernel());
    const auto *args = launch.args();
    uint32_t numArgs = args ? args->size() : 0;
    plan.args.assign(numArgs, LaunchArg());
    auto needsMissing = [&](const std::string &weight) {
      if (program->unavailable.empty())
        program->unavailable =
            where + ": launch " + std::to_string(l) + " (kernel '" +
            printable(view(kernel.name())) + "') needs the optional weight '" +
            printable(weight) + "', which the checkpoint " +
            (store ? store->directory() : weightsWhat) + " lacks";
    };
    for (uint32_t a = 0; a < numArgs; ++a) {
      const fb::Arg &arg = *args->Get(a);
      uint32_t index = arg.index(); // Range-checked by the reader.
      LaunchArg &slot = plan.args[a];
      switch (arg.kind()) {
      case fb::ArgKind::Buffer:
        slot.address = arena + buffers->Get(index)->offset();
        break;
      case fb::ArgKind::Weight:
      case fb::ArgKind::WeightScale:
        slot.address = arg.kind() == fb::ArgKind::Weight ? weightAddress[index]
                                                         : scaleAddress[index];
        if (!weightAddress[index])
          needsMissing(std::string(
              view(art->root().weights()->Get(index)->name())));
        break;
      case fb::ArgKind::ExpertTable:
        slot.address = expertTables[index]->address();
        if (!expertTableMissing[index].empty())
          needsMissing(expertTableMissing[index]);
        break;
      case fb::ArgKind::State:
        slot.address = states[index]->address();
        break;
      case fb::ArgKind::Tokens:
        slot.kind = LaunchArg::Kind::Tokens;
        break;
      case fb::ArgKind::StartPos:
        slot.kind = LaunchArg::Kind::StartPos;
        break;
      case fb::ArgKind::LogitRows:
        slot.kind = LaunchArg::Kind::LogitRows;
        program->logitRows = true;
        break;
      case fb::ArgKind::Scratch:
        slot.address = scratch->address() + kScratchSyncBytes;
        break;
      case fb::ArgKind::StateTable:
      case fb::ArgKind::Positions:
      case fb::ArgKind::SlotIds:
        if (!stateTables)
          return COMPRESSA_ERROR(DataLoss,
                                 "%s: launch %u passes a batched decode "
                                 "argument (%s), but the artifact has no "
                                 "program '%s'",
                                 where.c_str(), l,
                                 fb::EnumNameArgKind(arg.kind()), kBatchedDecode);
        if (arg.kind() == fb::ArgKind::StateTable)
          slot.address = stateTables->address() +
                         uint64_t(index) * kMaxBatchLimit * 8;
        else
          slot.address = batchInputs->address() +
                         (arg.kind() == fb::ArgKind::SlotIds
                              ? uint64_t(batchTokens) * 8
                              : 0);
        break;
      case fb::ArgKind::TensorMap: {
        // Validated by the reader: a whole F8_E4M3 weight or a part of the
        // scratch area.
        const fb::TensorMap &map = *def.tensor_maps()->Get(index);
        slot.kind = LaunchArg::Kind::TensorMap;
        slot.address = map.source() == fb::ArgKind::Weight
                           ? weightAddress[map.index()]
                           : scratch->address() + kScratchSyncBytes;
        if (!slot.address)
          needsMissing(std::string(
              view(art->root().weights()->Get(map.index())->name())));
        slot.address += map.offset();
        slot.rows = map.rows();
        slot.cols = map.cols();
        slot.boxRows = map.box_rows() ? map.box_rows() : 128;
        break;
      }
      }
    }
  }
  program->numLaunches = numLaunches;
  program->idsWhat = where + ": the input ids";
  program->logitsWhat = where + ": the logits";
  program->batched = program->name == kBatchedDecode;
  bool graph = decodeGraph && (program->name == "decode" || program->batched);
  COMPRESSA_ASSIGN_OR_RETURN(
      program->launches,
      backend->prepareProgram(program->name, std::move(plans), graph));
  if (program->batched)
    batchProgram = std::move(program);
  else
    programs.push_back(std::move(program));
  return okStatus();
}

//===----------------------------------------------------------------------===//
// Engine: sequence slots
//===----------------------------------------------------------------------===//

static Status checkSequence(const int64_t *ids, int64_t count,
                            int64_t startPos, int64_t vocab,
                            int64_t contextLimit);

int64_t Engine::artifactMaxBatch() const {
  return std::max<int64_t>(1, art->model().max_batch());
}

void Engine::swapSlot(size_t index) {
  Slot &slot = slots[index];
  std::swap(states, slot.states);
  std::swap(programs, slot.programs);
  std::swap(resetError, slot.resetError);
  std::swap(positionsUsed, slot.positionsUsed);
  std::swap(lastResetBytes, slot.lastResetBytes);
}

Status Engine::selectSlot(int64_t slot) {
  if (slot < 0 || slot >= slotCount())
    return COMPRESSA_ERROR(OutOfRange,
                           "%s: slot %lld is out of range (the engine holds "
                           "%lld slots)",
                           art->path().c_str(), static_cast<long long>(slot),
                           static_cast<long long>(slotCount()));
  if (static_cast<size_t>(slot) == current)
    return okStatus();
  swapSlot(current);
  current = static_cast<size_t>(slot);
  swapSlot(current);
  return okStatus();
}

Status Engine::buildSlot() {
  // Slot 0's programs (in slots[0] while a new slot is built) lend their
  // arenas: programs run one at a time, whichever slot they serve.
  const std::vector<std::unique_ptr<PreparedProgram>> &first =
      slots[0].programs;
  COMPRESSA_RETURN_IF_ERROR(allocateStateBuffers());
  const auto *defs = art->root().programs();
  programs.clear();
  // The batched decode program exists once (batchProgram): it reaches every
  // slot's states through the state tables.
  size_t lent = 0;
  for (uint32_t i = 0; i < defs->size(); ++i)
    if (view(defs->Get(i)->name()) != kBatchedDecode)
      COMPRESSA_RETURN_IF_ERROR(
          prepareProgram(*defs->Get(i), first[lent++]->arena));
  return okStatus();
}

Status Engine::setSlotCount(int64_t count) {
  if (rankGroup && count != 1)
    return COMPRESSA_ERROR(Unimplemented,
                           "%s: an engine of %d ranks holds one sequence",
                           art->path().c_str(), rankGroup->size());
  if (count < 1 || count > int64_t(kMaxBatchLimit))
    return COMPRESSA_ERROR(InvalidArgument,
                           "%s: cannot hold %lld sequences (expected 1 to "
                           "%u slots)",
                           art->path().c_str(), static_cast<long long>(count),
                           kMaxBatchLimit);
  COMPRESSA_RETURN_IF_ERROR(selectSlot(0));
  int64_t have = slotCount();
  if (count <= have) {
    // Dropped slots leave the state tables (their states are freed).
    for (int64_t k = count; k < have; ++k)
      COMPRESSA_RETURN_IF_ERROR(writeStateTable(k, /*clear=*/true));
    slots.resize(static_cast<size_t>(count));
    return okStatus();
  }
  // Room for the new slots' states, all checked at once (on a device).
  uint64_t perSlot = 0;
  const auto *list = art->root().states();
  for (uint32_t s = 0; list && s < list->size(); ++s)
    perSlot += list->Get(s)->bytes();
  uint64_t needed;
  if (__builtin_mul_overflow(perSlot, uint64_t(count - have), &needed))
    needed = std::numeric_limits<uint64_t>::max();
  COMPRESSA_RETURN_IF_ERROR(backend->reserve(
      needed, art->path() + " (decode states of " +
                  std::to_string(count - have) + " more sequence slots)"));
  // Slot 0 goes to slots[0]; each new slot is built in the members, then
  // stored in its place.
  swapSlot(0);
  Status status = okStatus();
  for (int64_t k = have; k < count && status.ok(); ++k) {
    slots.emplace_back();
    current = static_cast<size_t>(k);
    status = buildSlot();
    if (status.ok())
      status = writeStateTable(k);
    if (status.ok())
      swapSlot(current);
  }
  if (!status.ok()) {
    // Drop the slot that failed half-built; the complete ones stay.
    states.clear();
    programs.clear();
    slots.pop_back();
  }
  current = 0;
  swapSlot(0);
  return status;
}

StatusOr<std::vector<float>> Engine::decodeStep(const int64_t *slotIds,
                                                const int64_t *ids,
                                                const int64_t *positions,
                                                int64_t count) {
  if (count < 1)
    return COMPRESSA_ERROR(InvalidArgument,
                           "%s: a decode step needs at least one sequence",
                           art->path().c_str());
  std::vector<bool> seen(slots.size(), false);
  for (int64_t i = 0; i < count; ++i) {
    if (slotIds[i] < 0 || slotIds[i] >= slotCount() || seen[slotIds[i]])
      return COMPRESSA_ERROR(InvalidArgument,
                             "%s: decode step entry %lld names slot %lld "
                             "(expected distinct slots in [0, %lld))",
                             art->path().c_str(), static_cast<long long>(i),
                             static_cast<long long>(slotIds[i]),
                             static_cast<long long>(slotCount()));
    seen[slotIds[i]] = true;
    COMPRESSA_RETURN_IF_ERROR(
        checkSequence(ids + i, 1, positions[i], vocab, contextLimit));
  }
  std::vector<float> logits(static_cast<size_t>(count) *
                            static_cast<size_t>(vocab));
  // One call of the batched decode program for all of them.
  if (int64_t most = batchedDecodeMax(); most > 0) {
    if (count > most)
      return COMPRESSA_ERROR(InvalidArgument,
                             "%s: a decode step of %lld sequences, but the "
                             "batched decode program runs at most %lld per "
                             "step (compressa-compile --max-batch)",
                             art->path().c_str(), static_cast<long long>(count),
                             static_cast<long long>(most));
    PreparedProgram *program = findPrepared(kBatchedDecode);
    if (!program->unavailable.empty())
      return Status(StatusCode::FailedPrecondition, program->unavailable,
                    __FILE__, __LINE__);
    COMPRESSA_RETURN_IF_ERROR(
        runBatched(*program, slotIds, ids, positions, count, logits.data()));
    return logits;
  }
  size_t selected = current;
  Status status = okStatus();
  for (int64_t i = 0; i < count && status.ok(); ++i) {
    status = selectSlot(slotIds[i]);
    PreparedProgram *program = status.ok() ? findPrepared("decode") : nullptr;
    if (status.ok() && !program->unavailable.empty())
      status = Status(StatusCode::FailedPrecondition, program->unavailable,
                      __FILE__, __LINE__);
    if (status.ok())
      status = resetError;
    if (status.ok())
      status = run(*program, ids + i, 1, positions[i], 1,
                   logits.data() + size_t(i) * size_t(vocab));
  }
  Status back = selectSlot(static_cast<int64_t>(selected));
  COMPRESSA_RETURN_IF_ERROR(status);
  COMPRESSA_RETURN_IF_ERROR(back);
  return logits;
}

int64_t Engine::batchedDecodeMax() const {
  // Ranks decode slot by slot (an engine of several holds one sequence).
  if (rankGroup || !stateTables)
    return 0;
  const PreparedProgram *program = findPrepared(kBatchedDecode);
  return program ? program->maxTokens : 0;
}

Status Engine::runBatched(PreparedProgram &program, const int64_t *slotIds,
                          const int64_t *ids, const int64_t *positions,
                          int64_t count, float *logitsOut) {
  // Every slot's reset must have been queued; each slot's next reset clears
  // up to the positions written now.
  for (int64_t i = 0; i < count; ++i) {
    size_t k = static_cast<size_t>(slotIds[i]);
    COMPRESSA_RETURN_IF_ERROR(k == current ? resetError : slots[k].resetError);
    int64_t &used = k == current ? positionsUsed : slots[k].positionsUsed;
    used = std::max(used, positions[i] + 1);
  }
  // Queued in order: ids, positions and slots in, the launches, logits out.
  // The kernels read the slots and positions from device memory, so one
  // captured graph serves every set of slots.
  uint64_t bytes = uint64_t(count) * 8;
  std::string what = program.idsWhat + " (positions and slots)";
  COMPRESSA_RETURN_IF_ERROR(backend->write(*program.arena,
                                           program.inputIdsOffset, ids, bytes,
                                           program.idsWhat));
  COMPRESSA_RETURN_IF_ERROR(
      backend->write(*batchInputs, 0, positions, bytes, what));
  COMPRESSA_RETURN_IF_ERROR(backend->write(
      *batchInputs, uint64_t(batchTokens) * 8, slotIds, bytes, what));
  COMPRESSA_RETURN_IF_ERROR(backend->run(*program.launches, count, 0, count));
  return backend->read(logitsOut, *program.arena, program.logitsOffset,
                       uint64_t(count) * uint64_t(vocab) * 4,
                       program.logitsWhat);
}

//===----------------------------------------------------------------------===//
// Engine: running
//===----------------------------------------------------------------------===//

int64_t Engine::rankCount() const {
  return rankGroup ? rankGroup->size() : 1;
}

int64_t Engine::eosTokenId() const { return art->model().eos_token_id(); }

bool Engine::hasProgram(std::string_view name) const {
  return art->findProgram(name) != nullptr;
}

int64_t Engine::maxTokens(std::string_view name) const {
  const fb::Program *program = art->findProgram(name);
  return program ? program->max_tokens() : 0;
}

const uint8_t *Engine::stateData(size_t index) const {
  return index < states.size() ? states[index]->hostData() : nullptr;
}

uint64_t Engine::stateBytes(size_t index) const {
  return index < states.size() ? states[index]->size() : 0;
}

Status Engine::fillSyntheticContext(int64_t from, int64_t to, uint64_t seed) {
  if (from < 0 || from > to || to > contextLimit)
    return COMPRESSA_ERROR(OutOfRange,
                           "%s: cannot bring the decode state from %lld to "
                           "%lld positions (expected 0 <= from <= to <= the "
                           "maximum context %lld)",
                           art->path().c_str(), static_cast<long long>(from),
                           static_cast<long long>(to),
                           static_cast<long long>(contextLimit));
  COMPRESSA_RETURN_IF_ERROR(resetError);
  if (rankGroup)
    COMPRESSA_RETURN_IF_ERROR(rankGroup->fillPeers(from, to, seed));
  const auto *list = art->root().states();
  for (size_t s = 0; s < states.size(); ++s) {
    const fb::State &state = *list->Get(s);
    uint64_t ratio = state.context_ratio();
    if (ratio == 0 || state.row_bytes() % 4 != 0)
      continue;
    uint64_t firstRow = state.rows() + uint64_t(from) / ratio;
    uint64_t endRow = state.rows() + uint64_t(to) / ratio;
    if (endRow <= firstRow)
      continue;
    RandomSpec spec;
    spec.kind = kRandomStatePairs;
    spec.key = randomStreamKey(seed, uint64_t(1) << 40 | s);
    uint64_t wordsPerRow = state.row_bytes() / 4;
    spec.first = firstRow * wordsPerRow;
    spec.count = (endRow - firstRow) * wordsPerRow;
    COMPRESSA_RETURN_IF_ERROR(backend->generate(
        *states[s], firstRow * state.row_bytes(), spec,
        art->path() + ": filling states[" + std::to_string(s) + "] ('" +
            printable(view(state.name())) + "') up to position " +
            std::to_string(to)));
  }
  positionsUsed = std::max(positionsUsed, to);
  return okStatus();
}

StatusOr<std::vector<uint8_t>> Engine::readState(size_t index) {
  if (index >= states.size())
    return COMPRESSA_ERROR(OutOfRange,
                           "state index %zu is out of range (the artifact has "
                           "%zu states)",
                           index, states.size());
  BackendBuffer &buffer = *states[index];
  std::vector<uint8_t> bytes(static_cast<size_t>(buffer.size()));
  COMPRESSA_RETURN_IF_ERROR(backend->read(
      bytes.data(), buffer, 0, buffer.size(),
      art->path() + ": reading states[" + std::to_string(index) + "]"));
  return bytes;
}

uint64_t Engine::scratchBytes() const {
  return scratch->size() - kScratchSyncBytes;
}

const char *Engine::backendName() const { return backend->name(); }

std::string Engine::backendDescription() const {
  return backend->describe();
}

int64_t Engine::launchesPerDecodeStep(bool batched) const {
  const PreparedProgram *program = findPrepared(batched ? kBatchedDecode : "decode");
  return program ? backend->launchesPerRun(*program->launches) : 0;
}

int64_t Engine::decodeKernels(bool batched) const {
  const PreparedProgram *program = findPrepared(batched ? kBatchedDecode : "decode");
  return program ? program->numLaunches : 0;
}

bool Engine::decodeUsesGraph(bool batched) const {
  const PreparedProgram *program = findPrepared(batched ? kBatchedDecode : "decode");
  return program && backend->usesGraph(*program->launches);
}

LaunchCounters Engine::launchCounters() const { return backend->counters(); }

Engine::PreparedProgram *Engine::findPrepared(std::string_view name) {
  for (auto &program : programs)
    if (program->name == name)
      return program.get();
  if (batchProgram && batchProgram->name == name)
    return batchProgram.get();
  return nullptr;
}

const Engine::PreparedProgram *
Engine::findPrepared(std::string_view name) const {
  for (const auto &program : programs)
    if (program->name == name)
      return program.get();
  if (batchProgram && batchProgram->name == name)
    return batchProgram.get();
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

Status Engine::run(PreparedProgram &program, const int64_t *ids,
                   int64_t count, int64_t startPos, int64_t logitRows,
                   float *logitsOut) {
  // Several ranks: each runs its programs at once (collectives join them);
  // the other ranks compute every row (their logits are not read).
  if (rankGroup && !rankGroup->inLeaderRun())
    return rankGroup->runAll(program.name, ids, count, startPos, [&] {
      return run(program, ids, count, startPos, logitRows, logitsOut);
    });
  // The launches may write the state of every position of this call; the
  // next reset clears up to there.
  positionsUsed = std::max(positionsUsed, startPos + count);
  // Queued in order on the backend: ids in, the launches, logits out. A
  // head that computes the asked rows writes them to rows 0..L-1; one
  // from before LogitRows computes all, and the last L are copied.
  uint64_t rowBytes = uint64_t(vocab) * 4;
  uint64_t firstRow = program.logitRows ? 0 : uint64_t(count - logitRows);
  COMPRESSA_RETURN_IF_ERROR(backend->write(*program.arena,
                                           program.inputIdsOffset, ids,
                                           uint64_t(count) * 8,
                                           program.idsWhat));
  COMPRESSA_RETURN_IF_ERROR(backend->run(
      *program.launches, count, startPos, program.logitRows ? logitRows : count));
  if (logitRows > 0)
    COMPRESSA_RETURN_IF_ERROR(backend->read(
        logitsOut, *program.arena, program.logitsOffset + firstRow * rowBytes,
        uint64_t(logitRows) * rowBytes, program.logitsWhat));
  if (const char *path = std::getenv("COMPRESSA_DUMP_ARENA"); path && !arenaDumped)
    COMPRESSA_RETURN_IF_ERROR(dumpArena(program, path));
  return okStatus();
}

Status Engine::dumpArena(const PreparedProgram &program, const char *path) {
  // A debugging aid: the arena after the first call (every buffer that
  // crosses dispatches), and an index "name offset bytes" per buffer, to
  // compare targets buffer by buffer.
  arenaDumped = true;
  std::vector<uint8_t> bytes(program.arena->size());
  COMPRESSA_RETURN_IF_ERROR(backend->read(bytes.data(), *program.arena, 0,
                                          bytes.size(), "the arena dump"));
  FILE *out = std::fopen(path, "wb");
  if (!out)
    return COMPRESSA_ERROR(Unavailable, "cannot write the arena dump %s", path);
  size_t written = std::fwrite(bytes.data(), 1, bytes.size(), out);
  std::fclose(out);
  std::string indexPath = std::string(path) + ".index";
  FILE *index = std::fopen(indexPath.c_str(), "w");
  if (!index || written != bytes.size())
    return COMPRESSA_ERROR(Unavailable, "cannot write the arena dump %s", path);
  const fb::Program *def = art->findProgram(program.name);
  for (uint32_t b = 0; def && def->buffers() && b < def->buffers()->size(); ++b) {
    const fb::Buffer &buffer = *def->buffers()->Get(b);
    std::fprintf(index, "%s %llu %llu\n",
                 printable(view(buffer.name())).c_str(),
                 static_cast<unsigned long long>(buffer.offset()),
                 static_cast<unsigned long long>(buffer.bytes()));
  }
  std::fclose(index);
  return okStatus();
}

StatusOr<std::vector<float>> Engine::forward(const std::string &name,
                                             const int64_t *ids, int64_t count,
                                             int64_t startPos) {
  return forward(name, ids, count, startPos, count);
}

StatusOr<std::vector<float>> Engine::forward(const std::string &name,
                                             const int64_t *ids, int64_t count,
                                             int64_t startPos,
                                             int64_t logitRows) {
  PreparedProgram *program = findPrepared(name);
  if (!program)
    return COMPRESSA_ERROR(NotFound, "%s: no program is named '%s'",
                           art->path().c_str(), printable(name).c_str());
  if (program->batched)
    return COMPRESSA_ERROR(InvalidArgument,
                           "%s: program '%s' decodes one token of each of "
                           "several sequences; it runs through decodeStep",
                           art->path().c_str(), kBatchedDecode);
  COMPRESSA_RETURN_IF_ERROR(checkInputs(*program, ids, count, startPos));
  COMPRESSA_RETURN_IF_ERROR(checkLogitRows(*program, count, logitRows));
  COMPRESSA_RETURN_IF_ERROR(resetError);
  std::vector<float> logits(static_cast<size_t>(logitRows) *
                            static_cast<size_t>(vocab));
  COMPRESSA_RETURN_IF_ERROR(
      run(*program, ids, count, startPos, logitRows, logits.data()));
  return logits;
}

Status Engine::checkLogitRows(const PreparedProgram &program, int64_t count,
                              int64_t logitRows) const {
  if (logitRows >= 0 && logitRows <= count)
    return okStatus();
  return COMPRESSA_ERROR(InvalidArgument,
                         "%s: program '%s': %lld logit rows asked of a call of "
                         "%lld tokens (expected 0 <= rows <= tokens)",
                         art->path().c_str(), printable(program.name).c_str(),
                         static_cast<long long>(logitRows),
                         static_cast<long long>(count));
}

bool Engine::computesLogitRows(std::string_view name) const {
  const PreparedProgram *program = findPrepared(name);
  return program && program->logitRows;
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
  COMPRESSA_RETURN_IF_ERROR(resetError);
  std::vector<float> logits(static_cast<size_t>(count) *
                            static_cast<size_t>(vocab));
  for (int64_t done = 0; done < count; done += step) {
    int64_t n = std::min(step, count - done);
    COMPRESSA_RETURN_IF_ERROR(run(
        *program, ids + done, n, startPos + done, n,
        logits.data() + static_cast<size_t>(done) * static_cast<size_t>(vocab)));
  }
  return logits;
}

StatusOr<std::vector<float>> Engine::prefillLast(const int64_t *ids,
                                                 int64_t count,
                                                 int64_t startPos,
                                                 int64_t chunk, bool lastRow) {
  if (count < 1)
    return COMPRESSA_ERROR(InvalidArgument,
                           "%s: prefillLast needs at least one token, not %lld",
                           art->path().c_str(), static_cast<long long>(count));
  COMPRESSA_RETURN_IF_ERROR(
      checkSequence(ids, count, startPos, vocab, contextLimit));
  PreparedProgram *program = findPrepared("prefill");
  int64_t step = 1;
  if (program) {
    step = program->maxTokens;
    if (chunk > 0)
      step = std::min(step, chunk);
  } else {
    program = findPrepared("decode");
  }
  if (!program->unavailable.empty())
    return Status(StatusCode::FailedPrecondition, program->unavailable,
                  __FILE__, __LINE__);
  COMPRESSA_RETURN_IF_ERROR(resetError);
  // Chunks before the last compute no logits; the last one the row of its
  // last token.
  std::vector<float> logits(lastRow ? static_cast<size_t>(vocab) : 0);
  for (int64_t done = 0; done < count; done += step) {
    int64_t n = std::min(step, count - done);
    bool last = lastRow && done + n == count;
    COMPRESSA_RETURN_IF_ERROR(run(*program, ids + done, n, startPos + done,
                                  last ? 1 : 0, logits.data()));
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
  // Sampling needs the last position's logits only.
  COMPRESSA_ASSIGN_OR_RETURN(std::vector<float> logits,
                             engine.prefillLast(prompt, promptLength, 0, chunk));
  result.prefillSeconds = secondsSince(start);
  const float *row = logits.data();

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
