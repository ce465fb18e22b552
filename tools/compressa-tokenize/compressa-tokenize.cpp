//===- compressa-tokenize.cpp - Encode and decode with tokenizer.json ------===//
// SPDX-License-Identifier: Apache-2.0
//
//   compressa-tokenize TOKENIZER.json [--decode] [--jsonl] [--pretokens]
//   compressa-tokenize TOKENIZER.json --chat [--ids] < request.json
//   compressa-tokenize TOKENIZER.json --bench [--repeat N]
//
// A runtime tool: it links libcompressa_runtime only. Every failure prints one
// line starting with "compressa-tokenize: error: " and exits with status 1.
//
//===----------------------------------------------------------------------===//

#include "runtime/chat/chat_encoding.h"
#include "runtime/chat/chat_request.h"
#include "runtime/tokenizer/tokenizer.h"
#include "runtime/tokenizer/utf8.h"
#include "runtime/weights/json.h"

#include <CLI/CLI.hpp>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace compressa;

static const char kUsage[] =
    R"(USAGE: compressa-tokenize TOKENIZER.json [--decode] [--jsonl] [--pretokens]
       compressa-tokenize TOKENIZER.json --chat [--ids] < request.json
       compressa-tokenize TOKENIZER.json --bench [--repeat N]

Encodes text to token ids, or decodes ids to text, with a Hugging Face
tokenizer.json of the byte-level BPE kind (DeepSeek-V3/V4's). Special tokens
written in the text (e.g. <｜User｜>) are matched as such; no token is added
around the text (add_special_tokens=False).

Modes:
  (default)      Read all of stdin as UTF-8 text (byte for byte, a final
                 newline included) and print its ids on one line, separated
                 by spaces. Empty input encodes to no ids: an empty line.
  --decode       Read ids separated by whitespace and print their text as
                 is, with no newline added. Bytes that are not valid UTF-8
                 become U+FFFD, as the reference decoder does.
  --jsonl        One item per input line: a JSON string to encode (printed
                 as a JSON array of ids, e.g. [1,2,3]) or, with --decode, a
                 JSON array of ids (printed as a JSON string). Output lines
                 match input lines one to one.
  --pretokens    Print the pre-tokens (the pieces that BPE merges, added
                 tokens not matched) of the text as a JSON array of strings;
                 with --jsonl, one array per line. A debugging aid.
  --chat         Read an OpenAI-style chat request body (JSON: messages,
                 tools, chat_template_kwargs {"thinking": bool,
                 "reasoning_effort": "high"|"max", "drop_thinking": bool})
                 and print, byte for byte, the DeepSeek-V4 prompt text that
                 compressa-serve builds for it, with no newline added.
  --ids          With --chat: print the prompt's token ids instead, on one
                 line separated by spaces.
  --bench        Time the encoding of stdin: the first pass on a fresh
                 tokenizer (cold pre-token cache) and --repeat N more passes
                 (default 5; warm cache), and print MB/s (10^6 bytes/s).

Options:
  -h, --help     Print this help and exit.

Errors (exit status 1, one line on stderr): an unreadable, malformed or
unsupported tokenizer.json (the message names the field), invalid UTF-8 in
the text (the byte offset), ids outside the vocabulary (the id and its
position), malformed --jsonl lines (the line number), a malformed chat
request (the field, e.g. messages[1].role).
)";

