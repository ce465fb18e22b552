// SPDX-License-Identifier: Apache-2.0
// Tests of the DeepSeek-V4 conversation format. Most use a small fake
// tokenizer whose ids can be checked by hand: the special tokens are
// 0 BOS, 1 EOS, 2 <｜User｜>, 3 <｜Assistant｜>, 4 <think>, 5 </think>, and
// every other byte b of the text is the id 100 + b. The last tests run the
// real tokenizer models/tokenizers/tiny-768.json when it is present.
#include "runtime/chat/chat_encoding.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace compressa {
namespace {

constexpr int64_t kBos = 0, kEos = 1, kUser = 2, kAssistant = 3, kThink = 4,
                  kUnthink = 5;

/// Special tokens matched first, then one id per byte.
class FakeTokenizer : public Tokenizer {
public:
  explicit FakeTokenizer(std::vector<std::string> missing = {}) {
    std::vector<std::string_view> all = {kBosToken,       kEosToken,
                                         kUserToken,      kAssistantToken,
                                         kThinkStartToken, kThinkEndToken};
    for (size_t id = 0; id < all.size(); ++id) {
      std::string content(all[id]);
      bool drop = false;
      for (const std::string &m : missing)
        drop |= m == content;
      if (!drop)
        specials[content] = static_cast<int64_t>(id);
    }
  }

  StatusOr<std::vector<int64_t>> encode(std::string_view text) const override {
    ++encodeCalls;
    std::vector<int64_t> ids;
    size_t i = 0;
    while (i < text.size()) {
      bool matched = false;
      for (const auto &[content, id] : specials) {
        if (text.compare(i, content.size(), content) == 0) {
          ids.push_back(id);
          i += content.size();
          matched = true;
          break;
        }
      }
      if (!matched)
        ids.push_back(100 + static_cast<unsigned char>(text[i++]));
    }
    return ids;
  }
  StatusOr<std::string> decode(const int64_t *ids,
                               size_t count) const override {
    std::string out;
    for (size_t i = 0; i < count; ++i) {
      COMPRESSA_ASSIGN_OR_RETURN(std::string bytes, tokenBytes(ids[i]));
      out += bytes;
    }
    return out;
  }
  StatusOr<std::string> tokenBytes(int64_t id) const override {
    for (const auto &[content, special] : specials)
      if (special == id)
        return content;
    if (id >= 100 && id < 356)
      return std::string(1, static_cast<char>(id - 100));
    return COMPRESSA_ERROR(OutOfRange, "id %lld", static_cast<long long>(id));
  }
  std::optional<int64_t> tokenId(std::string_view content) const override {
    auto it = specials.find(std::string(content));
    if (it == specials.end())
      return std::nullopt;
    return it->second;
  }
  int64_t vocabSize() const override { return 356; }

  mutable int encodeCalls = 0;

private:
  std::map<std::string, int64_t> specials;
};

/// The fake ids of `text`'s bytes.
std::vector<int64_t> bytes(std::string_view text) {
  std::vector<int64_t> ids;
  for (char c : text)
    ids.push_back(100 + static_cast<unsigned char>(c));
  return ids;
}

/// Concatenates id lists.
std::vector<int64_t> cat(std::initializer_list<std::vector<int64_t>> parts) {
  std::vector<int64_t> out;
  for (const std::vector<int64_t> &part : parts)
    out.insert(out.end(), part.begin(), part.end());
  return out;
}

ChatMessage system(std::string text) {
  return {ChatRole::System, std::move(text), ""};
}
ChatMessage user(std::string text) {
  return {ChatRole::User, std::move(text), ""};
}
ChatMessage assistant(std::string answer, std::string reasoning = "") {
  return {ChatRole::Assistant, std::move(answer), std::move(reasoning)};
}

const ChatEncodingOptions kChat{ChatMode::Chat, true};
const ChatEncodingOptions kThinking{ChatMode::Thinking, true};
const ChatEncodingOptions kThinkingKeep{ChatMode::Thinking, false};

class ChatEncodingTest : public ::testing::Test {
protected:
  void SetUp() override {
    StatusOr<ChatEncoder> created = ChatEncoder::create(tokenizer);
    ASSERT_TRUE(created.ok()) << created.status().toString();
    encoder.emplace(std::move(created).value());
  }

  std::vector<int64_t> ids(const std::vector<ChatMessage> &messages,
                           const ChatEncodingOptions &options) {
    StatusOr<std::vector<int64_t>> out = encoder->encode(messages, options);
    EXPECT_TRUE(out.ok()) << out.status().toString();
    return out.ok() ? *out : std::vector<int64_t>{-99};
  }
  std::string text(const std::vector<ChatMessage> &messages,
                   const ChatEncodingOptions &options) {
    StatusOr<std::string> out = encoder->render(messages, options);
    EXPECT_TRUE(out.ok()) << out.status().toString();
    return out.ok() ? *out : "<error>";
  }

