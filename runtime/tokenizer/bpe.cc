// SPDX-License-Identifier: Apache-2.0
// Byte-level BPE merging (see bpe.h).
#include "runtime/tokenizer/bpe.h"

#include "runtime/tokenizer/utf8.h"

#include <algorithm>

namespace compressa {
namespace tokenizer_internal {
namespace {

struct ByteMap {
  uint32_t toCodePoint[256];
  int16_t toByte[324];
  ByteMap() {
    for (int16_t &b : toByte)
      b = -1;
    bool direct[256] = {};
    for (int b = '!'; b <= '~'; ++b)
      direct[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b)
      direct[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b)
      direct[b] = true;
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      toCodePoint[b] = direct[b] ? uint32_t(b) : next++;
      toByte[toCodePoint[b]] = int16_t(b);
    }
  }
};

const ByteMap &byteMap() {
  static const ByteMap map;
  return map;
}

} // namespace

uint32_t byteToCodePoint(uint8_t b) { return byteMap().toCodePoint[b]; }

int codePointToByte(uint32_t codePoint) {
  return codePoint < 324 ? byteMap().toByte[codePoint] : -1;
}

bool byteLevelToBytes(std::string_view text, std::string &bytes) {
  bytes.clear();
  size_t pos = 0;
  while (pos < text.size()) {
    if (utf8::validSequenceLength(text.substr(pos)) == 0)
      return false;
    int b = codePointToByte(utf8::decodeAt(text, pos));
    if (b < 0)
      return false;
    bytes += char(b);
  }
  return true;
}

void MergeTable::reserve(size_t n) {
  size_t capacity = 16;
  while (capacity < n * 2)
    capacity *= 2;
  if (capacity <= keys.size())
    return;
  std::vector<uint64_t> oldKeys = std::move(keys);
  std::vector<Entry> oldValues = std::move(values);
  keys.assign(capacity, kEmpty);
  values.assign(capacity, Entry{0, 0});
  mask = capacity - 1;
  shift = 64;
  for (size_t c = capacity; c > 1; c >>= 1)
    --shift;
  count = 0;
  for (size_t i = 0; i < oldKeys.size(); ++i)
    if (oldKeys[i] != kEmpty)
      insert(int32_t(oldKeys[i] >> 32), int32_t(uint32_t(oldKeys[i])),
             oldValues[i]);
}

void MergeTable::grow() { reserve(std::max<size_t>(count + 1, keys.size())); }

void MergeTable::insert(int32_t left, int32_t right, Entry entry) {
  if ((count + 1) * 2 > keys.size())
    grow();
  uint64_t key = pairKey(left, right);
  size_t slot = hash(key);
  while (keys[slot] != kEmpty && keys[slot] != key)
    slot = (slot + 1) & mask;
  if (keys[slot] == kEmpty) {
    keys[slot] = key;
    ++count;
  }
  values[slot] = entry;
}

namespace {

struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  uint32_t length; // bytes; 0 once merged into its left neighbour
};

struct Candidate {
  uint32_t rank;
  uint32_t pos;
  int32_t merged;
};

/// Heap order: the top is the lowest rank, then the lowest position.
struct LaterCandidate {
  bool operator()(const Candidate &a, const Candidate &b) const {
    if (a.rank != b.rank)
      return a.rank > b.rank;
    return a.pos > b.pos;
  }
};

} // namespace

Status BpeModel::encode(std::string_view bytes, std::vector<int32_t> &ids) const {
  const size_t n = bytes.size();
  if (ignoreMerges && n > 1) {
    auto it = idsByBytes.find(std::string(bytes));
    if (it != idsByBytes.end()) {
      ids.push_back(it->second);
      return okStatus();
    }
  }
  std::vector<Symbol> symbols(n);
  for (size_t i = 0; i < n; ++i) {
    uint8_t b = uint8_t(bytes[i]);
    if (byteIds[b] < 0)
      return COMPRESSA_ERROR(DataLoss,
                             "byte 0x%02X has no token: model.vocab lacks its "
                             "ByteLevel symbol U+%04X and there is no "
                             "unk_token",
                             unsigned(b), unsigned(byteToCodePoint(b)));
    symbols[i] = {byteIds[b], int32_t(i) - 1,
                  i + 1 < n ? int32_t(i + 1) : -1, 1};
  }
  std::vector<Candidate> queue;
  queue.reserve(n);
  for (size_t i = 0; i + 1 < n; ++i)
    if (const MergeTable::Entry *m = merges.find(symbols[i].id, symbols[i + 1].id))
      queue.push_back({m->rank, uint32_t(i), m->merged});
  std::make_heap(queue.begin(), queue.end(), LaterCandidate());
  while (!queue.empty()) {
    std::pop_heap(queue.begin(), queue.end(), LaterCandidate());
    Candidate top = queue.back();
    queue.pop_back();
    Symbol &left = symbols[top.pos];
    if (left.length == 0 || left.next < 0)
      continue;
    Symbol &right = symbols[size_t(left.next)];
    const MergeTable::Entry *current = merges.find(left.id, right.id);
    if (!current || current->merged != top.merged)
      continue; // a stale candidate
    left.id = top.merged;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (left.next >= 0)
      symbols[size_t(left.next)].prev = int32_t(top.pos);
    if (left.prev >= 0) {
      const Symbol &before = symbols[size_t(left.prev)];
      if (const MergeTable::Entry *m = merges.find(before.id, left.id)) {
        queue.push_back({m->rank, uint32_t(left.prev), m->merged});
        std::push_heap(queue.begin(), queue.end(), LaterCandidate());
      }
    }
    if (left.next >= 0) {
      const Symbol &after = symbols[size_t(left.next)];
      if (const MergeTable::Entry *m = merges.find(left.id, after.id)) {
        queue.push_back({m->rank, top.pos, m->merged});
        std::push_heap(queue.begin(), queue.end(), LaterCandidate());
      }
    }
  }
  for (const Symbol &s : symbols)
    if (s.length != 0)
      ids.push_back(s.id);
  return okStatus();
}

} // namespace tokenizer_internal
} // namespace compressa