namespace {

struct Options {
  std::string tokenizerPath;
  bool decode = false;
  bool jsonl = false;
  bool pretokens = false;
  bool bench = false;
  bool chat = false;
  bool ids = false;
  long repeat = 5;
};

[[noreturn]] void die(const std::string &message) {
  std::fflush(stdout);
  std::fprintf(stderr, "compressa-tokenize: error: %s\n", message.c_str());
  std::exit(1);
}

Options parseCommandLine(int argc, char **argv) {
  Options options;
  // CLI11 reads the flags; the messages stay the tool's own (the tests and
  // the usage text name them), so unknown options and extra arguments are
  // collected as extras and reported here, and the help is kUsage.
  CLI::App app("compressa-tokenize");
  app.set_help_flag();
  app.allow_extras();
  bool help = false;
  std::string repeat;
  app.add_flag("-h,--help", help);
  app.add_flag("--decode", options.decode);
  app.add_flag("--jsonl", options.jsonl);
  app.add_flag("--pretokens", options.pretokens);
  app.add_flag("--bench", options.bench);
  app.add_flag("--chat", options.chat);
  app.add_flag("--ids", options.ids);
  CLI::Option *repeatOption = app.add_option("--repeat", repeat);
  app.add_option("TOKENIZER.json", options.tokenizerPath);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError &error) {
    if (repeatOption->count() == 0 &&
        std::string(error.what()).find("--repeat") != std::string::npos)
      die("--repeat needs a value");
    die(error.what());
  }
  if (help) {
    std::fputs(kUsage, stdout);
    std::exit(0);
  }
  for (const std::string &arg : app.remaining()) {
    if (!arg.empty() && arg[0] == '-')
      die("unknown option '" + arg + "' (see --help)");
    die("unexpected argument '" + arg + "' (one TOKENIZER.json only)");
  }
  if (repeatOption->count() > 0) {
    char *end = nullptr;
    errno = 0;
    options.repeat = std::strtol(repeat.c_str(), &end, 10);
    if (repeat.empty() || *end || errno || options.repeat < 0 ||
        options.repeat > 100000)
      die("--repeat: '" + repeat + "' is not a count in 0..100000");
  }
  if (options.tokenizerPath.empty())
    die("missing TOKENIZER.json (see --help)");
  if (options.decode && options.pretokens)
    die("--decode and --pretokens exclude each other");
  if (options.bench && (options.decode || options.jsonl || options.pretokens))
    die("--bench takes no other mode");
  if (options.chat && (options.decode || options.jsonl || options.pretokens ||
                       options.bench))
    die("--chat takes no other mode");
  if (options.ids && !options.chat)
    die("--ids needs --chat");
  return options;
}

std::string readStdin() {
  std::string text;
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), stdin)) > 0)
    text.append(buffer, n);
  if (std::ferror(stdin))
    die("cannot read stdin");
  return text;
}

void write(const std::string &text) {
  if (!text.empty() && std::fwrite(text.data(), 1, text.size(), stdout) != text.size())
    die("cannot write stdout");
}

std::unique_ptr<Tokenizer> load(const std::string &path) {
  auto tok = Tokenizer::fromFile(path);
  if (!tok.ok())
    die(tok.status().message());
  return std::move(tok).value();
}

void appendIdsJson(const std::vector<int64_t> &ids, std::string &out) {
  out += '[';
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i)
      out += ',';
    out += std::to_string(ids[i]);
  }
  out += ']';
}

void appendPiecesJson(const std::vector<std::string> &pieces, std::string &out) {
  out += '[';
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (i)
      out += ',';
    utf8::appendJsonString(pieces[i], out);
  }
  out += ']';
}

/// Parses whitespace-separated ids (plain --decode input).
std::vector<int64_t> parseIds(const std::string &text) {
  std::vector<int64_t> ids;
  size_t pos = 0;
  size_t index = 0;
  while (true) {
    while (pos < text.size() && std::strchr(" \t\r\n\v\f", text[pos]) && text[pos])
      ++pos;
    if (pos >= text.size())
      break;
    size_t start = pos;
    while (pos < text.size() && !std::strchr(" \t\r\n\v\f", text[pos]))
      ++pos;
    std::string word = text.substr(start, pos - start);
    char *end = nullptr;
    errno = 0;
    long long value = std::strtoll(word.c_str(), &end, 10);
    if (word.empty() || *end || errno || word[0] == '+')
      die("input id " + std::to_string(index) + " ('" + printable(word, 40) +
          "') is not an integer");
    ids.push_back(value);
    ++index;
  }
  return ids;
}

std::string lineError(size_t line, const std::string &message) {
  return "stdin line " + std::to_string(line) + ": " + message;
}

