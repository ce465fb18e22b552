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
  StatusOr<JsonDocument> result = parseJson(text, limits);
  ASSERT_FALSE(result.ok()) << "accepted: " << text;
  EXPECT_EQ(result.status().code(), StatusCode::InvalidArgument);
  EXPECT_NE(result.status().message().find(fragment), std::string::npos)
      << "input: " << text << "\nmessage: " << result.status().message();
}

TEST(JsonTest, ParsesNestedDocument) {
  StatusOr<JsonDocument> result = parseJson(
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
  StatusOr<JsonDocument> big = parseJson("9223372036854775807");
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->intValue(), INT64_C(9223372036854775807));
  StatusOr<JsonDocument> tooBig = parseJson("9223372036854775808");
  ASSERT_TRUE(tooBig.ok());
  EXPECT_FALSE(tooBig->intValue().has_value());
  EXPECT_EQ(tooBig->numberValue(), 9223372036854775808.0);
  StatusOr<JsonDocument> negZero = parseJson("-0");
  ASSERT_TRUE(negZero.ok());
  EXPECT_EQ(negZero->intValue(), 0);
}

TEST(JsonTest, StringEscapesAndUtf8) {
  StatusOr<JsonDocument> result =
      parseJson(R"("q\"b\\s\/n\nt\tu\u00e9\ud83d\ude00")");
  ASSERT_TRUE(result.ok()) << result.status().toString();
  EXPECT_EQ(result->stringValue(), "q\"b\\s/n\nt\tu\xC3\xA9\xF0\x9F\x98\x80");
  StatusOr<JsonDocument> raw = parseJson("\"caf\xC3\xA9 \xE2\x82\xAC\"");
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
  // Located at the second occurrence, compared after unescaping, in nested
  // objects too.
  StatusOr<JsonDocument> result =
      parseJson("{\"a\":1,\"b\":{\"x\":1,\"\\u0078\":2},\"c\":3}");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().message(),
            "line 1, column 19 (byte 18): duplicate key 'x'");
  StatusOr<JsonDocument> first =
      parseJson("{\"b\":0,\"a\":1,\"b\":2,\"a\":3}");
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.status().message(),
            "line 1, column 14 (byte 13): duplicate key 'b'");
}

TEST(JsonTest, ObjectMembersInFileOrder) {
  StatusOr<JsonDocument> result =
      parseJson("{\"z\": [1, {\"k\": \"v\"}], \"a\": \"s\", \"m\": null}");
  ASSERT_TRUE(result.ok()) << result.status().toString();
  const JsonValue &root = *result;
  ASSERT_EQ(root.size(), 3u);
  EXPECT_EQ(root.memberKey(0), "z");
  EXPECT_EQ(root.memberKey(1), "a");
  EXPECT_EQ(root.memberKey(2), "m");
  // elements() of an object: the member values, in the same order.
  ASSERT_EQ(root.elements().size(), 3u);
  EXPECT_TRUE(root.elements()[0].isArray());
  EXPECT_EQ(root.elements()[1].stringValue(), "s");
  EXPECT_TRUE(root.elements()[2].isNull());
  const JsonValue &inner = root.memberValue(0).elements()[1];
  EXPECT_EQ(inner.find("k")->stringValue(), "v");
  // Moving the document keeps every value valid.
  JsonDocument moved = std::move(result).value();
  EXPECT_EQ(moved.find("z")->elements()[1].find("k")->stringValue(), "v");
  EXPECT_EQ(moved.memberValue(1).stringValue(), "s");
  // A string is not an array, an array has no members.
  EXPECT_TRUE(moved.memberValue(1).elements().empty());
  EXPECT_EQ(moved.memberValue(0).find("k"), nullptr);
  EXPECT_EQ(moved.memberValue(0).stringValue(), "");
}

TEST(JsonTest, NumbersKeepBothForms) {
  StatusOr<JsonDocument> result =
      parseJson("[9007199254740993, -1.25e2, 0.1, 123456789012345678901]");
  ASSERT_TRUE(result.ok()) << result.status().toString();
  JsonRange n = result->elements();
  EXPECT_EQ(n[0].intValue(), INT64_C(9007199254740993));
  EXPECT_EQ(n[0].numberValue(), 9007199254740992.0); // correctly rounded
  EXPECT_EQ(n[1].numberValue(), -125.0);
  EXPECT_FALSE(n[1].intValue().has_value());
  EXPECT_EQ(n[2].numberValue(), 0.1);
  EXPECT_FALSE(n[3].intValue().has_value());
  EXPECT_EQ(n[3].numberValue(), 123456789012345678901.0);
}

TEST(JsonTest, ReportsLineAndColumn) {
  StatusOr<JsonDocument> result = parseJson("{\n  \"a\": [1,\n  x]}");
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
