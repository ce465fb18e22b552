//===- compressa-bench.cpp - Prefill and decode throughput ---------------===//
// SPDX-License-Identifier: Apache-2.0
//
//   compressa-bench ARTIFACT --weights DIR [--prompt N] [--gen M] [--repeat R]
//
// Runs a prompt of N synthetic token ids (prefill, in the artifact's chunks),
// then M decode steps, R times (after one warm-up run), and prints the median
// prefill and decode throughput. Figures for docs/perf.md come from here.
//
//===----------------------------------------------------------------------===//

#include "runtime/session/engine.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using namespace compressa;

static int usage(const char *error) {
  if (error)
    std::fprintf(stderr, "compressa-bench: error: %s\n", error);
  std::fprintf(error ? stderr : stdout,
               "USAGE: compressa-bench ARTIFACT --weights DIR [--prompt N] "
               "[--gen M] [--repeat R]\n\n"
               "  --prompt N   prompt tokens to prefill (default 512)\n"
               "  --gen M      tokens to decode after the prompt (default 128)\n"
               "  --repeat R   measured runs after one warm-up (default 5)\n"
               "Prints the median prefill and decode tokens/s.\n");
  return error ? 1 : 0;
}

static bool parseCount(const char *text, int64_t &out) {
  char *end = nullptr;
  long long v = std::strtoll(text, &end, 10);
  if (!*text || *end || v < 1 || v > (1ll << 30))
    return false;
  out = v;
  return true;
}

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int main(int argc, char **argv) {
  std::string artifact, weights;
  int64_t prompt = 512, gen = 128, repeat = 5;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](int64_t &out) {
      return i + 1 < argc && parseCount(argv[++i], out);
    };
    if (arg == "-h" || arg == "--help")
      return usage(nullptr);
    if (arg == "--weights" && i + 1 < argc)
      weights = argv[++i];
    else if (arg == "--prompt") {
      if (!value(prompt))
        return usage("--prompt takes a count >= 1");
    } else if (arg == "--gen") {
      if (!value(gen))
        return usage("--gen takes a count >= 1");
    } else if (arg == "--repeat") {
      if (!value(repeat))
        return usage("--repeat takes a count >= 1");
    } else if (!arg.empty() && arg[0] != '-' && artifact.empty())
      artifact = arg;
    else
      return usage(("unknown argument '" + arg + "'").c_str());
  }
  if (artifact.empty() || weights.empty())
    return usage("an artifact and --weights are required");

  StatusOr<std::unique_ptr<Engine>> engine = Engine::create(artifact, weights);
  if (!engine.ok()) {
    std::fprintf(stderr, "compressa-bench: error: %s\n",
                 engine.status().message().c_str());
    return 1;
  }
  Engine &e = **engine;
  if (prompt + gen > e.maxContext()) {
    std::fprintf(stderr,
                 "compressa-bench: error: %lld prompt + %lld generated tokens "
                 "exceed the artifact's maximum context of %lld\n",
                 (long long)prompt, (long long)gen, (long long)e.maxContext());
    return 1;
  }
  // Deterministic ids spread over the vocabulary (past the special ids).
  std::vector<int64_t> ids(prompt);
  for (int64_t i = 0; i < prompt; ++i)
    ids[i] = 2 + (i * 7919) % (e.vocabSize() - 2);

  using Clock = std::chrono::steady_clock;
  std::vector<double> prefillRates, decodeRates;
  for (int64_t run = 0; run <= repeat; ++run) {
    e.reset();
    Clock::time_point t0 = Clock::now();
    StatusOr<std::vector<float>> logits = e.prefill(ids.data(), prompt, 0);
    Clock::time_point t1 = Clock::now();
    if (!logits.ok()) {
      std::fprintf(stderr, "compressa-bench: error: %s\n",
                   logits.status().message().c_str());
      return 1;
    }
    int64_t next = ids.back();
    for (int64_t g = 0; g < gen; ++g) {
      StatusOr<std::vector<float>> step = e.decode(next, prompt + g);
      if (!step.ok()) {
        std::fprintf(stderr, "compressa-bench: error: %s\n",
                     step.status().message().c_str());
        return 1;
      }
      const std::vector<float> &l = *step;
      next = std::max_element(l.begin(), l.end()) - l.begin();
    }
    Clock::time_point t2 = Clock::now();
    if (run == 0)
      continue; // warm-up
    prefillRates.push_back(prompt / std::chrono::duration<double>(t1 - t0).count());
    decodeRates.push_back(gen / std::chrono::duration<double>(t2 - t1).count());
  }
  std::printf("artifact %s\nbackend %s\n"
              "prompt %lld tokens, %lld decoded, median of %lld runs\n"
              "prefill %.1f tokens/s\ndecode  %.1f tokens/s\n"
              "decode step: %lld kernels, %lld launches (%s)\n",
              artifact.c_str(), e.backendDescription().c_str(),
              (long long)prompt, (long long)gen, (long long)repeat,
              median(prefillRates), median(decodeRates),
              (long long)e.decodeKernels(), (long long)e.launchesPerDecodeStep(),
              e.decodeUsesGraph() ? "one CUDA graph launch" : "one launch per kernel");
  return 0;
}
