//===- bpe.h - Byte-level BPE merging ----------------------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// The BPE model of a byte-level tokenizer, working on raw bytes: a pre-token's
// bytes start as one symbol each (the vocabulary id of the byte's ByteLevel
// character), then merges apply by rank — lowest rank first, leftmost among
// equal ranks — exactly as the reference library's Word::merge_all does.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_RUNTIME_TOKENIZER_BPE_H
#define COMPRESSA_RUNTIME_TOKENIZER_BPE_H

#include "runtime/base/status.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace compressa {
namespace tokenizer_internal {

/// GPT-2's bytes_to_unicode: the character that stands for byte `b` in a
/// ByteLevel vocabulary.
uint32_t byteToCodePoint(uint8_t b);
/// The byte that character `codePoint` stands for, or -1.
int codePointToByte(uint32_t codePoint);
/// `text`'s characters mapped to bytes when every one of them stands for a
/// byte; false (and `bytes` unspecified) otherwise.
bool byteLevelToBytes(std::string_view text, std::string &bytes);

/// The merge table: (left id, right id) -> (rank, merged id).
class MergeTable {
public:
  struct Entry {
    uint32_t rank;
    int32_t merged;
  };
  /// Sizes the table for `count` merges.
  void reserve(size_t count);
  /// Inserts or replaces (the later of two equal pairs wins, as in the
  /// reference's HashMap collect).
  void insert(int32_t left, int32_t right, Entry entry);
  /// The entry of a pair, or nullptr.
  const Entry *find(int32_t left, int32_t right) const {
    if (keys.empty())
      return nullptr;
    uint64_t key = pairKey(left, right);
    size_t slot = hash(key);
    while (true) {
      uint64_t k = keys[slot];
      if (k == key)
        return &values[slot];
      if (k == kEmpty)
        return nullptr;
      slot = (slot + 1) & mask;
    }
  }
  size_t size() const { return count; }

private:
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  static uint64_t pairKey(int32_t left, int32_t right) {
    return (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
  }
  size_t hash(uint64_t key) const {
    return size_t((key * 0x9E3779B97F4A7C15ull) >> shift) & mask;
  }
  void grow();

  std::vector<uint64_t> keys;
  std::vector<Entry> values;
  size_t mask = 0;
  unsigned shift = 64;
  size_t count = 0;
};

/// Merges the bytes of one pre-token.
class BpeModel {
public:
  /// The vocabulary id of each byte's symbol, -1 where the vocabulary lacks it.
  int32_t byteIds[256];
  MergeTable merges;
  /// ignore_merges: a pre-token whose bytes are a vocabulary entry is that
  /// entry, merges or not.
  bool ignoreMerges = false;
  /// Vocabulary entries by their bytes (filled only when ignoreMerges).
  std::unordered_map<std::string, int32_t> idsByBytes;

  /// Appends the ids of pre-token `bytes` (non-empty). Fails when a byte has
  /// no symbol in the vocabulary; the message names the byte.
  Status encode(std::string_view bytes, std::vector<int32_t> &ids) const;
};

} // namespace tokenizer_internal
} // namespace compressa

#endif // COMPRESSA_RUNTIME_TOKENIZER_BPE_H
