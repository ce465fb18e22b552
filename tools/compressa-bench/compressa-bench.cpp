//===- compressa-bench.cpp - Prefill and decode throughput ---------------===//
// SPDX-License-Identifier: Apache-2.0
//
//   compressa-bench ARTIFACT --weights DIR|random [--seed S] [--prompt N]
//                   [--gen M] [--context C] [--repeat R] [--batch B] [--profile] [--json]
//
// Runs a prompt of N synthetic token ids (prefill, in the artifact's chunks),
// brings the decode state to C positions (synthetic rows past N, see
// Engine::fillSyntheticContext), then M decode steps at positions C..C+M-1,
// R times (after one warm-up run), and prints the median prefill and decode
// throughput, timed by the backend's clock (CUDA events on a GPU) and by the
// host's wall clock, the bytes a decode step reads (from the artifact's
// plan) and the bandwidth that makes against a device copy measured in the
// same run. --profile (and --json) add one more run that times every decode
// launch on its own. The prefill computes the logits of the prompt's last
// token only (Engine::prefillLast), as generation does, so its figure is
// what generation's prefill costs; --prefill-logits all computes every
// token's (Engine::prefill, as compressa-run --dump-logits), to see what the
// head costs. `--weights random` generates the weights where the
// artifact runs (Engine::createWithRandomWeights). Figures for docs/perf.md
// come from here.
//
//===----------------------------------------------------------------------===//

#include "runtime/session/engine.h"
#include "runtime/session/multi_rank.h"
#include "runtime/weights/json.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
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
               "USAGE: compressa-bench ARTIFACT --weights DIR|random [--seed S] "
               "[--prompt N] [--gen M] [--context C] [--repeat R] [--batch B] "
               "[--prefill-logits last|all] [--no-warmup] [--profile] [--json]\n\n"
               "  --weights DIR   the checkpoint (model.safetensors or an index)\n"
               "  --weights random  generate the weights in the artifact's "
               "formats where it\n"
               "                  runs (on the GPU for CUDA, in memory for the "
               "CPU), seeded,\n"
               "                  at a scale that keeps activations O(1)\n"
               "  --seed S        the seed of random weights and of synthetic "
               "context (default 1)\n"
               "  --prompt N      prompt tokens to prefill (default 512)\n"
               "  --gen M         tokens to decode after the prompt (default "
               "128)\n"
               "  --context C     decode at context C >= N (default N): after "
               "the prefill of N\n"
               "                  tokens, the rows of positions N..C-1 of every "
               "state that grows\n"
               "                  with the context (compressed entries, indexer "
               "keys) are filled\n"
               "                  with generated values (bf16 pairs uniform in "
               "[-1, 1)); the\n"
               "                  window and compressor slots keep the prompt's. "
               "The M steps\n"
               "                  run at positions C..C+M-1, reading what a "
               "real context C reads\n"
               "  --repeat R      measured runs after one warm-up (default 5)\n"
               "  --no-warmup     no warm-up run (a long prompt: the first run is\n"
               "                  measured; --profile still adds its timed run)\n"
               "  --batch B       B sequences decoded together (engine slots, one\n"
               "                  decode step of all B at a time; tokens/s over all;\n"
               "                  --profile times one sequence)\n"
               "  --nnodes M --node-rank K --master-addr H --master-port P\n"
               "                  several processes: node 0 benchmarks, node K > "
               "0 serves it\n"
               "  --devices LIST  CUDA: the GPU of each rank of an artifact of "
               "--ranks N\n"
               "                  (default rank r on GPU r); all ranks run in "
               "this process\n"
               "  --prefill-logits last|all  the prefill computes the logits of the "
               "prompt's\n"
               "                  last token only, as generation does (default), or "
               "of every\n"
               "                  token (as compressa-run --dump-logits)\n"
               "  --profile       also time each prefill and decode kernel (one extra run)\n"
               "  --json          print one JSON object instead of text (with "
               "the per-kernel\n"
               "                  figures of --profile)\n"
               "Prints the median prefill and decode tokens/s, and the decode "
               "step's bytes\n"
               "(every weight and scale a decode launch takes, once; K of E "
               "routed experts;\n"
               "one row of the embedding and of tid2eid; states at context C: "
               "the window and\n"
               "compressor slots whole, compressed entries of a CSA layer "
               "min(C/4, index_topk)\n"
               "rows, every other context row, e.g. all C/4 indexer keys) "
               "against a device\n"
               "copy timed in the same run (bytes read plus written per "
               "second).\n");
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

