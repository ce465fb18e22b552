// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the DeepSeek-V4 chat encoder (runtime/chat/) with a
// fixed, good tokenizer (models/tokenizers/tiny-768.json).
//
// Input: byte 0 holds the options (bit 0: thinking mode, bit 1: keep the
// reasoning of earlier turns); the rest is messages separated by "\n\x1e".
// A message's first byte picks the role (value % 3: system, user,
// assistant); the rest is its content. An assistant message with a "\x1f"
// is "reasoning\x1fanswer"; bit 3 of the first byte gives any message
// reasoning the same way (all of it when there is no "\x1f"), which is an
// error for a message that is not the assistant's.
// What must hold: encode fails exactly when a message has invalid UTF-8 or
// reasoning on a non-assistant message; render agrees with encode; the ids
// start with BOS, lie in the vocabulary and decode to the rendered text;
// encodeCompletion is BOS + encode.
#include "test/fuzz/fuzz_tokenizer.h"
#include "test/fuzz/fuzz_util.h"

#include "runtime/chat/chat_encoding.h"
#include "runtime/tokenizer/tokenizer.h"

#include <algorithm>

using namespace compressa;


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

  ChatEncodingOptions options;
  options.mode = (data[0] & 1) ? ChatMode::Thinking : ChatMode::Chat;
  options.dropThinking = !(data[0] & 2);
  std::string_view rest(reinterpret_cast<const char *>(data) + 1, size - 1);
  std::vector<ChatMessage> messages;
  bool expectError = false;
  if (!rest.empty()) {
    for (std::string_view part : fuzz::split(rest, "\n\x1e")) {
      ChatMessage message;
      uint8_t tag = part.empty() ? 0 : static_cast<uint8_t>(part[0]);
      if (!part.empty())
        part.remove_prefix(1);
      message.role = static_cast<ChatRole>(tag % 3);
      size_t cut = part.find('\x1f');
      bool withReasoning = (tag & 8) || (message.role == ChatRole::Assistant &&
                                         cut != std::string_view::npos);
      if (withReasoning && cut != std::string_view::npos) {
        message.reasoning = std::string(part.substr(0, cut));
        message.content = std::string(part.substr(cut + 1));
      } else if (withReasoning) {
        message.reasoning = std::string(part);
      } else {
        message.content = std::string(part);
      }
      if (findInvalidUtf8(message.content) || findInvalidUtf8(message.reasoning))
        expectError = true;
      if (!message.reasoning.empty() && message.role != ChatRole::Assistant)
        expectError = true;
      messages.push_back(std::move(message));
    }
  }

  StatusOr<std::vector<int64_t>> ids = encoder->encode(messages, options);
  StatusOr<std::string> text = encoder->render(messages, options);
  FUZZ_CHECK(ids.ok() == text.ok(), "encode %s but render %s",
             ids.ok() ? "succeeded" : "failed",
             text.ok() ? "succeeded" : "failed");
  if (expectError) {
    FUZZ_CHECK(!ids.ok(), "a conversation with invalid UTF-8 or misplaced "
                          "reasoning was encoded");
    fuzz::checkError(ids.status(), "ChatEncoder::encode");
    return 0;
  }
  FUZZ_CHECK(ids.ok(), "%zu valid messages not encoded: %s", messages.size(),
             ids.status().toString().c_str());
  FUZZ_CHECK(!ids->empty() && (*ids)[0] == encoder->specialTokens().bos,
             "the ids do not start with BOS");
  for (int64_t id : *ids)
    FUZZ_CHECK(id >= 0 && id < tok.vocabSize(), "id %lld outside the vocabulary",
               static_cast<long long>(id));
  StatusOr<std::string> decoded = tok.decode(ids->data(), ids->size());
  FUZZ_CHECK(decoded.ok(), "decode: %s", decoded.status().toString().c_str());
  FUZZ_CHECK(*decoded == *text,
             "decode(encode(messages)) differs from render(messages) (%zu vs "
             "%zu bytes)",
             decoded->size(), text->size());

  // Plain completion of the first message's content.
  if (!messages.empty()) {
    const std::string &content = messages[0].content;
    StatusOr<std::vector<int64_t>> completion =
        encodeCompletion(tok, content);
    StatusOr<std::vector<int64_t>> plain = tok.encode(content);
    FUZZ_CHECK(completion.ok() && plain.ok(), "encodeCompletion failed: %s",
               completion.status().toString().c_str());
    FUZZ_CHECK(completion->size() == plain->size() + 1 &&
                   (*completion)[0] == encoder->specialTokens().bos &&
                   std::equal(plain->begin(), plain->end(),
                              completion->begin() + 1),
               "encodeCompletion is not BOS + encode");
  }
  return 0;
}
