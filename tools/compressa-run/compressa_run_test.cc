// SPDX-License-Identifier: Apache-2.0
// Tests of the compressa-run command line on the synthetic toy artifact: the
// --dump-logits and -n interfaces, their output formats, and that every bad
// input ends in exit status 1 with a "compressa-run: error: " message; then
// the text modes (-p, -f, --chat) with the real tokenizer
// models/tokenizers/tiny-768.json, whose 768 tokens fit the toy vocabulary,
// checked token for token against the toy model's greedy reference.
#include "runtime/chat/chat_encoding.h"
#include "runtime/testing/toy_artifact.h"
#include "runtime/tokenizer/tokenizer.h"
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
#ifndef COMPRESSA_TINY_TOKENIZER
#error "COMPRESSA_TINY_TOKENIZER must name models/tokenizers/tiny-768.json"
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
        "--top-p", "--top-k", "--seed", "--help", "compressa-run: error: ",
        "-p TEXT", "-f FILE", "--chat", "--tokenizer FILE", "--system TEXT",
        "--think", "--json", "DIR/tokenizer.json", "Ctrl-D", "NO_COLOR",
        "time_to_first_token_s", "peak memory"})
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

//===----------------------------------------------------------------------===//
// The text modes
//===----------------------------------------------------------------------===//

