// SPDX-License-Identifier: Apache-2.0
// The DeepSeek-V4 conversation format (chat_encoding.h has the rules).
#include "runtime/chat/chat_encoding.h"

#include "runtime/chat/json_text.h"

#include <algorithm>
#include <map>

namespace compressa {

// R2: the paragraph that reasoning_effort "max" puts after BOS.
const std::string_view kReasoningEffortMax =
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively "
    "decompose the problem to resolve the root cause, rigorously "
    "stress-testing your logic against all potential paths, edge cases, and "
    "adversarial scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting "
    "every intermediate step, considered alternative, and rejected "
    "hypothesis to ensure absolutely no assumption is left unchecked.\n\n";

const char *chatRoleName(ChatRole role) {
  switch (role) {
  case ChatRole::System:
    return "system";
  case ChatRole::User:
    return "user";
  case ChatRole::Assistant:
    return "assistant";
  case ChatRole::Tool:
    return "tool";
  case ChatRole::Developer:
    return "developer";
  }
  return "unknown";
}

std::optional<size_t> findInvalidUtf8(std::string_view text) {
  size_t i = 0, size = text.size();
  while (i < size) {
    unsigned char lead = static_cast<unsigned char>(text[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    size_t length;
    // The range of the second byte narrows for E0, ED, F0 and F4 so that
    // overlong forms, surrogates and code points past U+10FFFF are refused.
    unsigned char low = 0x80, high = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0)
        low = 0xA0;
      else if (lead == 0xED)
        high = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0)
        low = 0x90;
      else if (lead == 0xF4)
        high = 0x8F;
    } else {
      return i;
    }
    for (size_t k = 1; k < length; ++k) {
      if (i + k >= size)
        return i;
      unsigned char next = static_cast<unsigned char>(text[i + k]);
      unsigned char lo = k == 1 ? low : 0x80, hi = k == 1 ? high : 0xBF;
      if (next < lo || next > hi)
        return i;
    }
    i += length;
  }
  return std::nullopt;
}

namespace {

StatusOr<int64_t> lookUp(const Tokenizer &tokenizer, std::string_view content,
                         const char *purpose) {
  std::optional<int64_t> id = tokenizer.tokenId(content);
  if (!id)
    return COMPRESSA_ERROR(NotFound,
                           "the tokenizer has no token '%.*s' (%s)",
                           static_cast<int>(content.size()), content.data(),
                           purpose);
  if (*id < 0 || *id >= tokenizer.vocabSize())
    return COMPRESSA_ERROR(Internal,
                           "the tokenizer gives token '%.*s' the id %lld, "
                           "outside its vocabulary of %lld",
                           static_cast<int>(content.size()), content.data(),
                           static_cast<long long>(*id),
                           static_cast<long long>(tokenizer.vocabSize()));
  return *id;
}

Status checkUtf8(std::string_view text, const char *what, size_t index,
                 ChatRole role) {
  if (std::optional<size_t> offset = findInvalidUtf8(text))
    return COMPRESSA_ERROR(InvalidArgument,
                           "message %zu (%s): the %s is not valid UTF-8 "
                           "(byte offset %zu)",
                           index, chatRoleName(role), what, *offset);
  return okStatus();
}

} // namespace

StatusOr<std::vector<int64_t>> encodeCompletion(const Tokenizer &tokenizer,
                                                std::string_view text) {
  if (std::optional<size_t> offset = findInvalidUtf8(text))
    return COMPRESSA_ERROR(InvalidArgument,
                           "the prompt is not valid UTF-8 (byte offset %zu)",
                           *offset);
  COMPRESSA_ASSIGN_OR_RETURN(
      int64_t bos, lookUp(tokenizer, kBosToken, "the prompt starts with it"));
  std::vector<int64_t> ids{bos};
  if (!text.empty()) {
    COMPRESSA_ASSIGN_OR_RETURN(std::vector<int64_t> body,
                               tokenizer.encode(text));
    ids.insert(ids.end(), body.begin(), body.end());
  }
  return ids;
}

StatusOr<ChatEncoder> ChatEncoder::create(const Tokenizer &tokenizer) {
  const char *purpose = "the DeepSeek-V4 chat format needs it";
  ChatSpecialTokens ids;
  COMPRESSA_ASSIGN_OR_RETURN(ids.bos, lookUp(tokenizer, kBosToken, purpose));
  COMPRESSA_ASSIGN_OR_RETURN(ids.eos, lookUp(tokenizer, kEosToken, purpose));
  COMPRESSA_ASSIGN_OR_RETURN(ids.user, lookUp(tokenizer, kUserToken, purpose));
  COMPRESSA_ASSIGN_OR_RETURN(ids.assistant,
                             lookUp(tokenizer, kAssistantToken, purpose));
  COMPRESSA_ASSIGN_OR_RETURN(ids.thinkStart,
                             lookUp(tokenizer, kThinkStartToken, purpose));
  COMPRESSA_ASSIGN_OR_RETURN(ids.thinkEnd,
                             lookUp(tokenizer, kThinkEndToken, purpose));
  return ChatEncoder(tokenizer, ids);
}