void runJsonl(const Tokenizer &tok, const Options &options) {
  std::string input = readStdin();
  size_t pos = 0;
  size_t line = 0;
  std::string out;
  while (pos < input.size()) {
    size_t end = input.find('\n', pos);
    if (end == std::string::npos)
      end = input.size();
    std::string_view text(input.data() + pos, end - pos);
    pos = end + 1;
    ++line;
    auto value = parseJson(text);
    if (!value.ok())
      die(lineError(line, value.status().message()));
    out.clear();
    if (options.decode) {
      if (!value->isArray())
        die(lineError(line, std::string("expected a JSON array of ids, found ") +
                                JsonValue::kindName(value->kind())));
      std::vector<int64_t> ids;
      for (size_t i = 0; i < value->size(); ++i) {
        std::optional<int64_t> id = value->elements()[i].intValue();
        if (!id)
          die(lineError(line, "element " + std::to_string(i) + " is not an integer id"));
        ids.push_back(*id);
      }
      auto decoded = tok.decode(ids.data(), ids.size());
      if (!decoded.ok())
        die(lineError(line, decoded.status().message()));
      utf8::appendJsonString(*decoded, out);
    } else {
      if (!value->isString())
        die(lineError(line, std::string("expected a JSON string, found ") +
                                JsonValue::kindName(value->kind())));
      if (options.pretokens) {
        auto pieces = tok.preTokenize(value->stringValue());
        if (!pieces.ok())
          die(lineError(line, pieces.status().message()));
        appendPiecesJson(*pieces, out);
      } else {
        auto ids = tok.encode(value->stringValue());
        if (!ids.ok())
          die(lineError(line, ids.status().message()));
        appendIdsJson(*ids, out);
      }
    }
    out += '\n';
    write(out);
  }
}

/// --chat: the prompt of the request body on stdin, as compressa-serve
/// builds it (runtime/chat/chat_request.h).
void runChat(const Tokenizer &tok, const Options &options) {
  StatusOr<ChatEncoder> encoder = ChatEncoder::create(tok);
  if (!encoder.ok())
    die(options.tokenizerPath + ": " + encoder.status().message());
  std::string body = readStdin();
  StatusOr<ChatPrompt> prompt =
      buildChatPrompt(*encoder, std::string_view(body));
  if (!prompt.ok())
    die(prompt.status().message());
  if (!options.ids) {
    write(prompt->text);
    return;
  }
  std::string out;
  for (size_t i = 0; i < prompt->ids.size(); ++i) {
    if (i)
      out += ' ';
    out += std::to_string(prompt->ids[i]);
  }
  out += '\n';
  write(out);
}

void runBench(const Options &options) {
  std::string text = readStdin();
  if (text.empty())
    die("--bench needs some text on stdin");
  using Clock = std::chrono::steady_clock;
  std::unique_ptr<Tokenizer> tok = load(options.tokenizerPath);
  Clock::time_point start = Clock::now();
  auto ids = tok->encode(text);
  double cold = std::chrono::duration<double>(Clock::now() - start).count();
  if (!ids.ok())
    die(ids.status().message());
  size_t tokens = ids->size();
  double best = 0;
  for (long i = 0; i < options.repeat; ++i) {
    start = Clock::now();
    auto again = tok->encode(text);
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (!again.ok())
      die(again.status().message());
    if (i == 0 || seconds < best)
      best = seconds;
  }
  double megabytes = double(text.size()) / 1e6;
  std::printf("compressa-tokenize bench: %zu bytes -> %zu tokens (%.2f bytes/token)\n",
              text.size(), tokens, double(text.size()) / double(tokens ? tokens : 1));
  std::printf("  encode, cold cache: %.1f MB/s (%.3f s)\n", megabytes / cold, cold);
  if (options.repeat > 0)
    std::printf("  encode, warm cache: %.1f MB/s (best of %ld: %.3f s)\n",
                megabytes / best, options.repeat, best);
}

} // namespace

int main(int argc, char **argv) {
  Options options = parseCommandLine(argc, argv);
  if (options.bench) {
    runBench(options);
    return 0;
  }
  std::unique_ptr<Tokenizer> tok = load(options.tokenizerPath);
  if (options.chat) {
    runChat(*tok, options);
  } else if (options.jsonl) {
    runJsonl(*tok, options);
  } else if (options.decode) {
    std::vector<int64_t> ids = parseIds(readStdin());
    auto text = tok->decode(ids.data(), ids.size());
    if (!text.ok())
      die(text.status().message());
    write(*text);
  } else if (options.pretokens) {
    auto pieces = tok->preTokenize(readStdin());
    if (!pieces.ok())
      die(pieces.status().message());
    std::string out;
    appendPiecesJson(*pieces, out);
    out += '\n';
    write(out);
  } else {
    auto ids = tok->encode(readStdin());
    if (!ids.ok())
      die(ids.status().message());
    std::string out;
    for (size_t i = 0; i < ids->size(); ++i) {
      if (i)
        out += ' ';
      out += std::to_string((*ids)[i]);
    }
    out += '\n';
    write(out);
  }
  if (std::fflush(stdout) != 0)
    die("cannot write stdout");
  return 0;
}
