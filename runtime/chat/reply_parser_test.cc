// SPDX-License-Identifier: Apache-2.0
// Tests of the streaming reply parser: reasoning, content and tool calls,
// whatever the split of the text into pieces, and malformed markup.
#include "runtime/chat/reply_parser.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace compressa {
namespace {

const std::string kEos = "<｜end▁of▁sentence｜>";

/// A tool-call block as the model writes it (reference layout).
const std::string kWeatherCall =
    "\n\n<｜DSML｜tool_calls>\n"
    "<｜DSML｜invoke name=\"get_weather\">\n"
    "<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n"
    "<｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n"
    "</｜DSML｜invoke>\n"
    "</｜DSML｜tool_calls>";

struct Collected {
  std::string reasoning, content;
  std::vector<ToolCall> calls;
  Status error;
  std::vector<std::string> contentDeltas;
};

void add(Collected &out, ReplyDelta delta) {
  out.reasoning += delta.reasoning;
  out.content += delta.content;
  if (!delta.content.empty())
    out.contentDeltas.push_back(delta.content);
  for (ToolCall &call : delta.toolCalls)
    out.calls.push_back(std::move(call));
}

/// Feeds `text` in pieces of `step` bytes (0: all at once) and finishes.
Collected parse(const std::string &text, bool thinking, size_t step = 0) {
  ReplyParser parser({thinking, "call_x_"});
  Collected out;
  if (step == 0) {
    add(out, parser.feed(text));
  } else {
    for (size_t i = 0; i < text.size(); i += step)
      add(out, parser.feed(std::string_view(text).substr(i, step)));
  }
  add(out, parser.finish());
  out.error = parser.error();
  // What the deltas added up to is what the parser keeps.
  EXPECT_EQ(out.reasoning, parser.reasoning());
  EXPECT_EQ(out.content, parser.content());
  EXPECT_EQ(out.calls.size(), parser.toolCalls().size());
  return out;
}

TEST(ReplyParser, ChatModeIsContentUpToTheEndOfSentence) {
  Collected out = parse("Hello, 世界!" + kEos + "ignored", false);
  EXPECT_TRUE(out.error.ok());
  EXPECT_EQ(out.reasoning, "");
  EXPECT_EQ(out.content, "Hello, 世界!");
  EXPECT_TRUE(out.calls.empty());
}

TEST(ReplyParser, ThinkingModeSplitsAtThinkEnd) {
  Collected out = parse("Let me think.</think>The answer is 4." + kEos, true);
  EXPECT_TRUE(out.error.ok());
  EXPECT_EQ(out.reasoning, "Let me think.");
  EXPECT_EQ(out.content, "The answer is 4.");
}

TEST(ReplyParser, ReasoningCutByTheTokenLimitStaysReasoning) {
  Collected out = parse("still thinking <", true);
  EXPECT_TRUE(out.error.ok());
  EXPECT_EQ(out.reasoning, "still thinking <");
  EXPECT_EQ(out.content, "");
}

TEST(ReplyParser, ToolCallBecomesAnOpenAICall) {
  Collected out = parse("Let me check." + kWeatherCall + kEos, false);
  ASSERT_TRUE(out.error.ok()) << out.error.toString();
  EXPECT_EQ(out.content, "Let me check.");
  ASSERT_EQ(out.calls.size(), 1u);
  EXPECT_EQ(out.calls[0].index, 0u);
  EXPECT_EQ(out.calls[0].id, "call_x_0");
  EXPECT_EQ(out.calls[0].name, "get_weather");
  // The reference's decoder: string="true" values quoted, others as is.
  EXPECT_EQ(out.calls[0].arguments, R"({"city": "Paris", "days": 3})");
}

TEST(ReplyParser, ThinkingThenToolCallsWithoutContent) {
  Collected out = parse("I need the weather.</think>" + kWeatherCall + kEos,
                        true);
  ASSERT_TRUE(out.error.ok()) << out.error.toString();
  EXPECT_EQ(out.reasoning, "I need the weather.");
  EXPECT_EQ(out.content, "");
  ASSERT_EQ(out.calls.size(), 1u);
}

// Every split of the text into pieces of 1..7 bytes (splitting the 3-byte
// fullwidth bars of the markers too) gives the same result, and no delta of
// content ever holds markup.
TEST(ReplyParser, AnySplitGivesTheSameResultAndNoMarkupInContent) {
  std::string text = "Reasoning\n\nwith blank lines.</think>Answer\n\nhere." +
                     kWeatherCall + "\n" + kEos;
  Collected whole = parse(text, true);
  ASSERT_TRUE(whole.error.ok());
  EXPECT_EQ(whole.reasoning, "Reasoning\n\nwith blank lines.");
  EXPECT_EQ(whole.content, "Answer\n\nhere.");
  for (size_t step = 1; step <= 7; ++step) {
    Collected split = parse(text, true, step);
    ASSERT_TRUE(split.error.ok()) << "step " << step;
    EXPECT_EQ(split.reasoning, whole.reasoning) << "step " << step;
    EXPECT_EQ(split.content, whole.content) << "step " << step;
    ASSERT_EQ(split.calls.size(), 1u) << "step " << step;
    EXPECT_EQ(split.calls[0].arguments, whole.calls[0].arguments);
    for (const std::string &delta : split.contentDeltas) {
      EXPECT_EQ(delta.find("｜"), std::string::npos) << delta;
      EXPECT_EQ(delta.find('<'), std::string::npos) << delta;
    }
  }
}

// A piece that ends in a possible marker prefix is held back until the next
// piece decides; then it is released as text.
TEST(ReplyParser, HoldsBackAPossibleMarkerPrefix) {
  ReplyParser parser;
  EXPECT_EQ(parser.feed("a <").content, "a ");
  EXPECT_EQ(parser.feed("b").content, "<b");
  EXPECT_EQ(parser.feed("x\n").content, "x");
  EXPECT_EQ(parser.feed("\n<｜DS").content, "");
  ReplyDelta rest = parser.feed("ML｜tool_calls>");
  EXPECT_EQ(rest.content, "");
  EXPECT_EQ(parser.content(), "a <bx");
  // A split end-of-sentence marker is held back too.
  ReplyParser eos;
  EXPECT_EQ(eos.feed("done<｜end").content, "done");
  EXPECT_EQ(eos.feed("▁of▁sentence｜>").content, "");
  EXPECT_TRUE(eos.ended());
  // finish() releases a prefix that never became a marker.
  ReplyParser cut;
  EXPECT_EQ(cut.feed("x\n\n<｜").content, "x");
  EXPECT_EQ(cut.finish().content, "\n\n<｜");
}

TEST(ReplyParser, SeveralCallsAreReturnedOneByOne) {
  std::string text = "\n\n<｜DSML｜tool_calls>\n"
                     "<｜DSML｜invoke name=\"a\">\n"
                     "<｜DSML｜parameter name=\"q\" string=\"true\">say "
                     "\"hi\"\nnow</｜DSML｜parameter>\n"
                     "</｜DSML｜invoke>\n"
                     "<｜DSML｜invoke name=\"b\">\n\n</｜DSML｜invoke>\n"
                     "</｜DSML｜tool_calls>" +
                     kEos;
  ReplyParser parser({false, "id-"});
  size_t split = text.find("<｜DSML｜invoke name=\"b\"");
  ReplyDelta first = parser.feed(text.substr(0, split));
  ASSERT_EQ(first.toolCalls.size(), 1u);
  EXPECT_EQ(first.toolCalls[0].id, "id-0");
  EXPECT_EQ(first.toolCalls[0].name, "a");
  // Quotes and newlines of a string value are escaped in the JSON.
  EXPECT_EQ(first.toolCalls[0].arguments, R"({"q": "say \"hi\"\nnow"})");
  ReplyDelta second = parser.feed(text.substr(split));
  ASSERT_EQ(second.toolCalls.size(), 1u);
  EXPECT_EQ(second.toolCalls[0].index, 1u);
  EXPECT_EQ(second.toolCalls[0].id, "id-1");
  EXPECT_EQ(second.toolCalls[0].arguments, "{}");
  EXPECT_TRUE(parser.ended());
  EXPECT_TRUE(parser.error().ok());
  EXPECT_EQ(parser.content(), "");
}

