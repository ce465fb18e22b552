// SPDX-License-Identifier: Apache-2.0
// Tests of the compressa-run command line on the synthetic toy artifact: the
// --dump-logits and -n interfaces, their output formats, and that every bad
// input ends in exit status 1 with a "compressa-run: error: " message.
#include "runtime/testing/toy_artifact.h"
#include "runtime/weights/safetensors.h"
#include "runtime/weights/safetensors_writer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>

#ifndef COMPRESSA_RUN_PATH
#error "COMPRESSA_RUN_PATH must name the compressa-run binary"
#endif

namespace compressa {
namespace {

struct RunResult {
  /// The exit status, or 128 + signal number when killed by a signal.
  int exitCode = -1;
  std::string out;
  std::string err;
};

std::vector<int64_t> sampleIds() {
  return {0, 17, 766, 5, 5, 300, 1, 42, 767, 128, 9};
}

class CompressaRunTest : public ::testing::Test {
protected:
  void SetUp() override {
    dir = toy::makeTempDir("compressa_run_");
    ASSERT_FALSE(dir.empty());
    weights = dir + "/weights";
    std::filesystem::create_directory(weights);
    ASSERT_TRUE(toy::writeToyWeights(weights).ok());
    artifact = writeArtifact(toy::toyArtifactSpec(4), "toy.cpa");
    idsFile = writeIds(sampleIds(), "ids.safetensors");
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }

  std::string writeArtifact(const toy::ArtifactSpec &spec,
                            const std::string &name) {
    std::string path = dir + "/" + name;
    EXPECT_TRUE(toy::writeFile(path, toy::buildArtifact(spec)));
    return path;
  }
  std::string writeIds(const std::vector<int64_t> &ids,
                       const std::string &name) {
    std::string path = dir + "/" + name;
    Status status = writeSafetensors(
        path, {{"input_ids",
                DType::I64,
                {static_cast<int64_t>(ids.size())},
                ids.data()}});
    EXPECT_TRUE(status.ok()) << status.toString();
    return path;
  }

  RunResult run(const std::string &args) {
    std::string outPath = dir + "/stdout", errPath = dir + "/stderr";
    std::string command = std::string(COMPRESSA_RUN_PATH) + " " + args +
                          " >" + outPath + " 2>" + errPath;
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

  /// The common arguments: artifact, weights, ids.
  std::string base() const {
    return artifact + " --weights " + weights + " --input-ids " + idsFile;
  }

  /// Runs `args`, expecting exit 1 and an error line containing `part`.
  void expectFailure(const std::string &args, const std::string &part) {
    RunResult result = run(args);
    EXPECT_EQ(result.exitCode, 1) << args << "\n" << result.err;
    EXPECT_EQ(result.err.rfind("compressa-run: error: ", 0), 0u)
        << args << "\n" << result.err;
    EXPECT_NE(result.err.find(part), std::string::npos)
        << args << "\nstderr: " << result.err << "\nmissing: " << part;
    EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1)
        << result.err;
  }

  /// The logits tensor of a dump, checked against the toy reference.
  void expectDump(const std::string &path, const std::vector<int64_t> &ids) {
    auto file = SafetensorsFile::open(path);
    ASSERT_TRUE(file.ok()) << file.status().toString();
    const TensorView *logits = (*file)->find("logits");
    ASSERT_NE(logits, nullptr);
    EXPECT_EQ(logits->dtype, DType::F32);
    EXPECT_EQ(logits->shape, (std::vector<int64_t>{
                                 static_cast<int64_t>(ids.size()),
                                 static_cast<int64_t>(toy::kVocab)}));
    std::vector<float> expected = toy::toyReferenceLogits(ids);
    ASSERT_EQ(static_cast<size_t>(logits->numElements()), expected.size());
    for (size_t i = 0; i < expected.size(); ++i)
      ASSERT_EQ(readUnaligned<float>(logits->data + 4 * i), expected[i]) << i;
  }

  std::string greedyLine(const std::vector<int64_t> &prompt, int64_t count,
                         int64_t eos = toy::kEos) {
    std::string line;
    for (int64_t id : toy::toyGreedy(prompt, count, eos))
      line += (line.empty() ? "" : " ") + std::to_string(id);
    return line + "\n";
  }