/// `text` quoted for /bin/sh (bytes pass through unchanged).
std::string shellQuote(const std::string &text) {
  std::string out = "'";
  for (char c : text)
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

TEST_F(CompressaRunTest, TextModeOptionErrors) {
  std::string model = artifact + " --weights " + weights;
  std::string text = dir + "/prompt.txt";
  ASSERT_TRUE(toy::writeFile(text, std::string("hello")));
  expectFailure(model + " -p hi -f " + text,
                "-p and -f cannot be combined: give one of -p, -f and --chat");
  expectFailure(model + " --chat -p hi", "-p and --chat cannot be combined");
  expectFailure(model + " -f " + text + " --chat",
                "-f and --chat cannot be combined");
  expectFailure(base() + " -p hi",
                "--input-ids and -p cannot be combined: the prompt is either "
                "token ids or text");
  expectFailure(model + " -p hi --dump-logits " + dir + "/o.safetensors",
                "--dump-logits applies to --input-ids, not to -p");
  expectFailure(model + " -f " + text + " --prompt-len 2",
                "--prompt-len applies to --input-ids, not to -f");
  expectFailure(model + " --chat --prefill 1",
                "--prefill applies to --input-ids, not to --chat");
  expectFailure(model + " -p hi --print-ids",
                "--print-ids applies to --input-ids, not to -p");
  expectFailure(model + " -p hi --system be", "--system applies to --chat, "
                                              "not to -p");
  expectFailure(model + " -f " + text + " --think",
                "--think applies to --chat, not to -f");
  expectFailure(base() + " -n 2 --json",
                "--json applies to the text modes (-p, -f, --chat), not to "
                "--input-ids");
  expectFailure(base() + " -n 2 --tokenizer t.json", "--tokenizer applies to");
  expectFailure(base() + " -n 2 --think", "--think applies to the text modes");
  expectFailure(model, "--input-ids FILE is required (or a text mode: -p "
                       "TEXT, -f FILE or --chat)");
  expectFailure(model + " --chat --chat", "--chat is given more than once");
  expectFailure(model + " -p a -p b", "-p is given more than once");
  expectFailure(model + " --chat --json=yes", "--json takes no value");
  expectFailure(model + " --chat --system a --system b",
                "--system is given more than once");
  expectFailure(model + " -p", "-p expects a value");
  expectFailure(model + " -p hi -n -1", "-n must be >= 0");
  expectFailure(model + " -p hi --top-p 0", "top-p 0 is invalid");
}

TEST_F(CompressaRunTest, TextModePromptErrors) {
  std::string model = artifact + " --weights " + weights;
  // Prompt errors come first: no tokenizer is needed to report them.
  expectFailure(model + " -p ''", "empty prompt: -p gives no text");
  std::string empty = dir + "/empty.txt";
  ASSERT_TRUE(toy::writeFile(empty, std::string()));
  expectFailure(model + " -f " + empty, "empty prompt: " + empty + " is empty");
  expectFailure(model + " -f " + dir + "/absent.txt",
                dir + "/absent.txt: cannot open: No such file or directory");
  expectFailure(model + " -p " + shellQuote("ab\xFF" "c"),
                "-p: the prompt is not valid UTF-8 (byte offset 2)");
  std::string bad = dir + "/bad.txt";
  ASSERT_TRUE(toy::writeFile(bad, std::string("caf\xC3\xA9\n\xC3(")));
  expectFailure(model + " -f " + bad,
                bad + ": the prompt is not valid UTF-8 (byte offset 6)");
  expectFailure(model + " --chat --system " + shellQuote("\xE2\x82"),
                "--system: the text is not valid UTF-8 (byte offset 0)");
}

TEST_F(CompressaRunTest, TextModeNeedsATokenizer) {
  std::string model = artifact + " --weights " + weights;
  expectFailure(model + " -p hi",
                "no tokenizer: " + weights +
                    "/tokenizer.json does not exist; text modes need one "
                    "(give --tokenizer FILE; --input-ids runs without)");
  expectFailure(model + " --chat </dev/null",
                "no tokenizer: " + weights + "/tokenizer.json");
  expectFailure(model + " -p hi --tokenizer " + dir + "/none.json",
                "--tokenizer " + dir + "/none.json does not exist");
  // The token-id modes run without one.
  RunResult ids = run(base() + " -n 2 --greedy --print-ids");
  EXPECT_EQ(ids.exitCode, 0) << ids.err;
}

/// The text-mode tests that run the model: the real tokenizer, and helpers
/// that recompute what compressa-run must print.
class CompressaRunTextTest : public CompressaRunTest {
protected:
  void SetUp() override {
    CompressaRunTest::SetUp();
    if (!std::filesystem::exists(COMPRESSA_TINY_TOKENIZER))
      FAIL() << COMPRESSA_TINY_TOKENIZER << " is missing";
    StatusOr<std::unique_ptr<Tokenizer>> loaded =
        Tokenizer::fromFile(COMPRESSA_TINY_TOKENIZER);
    ASSERT_TRUE(loaded.ok()) << loaded.status().toString();
    tokenizer = std::move(loaded).value();
    model = artifact + " --weights " + weights + " --tokenizer " +
            COMPRESSA_TINY_TOKENIZER;
  }

  std::vector<int64_t> encode(const std::string &text) {
    StatusOr<std::vector<int64_t>> ids = tokenizer->encode(text);
    EXPECT_TRUE(ids.ok()) << ids.status().toString();
    return ids.ok() ? *ids : std::vector<int64_t>();
  }
  /// The text of generated ids as compressa-run prints it: the bytes of
  /// the tokens through a Utf8Stream, without the end-of-sequence token.
  std::string text(std::vector<int64_t> ids) {
    if (!ids.empty() && ids.back() == toy::kEos)
      ids.pop_back();
    Utf8Stream stream;
    std::string out;
    for (int64_t id : ids) {
      StatusOr<std::string> bytes = tokenizer->tokenBytes(id);
      EXPECT_TRUE(bytes.ok()) << bytes.status().toString();
      out += stream.push(bytes.ok() ? *bytes : "");
    }
    return out + stream.finish();
  }
  std::string writeText(const std::string &name, const std::string &bytes) {
    std::string path = dir + "/" + name;
    EXPECT_TRUE(toy::writeFile(path, bytes));
    return path;
  }
  /// A `"key":` member of a one-line JSON object, as raw JSON text.
  static std::string member(const std::string &json, const std::string &key) {
    size_t at = json.find("\"" + key + "\":");
    if (at == std::string::npos)
      return "<missing " + key + ">";
    at += key.size() + 3;
    size_t end = at;
    if (json[at] == '[') {
      end = json.find(']', at) + 1;
    } else if (json[at] == '"') {
      for (end = at + 1; json[end] != '"'; ++end)
        if (json[end] == '\\')
          ++end;
      ++end;
    } else {
      end = json.find_first_of(",}", at);
    }
    return json.substr(at, end - at);
  }
  /// `s` as a JSON string, escaped as compressa-run escapes it.
  static std::string jsonQuote(const std::string &s) {
    std::string out = "\"";
    for (char c : s) {
      unsigned char byte = static_cast<unsigned char>(c);
      if (c == '"' || c == '\\') {
        out += '\\';
        out += c;
      } else if (c == '\n') {
        out += "\\n";
      } else if (c == '\r') {
        out += "\\r";
      } else if (c == '\t') {
        out += "\\t";
      } else if (byte < 0x20 || byte == 0x7F) {
        char escape[8];
        std::snprintf(escape, sizeof(escape), "\\u%04x", byte);
        out += escape;
      } else {
        out += c;
      }
    }
    return out + "\"";
  }
  static std::string idList(const std::vector<int64_t> &ids) {
    std::string out = "[";
    for (size_t i = 0; i < ids.size(); ++i)
      out += (i ? "," : "") + std::to_string(ids[i]);
    return out + "]";
  }

  std::unique_ptr<Tokenizer> tokenizer;
  std::string model;
};

TEST_F(CompressaRunTextTest, CompletionStreamsTheGreedyContinuation) {
  const std::string prompt = "The cat sat";
  std::vector<int64_t> ids = {0};
  for (int64_t id : encode(prompt))
    ids.push_back(id);
  std::vector<int64_t> expected = toy::toyGreedy(ids, 6, toy::kEos);
  RunResult result = run(model + " -p " + shellQuote(prompt) + " -n 6 --greedy");
  ASSERT_EQ(result.exitCode, 0) << result.err;
  EXPECT_EQ(result.out, text(expected) + "\n");
  // Standard error (not a terminal): the load line, then the closing line.
  EXPECT_EQ(result.err.rfind("loaded weights: ", 0), 0u) << result.err;
  EXPECT_NE(result.err.find(" in 1 file, read in "), std::string::npos);
  std::string closing = "prompt: " + std::to_string(ids.size()) +
                        " tokens | first token: ";
  EXPECT_NE(result.err.find(closing), std::string::npos) << result.err;
  EXPECT_NE(result.err.find(" tok/s | decode: "), std::string::npos);
  EXPECT_NE(result.err.find("(" + std::to_string(expected.size()) +
                            " tokens, stopped: "),
            std::string::npos)
      << result.err;
  EXPECT_NE(result.err.find(" | peak memory: "), std::string::npos);
  EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 2)
      << result.err;
  // -f reads the same prompt from a file.
  std::string file = writeText("prompt.txt", prompt);
  RunResult fromFile = run(model + " -f " + file + " -n 6 --greedy");
  ASSERT_EQ(fromFile.exitCode, 0) << fromFile.err;
  EXPECT_EQ(fromFile.out, result.out);
}