// A call with a long value streamed a few bytes at a time (the parser
// searches only the new text for the end of the call).
TEST(ReplyParser, LongCallInSmallPieces) {
  std::string value(200000, 'x');
  for (size_t i = 0; i < value.size(); i += 97)
    value[i] = '\n';
  std::string text = "<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"write\">\n"
                     "<｜DSML｜parameter name=\"text\" string=\"true\">" +
                     value + "</｜DSML｜parameter>\n</｜DSML｜invoke>\n"
                             "</｜DSML｜tool_calls>" +
                     kEos;
  Collected out = parse(text, false, 3);
  ASSERT_TRUE(out.error.ok()) << out.error.toString();
  ASSERT_EQ(out.calls.size(), 1u);
  std::string expected = "{\"text\": \"";
  for (char c : value)
    expected += c == '\n' ? std::string("\\n") : std::string(1, c);
  expected += "\"}";
  EXPECT_EQ(out.calls[0].arguments, expected);
}

TEST(ReplyParser, NonStringValuesKeepTheirJson) {
  std::string text =
      "<｜DSML｜tool_calls>"
      "<｜DSML｜invoke name=\"f\">"
      "<｜DSML｜parameter name=\"list\" string=\"false\">[1, {\"k\": "
      "null}]</｜DSML｜parameter>"
      "<｜DSML｜parameter name=\"ok\" string=\"false\">true</｜DSML｜parameter>"
      "<｜DSML｜parameter name=\"名前\" string=\"true\">東京</｜DSML｜parameter>"
      "</｜DSML｜invoke></｜DSML｜tool_calls>";
  Collected out = parse(text, false);
  ASSERT_TRUE(out.error.ok()) << out.error.toString();
  ASSERT_EQ(out.calls.size(), 1u);
  EXPECT_EQ(out.calls[0].arguments,
            R"({"list": [1, {"k": null}], "ok": true, "名前": "東京"})");
}

