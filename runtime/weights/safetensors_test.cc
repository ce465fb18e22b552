// SPDX-License-Identifier: Apache-2.0
// Tests of SafetensorsFile and WeightStore on small files written here, one
// per kind of corruption, and on the shared golden checkpoints when present.
// Every error must name the file and the tensor or field at fault.
#include "runtime/weights/safetensors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace compressa {
namespace {

/// One tensor to write: its bytes follow the previous tensor's.
struct TensorSpec {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

/// The 8-byte little-endian length prefix.
std::string lengthPrefix(uint64_t length) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i)
    out[i] = static_cast<char>((length >> (8 * i)) & 0xFF);
  return out;
}

/// A whole file from a header text and a data section.
std::string fileBytes(const std::string &header, const std::string &data) {
  return lengthPrefix(header.size()) + header + data;
}

/// A well-formed file holding `tensors` packed back to back.
std::string safetensorsBytes(const std::vector<TensorSpec> &tensors,
                             const std::string &metadata = "") {
  std::string header = "{";
  std::string data;
  if (!metadata.empty())
    header += "\"__metadata__\":" + metadata;
  for (const TensorSpec &t : tensors) {
    if (header.size() > 1)
      header += ",";
    header += "\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i)
      header += (i ? "," : "") + std::to_string(t.shape[i]);
    header += "],\"data_offsets\":[" + std::to_string(data.size()) + "," +
              std::to_string(data.size() + t.bytes.size()) + "]}";
    data += t.bytes;
  }
  header += "}";
  return fileBytes(header, data);
}

/// The little-endian bytes of `values`.
template <class T> std::string bytesOf(const std::vector<T> &values) {
  return std::string(reinterpret_cast<const char *>(values.data()),
                     values.size() * sizeof(T));
}

class SafetensorsTest : public ::testing::Test {
protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "compressa_st_XXXXXX";
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    ASSERT_NE(::mkdtemp(buffer.data()), nullptr);
    dir = buffer.data();
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }

  /// Writes `bytes` to `name` under `subdir` of the temp dir; returns the path.
  std::string write(const std::string &name, const std::string &bytes,
                    const std::string &subdir = "") {
    std::string folder = subdir.empty() ? dir : dir + "/" + subdir;
    std::error_code ignored;
    std::filesystem::create_directories(folder, ignored);
    std::string path = folder + "/" + name;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path;
  }

  /// Opens `bytes` written as bad.safetensors, expects `code` and a message
  /// that holds the file name and every fragment.
  void expectOpenError(const std::string &bytes,
                       const std::vector<std::string> &fragments,
                       StatusCode code = StatusCode::DataLoss) {
    std::string path = write("bad.safetensors", bytes);
    auto result = SafetensorsFile::open(path);
    ASSERT_FALSE(result.ok()) << "accepted a bad file";
    const Status &status = result.status();
    EXPECT_EQ(status.code(), code) << status.toString();
    EXPECT_NE(status.message().find(path), std::string::npos)
        << status.message();
    for (const std::string &fragment : fragments)
      EXPECT_NE(status.message().find(fragment), std::string::npos)
          << "missing '" << fragment << "' in: " << status.message();
  }

  /// Opens the directory `subdir` as a WeightStore and expects an error whose
  /// message holds every fragment.
  void expectStoreError(const std::string &subdir,
                        const std::vector<std::string> &fragments,
                        StatusCode code = StatusCode::DataLoss) {
    auto result = WeightStore::open(dir + "/" + subdir);
    ASSERT_FALSE(result.ok()) << "accepted a bad checkpoint";
    const Status &status = result.status();
    EXPECT_EQ(status.code(), code) << status.toString();
    for (const std::string &fragment : fragments)
      EXPECT_NE(status.message().find(fragment), std::string::npos)
          << "missing '" << fragment << "' in: " << status.message();
  }

  /// A good two-shard checkpoint in `subdir`, with an index built from
  /// `weightMap` (JSON text of the weight_map object).
  void writeSharded(const std::string &subdir, const std::string &weightMap) {
    write("model-00001-of-00002.safetensors",
          safetensorsBytes({{"a", "F32", {2}, bytesOf<float>({1.0f, 2.0f})},
                            {"b", "I8", {3}, "\x01\x02\x03"}}),
          subdir);
    write("model-00002-of-00002.safetensors",
          safetensorsBytes({{"c", "BF16", {1}, "\x80\x3F"}}), subdir);
    write("model.safetensors.index.json",
          "{\"metadata\": {\"total_size\": 13}, \"weight_map\": " + weightMap +
              "}",
          subdir);
  }

  std::string dir;
};