  FakeTokenizer tokenizer;
  std::optional<ChatEncoder> encoder;
};

TEST_F(ChatEncodingTest, SpecialTokensComeFromTheTokenizer) {
  const ChatSpecialTokens &special = encoder->specialTokens();
  EXPECT_EQ(special.bos, kBos);
  EXPECT_EQ(special.eos, kEos);
  EXPECT_EQ(special.user, kUser);
  EXPECT_EQ(special.assistant, kAssistant);
  EXPECT_EQ(special.thinkStart, kThink);
  EXPECT_EQ(special.thinkEnd, kUnthink);
}

TEST_F(ChatEncodingTest, FirstTurnChatMode) {
  // BOS <｜User｜> H i <｜Assistant｜> </think>
  EXPECT_EQ(ids({user("Hi")}, kChat),
            (std::vector<int64_t>{0, 2, 172, 205, 3, 5}));
  EXPECT_EQ(text({user("Hi")}, kChat),
            "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜></think>");
}

TEST_F(ChatEncodingTest, SpecExampleRendersAsTheSpecSays) {
  // spec §6: <｜begin▁of▁sentence｜><｜User｜>Hello, 世界<｜Assistant｜></think>
  EXPECT_EQ(text({user("Hello, 世界")}, kChat),
            "<｜begin▁of▁sentence｜><｜User｜>Hello, "
            "世界<｜Assistant｜></think>");
  EXPECT_EQ(ids({user("Hello, 世界")}, kChat),
            cat({{kBos, kUser}, bytes("Hello, 世界"), {kAssistant, kUnthink}}));
}

TEST_F(ChatEncodingTest, FirstTurnThinkingModeOpensReasoning) {
  // BOS S <｜User｜> H i <｜Assistant｜> <think>
  EXPECT_EQ(ids({system("S"), user("Hi")}, kThinking),
            (std::vector<int64_t>{0, 183, 2, 172, 205, 3, 4}));
  EXPECT_EQ(text({system("S"), user("Hi")}, kThinking),
            "<｜begin▁of▁sentence｜>S<｜User｜>Hi<｜Assistant｜><think>");
}

TEST_F(ChatEncodingTest, SystemPromptFollowsBos) {
  EXPECT_EQ(ids({system("Be brief."), user("Q")}, kChat),
            cat({{kBos}, bytes("Be brief."), {kUser}, bytes("Q"),
                 {kAssistant, kUnthink}}));
}

TEST_F(ChatEncodingTest, ChatModeSecondTurn) {
  // An earlier reply renders as {answer} EOS after the </think> of its
  // turn; a reasoning given in chat mode is not rendered.
  std::vector<ChatMessage> conversation = {user("a"), assistant("B", "r"),
                                           user("c")};
  EXPECT_EQ(ids(conversation, kChat),
            (std::vector<int64_t>{0, 2, 197, 3, 5, 166, 1, 2, 199, 3, 5}));
  EXPECT_EQ(text(conversation, kChat),
            "<｜begin▁of▁sentence｜><｜User｜>a<｜Assistant｜></think>B"
            "<｜end▁of▁sentence｜><｜User｜>c<｜Assistant｜></think>");
}

TEST_F(ChatEncodingTest, ThinkingModeDropsEarlierReasoning) {
  std::vector<ChatMessage> conversation = {
      system("S"), user("a"), assistant("B", "why"), user("c")};
  // BOS S <User> a <Assistant> </think> B EOS <User> c <Assistant> <think>
  EXPECT_EQ(ids(conversation, kThinking),
            (std::vector<int64_t>{0, 183, 2, 197, 3, 5, 166, 1, 2, 199, 3, 4}));
  EXPECT_EQ(text(conversation, kThinking),
            "<｜begin▁of▁sentence｜>S<｜User｜>a<｜Assistant｜></think>B"
            "<｜end▁of▁sentence｜><｜User｜>c<｜Assistant｜><think>");
}

TEST_F(ChatEncodingTest, ThinkingModeKeepsReasoningWithoutDrop) {
  std::vector<ChatMessage> conversation = {
      system("S"), user("a"), assistant("B", "why"), user("c")};
  // ... <Assistant> <think> w h y </think> B EOS ... <Assistant> <think>
  EXPECT_EQ(ids(conversation, kThinkingKeep),
            cat({{kBos}, bytes("S"), {kUser}, bytes("a"), {kAssistant, kThink},
                 bytes("why"), {kUnthink}, bytes("B"), {kEos, kUser},
                 bytes("c"), {kAssistant, kThink}}));
  EXPECT_EQ(text(conversation, kThinkingKeep),
            "<｜begin▁of▁sentence｜>S<｜User｜>a<｜Assistant｜><think>why"
            "</think>B<｜end▁of▁sentence｜><｜User｜>c<｜Assistant｜><think>");
}

TEST_F(ChatEncodingTest, ThinkingModeReplyToLastUserKeepsItsReasoning) {
  // The whole conversation after a reply: the reasoning of the reply to the
  // last user message stays, in both drop settings.
  std::vector<ChatMessage> conversation = {user("a"), assistant("B", "r")};
  std::vector<int64_t> expected = {0, 2, 197, 3, 4, 214, 5, 166, 1};
  EXPECT_EQ(ids(conversation, kThinking), expected);
  EXPECT_EQ(ids(conversation, kThinkingKeep), expected);
  // In chat mode the same conversation has no reasoning.
  EXPECT_EQ(ids(conversation, kChat),
            (std::vector<int64_t>{0, 2, 197, 3, 5, 166, 1}));
}

TEST_F(ChatEncodingTest, ReplyPromptExtendsToTheFullTurn) {
  // In thinking mode the prompt of a reply followed by the generated tokens
  // (reasoning, </think>, answer, EOS) is the rendered conversation.
  std::vector<int64_t> prompt = ids({user("a")}, kThinking);
  std::vector<int64_t> generated = cat({bytes("r"), {kUnthink}, bytes("B"),
                                        {kEos}});
  EXPECT_EQ(cat({prompt, generated}),
            ids({user("a"), assistant("B", "r")}, kThinking));
  // The same in chat mode: answer, EOS.
  EXPECT_EQ(cat({ids({user("a")}, kChat), bytes("B"), {kEos}}),
            ids({user("a"), assistant("B")}, kChat));
}

TEST_F(ChatEncodingTest, EmptyAnswerAndEmptyUserMessage) {
  EXPECT_EQ(ids({user(""), assistant("")}, kChat),
            (std::vector<int64_t>{0, 2, 3, 5, 1}));
  // Empty pieces never reach the tokenizer.
  tokenizer.encodeCalls = 0;
  EXPECT_EQ(ids({user(""), assistant("", "")}, kThinking),
            (std::vector<int64_t>{0, 2, 3, 4, 5, 1}));
  EXPECT_EQ(tokenizer.encodeCalls, 0);
}

TEST_F(ChatEncodingTest, ConsecutiveUserMessagesShareOneReply) {
  // R4: consecutive user messages are one user turn, joined by "\n\n"
  // (the reference's merge_tool_messages), with one <｜Assistant｜>.
  EXPECT_EQ(ids({user("a"), user("c")}, kChat),
            (std::vector<int64_t>{0, 2, 197, 110, 110, 199, 3, 5}));
}

TEST_F(ChatEncodingTest, EmptyConversationIsBos) {
  EXPECT_EQ(ids({}, kChat), (std::vector<int64_t>{0}));
  EXPECT_EQ(ids({system("S")}, kThinking), (std::vector<int64_t>{0, 183}));
}

TEST_F(ChatEncodingTest, SpecialTokenTextInAMessageIsTheToken) {
  // The reference tokenizes the rendered string, so a special token written
  // in a message is that token; encoding piece by piece keeps that.
  EXPECT_EQ(ids({user("x</think>y")}, kChat),
            (std::vector<int64_t>{0, 2, 220, 5, 221, 3, 5}));
}

TEST_F(ChatEncodingTest, InvalidUtf8NamesMessageAndOffset) {
  StatusOr<std::vector<int64_t>> out =
      encoder->encode({system("ok"), user("ab\xC3(")}, kChat);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::InvalidArgument);
  EXPECT_EQ(out.status().message(),
            "message 1 (user): the content is not valid UTF-8 (byte offset "
            "2)");
  StatusOr<std::string> rendered =
      encoder->render({user("a"), assistant("b", "\xFFx")}, kThinkingKeep);
  ASSERT_FALSE(rendered.ok());
  EXPECT_EQ(rendered.status().message(),
            "message 1 (assistant): the reasoning is not valid UTF-8 (byte "
            "offset 0)");
}

