//===- compressa-bench.cpp - Prefill and decode throughput ---------------===//
// SPDX-License-Identifier: Apache-2.0
//
//   compressa-bench ARTIFACT --weights DIR [--prompt N] [--gen M] [--repeat R]
//                   [--profile]
//
// Runs a prompt of N synthetic token ids (prefill, in the artifact's chunks),
// then M decode steps, R times (after one warm-up run), and prints the median
// prefill and decode throughput, timed by the backend's clock (CUDA events on
// a GPU) and by the host's wall clock. --profile adds one more run that times
// every decode launch on its own and prints the time per kernel. Figures for
// docs/perf.md come from here.
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
               "[--gen M] [--repeat R] [--profile]\n\n"
               "  --prompt N   prompt tokens to prefill (default 512)\n"
               "  --gen M      tokens to decode after the prompt (default 128)\n"
               "  --repeat R   measured runs after one warm-up (default 5)\n"
               "  --profile    also time each decode kernel (one extra run)\n"
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
  bool profile = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](int64_t &out) {
      return i + 1 < argc && parseCount(argv[++i], out);
    };
    if (arg == "-h" || arg == "--help")
      return usage(nullptr);
    if (arg == "--profile")
      profile = true;
    else if (arg == "--weights" && i + 1 < argc)
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
  // Deterministic ids spread over the vocabulary, past the special ids 0
  // and 1 when there is anything past them (a vocabulary of 1 or 2 tokens,
  // which the compiler accepts, uses all of its ids).
  int64_t vocab = e.vocabSize();
  if (vocab < 1) {
    std::fprintf(stderr,
                 "compressa-bench: error: the artifact's vocabulary has %lld "
                 "tokens, expected at least 1\n",
                 (long long)vocab);
    return 1;
  }
  int64_t firstId = vocab > 2 ? 2 : 0;
  std::vector<int64_t> ids(prompt);
  for (int64_t i = 0; i < prompt; ++i)
    ids[i] = firstId + (i * 7919) % (vocab - firstId);

  Backend &backend = e.backendRef();
  auto fail = [](const Status &status) {
    std::fprintf(stderr, "compressa-bench: error: %s\n", status.message().c_str());
    return 1;
  };
  // One sequence: the prompt, then `gen` greedy steps. Device milliseconds
  // of the prefill and of the decode steps (each step timed on its own, so
  // host work between steps is not counted) and the host wall clock of both.
  struct Times {
    double prefillMs = 0, decodeMs = 0, prefillWallMs = 0, decodeWallMs = 0;
  };
  using Clock = std::chrono::steady_clock;
  auto wallMs = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  auto sequence = [&](Times &t) -> Status {
    e.reset();
    Clock::time_point t0 = Clock::now();
    COMPRESSA_RETURN_IF_ERROR(backend.startTimer());
    COMPRESSA_ASSIGN_OR_RETURN(std::vector<float> logits,
                               e.prefill(ids.data(), prompt, 0));
    COMPRESSA_ASSIGN_OR_RETURN(t.prefillMs, backend.stopTimer());
    Clock::time_point t1 = Clock::now();
    int64_t next = ids.back();
    for (int64_t g = 0; g < gen; ++g) {
      COMPRESSA_RETURN_IF_ERROR(backend.startTimer());
      COMPRESSA_ASSIGN_OR_RETURN(std::vector<float> step, e.decode(next, prompt + g));
      COMPRESSA_ASSIGN_OR_RETURN(double ms, backend.stopTimer());
      t.decodeMs += ms;
      next = std::max_element(step.begin(), step.end()) - step.begin();
    }
    Clock::time_point t2 = Clock::now();
    t.prefillWallMs = wallMs(t0, t1);
    t.decodeWallMs = wallMs(t1, t2);
    return okStatus();
  };

  std::vector<double> prefillRates, decodeRates, prefillWall, decodeWall;
  for (int64_t run = 0; run <= repeat; ++run) {
    Times t;
    if (Status status = sequence(t); !status.ok())
      return fail(status);
    if (run == 0)
      continue; // warm-up
    prefillRates.push_back(prompt * 1e3 / t.prefillMs);
    decodeRates.push_back(gen * 1e3 / t.decodeMs);
    prefillWall.push_back(prompt * 1e3 / t.prefillWallMs);
    decodeWall.push_back(gen * 1e3 / t.decodeWallMs);
  }
  std::printf("artifact %s\nbackend %s\n"
              "prompt %lld tokens, %lld decoded, median of %lld runs after a "
              "warm-up; timer: %s\n"
              "prefill %.1f tokens/s\ndecode  %.1f tokens/s\n"
              "host wall clock: prefill %.1f tokens/s, decode %.1f tokens/s\n"
              "decode step: %lld kernels, %lld launches (%s)\n",
              artifact.c_str(), e.backendDescription().c_str(),
              (long long)prompt, (long long)gen, (long long)repeat,
              backend.timerName(), median(prefillRates), median(decodeRates),
              median(prefillWall), median(decodeWall),
              (long long)e.decodeKernels(), (long long)e.launchesPerDecodeStep(),
              e.decodeUsesGraph() ? "one CUDA graph launch" : "one launch per kernel");
  if (!profile)
    return 0;

  // One more sequence with every decode launch timed on its own (on CUDA
  // without the graph): time per decode step by kernel, largest first.
  e.reset();
  if (Status status = e.prefill(ids.data(), prompt, 0).status(); !status.ok())
    return fail(status);
  if (Status status = backend.setKernelTiming(true); !status.ok())
    return fail(status);
  int64_t next = ids.back();
  for (int64_t g = 0; g < gen; ++g) {
    StatusOr<std::vector<float>> step = e.decode(next, prompt + g);
    if (!step.ok())
      return fail(step.status());
    next = std::max_element(step->begin(), step->end()) - step->begin();
  }
  std::vector<Backend::KernelTime> times = backend.kernelTimes();
  if (Status status = backend.setKernelTiming(false); !status.ok())
    return fail(status);
  const auto *kernels = e.artifact().root().kernels();
  std::vector<size_t> order;
  double total = 0;
  for (size_t k = 0; k < times.size(); ++k) {
    if (times[k].launches) {
      order.push_back(k);
      total += times[k].milliseconds;
    }
  }
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return times[a].milliseconds > times[b].milliseconds;
  });
  std::printf("\nprofile: decode kernels, %lld steps, each launch timed (%s)\n"
              "%8s %7s %10s %6s  %s\n",
              (long long)gen, backend.timerName(), "us/step", "share",
              "launches", "block", "kernel (first dispatch using it)");
  for (size_t k : order) {
    const auto *def = kernels->Get(static_cast<unsigned>(k));
    std::printf("%8.1f %6.1f%% %10.1f %6u  %s (%s)\n",
                times[k].milliseconds * 1e3 / gen,
                100.0 * times[k].milliseconds / total,
                double(times[k].launches) / gen, def->block(),
                def->symbol()->c_str(), def->name()->c_str());
  }
  std::printf("%8.1f us per decode step in kernels\n", total * 1e3 / gen);
  return 0;
}
