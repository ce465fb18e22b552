//===- compressa-run.cpp - Run a compiled Compressa artifact ---------------===//
// SPDX-License-Identifier: Apache-2.0
//
//   compressa-run ART --weights DIR --input-ids FILE --dump-logits OUT
//                 [--prefill P] [--chunk C]
//   compressa-run ART --weights DIR --input-ids FILE -n G [--prompt-len P]
//                 [--greedy | --temperature T --top-k K --top-p P --seed S]
//                 [--print-ids] [--chunk C]
//
// A runtime tool: it links libcompressa_runtime only, never MLIR or LLVM, so
// its flags are parsed by hand. Every failure prints one line starting with
// "compressa-run: error: " and exits with status 1.
//
//===----------------------------------------------------------------------===//

#include "runtime/format/artifact_reader.h"
#include "runtime/session/engine.h"
#include "runtime/session/sampler.h"
#include "runtime/weights/safetensors.h"
#include "runtime/weights/safetensors_writer.h"

#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

using namespace compressa;

static const char kUsage[] =
    R"(USAGE: compressa-run ARTIFACT --weights DIR --input-ids FILE MODE [options]

Runs a compiled Compressa artifact (.cpa) on the CPU.

Inputs:
  ARTIFACT              The .cpa file written by compressa-compile.
  --weights DIR         The checkpoint: a directory holding model.safetensors,
                        or model.safetensors.index.json and its shards.
  --input-ids FILE      A safetensors file holding the tensor `input_ids`
                        (I64 [T], or [1, T]).

Modes (exactly one):
  --dump-logits OUT     Run all T ids: prefill the first P, then decode the
                        rest one at a time, and write the logits of every
                        position to OUT, a safetensors file holding the tensor
                        `logits` (F32 [T, V]).
  -n G                  Generate up to G tokens after the prompt. Generation
                        stops after the end-of-sequence token (which is
                        printed) or when the artifact's context is full.

Options for --dump-logits:
  --prefill P           Prefill the first P ids (0..T; default T-1).

Options for -n:
  --prompt-len P        The prompt is the first P ids (1..T; default T).
  --greedy              Take the most likely token (ties: the lowest id);
                        the sampling options below are then ignored.
  --temperature T       Sampling temperature, >= 0 (default 1.0; 0 = greedy).
  --top-k K             Sample among the K most likely tokens (default 0: all).
  --top-p P             Sample among the most likely tokens whose probability
                        reaches P, in (0, 1] (default 1.0: all).
  --seed S              Seed of the random stream, 0..2^64-1 (default 0).
  --print-ids           Print only the generated ids: one line, separated by
                        spaces. Without it a summary with timings is printed.

Common options:
  --chunk C             Prefill in chunks of at most C tokens (default: the
                        artifact's prefill max_tokens, also the upper bound).
  -h, --help            Print this help and exit.

Options take their value as the next argument or after '=' (--chunk=4).
Exit status: 0 on success; 1 on any error, reported on stderr as
"compressa-run: error: <message>".
)";

namespace {

/// Everything the command line says.
struct Options {
  std::string artifact;
  std::string weights;
  std::string inputIds;
  std::string dumpLogits;
  std::optional<int64_t> prefill;
  std::optional<int64_t> chunk;
  std::optional<int64_t> generate;
  std::optional<int64_t> promptLength;
  bool greedy = false;
  bool printIds = false;
  bool help = false;
  std::optional<double> temperature;
  std::optional<int64_t> topK;
  std::optional<double> topP;
  std::optional<uint64_t> seed;
};

Status parseInt(const std::string &flag, const std::string &text,
                int64_t minimum, int64_t &out) {
  errno = 0;
  char *end = nullptr;
  long long value = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE)
    return COMPRESSA_ERROR(InvalidArgument, "%s expects an integer, got '%s'",
                           flag.c_str(), printable(text).c_str());
  if (value < minimum)
    return COMPRESSA_ERROR(InvalidArgument, "%s must be >= %lld, got %lld",
                           flag.c_str(), static_cast<long long>(minimum),
                           value);
  out = value;
  return okStatus();
}

Status parseUnsigned(const std::string &flag, const std::string &text,
                     uint64_t &out) {
  errno = 0;
  char *end = nullptr;
  if (text.empty() || text[0] == '-' || text[0] == '+')
    return COMPRESSA_ERROR(InvalidArgument,
                           "%s expects an unsigned integer, got '%s'",
                           flag.c_str(), printable(text).c_str());
  unsigned long long value = std::strtoull(text.c_str(), &end, 10);
  if (*end != '\0' || errno == ERANGE)
    return COMPRESSA_ERROR(InvalidArgument,
                           "%s expects an unsigned integer, got '%s'",
                           flag.c_str(), printable(text).c_str());
  out = value;
  return okStatus();
}

