// SPDX-License-Identifier: Apache-2.0
// The Engine on a CUDA GPU (label gpu; skips without one, fails under
// COMPRESSA_REQUIRE_GPU=1): the toy artifact with hand-written PTX kernels
// (runtime/testing/toy_kernels.ptx) must give exactly the toy reference
// logits through decode, chunked prefill and their mixes, with the decode
// program run as a CUDA graph and without, and the launch counts per decode
// step must be 1 graph launch versus one kernel launch per launch.
#include "runtime/session/engine.h"

#include "runtime/cuda/cuda_device.h"
#include "runtime/testing/gpu_test.h"
#include "runtime/testing/toy_cuda.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

namespace compressa {
namespace {

std::vector<int64_t> sampleIds() {
  return {0, 17, 766, 5, 5, 300, 1, 42, 767, 128, 9};
}

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

/// Sets an environment variable for the life of the object.
class ScopedEnv {
public:
  ScopedEnv(const char *name, const char *value) : name(name) {
    const char *old = std::getenv(name);
    if (old) {
      hadOld = true;
      oldValue = old;
    }
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (hadOld)
      ::setenv(name, oldValue.c_str(), 1);
    else
      ::unsetenv(name);
  }

private:
  const char *name;
  bool hadOld = false;
  std::string oldValue;
};

/// How the decode program runs.
enum class Mode { Graph, NoGraph, SyncEachLaunch };

std::string modeName(Mode mode) {
  switch (mode) {
  case Mode::Graph:
    return "Graph";
  case Mode::NoGraph:
    return "NoGraph";
  case Mode::SyncEachLaunch:
    return "SyncEachLaunch";
  }
  return "Unknown";
}

/// gtest prints the parameter in test listings.
void PrintTo(Mode mode, std::ostream *os) { *os << modeName(mode); }

class CudaEngineTest : public ::testing::TestWithParam<Mode> {
protected:
  void SetUp() override {
    COMPRESSA_SKIP_WITHOUT_GPU();
    auto device = CudaDevice::open();
    ASSERT_TRUE(device.ok()) << device.status().toString();
    if ((*device)->computeMajor() < 9)
      GTEST_SKIP() << "the toy kernels are sm_90 PTX; this GPU is "
                   << (*device)->chip();
    dir = toy::makeTempDir("compressa_cuda_engine_");
    ASSERT_FALSE(dir.empty());
    weightsDir = dir + "/weights";
    std::filesystem::create_directory(weightsDir);
    ASSERT_TRUE(toy::writeToyWeights(weightsDir).ok());
  }
  void TearDown() override {
    if (dir.empty())
      return;
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }

  /// An engine for `spec` in this test's mode.
  std::unique_ptr<Engine> makeEngine(const toy::ArtifactSpec &spec,
                                     const std::string &name = "toy.cpa") {
    std::string path = dir + "/" + name;
    EXPECT_TRUE(toy::writeFile(path, toy::buildArtifact(spec)));
    ScopedEnv graph("COMPRESSA_CUDA_GRAPH",
                    GetParam() == Mode::NoGraph ? "0" : nullptr);
    ScopedEnv sync("COMPRESSA_CUDA_SYNC",
                   GetParam() == Mode::SyncEachLaunch ? "1" : nullptr);
    auto engine = Engine::create(path, weightsDir);
    EXPECT_TRUE(engine.ok()) << engine.status().toString();
    return engine.ok() ? std::move(*engine) : nullptr;
  }

  std::unique_ptr<Engine> toyEngine(uint32_t prefillMaxTokens = 16,
                                    bool withCubin = false) {
    return makeEngine(toy::toyCudaArtifactSpec(prefillMaxTokens, withCubin));
  }

  bool graphExpected() const { return GetParam() == Mode::Graph; }

