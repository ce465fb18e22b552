// SPDX-License-Identifier: Apache-2.0
// Small files must not cost big memory: the bytes the runtime allocates while
// reading a hostile safetensors header, index or tokenizer.json stay a small
// multiple of the file. This binary replaces the global operator new/delete
// to count the bytes live (current) and their high-water mark (peak); each
// test measures the peak above what was live before the call, divided by
// the input's size.
//
// Figures (Release, gcc), peak bytes allocated ÷ input bytes, measured with
// this file on the code before the fix (a DOM of std::string + two vectors
// per JSON value; a tokenizer with std::string per id, unordered_maps of
// std::string, tables sized by the largest id) and after it:
//   test                                   before            after
//   10 MB JSON [0,0,...] (the DOM's worst)  124.8x            8.0x
//   10 MB safetensors header, tiny values    46.5x            8.0x
//   10 MB model.safetensors.index.json       63.4x            6.3x
//   10 MB tokenizer.json, short vocab        24.2x            5.5x
//     (retained by the loaded tokenizer)      7.1x            2.9x
//   10 MB tokenizer.json, added tokens       19.0x            8.1x
//   20 KB tokenizer.json, id 2^24-1         688 MB (30420x)   refused, 0.12 MB
// The JSON bound is structural: 16 bytes per value and at least 2 input
// bytes per value (json.h). The thresholds leave a margin over "after".
#include "runtime/tokenizer/tokenizer.h"
#include "runtime/weights/json.h"
#include "runtime/weights/safetensors.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <new>
#include <string>

namespace {

std::atomic<size_t> liveBytes{0};
std::atomic<size_t> peakBytes{0};

/// Each block carries its size in a 16-byte header (keeps max_align_t).
constexpr size_t kHeader = 16;

void *countedAlloc(size_t size) {
  void *raw = std::malloc(size + kHeader);
  if (!raw)
    throw std::bad_alloc();
  *static_cast<size_t *>(raw) = size;
  size_t now = liveBytes.fetch_add(size) + size;
  size_t peak = peakBytes.load();
  while (now > peak && !peakBytes.compare_exchange_weak(peak, now)) {
  }
  return static_cast<char *>(raw) + kHeader;
}

void countedFree(void *p) {
  if (!p)
    return;
  void *raw = static_cast<char *>(p) - kHeader;
  liveBytes.fetch_sub(*static_cast<size_t *>(raw));
  std::free(raw);
}

} // namespace