namespace {

/// R3: the tools section, the text the model was trained on, with the
/// function definitions as JSON lines.
std::string toolsSection(const std::vector<std::string> &schemas) {
  std::string out =
      "## Tools\n\n"
      "You have access to a set of tools to help answer the user's question. "
      "You can invoke tools by writing a \"<｜DSML｜tool_calls>\" block like "
      "the following:\n\n"
      "<｜DSML｜tool_calls>\n"
      "<｜DSML｜invoke name=\"$TOOL_NAME\">\n"
      "<｜DSML｜parameter name=\"$PARAMETER_NAME\" "
      "string=\"true|false\">$PARAMETER_VALUE</｜DSML｜parameter>\n"
      "...\n"
      "</｜DSML｜invoke>\n"
      "<｜DSML｜invoke name=\"$TOOL_NAME2\">\n"
      "...\n"
      "</｜DSML｜invoke>\n"
      "</｜DSML｜tool_calls>\n\n"
      "String parameters should be specified as is and set `string=\"true\"`. "
      "For all other types (numbers, booleans, arrays, objects), pass the "
      "value in JSON format and set `string=\"false\"`.\n\n"
      "If thinking_mode is enabled (triggered by <think>), you MUST output "
      "your complete reasoning inside <think>...</think> BEFORE any tool "
      "calls or final response.\n\n"
      "Otherwise, output directly after </think> with tool calls or final "
      "response.\n\n"
      "### Available Tool Schemas\n\n";
  for (size_t i = 0; i < schemas.size(); ++i) {
    if (i)
      out += '\n';
    out += schemas[i];
  }
  out += "\n\nYou MUST strictly follow the above defined tool name and "
         "parameter schemas to invoke tool calls.\n";
  return out;
}

/// R8/R9: the DSML block of an assistant message's tool calls.
StatusOr<std::string> toolCallsBlock(const std::vector<ChatToolCall> &calls,
                                     size_t index) {
  std::string out = "\n\n<｜DSML｜tool_calls>\n";
  for (size_t c = 0; c < calls.size(); ++c) {
    const ChatToolCall &call = calls[c];
    if (c)
      out += '\n';
    out += "<｜DSML｜invoke name=\"" + call.name + "\">\n";
    // Like the reference, arguments that do not parse (or are beyond the
    // limits, where Python's json.loads would fail on recursion too) are
    // one string parameter.
    StatusOr<nlohmann::ordered_json> parsed =
        parseOrderedJson(call.arguments, "the arguments");
    nlohmann::ordered_json arguments =
        parsed.ok() ? std::move(parsed).value()
                    : nlohmann::ordered_json(nlohmann::ordered_json::value_t::discarded);
    if (arguments.is_discarded()) {
      arguments = nlohmann::ordered_json::object();
      arguments["arguments"] = call.arguments;
    } else if (!arguments.is_object()) {
      return COMPRESSA_ERROR(InvalidArgument,
                             "message %zu (assistant): tool call %zu ('%s'): "
                             "the arguments are JSON but not an object",
                             index, c, printable(call.name, 60).c_str());
    }
    bool first = true;
    for (const auto &item : arguments.items()) {
      if (!first)
        out += '\n';
      first = false;
      bool isString = item.value().is_string();
      out += "<｜DSML｜parameter name=\"" + item.key() + "\" string=\"" +
             (isString ? "true" : "false") + "\">";
      if (isString)
        out += item.value().get_ref<const std::string &>();
      else
        appendPythonJson(item.value(), out);
      out += "</｜DSML｜parameter>";
    }
    out += "\n</｜DSML｜invoke>";
  }
  out += "\n</｜DSML｜tool_calls>";
  return out;
}

/// A turn of the merged conversation (R4/R5): a user turn gathers the
/// consecutive user and tool messages.
struct Turn {
  ChatRole role;
  /// System, developer and assistant turns: the message.
  const ChatMessage *message = nullptr;
  /// User turns: the messages of its parts, in order.
  std::vector<const ChatMessage *> parts;
  /// The first system turn carries the tools (R3).
  bool tools = false;
};

bool isUserTurn(ChatRole role) {
  return role == ChatRole::User || role == ChatRole::Developer;
}

} // namespace