TEST_F(ChatEncodingTest, ReasoningOnlyOnAssistantMessages) {
  StatusOr<std::vector<int64_t>> out =
      encoder->encode({{ChatRole::User, "q", "thought"}}, kThinking);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().message(),
            "message 0 (user) has reasoning; only assistant messages have one");
}

//===----------------------------------------------------------------------===//
// Tools, tool calls, tool results, reasoning effort, developer messages.
// The expected strings are written out by hand from the rules R1-R12 of
// chat_encoding.h (the reference's encode_messages); each test names the
// rule it checks.
//===----------------------------------------------------------------------===//

const std::string kBosText = "<｜begin▁of▁sentence｜>";
const std::string kEosText = "<｜end▁of▁sentence｜>";

/// The tools section (R3) around the schema lines.
const std::string kToolsHead =
    "## Tools\n"
    "\n"
    "You have access to a set of tools to help answer the user's question. "
    "You can invoke tools by writing a \"<｜DSML｜tool_calls>\" block like the "
    "following:\n"
    "\n"
    "<｜DSML｜tool_calls>\n"
    "<｜DSML｜invoke name=\"$TOOL_NAME\">\n"
    "<｜DSML｜parameter name=\"$PARAMETER_NAME\" string=\"true|false\">"
    "$PARAMETER_VALUE</｜DSML｜parameter>\n"
    "...\n"
    "</｜DSML｜invoke>\n"
    "<｜DSML｜invoke name=\"$TOOL_NAME2\">\n"
    "...\n"
    "</｜DSML｜invoke>\n"
    "</｜DSML｜tool_calls>\n"
    "\n"
    "String parameters should be specified as is and set `string=\"true\"`. "
    "For all other types (numbers, booleans, arrays, objects), pass the value "
    "in JSON format and set `string=\"false\"`.\n"
    "\n"
    "If thinking_mode is enabled (triggered by <think>), you MUST output your "
    "complete reasoning inside <think>...</think> BEFORE any tool calls or "
    "final response.\n"
    "\n"
    "Otherwise, output directly after </think> with tool calls or final "
    "response.\n"
    "\n"
    "### Available Tool Schemas\n"
    "\n";
