// SPDX-License-Identifier: Apache-2.0
// Synthetic artifacts and the toy model for the runtime tests.
#include "runtime/testing/toy_artifact.h"

#include "runtime/weights/dtype.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>

#ifndef COMPRESSA_TEST_KERNELS_SO
#error "COMPRESSA_TEST_KERNELS_SO must name the test kernels' shared object"
#endif

namespace compressa {
namespace toy {

std::vector<uint8_t> buildArtifact(const ArtifactSpec &spec) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<fb::Program>> programs;
  for (const ProgramSpec &program : spec.programs) {
    std::vector<flatbuffers::Offset<fb::Buffer>> buffers;
    for (const BufferSpec &buffer : program.buffers)
      buffers.push_back(fb::CreateBufferDirect(fbb, buffer.name.c_str(),
                                               buffer.offset, buffer.bytes));
    std::vector<flatbuffers::Offset<fb::Launch>> launches;
    for (const LaunchSpec &launch : program.launches) {
      std::vector<flatbuffers::Offset<fb::Arg>> args;
      for (const ArgSpec &arg : launch.args)
        args.push_back(fb::CreateArg(fbb, arg.kind, arg.index));
      launches.push_back(fb::CreateLaunchDirect(fbb, launch.kernel, &args));
    }
    std::vector<flatbuffers::Offset<fb::TensorMap>> maps;
    for (const TensorMapSpec &m : program.tensorMaps)
      maps.push_back(fb::CreateTensorMap(fbb, m.source, m.index, m.offset,
                                         m.rows, m.cols, m.boxRows));
    programs.push_back(fb::CreateProgramDirect(
        fbb, program.name.c_str(), program.maxTokens, program.arenaBytes,
        &buffers, program.inputIds, program.logits, &launches,
        maps.empty() ? nullptr : &maps));
  }
  std::vector<flatbuffers::Offset<fb::Kernel>> kernels;
  for (const KernelSpec &kernel : spec.kernels) {
    std::vector<flatbuffers::Offset<fb::Param>> params;
    for (const ParamSpec &param : kernel.params)
      params.push_back(fb::CreateParam(fbb, param.kind, param.bytesPerToken,
                                       param.bytes));
    kernels.push_back(fb::CreateKernelDirect(
        fbb, kernel.name.c_str(), kernel.symbol.c_str(),
        kernel.scratchBytesPerToken, kernel.scratchBytes, kernel.grid,
        kernel.block, kernel.sharedBytes,
        kernel.hasParams ? &params : nullptr, /*grid_sync=*/false,
        kernel.collective));
  }
  std::vector<flatbuffers::Offset<fb::State>> states;
  for (const StateSpec &state : spec.states)
    states.push_back(fb::CreateStateDirect(
        fbb, state.name.c_str(), state.bytes, state.init, state.rowBytes,
        state.rows, state.contextRatio));
  std::vector<flatbuffers::Offset<fb::Weight>> weights;
  for (const WeightSpec &weight : spec.weights)
    weights.push_back(fb::CreateWeightDirect(
        fbb, weight.name.c_str(), weight.dtype.c_str(), &weight.shape,
        weight.scale.c_str(), &weight.scaleShape, weight.optional,
        weight.valuesBelow));
  std::vector<flatbuffers::Offset<fb::ExpertTable>> tables;
  for (const ExpertTableSpec &table : spec.expertTables)
    tables.push_back(
        fb::CreateExpertTableDirect(fbb, table.pattern.c_str(), table.count,
                                    table.first));
  flatbuffers::Offset<fb::CpuCode> cpu = 0;
  if (spec.hasCpu)
    cpu = fb::CreateCpuCodeDirect(fbb, spec.triple.c_str(),
                                  &spec.sharedObject);
  flatbuffers::Offset<fb::CudaCode> cuda = 0;
  if (spec.hasCuda)
    cuda = fb::CreateCudaCodeDirect(fbb, spec.cudaChip.c_str(),
                                    spec.cudaPtx.c_str(), &spec.cudaCubin);
  flatbuffers::Offset<fb::ModelInfo> model = 0;
  if (spec.hasModel)
    model = fb::CreateModelInfoDirect(
        fbb, spec.modelName.c_str(), spec.vocabSize, spec.hiddenSize,
        spec.bosTokenId, spec.eosTokenId, spec.maxContext,
        spec.nRoutedExperts);
  std::vector<flatbuffers::Offset<fb::RankArtifact>> peers;
  for (size_t i = 0; i < spec.peers.size(); ++i)
    peers.push_back(
        fb::CreateRankArtifactDirect(fbb, uint32_t(i + 1), &spec.peers[i]));
  auto root = fb::CreateArtifactDirect(
      fbb, spec.version, model, spec.configJson.c_str(), spec.target,
      &programs, &kernels, &states, &weights, &tables, cpu, cuda, spec.rank,
      spec.ranks, peers.empty() ? nullptr : &peers);
  fb::FinishArtifactBuffer(fbb, root);
  if (spec.seal)
    return sealArtifact(fbb.GetBufferPointer(), fbb.GetSize());
  return std::vector<uint8_t>(fbb.GetBufferPointer(),
                              fbb.GetBufferPointer() + fbb.GetSize());
}

void reseal(std::vector<uint8_t> &bytes) {
  if (bytes.size() < kArtifactTrailerBytes)
    return;
  size_t body = bytes.size() - kArtifactTrailerBytes;
  ArtifactDigest digest = sha256(bytes.data(), body);
  std::copy(digest.begin(), digest.end(), bytes.begin() + body);
}

std::vector<uint8_t> testKernelsBytes() {
  std::ifstream in(COMPRESSA_TEST_KERNELS_SO, std::ios::binary);
  if (!in)
    return {};
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in),
                              std::istreambuf_iterator<char>());
}

