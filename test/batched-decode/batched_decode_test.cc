// SPDX-License-Identifier: Apache-2.0
// The batched decode program ("decode_batch", compressa-compile --max-batch
// B > 1) on the golden tiny models, CPU target. Several slots at different
// positions (across window wrap-around and compressed-entry boundaries, with
// slots joining and pausing between steps) decode one token each per call;
// every slot's logits must equal the one-sequence decode program's for the
// same sequence and lie within 1e-3 of the golden logits. Bad steps are
// errors.
//
// On a GPU (scripts/gpu-check.sh): COMPRESSA_BATCHED_ARTIFACTS=DIR takes the
// artifacts DIR/MODEL-B.cpa compiled there (any target) instead of compiling
// CPU ones, COMPRESSA_BATCHED_MODELS the golden models' directory, and
// COMPRESSA_BATCHED_TOLERANCE the largest |batched - one-sequence| allowed
// (default 0: bit-identical).
#include "runtime/session/engine.h"
#include "runtime/weights/safetensors.h"
#include "test/common/artifact_cache.h"

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
  const char *dir = std::getenv("COMPRESSA_BATCHED_MODELS");
  return dir ? dir : COMPRESSA_MODELS;
}

double tolerance() {
  const char *text = std::getenv("COMPRESSA_BATCHED_TOLERANCE");
  return text ? std::atof(text) : 0.0;
}

