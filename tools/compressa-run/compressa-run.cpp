//===- compressa-run.cpp - Run a compiled Compressa artifact ---------------===//
// SPDX-License-Identifier: Apache-2.0
//
//   compressa-run ART --weights DIR --input-ids FILE --dump-logits OUT
//                 [--prefill P] [--chunk C]
//   compressa-run ART --weights DIR --input-ids FILE -n G [--prompt-len P]
//                 [--greedy | --temperature T --top-k K --top-p P --seed S]
//                 [--print-ids] [--chunk C]
//   compressa-run ART --weights DIR (-p TEXT | -f FILE | --chat [--system S]
//                 [--think]) [-n G] [--tokenizer FILE] [--json] [sampling]
//
// A runtime tool: it links libcompressa_runtime only, never MLIR or LLVM, so
// its flags are parsed by hand. Every failure prints one line starting with
// "compressa-run: error: " and exits with status 1.
//
//===----------------------------------------------------------------------===//

#include "runtime/base/file.h"
#include "runtime/chat/chat_encoding.h"
#include "runtime/format/artifact_reader.h"
#include "runtime/session/engine.h"
#include "runtime/session/multi_rank.h"
#include "runtime/session/sampler.h"
#include "runtime/tokenizer/tokenizer.h"
#include "runtime/weights/safetensors.h"
#include "runtime/weights/safetensors_writer.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <iterator>
#include <string>
#include <tuple>
#include <vector>

#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace compressa;

static const char kUsage[] =
    R"(USAGE: compressa-run ARTIFACT --weights DIR --input-ids FILE MODE [options]
       compressa-run ARTIFACT --weights DIR (-p TEXT | -f FILE | --chat) [options]

Runs a compiled Compressa artifact (.cpa): on token ids, or on text through
the model's tokenizer.

Inputs:
  ARTIFACT              The .cpa file written by compressa-compile.
  --weights DIR         The checkpoint: a directory holding model.safetensors,
                        or model.safetensors.index.json and its shards.
  --input-ids FILE      A safetensors file holding the tensor `input_ids`
                        (I64 [T], or [1, T]).
  --nnodes M, --node-rank K, --master-addr HOST, --master-port PORT
                        Several processes or hosts (CPU artifacts for now):
                        the artifact's ranks are spread evenly over M nodes;
                        node 0 (default 127.0.0.1:29500) runs the prompt and
                        drives the others; node K > 0 takes only the
                        artifact and --weights and serves node 0 until it
                        is done (docs/parallel.md).
  --devices LIST        CUDA: the GPU of each rank, e.g. 0,1 (default: rank
                        r on GPU r; an artifact of one rank on
                        COMPRESSA_CUDA_DEVICE or 0). An artifact compiled
                        with --ranks N runs all N ranks in this process
                        (on the CPU: N threads).

Modes on token ids, with --input-ids (exactly one):
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

Modes on text, instead of --input-ids (exactly one):
  -p TEXT               Complete TEXT: the prompt is the begin-of-sentence
                        token followed by the tokens of TEXT (UTF-8, not
                        empty), and the continuation is printed.
  -f FILE               The same with the bytes of FILE, kept exactly (a
                        final newline included).
  --chat                Chat in the DeepSeek-V4 conversation format: read one
                        user message per line from standard input, print the
                        assistant's reply as it is generated, keep the
                        conversation. Empty lines are skipped; end of input
                        (Ctrl-D on a terminal) ends the chat. Each turn
                        re-encodes the whole conversation and prefills it.