TEST_F(CompressaRunTextTest, CompletionJson) {
  const std::string prompt = "Hello, 世界";
  std::vector<int64_t> ids = {0};
  for (int64_t id : encode(prompt))
    ids.push_back(id);
  std::vector<int64_t> expected = toy::toyGreedy(ids, 5, toy::kEos);
  RunResult result =
      run(model + " -p " + shellQuote(prompt) + " -n 5 --greedy --json");
  ASSERT_EQ(result.exitCode, 0) << result.err;
  EXPECT_TRUE(result.err.empty()) << result.err;
  ASSERT_EQ(std::count(result.out.begin(), result.out.end(), '\n'), 1)
      << result.out;
  EXPECT_EQ(result.out.rfind("{\"mode\":\"completion\",\"text\":", 0), 0u)
      << result.out;
  EXPECT_EQ(member(result.out, "ids"), idList(expected));
  EXPECT_EQ(member(result.out, "prompt_tokens"), std::to_string(ids.size()));
  EXPECT_EQ(member(result.out, "generated_tokens"),
            std::to_string(expected.size()));
  EXPECT_EQ(member(result.out, "stop"),
            expected.back() == toy::kEos ? "\"eos\"" : "\"limit\"");
  for (const char *key :
       {"time_to_first_token_s", "prefill_s", "prefill_tokens_per_s",
        "decode_s", "decode_tokens_per_s", "load_s", "weight_bytes",
        "peak_rss_bytes"})
    EXPECT_EQ(member(result.out, key).find("<missing"), std::string::npos)
        << key;
  EXPECT_NE(member(result.out, "peak_rss_bytes"), "0");
  EXPECT_EQ(result.out.find("\"reasoning\""), std::string::npos);
  // Greedy is reproducible, and the JSON text is what streaming prints.
  RunResult plain = run(model + " -p " + shellQuote(prompt) + " -n 5 --greedy");
  ASSERT_EQ(plain.exitCode, 0) << plain.err;
  EXPECT_EQ(plain.out, text(expected) + "\n");
}

