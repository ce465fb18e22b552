//===- chat_encoding.h - DeepSeek-V4 conversation format ----------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// Turns a conversation into the token ids DeepSeek-V4 expects (spec §6; the
// reference is encoding/encoding_dsv4.py of the model repository, restricted
// to system, user and assistant messages: no tools, tasks or reasoning-effort
// preamble):
//
//   BOS {system} (<｜User｜>{user}<｜Assistant｜>{think}{answer}EOS)*
//
// * After a user message that an assistant reply follows (or that ends the
//   conversation) comes <｜Assistant｜> and then </think> in chat mode, or
//   <think> in thinking mode. With drop-thinking (the default) an earlier
//   user turn of thinking mode also gets </think>: only the last user
//   message opens a reasoning block.
// * An assistant message renders as {answer}EOS. In thinking mode it renders
//   as {reasoning}</think>{answer}EOS when it follows the last user message,
//   or always when drop-thinking is off; the <think> that opens it is the one
//   after its user message. The reasoning of the other turns is dropped.
// * A conversation that ends with a user message is the prompt of the next
//   reply: it ends with <｜Assistant｜></think> (chat) or <｜Assistant｜><think>
//   (thinking).
//
// Rendering to ids: each text piece is encoded by the tokenizer on its own
// (special tokens written in the text are matched as such, as the reference
// tokenizes the whole rendered string), and every structural token is
// emitted by its id, looked up by content in the tokenizer, never hard-coded.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_RUNTIME_CHAT_CHAT_ENCODING_H
#define COMPRESSA_RUNTIME_CHAT_CHAT_ENCODING_H

#include "runtime/base/status.h"
#include "runtime/tokenizer/tokenizer.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace compressa {

/// The contents of the special tokens of the format.
inline constexpr std::string_view kBosToken = "<｜begin▁of▁sentence｜>";
inline constexpr std::string_view kEosToken = "<｜end▁of▁sentence｜>";
inline constexpr std::string_view kUserToken = "<｜User｜>";
inline constexpr std::string_view kAssistantToken = "<｜Assistant｜>";
inline constexpr std::string_view kThinkStartToken = "<think>";
inline constexpr std::string_view kThinkEndToken = "</think>";

enum class ChatRole { System, User, Assistant };

/// "system", "user" or "assistant".
const char *chatRoleName(ChatRole role);

/// One message of a conversation.
struct ChatMessage {
  ChatRole role = ChatRole::User;
  /// The text; for an assistant message, the answer (after </think>).
  std::string content;
  /// Assistant messages only: the reasoning, without <think> and </think>.
  std::string reasoning;
};

enum class ChatMode {
  /// Non-thinking: every assistant turn starts with </think>.
  Chat,
  /// The reply to the last user message starts with <think>.
  Thinking,
};

struct ChatEncodingOptions {
  ChatMode mode = ChatMode::Chat;
  /// Thinking mode: drop the reasoning of the turns before the last user
  /// message (the reference's default). Without it every kept reasoning is
  /// rendered as <think>{reasoning}</think>.
  bool dropThinking = true;
};

/// The ids of the special tokens, from the tokenizer.
struct ChatSpecialTokens {
  int64_t bos = -1;
  int64_t eos = -1;
  int64_t user = -1;
  int64_t assistant = -1;
  int64_t thinkStart = -1;
  int64_t thinkEnd = -1;
};

/// The byte offset of the first byte that does not start or continue a valid
/// UTF-8 sequence (overlong forms, surrogates and code points above U+10FFFF
/// are invalid, as are truncated sequences), or nullopt when `text` is valid.
std::optional<size_t> findInvalidUtf8(std::string_view text);

/// Plain completion: BOS followed by the tokens of `text`. Needs only the
/// BOS token; `text` must be valid UTF-8 (the error names the byte offset).
StatusOr<std::vector<int64_t>> encodeCompletion(const Tokenizer &tokenizer,
                                                std::string_view text);

/// Renders conversations with one tokenizer, which must outlive the encoder.
class ChatEncoder {
public:
  /// Looks up every special token of the format; NotFound naming the first
  /// missing one.
  static StatusOr<ChatEncoder> create(const Tokenizer &tokenizer);

  const ChatSpecialTokens &specialTokens() const { return ids; }
  const Tokenizer &tokenizer() const { return *tok; }

  /// The token ids of `messages`. Errors name the message (by index and
  /// role): invalid UTF-8 (with its byte offset), or reasoning on a message
  /// that is not the assistant's.
  StatusOr<std::vector<int64_t>>
  encode(const std::vector<ChatMessage> &messages,
         const ChatEncodingOptions &options = {}) const;
  /// The same conversation as text, special tokens written as their content
  /// (what the reference's encode_messages returns).
  StatusOr<std::string> render(const std::vector<ChatMessage> &messages,
                               const ChatEncodingOptions &options = {}) const;

private:
  /// A piece of the rendered conversation: a special token, or text.
  struct Piece {
    int64_t special = -1;
    std::string_view content;
  };

  ChatEncoder(const Tokenizer &tokenizer, const ChatSpecialTokens &ids)
      : tok(&tokenizer), ids(ids) {}
  StatusOr<std::vector<Piece>>
  pieces(const std::vector<ChatMessage> &messages,
         const ChatEncodingOptions &options) const;

  const Tokenizer *tok;
  ChatSpecialTokens ids;
};

} // namespace compressa

#endif // COMPRESSA_RUNTIME_CHAT_CHAT_ENCODING_H