  std::string dir;
  std::string weightsDir;
};

TEST_P(CudaEngineTest, DecodeTokenByTokenMatchesTheReference) {
  auto engine = toyEngine();
  ASSERT_TRUE(engine);
  std::printf("%s\n", engine->backendDescription().c_str());
  EXPECT_STREQ(engine->backendName(), "cuda");
  EXPECT_EQ(engine->stateData(0), nullptr); // Device memory.
  std::vector<int64_t> ids = sampleIds();
  std::vector<float> expected = toy::toyReferenceLogits(ids);
  for (size_t pos = 0; pos < ids.size(); ++pos) {
    auto logits = engine->decode(ids[pos], static_cast<int64_t>(pos));
    ASSERT_TRUE(logits.ok()) << logits.status().toString();
    ASSERT_EQ(logits->size(), toy::kVocab);
    for (uint32_t v = 0; v < toy::kVocab; ++v)
      ASSERT_EQ((*logits)[v], expected[pos * toy::kVocab + v])
          << "pos " << pos << " v " << v;
  }
}

TEST_P(CudaEngineTest, ChunkedPrefillEqualsDecode) {
  std::vector<int64_t> ids = sampleIds();
  int64_t n = static_cast<int64_t>(ids.size());
  std::vector<float> expected = toy::toyReferenceLogits(ids);
  auto engine = toyEngine();
  ASSERT_TRUE(engine);
  for (int64_t chunk : {1, 3, 4, 11, 0, 100}) {
    engine->reset();
    auto logits = engine->prefill(ids.data(), n, 0, chunk);
    ASSERT_TRUE(logits.ok()) << logits.status().toString();
    EXPECT_EQ(*logits, expected) << "chunk " << chunk;
  }
  // Prefill a prefix in chunks, then decode the rest (graph replays after
  // prefill launches on the same stream).
  for (int64_t split : {1, 4, 7, 10}) {
    engine->reset();
    auto head = engine->prefill(ids.data(), split, 0, 3);
    ASSERT_TRUE(head.ok()) << head.status().toString();
    std::vector<float> all = *head;
    for (int64_t pos = split; pos < n; ++pos) {
      auto step = engine->decode(ids[pos], pos);
      ASSERT_TRUE(step.ok()) << step.status().toString();
      all.insert(all.end(), step->begin(), step->end());
    }
    EXPECT_EQ(all, expected) << "split " << split;
  }
}

TEST_P(CudaEngineTest, PrefillWithoutPrefillProgramUsesDecode) {
  std::vector<int64_t> ids = sampleIds();
  auto engine = toyEngine(0);
  ASSERT_TRUE(engine);
  EXPECT_FALSE(engine->hasProgram("prefill"));
  auto logits = engine->prefill(ids.data(), static_cast<int64_t>(ids.size()),
                                0, 8);
  ASSERT_TRUE(logits.ok()) << logits.status().toString();
  EXPECT_EQ(*logits, toy::toyReferenceLogits(ids));
}

TEST_P(CudaEngineTest, LaunchesPerDecodeStep) {
  auto engine = toyEngine();
  ASSERT_TRUE(engine);
  // The toy decode program has 2 launches (toy.embed, toy.head).
  EXPECT_EQ(engine->decodeKernels(), 2);
  EXPECT_EQ(engine->decodeUsesGraph(), graphExpected());
  EXPECT_EQ(engine->launchesPerDecodeStep(), graphExpected() ? 1 : 2);
  std::printf("decode step: %lld kernels, %lld launch call(s), graph %s\n",
              static_cast<long long>(engine->decodeKernels()),
              static_cast<long long>(engine->launchesPerDecodeStep()),
              engine->decodeUsesGraph() ? "on" : "off");

  std::vector<int64_t> ids = sampleIds();
  auto prefill = engine->prefill(ids.data(), 4, 0);
  ASSERT_TRUE(prefill.ok()) << prefill.status().toString();
  LaunchCounters before = engine->launchCounters();
  EXPECT_EQ(before.kernelLaunches, 2); // One prefill call of 2 launches.
  EXPECT_EQ(before.graphLaunches, 0);
  const int steps = 5;
  for (int s = 0; s < steps; ++s) {
    auto step = engine->decode(ids[4 + s], 4 + s);
    ASSERT_TRUE(step.ok()) << step.status().toString();
  }
  LaunchCounters after = engine->launchCounters();
  if (graphExpected()) {
    // Captured once (2 launches recorded), then one graph launch a step.
    EXPECT_EQ(after.capturedLaunches - before.capturedLaunches, 2);
    EXPECT_EQ(after.graphLaunches - before.graphLaunches, steps);
    EXPECT_EQ(after.kernelLaunches, before.kernelLaunches);
  } else {
    EXPECT_EQ(after.capturedLaunches, 0);
    EXPECT_EQ(after.graphLaunches, 0);
    EXPECT_EQ(after.kernelLaunches - before.kernelLaunches, 2 * steps);
  }
}

TEST_P(CudaEngineTest, TimersCountEveryLaunchAndKeepTheResults) {
  auto engine = toyEngine();
  ASSERT_TRUE(engine);
  Backend &backend = engine->backendRef();
  EXPECT_STREQ(backend.timerName(), "CUDA events");
  std::vector<int64_t> ids = sampleIds();
  ASSERT_TRUE(engine->prefill(ids.data(), 4, 0).ok());
  auto plain = engine->decode(ids[4], 4);
  ASSERT_TRUE(plain.ok()) << plain.status().toString();

  // The event timer brackets a decode step.
  ASSERT_TRUE(backend.startTimer().ok());
  ASSERT_TRUE(engine->decode(ids[5], 5).ok());
  StatusOr<double> ms = backend.stopTimer();
  ASSERT_TRUE(ms.ok()) << ms.status().toString();
  EXPECT_GE(*ms, 0.0);

  // Kernel timing: every launch timed once, no graph replay, same logits.
  engine->reset();
  ASSERT_TRUE(engine->prefill(ids.data(), 4, 0).ok());
  ASSERT_TRUE(backend.setKernelTiming(true).ok());
  LaunchCounters before = engine->launchCounters();
  auto timed = engine->decode(ids[4], 4);
  ASSERT_TRUE(timed.ok()) << timed.status().toString();
  EXPECT_EQ(*timed, *plain);
  LaunchCounters after = engine->launchCounters();
  EXPECT_EQ(after.graphLaunches, before.graphLaunches);
  int64_t launches = 0;
  for (const Backend::KernelTime &time : backend.kernelTimes()) {
    launches += time.launches;
    EXPECT_GE(time.milliseconds, 0.0);
  }
  EXPECT_EQ(launches, engine->decodeKernels());
  ASSERT_TRUE(backend.setKernelTiming(false).ok());
  auto again = engine->decode(ids[5], 5);
  ASSERT_TRUE(again.ok()) << again.status().toString();
  for (const Backend::KernelTime &time : backend.kernelTimes())
    EXPECT_EQ(time.launches, 0);
}

TEST_P(CudaEngineTest, StatesStartAndResetOnTheDevice) {
  auto engine = toyEngine();
  ASSERT_TRUE(engine);
  ASSERT_EQ(engine->stateBytes(0), 16u);
  ASSERT_EQ(engine->stateBytes(toy::kCompressorState), 64u);
  auto checkInitial = [&] {
    auto zero = engine->readState(0);
    ASSERT_TRUE(zero.ok()) << zero.status().toString();
    for (uint8_t byte : *zero)
      EXPECT_EQ(byte, 0);
    auto compressor = engine->readState(toy::kCompressorState);
    ASSERT_TRUE(compressor.ok()) << compressor.status().toString();
    for (int i = 0; i < 32; ++i)
      EXPECT_EQ((*compressor)[i], 0) << i;
    for (int i = 32; i < 64; i += 4) {
      float value;
      std::memcpy(&value, compressor->data() + i, 4);
      EXPECT_TRUE(std::isinf(value) && value < 0) << i;
    }
  };
  checkInitial();
  std::vector<int64_t> ids = sampleIds();
  auto first = engine->prefill(ids.data(), 5, 0);
  ASSERT_TRUE(first.ok()) << first.status().toString();
  auto state = engine->readState(0);
  ASSERT_TRUE(state.ok());
  int64_t sum;
  std::memcpy(&sum, state->data(), 8);
  EXPECT_EQ(sum, 0 + 17 + 766 + 5 + 5);
  engine->reset();
  checkInitial();
  auto again = engine->prefill(ids.data(), 5, 0);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*first, *again);
  EXPECT_EQ(engine->readState(7).status().code(), StatusCode::OutOfRange);
}

TEST_P(CudaEngineTest, GreedyGenerationFollowsTheModel) {
  auto engine = toyEngine(4);
  ASSERT_TRUE(engine);
  SamplingOptions options;
  options.greedy = true;
  Generator generator(*engine, options);
  std::vector<int64_t> prompt = {3, 9, 27, 81, 243, 729, 2};
  auto result = generator.generate(prompt.data(),
                                   static_cast<int64_t>(prompt.size()), 12);
  ASSERT_TRUE(result.ok()) << result.status().toString();
  EXPECT_EQ(result->tokens, toy::toyGreedy(prompt, 12, toy::kEos));
}

TEST_P(CudaEngineTest, MissingOptionalWeightFailsOnlyTheProgramThatNeedsIt) {
  auto engine = toyEngine();
  ASSERT_TRUE(engine);
  int64_t id = 5;
  auto mtp = engine->forward("mtp", &id, 1, 0);
  EXPECT_EQ(mtp.status().code(), StatusCode::FailedPrecondition);
  EXPECT_TRUE(contains(mtp.status().message(), "mtp.toy.bias"))
      << mtp.status().message();
  auto decode = engine->decode(id, 0);
  EXPECT_TRUE(decode.ok()) << decode.status().toString();
}

TEST_P(CudaEngineTest, CubinVariantGivesTheSameLogits) {
  if (toy::toyKernelsCubin().empty())
    FAIL() << "the build found no ptxas (CUDA toolkit), so there is no "
              "test cubin: install CUDA 13 at /usr/local/cuda";
  auto engine = toyEngine(4, /*withCubin=*/true);
  ASSERT_TRUE(engine);
  std::string description = engine->backendDescription();
  auto device = CudaDevice::open();
  ASSERT_TRUE(device.ok());
  if ((*device)->computeMajor() == 9)
    EXPECT_TRUE(contains(description, "code: cubin (sm_90)")) << description;
  else
    EXPECT_TRUE(contains(description, "code: PTX JIT")) << description;
  std::vector<int64_t> ids = sampleIds();
  auto logits = engine->prefill(ids.data(), static_cast<int64_t>(ids.size()),
                                0);
  ASSERT_TRUE(logits.ok()) << logits.status().toString();
  EXPECT_EQ(*logits, toy::toyReferenceLogits(ids));
}

TEST_P(CudaEngineTest, PtxOnlyArtifactUsesTheJit) {
  auto engine = toyEngine();
  ASSERT_TRUE(engine);
  std::string description = engine->backendDescription();
  EXPECT_TRUE(contains(description, "code: PTX JIT for sm_"))
      << description;
  EXPECT_TRUE(contains(description, "the artifact has no cubin"))
      << description;
}

TEST_P(CudaEngineTest, ArtifactTooLargeForTheGpu) {
  toy::ArtifactSpec spec = toy::toyCudaArtifactSpec();
  spec.programs[0].arenaBytes = uint64_t(1) << 50; // 1 PiB
  std::string path = dir + "/huge.cpa";
  ASSERT_TRUE(toy::writeFile(path, toy::buildArtifact(spec)));
  auto engine = Engine::create(path, weightsDir);
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().code(), StatusCode::ResourceExhausted);
  EXPECT_TRUE(contains(engine.status().message(),
                       path + " (weights, states, arenas and scratch) needs"))
      << engine.status().message();
}