Status parseReal(const std::string &flag, const std::string &text,
                 double &out) {
  errno = 0;
  char *end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(value))
    return COMPRESSA_ERROR(InvalidArgument, "%s expects a number, got '%s'",
                           flag.c_str(), printable(text).c_str());
  out = value;
  return okStatus();
}

template <class T>
Status setOnce(const std::string &flag, std::optional<T> &slot, T value) {
  if (slot)
    return COMPRESSA_ERROR(InvalidArgument, "%s is given more than once",
                           flag.c_str());
  slot = value;
  return okStatus();
}

Status setOnce(const std::string &flag, std::string &slot,
               const std::string &value) {
  if (!slot.empty())
    return COMPRESSA_ERROR(InvalidArgument, "%s is given more than once",
                           flag.c_str());
  if (value.empty())
    return COMPRESSA_ERROR(InvalidArgument, "%s expects a non-empty value",
                           flag.c_str());
  slot = value;
  return okStatus();
}

StatusOr<Options> parseCommandLine(int argc, char **argv) {
  Options options;
  bool sawGreedy = false, sawPrintIds = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      options.help = true;
      return options;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      if (!options.artifact.empty())
        return COMPRESSA_ERROR(InvalidArgument,
                               "unexpected argument '%s': the artifact is "
                               "already '%s' (see --help)",
                               printable(arg).c_str(),
                               printable(options.artifact).c_str());
      options.artifact = arg;
      continue;
    }
    // "--flag=value" or "--flag value".
    std::string flag = arg;
    std::optional<std::string> inlineValue;
    size_t equals = arg.find('=');
    if (equals != std::string::npos) {
      flag = arg.substr(0, equals);
      inlineValue = arg.substr(equals + 1);
    }
    auto takeValue = [&](std::string &value) -> Status {
      if (inlineValue) {
        value = *inlineValue;
        return okStatus();
      }
      if (i + 1 >= argc)
        return COMPRESSA_ERROR(InvalidArgument, "%s expects a value",
                               flag.c_str());
      value = argv[++i];
      return okStatus();
    };
    auto noValue = [&]() -> Status {
      if (inlineValue)
        return COMPRESSA_ERROR(InvalidArgument, "%s takes no value",
                               flag.c_str());
      return okStatus();
    };

    std::string value;
    if (flag == "--weights") {
      COMPRESSA_RETURN_IF_ERROR(takeValue(value));
      COMPRESSA_RETURN_IF_ERROR(setOnce(flag, options.weights, value));
    } else if (flag == "--input-ids") {
      COMPRESSA_RETURN_IF_ERROR(takeValue(value));
      COMPRESSA_RETURN_IF_ERROR(setOnce(flag, options.inputIds, value));
    } else if (flag == "--dump-logits") {
      COMPRESSA_RETURN_IF_ERROR(takeValue(value));
      COMPRESSA_RETURN_IF_ERROR(setOnce(flag, options.dumpLogits, value));
    } else if (flag == "--prefill" || flag == "--chunk" || flag == "-n" ||
               flag == "--prompt-len" || flag == "--top-k") {
      COMPRESSA_RETURN_IF_ERROR(takeValue(value));
      int64_t number = 0;
      int64_t minimum = flag == "--chunk" || flag == "--prompt-len" ? 1 : 0;
      COMPRESSA_RETURN_IF_ERROR(parseInt(flag, value, minimum, number));
      std::optional<int64_t> &slot =
          flag == "--prefill"      ? options.prefill
          : flag == "--chunk"      ? options.chunk
          : flag == "-n"           ? options.generate
          : flag == "--prompt-len" ? options.promptLength
                                   : options.topK;
      COMPRESSA_RETURN_IF_ERROR(setOnce(flag, slot, number));
    } else if (flag == "--temperature" || flag == "--top-p") {
      COMPRESSA_RETURN_IF_ERROR(takeValue(value));
      double number = 0;
      COMPRESSA_RETURN_IF_ERROR(parseReal(flag, value, number));
      COMPRESSA_RETURN_IF_ERROR(setOnce(
          flag, flag == "--temperature" ? options.temperature : options.topP,
          number));
    } else if (flag == "--seed") {
      COMPRESSA_RETURN_IF_ERROR(takeValue(value));
      uint64_t number = 0;
      COMPRESSA_RETURN_IF_ERROR(parseUnsigned(flag, value, number));
      COMPRESSA_RETURN_IF_ERROR(setOnce(flag, options.seed, number));
    } else if (flag == "--greedy") {
      COMPRESSA_RETURN_IF_ERROR(noValue());
      if (sawGreedy)
        return COMPRESSA_ERROR(InvalidArgument, "--greedy is given more than "
                                                "once");
      sawGreedy = options.greedy = true;
    } else if (flag == "--print-ids") {
      COMPRESSA_RETURN_IF_ERROR(noValue());
      if (sawPrintIds)
        return COMPRESSA_ERROR(InvalidArgument, "--print-ids is given more "
                                                "than once");
      sawPrintIds = options.printIds = true;
    } else {
      return COMPRESSA_ERROR(InvalidArgument, "unknown option '%s' (see --help)",
                             printable(flag).c_str());
    }
  }

  // Required inputs and the mode.
  if (options.artifact.empty())
    return COMPRESSA_ERROR(InvalidArgument,
                           "no artifact given (usage: compressa-run ARTIFACT "
                           "--weights DIR --input-ids FILE ...; see --help)");
  if (options.weights.empty())
    return COMPRESSA_ERROR(InvalidArgument, "--weights DIR is required");
  if (options.inputIds.empty())
    return COMPRESSA_ERROR(InvalidArgument, "--input-ids FILE is required");
  bool dump = !options.dumpLogits.empty();
  if (dump == options.generate.has_value())
    return COMPRESSA_ERROR(InvalidArgument,
                           dump ? "--dump-logits and -n cannot be combined"
                                : "nothing to do: give --dump-logits OUT or "
                                  "-n G");
  // Options of the other mode are mistakes, not no-ops.
  if (dump) {
    const char *misplaced = options.promptLength ? "--prompt-len"
                            : options.greedy     ? "--greedy"
                            : options.temperature ? "--temperature"
                            : options.topK       ? "--top-k"
                            : options.topP       ? "--top-p"
                            : options.seed       ? "--seed"
                            : options.printIds   ? "--print-ids"
                                                 : nullptr;
    if (misplaced)
      return COMPRESSA_ERROR(InvalidArgument,
                             "%s applies to generation (-n), not to "
                             "--dump-logits",
                             misplaced);
  } else if (options.prefill) {
    return COMPRESSA_ERROR(InvalidArgument,
                           "--prefill applies to --dump-logits; use "
                           "--prompt-len with -n");
  }
  return options;
}