StatusOr<std::vector<ChatEncoder::Piece>>
ChatEncoder::pieces(const std::vector<ChatMessage> &messages,
                    const ChatEncodingOptions &options) const {
  bool thinking = options.mode == ChatMode::Thinking;
  size_t count = messages.size();
  for (size_t i = 0; i < count; ++i) {
    const ChatMessage &message = messages[i];
    COMPRESSA_RETURN_IF_ERROR(
        checkUtf8(message.content, "content", i, message.role));
    if (message.role != ChatRole::Assistant && !message.reasoning.empty())
      return COMPRESSA_ERROR(InvalidArgument,
                             "message %zu (%s) has reasoning; only assistant "
                             "messages have one",
                             i, chatRoleName(message.role));
    if (message.role != ChatRole::Assistant && !message.toolCalls.empty())
      return COMPRESSA_ERROR(InvalidArgument,
                             "message %zu (%s) has tool calls; only assistant "
                             "messages have them",
                             i, chatRoleName(message.role));
    COMPRESSA_RETURN_IF_ERROR(
        checkUtf8(message.reasoning, "reasoning", i, message.role));
    COMPRESSA_RETURN_IF_ERROR(
        checkUtf8(message.toolCallId, "tool_call_id", i, message.role));
    for (const ChatToolCall &call : message.toolCalls) {
      COMPRESSA_RETURN_IF_ERROR(
          checkUtf8(call.name, "tool call name", i, message.role));
      COMPRESSA_RETURN_IF_ERROR(
          checkUtf8(call.arguments, "tool call arguments", i, message.role));
      COMPRESSA_RETURN_IF_ERROR(
          checkUtf8(call.id, "tool call id", i, message.role));
    }
  }
  std::vector<std::string> schemas;
  for (size_t t = 0; t < options.tools.size(); ++t) {
    StatusOr<nlohmann::ordered_json> parsed =
        parseOrderedJson(options.tools[t], "the function definition");
    if (!parsed.ok())
      return parsed.status().withContext("tool %zu", t);
    const nlohmann::ordered_json &schema = *parsed;
    if (!schema.is_object())
      return COMPRESSA_ERROR(InvalidArgument,
                             "tool %zu: the function definition is not a "
                             "JSON object",
                             t);
    if (std::optional<size_t> offset = findInvalidUtf8(options.tools[t]))
      return COMPRESSA_ERROR(InvalidArgument,
                             "tool %zu: the function definition is not valid "
                             "UTF-8 (byte offset %zu)",
                             t, *offset);
    schemas.push_back(pythonJson(schema));
  }

  // R4/R5: merge user and tool messages into user turns.
  std::vector<Turn> turns;
  for (const ChatMessage &message : messages) {
    bool part = message.role == ChatRole::User || message.role == ChatRole::Tool;
    if (part && !turns.empty() && turns.back().role == ChatRole::User) {
      turns.back().parts.push_back(&message);
      continue;
    }
    Turn turn{part ? ChatRole::User : message.role};
    if (part)
      turn.parts.push_back(&message);
    else
      turn.message = &message;
    turns.push_back(std::move(turn));
  }
  // R3: the tools go with the first message when it is a system message.
  static const ChatMessage kEmptySystem{ChatRole::System, "", ""};
  if (!schemas.empty()) {
    if (turns.empty() || turns.front().role != ChatRole::System)
      turns.insert(turns.begin(), Turn{ChatRole::System, &kEmptySystem});
    turns.front().tools = true;
  }
  // R5: tool results in the order of the calls they answer.
  std::map<std::string, size_t> callOrder;
  for (Turn &turn : turns) {
    if (turn.role == ChatRole::Assistant && !turn.message->toolCalls.empty()) {
      callOrder.clear();
      for (size_t c = 0; c < turn.message->toolCalls.size(); ++c)
        if (!turn.message->toolCalls[c].id.empty())
          callOrder.emplace(turn.message->toolCalls[c].id, c);
      continue;
    }
    if (turn.role != ChatRole::User || callOrder.empty())
      continue;
    std::vector<const ChatMessage *> results;
    for (const ChatMessage *part : turn.parts)
      if (part->role == ChatRole::Tool)
        results.push_back(part);
    // A stable sort by the call's position: (rank, position) pairs.
    std::vector<std::pair<size_t, size_t>> order;
    for (size_t r = 0; r < results.size(); ++r) {
      auto it = callOrder.find(results[r]->toolCallId);
      order.push_back({it == callOrder.end() ? size_t(0) : it->second, r});
    }
    std::sort(order.begin(), order.end());
    size_t next = 0;
    for (const ChatMessage *&part : turn.parts)
      if (part->role == ChatRole::Tool)
        part = results[order[next++].second];
  }
  // R10, R11: tools keep all reasoning; dropping removes the developer
  // messages before the last user turn.
  bool dropThinking = options.dropThinking && schemas.empty();
  auto lastUserTurn = [&]() -> std::optional<size_t> {
    std::optional<size_t> last;
    for (size_t i = 0; i < turns.size(); ++i)
      if (isUserTurn(turns[i].role))
        last = i;
    return last;
  };
  if (thinking && dropThinking) {
    std::optional<size_t> last = lastUserTurn();
    std::vector<Turn> kept;
    for (size_t i = 0; i < turns.size(); ++i)
      if (turns[i].role != ChatRole::Developer || (last && i >= *last))
        kept.push_back(std::move(turns[i]));
    turns = std::move(kept);
  }
  std::optional<size_t> lastUser = lastUserTurn();

  std::vector<Piece> out;
  auto special = [&](int64_t id, std::string_view content) {
    out.push_back({id, std::string(content)});
  };
  // Runs of text between structural tokens are one piece (one encode call),
  // as the reference tokenizes them together.
  auto text = [&](std::string_view content) {
    if (content.empty())
      return;
    if (!out.empty() && out.back().special < 0)
      out.back().content.append(content);
    else
      out.push_back({-1, std::string(content)});
  };
  special(ids.bos, kBosToken);
  for (size_t i = 0; i < turns.size(); ++i) {
    const Turn &turn = turns[i];
    // R2.
    if (i == 0 && thinking &&
        options.reasoningEffort == ReasoningEffort::Max)
      text(kReasoningEffortMax);
    switch (turn.role) {
    case ChatRole::System:
      text(turn.message->content);
      if (turn.tools) {
        text("\n\n");
        text(toolsSection(schemas));
      }
      break;
    case ChatRole::Developer:
      special(ids.user, kUserToken);
      text(turn.message->content);
      break;
    case ChatRole::User:
    case ChatRole::Tool: {
      special(ids.user, kUserToken);
      for (size_t p = 0; p < turn.parts.size(); ++p) {
        if (p)
          text("\n\n");
        const ChatMessage &part = *turn.parts[p];
        if (part.role == ChatRole::Tool) {
          text("<tool_result>");
          text(part.content);
          text("</tool_result>");
        } else {
          text(part.content);
        }
      }
      break;
    }
    case ChatRole::Assistant: {
      const ChatMessage &message = *turn.message;
      // R7.
      if (thinking && (!dropThinking || !lastUser || i > *lastUser)) {
        text(message.reasoning);
        special(ids.thinkEnd, kThinkEndToken);
      }
      text(message.content);
      if (!message.toolCalls.empty()) {
        size_t index = static_cast<size_t>(&message - messages.data());
        COMPRESSA_ASSIGN_OR_RETURN(std::string block,
                                   toolCallsBlock(message.toolCalls, index));
        text(block);
      }
      special(ids.eos, kEosToken);
      break;
    }
    }
    // R6.
    bool replyFollows =
        i + 1 == turns.size() || turns[i + 1].role == ChatRole::Assistant;
    if (!replyFollows || !isUserTurn(turn.role))
      continue;
    special(ids.assistant, kAssistantToken);
    bool opensReasoning =
        thinking && (!dropThinking || (lastUser && i >= *lastUser));
    if (opensReasoning)
      special(ids.thinkStart, kThinkStartToken);
    else
      special(ids.thinkEnd, kThinkEndToken);
  }
  return out;
}