TEST_F(CompressaRunTextTest, TokenizerNextToTheWeights) {
  std::filesystem::copy_file(COMPRESSA_TINY_TOKENIZER,
                             weights + "/tokenizer.json");
  RunResult beside = run(artifact + " --weights " + weights +
                         " -p Hi -n 3 --greedy --json");
  ASSERT_EQ(beside.exitCode, 0) << beside.err;
  RunResult given = run(model + " -p Hi -n 3 --greedy --json");
  ASSERT_EQ(given.exitCode, 0) << given.err;
  EXPECT_EQ(member(beside.out, "ids"), member(given.out, "ids"));
}

TEST_F(CompressaRunTextTest, SamplingFlagsAndZeroTokens) {
  std::string args = model + " -p Hi -n 8 --temperature 3 --top-k 40 "
                             "--top-p 0.9 --seed 11 --json";
  RunResult first = run(args), second = run(args);
  ASSERT_EQ(first.exitCode, 0) << first.err;
  EXPECT_EQ(member(first.out, "ids"), member(second.out, "ids"));
  RunResult none = run(model + " -p Hi -n 0");
  ASSERT_EQ(none.exitCode, 0) << none.err;
  EXPECT_EQ(none.out, "\n");
  EXPECT_NE(none.err.find("(0 tokens, stopped: token limit)"),
            std::string::npos)
      << none.err;
}

TEST_F(CompressaRunTextTest, ChatReencodesTheConversationEachTurn) {
  StatusOr<ChatEncoder> encoder = ChatEncoder::create(*tokenizer);
  ASSERT_TRUE(encoder.ok()) << encoder.status().toString();
  std::string input = writeText("chat.txt", "Hi there\n\n  \nMore?\n");
  RunResult result = run(model + " --chat --system 'Be brief.' -n 4 "
                                 "--greedy --json <" + input);
  ASSERT_EQ(result.exitCode, 0) << result.err;
  EXPECT_TRUE(result.err.empty()) << result.err;
  std::istringstream lines(result.out);
  std::vector<std::string> turns;
  for (std::string line; std::getline(lines, line);)
    turns.push_back(line);
  // Blank lines are skipped: two turns.
  ASSERT_EQ(turns.size(), 2u) << result.out;

  std::vector<ChatMessage> conversation = {
      {ChatRole::System, "Be brief.", ""}, {ChatRole::User, "Hi there", ""}};
  StatusOr<std::vector<int64_t>> first = encoder->encode(conversation);
  ASSERT_TRUE(first.ok());
  std::vector<int64_t> reply1 = toy::toyGreedy(*first, 4, toy::kEos);
  EXPECT_EQ(turns[0].rfind("{\"mode\":\"chat\",\"turn\":1,", 0), 0u);
  EXPECT_EQ(member(turns[0], "prompt_tokens"), std::to_string(first->size()));
  EXPECT_EQ(member(turns[0], "ids"), idList(reply1));

  // The second prompt holds the first answer, as text re-encoded.
  conversation.push_back({ChatRole::Assistant, text(reply1), ""});
  conversation.push_back({ChatRole::User, "More?", ""});
  StatusOr<std::vector<int64_t>> second = encoder->encode(conversation);
  ASSERT_TRUE(second.ok());
  std::vector<int64_t> reply2 = toy::toyGreedy(*second, 4, toy::kEos);
  EXPECT_EQ(turns[1].rfind("{\"mode\":\"chat\",\"turn\":2,", 0), 0u);
  EXPECT_EQ(member(turns[1], "prompt_tokens"), std::to_string(second->size()));
  EXPECT_EQ(member(turns[1], "ids"), idList(reply2));

  // Without --json: the replies, each on its line, and the closing lines.
  RunResult plain = run(model + " --chat --system 'Be brief.' -n 4 --greedy <" +
                        input);
  ASSERT_EQ(plain.exitCode, 0) << plain.err;
  EXPECT_EQ(plain.out, text(reply1) + "\n" + text(reply2) + "\n");
  EXPECT_NE(plain.err.find("prompt: " + std::to_string(first->size()) +
                           " tokens | "),
            std::string::npos)
      << plain.err;
  EXPECT_NE(plain.err.find("prompt: " + std::to_string(second->size()) +
                           " tokens | "),
            std::string::npos)
      << plain.err;
  // Not a terminal: no prompt, no escape sequences.
  EXPECT_EQ(plain.out.find("> "), std::string::npos);
  EXPECT_EQ(plain.err.find('\x1b'), std::string::npos);
}