  std::string dir, weights, artifact, idsFile;
};

TEST_F(CompressaRunTest, HelpDocumentsEveryFlag) {
  RunResult result = run("--help");
  EXPECT_EQ(result.exitCode, 0);
  EXPECT_TRUE(result.err.empty());
  for (const char *flag :
       {"--weights", "--input-ids", "--dump-logits", "--prefill", "--chunk",
        "-n G", "--prompt-len", "--greedy", "--print-ids", "--temperature",
        "--top-p", "--top-k", "--seed", "--help", "compressa-run: error: "})
    EXPECT_NE(result.out.find(flag), std::string::npos) << flag;
  EXPECT_EQ(run("-h").out, result.out);
}

TEST_F(CompressaRunTest, DumpLogitsDefault) {
  std::string out = dir + "/logits.safetensors";
  RunResult result = run(base() + " --dump-logits " + out);
  ASSERT_EQ(result.exitCode, 0) << result.err;
  EXPECT_TRUE(result.out.empty());
  expectDump(out, sampleIds());
}

TEST_F(CompressaRunTest, DumpLogitsPrefillAndChunkVariants) {
  for (const char *extra :
       {" --prefill 0", " --prefill 11", " --prefill 7 --chunk 3",
        " --chunk=1", " --prefill=5 --chunk 100"}) {
    std::string out = dir + "/logits.safetensors";
    RunResult result = run(base() + " --dump-logits " + out + extra);
    ASSERT_EQ(result.exitCode, 0) << extra << "\n" << result.err;
    expectDump(out, sampleIds());
  }
}

TEST_F(CompressaRunTest, DumpLogitsWithoutPrefillProgram) {
  std::string noPrefill = writeArtifact(toy::toyArtifactSpec(0), "np.cpa");
  std::string out = dir + "/logits.safetensors";
  RunResult result = run(noPrefill + " --weights " + weights +
                         " --input-ids " + idsFile + " --dump-logits " + out);
  ASSERT_EQ(result.exitCode, 0) << result.err;
  expectDump(out, sampleIds());
}

TEST_F(CompressaRunTest, DumpLogitsAcceptsARowOfIds) {
  std::vector<int64_t> ids = {4, 8, 15};
  std::string path = dir + "/row.safetensors";
  ASSERT_TRUE(
      writeSafetensors(path, {{"input_ids", DType::I64, {1, 3}, ids.data()}})
          .ok());
  std::string out = dir + "/logits.safetensors";
  RunResult result = run(artifact + " --weights " + weights + " --input-ids " +
                         path + " --dump-logits " + out);
  ASSERT_EQ(result.exitCode, 0) << result.err;
  expectDump(out, ids);
}

TEST_F(CompressaRunTest, PrintIdsGreedy) {
  RunResult result =
      run(base() + " --prompt-len 6 -n 5 --greedy --print-ids");
  ASSERT_EQ(result.exitCode, 0) << result.err;
  std::vector<int64_t> ids = sampleIds();
  std::vector<int64_t> prompt(ids.begin(), ids.begin() + 6);
  EXPECT_EQ(result.out, greedyLine(prompt, 5));
  EXPECT_TRUE(result.err.empty()) << result.err;
  // The whole file is the prompt by default; chunking does not matter.
  RunResult all = run(base() + " -n 4 --greedy --print-ids --chunk 2");
  ASSERT_EQ(all.exitCode, 0) << all.err;
  EXPECT_EQ(all.out, greedyLine(ids, 4));
}

TEST_F(CompressaRunTest, PrintIdsStopsAtEosAndPrintsIt) {
  std::vector<int64_t> ids = sampleIds();
  std::vector<int64_t> prompt(ids.begin(), ids.begin() + 6);
  std::vector<int64_t> free = toy::toyGreedy(prompt, 6, -1);
  toy::ArtifactSpec spec = toy::toyArtifactSpec(4);
  spec.eosTokenId = free[2];
  std::string eosArtifact = writeArtifact(spec, "eos.cpa");
  RunResult result = run(eosArtifact + " --weights " + weights +
                         " --input-ids " + idsFile +
                         " --prompt-len 6 -n 6 --greedy --print-ids");
  ASSERT_EQ(result.exitCode, 0) << result.err;
  EXPECT_EQ(result.out, greedyLine(prompt, 6, free[2]));
  std::istringstream words(result.out);
  std::vector<int64_t> printed;
  for (int64_t id; words >> id;)
    printed.push_back(id);
  ASSERT_FALSE(printed.empty());
  EXPECT_EQ(printed.back(), free[2]);
  EXPECT_LE(printed.size(), 3u);
}

TEST_F(CompressaRunTest, SamplingIsReproducibleBySeed) {
  std::string args = base() + " --prompt-len 3 -n 10 --temperature 5 "
                              "--top-p 0.95 --top-k 50 --seed 77 --print-ids";
  RunResult first = run(args);
  RunResult second = run(args);
  ASSERT_EQ(first.exitCode, 0) << first.err;
  EXPECT_EQ(first.out, second.out);
  std::istringstream words(first.out);
  int count = 0;
  for (int64_t id; words >> id; ++count) {
    EXPECT_GE(id, 0);
    EXPECT_LT(id, toy::kVocab);
  }
  EXPECT_GE(count, 1);
  EXPECT_LE(count, 10);
  // top-k 1 is greedy whatever the temperature.
  RunResult topOne =
      run(base() + " --prompt-len 3 -n 5 --top-k 1 --temperature 0.7 "
                   "--seed 3 --print-ids");
  ASSERT_EQ(topOne.exitCode, 0) << topOne.err;
  std::vector<int64_t> ids = sampleIds();
  EXPECT_EQ(topOne.out,
            greedyLine(std::vector<int64_t>(ids.begin(), ids.begin() + 3), 5));
}

TEST_F(CompressaRunTest, SummaryWithoutPrintIds) {
  RunResult result = run(base() + " -n 3 --greedy");
  ASSERT_EQ(result.exitCode, 0) << result.err;
  EXPECT_EQ(result.out.rfind("generated ", 0), 0u) << result.out;
  EXPECT_NE(result.out.find("prefill: 11 tokens"), std::string::npos)
      << result.out;
}

TEST_F(CompressaRunTest, CommandLineErrors) {
  std::string out = " --dump-logits " + dir + "/o.safetensors";
  expectFailure("--bogus", "unknown option '--bogus'");
  expectFailure(base() + out + " --bogus=1", "unknown option '--bogus'");
  expectFailure("", "no artifact given");
  expectFailure(artifact + " --input-ids " + idsFile + out,
                "--weights DIR is required");
  expectFailure(artifact + " --weights " + weights + out,
                "--input-ids FILE is required");
  expectFailure(base(), "nothing to do");
  expectFailure(base() + out + " -n 3", "cannot be combined");
  expectFailure(base() + " -n", "-n expects a value");
  expectFailure(base() + " -n abc", "-n expects an integer, got 'abc'");
  expectFailure(base() + " -n 3x", "expects an integer");
  expectFailure(base() + " -n -2", "-n must be >= 0");
  expectFailure(base() + " -n 99999999999999999999", "expects an integer");
  expectFailure(base() + out + " --chunk 0", "--chunk must be >= 1");
  expectFailure(base() + out + " --prefill 12", "--prefill 12 exceeds the 11 "
                                                "ids");
  expectFailure(base() + " -n 2 --prompt-len 12",
                "--prompt-len 12 exceeds the 11 ids");
  expectFailure(base() + " -n 2 --prompt-len 0", "--prompt-len must be >= 1");
  expectFailure(base() + " -n 2 --prefill 3", "--prefill applies to "
                                              "--dump-logits");
  expectFailure(base() + out + " --greedy", "--greedy applies to generation");
  expectFailure(base() + out + " --print-ids", "--print-ids applies to");
  expectFailure(base() + " -n 2 --top-p 1.5", "top-p 1.5 is invalid");
  expectFailure(base() + " -n 2 --top-p nope", "--top-p expects a number");
  expectFailure(base() + " -n 2 --temperature -1", "temperature -1 is invalid");
  expectFailure(base() + " -n 2 --seed -4", "--seed expects an unsigned");
  expectFailure(base() + " -n 2 --greedy --greedy", "more than once");
  expectFailure(base() + " -n 2 --greedy=yes", "--greedy takes no value");
  expectFailure(base() + " --weights " + weights + out, "more than once");
  expectFailure(base() + " extra.cpa" + out, "unexpected argument 'extra.cpa'");
}

TEST_F(CompressaRunTest, FileErrors) {
  std::string out = " --dump-logits " + dir + "/o.safetensors";
  std::string missing = dir + "/missing.cpa";
  expectFailure(missing + " --weights " + weights + " --input-ids " + idsFile +
                    out,
                missing + ": cannot open");
  expectFailure(artifact + " --weights " + weights + " --input-ids " + dir +
                    "/none.safetensors" + out,
                dir + "/none.safetensors: cannot open");
  expectFailure(artifact + " --weights " + dir + "/nowhere --input-ids " +
                    idsFile + out,
                dir + "/nowhere");
  // Not an artifact.
  expectFailure(idsFile + " --weights " + weights + " --input-ids " + idsFile +
                    out,
                "not a Compressa artifact");
  // A truncated artifact.
  std::string bytes = toy::readFile(artifact);
  std::string cut = dir + "/cut.cpa";
  ASSERT_TRUE(toy::writeFile(cut, bytes.substr(0, bytes.size() / 2)));
  expectFailure(cut + " --weights " + weights + " --input-ids " + idsFile + out,
                cut + ": corrupt or truncated artifact");
  // The output cannot be created.
  expectFailure(base() + " --dump-logits " + dir + "/no/dir/o.safetensors",
                "cannot create");
}

TEST_F(CompressaRunTest, InputIdErrors) {
  std::string out = " --dump-logits " + dir + "/o.safetensors";
  std::vector<int64_t> bad = {5, 6, 1234};
  std::string badIds = writeIds(bad, "bad.safetensors");
  expectFailure(artifact + " --weights " + weights + " --input-ids " + badIds +
                    out,
                "token id 1234 at position 2 is outside the vocabulary "
                "(0..767)");
  std::vector<int64_t> tooLong(65, 3);
  std::string longIds = writeIds(tooLong, "long.safetensors");
  expectFailure(artifact + " --weights " + weights + " --input-ids " +
                    longIds + out,
                "prompt of 65 tokens exceeds the artifact's maximum context "
                "of 64");
  expectFailure(artifact + " --weights " + weights + " --input-ids " +
                    longIds + " -n 2 --greedy",
                "prompt of 65 tokens exceeds");
  std::vector<float> floats = {1, 2};
  std::string floatIds = dir + "/float.safetensors";
  ASSERT_TRUE(
      writeSafetensors(floatIds, {{"input_ids", DType::F32, {2}, floats.data()}})
          .ok());
  expectFailure(artifact + " --weights " + weights + " --input-ids " +
                    floatIds + out,
                "tensor 'input_ids' has dtype F32, expected I64");
  std::string other = dir + "/other.safetensors";
  ASSERT_TRUE(
      writeSafetensors(other, {{"tokens", DType::F32, {2}, floats.data()}})
          .ok());
  expectFailure(artifact + " --weights " + weights + " --input-ids " + other +
                    out,
                other + ": no tensor 'input_ids'");
  std::vector<int64_t> grid = {1, 2, 3, 4};
  std::string gridIds = dir + "/grid.safetensors";
  ASSERT_TRUE(
      writeSafetensors(gridIds, {{"input_ids", DType::I64, {2, 2}, grid.data()}})
          .ok());
  expectFailure(artifact + " --weights " + weights + " --input-ids " +
                    gridIds + out,
                "has shape [2, 2], expected [T] or [1, T]");
}

TEST_F(CompressaRunTest, WeightErrors) {
  std::string bad = dir + "/badweights";
  std::filesystem::create_directory(bad);
  toy::ToyWeights w = toy::toyWeights();
  std::vector<TensorToWrite> tensors = toy::toyWeightTensors(w);
  tensors.erase(tensors.begin()); // toy.bias
  ASSERT_TRUE(writeSafetensors(bad + "/model.safetensors", tensors).ok());
  expectFailure(artifact + " --weights " + bad + " --input-ids " + idsFile +
                    " -n 1",
                "weights " + bad + ": tensor 'toy.bias' is missing");
}

TEST_F(CompressaRunTest, CudaArtifactIsRefused) {
  toy::ArtifactSpec spec = toy::toyArtifactSpec(4);
  spec.target = fb::Target::Cuda;
  spec.hasCpu = false;
  std::string cuda = writeArtifact(spec, "gpu.cpa");
  expectFailure(cuda + " --weights " + weights + " --input-ids " + idsFile +
                    " -n 1",
                "this build of compressa-run runs CPU artifacts only; '" +
                    cuda + "' targets cuda");
}

} // namespace
} // namespace compressa