const std::string kToolsTail =
    "\n"
    "\n"
    "You MUST strictly follow the above defined tool name and parameter "
    "schemas to invoke tool calls.\n";

/// A function definition as a client writes it (compact, its own key order)
/// and as the prompt must show it (R12: ", " and ": ", same order).
const std::string kWeatherTool =
    R"({"name":"get_weather","description":"Weather of a city","parameters":)"
    R"({"type":"object","properties":{"city":{"type":"string"}},)"
    R"("required":["city"]}})";
const std::string kWeatherSchema =
    R"({"name": "get_weather", "description": "Weather of a city", )"
    R"("parameters": {"type": "object", "properties": {"city": {"type": )"
    R"("string"}}, "required": ["city"]}})";

ChatMessage developer(std::string text) {
  return {ChatRole::Developer, std::move(text), ""};
}
ChatMessage toolResult(std::string id, std::string text) {
  ChatMessage message{ChatRole::Tool, std::move(text), ""};
  message.toolCallId = std::move(id);
  return message;
}
ChatMessage calls(std::vector<ChatToolCall> toolCalls,
                  std::string content = "", std::string reasoning = "") {
  ChatMessage message{ChatRole::Assistant, std::move(content),
                      std::move(reasoning)};
  message.toolCalls = std::move(toolCalls);
  return message;
}
ChatEncodingOptions withTools(ChatEncodingOptions options) {
  options.tools = {kWeatherTool};
  return options;
}
ChatEncodingOptions withEffort(ChatEncodingOptions options,
                               ReasoningEffort effort) {
  options.reasoningEffort = effort;
  return options;
}

TEST_F(ChatEncodingTest, R2MaxEffortParagraphFollowsBosInThinkingMode) {
  std::string paragraph =
      "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
      "You MUST be very thorough in your thinking and comprehensively "
      "decompose the problem to resolve the root cause, rigorously "
      "stress-testing your logic against all potential paths, edge cases, "
      "and adversarial scenarios.\n"
      "Explicitly write out your entire deliberation process, documenting "
      "every intermediate step, considered alternative, and rejected "
      "hypothesis to ensure absolutely no assumption is left unchecked.\n\n";
  EXPECT_EQ(text({system("S"), user("Hi")},
                 withEffort(kThinking, ReasoningEffort::Max)),
            kBosText + paragraph + "S<｜User｜>Hi<｜Assistant｜><think>");
  EXPECT_EQ(text({user("Hi")}, withEffort(kThinking, ReasoningEffort::Max)),
            kBosText + paragraph + "<｜User｜>Hi<｜Assistant｜><think>");
  // "high" adds nothing; chat mode ignores the effort.
  EXPECT_EQ(text({user("Hi")}, withEffort(kThinking, ReasoningEffort::High)),
            kBosText + "<｜User｜>Hi<｜Assistant｜><think>");
  EXPECT_EQ(text({user("Hi")}, withEffort(kChat, ReasoningEffort::Max)),
            kBosText + "<｜User｜>Hi<｜Assistant｜></think>");
  // The paragraph is text: one run with the system prompt after BOS.
  EXPECT_EQ(ids({system("S"), user("Hi")},
                withEffort(kThinking, ReasoningEffort::Max)),
            cat({{kBos}, bytes(paragraph + "S"), {kUser}, bytes("Hi"),
                 {kAssistant, kThink}}));
}