namespace {

std::string_view view(const flatbuffers::String *str) {
  return str ? std::string_view(str->c_str(), str->size()) : std::string_view();
}

bool endsWith(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// What one decode step reads, from the artifact's plan (see --help).
struct StepBytes {
  uint64_t total = 0;
  uint64_t weights = 0;
  uint64_t state = 0;
  /// Per kernel index: the bytes of its launches' arguments.
  std::vector<uint64_t> perKernel;
};

/// The bytes one decode step at context `context` reads.
StepBytes decodeStepBytes(const Engine &engine, int64_t context) {
  const Artifact &art = engine.artifact();
  const fb::Artifact &root = art.root();
  // K and index_topk from the config the artifact was compiled from.
  uint64_t experts = 1, topk = 0;
  if (auto doc = parseJson(view(root.config_json())); doc.ok()) {
    if (const JsonValue *k = doc->find("num_experts_per_tok"))
      experts = static_cast<uint64_t>(k->intValue().value_or(1));
    if (const JsonValue *t = doc->find("index_topk"))
      topk = static_cast<uint64_t>(t->intValue().value_or(0));
  }
  auto weightBytes = [&](uint32_t index, bool scale) -> uint64_t {
    const fb::Weight &w = *root.weights()->Get(index);
    uint64_t elements = 1;
    const auto *shape = scale ? w.scale_shape() : w.shape();
    for (uint32_t d = 0; shape && d < shape->size(); ++d)
      elements *= static_cast<uint64_t>(shape->Get(d));
    std::string dtype = scale ? "F8_E8M0" : std::string(view(w.dtype()));
    uint64_t size = dtype == "F32" ? 4 : dtype == "BF16" ? 2
                                     : dtype == "I64"   ? 8
                                                        : 1;
    uint64_t bytes = elements * size;
    // Lookup tables read one row per token.
    std::string_view name = view(w.name());
    uint64_t rows = shape && shape->size() > 0 ? shape->Get(0) : 1;
    if (!scale && (name == "embed.weight" || w.values_below() > 0) && rows)
      bytes /= rows;
    return bytes;
  };
  std::vector<std::string> stateNames;
  const auto *states = root.states();
  for (uint32_t s = 0; states && s < states->size(); ++s)
    stateNames.emplace_back(view(states->Get(s)->name()));
  auto hasState = [&](const std::string &name) {
    return std::find(stateNames.begin(), stateNames.end(), name) !=
           stateNames.end();
  };
  auto stateBytes = [&](uint32_t index) -> uint64_t {
    const fb::State &st = *states->Get(index);
    if (st.context_ratio() == 0)
      return st.bytes();
    uint64_t rows = uint64_t(context) / st.context_ratio();
    const std::string &name = stateNames[index];
    static const std::string entries = ".attn.compressor.entries";
    if (endsWith(name, entries) && topk > 0 &&
        hasState(name.substr(0, name.size() - entries.size()) +
                 ".attn.indexer.keys"))
      rows = std::min(rows, topk); // CSA: the selected entries only
    return (st.rows() + rows) * st.row_bytes();
  };
  StepBytes out;
  out.perKernel.assign(root.kernels()->size(), 0);
  const fb::Program *decode = art.findProgram("decode");
  std::vector<bool> seenWeight(root.weights() ? root.weights()->size() : 0),
      seenScale(seenWeight.size()),
      seenTable(root.expert_tables() ? root.expert_tables()->size() : 0),
      seenState(stateNames.size());
  const auto *launches = decode ? decode->launches() : nullptr;
  for (uint32_t l = 0; launches && l < launches->size(); ++l) {
    const fb::Launch &launch = *launches->Get(l);
    const auto *args = launch.args();
    for (uint32_t a = 0; args && a < args->size(); ++a) {
      const fb::Arg &arg = *args->Get(a);
      uint32_t i = arg.index();
      uint64_t bytes = 0;
      bool first = false, isState = false;
      switch (arg.kind()) {
      case fb::ArgKind::Weight:
        bytes = weightBytes(i, false);
        first = !seenWeight[i];
        seenWeight[i] = true;
        break;
      case fb::ArgKind::WeightScale:
        bytes = weightBytes(i, true);
        first = !seenScale[i];
        seenScale[i] = true;
        break;
      case fb::ArgKind::ExpertTable: {
        // K of the table's experts (weights and scales), like expert 0.
        const fb::ExpertTable &table = *root.expert_tables()->Get(i);
        int64_t e0 = art.findWeight(
            Artifact::expertWeightName(view(table.pattern()), 0));
        if (e0 >= 0) {
          uint64_t one = weightBytes(uint32_t(e0), false);
          if (!view(root.weights()->Get(uint32_t(e0))->scale()).empty())
            one += weightBytes(uint32_t(e0), true);
          bytes = one * std::min<uint64_t>(experts, table.count());
        }
        first = !seenTable[i];
        seenTable[i] = true;
        break;
      }
      case fb::ArgKind::State:
        bytes = stateBytes(i);
        first = !seenState[i];
        seenState[i] = true;
        isState = true;
        break;
      default:
        break;
      }
      out.perKernel[launch.kernel()] += bytes;
      if (!first)
        continue;
      out.total += bytes;
      (isState ? out.state : out.weights) += bytes;
    }
  }
  return out;
}

/// A JSON string literal.
std::string quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

} // namespace

int main(int argc, char **argv) {
  std::string artifact, weights;
  int64_t prompt = 512, gen = 128, repeat = 5, context = 0, batch = 1;
  uint64_t seed = 1;
  bool profile = false, json = false, help = false, noWarmup = false;
  // CLI11 reads the command line; the values are checked here so that the
  // messages stay the tool's own (the tests name them). Unknown options and
  // extra arguments are collected as extras and reported below.
  CLI::App app("compressa-bench");
  app.set_help_flag();
  app.allow_extras();
  std::string seedText, contextText, promptText, genText, repeatText, batchText;
  std::string devicesText, nodesText, nodeRankText, masterAddr, masterPortText;
  std::string prefillLogitsText = "last";
  app.add_flag("-h,--help", help);
  app.add_flag("--profile", profile);
  app.add_flag("--json", json);
  app.add_flag("--no-warmup", noWarmup);
  struct Valued {
    const char *flag;
    std::string *text;
    const char *error;
  } valued[] = {
      {"--seed", &seedText, "--seed takes a non-negative integer"},
      {"--context", &contextText, "--context takes a count >= 1"},
      {"--weights", &weights, "--weights takes a directory or 'random'"},
      {"--prompt", &promptText, "--prompt takes a count >= 1"},
      {"--gen", &genText, "--gen takes a count >= 1"},
      {"--repeat", &repeatText, "--repeat takes a count >= 1"},
      {"--batch", &batchText, "--batch takes a count >= 1"},
      {"--devices", &devicesText,
       "--devices takes CUDA device ordinals, one per rank (0,1,...)"},
      {"--nnodes", &nodesText, "--nnodes takes a count >= 1"},
      {"--node-rank", &nodeRankText, "--node-rank takes a node below --nnodes"},
      {"--master-addr", &masterAddr, "--master-addr takes a host"},
      {"--master-port", &masterPortText, "--master-port takes a port (1..65535)"},
      {"--prefill-logits", &prefillLogitsText,
       "--prefill-logits takes 'last' or 'all'"},
  };
  for (Valued &option : valued)
    app.add_option(option.flag, *option.text)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("ARTIFACT", artifact);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError &error) {
    // A value-taking option at the end of the line: its own message.
    std::string what = error.what();
    for (const Valued &option : valued)
      if (what.find(option.flag) != std::string::npos)
        return usage(option.error);
    return usage(what.c_str());
  }
  if (help)
    return usage(nullptr);
  for (const std::string &arg : app.remaining())
    return usage(("unknown argument '" + arg + "'").c_str());
  if (app.count("--seed")) {
    char *end = nullptr;
    const char *text = seedText.c_str();
    unsigned long long v = std::strtoull(text, &end, 10);
    if (!*text || *end || *text == '-')
      return usage("--seed takes a non-negative integer");
    seed = v;
  }
  struct Count {
    const char *flag;
    const std::string &text;
    int64_t &value;
    const char *error;
  } counts[] = {{"--context", contextText, context, valued[1].error},
                {"--prompt", promptText, prompt, valued[3].error},
                {"--gen", genText, gen, valued[4].error},
                {"--repeat", repeatText, repeat, valued[5].error},
                {"--batch", batchText, batch, valued[6].error}};
  for (const Count &count : counts)
    if (app.count(count.flag) && !parseCount(count.text.c_str(), count.value))
      return usage(count.error);
  if (prefillLogitsText != "last" && prefillLogitsText != "all")
    return usage(("--prefill-logits takes 'last' or 'all', not '" +
                  prefillLogitsText + "'")
                     .c_str());
  bool allLogits = prefillLogitsText == "all";
  if (artifact.empty() || weights.empty())
    return usage("an artifact and --weights are required");
  if (app.count("--devices")) {
    StatusOr<std::vector<int>> devices = parseDeviceList(devicesText);
    if (!devices.ok())
      return usage(devices.status().message().c_str());
    setRankDevices(std::move(*devices));
  }
  // Several processes (docs/parallel.md): node 0 benchmarks, node K > 0
  // serves it with its ranks (random weights of the same seed).
  if (app.count("--nnodes") || app.count("--node-rank") ||
      app.count("--master-addr") || app.count("--master-port")) {
    NodeOptions nodes;
    int64_t n = 1, k = 0, port = nodes.masterPort;
    if (app.count("--nnodes") && !parseCount(nodesText.c_str(), n))
      return usage("--nnodes takes a count >= 1");
    if (app.count("--node-rank") &&
        (nodeRankText == "0" ? false : !parseCount(nodeRankText.c_str(), k)))
      return usage("--node-rank takes a node below --nnodes");
    if (app.count("--master-port") &&
        (!parseCount(masterPortText.c_str(), port) || port > 65535))
      return usage("--master-port takes a port (1..65535)");
    if (k >= n || n > 4096)
      return usage("--node-rank takes a node below --nnodes");
    nodes.nodes = int(n);
    nodes.nodeRank = int(k);
    nodes.masterPort = int(port);
    if (!masterAddr.empty())
      nodes.masterAddr = masterAddr;
    setNodeOptions(nodes);
    if (k > 0) {
      Status served = RankGroup::serveNode(artifact, weights == "random" ? "" : weights,
                                           weights == "random", seed);
      if (!served.ok()) {
        std::fprintf(stderr, "compressa-bench: error: %s\n",
                     served.message().c_str());
        return 1;
      }
      return 0;
    }
  }
  if (context == 0)
    context = prompt;
  if (context < prompt) {
    std::fprintf(stderr,
                 "compressa-bench: error: --context %lld is shorter than the "
                 "prompt of %lld tokens (expected C >= N)\n",
                 (long long)context, (long long)prompt);
    return 1;
  }

