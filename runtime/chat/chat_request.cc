// SPDX-License-Identifier: Apache-2.0
// OpenAI chat request body -> DeepSeek-V4 prompt (chat_request.h).
#include "runtime/chat/chat_request.h"

#include "runtime/chat/json_text.h"

namespace compressa {

namespace {

using Json = nlohmann::ordered_json;

const char *kindName(const Json &value) {
  switch (value.type()) {
  case Json::value_t::null:
    return "null";
  case Json::value_t::boolean:
    return "a boolean";
  case Json::value_t::number_integer:
  case Json::value_t::number_unsigned:
  case Json::value_t::number_float:
    return "a number";
  case Json::value_t::string:
    return "a string";
  case Json::value_t::array:
    return "an array";
  case Json::value_t::object:
    return "an object";
  default:
    return "an unknown value";
  }
}

Status wrongType(const std::string &path, const char *expected,
                 const Json &found) {
  return COMPRESSA_ERROR(InvalidArgument, "%s: expected %s, found %s",
                         path.c_str(), expected, kindName(found));
}

/// The member `key` of `object`, or nullptr when absent or null.
const Json *member(const Json &object, const char *key) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null())
    return nullptr;
  return &*it;
}

StatusOr<std::string> stringField(const Json &object, const char *key,
                                  const std::string &path, bool required) {
  const Json *value = member(object, key);
  if (!value) {
    if (required)
      return COMPRESSA_ERROR(InvalidArgument, "%s.%s: missing (a string)",
                             path.c_str(), key);
    return std::string();
  }
  if (!value->is_string())
    return wrongType(path + "." + key, "a string", *value);
  return value->get<std::string>();
}

/// content: a string, null, or text parts joined by `joiner`.
StatusOr<std::string> contentText(const Json &message, const std::string &path,
                                  const char *joiner) {
  const Json *content = member(message, "content");
  if (!content)
    return std::string();
  if (content->is_string())
    return content->get<std::string>();
  if (!content->is_array())
    return wrongType(path + ".content",
                     "a string, null or an array of text parts", *content);
  std::string out;
  for (size_t p = 0; p < content->size(); ++p) {
    const Json &part = (*content)[p];
    std::string partPath = path + ".content[" + std::to_string(p) + "]";
    if (!part.is_object())
      return wrongType(partPath, "an object {\"type\": \"text\", \"text\": ...}",
                       part);
    COMPRESSA_ASSIGN_OR_RETURN(std::string type,
                               stringField(part, "type", partPath, true));
    if (type != "text")
      return COMPRESSA_ERROR(InvalidArgument,
                             "%s.type: only \"text\" parts are supported, "
                             "found '%s'",
                             partPath.c_str(), printable(type, 40).c_str());
    COMPRESSA_ASSIGN_OR_RETURN(std::string text,
                               stringField(part, "text", partPath, true));
    if (p)
      out += joiner;
    out += text;
  }
  return out;
}

StatusOr<ChatRole> roleOf(const Json &message, const std::string &path) {
  COMPRESSA_ASSIGN_OR_RETURN(std::string role,
                             stringField(message, "role", path, true));
  if (role == "system")
    return ChatRole::System;
  if (role == "user")
    return ChatRole::User;
  if (role == "assistant")
    return ChatRole::Assistant;
  if (role == "tool")
    return ChatRole::Tool;
  if (role == "developer")
    return ChatRole::Developer;
  return COMPRESSA_ERROR(InvalidArgument,
                         "%s.role: expected system, user, assistant, tool or "
                         "developer, found '%s'",
                         path.c_str(), printable(role, 40).c_str());
}

StatusOr<std::vector<ChatToolCall>> toolCallsOf(const Json &message,
                                                const std::string &path) {
  std::vector<ChatToolCall> calls;
  const Json *list = member(message, "tool_calls");
  if (!list)
    return calls;
  std::string listPath = path + ".tool_calls";
  if (!list->is_array())
    return wrongType(listPath, "an array", *list);
  for (size_t c = 0; c < list->size(); ++c) {
    const Json &call = (*list)[c];
    std::string callPath = listPath + "[" + std::to_string(c) + "]";
    if (!call.is_object())
      return wrongType(callPath, "an object", call);
    COMPRESSA_ASSIGN_OR_RETURN(std::string type,
                               stringField(call, "type", callPath, false));
    if (!type.empty() && type != "function")
      return COMPRESSA_ERROR(InvalidArgument,
                             "%s.type: expected \"function\", found '%s'",
                             callPath.c_str(), printable(type, 40).c_str());
    ChatToolCall out;
    COMPRESSA_ASSIGN_OR_RETURN(out.id, stringField(call, "id", callPath, false));
    const Json *function = member(call, "function");
    std::string functionPath = callPath + ".function";
    if (!function)
      return COMPRESSA_ERROR(InvalidArgument, "%s: missing (an object)",
                             functionPath.c_str());
    if (!function->is_object())
      return wrongType(functionPath, "an object", *function);
    COMPRESSA_ASSIGN_OR_RETURN(out.name,
                               stringField(*function, "name", functionPath,
                                           true));
    const Json *arguments = member(*function, "arguments");
    if (!arguments) {
      out.arguments = "{}";
    } else if (arguments->is_string()) {
      out.arguments = arguments->get<std::string>();
    } else if (arguments->is_object()) {
      // Some clients send the object itself; its JSON is the same call.
      out.arguments = pythonJson(*arguments);
    } else {
      return wrongType(functionPath + ".arguments",
                       "a JSON object as a string, or an object", *arguments);
    }
    calls.push_back(std::move(out));
  }
  return calls;
}

} // namespace

StatusOr<nlohmann::ordered_json> parseRequestJson(std::string_view body) {
  return parseOrderedJson(body, "the request body");
}