Options for the text modes:
  --tokenizer FILE      The tokenizer.json (default: DIR/tokenizer.json next
                        to the weights).
  -n G                  Generate at most G tokens per reply (default: until
                        the end-of-sequence token or a full context).
  --system TEXT         (--chat) A system prompt, put before the first turn.
  --think               (--chat) Thinking mode: each reply starts with
                        <think>; the model reasons, writes </think>, then
                        answers. Earlier turns' reasoning is dropped from
                        the conversation.
  --json                Print one JSON object per reply (one line each)
                        instead of the streamed text and the statistics:
                        "mode", "text", "reasoning" (--think), "ids",
                        "stop" ("eos", "limit" or "context"),
                        "prompt_tokens", "generated_tokens",
                        "time_to_first_token_s", "prefill_s",
                        "prefill_tokens_per_s", "decode_s",
                        "decode_tokens_per_s", "load_s", "weight_bytes",
                        "peak_rss_bytes" (and "turn" with --chat).
  --greedy, --temperature T, --top-k K, --top-p P, --seed S
                        Choose the tokens as for -n above (one random stream
                        for the whole chat).

  The reply is printed to standard output as it is generated (the
  end-of-sequence token is not), whole UTF-8 characters at a time. On a
  terminal, control characters of the text show in caret notation (ESC as
  ^[), and with --think the <think>...</think> part is dimmed (unless
  NO_COLOR is set). Standard error gets the weight loading (every page of
  the checkpoint is read in: a progress bar with bytes/s on a terminal, plain
  lines otherwise) and, after each reply, one line: prompt tokens, time to
  first token, prefill and decode tokens/s, and the peak memory (resident
  set, from getrusage).

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
  // The text modes.
  std::optional<std::string> promptText; // -p, possibly empty
  std::string promptFile;                // -f
  bool chat = false;
  bool think = false;
  bool json = false;
  std::string tokenizer;
  std::optional<std::string> system;
  std::string devices; // --devices, CUDA ordinals of the ranks
  // Several processes (docs/parallel.md): --nnodes, --node-rank,
  // --master-addr, --master-port.
  std::optional<int64_t> nodes, nodeRank, masterPort;
  std::string masterAddr;

  bool textMode() const {
    return promptText.has_value() || !promptFile.empty() || chat;
  }
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

/// The flag combinations of -p, -f and --chat.
StatusOr<Options> checkTextModeOptions(const Options &options) {
  std::vector<const char *> modes;
  if (options.promptText)
    modes.push_back("-p");
  if (!options.promptFile.empty())
    modes.push_back("-f");
  if (options.chat)
    modes.push_back("--chat");
  if (modes.size() > 1)
    return COMPRESSA_ERROR(InvalidArgument,
                           "%s and %s cannot be combined: give one of -p, -f "
                           "and --chat",
                           modes[0], modes[1]);
  const char *mode = modes[0];
  if (!options.inputIds.empty())
    return COMPRESSA_ERROR(InvalidArgument,
                           "--input-ids and %s cannot be combined: the prompt "
                           "is either token ids or text",
                           mode);
  const char *idsOnly = !options.dumpLogits.empty() ? "--dump-logits"
                        : options.prefill           ? "--prefill"
                        : options.promptLength      ? "--prompt-len"
                        : options.printIds          ? "--print-ids"
                                                    : nullptr;
  if (idsOnly)
    return COMPRESSA_ERROR(InvalidArgument,
                           "%s applies to --input-ids, not to %s", idsOnly,
                           mode);
  if (!options.chat) {
    const char *chatOnly = options.system  ? "--system"
                           : options.think ? "--think"
                                           : nullptr;
    if (chatOnly)
      return COMPRESSA_ERROR(InvalidArgument,
                             "%s applies to --chat, not to %s", chatOnly,
                             mode);
  }
  return options;
}

/// The options that take a value.
const char *const kValueOptions[] = {
    "--weights",     "--input-ids", "--dump-logits", "--prefill", "--chunk",
    "-n",            "--prompt-len", "--top-k",      "--temperature",
    "--top-p",       "--seed",      "-p",            "-f",
    "--tokenizer",   "--system",    "--devices",     "--nnodes",
    "--node-rank",   "--master-addr", "--master-port"};
/// The flags (no value).
const char *const kFlags[] = {"--greedy", "--print-ids", "--chat", "--think",
                              "--json"};

bool isValueOption(const std::string &flag) {
  for (const char *name : kValueOptions)
    if (flag == name)
      return true;
  return false;
}

StatusOr<Options> parseCommandLine(int argc, char **argv) {
  Options options;
  // CLI11 reads the command line; the checks and messages below are the
  // tool's own (the tests and --help name them). Two things are settled
  // before CLI11 sees the arguments: -h/--help wins over everything, and
  // "FLAG=VALUE" of a value option becomes "FLAG" "VALUE" (CLI11 would keep
  // the '=' of a short option's value, e.g. -n=5, and call an empty value
  // missing).
  std::vector<std::string> args = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      options.help = true;
      return options;
    }
    size_t equals = arg.find('=');
    if (arg.size() > 1 && arg[0] == '-' && equals != std::string::npos &&
        isValueOption(arg.substr(0, equals))) {
      args.push_back(arg.substr(0, equals));
      args.push_back(arg.substr(equals + 1));
      continue;
    }
    args.push_back(arg);
  }
  std::vector<char *> pointers;
  for (std::string &arg : args)
    pointers.push_back(arg.data());

  CLI::App app("compressa-run");
  app.set_help_flag();
  // Unknown options and extra arguments are reported below, as before.
  app.allow_extras();
  // Every occurrence is kept: "is given more than once" is an error.
  std::map<std::string, std::vector<std::string>> values;
  for (const char *name : kValueOptions)
    app.add_option(name, values[name])
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
        ->expected(1)
        ->allow_extra_args(false);
  bool *flagSlots[] = {&options.greedy, &options.printIds, &options.chat,
                       &options.think, &options.json};
  std::vector<CLI::Option *> flags;
  for (size_t f = 0; f < std::size(kFlags); ++f)
    flags.push_back(
        app.add_flag(kFlags[f], *flagSlots[f])->disable_flag_override());
  app.add_option("ARTIFACT", options.artifact);
  try {
    app.parse(static_cast<int>(pointers.size()), pointers.data());
  } catch (const CLI::ParseError &error) {
    std::string what = error.what();
    for (const char *name : kValueOptions)
      if (what.rfind(std::string(name) + ":", 0) == 0)
        return COMPRESSA_ERROR(InvalidArgument, "%s expects a value", name);
    for (const char *name : kFlags)
      if (what.rfind(std::string(name + 2) + " was given", 0) == 0)
        return COMPRESSA_ERROR(InvalidArgument, "%s takes no value", name);
    return COMPRESSA_ERROR(InvalidArgument, "%s (see --help)", what.c_str());
  }
  for (const std::string &arg : app.remaining()) {
    if (arg.size() >= 2 && arg[0] == '-')
      return COMPRESSA_ERROR(InvalidArgument, "unknown option '%s' (see --help)",
                             printable(arg.substr(0, arg.find('='))).c_str());
    return COMPRESSA_ERROR(InvalidArgument,
                           "unexpected argument '%s': the artifact is "
                           "already '%s' (see --help)",
                           printable(arg).c_str(),
                           printable(options.artifact).c_str());
  }
  for (size_t f = 0; f < flags.size(); ++f)
    if (flags[f]->count() > 1)
      return COMPRESSA_ERROR(InvalidArgument, "%s is given more than once",
                             kFlags[f]);
  // The value of `flag`, if given (once).
  auto value = [&](const char *flag) -> StatusOr<std::optional<std::string>> {
    const std::vector<std::string> &given = values[flag];
    if (given.size() > 1)
      return COMPRESSA_ERROR(InvalidArgument, "%s is given more than once",
                             flag);
    if (given.empty())
      return std::optional<std::string>();
    return std::optional<std::string>(given[0]);
  };
  for (auto [flag, slot] :
       {std::pair<const char *, std::string *>{"--weights", &options.weights},
        {"--input-ids", &options.inputIds},
        {"--dump-logits", &options.dumpLogits},
        {"-f", &options.promptFile},
        {"--tokenizer", &options.tokenizer},
        {"--devices", &options.devices},
        {"--master-addr", &options.masterAddr}}) {
    COMPRESSA_ASSIGN_OR_RETURN(std::optional<std::string> text, value(flag));
    if (text)
      COMPRESSA_RETURN_IF_ERROR(setOnce(flag, *slot, *text));
  }
  for (auto [flag, minimum, slot] :
       {std::tuple<const char *, int64_t, std::optional<int64_t> *>{
            "--prefill", 0, &options.prefill},
        {"--chunk", 1, &options.chunk},
        {"-n", 0, &options.generate},
        {"--prompt-len", 1, &options.promptLength},
        {"--top-k", 0, &options.topK},
        {"--nnodes", 1, &options.nodes},
        {"--node-rank", 0, &options.nodeRank},
        {"--master-port", 1, &options.masterPort}}) {
    COMPRESSA_ASSIGN_OR_RETURN(std::optional<std::string> text, value(flag));
    if (!text)
      continue;
    int64_t number = 0;
    COMPRESSA_RETURN_IF_ERROR(parseInt(flag, *text, minimum, number));
    *slot = number;
  }
  for (auto [flag, slot] :
       {std::pair<const char *, std::optional<double> *>{
            "--temperature", &options.temperature},
        {"--top-p", &options.topP}}) {
    COMPRESSA_ASSIGN_OR_RETURN(std::optional<std::string> text, value(flag));
    if (!text)
      continue;
    double number = 0;
    COMPRESSA_RETURN_IF_ERROR(parseReal(flag, *text, number));
    *slot = number;
  }
  COMPRESSA_ASSIGN_OR_RETURN(std::optional<std::string> seed, value("--seed"));
  if (seed) {
    uint64_t number = 0;
    COMPRESSA_RETURN_IF_ERROR(parseUnsigned("--seed", *seed, number));
    options.seed = number;
  }
  // -p and --system may be empty (-p "" is "empty prompt", below).
  COMPRESSA_ASSIGN_OR_RETURN(options.promptText, value("-p"));
  COMPRESSA_ASSIGN_OR_RETURN(options.system, value("--system"));

  // Required inputs and the mode.
  if (options.artifact.empty())
    return COMPRESSA_ERROR(InvalidArgument,
                           "no artifact given (usage: compressa-run ARTIFACT "
                           "--weights DIR --input-ids FILE ...; see --help)");
  if (options.weights.empty())
    return COMPRESSA_ERROR(InvalidArgument, "--weights DIR is required");
  // Node k > 0 of several runs what node 0 tells it: no mode of its own.
  if (options.nodeRank.value_or(0) > 0)
    return options;
  if (options.textMode())
    return checkTextModeOptions(options);
  // Options of the text modes are mistakes here, not no-ops.
  const char *textOnly = !options.tokenizer.empty() ? "--tokenizer"
                         : options.system           ? "--system"
                         : options.think            ? "--think"
                         : options.json             ? "--json"
                                                    : nullptr;
  if (textOnly && !options.inputIds.empty())
    return COMPRESSA_ERROR(InvalidArgument,
                           "%s applies to the text modes (-p, -f, --chat), "
                           "not to --input-ids",
                           textOnly);
  if (options.inputIds.empty())
    return COMPRESSA_ERROR(InvalidArgument,
                           "--input-ids FILE is required (or a text mode: "
                           "-p TEXT, -f FILE or --chat)");
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