Status ChatEncoder::build(const std::vector<ChatMessage> &messages,
                          const ChatEncodingOptions &options, std::string *text,
                          std::vector<int64_t> *out) const {
  COMPRESSA_ASSIGN_OR_RETURN(std::vector<Piece> parts,
                             pieces(messages, options));
  for (const Piece &piece : parts) {
    if (text)
      text->append(piece.content);
    if (!out)
      continue;
    if (piece.special >= 0) {
      out->push_back(piece.special);
      continue;
    }
    COMPRESSA_ASSIGN_OR_RETURN(std::vector<int64_t> body,
                               tok->encode(piece.content));
    out->insert(out->end(), body.begin(), body.end());
  }
  return okStatus();
}

StatusOr<std::vector<int64_t>>
ChatEncoder::encode(const std::vector<ChatMessage> &messages,
                    const ChatEncodingOptions &options) const {
  std::vector<int64_t> out;
  COMPRESSA_RETURN_IF_ERROR(build(messages, options, nullptr, &out));
  return out;
}

StatusOr<std::string>
ChatEncoder::render(const std::vector<ChatMessage> &messages,
                    const ChatEncodingOptions &options) const {
  std::string out;
  COMPRESSA_RETURN_IF_ERROR(build(messages, options, &out, nullptr));
  return out;
}

} // namespace compressa
