// SPDX-License-Identifier: Apache-2.0
// Unit tests for Status, StatusOr and the COMPRESSA_* error macros.
#include "runtime/base/status.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>

namespace compressa {
namespace {

TEST(StatusTest, DefaultIsOk) {
  Status status;
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(status.code(), StatusCode::Ok);
  EXPECT_EQ(status.message(), "");
  EXPECT_EQ(status.file(), nullptr);
  EXPECT_EQ(status.toString(), "OK");
  EXPECT_TRUE(okStatus().ok());
}

TEST(StatusTest, OkCodeDropsMessageAndLocation) {
  Status status(StatusCode::Ok, "ignored", "x.cc", 3);
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(status.message(), "");
  EXPECT_EQ(status.line(), 0);
}

TEST(StatusTest, ErrorFormatsMessage) {
  Status status = Status::error(StatusCode::NotFound, "tensor '%s' #%d",
                                "layers.0.attn.wq_a.weight", 7);
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(status.code(), StatusCode::NotFound);
  EXPECT_EQ(status.message(), "tensor 'layers.0.attn.wq_a.weight' #7");
  EXPECT_EQ(status.file(), nullptr);
  EXPECT_EQ(status.toString(),
            "NotFound: tensor 'layers.0.attn.wq_a.weight' #7");
}

TEST(StatusTest, LongMessagesAreNotCut) {
  std::string big(5000, 'x');
  Status status = Status::error(StatusCode::Internal, "%s!", big.c_str());
  EXPECT_EQ(status.message(), big + "!");
}

TEST(StatusTest, MacroRecordsFileAndLine) {
  int line = __LINE__ + 1;
  Status status = COMPRESSA_ERROR(DataLoss, "bad %s", "header");
  EXPECT_EQ(status.code(), StatusCode::DataLoss);
  EXPECT_EQ(status.message(), "bad header");
  ASSERT_NE(status.file(), nullptr);
  EXPECT_NE(std::strstr(status.file(), "status_test.cc"), nullptr);
  EXPECT_EQ(status.line(), line);
  EXPECT_EQ(status.toString(), "DataLoss: bad header [status_test.cc:" +
                                   std::to_string(line) + "]");
}

TEST(StatusTest, WithContextPrependsAndKeepsLocation) {
  Status inner = COMPRESSA_ERROR(OutOfRange, "index %d", 9);
  Status outer = inner.withContext("layer %d", 2);
  EXPECT_EQ(outer.code(), StatusCode::OutOfRange);
  EXPECT_EQ(outer.message(), "layer 2: index 9");
  EXPECT_EQ(outer.line(), inner.line());
  EXPECT_TRUE(okStatus().withContext("unused").ok());
}

TEST(StatusTest, CodeNames) {
  EXPECT_STREQ(statusCodeName(StatusCode::Ok), "Ok");
  EXPECT_STREQ(statusCodeName(StatusCode::InvalidArgument), "InvalidArgument");
  EXPECT_STREQ(statusCodeName(StatusCode::DataLoss), "DataLoss");
  EXPECT_STREQ(statusCodeName(StatusCode::Unavailable), "Unavailable");
  EXPECT_STREQ(statusCodeName(StatusCode::Internal), "Internal");
}

TEST(StatusTest, PrintableEscapesAndCuts) {
  EXPECT_EQ(printable("plain.name_0"), "plain.name_0");
  EXPECT_EQ(printable(std::string("a\nb\0c", 5)), "a\\x0Ab\\x00c");
  EXPECT_EQ(printable("\xff"), "\\xFF");
  EXPECT_EQ(printable("abcdefgh", 3), "abc...");
}

//===----------------------------------------------------------------------===//
// Macros
//===----------------------------------------------------------------------===//

Status failIf(bool fail) {
  if (fail)
    return COMPRESSA_ERROR(Unavailable, "device %d busy", 3);
  return okStatus();
}

Status callTwice(bool failSecond, int &reached) {
  reached = 0;
  COMPRESSA_RETURN_IF_ERROR(failIf(false));
  reached = 1;
  COMPRESSA_RETURN_IF_ERROR(failIf(failSecond), "step %d", 2);
  reached = 2;
  return okStatus();
}

TEST(StatusMacroTest, ReturnIfError) {
  int reached = -1;
  EXPECT_TRUE(callTwice(false, reached).ok());
  EXPECT_EQ(reached, 2);
  Status status = callTwice(true, reached);
  EXPECT_EQ(reached, 1);
  EXPECT_EQ(status.code(), StatusCode::Unavailable);
  EXPECT_EQ(status.message(), "step 2: device 3 busy");
}

StatusOr<std::unique_ptr<int>> makeInt(int value) {
  if (value < 0)
    return COMPRESSA_ERROR(InvalidArgument, "negative: %d", value);
  return std::make_unique<int>(value);
}

StatusOr<int> doubled(int value) {
  COMPRESSA_ASSIGN_OR_RETURN(auto boxed, makeInt(value));
  int result = 0;
  COMPRESSA_ASSIGN_OR_RETURN(result, StatusOr<int>(*boxed * 2));
  return result;
}

TEST(StatusMacroTest, AssignOrReturn) {
  StatusOr<int> good = doubled(21);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 42);
  StatusOr<int> bad = doubled(-1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::InvalidArgument);
  EXPECT_EQ(bad.status().message(), "negative: -1");
}

//===----------------------------------------------------------------------===//
// StatusOr
//===----------------------------------------------------------------------===//

TEST(StatusOrTest, HoldsValue) {
  StatusOr<std::string> value(std::string("abc"));
  ASSERT_TRUE(value.ok());
  EXPECT_TRUE(value.status().ok());
  EXPECT_EQ(*value, "abc");
  EXPECT_EQ(value->size(), 3u);
  std::string moved = std::move(value).value();
  EXPECT_EQ(moved, "abc");
}

TEST(StatusOrTest, ConvertsCompatibleValues) {
  StatusOr<std::string> fromLiteral("xyz");
  ASSERT_TRUE(fromLiteral.ok());
  EXPECT_EQ(*fromLiteral, "xyz");
}

TEST(StatusOrTest, HoldsError) {
  StatusOr<int> value(Status::error(StatusCode::NotFound, "nope"));
  EXPECT_FALSE(value.ok());
  EXPECT_EQ(value.status().code(), StatusCode::NotFound);
}

TEST(StatusOrTest, OkStatusWithoutValueIsInternal) {
  StatusOr<int> value(okStatus());
  EXPECT_FALSE(value.ok());
  EXPECT_EQ(value.status().code(), StatusCode::Internal);
}

TEST(StatusOrDeathTest, ValueOfErrorAborts) {
  StatusOr<int> value(Status::error(StatusCode::DataLoss, "corrupt"));
  EXPECT_DEATH((void)value.value(), "DataLoss: corrupt");
}

} // namespace
} // namespace compressa