TEST_F(ChatEncodingTest, R3ToolsFollowTheSystemPrompt) {
  EXPECT_EQ(text({system("S"), user("Hi")}, withTools(kChat)),
            kBosText + "S\n\n" + kToolsHead + kWeatherSchema + kToolsTail +
                "<｜User｜>Hi<｜Assistant｜></think>");
  // Two tools: one JSON line each.
  ChatEncodingOptions two = kChat;
  two.tools = {kWeatherTool, R"({"name":"now"})"};
  EXPECT_EQ(text({system("S"), user("Hi")}, two),
            kBosText + "S\n\n" + kToolsHead + kWeatherSchema + "\n" +
                R"({"name": "now"})" + kToolsTail +
                "<｜User｜>Hi<｜Assistant｜></think>");
}

TEST_F(ChatEncodingTest, R3ToolsWithoutSystemPromptGetAnEmptyOne) {
  EXPECT_EQ(text({user("Hi")}, withTools(kChat)),
            kBosText + "\n\n" + kToolsHead + kWeatherSchema + kToolsTail +
                "<｜User｜>Hi<｜Assistant｜></think>");
  // With the max effort paragraph, it comes first (R2 applies to the
  // inserted system message, the first one).
  ChatEncodingOptions options =
      withEffort(withTools(kThinking), ReasoningEffort::Max);
  StatusOr<std::string> rendered = encoder->render({user("Hi")}, options);
  ASSERT_TRUE(rendered.ok());
  std::string expectedStart =
      kBosText + "Reasoning Effort: Absolute maximum with no shortcuts "
                 "permitted.\n";
  EXPECT_EQ(rendered->substr(0, expectedStart.size()), expectedStart);
  EXPECT_NE(rendered->find("unchecked.\n\n\n\n## Tools\n"), std::string::npos);
}

TEST_F(ChatEncodingTest, R7R8R9AssistantToolCallsRenderAsDsml) {
  std::vector<ChatMessage> conversation = {
      user("Weather?"),
      calls({{"c1", "get_weather",
              R"({"city": "Paris", "days": 3, "units": null, )"
              R"("opts": {"a": [1, 2.5], "ok": true}})"}}),
      toolResult("c1", "Sunny")};
  std::string block =
      "\n\n<｜DSML｜tool_calls>\n"
      "<｜DSML｜invoke name=\"get_weather\">\n"
      "<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"units\" string=\"false\">null</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"opts\" string=\"false\">{\"a\": [1, 2.5], "
      "\"ok\": true}</｜DSML｜parameter>\n"
      "</｜DSML｜invoke>\n"
      "</｜DSML｜tool_calls>";
  EXPECT_EQ(text(conversation, kChat),
            kBosText + "<｜User｜>Weather?<｜Assistant｜></think>" + block +
                kEosText +
                "<｜User｜><tool_result>Sunny</tool_result>"
                "<｜Assistant｜></think>");
  // The block is text after the (empty) content: one run of bytes.
  EXPECT_EQ(ids(conversation, kChat),
            cat({{kBos, kUser}, bytes("Weather?"), {kAssistant, kUnthink},
                 bytes(block), {kEos, kUser},
                 bytes("<tool_result>Sunny</tool_result>"),
                 {kAssistant, kUnthink}}));
}

TEST_F(ChatEncodingTest, R8SeveralCallsAfterContent) {
  std::vector<ChatMessage> conversation = {
      user("q"), calls({{"a", "f", "{}"}, {"b", "g", R"({"x": "1"})"}},
                       "Checking.")};
  EXPECT_EQ(text(conversation, kChat),
            kBosText + "<｜User｜>q<｜Assistant｜></think>Checking."
                       "\n\n<｜DSML｜tool_calls>\n"
                       "<｜DSML｜invoke name=\"f\">\n\n</｜DSML｜invoke>\n"
                       "<｜DSML｜invoke name=\"g\">\n"
                       "<｜DSML｜parameter name=\"x\" string=\"true\">1"
                       "</｜DSML｜parameter>\n"
                       "</｜DSML｜invoke>\n"
                       "</｜DSML｜tool_calls>" +
                kEosText);
}