/// The ids of `input_ids` in the safetensors file `path`.
StatusOr<std::vector<int64_t>> readInputIds(const std::string &path) {
  COMPRESSA_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                             SafetensorsFile::open(path));
  const TensorView *tensor = file->find("input_ids");
  if (!tensor)
    return COMPRESSA_ERROR(NotFound, "%s: no tensor 'input_ids'",
                           path.c_str());
  if (tensor->dtype != DType::I64)
    return COMPRESSA_ERROR(InvalidArgument,
                           "%s: tensor 'input_ids' has dtype %s, expected I64",
                           path.c_str(), dtypeName(tensor->dtype));
  bool vectorShape = tensor->shape.size() == 1;
  bool rowShape = tensor->shape.size() == 2 && tensor->shape[0] == 1;
  if (!vectorShape && !rowShape)
    return COMPRESSA_ERROR(InvalidArgument,
                           "%s: tensor 'input_ids' has shape %s, expected [T] "
                           "or [1, T]",
                           path.c_str(), formatShape(tensor->shape).c_str());
  int64_t count = tensor->numElements();
  if (count < 1)
    return COMPRESSA_ERROR(InvalidArgument,
                           "%s: tensor 'input_ids' is empty", path.c_str());
  std::vector<int64_t> ids(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i)
    ids[i] = readUnaligned<int64_t>(tensor->data + 8 * i);
  return ids;
}