/// A temporary directory for the compiled artifacts, removed at exit.
const std::string &workDir() {
  static const std::string dir = [] {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "compressa_batched_XXXXXX")
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

/// Compiles `model` for the CPU with --max-batch `batch` (once per pair;
/// `numerics` other than exact: --numerics=NUMERICS, in the key).
std::string compile(const std::string &model, int batch, const std::string &numerics = "exact") {
  static std::map<std::string, std::string> done;
  std::string key = model + "-" + std::to_string(batch) +
                    (numerics == "exact" ? "" : "-" + numerics);
  if (auto it = done.find(key); it != done.end())
    return it->second;
  if (const char *prebuilt = std::getenv("COMPRESSA_BATCHED_ARTIFACTS")) {
    std::string path = std::string(prebuilt) + "/" + key + ".cpa";
    return std::filesystem::exists(path) ? path : "";
  }
  // The formats of the quantized checkpoint (tiny-a's default is f32).
  auto compileTo = [&](const std::string &out) {
    std::string cmd = std::string("'") + COMPRESSA_COMPILE_BIN + "' '" +
                      models() + "/" + model +
                      "' --target=cpu --weight-format=official --max-batch " +
                      std::to_string(batch) + " --numerics=" + numerics + " -o '" + out + "'";
    return std::system(cmd.c_str()) == 0;
  };
  // Shared by this run's test processes (test/common/artifact_cache.h).
  std::string out = testing::cachedArtifact("batched-" + key, workDir(), compileTo);
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
  auto file = SafetensorsFile::open(models() + "/" + model + "/golden.safetensors");
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

/// The largest |a[i] - b[i]| of two rows of `n`.
template <typename A, typename B>
double maxDiff(const A *a, const B *b, int64_t n) {
  double most = 0;
  for (int64_t i = 0; i < n; ++i)
    most = std::max(most, std::fabs(double(a[i]) - double(b[i])));
  return most;
}

struct Case {
  const char *model;
  int batch;
  /// Prompt length of each slot: decoding continues from there.
  std::vector<int64_t> prompts;
  int64_t steps;
  /// --numerics of both artifacts, and the largest |diff| from the golden
  /// logits (1e-3 for exact; fast-decode's measured distance with margin:
  /// docs/perf.md, thirteenth session).
  const char *numerics = "exact";
  double golden = 1e-3;
};

class BatchedDecodeTest : public ::testing::TestWithParam<Case> {};

TEST_P(BatchedDecodeTest, SlotsMatchTheOneSequenceProgramAndGolden) {
  const Case &c = GetParam();
  ASSERT_FALSE(workDir().empty());
  if (std::string(c.numerics) != "exact" && std::getenv("COMPRESSA_BATCHED_ARTIFACTS"))
    GTEST_SKIP() << "prebuilt artifacts have one numerics (the case of its model runs)";
  std::string batched = compile(c.model, c.batch, c.numerics);
  ASSERT_FALSE(batched.empty()) << "compressa-compile failed";
  // The one-sequence reference: the decode program of a --max-batch 1
  // artifact, which has no batched program.
  std::string single = compile(c.model, 1, c.numerics);
  ASSERT_FALSE(single.empty()) << "compressa-compile --max-batch 1 failed";
  std::string weights = models() + "/" + c.model + "/quant";
  Golden golden = readGolden(c.model);
  ASSERT_GT(golden.vocab, 0);

  auto created = Engine::create(batched, weights);
  ASSERT_TRUE(created.ok()) << created.status().toString();
  Engine &engine = **created;
  ASSERT_EQ(engine.batchedDecodeMax(), c.batch);
  const int64_t slots = static_cast<int64_t>(c.prompts.size());
  ASSERT_LE(slots, c.batch);
  ASSERT_TRUE(engine.setSlotCount(slots).ok());
  int64_t v = engine.vocabSize();
  ASSERT_EQ(v, golden.vocab);

  // Prompts, slot by slot, with the prefill program.
  std::vector<int64_t> next(slots);
  for (int64_t k = 0; k < slots; ++k) {
    ASSERT_TRUE(engine.selectSlot(k).ok());
    auto logits = engine.prefill(golden.ids.data(), c.prompts[k], 0);
    ASSERT_TRUE(logits.ok()) << logits.status().toString();
    next[k] = c.prompts[k];
  }
  ASSERT_TRUE(engine.selectSlot(0).ok());
  // Decode steps: the slots in a rotating order; every third step one slot
  // sits out (it continues later at its own position), so the active set
  // changes between steps.
  std::vector<std::vector<std::pair<int64_t, std::vector<float>>>> got(slots);
  for (int64_t step = 0; step < c.steps; ++step) {
    std::vector<int64_t> slotIds, ids, positions;
    for (int64_t j = 0; j < slots; ++j) {
      int64_t k = (j + step) % slots;
      if (step % 3 == 2 && k == step % slots)
        continue;
      if (next[k] >= static_cast<int64_t>(golden.ids.size()))
        continue;
      slotIds.push_back(k);
      ids.push_back(golden.ids[next[k]]);
      positions.push_back(next[k]);
    }
    // Whichever slot is selected, the one batched program runs (and keeps
    // the selection).
    ASSERT_TRUE(engine.selectSlot(step % slots).ok());
    auto logits = engine.decodeStep(slotIds.data(), ids.data(),
                                    positions.data(),
                                    static_cast<int64_t>(slotIds.size()));
    ASSERT_TRUE(logits.ok()) << logits.status().toString();
    EXPECT_EQ(engine.selectedSlot(), step % slots);
    for (size_t i = 0; i < slotIds.size(); ++i) {
      int64_t k = slotIds[i];
      got[k].emplace_back(next[k],
                          std::vector<float>(logits->begin() + i * v,
                                             logits->begin() + (i + 1) * v));
      ++next[k];
    }
  }

  // Each slot's sequence alone through the one-sequence decode program.
  auto reference = Engine::create(single, weights);
  ASSERT_TRUE(reference.ok()) << reference.status().toString();
  Engine &ref = **reference;
  EXPECT_EQ(ref.batchedDecodeMax(), 0);
  double worstGolden = 0, worstRef = 0;
  int64_t compared = 0, identical = 0;
  for (int64_t k = 0; k < slots; ++k) {
    ref.reset();
    ASSERT_TRUE(ref.prefill(golden.ids.data(), c.prompts[k], 0).ok());
    for (const auto &[pos, row] : got[k]) {
      auto want = ref.decode(golden.ids[pos], pos);
      ASSERT_TRUE(want.ok()) << want.status().toString();
      double d = maxDiff(row.data(), want->data(), v);
      worstRef = std::max(worstRef, d);
      identical += d == 0;
      ++compared;
      // The same kernels in the same operation order: bit-identical.
      EXPECT_LE(d, tolerance()) << c.model << " slot " << k << " position " << pos;
      double g = maxDiff(row.data(), golden.logits.data() + pos * v, v);
      worstGolden = std::max(worstGolden, g);
      EXPECT_LE(g, c.golden) << c.model << " slot " << k << " position " << pos;
    }
  }
  std::printf("%s%s --max-batch %d: %lld rows of %lld slots; batched vs "
              "one-sequence decode: %lld of %lld bit-identical, max |diff| "
              "%.3g; vs golden: max |diff| %.3g\n",
              c.model,
              std::string(c.numerics) == "exact" ? "" : (std::string(" ") + c.numerics).c_str(),
              c.batch, (long long)compared, (long long)slots,
              (long long)identical, (long long)compared, worstRef, worstGolden);
  EXPECT_GT(compared, c.steps);
}

// tiny-a and tiny-c: prompts chosen so that slots decode across the sliding
// window's wrap-around and the compressors' entry boundaries at different
// steps.
INSTANTIATE_TEST_SUITE_P(
    TinyModels, BatchedDecodeTest,
    ::testing::Values(Case{"tiny-c", 4, {3, 60, 120, 101}, 30},
                      Case{"tiny-a", 3, {7, 126, 61}, 24},
                      // The FP8 experts with the sums over picks and parts
                      // read by hc.post, for several tokens a call.
                      Case{"tiny-c", 4, {3, 60, 120, 101}, 30, "fast-decode", 5.0}),
    [](const ::testing::TestParamInfo<Case> &info) {
      std::string name = info.param.model;
      if (std::string(info.param.numerics) != "exact")
        name += std::string("_") + info.param.numerics;
      std::replace(name.begin(), name.end(), '-', '_');
      return name;
    });

// --numerics=fast-decode: steps of at most 8 sequences take the FP8 experts
// (the case above, through COMPRESSA_BATCHED_ARTIFACTS on a GPU); larger
// steps take the experts of `fast`, whose sums over the picks are then read
// by hc.post (Emitter::expertsFp8). A step of 9 and one of 12 sequences,
// right after the same prompts: every row bit-identical to the `fast`
// artifact's (fast-decode differs from it only in the experts of steps of
// at most 8 sequences).
TEST(BatchedDecodeFastDecode, StepsOfMoreThanEightTakeFastsExperts) {
  ASSERT_FALSE(workDir().empty());
  if (std::getenv("COMPRESSA_BATCHED_ARTIFACTS"))
    GTEST_SKIP() << "compiles its own CPU artifacts";
  std::string fd = compile("tiny-c", 12, "fast-decode"), fast = compile("tiny-c", 12, "fast");
  ASSERT_FALSE(fd.empty() || fast.empty()) << "compressa-compile failed";
  std::string weights = models() + "/tiny-c/quant";
  Golden golden = readGolden("tiny-c");
  ASSERT_GT(golden.vocab, 0);
  for (int64_t slots : {9, 12}) {
    std::vector<std::vector<float>> rows[2];
    for (int a = 0; a < 2; ++a) {
      auto created = Engine::create(a ? fast : fd, weights);
      ASSERT_TRUE(created.ok()) << created.status().toString();
      Engine &engine = **created;
      ASSERT_TRUE(engine.setSlotCount(slots).ok());
      std::vector<int64_t> slotIds, ids, positions;
      for (int64_t k = 0; k < slots; ++k) {
        int64_t prompt = 5 + 11 * k;
        ASSERT_TRUE(engine.selectSlot(k).ok());
        ASSERT_TRUE(engine.prefill(golden.ids.data(), prompt, 0).ok());
        slotIds.push_back(k);
        ids.push_back(golden.ids[prompt]);
        positions.push_back(prompt);
      }
      auto logits = engine.decodeStep(slotIds.data(), ids.data(), positions.data(), slots);
      ASSERT_TRUE(logits.ok()) << logits.status().toString();
      int64_t v = engine.vocabSize();
      for (int64_t k = 0; k < slots; ++k)
        rows[a].emplace_back(logits->begin() + k * v, logits->begin() + (k + 1) * v);
    }
    int64_t identical = 0;
    for (int64_t k = 0; k < slots; ++k) {
      double d = maxDiff(rows[0][k].data(), rows[1][k].data(), int64_t(rows[0][k].size()));
      identical += d == 0;
      EXPECT_EQ(d, 0.0) << "slot " << k << " of a step of " << slots;
    }
    std::printf("tiny-c fast-decode --max-batch 12, a step of %lld sequences: %lld of %lld "
                "rows bit-identical to fast's\n",
                (long long)slots, (long long)identical, (long long)slots);
  }
}

TEST(BatchedDecodeErrors, BadStepsAreClearErrors) {
  ASSERT_FALSE(workDir().empty());
  std::string batched = compile("tiny-c", 4);
  ASSERT_FALSE(batched.empty());
  auto created = Engine::create(batched, models() + "/tiny-c/quant");
  ASSERT_TRUE(created.ok()) << created.status().toString();
  Engine &engine = **created;
  ASSERT_TRUE(engine.setSlotCount(5).ok());
  std::vector<int64_t> slotIds = {0, 1, 2, 3, 4}, ids(5, 1), positions(5, 0);
  auto tooMany = engine.decodeStep(slotIds.data(), ids.data(), positions.data(), 5);
  ASSERT_FALSE(tooMany.ok());
  EXPECT_NE(tooMany.status().message().find(
                "a decode step of 5 sequences, but the batched decode program "
                "runs at most 4 per step"),
            std::string::npos)
      << tooMany.status().toString();
  std::vector<int64_t> bad = {0, 7};
  auto badSlot = engine.decodeStep(bad.data(), ids.data(), positions.data(), 2);
  ASSERT_FALSE(badSlot.ok());
  EXPECT_NE(badSlot.status().message().find("names slot 7"), std::string::npos)
      << badSlot.status().toString();
  std::vector<int64_t> twice = {1, 1};
  auto duplicate = engine.decodeStep(twice.data(), ids.data(), positions.data(), 2);
  ASSERT_FALSE(duplicate.ok());
  EXPECT_NE(duplicate.status().message().find("distinct slots"), std::string::npos);
  std::vector<int64_t> far = {0, int64_t(1) << 40};
  auto beyond = engine.decodeStep(slotIds.data(), ids.data(), far.data(), 2);
  ASSERT_FALSE(beyond.ok());
  auto direct = engine.forward("decode_batch", ids.data(), 1, 0);
  ASSERT_FALSE(direct.ok());
  EXPECT_NE(direct.status().message().find("runs through decodeStep"),
            std::string::npos)
      << direct.status().toString();
  // After the errors the engine still decodes.
  auto fine = engine.decodeStep(slotIds.data(), ids.data(), positions.data(), 4);
  EXPECT_TRUE(fine.ok()) << fine.status().toString();
}

} // namespace
} // namespace compressa