//===----------------------------------------------------------------------===//
// The text modes: -p, -f, --chat
//===----------------------------------------------------------------------===//

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

/// "1.5 MiB".
std::string formatBytes(double bytes) {
  static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 4) {
    bytes /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof(text), unit ? "%.1f %s" : "%.0f %s", bytes,
                units[unit]);
  return text;
}

/// True when `stream` is a terminal that takes ANSI escapes.
bool isTerminal(FILE *stream) {
  if (!::isatty(::fileno(stream)))
    return false;
  const char *term = std::getenv("TERM");
  return !(term && std::strcmp(term, "dumb") == 0);
}

/// Dimmed text on a terminal, unless NO_COLOR asks for none.
bool useColor(FILE *stream) {
  const char *noColor = std::getenv("NO_COLOR");
  return isTerminal(stream) && !(noColor && *noColor);
}

/// The peak resident set of this process, in bytes.
uint64_t peakResidentBytes() {
  struct rusage usage;
  if (::getrusage(RUSAGE_SELF, &usage) != 0)
    return 0;
  return static_cast<uint64_t>(usage.ru_maxrss) * 1024; // KiB on Linux.
}

/// `text` as a JSON string literal (the text is valid UTF-8).
std::string jsonString(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    unsigned char byte = static_cast<unsigned char>(c);
    switch (c) {
    case '"':
      out += "\\\"";
      break;
    case '\\':
      out += "\\\\";
      break;
    case '\n':
      out += "\\n";
      break;
    case '\r':
      out += "\\r";
      break;
    case '\t':
      out += "\\t";
      break;
    default:
      if (byte < 0x20 || byte == 0x7F) {
        char escape[8];
        std::snprintf(escape, sizeof(escape), "\\u%04x", byte);
        out += escape;
      } else {
        out += c;
      }
    }
  }
  return out + "\"";
}