StatusOr<ChatRequest> parseChatRequest(const nlohmann::ordered_json &body) {
  if (!body.is_object())
    return wrongType("the request body", "a JSON object", body);
  ChatRequest request;
  const Json *messages = member(body, "messages");
  if (!messages)
    return COMPRESSA_ERROR(InvalidArgument,
                           "messages: missing (a non-empty array of "
                           "messages)");
  if (!messages->is_array())
    return wrongType("messages", "a non-empty array of messages", *messages);
  if (messages->empty())
    return COMPRESSA_ERROR(InvalidArgument,
                           "messages: expected a non-empty array, found []");
  for (size_t i = 0; i < messages->size(); ++i) {
    const Json &message = (*messages)[i];
    std::string path = "messages[" + std::to_string(i) + "]";
    if (!message.is_object())
      return wrongType(path, "an object", message);
    ChatMessage out;
    COMPRESSA_ASSIGN_OR_RETURN(out.role, roleOf(message, path));
    COMPRESSA_ASSIGN_OR_RETURN(
        out.content,
        contentText(message, path, out.role == ChatRole::Tool ? "\n\n" : "\n"));
    COMPRESSA_ASSIGN_OR_RETURN(
        out.reasoning, stringField(message, "reasoning_content", path, false));
    COMPRESSA_ASSIGN_OR_RETURN(out.toolCalls, toolCallsOf(message, path));
    COMPRESSA_ASSIGN_OR_RETURN(
        out.toolCallId, stringField(message, "tool_call_id", path, false));
    // The encoder's checks name the message by index and role; the JSON
    // path is what the client sees.
    if (out.role != ChatRole::Assistant && !out.reasoning.empty())
      return COMPRESSA_ERROR(InvalidArgument,
                             "%s.reasoning_content: only assistant messages "
                             "have one",
                             path.c_str());
    if (out.role != ChatRole::Assistant && !out.toolCalls.empty())
      return COMPRESSA_ERROR(InvalidArgument,
                             "%s.tool_calls: only assistant messages have "
                             "them",
                             path.c_str());
    request.messages.push_back(std::move(out));
  }

  if (const Json *tools = member(body, "tools")) {
    if (!tools->is_array())
      return wrongType("tools", "an array", *tools);
    for (size_t t = 0; t < tools->size(); ++t) {
      const Json &tool = (*tools)[t];
      std::string path = "tools[" + std::to_string(t) + "]";
      if (!tool.is_object())
        return wrongType(path, "an object", tool);
      COMPRESSA_ASSIGN_OR_RETURN(std::string type,
                                 stringField(tool, "type", path, false));
      if (!type.empty() && type != "function")
        return COMPRESSA_ERROR(InvalidArgument,
                               "%s.type: expected \"function\", found '%s'",
                               path.c_str(), printable(type, 40).c_str());
      const Json *function = member(tool, "function");
      if (!function)
        return COMPRESSA_ERROR(InvalidArgument,
                               "%s.function: missing (an object)",
                               path.c_str());
      if (!function->is_object())
        return wrongType(path + ".function", "an object", *function);
      COMPRESSA_RETURN_IF_ERROR(
          stringField(*function, "name", path + ".function", true).status());
      request.options.tools.push_back(pythonJson(*function));
    }
  }

  if (const Json *kwargs = member(body, "chat_template_kwargs")) {
    if (!kwargs->is_object())
      return wrongType("chat_template_kwargs", "an object", *kwargs);
    for (const char *key : {"thinking", "enable_thinking"}) {
      if (const Json *thinking = member(*kwargs, key)) {
        if (!thinking->is_boolean())
          return wrongType(std::string("chat_template_kwargs.") + key,
                           "a boolean", *thinking);
        request.options.mode =
            thinking->get<bool>() ? ChatMode::Thinking : ChatMode::Chat;
      }
    }
    if (const Json *drop = member(*kwargs, "drop_thinking")) {
      if (!drop->is_boolean())
        return wrongType("chat_template_kwargs.drop_thinking", "a boolean",
                         *drop);
      request.options.dropThinking = drop->get<bool>();
    }
    if (const Json *effort = member(*kwargs, "reasoning_effort")) {
      if (!effort->is_string())
        return wrongType("chat_template_kwargs.reasoning_effort",
                         "\"high\" or \"max\"", *effort);
      std::string value = effort->get<std::string>();
      if (value == "high")
        request.options.reasoningEffort = ReasoningEffort::High;
      else if (value == "max")
        request.options.reasoningEffort = ReasoningEffort::Max;
      else
        return COMPRESSA_ERROR(InvalidArgument,
                               "chat_template_kwargs.reasoning_effort: "
                               "expected \"high\" or \"max\", found '%s'",
                               printable(value, 40).c_str());
    }
  }
  return request;
}

StatusOr<ChatPrompt> buildChatPrompt(const ChatEncoder &encoder,
                                     const nlohmann::ordered_json &body) {
  COMPRESSA_ASSIGN_OR_RETURN(ChatRequest request, parseChatRequest(body));
  ChatPrompt prompt;
  prompt.thinking = request.options.mode == ChatMode::Thinking;
  prompt.hasTools = !request.options.tools.empty();
  COMPRESSA_RETURN_IF_ERROR(encoder.build(request.messages, request.options,
                                          &prompt.text, &prompt.ids));
  return prompt;
}

StatusOr<ChatPrompt> buildChatPrompt(const ChatEncoder &encoder,
                                     std::string_view body) {
  COMPRESSA_ASSIGN_OR_RETURN(nlohmann::ordered_json json,
                             parseRequestJson(body));
  return buildChatPrompt(encoder, json);
}

} // namespace compressa