void *operator new(size_t size) { return countedAlloc(size); }
void *operator new[](size_t size) { return countedAlloc(size); }
void *operator new(size_t size, const std::nothrow_t &) noexcept {
  try {
    return countedAlloc(size);
  } catch (...) {
    return nullptr;
  }
}
void *operator new[](size_t size, const std::nothrow_t &) noexcept {
  try {
    return countedAlloc(size);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void *p) noexcept { countedFree(p); }
void operator delete[](void *p) noexcept { countedFree(p); }
void operator delete(void *p, size_t) noexcept { countedFree(p); }
void operator delete[](void *p, size_t) noexcept { countedFree(p); }

namespace compressa {
namespace {

/// Peak bytes allocated above the level live when it was made.
class PeakMeter {
public:
  PeakMeter() : base(liveBytes.load()) { peakBytes.store(base); }
  size_t peak() const { return peakBytes.load() - base; }
  size_t retained() const { return liveBytes.load() - base; }

private:
  size_t base;
};

constexpr size_t kTenMB = size_t(10) << 20;

std::string lengthPrefix(uint64_t length) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i)
    out[i] = static_cast<char>((length >> (8 * i)) & 0xFF);
  return out;
}

class MemoryBoundsTest : public ::testing::Test {
protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "compressa_mem_XXXXXX";
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    ASSERT_NE(::mkdtemp(buffer.data()), nullptr);
    dir = buffer.data();
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  std::string write(const std::string &name, const std::string &bytes) {
    std::string path = dir + "/" + name;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path;
  }
  static void report(const char *what, size_t peak, size_t input) {
    std::printf("%s: input %zu bytes, peak %zu bytes allocated (%.1fx)\n",
                what, input, peak, double(peak) / double(input));
  }
  std::string dir;
};

/// `count` copies of `number` as a JSON array: "[0,0,...]" is the most
/// values per byte; "[10,10,...]" puts 10 MB just under the default limit of
/// 4M values.
std::string numbers(size_t count, const char *number = "0") {
  std::string out = "[";
  for (size_t i = 0; i < count; ++i) {
    if (i)
      out += ",";
    out += number;
  }
  return out + "]";
}

TEST_F(MemoryBoundsTest, JsonOfTinyValues) {
  // 5M one-digit numbers in 10 MB: the DOM's worst case.
  std::string text = numbers(kTenMB / 2 - 1);
  JsonLimits limits;
  limits.maxValues = size_t(1) << 23;
  PeakMeter meter;
  {
    StatusOr<JsonDocument> doc = parseJson(text, limits);
    ASSERT_TRUE(doc.ok()) << doc.status().toString();
    EXPECT_EQ(doc->size(), kTenMB / 2 - 1);
  }
  report("JSON [0,0,...]", meter.peak(), text.size());
  EXPECT_LT(meter.peak(), 9 * text.size()); // 8.0x
}

TEST_F(MemoryBoundsTest, SafetensorsHeaderOfTinyValues) {
  // Zero-size tensors with long shapes ([0,10,10,...]): ~3.5M values in
  // 10 MB, under the parser's default limit of 4M.
  std::string header = "{";
  std::string shape = "[0," + numbers(799, "10").substr(1);
  for (int t = 0; header.size() + shape.size() + 64 < kTenMB; ++t) {
    if (t)
      header += ",";
    header += "\"t" + std::to_string(t) + "\":{\"dtype\":\"U8\",\"shape\":" +
              shape + ",\"data_offsets\":[0,0]}";
  }
  header += "}";
  header.resize(kTenMB, ' ');
  std::string path =
      write("model.safetensors", lengthPrefix(header.size()) + header);
  size_t input = header.size();
  header.clear();
  header.shrink_to_fit();
  PeakMeter meter;
  {
    auto file = SafetensorsFile::open(path);
    ASSERT_TRUE(file.ok()) << file.status().toString();
    EXPECT_GT((*file)->numTensors(), 4000u);
  }
  report("safetensors header", meter.peak(), input);
  EXPECT_LT(meter.peak(), 10 * input); // 8.0x
}

TEST_F(MemoryBoundsTest, IndexOfTinyValues) {
  // A 10 MB index whose "metadata" is ~3.5M numbers; the weight_map names
  // a shard that does not exist, so opening fails after the parse.
  std::string index = "{\"metadata\":" + numbers((kTenMB - 200) / 3, "10") +
                      ",\"weight_map\":{\"a\":\"missing.safetensors\"}}";
  std::string path = write("model.safetensors.index.json", index);
  size_t input = index.size();
  index.clear();
  index.shrink_to_fit();
  PeakMeter meter;
  {
    auto store = WeightStore::open(dir);
    ASSERT_FALSE(store.ok());
    EXPECT_NE(store.status().message().find("missing.safetensors"),
              std::string::npos)
        << store.status().message();
  }
  report("safetensors index", meter.peak(), input);
  EXPECT_LT(meter.peak(), 8 * input); // 6.3x
}

/// The 256 ByteLevel byte symbols, the order GPT-2 gives them ids in.
std::string byteSymbol(int b) {
  // GPT-2 bytes_to_unicode, as in bpe.cc.
  static int table[256];
  static bool built = false;
  if (!built) {
    int next = 256;
    for (int i = 0; i < 256; ++i) {
      bool direct = (i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) ||
                    (i >= 0xAE && i <= 0xFF);
      table[i] = direct ? i : next++;
    }
    built = true;
  }
  int cp = table[b];
  std::string out;
  if (cp < 0x80) {
    out += char(cp);
  } else {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  }
  return out;
}

/// A valid byte-level tokenizer.json: the 256 byte symbols, then the
/// vocabulary entries `extra` gives (ids counting on), then `addedTokens`.
std::string tokenizerJson(const std::string &extraVocab,
                          const std::string &addedTokens) {
  std::string vocab;
  for (int b = 0; b < 256; ++b) {
    std::string sym = byteSymbol(b);
    if (sym == "\"" || sym == "\\")
      sym = "\\" + sym;
    vocab += (b ? ",\"" : "\"") + sym + "\":" + std::to_string(b);
  }
  return "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,"
         "\"added_tokens\":[" +
         addedTokens +
         "],\"normalizer\":null,"
         "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
         "\"trim_offsets\":true,\"use_regex\":true},"
         "\"post_processor\":null,"
         "\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,"
         "\"trim_offsets\":true,\"use_regex\":true},"
         "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,"
         "\"continuing_subword_prefix\":null,\"end_of_word_suffix\":null,"
         "\"fuse_unk\":false,\"byte_fallback\":false,\"ignore_merges\":false,"
         "\"vocab\":{" +
         vocab + extraVocab + "},\"merges\":[]}}";
}

TEST_F(MemoryBoundsTest, TokenizerOfShortEntries) {
  // ~1M vocabulary entries of 3-4 letters: the most tokens per byte.
  std::string extra;
  int64_t id = 256;
  const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  for (int64_t n = 0; extra.size() < kTenMB - 20000; ++n, ++id) {
    std::string word;
    for (int64_t k = n; word.size() < 3 || k; k /= 52)
      word += letters[k % 52];
    extra += ",\"" + word + "\":" + std::to_string(id);
  }
  std::string text = tokenizerJson(extra, "");
  extra.clear();
  extra.shrink_to_fit();
  PeakMeter meter;
  size_t retained = 0;
  {
    auto tok = Tokenizer::fromJson(text, "big.json");
    ASSERT_TRUE(tok.ok()) << tok.status().toString();
    EXPECT_EQ((*tok)->vocabSize(), id);
    retained = meter.retained();
    auto ids = (*tok)->encode("abc abd");
    ASSERT_TRUE(ids.ok()) << ids.status().toString();
  }
  report("tokenizer.json", meter.peak(), text.size());
  std::printf("tokenizer.json: %zu bytes retained by the tokenizer (%.1fx)\n",
              retained, double(retained) / double(text.size()));
  EXPECT_LT(meter.peak(), 7 * text.size()); // 5.5x
  EXPECT_LT(retained, 4 * text.size());     // 2.9x
}

TEST_F(MemoryBoundsTest, TokenizerOfManyAddedTokens) {
  // ~250k added tokens of 8-12 bytes each (their ids follow the
  // vocabulary's, as the reference assigns them).
  std::string added;
  int64_t id = 256;
  for (int i = 0; added.size() < kTenMB - 20000; ++i, ++id) {
    if (i)
      added += ",";
    added += "{\"id\":" + std::to_string(id) + ",\"content\":\"<t" +
             std::to_string(i) + ">\",\"special\":true}";
  }
  std::string text = tokenizerJson("", added);
  added.clear();
  added.shrink_to_fit();
  PeakMeter meter;
  size_t retained = 0;
  {
    auto tok = Tokenizer::fromJson(text, "added.json");
    ASSERT_TRUE(tok.ok()) << tok.status().toString();
    EXPECT_EQ((*tok)->vocabSize(), id);
    retained = meter.retained();
    auto ids = (*tok)->encode("x<t5>y<t123>");
    ASSERT_TRUE(ids.ok()) << ids.status().toString();
    EXPECT_EQ(ids->size(), 4u);
  }
  report("tokenizer.json of added tokens", meter.peak(), text.size());
  std::printf("tokenizer.json of added tokens: %zu bytes retained (%.1fx)\n",
              retained, double(retained) / double(text.size()));
  EXPECT_LT(meter.peak(), 10 * text.size()); // 8.1x
}

TEST_F(MemoryBoundsTest, TokenizerIdFarBeyondTheVocabulary) {
  // 20 KB of file, one vocabulary entry with id 2^24 - 1: tables sized by
  // the largest id took 676 MB; such an id is refused now, before any table.
  std::string padding;
  int64_t entries = 256;
  for (int i = 0; padding.size() < 20000; ++i, ++entries)
    padding += ",\"w" + std::to_string(i) + "\":" + std::to_string(256 + i);
  padding += ",\"<huge>\":16777215";
  ++entries;
  std::string text = tokenizerJson(padding, "");
  PeakMeter meter;
  {
    auto tok = Tokenizer::fromJson(text, "huge-id.json");
    ASSERT_FALSE(tok.ok());
    EXPECT_EQ(tok.status().message(),
              "huge-id.json: model.vocab['<huge>']: id 16777215 is far beyond "
              "the vocabulary of " +
                  std::to_string(entries) + " entries (ids must be below " +
                  std::to_string(2 * entries + 256) +
                  ", twice the entries plus 256)");
  }
  report("tokenizer.json with id 2^24-1", meter.peak(), text.size());
  EXPECT_LT(meter.peak(), size_t(1) << 20); // 0.12 MB
}

} // namespace
} // namespace compressa