/// A JSON number, or null when it is not finite.
std::string jsonNumber(double value) {
  if (!std::isfinite(value))
    return "null";
  char text[48];
  std::snprintf(text, sizeof(text), "%.6g", value);
  return text;
}

/// The whole content of `path`: a regular file (a named pipe is refused,
/// not waited on) of at most 1 GiB.
StatusOr<std::string> readTextFile(const std::string &path) {
  return ReadOnlyFile::readAll(path, uint64_t(1) << 30);
}

bool fileExists(const std::string &path) {
  struct stat info;
  return ::stat(path.c_str(), &info) == 0;
}

/// What loading the model cost.
struct LoadReport {
  /// Engine::create: artifact, weight binding, kernels, states.
  double engineSeconds = 0;
  /// Reading every weight page in.
  double readSeconds = 0;
  uint64_t bytes = 0;
  size_t files = 0;
};

/// Draws the weight-loading progress on standard error: a bar redrawn in
/// place on a terminal, a plain line every few seconds otherwise.
class LoadProgress {
public:
  LoadProgress(uint64_t total, bool enabled)
      : total(total), enabled(enabled), terminal(isTerminal(stderr)),
        start(Clock::now()), lastDraw(start) {}

  void update(uint64_t done) {
    if (!enabled)
      return;
    double sinceDraw = std::chrono::duration<double>(Clock::now() - lastDraw)
                           .count();
    if (sinceDraw < (terminal ? 0.1 : 5.0))
      return;
    lastDraw = Clock::now();
    double seconds = secondsSince(start);
    double rate = seconds > 0 ? done / seconds : 0;
    double fraction = total ? static_cast<double>(done) / total : 1.0;
    if (terminal) {
      const int width = 30;
      int filled = static_cast<int>(fraction * width);
      std::string bar(static_cast<size_t>(filled), '#');
      bar.append(static_cast<size_t>(width - filled), '-');
      std::fprintf(stderr, "\rloading weights [%s] %3d%%  %s / %s  %s/s\x1b[K",
                   bar.c_str(), static_cast<int>(fraction * 100),
                   formatBytes(done).c_str(), formatBytes(total).c_str(),
                   formatBytes(rate).c_str());
      drewBar = true;
    } else {
      std::fprintf(stderr, "loading weights: %d%% (%s of %s, %s/s)\n",
                   static_cast<int>(fraction * 100), formatBytes(done).c_str(),
                   formatBytes(total).c_str(), formatBytes(rate).c_str());
    }
    std::fflush(stderr);
  }

  void finish(const LoadReport &report) {
    if (!enabled)
      return;
    double rate = report.readSeconds > 0 ? report.bytes / report.readSeconds
                                         : 0;
    std::fprintf(stderr,
                 "%sloaded weights: %s in %zu file%s, read in %.3f s (%s/s); "
                 "model ready in %.3f s%s\n",
                 drewBar ? "\r" : "", formatBytes(report.bytes).c_str(),
                 report.files, report.files == 1 ? "" : "s",
                 report.readSeconds, formatBytes(rate).c_str(),
                 report.engineSeconds + report.readSeconds,
                 drewBar ? "\x1b[K" : "");
    std::fflush(stderr);
  }

private:
  uint64_t total;
  bool enabled;
  bool terminal;
  bool drewBar = false;
  Clock::time_point start, lastDraw;
};

