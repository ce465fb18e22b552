// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: what compressa-serve does with untrusted text around a
// chat: the request body -> prompt step (runtime/chat/chat_request.h) and
// the streaming reply parser (runtime/chat/reply_parser.h), with a fixed,
// good tokenizer (models/tokenizers/tiny-768.json).
//
// Input: byte 0 holds the options (bits 0-3: the piece size for the reply
// parser minus 1; bit 4: thinking mode); the rest is both a request body and
// a generated reply.
// What must hold: a prompt that builds starts with BOS, its ids lie in the
// vocabulary and decode to its text; the reply parser gives the same
// reasoning, content, tool calls and outcome whether fed at once or in
// pieces, never lets "<｜DSML｜" into the content or the reasoning, and
// every tool call's arguments are a JSON object.
#include "test/fuzz/fuzz_tokenizer.h"
#include "test/fuzz/fuzz_util.h"

#include "runtime/chat/chat_request.h"
#include "runtime/chat/json_text.h"
#include "runtime/chat/reply_parser.h"

using namespace compressa;

namespace {

struct Parsed {
  std::string reasoning, content;
  std::vector<ToolCall> calls;
  bool ok = true;
};

Parsed parseReply(std::string_view text, bool thinking, size_t step) {
  ReplyParser parser({thinking, "call_"});
  Parsed out;
  auto add = [&](const ReplyDelta &delta) {
    out.reasoning += delta.reasoning;
    out.content += delta.content;
    out.calls.insert(out.calls.end(), delta.toolCalls.begin(),
                     delta.toolCalls.end());
  };
  for (size_t i = 0; i < text.size(); i += step)
    add(parser.feed(text.substr(i, step)));
  add(parser.finish());
  out.ok = parser.error().ok();
  FUZZ_CHECK(out.reasoning == parser.reasoning(), "reasoning deltas");
  FUZZ_CHECK(out.content == parser.content(), "content deltas");
  FUZZ_CHECK(out.calls.size() == parser.toolCalls().size(), "call deltas");
  return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  const Tokenizer &tok = fuzz::tinyTokenizer();
  static const ChatEncoder *encoder = [&] {
    StatusOr<ChatEncoder> created = ChatEncoder::create(tok);
    if (!created.ok()) {
      std::fprintf(stderr, "fuzz: no chat encoder: %s\n",
                   created.status().toString().c_str());
      std::abort();
    }
    return new ChatEncoder(std::move(created).value());
  }();
  size_t step = (data[0] & 15) + 1;
  bool thinking = data[0] & 16;
  std::string_view text(reinterpret_cast<const char *>(data) + 1, size - 1);

  StatusOr<ChatPrompt> prompt = buildChatPrompt(*encoder, text);
  if (prompt.ok()) {
    FUZZ_CHECK(!prompt->ids.empty() &&
                   prompt->ids[0] == encoder->specialTokens().bos,
               "the prompt starts with BOS");
    for (int64_t id : prompt->ids)
      FUZZ_CHECK(id >= 0 && id < tok.vocabSize(), "id %lld in the vocabulary",
                 static_cast<long long>(id));
    StatusOr<std::string> decoded =
        tok.decode(prompt->ids.data(), prompt->ids.size());
    FUZZ_CHECK(decoded.ok() && *decoded == prompt->text,
               "the ids decode to the prompt text");
  } else {
    FUZZ_CHECK(prompt.status().code() == StatusCode::InvalidArgument,
               "a bad request is InvalidArgument: %s",
               prompt.status().toString().c_str());
  }

  Parsed whole = parseReply(text, thinking, text.size() ? text.size() : 1);
  Parsed split = parseReply(text, thinking, step);
  FUZZ_CHECK(whole.ok == split.ok, "same outcome at any split");
  FUZZ_CHECK(whole.reasoning == split.reasoning, "same reasoning at any split");
  FUZZ_CHECK(whole.content == split.content, "same content at any split");
  FUZZ_CHECK(whole.calls.size() == split.calls.size(), "same calls");
  for (size_t i = 0; i < whole.calls.size(); ++i) {
    FUZZ_CHECK(whole.calls[i].name == split.calls[i].name &&
                   whole.calls[i].arguments == split.calls[i].arguments,
               "same call %zu", i);
    FUZZ_CHECK(isJsonText(whole.calls[i].arguments) &&
                   whole.calls[i].arguments.front() == '{',
               "arguments are a JSON object");
  }
  for (const Parsed *p : {&whole, &split})
    FUZZ_CHECK(p->content.find("<｜DSML｜") == std::string::npos &&
                   p->reasoning.find("<｜DSML｜") == std::string::npos,
               "no DSML markup in the content or the reasoning");
  return 0;
}