const char *kGoodMap = R"({"a": "model-00001-of-00002.safetensors",
  "b": "model-00001-of-00002.safetensors",
  "c": "model-00002-of-00002.safetensors"})";

//===----------------------------------------------------------------------===//
// Good files
//===----------------------------------------------------------------------===//

TEST_F(SafetensorsTest, GoodFileLoadsAndValuesReadBack) {
  std::string path =
      write("model.safetensors",
            safetensorsBytes(
                {{"w", "F32", {2, 3}, bytesOf<float>({0, 1, 2, 3, 4, 5.5f})},
                 {"bf", "BF16", {2}, bytesOf<uint16_t>({0x3F80, 0xC000})},
                 {"q", "F8_E4M3", {1, 2}, "\x38\x7E"},
                 {"s", "F8_E8M0", {1}, "\x80"},
                 {"ids", "I64", {}, bytesOf<int64_t>({-7})},
                 {"none", "F32", {0, 4}, ""}},
                R"({"format": "pt"})"));
  auto result = SafetensorsFile::open(path);
  ASSERT_TRUE(result.ok()) << result.status().toString();
  const SafetensorsFile &file = **result;
  EXPECT_EQ(file.path(), path);
  EXPECT_EQ(file.numTensors(), 6u);
  EXPECT_EQ(file.tensors()[0].name, "w"); // header order
  EXPECT_EQ(file.find("__metadata__"), nullptr);
  EXPECT_EQ(file.find("missing"), nullptr);

  const TensorView *w = file.find("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->dtype, DType::F32);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(w->nbytes, 24u);
  EXPECT_EQ(w->numElements(), 6);
  EXPECT_EQ(w->file, path);
  EXPECT_EQ(readUnaligned<float>(w->data + 4 * 5), 5.5f);

  const TensorView *bf = file.find("bf");
  ASSERT_NE(bf, nullptr);
  EXPECT_EQ(bf->dtype, DType::BF16);
  EXPECT_EQ(bf16ToFloat(readUnaligned<uint16_t>(bf->data + 2)), -2.0f);

  const TensorView *q = file.find("q");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(f8e4m3ToFloat(q->data[1]), 448.0f);
  EXPECT_EQ(f8e8m0ToFloat(file.find("s")->data[0]), 2.0f);

  const TensorView *ids = file.find("ids");
  ASSERT_NE(ids, nullptr);
  EXPECT_TRUE(ids->shape.empty());
  EXPECT_EQ(ids->numElements(), 1);
  EXPECT_EQ(readUnaligned<int64_t>(ids->data), -7);

  const TensorView *none = file.find("none");
  ASSERT_NE(none, nullptr);
  EXPECT_EQ(none->nbytes, 0u);
  EXPECT_EQ(none->numElements(), 0);
}

TEST_F(SafetensorsTest, HeaderMayBePaddedWithSpaces) {
  std::string header =
      R"({"x":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";
  header += std::string(6, ' ');
  auto result = SafetensorsFile::open(
      write("pad.safetensors", fileBytes(header, "\x05\x06")));
  ASSERT_TRUE(result.ok()) << result.status().toString();
  EXPECT_EQ((*result)->find("x")->data[1], 6);
}

TEST_F(SafetensorsTest, SingleFileDirectory) {
  write("model.safetensors",
        safetensorsBytes({{"b", "U8", {1}, "\x09"}, {"a", "U8", {1}, "\x08"}}),
        "single");
  auto result = WeightStore::open(dir + "/single");
  ASSERT_TRUE(result.ok()) << result.status().toString();
  const WeightStore &store = **result;
  EXPECT_EQ(store.numTensors(), 2u);
  EXPECT_EQ(store.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(store.files().size(), 1u);
  ASSERT_NE(store.find("b"), nullptr);
  EXPECT_EQ(store.find("b")->data[0], 9);

  StatusOr<const TensorView *> missing = store.lookup("layers.9.nothing");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::NotFound);
  EXPECT_NE(missing.status().message().find("layers.9.nothing"),
            std::string::npos);
  EXPECT_NE(missing.status().message().find("single"), std::string::npos);
}

TEST_F(SafetensorsTest, ShardedDirectory) {
  writeSharded("sharded", kGoodMap);
  auto result = WeightStore::open(dir + "/sharded");
  ASSERT_TRUE(result.ok()) << result.status().toString();
  const WeightStore &store = **result;
  EXPECT_EQ(store.numTensors(), 3u);
  EXPECT_EQ(store.files().size(), 2u);
  EXPECT_EQ(store.names(), (std::vector<std::string>{"a", "b", "c"}));
  StatusOr<const TensorView *> c = store.lookup("c");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ((*c)->dtype, DType::BF16);
  EXPECT_EQ(bf16ToFloat(readUnaligned<uint16_t>((*c)->data)), 1.0f);
  EXPECT_NE(std::string((*c)->file).find("model-00002-of-00002"),
            std::string::npos);
  EXPECT_EQ(readUnaligned<float>(store.find("a")->data + 4), 2.0f);
}

//===----------------------------------------------------------------------===//
// Bad files
//===----------------------------------------------------------------------===//

TEST_F(SafetensorsTest, MissingFile) {
  auto result = SafetensorsFile::open(dir + "/absent.safetensors");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::NotFound);
  EXPECT_NE(result.status().message().find("absent.safetensors"),
            std::string::npos);
}