/// Reads every page of every checkpoint tensor once, so the weights are in
/// memory before the first token (the Engine maps them lazily). Shows the
/// progress as it goes.
LoadReport readWeights(const Engine &engine, double engineSeconds,
                       bool showProgress) {
  LoadReport report;
  report.engineSeconds = engineSeconds;
  const auto &files = engine.weights().files();
  report.files = files.size();
  std::vector<const TensorView *> tensors;
  for (const auto &file : files)
    for (const TensorView &tensor : file->tensors())
      if (tensor.nbytes) {
        tensors.push_back(&tensor);
        report.bytes += tensor.nbytes;
      }
  std::sort(tensors.begin(), tensors.end(),
            [](const TensorView *a, const TensorView *b) {
              return a->data < b->data;
            });
  LoadProgress progress(report.bytes, showProgress);
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t kChunk = uint64_t(16) << 20;
  auto start = Clock::now();
  uint64_t done = 0;
  volatile uint8_t sink = 0; // Keeps the reads.
  uintptr_t lastPage = 0;
  for (const TensorView *tensor : tensors) {
    uintptr_t begin = reinterpret_cast<uintptr_t>(tensor->data);
    uintptr_t end = begin + tensor->nbytes;
    for (uintptr_t chunk = begin; chunk < end; chunk += kChunk) {
      uintptr_t chunkEnd = std::min<uintptr_t>(end, chunk + kChunk);
      uintptr_t first = chunk & ~(page - 1);
      // Advice only: ask for read-ahead of the chunk; failure is harmless.
      ::madvise(reinterpret_cast<void *>(first), chunkEnd - first,
                MADV_WILLNEED);
      for (uintptr_t at = first; at < chunkEnd; at += page) {
        if (at == lastPage)
          continue;
        uintptr_t probe = std::max(at, begin);
        sink = sink ^ *reinterpret_cast<const volatile uint8_t *>(probe);
        lastPage = at;
      }
      done += chunkEnd - chunk;
      progress.update(done);
    }
  }
  report.readSeconds = secondsSince(start);
  progress.finish(report);
  return report;
}

/// One generation: the prompt's prefill and the tokens after it.
struct TurnStats {
  int64_t promptTokens = 0;
  /// Every sampled token, the end-of-sequence token included when it came.
  std::vector<int64_t> tokens;
  const char *stop = "token limit";
  double prefillSeconds = 0;
  double firstTokenSeconds = 0;
  double decodeSeconds = 0;
};

const char *stopKey(const char *stop) {
  return std::strcmp(stop, "end of sequence") == 0 ? "eos"
         : std::strcmp(stop, "context full") == 0  ? "context"
                                                   : "limit";
}

/// Prefills `prompt` into a fresh sequence and samples up to `maxNew` tokens
/// (nullopt: no limit), calling `onToken` for each one but a stop token.
/// Stops after a token in `stopIds`, at the limit, or at a full context.
Status generateStreaming(Engine &engine, Sampler &sampler,
                         const std::vector<int64_t> &prompt,
                         std::optional<int64_t> maxNew, int64_t chunk,
                         const std::vector<int64_t> &stopIds,
                         const std::function<void(int64_t)> &onToken,
                         TurnStats &stats) {
  int64_t count = static_cast<int64_t>(prompt.size());
  stats = TurnStats();
  stats.promptTokens = count;
  if (maxNew && *maxNew == 0)
    return okStatus();
  int64_t vocab = engine.vocabSize();
  engine.reset();
  auto start = Clock::now();
  // Sampling needs the last position's logits only (LogitRows).
  COMPRESSA_ASSIGN_OR_RETURN(std::vector<float> logits,
                             engine.prefillLast(prompt.data(), count, 0, chunk));
  stats.prefillSeconds = secondsSince(start);
  const float *row = logits.data();
  Clock::time_point firstToken;
  int64_t pos = count;
  for (;;) {
    int64_t token = sampler.sample(row, vocab);
    if (stats.tokens.empty()) {
      firstToken = Clock::now();
      stats.firstTokenSeconds = secondsSince(start);
    }
    stats.tokens.push_back(token);
    if (std::find(stopIds.begin(), stopIds.end(), token) != stopIds.end()) {
      stats.stop = "end of sequence";
      break;
    }
    onToken(token);
    if (maxNew && static_cast<int64_t>(stats.tokens.size()) >= *maxNew) {
      stats.stop = "token limit";
      break;
    }
    if (pos >= engine.maxContext()) {
      stats.stop = "context full";
      break;
    }
    COMPRESSA_ASSIGN_OR_RETURN(logits, engine.decode(token, pos));
    row = logits.data();
    ++pos;
  }
  stats.decodeSeconds = secondsSince(firstToken);
  return okStatus();
}

/// Turns generated tokens into text as they come: whole UTF-8 characters are
/// written to standard output at once (unless `quiet`), and the reply is
/// kept as reasoning (in thinking mode, up to </think>) and answer. On a
/// terminal, control characters of the text other than tab and newline are
/// shown in caret notation (ESC as ^[), so a reply cannot drive the
/// terminal; the kept text is unchanged.
class ReplyStream {
public:
  ReplyStream(const Tokenizer &tokenizer, std::optional<int64_t> thinkEnd,
              bool quiet)
      : tokenizer(tokenizer), thinkEnd(thinkEnd), quiet(quiet),
        terminal(!quiet && isTerminal(stdout)),
        color(!quiet && useColor(stdout)), inReasoning(thinkEnd.has_value()) {
    if (inReasoning)
      emit(std::string(color ? "\x1b[2m" : "") + std::string(kThinkStartToken));
  }

  void push(int64_t id) {
    if (inReasoning && id == *thinkEnd) {
      std::string rest = utf8.finish();
      reasoning += rest;
      emitText(rest);
      emit(std::string(kThinkEndToken) + (color ? "\x1b[0m" : ""));
      inReasoning = false;
      return;
    }
    StatusOr<std::string> bytes = tokenizer.tokenBytes(id);
    // An id the tokenizer does not know (the model's vocabulary may be
    // larger) shows as U+FFFD.
    std::string text = utf8.push(bytes.ok() ? *bytes : "\xEF\xBF\xBD");
    (inReasoning ? reasoning : answer) += text;
    emitText(text);
  }

