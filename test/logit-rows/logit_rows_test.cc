// SPDX-License-Identifier: Apache-2.0
// LogitRows (artifact.fbs): a prefill call computes the logits of only its
// last L tokens. On the golden tiny models (tiny-a, tiny-c; quantized
// checkpoints), compiled for the CPU with --prefill-max-tokens=1024:
//  - Engine::prefillLast's row equals, bit for bit, the last row of
//    Engine::prefill with the same chunks (1, 7, 64 and the whole prompt:
//    288 tokens for tiny-a, 599 for tiny-c), and lies within 1e-3 of the
//    golden logits;
//  - forward(..., L) returns, bit for bit, the last L rows of forward(...)
//    for L = 0, 1, 3 and S;
//  - a call with L = 0 leaves every decode state byte as a call with L = S
//    does, and the decode after it gives the same logits;
//  - L < 0 or L > S, and prefillLast of no token, are InvalidArgument
//    errors naming the counts;
//  - the head of the prefill and decode programs computes only the asked
//    rows (computesLogitRows), the batched decode program's every row.
//
// The CUDA twin (logit_rows_gpu_test, the same source built with
// COMPRESSA_LOGIT_ROWS_GPU=1) runs the same checks on artifacts compiled for
// a GPU: COMPRESSA_LOGIT_ROWS_ARTIFACTS=DIR takes DIR/MODEL.cpa
// (scripts/gpu-check.sh prepares them), COMPRESSA_LOGIT_ROWS_MODELS the
// golden models' directory; it skips without a GPU (fails under
// COMPRESSA_REQUIRE_GPU=1). COMPRESSA_LOGIT_ROWS_TOLERANCE is the largest
// |prefillLast - prefill| allowed (default 0: bit-identical).
#include "runtime/session/engine.h"
#include "runtime/weights/safetensors.h"
#include "test/common/artifact_cache.h"
#if COMPRESSA_LOGIT_ROWS_GPU
#include "runtime/testing/gpu_test.h"
#endif

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace compressa {
namespace {

std::string models() {
  const char *dir = std::getenv("COMPRESSA_LOGIT_ROWS_MODELS");
  return dir ? dir : COMPRESSA_MODELS;
}

double tolerance() {
  const char *text = std::getenv("COMPRESSA_LOGIT_ROWS_TOLERANCE");
  return text ? std::atof(text) : 0.0;
}

/// The largest |decode program - prefill program| allowed for the same
/// token (COMPRESSA_LOGIT_ROWS_PROGRAM_TOLERANCE, default 0: bit-identical).
/// With artifacts compiled under COMPRESSA_EXACT_MMA=1 the exact experts of
/// a call of few tokens take the tensor-core program
/// (lowering/DSV4ToKernels/ExactMma.cpp), those of a longer prefill f32
/// tiles: the two programs then agree to the sums' rounding only.
double programTolerance() {
  const char *text = std::getenv("COMPRESSA_LOGIT_ROWS_PROGRAM_TOLERANCE");
  return text ? std::atof(text) : 0.0;
}

/// A temporary directory for the compiled artifacts, removed at exit.
const std::string &workDir() {
  static const std::string dir = [] {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "compressa_logit_rows_XXXXXX")
            .string();
    char *made = mkdtemp(tmpl.data());
    return std::string(made ? made : "");
  }();
  return dir;
}

struct Cleanup {
  ~Cleanup() {
    std::error_code ignored;
    if (!workDir().empty())
      std::filesystem::remove_all(workDir(), ignored);
  }
} cleanup;

/// The artifact of `model` (`batch`: with --max-batch), compiled once.
std::string compile(const std::string &model, int batch = 1) {
  static std::map<std::string, std::string> done;
  std::string key = model + (batch > 1 ? "-b" + std::to_string(batch) : "");
  if (auto it = done.find(key); it != done.end())
    return it->second;
  if (const char *prebuilt = std::getenv("COMPRESSA_LOGIT_ROWS_ARTIFACTS")) {
    std::string path = std::string(prebuilt) + "/" + key + ".cpa";
    return std::filesystem::exists(path) ? path : "";
  }
#if COMPRESSA_LOGIT_ROWS_GPU
  const char *target = "cuda:sm_90a";
#else
  const char *target = "cpu";
#endif
  // The formats of the quantized checkpoint (tiny-a's default is f32).
  auto compileTo = [&](const std::string &out) {
    std::string cmd = std::string("'") + COMPRESSA_COMPILE_BIN + "' '" +
                      models() + "/" + model + "' --target=" + target +
                      " --weight-format=official --prefill-max-tokens=1024 "
                      "--max-batch " +
                      std::to_string(batch) + " -o '" + out + "'";
    return std::system(cmd.c_str()) == 0;
  };
  // Shared by this run's test processes (test/common/artifact_cache.h).
  std::string out = testing::cachedArtifact(
      std::string("logit-rows-") + (std::string(target) == "cpu" ? "cpu-" : "cuda-") + key,
      workDir(), compileTo);
  if (out.empty())
    return "";
  return done[key] = out;
}

struct Golden {
  std::vector<int64_t> ids;
  std::vector<double> logits; // [T, vocab]
  int64_t vocab = 0;
};

Golden readGolden(const std::string &model) {
  Golden g;
  auto file =
      SafetensorsFile::open(models() + "/" + model + "/golden.safetensors");
  if (!file.ok())
    return g;
  const TensorView *ids = (*file)->find("input_ids");
  const TensorView *logits = (*file)->find("logits_quant");
  if (!ids || !logits || logits->shape.size() != 2)
    return g;
  g.ids.resize(ids->nbytes / 8);
  std::memcpy(g.ids.data(), ids->data, ids->nbytes);
  g.logits.resize(logits->nbytes / 8);
  std::memcpy(g.logits.data(), logits->data, logits->nbytes);
  g.vocab = logits->shape[1];
  return g;
}

/// The largest |a[i] - b[i]| of `n` values.
template <typename A, typename B>
double maxDiff(const A *a, const B *b, int64_t n) {
  double most = 0;
  for (int64_t i = 0; i < n; ++i)
    most = std::max(most, std::fabs(double(a[i]) - double(b[i])));
  return most;
}

/// Whether `n` floats are equal bit for bit (or within tol).
::testing::AssertionResult sameRows(const float *a, const float *b, int64_t n,
                                    double tol = tolerance()) {
  if (tol == 0 ? std::memcmp(a, b, size_t(n) * 4) == 0 : maxDiff(a, b, n) <= tol)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "max |diff| " << maxDiff(a, b, n) << " over " << n
         << " values (allowed " << tol << ")";
}

struct Case {
  const char *model;
  /// Prompt tokens (of the golden input ids).
  int64_t prompt;
};

class LogitRowsTest : public ::testing::TestWithParam<Case> {
protected:
  void SetUp() override {
#if COMPRESSA_LOGIT_ROWS_GPU
    COMPRESSA_SKIP_WITHOUT_GPU();
#endif
    const Case &c = GetParam();
    ASSERT_FALSE(workDir().empty());
    std::string artifact = compile(c.model);
    ASSERT_FALSE(artifact.empty()) << "compressa-compile failed";
    golden = readGolden(c.model);
    ASSERT_GT(golden.vocab, 0);
    ASSERT_LE(c.prompt + 1, int64_t(golden.ids.size()));
    auto created =
        Engine::create(artifact, models() + "/" + c.model + "/quant");
    ASSERT_TRUE(created.ok()) << created.status().toString();
    engine = std::move(*created);
    vocab = engine->vocabSize();
    ASSERT_EQ(vocab, golden.vocab);
  }

  /// Every decode state's bytes.
  std::vector<std::vector<uint8_t>> states() {
    std::vector<std::vector<uint8_t>> all;
    for (size_t s = 0;; ++s) {
      StatusOr<std::vector<uint8_t>> bytes = engine->readState(s);
      if (!bytes.ok())
        break;
      all.push_back(std::move(*bytes));
    }
    return all;
  }

  Golden golden;
  std::unique_ptr<Engine> engine;
  int64_t vocab = 0;
};

// The CUDA twin's tests have names of their own (both binaries register
// with ctest).
#if COMPRESSA_LOGIT_ROWS_GPU
class LogitRowsGpuTest : public LogitRowsTest {};
#define LOGIT_ROWS_TEST(name) TEST_P(LogitRowsGpuTest, name)
#define LOGIT_ROWS_INSTANTIATE(...)                                            \
  INSTANTIATE_TEST_SUITE_P(Gpu, LogitRowsGpuTest, __VA_ARGS__)
#define LOGIT_ROWS_BATCHED(name) TEST(LogitRowsGpuBatched, name)
#else
#define LOGIT_ROWS_TEST(name) TEST_P(LogitRowsTest, name)
#define LOGIT_ROWS_INSTANTIATE(...)                                            \
  INSTANTIATE_TEST_SUITE_P(Golden, LogitRowsTest, __VA_ARGS__)
#define LOGIT_ROWS_BATCHED(name) TEST(LogitRowsBatched, name)
#endif

LOGIT_ROWS_TEST(HeadComputesOnlyTheAskedRows) {
  EXPECT_TRUE(engine->computesLogitRows("prefill"));
  EXPECT_TRUE(engine->computesLogitRows("decode"));
}

LOGIT_ROWS_TEST(PrefillLastEqualsTheLastRowOfPrefill) {
  const Case &c = GetParam();
  const int64_t *ids = golden.ids.data();
  for (int64_t chunk : {int64_t(1), int64_t(7), int64_t(64), c.prompt}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    engine->reset();
    auto all = engine->prefill(ids, c.prompt, 0, chunk);
    ASSERT_TRUE(all.ok()) << all.status().toString();
    ASSERT_EQ(int64_t(all->size()), c.prompt * vocab);
    const float *lastRow = all->data() + (c.prompt - 1) * vocab;
    engine->reset();
    auto last = engine->prefillLast(ids, c.prompt, 0, chunk);
    ASSERT_TRUE(last.ok()) << last.status().toString();
    ASSERT_EQ(int64_t(last->size()), vocab);
    EXPECT_TRUE(sameRows(last->data(), lastRow, vocab));
    double golden1 = maxDiff(last->data(),
                             golden.logits.data() + (c.prompt - 1) * vocab, vocab);
    EXPECT_LE(golden1, 1e-3) << "against the golden logits of position "
                             << c.prompt - 1;
    // The decode after it continues the same sequence.
    auto next = engine->decode(ids[c.prompt], c.prompt);
    ASSERT_TRUE(next.ok()) << next.status().toString();
    EXPECT_LE(maxDiff(next->data(), golden.logits.data() + c.prompt * vocab,
                      vocab),
              1e-3)
        << "decode at position " << c.prompt << " after prefillLast";
  }
}

LOGIT_ROWS_TEST(ForwardReturnsTheLastRows) {
  const Case &c = GetParam();
  const int64_t *ids = golden.ids.data();
  int64_t s = std::min<int64_t>(c.prompt, 40);
  engine->reset();
  auto all = engine->forward("prefill", ids, s, 0);
  ASSERT_TRUE(all.ok()) << all.status().toString();
  for (int64_t rows : {int64_t(0), int64_t(1), int64_t(3), s}) {
    SCOPED_TRACE("L = " + std::to_string(rows));
    engine->reset();
    auto some = engine->forward("prefill", ids, s, 0, rows);
    ASSERT_TRUE(some.ok()) << some.status().toString();
    ASSERT_EQ(int64_t(some->size()), rows * vocab);
    EXPECT_TRUE(sameRows(some->data(), all->data() + (s - rows) * vocab,
                         rows * vocab));
  }
  // One token through the decode program, with and without its row.
  engine->reset();
  auto one = engine->forward("decode", ids, 1, 0, 1);
  ASSERT_TRUE(one.ok()) << one.status().toString();
  EXPECT_TRUE(sameRows(one->data(), all->data(), vocab, programTolerance()));
  engine->reset();
  auto none = engine->forward("decode", ids, 1, 0, 0);
  ASSERT_TRUE(none.ok()) << none.status().toString();
  EXPECT_TRUE(none->empty());
}

LOGIT_ROWS_TEST(NoRowsLeavesTheDecodeStateAsAllRows) {
  const Case &c = GetParam();
  const int64_t *ids = golden.ids.data();
  // Two chunks, then a decode: once with every row, once with none.
  int64_t first = std::min<int64_t>(c.prompt / 2, 100);
  int64_t second = std::min<int64_t>(c.prompt - first, 100);
  int64_t pos = first + second;
  std::vector<std::vector<uint8_t>> stateAll, stateNone;
  std::vector<float> decodeAll, decodeNone;
  for (bool rows : {true, false}) {
    engine->reset();
    auto a = engine->forward("prefill", ids, first, 0, rows ? first : 0);
    ASSERT_TRUE(a.ok()) << a.status().toString();
    auto b = engine->forward("prefill", ids + first, second, first,
                             rows ? second : 0);
    ASSERT_TRUE(b.ok()) << b.status().toString();
    (rows ? stateAll : stateNone) = states();
    auto d = engine->decode(ids[pos], pos);
    ASSERT_TRUE(d.ok()) << d.status().toString();
    (rows ? decodeAll : decodeNone) = *d;
  }
  ASSERT_FALSE(stateAll.empty());
  ASSERT_EQ(stateAll.size(), stateNone.size());
  for (size_t s = 0; s < stateAll.size(); ++s)
    EXPECT_TRUE(stateAll[s] == stateNone[s]) << "state " << s << " differs";
  ASSERT_EQ(int64_t(decodeAll.size()), vocab);
  EXPECT_TRUE(sameRows(decodeNone.data(), decodeAll.data(), vocab));
}

LOGIT_ROWS_TEST(BadRowCountsAreErrors) {
  const int64_t *ids = golden.ids.data();
  for (int64_t rows : {int64_t(-1), int64_t(6)}) {
    auto bad = engine->forward("prefill", ids, 5, 0, rows);
    ASSERT_FALSE(bad.ok()) << "L = " << rows;
    EXPECT_EQ(bad.status().code(), StatusCode::InvalidArgument);
    std::string text = bad.status().message();
    EXPECT_NE(text.find(std::to_string(rows) + " logit rows"), std::string::npos)
        << text;
    EXPECT_NE(text.find("of 5 tokens"), std::string::npos) << text;
    EXPECT_NE(text.find("'prefill'"), std::string::npos) << text;
  }
  auto empty = engine->prefillLast(ids, 0, 0);
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().code(), StatusCode::InvalidArgument);
  EXPECT_NE(empty.status().message().find("at least one token"),
            std::string::npos)
      << empty.status().message();
}

LOGIT_ROWS_INSTANTIATE(::testing::Values(Case{"tiny-a", 288 - 1},
                                         Case{"tiny-c", 599}),
                       [](const auto &info) {
                         std::string name = info.param.model;
                         std::replace(name.begin(), name.end(), '-', '_');
                         return name;
                       });

/// The batched decode program keeps every row (its tokens are sequences).
LOGIT_ROWS_BATCHED(BatchedDecodeComputesEveryRow) {
#if COMPRESSA_LOGIT_ROWS_GPU
  COMPRESSA_SKIP_WITHOUT_GPU();
#endif
  std::string artifact = compile("tiny-c", 2);
  ASSERT_FALSE(artifact.empty()) << "compressa-compile --max-batch 2 failed";
  auto created = Engine::create(artifact, models() + "/tiny-c/quant");
  ASSERT_TRUE(created.ok()) << created.status().toString();
  Engine &engine = **created;
  ASSERT_GT(engine.batchedDecodeMax(), 0);
  EXPECT_FALSE(engine.computesLogitRows("decode_batch"));
  EXPECT_TRUE(engine.computesLogitRows("prefill"));
}

} // namespace
} // namespace compressa