TEST_F(SafetensorsTest, ShorterThanLengthField) {
  expectOpenError(std::string("\x10\x00\x00", 3), {"3 bytes", "too short"});
}

TEST_F(SafetensorsTest, TruncatedFile) {
  std::string good = safetensorsBytes(
      {{"first", "U8", {4}, "abcd"},
       {"layers.0.attn.wq_a.weight", "F8_E4M3", {2, 4}, "01234567"}});
  expectOpenError(good.substr(0, good.size() - 3),
                  {"tensor 'layers.0.attn.wq_a.weight'", "data_offsets [4, 12]",
                   "9 bytes", "truncated"});
}

TEST_F(SafetensorsTest, HeaderLengthLargerThanFile) {
  std::string header =
      R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  expectOpenError(lengthPrefix(4096) + header + "x",
                  {"header length 4096", "truncated"});
}

TEST_F(SafetensorsTest, AbsurdHeaderLength) {
  expectOpenError(lengthPrefix(uint64_t(1) << 40) + "{}",
                  {"header length 1099511627776",
                   "exceeds the format's limit of 100000000 bytes"});
  expectOpenError(lengthPrefix(~uint64_t(0)) + "{}",
                  {"exceeds the format's limit"});
  // The limit is the reference's MAX_HEADER_SIZE, 100,000,000 bytes (not
  // 100 MiB): one byte more is refused before the file size is looked at.
  expectOpenError(lengthPrefix(100000001) + "{}",
                  {"header length 100000001 bytes exceeds the format's "
                   "limit of 100000000 bytes"});
}