  /// Flushes the last bytes and ends the line.
  void finish() {
    std::string rest = utf8.finish();
    (inReasoning ? reasoning : answer) += rest;
    emitText(rest);
    emit(std::string(inReasoning && color ? "\x1b[0m" : "") + "\n");
  }

  std::string reasoning, answer;

private:
  /// Generated text: control characters made visible on a terminal.
  void emitText(const std::string &text) {
    if (!terminal) {
      emit(text);
      return;
    }
    std::string shown;
    for (char c : text) {
      unsigned char byte = static_cast<unsigned char>(c);
      if ((byte < 0x20 && c != '\n' && c != '\t') || byte == 0x7F) {
        shown += '^';
        shown += static_cast<char>(byte ^ 0x40);
      } else {
        shown += c;
      }
    }
    emit(shown);
  }
  void emit(const std::string &bytes) {
    if (quiet || bytes.empty())
      return;
    std::fwrite(bytes.data(), 1, bytes.size(), stdout);
    std::fflush(stdout);
  }

  const Tokenizer &tokenizer;
  std::optional<int64_t> thinkEnd;
  bool quiet;
  bool terminal;
  bool color;
  bool inReasoning;
  Utf8Stream utf8;
};

/// Everything a text run shares between its turns.
struct TextSession {
  const Options &options;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Engine> engine;
  LoadReport load;
  std::vector<int64_t> stopIds;
};

/// The closing line of a reply, on standard error.
void printStats(const TurnStats &stats) {
  size_t generated = stats.tokens.size();
  double prefillRate = stats.prefillSeconds > 0
                           ? stats.promptTokens / stats.prefillSeconds
                           : 0;
  std::string decode = "-";
  if (generated > 1 && stats.decodeSeconds > 0) {
    char text[32];
    std::snprintf(text, sizeof(text), "%.1f",
                  (generated - 1) / stats.decodeSeconds);
    decode = text;
  }
  bool color = useColor(stderr);
  std::fprintf(stderr,
               "%sprompt: %lld tokens | first token: %.3f s | prefill: %.1f "
               "tok/s | decode: %s tok/s (%zu tokens, stopped: %s) | peak "
               "memory: %s%s\n",
               color ? "\x1b[2m" : "", static_cast<long long>(stats.promptTokens),
               stats.firstTokenSeconds, prefillRate, decode.c_str(), generated,
               stats.stop, formatBytes(peakResidentBytes()).c_str(),
               color ? "\x1b[0m" : "");
  std::fflush(stderr);
}

/// The --json object of a reply (one line).
void printJson(const TextSession &session, const TurnStats &stats,
               const ReplyStream &reply, std::optional<int> turn) {
  size_t generated = stats.tokens.size();
  std::string out = "{";
  out += "\"mode\":";
  out += session.options.chat ? "\"chat\"" : "\"completion\"";
  if (turn)
    out += ",\"turn\":" + std::to_string(*turn);
  out += ",\"text\":" + jsonString(reply.answer);
  if (session.options.think)
    out += ",\"reasoning\":" + jsonString(reply.reasoning);
  out += ",\"ids\":[";
  for (size_t i = 0; i < generated; ++i)
    out += (i ? "," : "") + std::to_string(stats.tokens[i]);
  out += "],\"stop\":\"";
  out += stopKey(stats.stop);
  out += "\",\"prompt_tokens\":" + std::to_string(stats.promptTokens);
  out += ",\"generated_tokens\":" + std::to_string(generated);
  out += ",\"time_to_first_token_s\":" +
         jsonNumber(generated ? stats.firstTokenSeconds : NAN);
  out += ",\"prefill_s\":" + jsonNumber(stats.prefillSeconds);
  out += ",\"prefill_tokens_per_s\":" +
         jsonNumber(stats.prefillSeconds > 0
                        ? stats.promptTokens / stats.prefillSeconds
                        : NAN);
  out += ",\"decode_s\":" + jsonNumber(stats.decodeSeconds);
  out += ",\"decode_tokens_per_s\":" +
         jsonNumber(generated > 1 && stats.decodeSeconds > 0
                        ? (generated - 1) / stats.decodeSeconds
                        : NAN);
  out += ",\"load_s\":" +
         jsonNumber(session.load.engineSeconds + session.load.readSeconds);
  out += ",\"weight_bytes\":" + std::to_string(session.load.bytes);
  out += ",\"peak_rss_bytes\":" + std::to_string(peakResidentBytes());
  out += "}\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
}

/// Checks that a prompt of `count` tokens leaves room in the context.
Status checkFits(const Engine &engine, size_t count, const char *what) {
  if (static_cast<int64_t>(count) > engine.maxContext())
    return COMPRESSA_ERROR(OutOfRange,
                           "%s of %zu tokens exceeds the artifact's maximum "
                           "context of %lld",
                           what, count,
                           static_cast<long long>(engine.maxContext()));
  return okStatus();
}

/// -p and -f: one completion.
Status runCompletion(TextSession &session, const std::vector<int64_t> &prompt,
                     Sampler &sampler) {
  const Options &options = session.options;
  ReplyStream reply(*session.tokenizer, std::nullopt, options.json);
  TurnStats stats;
  COMPRESSA_RETURN_IF_ERROR(generateStreaming(
      *session.engine, sampler, prompt, options.generate,
      options.chunk.value_or(0), session.stopIds,
      [&](int64_t id) { reply.push(id); }, stats));
  reply.finish();
  if (options.json)
    printJson(session, stats, reply, std::nullopt);
  else
    printStats(stats);
  return okStatus();
}