  StatusOr<std::unique_ptr<Engine>> engine =
      weights == "random" ? Engine::createWithRandomWeights(artifact, seed)
                          : Engine::create(artifact, weights);
  if (!engine.ok()) {
    std::fprintf(stderr, "compressa-bench: error: %s\n",
                 engine.status().message().c_str());
    return 1;
  }
  Engine &e = **engine;
  // --batch B: B sequence slots (each its own decode state; the artifact's
  // --max-batch bounds B).
  if (batch > 1) {
    if (batch > e.artifactMaxBatch()) {
      std::fprintf(stderr,
                   "compressa-bench: error: --batch %lld exceeds the %lld "
                   "sequences the artifact was compiled for (compressa-compile "
                   "--max-batch)\n",
                   (long long)batch, (long long)e.artifactMaxBatch());
      return 1;
    }
    if (Status status = e.setSlotCount(batch); !status.ok()) {
      std::fprintf(stderr, "compressa-bench: error: --batch %lld: %s\n", (long long)batch,
                   status.message().c_str());
      return 1;
    }
  }
  if (context == prompt && prompt + gen > e.maxContext()) {
    std::fprintf(stderr,
                 "compressa-bench: error: %lld prompt + %lld generated tokens "
                 "exceed the artifact's maximum context of %lld\n",
                 (long long)prompt, (long long)gen, (long long)e.maxContext());
    return 1;
  }
  if (context + gen > e.maxContext()) {
    std::fprintf(stderr,
                 "compressa-bench: error: a context of %lld + %lld generated "
                 "tokens exceeds the artifact's maximum context of %lld "
                 "(compile with a larger --max-context)\n",
                 (long long)context, (long long)gen, (long long)e.maxContext());
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
  // The prefill: the last token's logits (generation's) or every token's.
  auto runPrefill = [&]() -> Status {
    return allLogits ? e.prefill(ids.data(), prompt, 0).status()
                     : e.prefillLast(ids.data(), prompt, 0).status();
  };
  // The last decode step's logits, to show that activations stay O(1).
  double logitsRms = 0;
  bool logitsFinite = true;
  // --batch B: B sequences in B slots of the engine, each prefilled (and
  // brought to `context`) in turn, then `gen` decode steps of all B at once
  // (Engine::decodeStep); decodeMs is the time of the steps.
  auto batched = [&](Times &t) -> Status {
    Clock::time_point t0 = Clock::now();
    std::vector<int64_t> slotIds(batch), next(batch, ids.back()), positions(batch);
    for (int64_t b = 0; b < batch; ++b) {
      COMPRESSA_RETURN_IF_ERROR(e.selectSlot(b));
      e.reset();
      COMPRESSA_RETURN_IF_ERROR(backend.startTimer());
      COMPRESSA_RETURN_IF_ERROR(runPrefill());
      COMPRESSA_ASSIGN_OR_RETURN(double ms, backend.stopTimer());
      t.prefillMs += ms;
      COMPRESSA_RETURN_IF_ERROR(e.fillSyntheticContext(prompt, context, seed));
      slotIds[b] = b;
    }
    COMPRESSA_RETURN_IF_ERROR(e.selectSlot(0));
    Clock::time_point t1 = Clock::now();
    int64_t vocab = e.vocabSize();
    for (int64_t g = 0; g < gen; ++g) {
      std::fill(positions.begin(), positions.end(), context + g);
      COMPRESSA_RETURN_IF_ERROR(backend.startTimer());
      COMPRESSA_ASSIGN_OR_RETURN(
          std::vector<float> step,
          e.decodeStep(slotIds.data(), next.data(), positions.data(), batch));
      COMPRESSA_ASSIGN_OR_RETURN(double ms, backend.stopTimer());
      t.decodeMs += ms;
      for (int64_t b = 0; b < batch; ++b) {
        const float *row = step.data() + b * vocab;
        next[b] = std::max_element(row, row + vocab) - row;
      }
      if (g + 1 == gen) {
        double sum = 0;
        logitsFinite = true;
        for (int64_t i = 0; i < vocab; ++i) {
          logitsFinite = logitsFinite && std::isfinite(step[i]);
          sum += double(step[i]) * step[i];
        }
        logitsRms = std::sqrt(sum / double(vocab));
      }
    }
    Clock::time_point t2 = Clock::now();
    t.prefillWallMs = wallMs(t0, t1);
    t.decodeWallMs = wallMs(t1, t2);
    return okStatus();
  };
  auto sequence = [&](Times &t) -> Status {
    if (batch > 1)
      return batched(t);
    e.reset();
    Clock::time_point t0 = Clock::now();
    COMPRESSA_RETURN_IF_ERROR(backend.startTimer());
    COMPRESSA_RETURN_IF_ERROR(runPrefill());
    COMPRESSA_ASSIGN_OR_RETURN(t.prefillMs, backend.stopTimer());
    COMPRESSA_RETURN_IF_ERROR(e.fillSyntheticContext(prompt, context, seed));
    Clock::time_point t1 = Clock::now();
    int64_t next = ids.back();
    for (int64_t g = 0; g < gen; ++g) {
      COMPRESSA_RETURN_IF_ERROR(backend.startTimer());
      COMPRESSA_ASSIGN_OR_RETURN(std::vector<float> step,
                                 e.decode(next, context + g));
      if (g + 1 == gen) {
        double sum = 0;
        logitsFinite = true;
        for (float v : step) {
          logitsFinite = logitsFinite && std::isfinite(v);
          sum += double(v) * v;
        }
        logitsRms = std::sqrt(sum / double(step.size()));
      }
      COMPRESSA_ASSIGN_OR_RETURN(double ms, backend.stopTimer());
      t.decodeMs += ms;
      next = std::max_element(step.begin(), step.end()) - step.begin();
    }
    Clock::time_point t2 = Clock::now();
    t.prefillWallMs = wallMs(t0, t1);
    t.decodeWallMs = wallMs(t1, t2);
    return okStatus();
  };

  // What the prefill figure includes of the head (LogitRows).
  std::string prefillLogits =
      allLogits ? "every token (--prefill-logits all)"
      : e.computesLogitRows(e.hasProgram("prefill") ? "prefill" : "decode")
          ? "last token only (as generation computes them)"
          : "every token (the artifact predates LogitRows; generation's "
            "prefill computes them too)";
  std::vector<double> prefillRates, decodeRates, prefillWall, decodeWall;
  for (int64_t run = noWarmup ? 1 : 0; run <= repeat; ++run) {
    Times t;
    if (Status status = sequence(t); !status.ok())
      return fail(status);
    if (run == 0)
      continue; // warm-up
    // Tokens per second over all sequences of a batch.
    prefillRates.push_back(batch * prompt * 1e3 / t.prefillMs);
    decodeRates.push_back(batch * gen * 1e3 / t.decodeMs);
    prefillWall.push_back(batch * prompt * 1e3 / t.prefillWallMs);
    decodeWall.push_back(batch * gen * 1e3 / t.decodeWallMs);
  }
  // The reference bandwidth, in this run: 1 GiB copied on a GPU, 256 MiB
  // on the CPU.
  uint64_t copyBytes = std::string(e.backendName()) == "cuda"
                           ? uint64_t(1) << 30
                           : uint64_t(256) << 20;
  StatusOr<double> copyGBps = backend.measureCopyBandwidth(copyBytes, 5);
  if (!copyGBps.ok())
    return fail(copyGBps.status());
  StepBytes bytes = decodeStepBytes(e, context);
  // Device memory in use after the runs: the engine allocates its weights,
  // states, arenas and scratch up front, so this is the run's peak (plus
  // the CUDA context); absent on the CPU.
  uint64_t memUsed = 0, memTotal = 0;
  bool haveMem = backend.memoryInUse(memUsed, memTotal).ok();
  double decodeRate = median(decodeRates);
  double stepMs = batch * 1e3 / decodeRate;
  double decodeGBps = double(bytes.total) / (stepMs * 1e6);

  // Every decode launch timed on its own (on CUDA without the graph), one
  // more sequence: time per decode step by kernel.
  std::vector<Backend::KernelTime> times, prefillTimes;
  double prefillKernelMs = 0;
  if (profile || json) {
    e.reset();
    // The prefill's launches timed too (where prefill time goes).
    if (profile) {
      if (Status status = backend.setKernelTiming(true); !status.ok())
        return fail(status);
    }
    if (Status status = runPrefill(); !status.ok())
      return fail(status);
    if (profile) {
      prefillTimes = backend.kernelTimes();
      for (const Backend::KernelTime &t : prefillTimes)
        prefillKernelMs += t.milliseconds;
      if (Status status = backend.setKernelTiming(false); !status.ok())
        return fail(status);
    }
    if (Status status = e.fillSyntheticContext(prompt, context, seed);
        !status.ok())
      return fail(status);
    if (Status status = backend.setKernelTiming(true); !status.ok())
      return fail(status);
    int64_t next = ids.back();
    for (int64_t g = 0; g < gen; ++g) {
      StatusOr<std::vector<float>> step = e.decode(next, context + g);
      if (!step.ok())
        return fail(step.status());
      next = std::max_element(step->begin(), step->end()) - step->begin();
    }
    times = backend.kernelTimes();
    if (Status status = backend.setKernelTiming(false); !status.ok())
      return fail(status);
  }
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

  if (json) {
    std::string out = "{";
    auto field = [&](const char *name, const std::string &value) {
      if (out.size() > 1)
        out += ", ";
      out += quote(name) + ": " + value;
    };
    auto number = [](double v) {
      char buf[64];
      std::snprintf(buf, sizeof(buf), "%.6g", std::isfinite(v) ? v : 0.0);
      return std::string(buf);
    };
    field("artifact", quote(artifact));
    field("backend", quote(e.backendDescription()));
    // Ranks of the artifact (--ranks N): all run at once; the backend, the
    // kernels and the bytes per step are rank 0's.
    field("ranks", std::to_string(e.rankCount()));
    field("batch", std::to_string(batch));
    field("batched_decode_program",
          batch > 1 && e.batchedDecodeMax() > 0 ? "true" : "false");
    field("weights", quote(e.weightsDescription()));
    field("prompt", std::to_string(prompt));
    field("context", std::to_string(context));
    field("gen", std::to_string(gen));
    field("repeat", std::to_string(repeat));
    field("warmup", noWarmup ? "false" : "true");
    field("timer", quote(backend.timerName()));
    field("decode_ms_per_step", number(stepMs));
    field("decode_tokens_per_s", number(decodeRate));
    field("prefill_tokens_per_s", number(median(prefillRates)));
    field("prefill_logits", quote(prefillLogits));
    field("decode_bytes_per_step", std::to_string(bytes.total));
    field("decode_weight_bytes_per_step", std::to_string(bytes.weights));
    field("decode_state_bytes_per_step", std::to_string(bytes.state));
    field("decode_GBps", number(decodeGBps));
    field("device_copy_GBps", number(*copyGBps));
    if (haveMem) {
      field("device_memory_used_bytes", std::to_string(memUsed));
      field("device_memory_total_bytes", std::to_string(memTotal));
    }
    field("decode_pct_of_copy", number(100.0 * decodeGBps / *copyGBps));
    field("decode_kernels", std::to_string(e.decodeKernels()));
    field("decode_launches_per_step", std::to_string(e.launchesPerDecodeStep()));
    field("decode_graph", e.decodeUsesGraph() ? "true" : "false");
    field("decode_logits_rms", number(logitsRms));
    field("decode_logits_finite", logitsFinite ? "true" : "false");
    std::string list = "[";
    for (size_t k : order) {
      const auto *def = kernels->Get(static_cast<unsigned>(k));
      double us = times[k].milliseconds * 1e3 / gen;
      uint64_t kb = bytes.perKernel[k];
      if (list.size() > 1)
        list += ", ";
      list += "{\"name\": " + quote(view(def->name())) +
              ", \"symbol\": " + quote(view(def->symbol())) +
              ", \"launches_per_step\": " +
              number(double(times[k].launches) / gen) +
              ", \"us_per_step\": " + number(us) +
              ", \"bytes_per_step\": " + std::to_string(kb) +
              ", \"GBps\": " + number(us > 0 ? double(kb) / (us * 1e3) : 0) +
              "}";
    }
    field("kernels", list + "]");
    std::printf("%s}\n", out.c_str());
    return 0;
  }

  if (e.rankCount() > 1)
    std::printf("ranks %lld, run at once; backend, kernels and bytes below "
                "are rank 0's\n",
                (long long)e.rankCount());
  std::printf("artifact %s\nbackend %s\n"
              "prompt %lld tokens, %lld decoded, median of %lld runs %s; "
              "timer: %s\n"
              "prefill %.1f tokens/s\ndecode  %.1f tokens/s\n"
              "host wall clock: prefill %.1f tokens/s, decode %.1f tokens/s\n"
              "decode step: %lld kernels, %lld launches (%s)\n",
              artifact.c_str(), e.backendDescription().c_str(),
              (long long)prompt, (long long)gen, (long long)repeat,
              noWarmup ? "without a warm-up" : "after a warm-up",
              backend.timerName(), median(prefillRates), median(decodeRates),
              median(prefillWall), median(decodeWall),
              (long long)e.decodeKernels(), (long long)e.launchesPerDecodeStep(),
              e.decodeUsesGraph() ? "one CUDA graph launch" : "one launch per kernel");
  std::printf("prefill logits: %s\n", prefillLogits.c_str());
  if (haveMem)
    std::printf("device memory in use: %.2f GiB of %.2f GiB (allocated up front: "
                "the run's peak)\n",
                memUsed / double(1ull << 30), memTotal / double(1ull << 30));
  std::printf("weights: %s; decode at context %lld\n"
              "decode step reads %.1f MB (weights %.1f MB, state %.1f MB): "
              "%.2f GB/s, %.1f%% of the device copy (%.2f GB/s)\n",
              e.weightsDescription().c_str(), (long long)context,
              bytes.total / 1e6, bytes.weights / 1e6, bytes.state / 1e6,
              decodeGBps, 100.0 * decodeGBps / *copyGBps, *copyGBps);
  if (batch > 1 && e.batchedDecodeMax() > 0)
    std::printf("batch %lld: a decode step of all %lld sequences takes %.3f ms "
                "(%.1f tokens/s each); one call of the batched decode program "
                "per step (%lld kernels, %s), which reads each weight once for "
                "all %lld sequences\n",
                (long long)batch, (long long)batch, stepMs,
                median(decodeRates) / double(batch),
                (long long)e.decodeKernels(true),
                e.decodeUsesGraph(true) ? "one CUDA graph launch"
                                        : "one launch per kernel",
                (long long)batch);
  else if (batch > 1)
    std::printf("batch %lld: a decode step of all %lld sequences takes %.3f ms "
                "(%.1f tokens/s each); the artifact has no batched decode "
                "program, so the decode program runs once per sequence and "
                "the bytes above are read %lld times per step\n",
                (long long)batch, (long long)batch, stepMs,
                median(decodeRates) / double(batch), (long long)batch);
  if (!profile)
    return 0;

  {
    std::vector<size_t> byTime;
    for (size_t k = 0; k < prefillTimes.size(); ++k)
      if (prefillTimes[k].launches)
        byTime.push_back(k);
    std::sort(byTime.begin(), byTime.end(), [&](size_t a, size_t b) {
      return prefillTimes[a].milliseconds > prefillTimes[b].milliseconds;
    });
    std::printf("\nprofile: prefill kernels, %lld tokens, each launch timed "
                "(%s)\n%10s %7s %9s %6s  %s\n",
                (long long)prompt, backend.timerName(), "ms", "share",
                "launches", "block", "kernel (first dispatch using it)");
    for (size_t k : byTime) {
      const auto *def = kernels->Get(static_cast<unsigned>(k));
      std::printf("%10.3f %6.1f%% %9lld %6u  %s (%s)\n",
                  prefillTimes[k].milliseconds,
                  100.0 * prefillTimes[k].milliseconds / prefillKernelMs,
                  (long long)prefillTimes[k].launches, def->block(),
                  def->symbol()->c_str(), def->name()->c_str());
    }
    std::printf("%10.3f ms of prefill in kernels (%.1f tokens/s)\n",
                prefillKernelMs,
                prefillKernelMs > 0 ? prompt * 1e3 / prefillKernelMs : 0.0);
  }

  std::printf("\nprofile: decode kernels, %lld steps, each launch timed (%s)\n"
              "%8s %7s %10s %6s %9s %8s  %s\n",
              (long long)gen, backend.timerName(), "us/step", "share",
              "launches", "block", "MB/step", "GB/s",
              "kernel (first dispatch using it)");
  for (size_t k : order) {
    const auto *def = kernels->Get(static_cast<unsigned>(k));
    double us = times[k].milliseconds * 1e3 / gen;
    std::printf("%8.1f %6.1f%% %10.1f %6u %9.3f %8.2f  %s (%s)\n", us,
                100.0 * times[k].milliseconds / total,
                double(times[k].launches) / gen, def->block(),
                bytes.perKernel[k] / 1e6,
                us > 0 ? bytes.perKernel[k] / (us * 1e3) : 0.0,
                def->symbol()->c_str(), def->name()->c_str());
  }
  std::printf("%8.1f us per decode step in kernels\n", total * 1e3 / gen);
  return 0;
}