TEST_F(SafetensorsTest, InvalidJson) {
  expectOpenError(fileBytes(R"({"t": {"dtype": "U8",})", ""),
                  {"header is not valid JSON", "line 1, column 22",
                   "expected '\"' to start an object key"});
}

TEST_F(SafetensorsTest, HeaderNotAnObject) {
  expectOpenError(fileBytes("[1, 2]", ""),
                  {"header starts with '[', expected '{' (a JSON object)"});
}

TEST_F(SafetensorsTest, HeaderMustStartWithBrace) {
  // Trailing spaces are padding; leading ones are refused, as the reference
  // loader refuses them (InvalidHeaderStart).
  expectOpenError(fileBytes(" {}", ""),
                  {"header starts with ' ', expected '{'"});
  expectOpenError(fileBytes("", ""),
                  {"header starts with nothing (it is empty), expected '{'"});
}

TEST_F(SafetensorsTest, UnknownDtype) {
  expectOpenError(
      fileBytes(R"({"layers.3.ffn.gate.weight":{"dtype":"F7","shape":[1],)"
                R"("data_offsets":[0,1]}})",
                "x"),
      {"tensor 'layers.3.ffn.gate.weight'", "unknown dtype 'F7'",
       "expected one of F64 F32"});
}

TEST_F(SafetensorsTest, ShapeByteSizeMismatch) {
  std::string path =
      write("model.safetensors",
            fileBytes(R"({"layers.0.attn.wq_a.weight":{"dtype":"F8_E4M3",)"
                      R"("shape":[24,64],"data_offsets":[0,100]}})",
                      std::string(100, '\0')));
  auto result = SafetensorsFile::open(path);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::DataLoss);
  EXPECT_EQ(result.status().message(),
            path + ": tensor 'layers.0.attn.wq_a.weight': data_offsets "
                   "[0, 100] hold 100 bytes but shape [24, 64] of F8_E4M3 "
                   "needs 1536");
}

TEST_F(SafetensorsTest, BadShapes) {
  expectOpenError(
      fileBytes(R"({"neg":{"dtype":"U8","shape":[2,-3],)"
                R"("data_offsets":[0,0]}})",
                ""),
      {"tensor 'neg'", "shape[1] is -3", "expected a non-negative integer"});
  expectOpenError(fileBytes(R"({"frac":{"dtype":"U8","shape":[1.5],)"
                            R"("data_offsets":[0,0]}})",
                            ""),
                  {"tensor 'frac'", "shape[0] is 1.5"});
  expectOpenError(
      fileBytes(R"({"str":{"dtype":"U8","shape":"2",)"
                R"("data_offsets":[0,0]}})",
                ""),
      {"tensor 'str'", "shape is the string \"2\"", "expected an array"});
  expectOpenError(fileBytes(R"({"huge":{"dtype":"F32",)"
                            R"("shape":[4611686018427387904,4],)"
                            R"("data_offsets":[0,0]}})",
                            ""),
                  {"tensor 'huge'", "shape [4611686018427387904, 4] of F32",
                   "overflows 64 bits"});
}

TEST_F(SafetensorsTest, OffsetsOutOfRange) {
  expectOpenError(fileBytes(R"({"far":{"dtype":"U8","shape":[8],)"
                            R"("data_offsets":[4,12]}})",
                            "12345678"),
                  {"tensor 'far'", "data_offsets [4, 12]",
                   "data section, which has 8 bytes"});
  expectOpenError(fileBytes(R"({"back":{"dtype":"U8","shape":[0],)"
                            R"("data_offsets":[5,3]}})",
                            "12345678"),
                  {"tensor 'back'", "data_offsets [5, 3] has begin > end"});
  expectOpenError(fileBytes(R"({"three":{"dtype":"U8","shape":[1],)"
                            R"("data_offsets":[0,1,2]}})",
                            "1"),
                  {"tensor 'three'", "array of 3 elements",
                   "expected an array [begin, end]"});
  expectOpenError(fileBytes(R"({"minus":{"dtype":"U8","shape":[1],)"
                            R"("data_offsets":[-1,0]}})",
                            "1"),
                  {"tensor 'minus'", "data_offsets[0] is -1"});
}