TEST_F(ChatEncodingTest, R9ArgumentsThatAreNotJsonBecomeOneStringParameter) {
  EXPECT_EQ(text({user("q"), calls({{"a", "f", "not json"}})}, kChat),
            kBosText + "<｜User｜>q<｜Assistant｜></think>"
                       "\n\n<｜DSML｜tool_calls>\n"
                       "<｜DSML｜invoke name=\"f\">\n"
                       "<｜DSML｜parameter name=\"arguments\" string=\"true\">"
                       "not json</｜DSML｜parameter>\n"
                       "</｜DSML｜invoke>\n"
                       "</｜DSML｜tool_calls>" +
                kEosText);
  // So do arguments nested deeper than the JSON limits (json_text.h), where
  // the reference's json.loads fails on recursion.
  std::string deep = "{\"a\": " + std::string(600, '[') +
                     std::string(600, ']') + "}";
  EXPECT_EQ(text({user("q"), calls({{"a", "f", deep}})}, kChat),
            kBosText + "<｜User｜>q<｜Assistant｜></think>"
                       "\n\n<｜DSML｜tool_calls>\n"
                       "<｜DSML｜invoke name=\"f\">\n"
                       "<｜DSML｜parameter name=\"arguments\" string=\"true\">" +
                deep +
                "</｜DSML｜parameter>\n"
                "</｜DSML｜invoke>\n"
                "</｜DSML｜tool_calls>" +
                kEosText);
  // JSON that is not an object is refused (the reference fails on it).
  StatusOr<std::string> out =
      encoder->render({user("q"), calls({{"a", "f", "[1]"}})}, kChat);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().message(),
            "message 1 (assistant): tool call 0 ('f'): the arguments are JSON "
            "but not an object");
}

TEST_F(ChatEncodingTest, R4R5ToolResultsJoinTheUserTurnInCallOrder) {
  // Results answered out of order are put in the order of the calls; a
  // user message after them joins the same turn.
  std::vector<ChatMessage> conversation = {
      user("q"),
      calls({{"c1", "f", "{}"}, {"c2", "g", "{}"}}),
      toolResult("c2", "two"),
      toolResult("c1", "one"),
      user("thanks")};
  std::string rendered = text(conversation, kChat);
  std::string tail = kEosText +
                     "<｜User｜><tool_result>one</tool_result>\n\n"
                     "<tool_result>two</tool_result>\n\nthanks"
                     "<｜Assistant｜></think>";
  ASSERT_GE(rendered.size(), tail.size());
  EXPECT_EQ(rendered.substr(rendered.size() - tail.size()), tail);
  // A tool result right after a user message joins that turn too.
  EXPECT_EQ(text({user("a"), toolResult("x", "r")}, kChat),
            kBosText + "<｜User｜>a\n\n<tool_result>r</tool_result>"
                       "<｜Assistant｜></think>");
}

TEST_F(ChatEncodingTest, R6R7ThinkingAgentLoopWithoutToolsDropsTheCallReasoning) {
  // Without tools in the request, drop-thinking stays on: the tool-result
  // turn is the last user turn, so the reasoning of the call before it is
  // dropped and only the last turn opens <think>.
  std::vector<ChatMessage> conversation = {
      user("q"), calls({{"c1", "f", "{}"}}, "", "I should call f."),
      toolResult("c1", "r")};
  EXPECT_EQ(text(conversation, kThinking),
            kBosText + "<｜User｜>q<｜Assistant｜></think>"
                       "\n\n<｜DSML｜tool_calls>\n"
                       "<｜DSML｜invoke name=\"f\">\n\n</｜DSML｜invoke>\n"
                       "</｜DSML｜tool_calls>" +
                kEosText +
                "<｜User｜><tool_result>r</tool_result><｜Assistant｜><think>");
}

TEST_F(ChatEncodingTest, R10ToolsKeepAllReasoning) {
  std::vector<ChatMessage> conversation = {
      user("q"), calls({{"c1", "get_weather", R"({"city": "Oslo"})"}}, "",
                       "I should look it up."),
      toolResult("c1", "Rain"), assistant("It rains.", "Easy."),
      user("Thanks!")};
  EXPECT_EQ(text(conversation, withTools(kThinking)),
            kBosText + "\n\n" + kToolsHead + kWeatherSchema + kToolsTail +
                "<｜User｜>q<｜Assistant｜><think>I should look it up.</think>"
                "\n\n<｜DSML｜tool_calls>\n"
                "<｜DSML｜invoke name=\"get_weather\">\n"
                "<｜DSML｜parameter name=\"city\" string=\"true\">Oslo"
                "</｜DSML｜parameter>\n"
                "</｜DSML｜invoke>\n"
                "</｜DSML｜tool_calls>" +
                kEosText +
                "<｜User｜><tool_result>Rain</tool_result>"
                "<｜Assistant｜><think>Easy.</think>It rains." +
                kEosText + "<｜User｜>Thanks!<｜Assistant｜><think>");
}