static uint64_t align64(uint64_t value) { return (value + 63) / 64 * 64; }

ProgramSpec toyProgram(const std::string &name, uint32_t maxTokens,
                       uint32_t biasWeight) {
  ProgramSpec program;
  program.name = name;
  program.maxTokens = maxTokens;
  uint64_t idsBytes = uint64_t(maxTokens) * 8;
  uint64_t hiddenOffset = align64(idsBytes);
  uint64_t hiddenBytes = uint64_t(maxTokens) * 4 * 8;
  uint64_t logitsOffset = align64(hiddenOffset + hiddenBytes);
  uint64_t logitsBytes = uint64_t(maxTokens) * kVocab * 4;
  program.buffers = {{"input_ids", 0, idsBytes},
                     {"hidden", hiddenOffset, hiddenBytes},
                     {"logits", logitsOffset, logitsBytes}};
  program.arenaBytes = logitsOffset + logitsBytes;
  program.inputIds = 0;
  program.logits = 2;
  using K = fb::ArgKind;
  program.launches = {
      {0,
       {{K::Buffer, 0}, {K::Tokens, 0}, {K::StartPos, 0}, {K::State, 0},
        {K::Buffer, 1}}},
      {1,
       {{K::Buffer, 1},
        {K::Tokens, 0},
        {K::Weight, biasWeight},
        {K::Weight, kProjWeight},
        {K::WeightScale, kProjWeight},
        {K::ExpertTable, 0},
        {K::Scratch, 0},
        {K::Buffer, 2}}},
  };
  return program;
}

ArtifactSpec toyArtifactSpec(uint32_t prefillMaxTokens) {
  ArtifactSpec spec;
  spec.vocabSize = kVocab;
  spec.hiddenSize = 4;
  spec.bosTokenId = 0;
  spec.eosTokenId = kEos;
  spec.maxContext = kMaxContext;
  spec.configJson = "{\"model_type\": \"toy\"}";
  if (prefillMaxTokens)
    spec.programs.push_back(toyProgram("prefill", prefillMaxTokens));
  spec.programs.push_back(toyProgram("decode", 1));
  spec.programs.push_back(toyProgram("mtp", 1, kMtpBiasWeight));
  spec.nRoutedExperts = 2;
  using K = fb::ArgKind;
  spec.kernels = {{"toy.embed", "toy_embed", 0, 0},
                  {"toy.head", "toy_head", kScratchPerToken, kScratchFixed}};
  // The signatures: ids (8 bytes per token), hidden (4 int64 per token),
  // logits (kVocab f32 per token), the bias (kVocab f32), the 2x4 FP8 proj
  // and its one scale, the 2 experts.
  spec.kernels[0].params = {{K::Buffer, 8, 0},
                            {K::Tokens, 0, 0},
                            {K::StartPos, 0, 0},
                            {K::State, 0, 16},
                            {K::Buffer, 32, 0}};
  spec.kernels[1].params = {{K::Buffer, 32, 0},     {K::Tokens, 0, 0},
                            {K::Weight, 0, kVocab * 4}, {K::Weight, 0, 8},
                            {K::WeightScale, 0, 1}, {K::ExpertTable, 0, 2},
                            {K::Scratch, 0, 0},     {K::Buffer, kVocab * 4, 0}};
  spec.states = {{"toy.state", 16, fb::StateInit::Zero, 16, 1, 0},
                 {"toy.compressor.state", 64, fb::StateInit::CompressorState,
                  16, 4, 0}};
  spec.weights = {
      {"toy.bias", "F32", {kVocab}, "", {}, false},
      {"toy.proj.weight", "F8_E4M3", {2, 4}, "toy.proj.scale", {1, 1}, false},
      {"toy.experts.0.weight", "F8_E4M3", {4}, "toy.experts.0.scale", {1},
       false},
      {"toy.experts.1.weight", "F8_E4M3", {4}, "toy.experts.1.scale", {1},
       false},
      {"mtp.toy.bias", "F32", {kVocab}, "", {}, true},
  };
  spec.expertTables = {{"toy.experts.*.weight", 2}};
  spec.sharedObject = testKernelsBytes();
  return spec;
}