TEST_P(CudaEngineTest, KernelGeometryIsChecked) {
  toy::ArtifactSpec spec = toy::toyCudaArtifactSpec();
  spec.kernels[1].block = 2048;
  std::string path = dir + "/geometry.cpa";
  ASSERT_TRUE(toy::writeFile(path, toy::buildArtifact(spec)));
  auto engine = Engine::create(path, weightsDir);
  ASSERT_FALSE(engine.ok());
  EXPECT_TRUE(contains(engine.status().message(),
                       "kernels[1] ('toy.head', toy_head): block 2048 is "
                       "outside 1..1024"))
      << engine.status().message();

  spec = toy::toyCudaArtifactSpec();
  spec.kernels[0].symbol = "toy_tail";
  path = dir + "/symbol.cpa";
  ASSERT_TRUE(toy::writeFile(path, toy::buildArtifact(spec)));
  engine = Engine::create(path, weightsDir);
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().code(), StatusCode::NotFound);
  EXPECT_TRUE(contains(engine.status().message(),
                       "no kernel symbol 'toy_tail'"))
      << engine.status().message();

  spec = toy::toyCudaArtifactSpec();
  spec.cudaPtx.clear();
  path = dir + "/nocode.cpa";
  ASSERT_TRUE(toy::writeFile(path, toy::buildArtifact(spec)));
  engine = Engine::create(path, weightsDir);
  ASSERT_FALSE(engine.ok());
  EXPECT_TRUE(contains(engine.status().message(),
                       "the artifact has no cuda.ptx and no cuda.cubin"))
      << engine.status().message();
}

INSTANTIATE_TEST_SUITE_P(Modes, CudaEngineTest,
                         ::testing::Values(Mode::Graph, Mode::NoGraph,
                                           Mode::SyncEachLaunch),
                         [](const ::testing::TestParamInfo<Mode> &info) {
                           return modeName(info.param);
                         });

} // namespace
} // namespace compressa
