// SPDX-License-Identifier: Apache-2.0
// Tests of the request body -> prompt step: the fields read, and the errors
// that name the field.
#include "runtime/chat/chat_request.h"

#include <gtest/gtest.h>

#include <memory>

namespace compressa {
namespace {

/// Reads a request body; the test fails on an error.
ChatRequest read(std::string_view body) {
  StatusOr<nlohmann::ordered_json> json = parseRequestJson(body);
  EXPECT_TRUE(json.ok()) << json.status().toString();
  if (!json.ok())
    return {};
  StatusOr<ChatRequest> request = parseChatRequest(*json);
  EXPECT_TRUE(request.ok()) << request.status().toString();
  return request.ok() ? std::move(request).value() : ChatRequest{};
}

/// The error message of a bad body.
std::string error(std::string_view body) {
  StatusOr<nlohmann::ordered_json> json = parseRequestJson(body);
  if (!json.ok())
    return json.status().message();
  StatusOr<ChatRequest> request = parseChatRequest(*json);
  if (request.ok())
    return "<no error>";
  EXPECT_EQ(request.status().code(), StatusCode::InvalidArgument);
  return request.status().message();
}

TEST(ChatRequest, MessagesOfEveryKind) {
  ChatRequest request = read(R"({
    "model": "x", "max_tokens": 5,
    "messages": [
      {"role": "system", "content": "S"},
      {"role": "developer", "content": [{"type": "text", "text": "D1"},
                                        {"type": "text", "text": "D2"}]},
      {"role": "user", "content": "Q"},
      {"role": "assistant", "content": null, "reasoning_content": "R",
       "tool_calls": [{"id": "c1", "type": "function",
                       "function": {"name": "f", "arguments": "{\"a\": 1}"}},
                      {"id": "c2", "type": "function",
                       "function": {"name": "g", "arguments": {"b": [1, 2]}}}]},
      {"role": "tool", "tool_call_id": "c1",
       "content": [{"type": "text", "text": "T1"}, {"type": "text", "text": "T2"}]}
    ]})");
  ASSERT_EQ(request.messages.size(), 5u);
  EXPECT_EQ(request.messages[0].role, ChatRole::System);
  EXPECT_EQ(request.messages[0].content, "S");
  // Text parts join with "\n", a tool result's with "\n\n".
  EXPECT_EQ(request.messages[1].role, ChatRole::Developer);
  EXPECT_EQ(request.messages[1].content, "D1\nD2");
  EXPECT_EQ(request.messages[2].content, "Q");
  const ChatMessage &assistant = request.messages[3];
  EXPECT_EQ(assistant.content, "");
  EXPECT_EQ(assistant.reasoning, "R");
  ASSERT_EQ(assistant.toolCalls.size(), 2u);
  EXPECT_EQ(assistant.toolCalls[0].id, "c1");
  EXPECT_EQ(assistant.toolCalls[0].name, "f");
  EXPECT_EQ(assistant.toolCalls[0].arguments, R"({"a": 1})");
  // Arguments given as an object are written as JSON text.
  EXPECT_EQ(assistant.toolCalls[1].arguments, R"({"b": [1, 2]})");
  EXPECT_EQ(request.messages[4].role, ChatRole::Tool);
  EXPECT_EQ(request.messages[4].toolCallId, "c1");
  EXPECT_EQ(request.messages[4].content, "T1\n\nT2");
  // Defaults: chat mode, drop-thinking, no effort, no tools.
  EXPECT_EQ(request.options.mode, ChatMode::Chat);
  EXPECT_TRUE(request.options.dropThinking);
  EXPECT_EQ(request.options.reasoningEffort, ReasoningEffort::Default);
  EXPECT_TRUE(request.options.tools.empty());
}

TEST(ChatRequest, ToolsKeepTheirKeyOrder) {
  ChatRequest request = read(R"({"messages": [{"role": "user", "content": "q"}],
    "tools": [{"type": "function", "function": {"name": "f",
      "parameters": {"type": "object", "properties": {"z": {}, "a": {}}},
      "description": "d"}}]})");
  ASSERT_EQ(request.options.tools.size(), 1u);
  EXPECT_EQ(request.options.tools[0],
            R"({"name": "f", "parameters": {"type": "object", "properties": )"
            R"({"z": {}, "a": {}}}, "description": "d"})");
}

TEST(ChatRequest, ChatTemplateKwargs) {
  ChatRequest request = read(R"({"messages": [{"role": "user", "content": "q"}],
    "chat_template_kwargs": {"thinking": true, "reasoning_effort": "max",
                             "drop_thinking": false, "other": 1}})");
  EXPECT_EQ(request.options.mode, ChatMode::Thinking);
  EXPECT_EQ(request.options.reasoningEffort, ReasoningEffort::Max);
  EXPECT_FALSE(request.options.dropThinking);
  request = read(R"({"messages": [{"role": "user", "content": "q"}],
    "chat_template_kwargs": {"enable_thinking": true, "reasoning_effort": "high"}})");
  EXPECT_EQ(request.options.mode, ChatMode::Thinking);
  EXPECT_EQ(request.options.reasoningEffort, ReasoningEffort::High);
}

