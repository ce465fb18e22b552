// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the artifact reader and verifier
// (ArtifactReader::readBuffer, runtime/format/artifact_reader.h): digest
// trailer, FlatBuffers verification, version and semantic validation.
//
// The input is an artifact's FlatBuffer. It is read twice: sealed with its
// digest (sealArtifact), so mutations reach the verifier and the validator
// instead of stopping at the digest, and as it is (the trailer checks on
// arbitrary bytes). An accepted artifact is then walked the way the runtime
// uses it, indexing without checks as the reader promises its users may:
// an index the validator let through out of range is a heap overflow here.
#include "test/fuzz/fuzz_util.h"

#include "runtime/format/artifact_reader.h"

using namespace compressa;

namespace {

volatile uint64_t sink = 0;

uint64_t touchString(const flatbuffers::String *s) {
  return s ? fuzz::touch(reinterpret_cast<const uint8_t *>(s->c_str()),
                         s->size())
           : 0;
}

template <class T> uint32_t sizeOf(const flatbuffers::Vector<T> *v) {
  return v ? v->size() : 0;
}

/// Uses every field of an accepted artifact as the engine and backends do.
void walk(const Artifact &a) {
  const fb::Artifact &root = a.root();
  const fb::ModelInfo &model = a.model();
  FUZZ_CHECK(model.vocab_size() > 0 && model.max_context() > 0,
             "accepted a model with vocab %u, max_context %u",
             model.vocab_size(), model.max_context());
  FUZZ_CHECK(a.findProgram("decode") != nullptr, "accepted without 'decode'");
  sink = sink + touchString(model.name()) + touchString(root.config_json());
  sink = sink + std::string(a.targetName()).size();

  const auto *weights = root.weights();
  for (uint32_t i = 0; i < sizeOf(weights); ++i) {
    const fb::Weight &w = *weights->Get(i);
    std::string_view name(w.name()->c_str(), w.name()->size());
    FUZZ_CHECK(a.findWeight(name) == static_cast<int64_t>(i),
               "weights[%u] found at %lld", i,
               static_cast<long long>(a.findWeight(name)));
    sink = sink + touchString(w.dtype()) + touchString(w.scale());
    for (uint32_t d = 0; d < sizeOf(w.shape()); ++d)
      FUZZ_CHECK(w.shape()->Get(d) >= 0, "weights[%u].shape[%u] < 0", i, d);
    for (uint32_t d = 0; d < sizeOf(w.scale_shape()); ++d)
      FUZZ_CHECK(w.scale_shape()->Get(d) >= 0, "weights[%u].scale_shape < 0",
                 i);
  }
  const auto *tables = root.expert_tables();
  for (uint32_t t = 0; t < sizeOf(tables); ++t) {
    const fb::ExpertTable &table = *tables->Get(t);
    std::string_view pattern(table.pattern()->c_str(),
                             table.pattern()->size());
    for (uint32_t e = 0; e < table.count(); ++e)
      FUZZ_CHECK(a.findWeight(Artifact::expertWeightName(pattern, e)) >= 0,
                 "expert_tables[%u] expert %u is not a weight", t, e);
  }
  const auto *kernels = root.kernels();
  for (uint32_t k = 0; k < sizeOf(kernels); ++k) {
    const fb::Kernel &kernel = *kernels->Get(k);
    sink = sink + touchString(kernel.name()) + touchString(kernel.symbol());
  }
  const auto *states = root.states();
  for (uint32_t s = 0; s < sizeOf(states); ++s)
    sink = sink + touchString(states->Get(s)->name()) + states->Get(s)->bytes();

  const auto *programs = root.programs();
  for (uint32_t p = 0; p < sizeOf(programs); ++p) {
    const fb::Program &program = *programs->Get(p);
    std::string_view name(program.name()->c_str(), program.name()->size());
    FUZZ_CHECK(a.findProgram(name) == &program, "programs[%u] by name", p);
    const auto *buffers = program.buffers();
    const fb::Buffer &ids = *buffers->Get(program.input_ids());
    const fb::Buffer &logits = *buffers->Get(program.logits());
    FUZZ_CHECK(ids.offset() + ids.bytes() <= program.arena_bytes() &&
                   logits.offset() + logits.bytes() <= program.arena_bytes(),
               "programs[%u]: input or logits buffer outside the arena", p);
    const auto *launches = program.launches();
    for (uint32_t l = 0; l < sizeOf(launches); ++l) {
      const fb::Launch &launch = *launches->Get(l);
      const fb::Kernel &kernel = *kernels->Get(launch.kernel());
      sink = sink + kernel.scratch_bytes();
      const auto *args = launch.args();
      for (uint32_t i = 0; i < sizeOf(args); ++i) {
        const fb::Arg &arg = *args->Get(i);
        uint32_t index = arg.index();
        switch (arg.kind()) {
        case fb::ArgKind::Buffer:
          sink = sink + buffers->Get(index)->bytes();
          break;
        case fb::ArgKind::Weight:
          sink = sink + touchString(weights->Get(index)->name());
          break;
        case fb::ArgKind::WeightScale:
          sink = sink + touchString(weights->Get(index)->scale());
          break;
        case fb::ArgKind::ExpertTable:
          sink = sink + tables->Get(index)->count();
          break;
        case fb::ArgKind::State:
        case fb::ArgKind::StateTable:
          sink = sink + states->Get(index)->bytes();
          break;
        case fb::ArgKind::Tokens:
        case fb::ArgKind::StartPos:
        case fb::ArgKind::Scratch:
        case fb::ArgKind::Positions:
        case fb::ArgKind::SlotIds:
          break;
        default:
          FUZZ_CHECK(false, "programs[%u].launches[%u].args[%u]: kind %u "
                            "accepted", p, l, i,
                     static_cast<unsigned>(arg.kind()));
        }
      }
    }
  }
  if (const fb::CpuCode *cpu = root.cpu()) {
    sink = sink + touchString(cpu->triple());
    if (cpu->shared_object())
      sink = sink + fuzz::touch(cpu->shared_object()->data(),
                                cpu->shared_object()->size());
  }
  if (const fb::CudaCode *cuda = root.cuda()) {
    sink = sink + touchString(cuda->chip()) + touchString(cuda->ptx());
    if (cuda->cubin())
      sink = sink + fuzz::touch(cuda->cubin()->data(), cuda->cubin()->size());
  }
}

void readAndWalk(const uint8_t *data, size_t size) {
  StatusOr<std::unique_ptr<Artifact>> artifact =
      ArtifactReader::readBuffer(data, size, "fuzz.cpa");
  if (!artifact.ok()) {
    fuzz::checkError(artifact.status(), "ArtifactReader::readBuffer");
    FUZZ_CHECK(artifact.status().message().rfind("fuzz.cpa", 0) == 0,
               "message does not start with the name: %s",
               artifact.status().message().c_str());
    return;
  }
  FUZZ_CHECK((*artifact)->size() == size, "size %zu, input %zu",
             (*artifact)->size(), size);
  walk(**artifact);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::vector<uint8_t> sealed = sealArtifact(data, size);
  readAndWalk(sealed.data(), sealed.size());
  readAndWalk(data, size);
  return 0;
}
