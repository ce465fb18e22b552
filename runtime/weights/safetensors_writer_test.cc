// SPDX-License-Identifier: Apache-2.0
// Tests of the safetensors writer: round trips through SafetensorsFile,
// header escaping and alignment, and the streaming writer's byte accounting.
#include "runtime/weights/safetensors_writer.h"

#include "runtime/weights/safetensors.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace compressa {
namespace {

class SafetensorsWriterTest : public ::testing::Test {
protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "compressa_stw_XXXXXX";
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    ASSERT_NE(::mkdtemp(buffer.data()), nullptr);
    dir = buffer.data();
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  std::string dir;
};

TEST_F(SafetensorsWriterTest, RoundTrip) {
  std::vector<float> logits = {1.5f, -2.0f, 0.25f, 8.0f, 0.0f, -0.125f};
  std::vector<int64_t> ids = {0, 7, 1234567890123LL};
  std::vector<uint8_t> scale = {127, 128};
  std::string path = dir + "/out.safetensors";
  Status status = writeSafetensors(
      path,
      {{"logits", DType::F32, {2, 3}, logits.data()},
       {"input_ids", DType::I64, {3}, ids.data()},
       {"odd \"name\"\\\n", DType::F8E8M0, {1, 2}, scale.data()},
       {"empty", DType::BF16, {0, 4}, nullptr}},
      {{"producer", "test"}});
  ASSERT_TRUE(status.ok()) << status.toString();

  auto file = SafetensorsFile::open(path);
  ASSERT_TRUE(file.ok()) << file.status().toString();
  EXPECT_EQ((*file)->numTensors(), 4u);
  const TensorView *t = (*file)->find("logits");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, DType::F32);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 3}));
  for (size_t i = 0; i < logits.size(); ++i)
    EXPECT_EQ(readUnaligned<float>(t->data + 4 * i), logits[i]);
  // The data section starts 8-byte aligned (the mapping is page-aligned and
  // the first tensor sits at data offset 0).
  const TensorView *first = &(*file)->tensors()[0];
  EXPECT_EQ(reinterpret_cast<uintptr_t>(first->data) % 8, 0u);
  t = (*file)->find("input_ids");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(readUnaligned<int64_t>(t->data + 16), 1234567890123LL);
  t = (*file)->find("odd \"name\"\\\n");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->data[1], 128);
  t = (*file)->find("empty");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->nbytes, 0u);
}

TEST_F(SafetensorsWriterTest, RejectsBadTensors) {
  float value = 1;
  auto expectBad = [&](std::vector<TensorToWrite> tensors,
                       const std::string &part) {
    Status status = writeSafetensors(dir + "/bad.safetensors", tensors);
    ASSERT_FALSE(status.ok()) << part;
    EXPECT_NE(status.message().find(part), std::string::npos)
        << status.message();
    EXPECT_FALSE(std::filesystem::exists(dir + "/bad.safetensors"));
  };
  expectBad({{"a", DType::F32, {1}, &value}, {"a", DType::F32, {1}, &value}},
            "tensor 'a' is given twice");
  expectBad({{"a", DType::F32, {-1}, &value}}, "shape[0] is -1");
  expectBad({{"", DType::F32, {1}, &value}}, "cannot be written");
  expectBad({{"__metadata__", DType::F32, {1}, &value}}, "cannot be written");
  expectBad({{"big", DType::F32, {int64_t(1) << 40, int64_t(1) << 40}, &value}},
            "overflows 64 bits");
  expectBad({{"a", DType::F32, {1}, nullptr}}, "tensor 'a' has no data");
}

TEST_F(SafetensorsWriterTest, StreamingAccountsForEveryByte) {
  std::string path = dir + "/stream.safetensors";
  auto writer = SafetensorsWriter::create(
      path, {{"x", DType::F32, {2, 2}}, {"y", DType::I8, {3}}});
  ASSERT_TRUE(writer.ok()) << writer.status().toString();
  EXPECT_EQ((*writer)->totalDataBytes(), 19u);
  float row[2] = {1, 2};
  ASSERT_TRUE((*writer)->append(row, 8).ok());
  Status early = (*writer)->finish();
  EXPECT_FALSE(early.ok());
  EXPECT_NE(early.message().find("8 data bytes written, the header declares "
                                 "19"),
            std::string::npos)
      << early.message();
  ASSERT_TRUE((*writer)->append(row, 8).ok());
  char tail[4] = {1, 2, 3, 4};
  Status tooMuch = (*writer)->append(tail, 4);
  EXPECT_FALSE(tooMuch.ok());
  EXPECT_NE(tooMuch.message().find(path), std::string::npos);
  ASSERT_TRUE((*writer)->append(tail, 3).ok());
  ASSERT_TRUE((*writer)->finish().ok());
  EXPECT_FALSE((*writer)->append(tail, 1).ok());
  auto file = SafetensorsFile::open(path);
  ASSERT_TRUE(file.ok()) << file.status().toString();
  EXPECT_EQ((*file)->find("y")->data[2], 3);
}

TEST_F(SafetensorsWriterTest, UnfinishedFileIsRemoved) {
  std::string path = dir + "/partial.safetensors";
  {
    auto writer =
        SafetensorsWriter::create(path, {{"x", DType::F32, {4}}});
    ASSERT_TRUE(writer.ok());
    EXPECT_TRUE(std::filesystem::exists(path));
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST_F(SafetensorsWriterTest, UnwritableDirectory) {
  std::string path = dir + "/no/such/dir/out.safetensors";
  Status status = writeSafetensors(path, {});
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find(path), std::string::npos);
  EXPECT_NE(status.message().find("cannot create"), std::string::npos);
}

} // namespace
} // namespace compressa