/// --dump-logits: every position's logits into one safetensors file.
Status dumpLogits(Engine &engine, const Options &options,
                  const std::vector<int64_t> &ids) {
  int64_t total = static_cast<int64_t>(ids.size());
  int64_t prefill = options.prefill ? *options.prefill : total - 1;
  if (prefill > total)
    return COMPRESSA_ERROR(InvalidArgument,
                           "--prefill %lld exceeds the %lld ids of %s",
                           static_cast<long long>(prefill),
                           static_cast<long long>(total),
                           options.inputIds.c_str());
  if (total > engine.maxContext())
    return COMPRESSA_ERROR(OutOfRange,
                           "prompt of %lld tokens exceeds the artifact's "
                           "maximum context of %lld",
                           static_cast<long long>(total),
                           static_cast<long long>(engine.maxContext()));
  int64_t vocab = engine.vocabSize();
  COMPRESSA_ASSIGN_OR_RETURN(
      std::unique_ptr<SafetensorsWriter> writer,
      SafetensorsWriter::create(options.dumpLogits,
                                {{"logits", DType::F32, {total, vocab}}},
                                {{"format", "compressa-run logits"}}));
  engine.reset();
  if (prefill > 0) {
    COMPRESSA_ASSIGN_OR_RETURN(
        std::vector<float> logits,
        engine.prefill(ids.data(), prefill, 0, options.chunk.value_or(0)));
    COMPRESSA_RETURN_IF_ERROR(
        writer->append(logits.data(), logits.size() * sizeof(float)));
  }
  for (int64_t pos = prefill; pos < total; ++pos) {
    COMPRESSA_ASSIGN_OR_RETURN(std::vector<float> logits,
                               engine.decode(ids[pos], pos));
    COMPRESSA_RETURN_IF_ERROR(
        writer->append(logits.data(), logits.size() * sizeof(float)));
  }
  return writer->finish();
}

/// -n: generate and print.
Status generate(Engine &engine, const Options &options,
                const std::vector<int64_t> &ids) {
  int64_t total = static_cast<int64_t>(ids.size());
  int64_t promptLength = options.promptLength ? *options.promptLength : total;
  if (promptLength > total)
    return COMPRESSA_ERROR(InvalidArgument,
                           "--prompt-len %lld exceeds the %lld ids of %s",
                           static_cast<long long>(promptLength),
                           static_cast<long long>(total),
                           options.inputIds.c_str());
  SamplingOptions sampling;
  sampling.greedy = options.greedy;
  sampling.temperature = options.temperature.value_or(1.0);
  sampling.topK = options.topK.value_or(0);
  sampling.topP = options.topP.value_or(1.0);
  sampling.seed = options.seed.value_or(0);
  if (!sampling.greedy)
    COMPRESSA_RETURN_IF_ERROR(validateSamplingOptions(sampling));
  Generator generator(engine, sampling);
  COMPRESSA_ASSIGN_OR_RETURN(
      GenerationResult result,
      generator.generate(ids.data(), promptLength, *options.generate,
                         options.chunk.value_or(0)));
  std::string line;
  for (size_t i = 0; i < result.tokens.size(); ++i) {
    if (i)
      line += ' ';
    line += std::to_string(result.tokens[i]);
  }
  if (options.printIds) {
    std::printf("%s\n", line.c_str());
  } else {
    const char *reason = result.stoppedAtEos       ? "end of sequence"
                         : result.stoppedAtContext ? "context full"
                                                   : "token limit";
    std::printf("generated %zu tokens (stopped: %s): %s\n",
                result.tokens.size(), reason, line.c_str());
    size_t decoded = result.tokens.empty() ? 0 : result.tokens.size() - 1;
    std::printf("prefill: %lld tokens in %.3f s; decode: %zu tokens in "
                "%.3f s (%.1f tokens/s)\n",
                static_cast<long long>(promptLength), result.prefillSeconds,
                decoded, result.decodeSeconds,
                result.decodeSeconds > 0 ? decoded / result.decodeSeconds
                                         : 0.0);
  }
  if (std::fflush(stdout) != 0 || std::ferror(stdout))
    return COMPRESSA_ERROR(Unavailable, "writing to standard output failed");
  return okStatus();
}

Status runTool(int argc, char **argv) {
  COMPRESSA_ASSIGN_OR_RETURN(Options options, parseCommandLine(argc, argv));
  if (options.help) {
    std::fputs(kUsage, stdout);
    return okStatus();
  }
  COMPRESSA_ASSIGN_OR_RETURN(std::unique_ptr<Artifact> artifact,
                             ArtifactReader::readFile(options.artifact));
  if (artifact->target() != fb::Target::Cpu)
    return COMPRESSA_ERROR(Unimplemented,
                           "this build of compressa-run runs CPU artifacts "
                           "only; '%s' targets %s",
                           options.artifact.c_str(), artifact->targetName());
  COMPRESSA_ASSIGN_OR_RETURN(std::vector<int64_t> ids,
                             readInputIds(options.inputIds));
  COMPRESSA_ASSIGN_OR_RETURN(
      std::unique_ptr<Engine> engine,
      Engine::create(std::move(artifact), options.weights));
  if (!options.dumpLogits.empty())
    return dumpLogits(*engine, options, ids);
  return generate(*engine, options, ids);
}

} // namespace

int main(int argc, char **argv) {
  Status status = runTool(argc, argv);
  if (status.ok())
    return 0;
  std::fflush(stdout);
  std::fprintf(stderr, "compressa-run: error: %s\n", status.message().c_str());
  return 1;
}