TEST(ReplyParser, ContentAfterTheBlockKeepsGoing) {
  Collected out = parse("Before." + kWeatherCall + "\n\nAfter." + kEos, false);
  ASSERT_TRUE(out.error.ok());
  EXPECT_EQ(out.content, "Before.After.");
  EXPECT_EQ(out.calls.size(), 1u);
}

TEST(ReplyParser, ToolCallsInsideReasoningEndTheReasoning) {
  Collected out = parse("Thinking" + kWeatherCall + kEos, true);
  ASSERT_TRUE(out.error.ok());
  EXPECT_EQ(out.reasoning, "Thinking");
  EXPECT_EQ(out.content, "");
  EXPECT_EQ(out.calls.size(), 1u);
}

// Malformed markup is an error; nothing of it reaches the content and the
// parser stops.
TEST(ReplyParser, MalformedMarkupIsAnError) {
  // Text after the markup ("more") must not reach the content either; the
  // last case ends inside the block, so nothing follows it.
  struct Case {
    std::string text;
    std::string message;
    bool more = true;
  } cases[] = {
      {"x<｜DSML｜function_calls>\n</｜DSML｜function_calls>",
       "expected <｜DSML｜tool_calls>"},
      {"x<｜DSML｜tool_calls>\nhello", "expected <｜DSML｜invoke or"},
      {"x<｜DSML｜tool_calls><｜DSML｜invoke nam=\"f\"></｜DSML｜invoke>",
       "expected <｜DSML｜invoke name=\"NAME\">"},
      {"x<｜DSML｜tool_calls><｜DSML｜invoke name=\"f\"><｜DSML｜parameter "
       "name=\"a\" string=\"maybe\">1</｜DSML｜parameter></｜DSML｜invoke>",
       "tool call 'f': expected <｜DSML｜parameter"},
      {"x<｜DSML｜tool_calls><｜DSML｜invoke name=\"f\"><｜DSML｜parameter "
       "name=\"a\" string=\"true\">1</｜DSML｜parameter><｜DSML｜parameter "
       "name=\"a\" string=\"true\">2</｜DSML｜parameter></｜DSML｜invoke>",
       "parameter 'a' is given twice"},
      {"x<｜DSML｜tool_calls><｜DSML｜invoke name=\"f\"><｜DSML｜parameter "
       "name=\"a\" string=\"false\">{oops</｜DSML｜parameter></｜DSML｜invoke>",
       "has string=\"false\" but its value '{oops' is not JSON"},
      {"x<｜DSML｜tool_calls><｜DSML｜invoke name=\"f\"><｜DSML｜parameter "
       "name=\"a\" string=\"false\">[1]" +
           std::string(1, '\0') + ",</｜DSML｜parameter></｜DSML｜invoke>",
       "is not JSON"},
      {"x<｜DSML｜tool_calls><｜DSML｜invoke name=\"f\"><｜DSML｜parameter "
       "name=\"a\" string=\"true\">1</｜DSML｜invoke>",
       "parameter 'a' has no </｜DSML｜parameter>"},
      {"x<｜DSML｜tool_calls><｜DSML｜invoke name=\"f\"><｜DSML｜parameter "
       "name=\"a\" string=\"true\">\xF3</｜DSML｜parameter></｜DSML｜invoke>",
       "parameter 'a': invalid UTF-8"},
      {"x<｜DSML｜tool_calls><｜DSML｜invoke name=\"f\">" + kEos,
       "the reply ended inside a <｜DSML｜invoke> element"},
      {"x<｜DSML｜tool_calls><｜DSML｜invoke name=\"f\"></｜DSML｜invoke>",
       "the reply ended inside the tool-call block", false},
  };
  for (const Case &c : cases) {
    for (size_t step : {0, 1, 5}) {
      Collected out = parse(c.text + (c.more ? "more" : ""), false, step);
      ASSERT_FALSE(out.error.ok()) << c.text;
      EXPECT_NE(out.error.message().find(c.message), std::string::npos)
          << out.error.message();
      EXPECT_EQ(out.error.message().rfind("malformed tool-call markup", 0), 0u);
      EXPECT_EQ(out.content, "x") << c.text;
    }
  }
}

TEST(ReplyParser, NothingIsReturnedAfterAnError) {
  ReplyParser parser;
  parser.feed("<｜DSML｜nope>");
  EXPECT_FALSE(parser.error().ok());
  EXPECT_TRUE(parser.ended());
  EXPECT_TRUE(parser.feed("text").empty());
  EXPECT_TRUE(parser.finish().empty());
  EXPECT_EQ(parser.content(), "");
}

} // namespace
} // namespace compressa
