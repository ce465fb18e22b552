// SPDX-License-Identifier: Apache-2.0
// Unit tests for the strict JSON parser: what it accepts, and that each kind
// of malformed input is rejected with a located, specific message.
#include "runtime/weights/json.h"

#include <gtest/gtest.h>

#include <string>

namespace compressa {
namespace {

/// Parses `text` and expects failure whose message contains `fragment`.
void expectRejected(const std::string &text, const std::string &fragment,
                    JsonLimits limits = {}) {
  StatusOr<JsonValue> result = parseJson(text, limits);
  ASSERT_FALSE(result.ok()) << "accepted: " << text;
  EXPECT_EQ(result.status().code(), StatusCode::InvalidArgument);
  EXPECT_NE(result.status().message().find(fragment), std::string::npos)
      << "input: " << text << "\nmessage: " << result.status().message();
}

TEST(JsonTest, ParsesNestedDocument) {
  StatusOr<JsonValue> result = parseJson(
      " {\"a\": [1, -2, 3.5, 1e3, true, false, null], \"b\": {\"c\": \"d\"},"
      " \"e\": []} \n");
  ASSERT_TRUE(result.ok()) << result.status().toString();
  const JsonValue &root = *result;
  ASSERT_TRUE(root.isObject());
  ASSERT_EQ(root.size(), 3u);
  EXPECT_EQ(root.memberKey(0), "a");
  EXPECT_EQ(root.memberKey(2), "e");
  const JsonValue *a = root.find("a");
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(a->isArray());
  ASSERT_EQ(a->size(), 7u);
  EXPECT_EQ(a->elements()[0].intValue(), 1);
  EXPECT_EQ(a->elements()[1].intValue(), -2);
  EXPECT_FALSE(a->elements()[2].intValue().has_value());
  EXPECT_EQ(a->elements()[2].numberValue(), 3.5);
  EXPECT_FALSE(a->elements()[3].intValue().has_value()); // exponent form
  EXPECT_EQ(a->elements()[3].numberValue(), 1000.0);
  EXPECT_TRUE(a->elements()[4].isBool() && a->elements()[4].boolValue());
  EXPECT_TRUE(a->elements()[5].isBool() && !a->elements()[5].boolValue());
  EXPECT_TRUE(a->elements()[6].isNull());
  const JsonValue *b = root.find("b");
  ASSERT_NE(b, nullptr);
  ASSERT_NE(b->find("c"), nullptr);
  EXPECT_EQ(b->find("c")->stringValue(), "d");
  EXPECT_EQ(root.find("missing"), nullptr);
  EXPECT_EQ(a->find("x"), nullptr); // find on a non-object
  EXPECT_TRUE(root.find("e")->isArray());
  EXPECT_EQ(root.find("e")->size(), 0u);
}

TEST(JsonTest, IntegersAreExactTo64Bits) {
  StatusOr<JsonValue> big = parseJson("9223372036854775807");
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->intValue(), INT64_C(9223372036854775807));
  StatusOr<JsonValue> tooBig = parseJson("9223372036854775808");
  ASSERT_TRUE(tooBig.ok());
  EXPECT_FALSE(tooBig->intValue().has_value());
  EXPECT_EQ(tooBig->numberValue(), 9223372036854775808.0);
  StatusOr<JsonValue> negZero = parseJson("-0");
  ASSERT_TRUE(negZero.ok());
  EXPECT_EQ(negZero->intValue(), 0);
}

TEST(JsonTest, StringEscapesAndUtf8) {
  StatusOr<JsonValue> result =
      parseJson(R"("q\"b\\s\/n\nt\tu\u00e9\ud83d\ude00")");
  ASSERT_TRUE(result.ok()) << result.status().toString();
  EXPECT_EQ(result->stringValue(), "q\"b\\s/n\nt\tu\xC3\xA9\xF0\x9F\x98\x80");
  StatusOr<JsonValue> raw = parseJson("\"caf\xC3\xA9 \xE2\x82\xAC\"");
  ASSERT_TRUE(raw.ok()) << raw.status().toString();
  EXPECT_EQ(raw->stringValue(), "caf\xC3\xA9 \xE2\x82\xAC");
}

TEST(JsonTest, RejectsMalformedInput) {
  expectRejected("", "expected a value, found end of input");
  expectRejected("   ", "expected a value");
  expectRejected("[1, 2,]", "expected a value, found ']'");
  expectRejected("{\"a\": 1,}", "expected '\"' to start an object key");
  expectRejected("{\"a\" 1}", "expected ':' after an object key");
  expectRejected("{'a': 1}", "expected '\"' to start an object key");
  expectRejected("[1 2]", "expected ',' or ']' in an array");
  expectRejected("{\"a\": 1 \"b\": 2}", "expected ',' or '}' in an object");
  expectRejected("[1] x", "expected end of input after the top-level value");
  expectRejected("// c\n{}", "expected a value, found '/'");
  expectRejected("[NaN]", "expected a value, found 'N'");
  expectRejected("[tru]", "expected 'true'");
  expectRejected("[01]", "expected no leading zero");
  expectRejected("[1.]", "expected a digit after '.'");
  expectRejected("[1e]", "expected a digit in the exponent");
  expectRejected("[-]", "expected a digit");
  expectRejected("[1e999]", "does not fit in a double");
  expectRejected("\"abc", "expected '\"' to close the string");
  expectRejected("\"a\tb\"", "expected no raw control character");
  expectRejected("\"\\x\"", "expected one of");
  expectRejected("\"\\u12g4\"", "expected 4 hex digits");
  expectRejected("\"\\udc00\"", "high surrogate before a low one");
  expectRejected("\"\\ud800x\"", "low surrogate after a high one");
  expectRejected("\"\\ud800\\u0041\"", "expected a low surrogate");
  expectRejected("\"\xC0\x80\"", "expected valid UTF-8");     // overlong
  expectRejected("\"\xED\xA0\x80\"", "expected valid UTF-8"); // surrogate
  expectRejected("\"\xE2\x82\"", "expected valid UTF-8");     // truncated
  expectRejected("\"\xF5\x80\x80\x80\"", "expected valid UTF-8");
  expectRejected("\"\xFF\"", "found byte 0xFF");
}

TEST(JsonTest, RejectsDuplicateKeys) {
  expectRejected("{\"w\": 1, \"w\": 2}", "duplicate key 'w'");
}

TEST(JsonTest, ReportsLineAndColumn) {
  StatusOr<JsonValue> result = parseJson("{\n  \"a\": [1,\n  x]}");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().message(),
            "line 3, column 3 (byte 15): expected a value, found 'x'");
}

TEST(JsonTest, EnforcesDepthLimit) {
  JsonLimits limits;
  limits.maxDepth = 4;
  EXPECT_TRUE(parseJson("[[[[1]]]]", limits).ok());
  expectRejected("[[[[[1]]]]]", "nested deeper than 4 levels", limits);
  // The default limit stops a stack-exhausting document.
  expectRejected(std::string(100000, '['), "nested deeper than 64 levels");
}

TEST(JsonTest, EnforcesValueLimit) {
  JsonLimits limits;
  limits.maxValues = 4;
  EXPECT_TRUE(parseJson("[1, 2, 3]", limits).ok());
  expectRejected("[1, 2, 3, 4]", "more than 4 values", limits);
}

} // namespace
} // namespace compressa