TEST_F(ChatEncodingTest, R11DeveloperMessages) {
  // A turn of its own, rendered like a user message ...
  EXPECT_EQ(text({developer("D"), user("u")}, kChat),
            kBosText + "<｜User｜>D<｜User｜>u<｜Assistant｜></think>");
  EXPECT_EQ(text({developer("D")}, kThinking),
            kBosText + "<｜User｜>D<｜Assistant｜><think>");
  // ... and dropped before the last user turn in thinking mode with
  // drop-thinking on.
  EXPECT_EQ(text({developer("D"), user("u")}, kThinking),
            kBosText + "<｜User｜>u<｜Assistant｜><think>");
  EXPECT_EQ(text({developer("D"), user("u")}, kThinkingKeep),
            kBosText + "<｜User｜>D<｜User｜>u<｜Assistant｜><think>");
}

TEST_F(ChatEncodingTest, R12ToolJsonIsWrittenAsPythonWritesIt) {
  ChatEncodingOptions options = kChat;
  options.tools = {
      R"({"name":"f","description":"Météo \"x\"\n\ttab\u0001","p":[1.0,1e-5,)"
      R"(1e16,0.0001,-2.5e-7,100,true,null,{}]})"};
  std::string rendered = text({user("q")}, options);
  StatusOr<std::string> out = std::string();
  EXPECT_NE(rendered.find(
                R"({"name": "f", "description": "Météo \"x\"\n\ttab\u0001", )"
                R"("p": [1.0, 1e-05, 1e+16, 0.0001, -2.5e-07, 100, true, )"
                R"(null, {}]})"),
            std::string::npos)
      << rendered;
  // A definition that is not JSON, or not an object, is refused, naming the
  // tool.
  options.tools = {"{\"name\": "};
  out = encoder->render({user("q")}, options);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().message().rfind(
                "tool 0: the function definition is not valid JSON: ", 0),
            0u)
      << out.status().message();
  options.tools = {kWeatherTool, "[1]"};
  out = encoder->render({user("q")}, options);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().message(),
            "tool 1: the function definition is not a JSON object");
}

TEST_F(ChatEncodingTest, ToolCallsOnlyOnAssistantMessages) {
  ChatMessage message = user("q");
  message.toolCalls = {{"a", "f", "{}"}};
  StatusOr<std::string> out = encoder->render({message}, kChat);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().message(),
            "message 0 (user) has tool calls; only assistant messages have "
            "them");
}

TEST(ChatEncoderCreate, MissingSpecialTokenIsNamed) {
  for (std::string_view missing :
       {kBosToken, kEosToken, kUserToken, kAssistantToken, kThinkStartToken,
        kThinkEndToken}) {
    FakeTokenizer tokenizer({std::string(missing)});
    StatusOr<ChatEncoder> encoder = ChatEncoder::create(tokenizer);
    ASSERT_FALSE(encoder.ok()) << missing;
    EXPECT_EQ(encoder.status().code(), StatusCode::NotFound);
    EXPECT_EQ(encoder.status().message(),
              "the tokenizer has no token '" + std::string(missing) +
                  "' (the DeepSeek-V4 chat format needs it)");
  }
}

TEST(EncodeCompletion, BosThenText) {
  FakeTokenizer tokenizer;
  StatusOr<std::vector<int64_t>> ids = encodeCompletion(tokenizer, "Hi!");
  ASSERT_TRUE(ids.ok()) << ids.status().toString();
  EXPECT_EQ(*ids, (std::vector<int64_t>{0, 172, 205, 133}));
  StatusOr<std::vector<int64_t>> empty = encodeCompletion(tokenizer, "");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, (std::vector<int64_t>{0}));
}

TEST(EncodeCompletion, Errors) {
  FakeTokenizer tokenizer;
  StatusOr<std::vector<int64_t>> bad =
      encodeCompletion(tokenizer, "caf\xC3\xA9 \xE2\x82");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "the prompt is not valid UTF-8 (byte offset 6)");
  // Completion needs only BOS: the chat tokens may be missing.
  FakeTokenizer noChat({std::string(kUserToken), std::string(kThinkEndToken)});
  EXPECT_TRUE(encodeCompletion(noChat, "x").ok());
  FakeTokenizer noBos({std::string(kBosToken)});
  StatusOr<std::vector<int64_t>> missing = encodeCompletion(noBos, "x");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message(),
            "the tokenizer has no token '<｜begin▁of▁sentence｜>' (the prompt "
            "starts with it)");
}

TEST(FindInvalidUtf8, AcceptsValidText) {
  for (std::string_view text :
       {"", "plain ASCII", "\xC2\x80", "é", "世界", "\xEF\xBF\xBD", "😀",
        "\xF4\x8F\xBF\xBF", "\xED\x9F\xBF"})
    EXPECT_EQ(findInvalidUtf8(text), std::nullopt) << printable(text);
  EXPECT_EQ(findInvalidUtf8(std::string_view("a\0b", 3)), std::nullopt);
}