TEST_F(SafetensorsTest, OverlappingTensors) {
  expectOpenError(fileBytes(R"({"one":{"dtype":"U8","shape":[8],)"
                            R"("data_offsets":[0,8]},)"
                            R"("two":{"dtype":"U8","shape":[8],)"
                            R"("data_offsets":[4,12]}})",
                            std::string(12, 'z')),
                  {"tensor 'two' has data_offsets [4, 12], expected it to "
                   "begin at 8, where tensor 'one' (data_offsets [0, 8]) "
                   "ends: the two tensors overlap"});
  // Containment is caught even when a smaller tensor sits in between.
  expectOpenError(fileBytes(R"({"big":{"dtype":"U8","shape":[10],)"
                            R"("data_offsets":[0,10]},)"
                            R"("mid":{"dtype":"U8","shape":[1],)"
                            R"("data_offsets":[10,11]},)"
                            R"("in":{"dtype":"U8","shape":[2],)"
                            R"("data_offsets":[5,7]}})",
                            std::string(11, 'z')),
                  {"'big'", "'in'", "overlap"});
}

// The reference loader (Metadata::validate, MetadataIncompleteBuffer) wants
// the tensors, sorted by offsets, to tile the data section exactly.
TEST_F(SafetensorsTest, GapBeforeFirstTensor) {
  expectOpenError(fileBytes(R"({"late":{"dtype":"U8","shape":[2],)"
                            R"("data_offsets":[3,5]}})",
                            "xxx12"),
                  {"tensor 'late' has data_offsets [3, 5], expected it to "
                   "begin at 0, the start of the data section: a gap of 3 "
                   "bytes that no tensor covers"});
}

TEST_F(SafetensorsTest, GapBetweenTensors) {
  expectOpenError(fileBytes(R"({"b":{"dtype":"U8","shape":[2],)"
                            R"("data_offsets":[4,6]},)"
                            R"("a":{"dtype":"U8","shape":[2],)"
                            R"("data_offsets":[0,2]}})",
                            "12xx34"),
                  {"tensor 'b' has data_offsets [4, 6], expected it to begin "
                   "at 2, where tensor 'a' (data_offsets [0, 2]) ends: a gap "
                   "of 2 bytes"});
}

TEST_F(SafetensorsTest, BytesAfterLastTensor) {
  expectOpenError(fileBytes(R"({"t":{"dtype":"U8","shape":[2],)"
                            R"("data_offsets":[0,2]}})",
                            "12trailing"),
                  {"the last tensor 't' (data_offsets [0, 2]) ends at 2, "
                   "expected the end of the data section at 10: 8 bytes "
                   "after the last tensor"});
  expectOpenError(fileBytes("{}", "junk"),
                  {"no tensors, but the data section has 4 bytes"});
}

TEST_F(SafetensorsTest, ZeroSizeTensorInsideAnother) {
  expectOpenError(fileBytes(R"({"big":{"dtype":"U8","shape":[4],)"
                            R"("data_offsets":[0,4]},)"
                            R"("empty":{"dtype":"U8","shape":[0],)"
                            R"("data_offsets":[2,2]}})",
                            "1234"),
                  {"tensor 'empty' has data_offsets [2, 2], expected it to "
                   "begin at 4, where tensor 'big' (data_offsets [0, 4]) "
                   "ends: the two tensors overlap"});
  // At a boundary a zero-size tensor takes no byte of anyone's: accepted,
  // before, between and after the others.
  std::string header =
      R"({"z0":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},)"
      R"("a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
      R"("z1":{"dtype":"F32","shape":[0,3],"data_offsets":[2,2]},)"
      R"("b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]},)"
      R"("z2":{"dtype":"U8","shape":[0],"data_offsets":[3,3]}})";
  auto result =
      SafetensorsFile::open(write("zeros.safetensors", fileBytes(header, "123")));
  ASSERT_TRUE(result.ok()) << result.status().toString();
  EXPECT_EQ((*result)->numTensors(), 5u);
}