TEST(ChatRequest, ErrorsNameTheField) {
  struct Case {
    const char *body;
    const char *message;
  } cases[] = {
      {R"({"messages": )",
       "the request body is not valid JSON: [json.exception.parse_error.101] "
       "parse error at line 1, column 14: syntax error while parsing value - "
       "unexpected end of input; expected '[', '{', or a literal"},
      {R"([1])", "the request body: expected a JSON object, found an array"},
      {R"({})", "messages: missing (a non-empty array of messages)"},
      {R"({"messages": {}})",
       "messages: expected a non-empty array of messages, found an object"},
      {R"({"messages": []})", "messages: expected a non-empty array, found []"},
      {R"({"messages": ["hi"]})",
       "messages[0]: expected an object, found a string"},
      {R"({"messages": [{"content": "x"}]})",
       "messages[0].role: missing (a string)"},
      {R"({"messages": [{"role": "robot", "content": "x"}]})",
       "messages[0].role: expected system, user, assistant, tool or "
       "developer, found 'robot'"},
      {R"({"messages": [{"role": "user", "content": 5}]})",
       "messages[0].content: expected a string, null or an array of text "
       "parts, found a number"},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
       "messages[0].content[0].type: only \"text\" parts are supported, "
       "found 'image_url'"},
      {R"({"messages": [{"role": "user", "content": [{"type": "text"}]}]})",
       "messages[0].content[0].text: missing (a string)"},
      {R"({"messages": [{"role": "user", "content": "q", "reasoning_content": "r"}]})",
       "messages[0].reasoning_content: only assistant messages have one"},
      {R"({"messages": [{"role": "assistant", "reasoning_content": 1}]})",
       "messages[0].reasoning_content: expected a string, found a number"},
      {R"({"messages": [{"role": "assistant", "tool_calls": {}}]})",
       "messages[0].tool_calls: expected an array, found an object"},
      {R"({"messages": [{"role": "assistant", "tool_calls": [{"type": "function"}]}]})",
       "messages[0].tool_calls[0].function: missing (an object)"},
      {R"({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": 3}}]}]})",
       "messages[0].tool_calls[0].function.name: expected a string, found a "
       "number"},
      {R"({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": [1]}}]}]})",
       "messages[0].tool_calls[0].function.arguments: expected a JSON object "
       "as a string, or an object, found an array"},
      {R"({"messages": [{"role": "assistant", "tool_calls": [{"type": "web", "function": {"name": "f"}}]}]})",
       "messages[0].tool_calls[0].type: expected \"function\", found 'web'"},
      {R"({"messages": [{"role": "tool", "tool_call_id": 7}]})",
       "messages[0].tool_call_id: expected a string, found a number"},
      {R"({"messages": [{"role": "user", "content": "q", "tool_calls": [{"function": {"name": "f"}}]}]})",
       "messages[0].tool_calls: only assistant messages have them"},
      {R"({"messages": [{"role": "user", "content": "q"}], "tools": {}})",
       "tools: expected an array, found an object"},
      {R"({"messages": [{"role": "user", "content": "q"}], "tools": [{"type": "function"}]})",
       "tools[0].function: missing (an object)"},
      {R"({"messages": [{"role": "user", "content": "q"}], "tools": [{"function": {"description": "d"}}]})",
       "tools[0].function.name: missing (a string)"},
      {R"({"messages": [{"role": "user", "content": "q"}], "chat_template_kwargs": []})",
       "chat_template_kwargs: expected an object, found an array"},
      {R"({"messages": [{"role": "user", "content": "q"}], "chat_template_kwargs": {"thinking": "yes"}})",
       "chat_template_kwargs.thinking: expected a boolean, found a string"},
      {R"({"messages": [{"role": "user", "content": "q"}], "chat_template_kwargs": {"reasoning_effort": "low"}})",
       "chat_template_kwargs.reasoning_effort: expected \"high\" or \"max\", "
       "found 'low'"},
      {R"({"messages": [{"role": "user", "content": "q"}], "chat_template_kwargs": {"reasoning_effort": 1}})",
       "chat_template_kwargs.reasoning_effort: expected \"high\" or \"max\", "
       "found a number"},
      {R"({"messages": [{"role": "user", "content": "q"}], "chat_template_kwargs": {"drop_thinking": 0}})",
       "chat_template_kwargs.drop_thinking: expected a boolean, found a number"},
  };
  for (const Case &c : cases)
    EXPECT_EQ(error(c.body), c.message) << c.body;
}

// ordered_json (which keeps the order of the tools' keys) compares every new
// key of an object with the ones before it, and the JSON writers recurse per
// level: bodies beyond the limits are refused before that, quickly.
TEST(ChatRequest, HostileJsonShapesAreRefused) {
  std::string deep = R"({"messages": [{"role": "user", "content": "q"}], "x": )" +
                     std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_EQ(error(deep), "the request body nests deeper than 512 levels");
  std::string wide = R"({"messages": [{"role": "user", "content": "q"}], "x": {)";
  for (int i = 0; i < 200000; ++i)
    wide += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":0";
  wide += "}}";
  EXPECT_EQ(error(wide).rfind("the request body has too many keys in its "
                              "objects (an object of about 10000 keys",
                              0),
            0u)
      << error(wide);
  // Within the limits: 500 levels and an object of 5000 keys.
  std::string fine = R"({"messages": [{"role": "user", "content": "q"}], "x": )" +
                     std::string(500, '[') + std::string(500, ']') + ", \"y\": {";
  for (int i = 0; i < 5000; ++i)
    fine += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":0";
  fine += "}}";
  EXPECT_EQ(error(fine), "<no error>");
}

TEST(ChatRequest, NulByteIsAJsonError) {
  // nlohmann's lexer would end the input at the NUL and accept the body.
  std::string body = R"({"messages": [{"role": "user", "content": "q"}]})";
  body += std::string("\0junk", 5);
  EXPECT_EQ(error(body),
            "the request body is not valid JSON: a NUL byte at offset 48");
}

TEST(ChatRequest, InvalidUtf8InTheBodyIsAJsonError) {
  std::string body = "{\"messages\": [{\"role\": \"user\", \"content\": \"a\xFF\"}]}";
  EXPECT_NE(error(body).find("the request body is not valid JSON"),
            std::string::npos);
}

} // namespace
} // namespace compressa