TEST_F(CompressaRunTextTest, ChatThinkingMode) {
  StatusOr<ChatEncoder> encoder = ChatEncoder::create(*tokenizer);
  ASSERT_TRUE(encoder.ok()) << encoder.status().toString();
  std::string input = writeText("chat.txt", "Why?\n");
  RunResult result =
      run(model + " --chat --think -n 6 --greedy --json <" + input);
  ASSERT_EQ(result.exitCode, 0) << result.err;
  StatusOr<std::vector<int64_t>> prompt = encoder->encode(
      {{ChatRole::User, "Why?", ""}}, {ChatMode::Thinking, true});
  ASSERT_TRUE(prompt.ok());
  EXPECT_EQ(prompt->back(), encoder->specialTokens().thinkStart);
  std::vector<int64_t> reply = toy::toyGreedy(*prompt, 6, toy::kEos);
  EXPECT_EQ(member(result.out, "ids"), idList(reply));
  // Up to </think> the reply is reasoning; after it, the answer.
  auto end = std::find(reply.begin(), reply.end(),
                       encoder->specialTokens().thinkEnd);
  std::vector<int64_t> reasoning(reply.begin(), end);
  std::vector<int64_t> answer;
  if (end != reply.end())
    answer.assign(end + 1, reply.end());
  EXPECT_EQ(member(result.out, "reasoning"), jsonQuote(text(reasoning)));
  EXPECT_EQ(member(result.out, "text"), jsonQuote(text(answer)));
  // Streamed: <think>, the reasoning, then </think> and the answer.
  RunResult plain = run(model + " --chat --think -n 6 --greedy <" + input);
  ASSERT_EQ(plain.exitCode, 0) << plain.err;
  EXPECT_EQ(plain.out, "<think>" + text(reasoning) +
                           (end != reply.end() ? "</think>" : "") +
                           text(answer) + "\n");
}

TEST_F(CompressaRunTextTest, TextModeModelErrors) {
  // A prompt longer than the toy context of 64 tokens.
  std::string longText;
  for (int i = 0; i < 80; ++i)
    longText += "word" + std::to_string(i) + " ";
  size_t tokens = 1 + encode(longText).size();
  ASSERT_GT(tokens, 64u);
  expectFailure(model + " -p " + shellQuote(longText) + " -n 2",
                "the prompt of " + std::to_string(tokens) +
                    " tokens exceeds the artifact's maximum context of 64");
  // In a chat the model is loaded before the first line is read.
  std::string input = writeText("long.txt", longText + "\n");
  RunResult chat = run(model + " --chat -n 2 <" + input);
  EXPECT_EQ(chat.exitCode, 1);
  EXPECT_NE(chat.err.find("\ncompressa-run: error: the conversation of " +
                          std::to_string(tokens + 3) +
                          " tokens exceeds the artifact's maximum context of "
                          "64\n"),
            std::string::npos)
      << chat.err;
  // A tokenizer of another model: the special ids disagree.
  toy::ArtifactSpec spec = toy::toyArtifactSpec(4);
  spec.eosTokenId = 7;
  std::string other = writeArtifact(spec, "eos7.cpa");
  expectFailure(other + " --weights " + weights + " --tokenizer " +
                    COMPRESSA_TINY_TOKENIZER + " -p hi",
                "gives '<｜end▁of▁sentence｜>' the id 1 but the artifact's "
                "eos_token_id is 7: they belong to different models");
  // A tokenizer without <think>: the chat refuses to start, before the model
  // is loaded; a completion needs BOS only.
  std::string json = toy::readFile(COMPRESSA_TINY_TOKENIZER);
  for (size_t at; (at = json.find("\"<think>\"")) != std::string::npos;)
    json.replace(at, 9, "\"<thonk>\"");
  std::string noThink = writeText("no-think.json", json);
  std::string withoutThink = artifact + " --weights " + weights +
                             " --tokenizer " + noThink;
  expectFailure(withoutThink + " --chat </dev/null",
                "the tokenizer has no token '<think>' (the DeepSeek-V4 chat "
                "format needs it)");
  RunResult completion = run(withoutThink + " -p hi -n 2 --greedy");
  EXPECT_EQ(completion.exitCode, 0) << completion.err;
  // Invalid UTF-8 on a chat line.
  std::string bad = writeText("bad.txt", "fine\nno\xC0\xAF good\n");
  RunResult result = run(model + " --chat -n 1 --greedy <" + bad);
  EXPECT_EQ(result.exitCode, 1);
  EXPECT_NE(result.err.find("compressa-run: error: message 2 of standard "
                            "input is not valid UTF-8 (byte offset 2)"),
            std::string::npos)
      << result.err;
}

} // namespace
} // namespace compressa