TEST_F(SafetensorsTest, MetadataMustMapStringsToStrings) {
  std::string tensor = R"("t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]})";
  expectOpenError(fileBytes(R"({"__metadata__":{"format":"pt","epochs":3},)" +
                                tensor + "}",
                            "1"),
                  {"__metadata__ entry 'epochs' is 3, expected a string"});
  expectOpenError(
      fileBytes(R"({"__metadata__":{"nested":{"a":"b"}},)" + tensor + "}", "1"),
      {"__metadata__ entry 'nested' is an object, expected a string"});
  expectOpenError(fileBytes(R"({"__metadata__":["pt"],)" + tensor + "}", "1"),
                  {"__metadata__ is an array of 1 elements, expected an "
                   "object of string -> string"});
  expectOpenError(fileBytes(R"({"__metadata__":"pt",)" + tensor + "}", "1"),
                  {"__metadata__ is the string \"pt\", expected an object"});
  // null reads as "no metadata" in the reference (an Option), and so here.
  auto result = SafetensorsFile::open(write(
      "null.safetensors",
      fileBytes(R"({"__metadata__":null,)" + tensor + "}", "1")));
  ASSERT_TRUE(result.ok()) << result.status().toString();
  EXPECT_EQ((*result)->numTensors(), 1u);
}

TEST_F(SafetensorsTest, NamedPipeIsRefusedWithoutBlocking) {
  std::string fifo = dir + "/pipe.safetensors";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // A writer end held open here keeps a regression from hanging the test:
  // opening for reading would then succeed at once instead of waiting.
  int writer = ::open(fifo.c_str(), O_RDWR | O_NONBLOCK);
  ASSERT_GE(writer, 0);
  auto result = SafetensorsFile::open(fifo);
  ::close(writer);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::InvalidArgument);
  EXPECT_NE(result.status().message().find(fifo +
                                           ": not a regular file (a named "
                                           "pipe)"),
            std::string::npos)
      << result.status().message();
  // The same for a checkpoint directory whose model.safetensors is a pipe.
  std::filesystem::create_directories(dir + "/piped");
  std::string shard = dir + "/piped/model.safetensors";
  ASSERT_EQ(::mkfifo(shard.c_str(), 0600), 0);
  writer = ::open(shard.c_str(), O_RDWR | O_NONBLOCK);
  ASSERT_GE(writer, 0);
  auto store = WeightStore::open(dir + "/piped");
  ::close(writer);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find(shard +
                                          ": not a regular file (a named "
                                          "pipe)"),
            std::string::npos)
      << store.status().message();
}

TEST_F(SafetensorsTest, MalformedEntries) {
  expectOpenError(
      fileBytes(R"({"nodtype":{"shape":[1],"data_offsets":[0,1]}})", "1"),
      {"tensor 'nodtype'", "missing field 'dtype'"});
  expectOpenError(
      fileBytes(R"({"noshape":{"dtype":"U8","data_offsets":[0,1]}})", "1"),
      {"tensor 'noshape'", "missing field 'shape'"});
  expectOpenError(fileBytes(R"({"nooff":{"dtype":"U8","shape":[1]}})", "1"),
                  {"tensor 'nooff'", "missing field 'data_offsets'"});
  expectOpenError(fileBytes(R"({"extra":{"dtype":"U8","shape":[1],)"
                            R"("data_offsets":[0,1],"scale":2}})",
                            "1"),
                  {"tensor 'extra'", "unexpected field 'scale'"});
  expectOpenError(fileBytes(R"({"num":7})", ""),
                  {"tensor 'num'", "entry is 7, expected an object"});
  expectOpenError(fileBytes(R"({"d":{"dtype":4,"shape":[1],)"
                            R"("data_offsets":[0,1]}})",
                            "1"),
                  {"tensor 'd'", "dtype is 4, expected a string"});
}