/// --chat: one reply per line of standard input.
Status runChat(TextSession &session, Sampler &sampler) {
  const Options &options = session.options;
  COMPRESSA_ASSIGN_OR_RETURN(ChatEncoder encoder,
                             ChatEncoder::create(*session.tokenizer));
  ChatEncodingOptions encoding;
  encoding.mode = options.think ? ChatMode::Thinking : ChatMode::Chat;
  std::vector<ChatMessage> conversation;
  if (options.system)
    conversation.push_back({ChatRole::System, *options.system, ""});
  bool interactive = ::isatty(STDIN_FILENO) && !options.json;
  if (interactive) {
    std::fprintf(stderr, "chat: type a message and press Enter; Ctrl-D "
                         "ends the chat.\n");
    std::fflush(stderr);
  }
  char *line = nullptr;
  size_t capacity = 0;
  int turn = 0;
  Status status = okStatus();
  for (;;) {
    if (interactive) {
      std::fputs("> ", stdout);
      std::fflush(stdout);
    }
    errno = 0;
    ssize_t length = ::getline(&line, &capacity, stdin);
    if (length < 0) {
      if (std::ferror(stdin))
        status = COMPRESSA_ERROR(Unavailable,
                                 "reading standard input failed: %s",
                                 std::strerror(errno));
      else if (interactive)
        std::fputs("\n", stdout);
      break;
    }
    std::string text(line, static_cast<size_t>(length));
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
      text.pop_back();
    if (text.find_first_not_of(" \t") == std::string::npos)
      continue;
    ++turn;
    if (std::optional<size_t> offset = findInvalidUtf8(text)) {
      status = COMPRESSA_ERROR(InvalidArgument,
                               "message %d of standard input is not valid "
                               "UTF-8 (byte offset %zu)",
                               turn, *offset);
      break;
    }
    conversation.push_back({ChatRole::User, text, ""});
    StatusOr<std::vector<int64_t>> prompt =
        encoder.encode(conversation, encoding);
    if (!prompt.ok()) {
      status = prompt.status();
      break;
    }
    status = checkFits(*session.engine, prompt->size(), "the conversation");
    if (!status.ok())
      break;
    ReplyStream reply(*session.tokenizer,
                      options.think ? std::optional<int64_t>(
                                          encoder.specialTokens().thinkEnd)
                                    : std::nullopt,
                      options.json);
    TurnStats stats;
    status = generateStreaming(
        *session.engine, sampler, *prompt, options.generate,
        options.chunk.value_or(0), session.stopIds,
        [&](int64_t id) { reply.push(id); }, stats);
    if (!status.ok())
      break;
    reply.finish();
    conversation.push_back(
        {ChatRole::Assistant, reply.answer, reply.reasoning});
    if (options.json)
      printJson(session, stats, reply, turn);
    else
      printStats(stats);
  }
  std::free(line);
  return status;
}