TEST(FindInvalidUtf8, NamesTheFirstBadByte) {
  struct Case {
    std::string_view text;
    size_t offset;
  };
  for (Case c : std::initializer_list<Case>{
           {"\x80", 0},                 // stray continuation byte
           {"ab\xC0\x80", 2},           // overlong 2-byte form
           {"\xC1\xBF", 0},             // overlong
           {"x\xE0\x80\x80", 1},        // overlong 3-byte form
           {"\xED\xA0\x80", 0},         // UTF-16 surrogate
           {"\xF0\x80\x80\x80", 0},     // overlong 4-byte form
           {"\xF4\x90\x80\x80", 0},     // above U+10FFFF
           {"\xF5\x80\x80\x80", 0},     // lead byte never valid
           {"\xFF", 0},
           {"ok\xE4\xB8", 2},           // truncated at the end
           {"\xE4\xB8(", 0},            // truncated by ASCII
           {"é\xC3", 2},
       })
    EXPECT_EQ(findInvalidUtf8(c.text), std::optional<size_t>(c.offset))
        << printable(c.text);
}

//===----------------------------------------------------------------------===//
// The real tokenizer
//===----------------------------------------------------------------------===//

#ifdef COMPRESSA_TINY_TOKENIZER
class TinyTokenizerTest : public ::testing::Test {
protected:
  void SetUp() override {
    if (!std::filesystem::exists(COMPRESSA_TINY_TOKENIZER))
      FAIL() << COMPRESSA_TINY_TOKENIZER << " is missing";
    StatusOr<std::unique_ptr<Tokenizer>> loaded =
        Tokenizer::fromFile(COMPRESSA_TINY_TOKENIZER);
    ASSERT_TRUE(loaded.ok()) << loaded.status().toString();
    tokenizer = std::move(loaded).value();
  }
  std::unique_ptr<Tokenizer> tokenizer;
};

TEST_F(TinyTokenizerTest, ChatIdsEqualTheTokensOfTheRenderedText) {
  StatusOr<ChatEncoder> encoder = ChatEncoder::create(*tokenizer);
  ASSERT_TRUE(encoder.ok()) << encoder.status().toString();
  EXPECT_EQ(encoder->specialTokens().bos, 0);
  EXPECT_EQ(encoder->specialTokens().eos, 1);
  std::vector<ChatMessage> plain = {
      system("You are terse."), user("Hello, 世界"),
      assistant("Hi there.", "The user greets me."), user("What is 2+2?")};
  ChatMessage call{ChatRole::Assistant, "", "Look it up."};
  call.toolCalls = {{"c1", "get_weather", R"({"city": "東京"})"}};
  ChatMessage result{ChatRole::Tool, "晴れ", ""};
  result.toolCallId = "c1";
  std::vector<ChatMessage> agent = {user("Weather in Tokyo?"), call, result};
  for (const ChatEncodingOptions &options :
       {kChat, kThinking, kThinkingKeep, withTools(kThinking),
        withEffort(kThinking, ReasoningEffort::Max)}) {
   for (const std::vector<ChatMessage> &conversation : {plain, agent}) {
    StatusOr<std::vector<int64_t>> ids = encoder->encode(conversation, options);
    ASSERT_TRUE(ids.ok()) << ids.status().toString();
    StatusOr<std::string> rendered = encoder->render(conversation, options);
    ASSERT_TRUE(rendered.ok()) << rendered.status().toString();
    // The reference tokenizes the rendered string in one go.
    StatusOr<std::vector<int64_t>> whole = tokenizer->encode(*rendered);
    ASSERT_TRUE(whole.ok()) << whole.status().toString();
    EXPECT_EQ(*ids, *whole);
    // And decoding gives the rendered text back.
    StatusOr<std::string> decoded = tokenizer->decode(ids->data(), ids->size());
    ASSERT_TRUE(decoded.ok()) << decoded.status().toString();
    EXPECT_EQ(*decoded, *rendered);
   }
  }
  // Hand-checked structure of the chat-mode prompt.
  StatusOr<std::vector<int64_t>> ids =
      encoder->encode({user("Hello")}, kChat);
  ASSERT_TRUE(ids.ok());
  const ChatSpecialTokens &s = encoder->specialTokens();
  StatusOr<std::vector<int64_t>> hello = tokenizer->encode("Hello");
  ASSERT_TRUE(hello.ok());
  EXPECT_EQ(*ids, cat({{s.bos, s.user}, *hello, {s.assistant, s.thinkEnd}}));
}

TEST_F(TinyTokenizerTest, CompletionIsBosThenTheText) {
  StatusOr<std::vector<int64_t>> ids =
      encodeCompletion(*tokenizer, "Once upon a time");
  ASSERT_TRUE(ids.ok()) << ids.status().toString();
  StatusOr<std::vector<int64_t>> body = tokenizer->encode("Once upon a time");
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(*ids, cat({{0}, *body}));
}
#endif

} // namespace
} // namespace compressa