TEST_F(SafetensorsTest, DuplicateNameInOneHeader) {
  expectOpenError(fileBytes(R"({"dup":{"dtype":"U8","shape":[1],)"
                            R"("data_offsets":[0,1]},)"
                            R"("dup":{"dtype":"U8","shape":[1],)"
                            R"("data_offsets":[1,2]}})",
                            "12"),
                  {"duplicate key 'dup'"});
}

//===----------------------------------------------------------------------===//
// Bad directories
//===----------------------------------------------------------------------===//

TEST_F(SafetensorsTest, EmptyDirectory) {
  write("README", "nothing here", "empty");
  expectStoreError("empty", {"empty", "no model.safetensors"},
                   StatusCode::NotFound);
}

TEST_F(SafetensorsTest, IndexNamesMissingShard) {
  writeSharded("missing", R"({"a": "model-00001-of-00002.safetensors",
    "b": "model-00001-of-00002.safetensors",
    "c": "model-00003-of-00002.safetensors"})");
  expectStoreError("missing",
                   {"model.safetensors.index.json",
                    "names shard 'model-00003-of-00002.safetensors'",
                    "does not exist"},
                   StatusCode::NotFound);
}

TEST_F(SafetensorsTest, IndexMapsTensorToShardLackingIt) {
  writeSharded("lacking", R"({"a": "model-00001-of-00002.safetensors",
    "b": "model-00001-of-00002.safetensors",
    "c": "model-00001-of-00002.safetensors",
    "d": "model-00002-of-00002.safetensors"})");
  expectStoreError("lacking",
                   {"model.safetensors.index.json", "tensor 'c'",
                    "mapped to shard "
                    "'model-00001-of-00002.safetensors'",
                    "does not contain it", "it is in", "model-00002-of-00002"});
}

TEST_F(SafetensorsTest, DuplicateTensorAcrossShards) {
  writeSharded("dup", kGoodMap);
  write("model-00002-of-00002.safetensors",
        safetensorsBytes({{"c", "BF16", {1}, "\x80\x3F"},
                          {"a", "F32", {1}, bytesOf<float>({3.0f})}}),
        "dup");
  expectStoreError("dup", {"tensor 'a' is in two shards",
                           "model-00001-of-00002.safetensors",
                           "model-00002-of-00002.safetensors"});
}

TEST_F(SafetensorsTest, ShardTensorMissingFromIndex) {
  writeSharded("unlisted", R"({"a": "model-00001-of-00002.safetensors",
    "c": "model-00002-of-00002.safetensors"})");
  expectStoreError("unlisted", {"model-00001-of-00002.safetensors",
                                "tensor 'b' is not listed in",
                                "model.safetensors.index.json"});
}

TEST_F(SafetensorsTest, TruncatedShard) {
  writeSharded("truncated", kGoodMap);
  std::string shard =
      safetensorsBytes({{"c", "BF16", {4}, std::string(8, '\x01')}});
  write("model-00002-of-00002.safetensors", shard.substr(0, shard.size() - 2),
        "truncated");
  expectStoreError("truncated", {"model-00002-of-00002.safetensors",
                                 "tensor 'c'", "truncated"});
}