/// -p, -f and --chat.
Status runText(const Options &options) {
  SamplingOptions sampling;
  sampling.greedy = options.greedy;
  sampling.temperature = options.temperature.value_or(1.0);
  sampling.topK = options.topK.value_or(0);
  sampling.topP = options.topP.value_or(1.0);
  sampling.seed = options.seed.value_or(0);
  if (!sampling.greedy)
    COMPRESSA_RETURN_IF_ERROR(validateSamplingOptions(sampling));
  // The prompt first: its errors need no model.
  std::string prompt;
  if (options.promptText || !options.promptFile.empty()) {
    std::string source;
    if (options.promptText) {
      prompt = *options.promptText;
      source = "-p";
    } else {
      COMPRESSA_ASSIGN_OR_RETURN(prompt, readTextFile(options.promptFile));
      source = options.promptFile;
    }
    if (prompt.empty() && options.promptText)
      return COMPRESSA_ERROR(InvalidArgument, "empty prompt: -p gives no text");
    if (prompt.empty())
      return COMPRESSA_ERROR(InvalidArgument, "empty prompt: %s is empty",
                             source.c_str());
    if (std::optional<size_t> offset = findInvalidUtf8(prompt))
      return COMPRESSA_ERROR(InvalidArgument,
                             "%s: the prompt is not valid UTF-8 (byte offset "
                             "%zu)",
                             source.c_str(), *offset);
  }
  if (options.system)
    if (std::optional<size_t> offset = findInvalidUtf8(*options.system))
      return COMPRESSA_ERROR(InvalidArgument,
                             "--system: the text is not valid UTF-8 (byte "
                             "offset %zu)",
                             *offset);

  // The tokenizer: given, or next to the weights.
  std::string tokenizerPath = options.tokenizer;
  if (tokenizerPath.empty()) {
    tokenizerPath = options.weights + "/tokenizer.json";
    if (!fileExists(tokenizerPath))
      return COMPRESSA_ERROR(NotFound,
                             "no tokenizer: %s does not exist; text modes "
                             "need one (give --tokenizer FILE; --input-ids "
                             "runs without)",
                             tokenizerPath.c_str());
  } else if (!fileExists(tokenizerPath)) {
    return COMPRESSA_ERROR(NotFound, "--tokenizer %s does not exist",
                           tokenizerPath.c_str());
  }
  TextSession session{options, nullptr, nullptr, {}, {}};
  COMPRESSA_ASSIGN_OR_RETURN(session.tokenizer,
                             Tokenizer::fromFile(tokenizerPath));
  std::vector<int64_t> promptIds;
  if (!options.chat) {
    COMPRESSA_ASSIGN_OR_RETURN(promptIds,
                               encodeCompletion(*session.tokenizer, prompt));
  } else {
    // Fail before loading the model when the chat tokens are missing.
    COMPRESSA_RETURN_IF_ERROR(ChatEncoder::create(*session.tokenizer).status());
  }

  // The model.
  COMPRESSA_ASSIGN_OR_RETURN(std::unique_ptr<Artifact> artifact,
                             ArtifactReader::readFile(options.artifact));
  // CPU and CUDA artifacts alike run through the Engine; a CUDA artifact on
  // a machine without a usable GPU fails in Engine::create with "...: the
  // artifact targets CUDA, but no CUDA GPU is available: <why>".
  auto start = Clock::now();
  COMPRESSA_ASSIGN_OR_RETURN(
      session.engine, Engine::create(std::move(artifact), options.weights));
  double engineSeconds = secondsSince(start);

  // The tokenizer must belong to the model.
  const Engine &engine = *session.engine;
  if (session.tokenizer->vocabSize() > engine.vocabSize())
    return COMPRESSA_ERROR(InvalidArgument,
                           "tokenizer %s knows %lld tokens, more than the "
                           "artifact's vocabulary of %lld: they belong to "
                           "different models",
                           tokenizerPath.c_str(),
                           static_cast<long long>(
                               session.tokenizer->vocabSize()),
                           static_cast<long long>(engine.vocabSize()));
  struct {
    std::string_view content;
    int64_t expected;
    const char *field;
  } checks[] = {
      {kBosToken, engine.artifact().model().bos_token_id(), "bos_token_id"},
      {kEosToken, engine.eosTokenId(), "eos_token_id"},
  };
  for (const auto &check : checks) {
    std::optional<int64_t> id = session.tokenizer->tokenId(check.content);
    if (id && *id != check.expected)
      return COMPRESSA_ERROR(InvalidArgument,
                             "tokenizer %s gives '%.*s' the id %lld but the "
                             "artifact's %s is %lld: they belong to "
                             "different models",
                             tokenizerPath.c_str(),
                             static_cast<int>(check.content.size()),
                             check.content.data(),
                             static_cast<long long>(*id), check.field,
                             static_cast<long long>(check.expected));
  }
  session.stopIds = {engine.eosTokenId()};
  if (!options.chat)
    COMPRESSA_RETURN_IF_ERROR(
        checkFits(engine, promptIds.size(), "the prompt"));

  session.load = readWeights(engine, engineSeconds, !options.json);
  Sampler sampler(sampling);
  Status status = options.chat ? runChat(session, sampler)
                               : runCompletion(session, promptIds, sampler);
  COMPRESSA_RETURN_IF_ERROR(status);
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
  // The GPUs of the ranks (docs/parallel.md), before any engine exists.
  if (!options.devices.empty()) {
    COMPRESSA_ASSIGN_OR_RETURN(std::vector<int> devices,
                               parseDeviceList(options.devices));
    setRankDevices(std::move(devices));
  }
  // Several processes: node 0 is this tool as usual (its engine drives the
  // other nodes); node k > 0 loads its ranks and serves node 0 until done.
  if (options.nodes.value_or(1) > 1 || options.nodeRank ||
      !options.masterAddr.empty() || options.masterPort) {
    NodeOptions nodes;
    nodes.nodes = int(options.nodes.value_or(1));
    nodes.nodeRank = int(options.nodeRank.value_or(0));
    if (!options.masterAddr.empty())
      nodes.masterAddr = options.masterAddr;
    nodes.masterPort = int(options.masterPort.value_or(nodes.masterPort));
    if (nodes.nodes > 4096 || nodes.nodeRank >= nodes.nodes ||
        nodes.masterPort > 65535)
      return COMPRESSA_ERROR(InvalidArgument,
                             "--node-rank %d is not below --nnodes %d, or "
                             "--master-port %d is above 65535",
                             nodes.nodeRank, nodes.nodes, nodes.masterPort);
    setNodeOptions(nodes);
    if (nodes.nodeRank > 0) {
      if (options.artifact.empty() || options.weights.empty())
        return COMPRESSA_ERROR(InvalidArgument,
                               "--node-rank %d needs the artifact and "
                               "--weights",
                               nodes.nodeRank);
      std::fprintf(stderr,
                   "compressa-run: node %d of %d: loading its ranks, then "
                   "serving node 0 at %s:%d\n",
                   nodes.nodeRank, nodes.nodes, nodes.masterAddr.c_str(),
                   nodes.masterPort);
      return RankGroup::serveNode(options.artifact, options.weights, false, 0);
    }
  }
  if (options.textMode())
    return runText(options);
  COMPRESSA_ASSIGN_OR_RETURN(std::unique_ptr<Artifact> artifact,
                             ArtifactReader::readFile(options.artifact));
  // CPU and CUDA artifacts alike run through the Engine; a CUDA artifact on
  // a machine without a usable GPU fails in Engine::create with "...: the
  // artifact targets CUDA, but no CUDA GPU is available: <why>".
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