ToyWeights toyWeights() {
  ToyWeights w;
  w.bias.resize(kVocab);
  for (uint32_t v = 0; v < kVocab; ++v)
    w.bias[v] = static_cast<float>(v % 5) * 0.125f;
  // e4m3: 0x38 = 1, 0x40 = 2, 0x30 = 0.5, 0x44 = 3, 0xB8 = -1, 0x3C = 1.5,
  // 0x48 = 4, 0xB0 = -0.5.
  w.proj = {0x38, 0x40, 0x30, 0x44, 0xB8, 0x00, 0x3C, 0x48};
  w.projScale = {128}; // 2.0
  w.expert[0] = {0x38, 0x30, 0x40, 0x00};
  w.expertScale[0] = {126}; // 0.5
  w.expert[1] = {0x44, 0x38, 0xB0, 0x3C};
  w.expertScale[1] = {127}; // 1.0
  return w;
}

std::vector<TensorToWrite> toyWeightTensors(const ToyWeights &w) {
  return {
      {"toy.bias", DType::F32, {kVocab}, w.bias.data()},
      {"toy.proj.weight", DType::F8E4M3, {2, 4}, w.proj.data()},
      {"toy.proj.scale", DType::F8E8M0, {1, 1}, w.projScale.data()},
      {"toy.experts.0.weight", DType::F8E4M3, {4}, w.expert[0].data()},
      {"toy.experts.0.scale", DType::F8E8M0, {1}, w.expertScale[0].data()},
      {"toy.experts.1.weight", DType::F8E4M3, {4}, w.expert[1].data()},
      {"toy.experts.1.scale", DType::F8E8M0, {1}, w.expertScale[1].data()},
  };
}

Status writeToyWeights(const std::string &directory) {
  ToyWeights w = toyWeights();
  return writeSafetensors(directory + "/model.safetensors",
                          toyWeightTensors(w));
}

std::vector<float> toyReferenceLogits(const std::vector<int64_t> &ids) {
  ToyWeights w = toyWeights();
  std::vector<float> logits(ids.size() * kVocab);
  int64_t sum = 0;
  for (size_t t = 0; t < ids.size(); ++t) {
    int64_t id = ids[t];
    int64_t pos = static_cast<int64_t>(t);
    sum += id;
    int64_t count = pos + 1;
    int64_t target = (7 * id + 3 * pos + sum) % kVocab;
    float projValue = f8e4m3ToFloat(w.proj[(pos % 2) * 4 + id % 4]) *
                      f8e8m0ToFloat(w.projScale[0]);
    float expertValue = f8e4m3ToFloat(w.expert[id % 2][pos % 4]) *
                        f8e8m0ToFloat(w.expertScale[id % 2][0]);
    float countValue = static_cast<float>(count) * 0.25f;
    for (uint32_t v = 0; v < kVocab; ++v) {
      float value = w.bias[v];
      value += static_cast<int64_t>(v) == target ? 16.0f : 0.0f;
      value += projValue;
      value += expertValue;
      value += countValue;
      logits[t * kVocab + v] = value;
    }
  }
  return logits;
}

std::vector<int64_t> toyGreedy(const std::vector<int64_t> &prompt,
                               int64_t count, int64_t eos) {
  std::vector<int64_t> sequence = prompt;
  std::vector<int64_t> out;
  while (static_cast<int64_t>(out.size()) < count) {
    std::vector<float> logits = toyReferenceLogits(sequence);
    const float *row = logits.data() + (sequence.size() - 1) * kVocab;
    int64_t best = 0;
    for (uint32_t v = 1; v < kVocab; ++v)
      if (row[v] > row[best])
        best = v;
    out.push_back(best);
    if (best == eos)
      break;
    sequence.push_back(best);
  }
  return out;
}

std::string makeTempDir(const std::string &prefix) {
  const char *tmp = std::getenv("TMPDIR");
  std::string pattern =
      std::string(tmp && *tmp ? tmp : "/tmp") + "/" + prefix + "XXXXXX";
  if (!::mkdtemp(pattern.data()))
    return "";
  return pattern;
}

bool writeFile(const std::string &path, const std::string &bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(out);
}

bool writeFile(const std::string &path, const std::vector<uint8_t> &bytes) {
  return writeFile(path, std::string(bytes.begin(), bytes.end()));
}

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return "";
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

} // namespace toy
} // namespace compressa