TEST_F(SafetensorsTest, BadIndexFiles) {
  writeSharded("escape", R"({"a": "../model-00001-of-00002.safetensors"})");
  expectStoreError("escape",
                   {"tensor 'a'", "'../model-00001-of-00002.safetensors'",
                    "expected a plain file name"});
  write("model.safetensors.index.json", R"({"metadata": {}})", "nomap");
  expectStoreError(
      "nomap", {"model.safetensors.index.json", "missing field 'weight_map'"});
  write("model.safetensors.index.json", R"({"weight_map": {"a": 3}})",
        "notstring");
  expectStoreError("notstring",
                   {"tensor 'a'", "is 3", "expected a shard file name"});
  write("model.safetensors.index.json", R"({"weight_map": {}})", "emptymap");
  expectStoreError("emptymap", {"weight_map is empty"});
  write("model.safetensors.index.json", R"({"weight_map": )", "badjson");
  expectStoreError("badjson", {"model.safetensors.index.json: not valid JSON"});
}

//===----------------------------------------------------------------------===//
// Golden checkpoints (models/tiny-a, models/tiny-c)
//===----------------------------------------------------------------------===//

/// Opens `relative` under the golden directory (models/ of the repository);
/// fails the test when the data is missing.
#define OPEN_GOLDEN(store, relative)                                   \
  std::string goldenPath_ =                                                    \
      std::string(COMPRESSA_GOLDEN_DIR) + "/" + relative;                      \
  if (!std::filesystem::is_directory(goldenPath_))                             \
    FAIL() << "golden checkpoint " << goldenPath_ << " not found";            \
  auto store##Result_ = WeightStore::open(goldenPath_);                        \
  ASSERT_TRUE(store##Result_.ok()) << store##Result_.status().toString();      \
  const WeightStore &store = **store##Result_

/// Expects tensor `name` to exist with `dtype` and `shape`.
void expectTensor(const WeightStore &store, const std::string &name,
                  DType dtype, const std::vector<int64_t> &shape) {
  const TensorView *view = store.find(name);
  ASSERT_NE(view, nullptr) << name;
  EXPECT_EQ(view->dtype, dtype) << name << " is " << dtypeName(view->dtype);
  EXPECT_EQ(view->shape, shape) << name << " is " << formatShape(view->shape);
  EXPECT_EQ(view->nbytes,
            static_cast<size_t>(view->numElements()) * dtypeSize(dtype));
}

TEST(GoldenCheckpointTest, TinyAQuant) {
  OPEN_GOLDEN(store, "tiny-a/quant");
  EXPECT_EQ(store.numTensors(), 498u);
  expectTensor(store, "layers.1.attn.wq_a.weight", DType::F8E4M3, {24, 64});
  expectTensor(store, "layers.1.attn.wq_a.scale", DType::F8E8M0, {1, 1});
  expectTensor(store, "layers.1.ffn.experts.0.w1.weight", DType::I8, {32, 32});
  // Every FP8 scale decodes to a finite power of two.
  for (const std::string &name : store.names()) {
    const TensorView *view = store.find(name);
    if (view->dtype != DType::F8E8M0)
      continue;
    for (size_t i = 0; i < view->nbytes; ++i)
      EXPECT_TRUE(std::isfinite(f8e8m0ToFloat(view->data[i]))) << name;
  }
}

TEST(GoldenCheckpointTest, TinyCQuant) {
  OPEN_GOLDEN(store, "tiny-c/quant");
  EXPECT_EQ(store.numTensors(), 361u);
  expectTensor(store, "layers.1.attn.wq_a.weight", DType::F8E4M3, {48, 128});
  expectTensor(store, "layers.1.ffn.experts.0.w1.weight", DType::I8, {64, 64});
}

TEST(GoldenCheckpointTest, TinyAFloat) {
  OPEN_GOLDEN(store, "tiny-a/float");
  EXPECT_EQ(store.numTensors(), 304u);
  expectTensor(store, "layers.1.attn.wq_a.weight", DType::F32, {24, 64});
  expectTensor(store, "layers.1.ffn.experts.0.w1.weight", DType::F32, {32, 64});
}

} // namespace
} // namespace compressa
