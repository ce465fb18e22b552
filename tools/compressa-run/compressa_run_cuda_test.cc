// SPDX-License-Identifier: Apache-2.0
// compressa-run on CUDA artifacts (the synthetic toy model with hand-written
// PTX kernels, runtime/testing/toy_cuda.h).
//  * CompressaRunNoGpuTest (binary compressa_run_cuda_test, label unit):
//    with no usable GPU (none here; on a GPU machine the GPUs are hidden
//    with CUDA_VISIBLE_DEVICES=-1) the tool exits 1 with one error line
//    saying that no CUDA GPU is available, and why.
//  * CompressaRunGpuTest (binary compressa_run_gpu_test, label gpu): on a
//    GPU, the same flags as on the CPU give the toy reference logits and the
//    greedy continuation, with the decode graph and without; skips without
//    a GPU (COMPRESSA_REQUIRE_GPU=1: fails).
// COMPRESSA_RUN in the environment overrides the path of the binary.
#include "runtime/testing/toy_cuda.h"
#include "runtime/weights/safetensors.h"
#include "runtime/weights/safetensors_writer.h"

#if COMPRESSA_RUN_GPU_TESTS
#include "runtime/testing/gpu_test.h"
#endif

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <sys/wait.h>

#ifndef COMPRESSA_RUN_PATH
#error "COMPRESSA_RUN_PATH must name the compressa-run binary"
#endif

namespace compressa {
namespace {

struct RunResult {
  int exitCode = -1;
  std::string out;
  std::string err;
};

std::vector<int64_t> sampleIds() {
  return {0, 17, 766, 5, 5, 300, 1, 42, 767, 128, 9};
}

std::string runPath() {
  const char *path = std::getenv("COMPRESSA_RUN");
  return path && *path ? path : COMPRESSA_RUN_PATH;
}

class CompressaRunCudaTest : public ::testing::Test {
protected:
  void setUpFiles() {
    dir = toy::makeTempDir("compressa_run_cuda_");
    ASSERT_FALSE(dir.empty());
    weights = dir + "/weights";
    std::filesystem::create_directory(weights);
    ASSERT_TRUE(toy::writeToyWeights(weights).ok());
    artifact = dir + "/toy-cuda.cpa";
    ASSERT_TRUE(toy::writeFile(
        artifact, toy::buildArtifact(toy::toyCudaArtifactSpec(4))));
    idsFile = dir + "/ids.safetensors";
    std::vector<int64_t> ids = sampleIds();
    Status status = writeSafetensors(
        idsFile, {{"input_ids",
                   DType::I64,
                   {static_cast<int64_t>(ids.size())},
                   ids.data()}});
    ASSERT_TRUE(status.ok()) << status.toString();
  }
  void TearDown() override {
    if (dir.empty())
      return;
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }

  /// Runs compressa-run with `args`, `env` ("NAME=value ..." or empty) in
  /// front.
  RunResult run(const std::string &args, const std::string &env = "") {
    std::string outPath = dir + "/stdout", errPath = dir + "/stderr";
    std::string command = (env.empty() ? "" : "env " + env + " ") +
                          runPath() + " " + args + " >" + outPath + " 2>" +
                          errPath;
    int status = std::system(command.c_str());
    RunResult result;
    if (WIFEXITED(status))
      result.exitCode = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
      result.exitCode = 128 + WTERMSIG(status);
    result.out = toy::readFile(outPath);
    result.err = toy::readFile(errPath);
    return result;
  }

  std::string base() const {
    return artifact + " --weights " + weights + " --input-ids " + idsFile;
  }

  std::string dir, weights, artifact, idsFile;
};

#if !COMPRESSA_RUN_GPU_TESTS

class CompressaRunNoGpuTest : public CompressaRunCudaTest {
protected:
  void SetUp() override { setUpFiles(); }
};

TEST_F(CompressaRunNoGpuTest, CudaArtifactWithoutGpuExitsWithAClearError) {
  for (const std::string &flags :
       {std::string(" -n 3 --greedy"),
        " --dump-logits " + dir + "/logits.safetensors"}) {
    // Hides any GPU this machine may have.
    RunResult result = run(base() + flags, "CUDA_VISIBLE_DEVICES=-1");
    EXPECT_EQ(result.exitCode, 1) << flags << "\n" << result.err;
    EXPECT_TRUE(result.out.empty()) << result.out;
    EXPECT_EQ(result.err.rfind("compressa-run: error: " + artifact +
                                   ": the artifact targets CUDA, but no CUDA "
                                   "GPU is available: ",
                               0),
              0u)
        << result.err;
    // The reason: no driver library, or the driver's own words.
    EXPECT_TRUE(result.err.find("no NVIDIA driver: dlopen(libcuda.so.1) "
                                "failed: ") != std::string::npos ||
                result.err.find("cuInit failed: CUDA_ERROR_") !=
                    std::string::npos ||
                result.err.find("no CUDA device") != std::string::npos)
        << result.err;
    EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1)
        << result.err;
  }
}

#else

class CompressaRunGpuTest : public CompressaRunCudaTest {
protected:
  void SetUp() override {
    COMPRESSA_SKIP_WITHOUT_GPU();
    setUpFiles();
  }

  void expectDump(const std::string &path, const std::vector<int64_t> &ids) {
    auto file = SafetensorsFile::open(path);
    ASSERT_TRUE(file.ok()) << file.status().toString();
    const TensorView *logits = (*file)->find("logits");
    ASSERT_NE(logits, nullptr);
    std::vector<float> expected = toy::toyReferenceLogits(ids);
    ASSERT_EQ(static_cast<size_t>(logits->numElements()), expected.size());
    for (size_t i = 0; i < expected.size(); ++i)
      ASSERT_EQ(readUnaligned<float>(logits->data + 4 * i), expected[i]) << i;
  }

  std::string greedyLine(const std::vector<int64_t> &prompt, int64_t count) {
    std::string line;
    for (int64_t id : toy::toyGreedy(prompt, count, toy::kEos))
      line += (line.empty() ? "" : " ") + std::to_string(id);
    return line + "\n";
  }
};

TEST_F(CompressaRunGpuTest, DumpLogitsMatchesTheReference) {
  for (const char *env : {"", "COMPRESSA_CUDA_GRAPH=0"}) {
    for (const char *extra :
         {"", " --prefill 0", " --prefill 11", " --prefill 7 --chunk 3"}) {
      std::string out = dir + "/logits.safetensors";
      RunResult result = run(base() + " --dump-logits " + out + extra, env);
      ASSERT_EQ(result.exitCode, 0) << env << extra << "\n" << result.err;
      expectDump(out, sampleIds());
    }
  }
}

TEST_F(CompressaRunGpuTest, GreedyGenerationMatchesTheReference) {
  std::vector<int64_t> ids = sampleIds();
  std::vector<int64_t> prompt(ids.begin(), ids.begin() + 6);
  for (const char *env : {"", "COMPRESSA_CUDA_GRAPH=0"}) {
    RunResult result =
        run(base() + " --prompt-len 6 -n 5 --greedy --print-ids", env);
    ASSERT_EQ(result.exitCode, 0) << env << "\n" << result.err;
    EXPECT_EQ(result.out, greedyLine(prompt, 5)) << env;
  }
}

#endif

} // namespace
} // namespace compressa
