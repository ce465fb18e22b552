//===- chat_encoding.h - DeepSeek-V4 conversation format ----------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// Turns a conversation into the prompt DeepSeek-V4 expects: spec §6, whose
// reference is encoding/encoding_dsv4.py of the model repository
// (encode_messages). The rules, numbered for the tests that check them:
//
// R1  The prompt starts with BOS.
// R2  reasoning_effort "max" in thinking mode puts a fixed instruction
//     paragraph (kReasoningEffortMax) right after BOS, before the first
//     message; "high" (or none) adds nothing, and chat mode ignores it.
// R3  A system message renders as its content. Tools (OpenAI function
//     definitions) render after it as "\n\n" + the tools section (the DSML
//     call syntax and one JSON line per function, R12); they attach to the
//     first message when it is a system message, else an empty system
//     message carrying them is put first.
// R4  A user message renders as <｜User｜>{content}. Consecutive user and
//     tool messages form ONE user turn whose parts are joined by "\n\n".
// R5  A tool message is the part <tool_result>{content}</tool_result> of a
//     user turn. The results in one turn are ordered as the preceding
//     assistant's tool_calls (by tool_call_id; unknown ids count as the
//     first call, and the order is otherwise kept).
// R6  After a user turn that ends the conversation or that an assistant
//     message follows comes <｜Assistant｜> and then <think> in thinking mode
//     (for the last user turn, or any with drop-thinking off) or </think>
//     (chat mode, or an earlier turn with drop-thinking on).
// R7  An assistant message renders as [{reasoning}</think>]{content}
//     [{tool calls}]<｜end▁of▁sentence｜>; the reasoning part only in
//     thinking mode, and with drop-thinking on only after the last user
//     turn (the reasoning of earlier turns is dropped).
// R8  Tool calls render as "\n\n<｜DSML｜tool_calls>\n" + the calls joined by
//     "\n" + "\n</｜DSML｜tool_calls>", one call being
//     <｜DSML｜invoke name="NAME">\n{parameters joined by "\n"}\n</｜DSML｜invoke>.
// R9  The arguments (a JSON object text) become one parameter per key, in
//     order: <｜DSML｜parameter name="KEY" string="true">VALUE</｜DSML｜parameter>
//     for a string value (written as is), string="false" and the value's
//     JSON (R12) otherwise. Arguments that are not JSON become the single
//     string parameter "arguments" holding the text.
// R10 Tools turn drop-thinking off (all reasoning is kept, every user turn
//     followed by a reply opens <think> in thinking mode).
// R11 A developer message renders as <｜User｜>{content}, a turn of its own,
//     and counts as a user turn for R6/R7; in thinking mode with
//     drop-thinking on, developer messages before the last user turn are
//     dropped.
// R12 JSON is written as Python's json.dumps(ensure_ascii=False) writes it
//     (json_text.h): ", " and ": " separators, keys in their given order.
//
// Rendering to ids: each run of text between structural tokens is encoded
// by the tokenizer as one piece (special tokens written in the text, e.g.
// ｜DSML｜, are matched as such, as the reference tokenizes the whole
// rendered string), and every structural token (BOS, EOS, <｜User｜>,
// <｜Assistant｜>, <think>, </think>) is emitted by its id, looked up by
// content in the tokenizer, never hard-coded.
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

/// The DSML marker (a special token of the real tokenizer, written as text
/// in the prompt) and the R2 paragraph.
inline constexpr std::string_view kDsmlToken = "｜DSML｜";
extern const std::string_view kReasoningEffortMax;

enum class ChatRole { System, User, Assistant, Tool, Developer };

/// "system", "user", "assistant", "tool" or "developer".
const char *chatRoleName(ChatRole role);

/// A tool call of an assistant message (OpenAI's tool_calls[i]).
struct ChatToolCall {
  std::string id;
  std::string name;
  /// A JSON object as text (R9).
  std::string arguments;
};

/// One message of a conversation.
struct ChatMessage {
  ChatRole role = ChatRole::User;
  /// The text; for an assistant message, the answer (after </think>); for a
  /// tool message, the result.
  std::string content;
  /// Assistant messages only: the reasoning, without <think> and </think>.
  std::string reasoning;
  /// Assistant messages only.
  std::vector<ChatToolCall> toolCalls;
  /// Tool messages only: the id of the call this result answers (R5).
  std::string toolCallId;
};

enum class ChatMode {
  /// Non-thinking: every assistant turn starts with </think>.
  Chat,
  /// The reply to the last user message starts with <think>.
  Thinking,
};

enum class ReasoningEffort { Default, High, Max };

struct ChatEncodingOptions {
  ChatMode mode = ChatMode::Chat;
  /// Thinking mode: drop the reasoning of the turns before the last user
  /// message (the reference's default). Without it every kept reasoning is
  /// rendered as <think>{reasoning}</think>. Tools turn it off (R10).
  bool dropThinking = true;
  ReasoningEffort reasoningEffort = ReasoningEffort::Default;
  /// The tools, each the JSON text of an OpenAI function definition
  /// ({"name": ..., "description": ..., "parameters": ...}); re-written as
  /// R12 says, key order kept.
  std::vector<std::string> tools;
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
  /// role): invalid UTF-8 (with its byte offset), reasoning or tool calls on
  /// a message that is not the assistant's, tool-call arguments that are
  /// JSON but not an object; or the tool (by index) whose JSON is invalid.
  StatusOr<std::vector<int64_t>>
  encode(const std::vector<ChatMessage> &messages,
         const ChatEncodingOptions &options = {}) const;
  /// The same conversation as text, special tokens written as their content
  /// (what the reference's encode_messages returns).
  StatusOr<std::string> render(const std::vector<ChatMessage> &messages,
                               const ChatEncodingOptions &options = {}) const;
  /// Both at once; either pointer may be null.
  Status build(const std::vector<ChatMessage> &messages,
               const ChatEncodingOptions &options, std::string *text,
               std::vector<int64_t> *ids) const;

private:
  /// A piece of the rendered conversation: a special token, or text.
  struct Piece {
    int64_t special = -1;
    std::string content;
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
