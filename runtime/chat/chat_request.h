//===- chat_request.h - OpenAI chat request body -> prompt ---------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// The prompt of an OpenAI-style chat completion request, as compressa-serve
// builds it and `compressa-tokenize TOKENIZER.json --chat` prints it. Fields
// read from the body (everything else, e.g. model or max_tokens, is the
// caller's):
//
//   messages  (required, non-empty array) each {role, content, ...}:
//     role               "system" | "user" | "assistant" | "tool" | "developer"
//     content            a string, null, or an array of {"type": "text",
//                        "text": ...} parts (joined by "\n"; for a tool
//                        message by "\n\n", as the reference joins a tool
//                        result's blocks)
//     reasoning_content  assistant: the reasoning (string or null)
//     tool_calls         assistant: [{id, type: "function", function: {name,
//                        arguments}}], arguments a JSON text or an object
//     tool_call_id       tool: the call it answers
//   tools     (optional) [{type: "function", function: {name, description,
//             parameters}}]
//   chat_template_kwargs (optional) {
//     thinking: bool (default false: chat mode; enable_thinking is a synonym),
//     reasoning_effort: "high" | "max" (thinking mode only; default none),
//     drop_thinking: bool (default true) }
//
// chat_encoding.h has the format. Errors are InvalidArgument naming the field
// by its JSON path (e.g. "messages[2].tool_calls[0].function.name: expected
// a string, found number"). Parse the body with ordered_json: the order of
// the keys of the tools' JSON is part of the prompt.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_RUNTIME_CHAT_CHAT_REQUEST_H
#define COMPRESSA_RUNTIME_CHAT_CHAT_REQUEST_H

#include "runtime/base/status.h"
#include "runtime/chat/chat_encoding.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace compressa {

/// The conversation and the encoding options of a request body.
struct ChatRequest {
  std::vector<ChatMessage> messages;
  ChatEncodingOptions options;
};

/// Parses a request body; the error names the line and column.
StatusOr<nlohmann::ordered_json> parseRequestJson(std::string_view body);

/// Reads messages, tools and chat_template_kwargs of `body`.
StatusOr<ChatRequest> parseChatRequest(const nlohmann::ordered_json &body);

/// The prompt of a request.
struct ChatPrompt {
  /// The rendered prompt (special tokens as their text).
  std::string text;
  std::vector<int64_t> ids;
  /// Thinking mode: the prompt ends with <think> and the reply starts with
  /// reasoning (ReplyParserOptions::thinking).
  bool thinking = false;
  /// The request has tools.
  bool hasTools = false;
};

StatusOr<ChatPrompt> buildChatPrompt(const ChatEncoder &encoder,
                                     const nlohmann::ordered_json &body);
/// The same from the body's text (parseRequestJson first).
StatusOr<ChatPrompt> buildChatPrompt(const ChatEncoder &encoder,
                                     std::string_view body);

} // namespace compressa

#endif // COMPRESSA_RUNTIME_CHAT_CHAT_REQUEST_H
