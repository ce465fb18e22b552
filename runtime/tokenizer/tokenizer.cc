// SPDX-License-Identifier: Apache-2.0
// The byte-level BPE tokenizer: tokenizer.json loading (strict: whatever it
// cannot reproduce exactly is an error naming the field) and encode/decode.
//
// Reference behaviour reproduced (Hugging Face `tokenizers`, checked by
// test/tokenizer/):
//  - added tokens are cut out first, leftmost-longest, those with
//    "normalized": false in a first pass over the text and the others in a
//    second pass over the rest (there is no normalizer, so the second pass
//    sees the same text);
//  - each remaining segment goes through the pre-tokenizer steps in order,
//    every Split (behaviour Isolated) running separately on each piece the
//    previous steps made, keeping matches and the gaps between them;
//  - each piece is merged by BPE (bpe.h) unless ignore_merges finds it whole
//    in the vocabulary;
//  - encode is encode(text, add_special_tokens=False): a post-processor's
//    template tokens are not added, as DeepSeek encodes;
//  - decode maps each token's characters back to bytes when all of them are
//    ByteLevel characters, and uses the token text as is otherwise (the
//    ByteLevel decoder's rule, which also covers added tokens such as
//    "<｜User｜>"), then replaces invalid UTF-8 with U+FFFD.
#include "runtime/tokenizer/tokenizer.h"

#include "runtime/base/file.h"
#include "runtime/tokenizer/bpe.h"
#include "runtime/tokenizer/split_regex.h"
#include "runtime/tokenizer/utf8.h"
#include "runtime/weights/json.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <mutex>
#include <unordered_map>

namespace compressa {

Tokenizer::~Tokenizer() = default;

StatusOr<std::vector<std::string>> Tokenizer::preTokenize(std::string_view) const {
  return COMPRESSA_ERROR(Unimplemented, "this tokenizer has no pre-tokenizer view");
}

namespace {

using namespace tokenizer_internal;

/// Ids are kept below this so that id-indexed tables stay small on hostile
/// files; real vocabularies are far smaller (DeepSeek: 129280).
constexpr int64_t kMaxId = int64_t(1) << 24;
/// tokenizer.json files larger than this are refused.
constexpr size_t kMaxFileBytes = size_t(1) << 30;
/// Pre-tokens longer than this are not cached.
constexpr size_t kMaxCachedBytes = 256;
/// The cache is emptied when it holds this many pre-tokens.
constexpr size_t kMaxCacheEntries = size_t(1) << 18;

/// Most Split steps in a pre-tokenizer (they nest on the stack when encoding).
constexpr size_t kMaxSplits = 64;

/// GPT-2's split regex: what ByteLevel(use_regex=true) adds.
constexpr char kByteLevelRegex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|"
    "\\s+(?!\\S)|\\s+";

/// Finds the longest added token at a position (byte trie).
class ByteTrie {
public:
  ByteTrie() : nodes(1) {}
  void insert(std::string_view text, int32_t id) {
    size_t node = 0;
    for (char c : text) {
      uint8_t b = uint8_t(c);
      int32_t child = findChild(node, b);
      if (child < 0) {
        child = int32_t(nodes.size());
        nodes[node].edges.push_back({b, child});
        std::sort(nodes[node].edges.begin(), nodes[node].edges.end());
        nodes.emplace_back();
      }
      node = size_t(child);
    }
    nodes[node].token = id;
    starts[uint8_t(text[0])] = true;
  }
  bool empty() const { return nodes.size() == 1; }
  /// The byte length and id of the longest token starting at text[pos], or
  /// length 0.
  size_t longestAt(std::string_view text, size_t pos, int32_t &id) const {
    if (!starts[uint8_t(text[pos])])
      return 0;
    size_t node = 0, best = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      int32_t child = findChild(node, uint8_t(text[i]));
      if (child < 0)
        break;
      node = size_t(child);
      if (nodes[node].token >= 0) {
        best = i + 1 - pos;
        id = nodes[node].token;
      }
    }
    return best;
  }

private:
  struct Node {
    int32_t token = -1;
    std::vector<std::pair<uint8_t, int32_t>> edges;
  };
  int32_t findChild(size_t node, uint8_t b) const {
    const auto &edges = nodes[node].edges;
    auto it = std::lower_bound(edges.begin(), edges.end(),
                               std::pair<uint8_t, int32_t>(b, INT32_MIN));
    return it != edges.end() && it->first == b ? it->second : -1;
  }
  std::vector<Node> nodes;
  bool starts[256] = {};
};

/// Calls onPiece(text, id) for the added tokens of `trie` in `text`
/// (leftmost-longest) with their ids, and for the text between them with -1.
template <class F> Status splitAdded(const ByteTrie &trie, std::string_view text, F &&onPiece) {
  if (trie.empty())
    return onPiece(text, -1);
  size_t segmentStart = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    int32_t id = -1;
    size_t length = trie.longestAt(text, pos, id);
    if (length == 0) {
      ++pos;
      continue;
    }
    if (pos > segmentStart)
      COMPRESSA_RETURN_IF_ERROR(
          onPiece(text.substr(segmentStart, pos - segmentStart), -1));
    COMPRESSA_RETURN_IF_ERROR(onPiece(text.substr(pos, length), id));
    pos += length;
    segmentStart = pos;
  }
  if (segmentStart < text.size())
    COMPRESSA_RETURN_IF_ERROR(onPiece(text.substr(segmentStart), -1));
  return okStatus();
}

/// Per-call state of encode.
struct EncodeState {
  /// The start of the whole text, for offsets in messages.
  const char *textBegin = nullptr;
  RegexScratch scratch;
  std::vector<std::vector<Span>> matches;
  std::vector<int32_t> ids;
};

/// Strings -> ids in three flat arrays: the keys' bytes in one pool, one
/// 12-byte entry per key and an open-addressing table of entry numbers. The
/// vocabulary is the tokenizer's largest table; an unordered_map of
/// std::string keys cost ~70 bytes per token besides the bytes themselves.
class StringIdMap {
public:
  /// Room for `count` keys holding `bytes` bytes in all.
  void reserve(size_t count, size_t bytes) {
    entries.reserve(count);
    pool.reserve(bytes);
    size_t capacity = 16;
    while (capacity < count + count / 2)
      capacity *= 2;
    if (capacity > slots.size())
      rehash(capacity);
  }
  /// Adds `key` unless present; false when it was.
  bool insert(std::string_view key, int32_t id) {
    if ((entries.size() + 1) * 3 > slots.size() * 2)
      rehash(std::max<size_t>(16, slots.size() * 2));
    size_t slot = findSlot(key);
    if (slots[slot] != 0)
      return false;
    entries.push_back({uint32_t(pool.size()), uint32_t(key.size()), id});
    pool.append(key.data(), key.size());
    slots[slot] = uint32_t(entries.size());
    return true;
  }
  /// The id of `key`, or -1.
  int32_t find(std::string_view key) const {
    if (slots.empty())
      return -1;
    uint32_t entry = slots[findSlot(key)];
    return entry == 0 ? -1 : entries[entry - 1].id;
  }
  size_t size() const { return entries.size(); }

private:
  struct Entry {
    uint32_t offset;
    uint32_t length;
    int32_t id;
  };
  std::string_view keyOf(const Entry &e) const {
    return std::string_view(pool.data() + e.offset, e.length);
  }
  size_t findSlot(std::string_view key) const {
    size_t mask = slots.size() - 1;
    size_t slot = std::hash<std::string_view>()(key) & mask;
    while (slots[slot] != 0 && keyOf(entries[slots[slot] - 1]) != key)
      slot = (slot + 1) & mask;
    return slot;
  }
  void rehash(size_t capacity) {
    slots.assign(capacity, 0);
    for (size_t i = 0; i < entries.size(); ++i)
      slots[findSlot(keyOf(entries[i]))] = uint32_t(i + 1);
  }

  std::string pool;
  std::vector<Entry> entries;
  /// 0: empty; otherwise 1 + the entry's index.
  std::vector<uint32_t> slots;
};

class BpeTokenizer final : public Tokenizer {
public:
  StatusOr<std::vector<int64_t>> encode(std::string_view text) const override;
  StatusOr<std::string> decode(const int64_t *ids, size_t count) const override;
  StatusOr<std::string> tokenBytes(int64_t id) const override;
  std::optional<int64_t> tokenId(std::string_view content) const override;
  int64_t vocabSize() const override { return int64_t(idKnown.size()); }
  StatusOr<std::vector<std::string>> preTokenize(std::string_view text) const override;

  std::string name;
  BpeModel model;
  std::vector<std::unique_ptr<SplitRegex>> splits;
  /// What id i decodes to: idBytesPool[idPieces[i].offset, + .length);
  /// idKnown tells which ids exist (kVocabId, kAddedId; 0 for a hole).
  std::string idBytesPool;
  struct Piece {
    uint32_t offset = 0;
    uint32_t length = 0;
  };
  std::vector<Piece> idPieces;
  std::vector<uint8_t> idKnown;
  static constexpr uint8_t kVocabId = 1;
  static constexpr uint8_t kAddedId = 2;
  std::string_view bytesOf(size_t id) const {
    return std::string_view(idBytesPool.data() + idPieces[id].offset,
                            idPieces[id].length);
  }
  StringIdMap vocabByString;
  StringIdMap addedByContent;
  ByteTrie rawAdded;        // "normalized": false
  ByteTrie normalizedAdded; // "normalized": true

private:
  Status checkText(std::string_view text) const;
  template <class F>
  Status preTokenizePiece(std::string_view piece, size_t level, EncodeState &state,
                          F &&emit) const;
  Status encodeSegment(std::string_view segment, EncodeState &state,
                       std::vector<int64_t> &out) const;
  Status encodePiece(std::string_view piece, EncodeState &state,
                     std::vector<int64_t> &out) const;

  mutable std::mutex cacheMutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;
};

Status BpeTokenizer::checkText(std::string_view text) const {
  if (text.size() > UINT32_MAX)
    return COMPRESSA_ERROR(InvalidArgument,
                           "text of %zu bytes is too long to encode at once "
                           "(at most 4 GiB)",
                           text.size());
  size_t bad = utf8::findInvalid(text);
  if (bad != std::string_view::npos)
    return COMPRESSA_ERROR(InvalidArgument,
                           "invalid UTF-8 at byte offset %zu (byte 0x%02X)",
                           bad, unsigned(uint8_t(text[bad])));
  return okStatus();
}

template <class F>
Status BpeTokenizer::preTokenizePiece(std::string_view piece, size_t level,
                                      EncodeState &state, F &&emit) const {
  if (level == splits.size())
    return emit(piece);
  std::vector<Span> &spans = state.matches[level];
  spans.clear();
  COMPRESSA_RETURN_IF_ERROR(splits[level]->findAll(piece, state.scratch, spans));
  // Recursion into deeper levels uses other vectors, so `spans` stays valid;
  // iterate by index over a copy of the count all the same.
  size_t count = spans.size();
  size_t previous = 0;
  for (size_t i = 0; i < count; ++i) {
    Span span = state.matches[level][i];
    if (span.begin > previous)
      COMPRESSA_RETURN_IF_ERROR(preTokenizePiece(
          piece.substr(previous, span.begin - previous), level + 1, state, emit));
    COMPRESSA_RETURN_IF_ERROR(preTokenizePiece(
        piece.substr(span.begin, span.end - span.begin), level + 1, state, emit));
    previous = span.end;
  }
  if (previous < piece.size())
    COMPRESSA_RETURN_IF_ERROR(
        preTokenizePiece(piece.substr(previous), level + 1, state, emit));
  return okStatus();
}

Status BpeTokenizer::encodePiece(std::string_view piece, EncodeState &state,
                                 std::vector<int64_t> &out) const {
  bool cacheable = piece.size() <= kMaxCachedBytes;
  std::string key;
  if (cacheable) {
    key.assign(piece.data(), piece.size());
    std::lock_guard<std::mutex> lock(cacheMutex);
    auto it = cache.find(key);
    if (it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return okStatus();
    }
  }
  state.ids.clear();
  COMPRESSA_RETURN_IF_ERROR(model.encode(piece, state.ids));
  out.insert(out.end(), state.ids.begin(), state.ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cacheMutex);
    if (cache.size() >= kMaxCacheEntries)
      cache.clear();
    cache.emplace(std::move(key), state.ids);
  }
  return okStatus();
}

Status BpeTokenizer::encodeSegment(std::string_view segment, EncodeState &state,
                                   std::vector<int64_t> &out) const {
  return preTokenizePiece(segment, 0, state, [&](std::string_view piece) {
    Status status = encodePiece(piece, state, out);
    if (!status.ok())
      return status.withContext("pre-token at byte offset %zu",
                                size_t(piece.data() - state.textBegin));
    return status;
  });
}

StatusOr<std::vector<int64_t>> BpeTokenizer::encode(std::string_view text) const {
  COMPRESSA_RETURN_IF_ERROR(checkText(text));
  std::vector<int64_t> out;
  out.reserve(text.size() / 3 + 1);
  EncodeState state;
  state.textBegin = text.data();
  state.matches.resize(splits.size());
  COMPRESSA_RETURN_IF_ERROR(splitAdded(
      rawAdded, text, [&](std::string_view piece, int32_t id) -> Status {
        if (id >= 0) {
          out.push_back(id);
          return okStatus();
        }
        return splitAdded(normalizedAdded, piece,
                          [&](std::string_view inner, int32_t innerId) -> Status {
                            if (innerId >= 0) {
                              out.push_back(innerId);
                              return okStatus();
                            }
                            return encodeSegment(inner, state, out);
                          });
      }));
  return out;
}

StatusOr<std::vector<std::string>>
BpeTokenizer::preTokenize(std::string_view text) const {
  COMPRESSA_RETURN_IF_ERROR(checkText(text));
  std::vector<std::string> pieces;
  if (text.empty())
    return pieces;
  EncodeState state;
  state.textBegin = text.data();
  state.matches.resize(splits.size());
  COMPRESSA_RETURN_IF_ERROR(
      preTokenizePiece(text, 0, state, [&](std::string_view piece) {
        pieces.emplace_back(piece);
        return okStatus();
      }));
  return pieces;
}

StatusOr<std::string> BpeTokenizer::decode(const int64_t *ids, size_t count) const {
  std::string bytes;
  for (size_t i = 0; i < count; ++i) {
    int64_t id = ids[i];
    if (id < 0 || id >= int64_t(idKnown.size()) || !idKnown[size_t(id)])
      return COMPRESSA_ERROR(OutOfRange,
                             "id %lld at position %zu is not in the vocabulary "
                             "(%s knows ids below %lld%s)",
                             static_cast<long long>(id), i, name.c_str(),
                             static_cast<long long>(idKnown.size()),
                             id >= 0 && id < int64_t(idKnown.size())
                                 ? ", but not this one"
                                 : "");
    bytes += bytesOf(size_t(id));
  }
  std::string text;
  text.reserve(bytes.size());
  utf8::appendLossy(bytes, text);
  return text;
}

StatusOr<std::string> BpeTokenizer::tokenBytes(int64_t id) const {
  if (id < 0 || id >= int64_t(idKnown.size()) || !idKnown[size_t(id)])
    return COMPRESSA_ERROR(OutOfRange, "id %lld is not in the vocabulary of %s",
                           static_cast<long long>(id), name.c_str());
  return std::string(bytesOf(size_t(id)));
}

std::optional<int64_t> BpeTokenizer::tokenId(std::string_view content) const {
  int32_t added = addedByContent.find(content);
  if (added >= 0)
    return added;
  int32_t id = vocabByString.find(content);
  if (id >= 0)
    return id;
  return std::nullopt;
}

//===----------------------------------------------------------------------===//
// Loading
//===----------------------------------------------------------------------===//

using Kind = JsonValue::Kind;

/// Reads the fields of tokenizer.json into a BpeTokenizer; every error names
/// the file and the field.
class Loader {
public:
  Loader(BpeTokenizer &tok) : tok(tok) {}
  Status load(const JsonValue &root);

private:
  struct AddedToken {
    std::string content;
    int64_t id;
    bool normalized;
  };

  Status fail(StatusCode code, const std::string &field, const std::string &what) {
    return Status(code, tok.name + ": " + field + ": " + what);
  }
  Status malformed(const std::string &field, const std::string &what) {
    return fail(StatusCode::DataLoss, field, what);
  }
  Status unsupported(const std::string &field, const std::string &what) {
    return fail(StatusCode::Unimplemented, field, what);
  }
  Status expectKind(const JsonValue &v, Kind kind, const std::string &field) {
    if (v.kind() == kind)
      return okStatus();
    return malformed(field, std::string("expected ") + JsonValue::kindName(kind) +
                                ", found " + JsonValue::kindName(v.kind()));
  }
  Status checkKeys(const JsonValue &object, const std::string &field,
                   std::initializer_list<const char *> allowed) {
    for (size_t i = 0; i < object.size(); ++i) {
      std::string_view key = object.memberKey(i);
      bool known = false;
      for (const char *a : allowed)
        known = known || key == a;
      if (!known)
        return unsupported(join(field, std::string(key)),
                           "unknown field (not supported by this tokenizer)");
    }
    return okStatus();
  }
  static std::string join(const std::string &field, const std::string &key) {
    return field.empty() ? key : field + "." + key;
  }
  static std::string index(const std::string &field, size_t i) {
    return field + "[" + std::to_string(i) + "]";
  }
  /// A top-level member that must be null when present.
  Status expectNull(const JsonValue &object, const char *key, const char *what) {
    const JsonValue *v = object.find(key);
    if (v && !v->isNull())
      return unsupported(key, what);
    return okStatus();
  }
  /// A boolean member; `fallback` when absent, error when `required`.
  Status getBool(const JsonValue &object, const char *key, const std::string &field,
                 bool &out, bool fallback, bool required = false) {
    const JsonValue *v = object.find(key);
    if (!v) {
      if (required)
        return malformed(join(field, key), "missing");
      out = fallback;
      return okStatus();
    }
    COMPRESSA_RETURN_IF_ERROR(expectKind(*v, Kind::Bool, join(field, key)));
    out = v->boolValue();
    return okStatus();
  }
  Status getType(const JsonValue &object, const std::string &field, std::string &type) {
    COMPRESSA_RETURN_IF_ERROR(expectKind(object, Kind::Object, field));
    const JsonValue *v = object.find("type");
    if (!v)
      return malformed(join(field, "type"), "missing");
    COMPRESSA_RETURN_IF_ERROR(expectKind(*v, Kind::String, join(field, "type")));
    type = v->stringValue();
    return okStatus();
  }
  Status getId(const JsonValue &v, const std::string &field, int64_t &id) {
    std::optional<int64_t> value = v.intValue();
    if (!value)
      return malformed(field, std::string("expected an integer id, found ") +
                                  JsonValue::kindName(v.kind()));
    if (*value < 0 || *value >= kMaxId)
      return malformed(field, "id " + std::to_string(*value) + " is outside [0, " +
                                  std::to_string(kMaxId) + ")");
    id = *value;
    return okStatus();
  }

  Status loadModel(const JsonValue &model);
  Status loadAddedTokens(const JsonValue *added);
  Status loadPreTokenizer(const JsonValue &step, const std::string &field);
  Status loadPostProcessor(const JsonValue &step, const std::string &field);
  Status loadDecoder(const JsonValue *decoder);
  Status addSplit(std::string_view pattern, bool literal, const std::string &field);
  Status finish();

  BpeTokenizer &tok;
  /// model.vocab (its ids checked by loadModel), read again by finish().
  const JsonValue *vocab = nullptr;
  std::vector<AddedToken> added;
  /// added_tokens by content: their index in `added`.
  StringIdMap addedIndex;
  bool unkToken = false;
  bool byteLevelSeen = false;
};

Status Loader::load(const JsonValue &root) {
  COMPRESSA_RETURN_IF_ERROR(expectKind(root, Kind::Object, "(top level)"));
  COMPRESSA_RETURN_IF_ERROR(checkKeys(root, "",
                                      {"version", "truncation", "padding",
                                       "added_tokens", "normalizer",
                                       "pre_tokenizer", "post_processor",
                                       "decoder", "model"}));
  if (const JsonValue *version = root.find("version"))
    COMPRESSA_RETURN_IF_ERROR(expectKind(*version, Kind::String, "version"));
  COMPRESSA_RETURN_IF_ERROR(
      expectNull(root, "truncation", "truncation is not supported (only null is)"));
  COMPRESSA_RETURN_IF_ERROR(
      expectNull(root, "padding", "padding is not supported (only null is)"));
  if (const JsonValue *normalizer = root.find("normalizer")) {
    // null, or an empty Sequence (a no-op some tokenizer.json files carry).
    const JsonValue *list = normalizer->find("normalizers");
    bool emptySequence = normalizer->isObject() && normalizer->size() == 2 &&
                         normalizer->find("type") &&
                         normalizer->find("type")->stringValue() == "Sequence" &&
                         list && list->isArray() && list->size() == 0;
    if (!normalizer->isNull() && !emptySequence)
      return unsupported("normalizer", "a normalizer is not supported (only null "
                                       "or an empty Sequence is)");
  }
  const JsonValue *model = root.find("model");
  if (!model)
    return malformed("model", "missing");
  COMPRESSA_RETURN_IF_ERROR(loadModel(*model));
  COMPRESSA_RETURN_IF_ERROR(loadAddedTokens(root.find("added_tokens")));
  const JsonValue *pre = root.find("pre_tokenizer");
  if (!pre || pre->isNull())
    return unsupported("pre_tokenizer",
                       "null; a byte-level BPE needs a ByteLevel pre-tokenizer");
  COMPRESSA_RETURN_IF_ERROR(loadPreTokenizer(*pre, "pre_tokenizer"));
  if (!byteLevelSeen)
    return unsupported("pre_tokenizer",
                       "no ByteLevel step; only byte-level BPE tokenizers are "
                       "supported");
  const JsonValue *post = root.find("post_processor");
  if (post && !post->isNull())
    COMPRESSA_RETURN_IF_ERROR(loadPostProcessor(*post, "post_processor"));
  COMPRESSA_RETURN_IF_ERROR(loadDecoder(root.find("decoder")));
  return finish();
}

Status Loader::loadModel(const JsonValue &model) {
  std::string type;
  COMPRESSA_RETURN_IF_ERROR(getType(model, "model", type));
  if (type != "BPE")
    return unsupported("model.type", "'" + printable(type) +
                                         "' is not supported (only BPE is)");
  COMPRESSA_RETURN_IF_ERROR(checkKeys(
      model, "model",
      {"type", "dropout", "unk_token", "continuing_subword_prefix",
       "end_of_word_suffix", "fuse_unk", "byte_fallback", "ignore_merges",
       "vocab", "merges"}));
  if (const JsonValue *dropout = model.find("dropout")) {
    bool none = dropout->isNull() ||
                (dropout->isNumber() && dropout->numberValue() == 0.0);
    if (!none)
      return unsupported("model.dropout", "BPE dropout is not supported");
  }
  for (const char *key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const JsonValue *v = model.find(key);
    if (v && !v->isNull() && !(v->isString() && v->stringValue().empty()))
      return unsupported(join("model", key), "is not supported (only null is)");
  }
  if (const JsonValue *unk = model.find("unk_token")) {
    if (!unk->isNull())
      COMPRESSA_RETURN_IF_ERROR(expectKind(*unk, Kind::String, "model.unk_token"));
    unkToken = !unk->isNull();
  }
  bool flag = false;
  COMPRESSA_RETURN_IF_ERROR(getBool(model, "fuse_unk", "model", flag, false));
  COMPRESSA_RETURN_IF_ERROR(getBool(model, "byte_fallback", "model", flag, false));
  if (flag)
    return unsupported("model.byte_fallback", "true is not supported");
  COMPRESSA_RETURN_IF_ERROR(
      getBool(model, "ignore_merges", "model", tok.model.ignoreMerges, false));

  const JsonValue *vocabValue = model.find("vocab");
  if (!vocabValue)
    return malformed("model.vocab", "missing");
  COMPRESSA_RETURN_IF_ERROR(expectKind(*vocabValue, Kind::Object, "model.vocab"));
  // Ids index tables (what each id decodes to), so an id far beyond the
  // number of entries would make a small file cost big memory (one id of
  // 2^24 - 1 cost 676 MB): ids may leave holes, but stay below twice the
  // entries plus 256.
  size_t entries = vocabValue->size();
  int64_t idLimit = int64_t(2 * entries + 256);
  size_t keyBytes = 0;
  for (size_t i = 0; i < entries; ++i)
    keyBytes += vocabValue->memberKey(i).size();
  tok.vocabByString.reserve(entries, keyBytes);
  for (size_t i = 0; i < entries; ++i) {
    std::string_view key = vocabValue->memberKey(i);
    std::string field = "model.vocab['" + printable(key) + "']";
    int64_t id;
    COMPRESSA_RETURN_IF_ERROR(getId(vocabValue->memberValue(i), field, id));
    if (id >= idLimit)
      return malformed(field, "id " + std::to_string(id) +
                                  " is far beyond the vocabulary of " +
                                  std::to_string(entries) +
                                  " entries (ids must be below " +
                                  std::to_string(idLimit) +
                                  ", twice the entries plus 256)");
    tok.vocabByString.insert(key, int32_t(id));
  }
  vocab = vocabValue;

  const JsonValue *merges = model.find("merges");
  if (!merges)
    return malformed("model.merges", "missing");
  COMPRESSA_RETURN_IF_ERROR(expectKind(*merges, Kind::Array, "model.merges"));
  tok.model.merges.reserve(merges->size());
  std::string left, right;
  for (size_t i = 0; i < merges->size(); ++i) {
    const JsonValue &m = merges->elements()[i];
    std::string field = index("model.merges", i);
    if (m.isString()) {
      std::string_view s = m.stringValue();
      size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
        return malformed(field, "'" + printable(s) +
                                    "' is not two tokens separated by one space");
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (m.isArray() && m.size() == 2 && m.elements()[0].isString() &&
               m.elements()[1].isString()) {
      left = m.elements()[0].stringValue();
      right = m.elements()[1].stringValue();
    } else {
      return malformed(field, "expected \"a b\" or [\"a\", \"b\"]");
    }
    int32_t l = tok.vocabByString.find(left);
    int32_t r = tok.vocabByString.find(right);
    int32_t merged = tok.vocabByString.find(left + right);
    if (l < 0)
      return malformed(field, "'" + printable(left) + "' is not in model.vocab");
    if (r < 0)
      return malformed(field, "'" + printable(right) + "' is not in model.vocab");
    if (merged < 0)
      return malformed(field, "the merged token '" + printable(left + right) +
                                  "' is not in model.vocab");
    tok.model.merges.insert(l, r, MergeTable::Entry{uint32_t(i), merged});
  }
  return okStatus();
}

Status Loader::loadAddedTokens(const JsonValue *list) {
  if (!list || list->isNull())
    return okStatus();
  COMPRESSA_RETURN_IF_ERROR(expectKind(*list, Kind::Array, "added_tokens"));
  // The reference re-derives added tokens' ids on load and ignores the file's
  // when they disagree; such a file is refused here instead.
  int64_t modelVocabSize = int64_t(vocab->size());
  int64_t maxAssigned = -1;
  for (size_t i = 0; i < list->size(); ++i) {
    const JsonValue &t = list->elements()[i];
    std::string field = index("added_tokens", i);
    COMPRESSA_RETURN_IF_ERROR(expectKind(t, Kind::Object, field));
    COMPRESSA_RETURN_IF_ERROR(checkKeys(t, field,
                                        {"id", "content", "single_word", "lstrip",
                                         "rstrip", "normalized", "special"}));
    const JsonValue *idValue = t.find("id");
    const JsonValue *content = t.find("content");
    if (!idValue)
      return malformed(field + ".id", "missing");
    if (!content)
      return malformed(field + ".content", "missing");
    AddedToken token;
    COMPRESSA_RETURN_IF_ERROR(getId(*idValue, field + ".id", token.id));
    COMPRESSA_RETURN_IF_ERROR(expectKind(*content, Kind::String, field + ".content"));
    token.content = content->stringValue();
    if (token.content.empty())
      return malformed(field + ".content", "empty");
    bool special = false, flag = false;
    COMPRESSA_RETURN_IF_ERROR(getBool(t, "special", field, special, false));
    for (const char *key : {"single_word", "lstrip", "rstrip"}) {
      COMPRESSA_RETURN_IF_ERROR(getBool(t, key, field, flag, false));
      if (flag)
        return unsupported(join(field, std::string(key)), "true is not supported");
    }
    COMPRESSA_RETURN_IF_ERROR(
        getBool(t, "normalized", field, token.normalized, !special));
    int32_t earlier = addedIndex.find(token.content);
    if (earlier >= 0)
      return malformed(field + ".content",
                       "'" + printable(token.content) + "' repeats " +
                           index("added_tokens", size_t(earlier)));
    addedIndex.insert(token.content, int32_t(added.size()));
    int64_t expected;
    int32_t inVocab = tok.vocabByString.find(token.content);
    if (inVocab >= 0)
      expected = inVocab;
    else if (maxAssigned < 0)
      expected = modelVocabSize;
    else if (maxAssigned >= modelVocabSize || modelVocabSize == 0)
      expected = maxAssigned + 1;
    else
      expected = modelVocabSize;
    if (token.id != expected)
      return malformed(field + ".id",
                       "'" + printable(token.content) + "' has id " +
                           std::to_string(token.id) +
                           " but the reference library would give it id " +
                           std::to_string(expected) +
                           " (its model.vocab id, or the next id after the "
                           "vocabulary and the added tokens before it)");
    maxAssigned = std::max(maxAssigned, token.id);
    added.push_back(std::move(token));
  }
  return okStatus();
}

Status Loader::addSplit(std::string_view pattern, bool literal, const std::string &field) {
  if (tok.splits.size() >= kMaxSplits)
    return unsupported(field, "more than " + std::to_string(kMaxSplits) +
                                  " Split steps are not supported");
  auto regex = SplitRegex::compile(pattern, literal);
  if (!regex.ok())
    return Status(regex.status().code(),
                  tok.name + ": " + field + ": " + regex.status().message());
  tok.splits.push_back(std::move(regex).value());
  return okStatus();
}

Status Loader::loadPreTokenizer(const JsonValue &step, const std::string &field) {
  std::string type;
  COMPRESSA_RETURN_IF_ERROR(getType(step, field, type));
  if (byteLevelSeen)
    return unsupported(field, "a step after ByteLevel is not supported (ByteLevel "
                              "must come last)");
  if (type == "Sequence") {
    COMPRESSA_RETURN_IF_ERROR(checkKeys(step, field, {"type", "pretokenizers"}));
    const JsonValue *list = step.find("pretokenizers");
    if (!list)
      return malformed(field + ".pretokenizers", "missing");
    COMPRESSA_RETURN_IF_ERROR(expectKind(*list, Kind::Array, field + ".pretokenizers"));
    for (size_t i = 0; i < list->size(); ++i)
      COMPRESSA_RETURN_IF_ERROR(
          loadPreTokenizer(list->elements()[i], index(field + ".pretokenizers", i)));
    return okStatus();
  }
  if (type == "Split") {
    COMPRESSA_RETURN_IF_ERROR(
        checkKeys(step, field, {"type", "pattern", "behavior", "invert"}));
    const JsonValue *pattern = step.find("pattern");
    if (!pattern)
      return malformed(field + ".pattern", "missing");
    COMPRESSA_RETURN_IF_ERROR(expectKind(*pattern, Kind::Object, field + ".pattern"));
    if (pattern->size() != 1 ||
        (pattern->memberKey(0) != "Regex" && pattern->memberKey(0) != "String"))
      return malformed(field + ".pattern",
                       "expected {\"Regex\": ...} or {\"String\": ...}");
    std::string patternField =
        field + ".pattern." + std::string(pattern->memberKey(0));
    COMPRESSA_RETURN_IF_ERROR(
        expectKind(pattern->memberValue(0), Kind::String, patternField));
    const JsonValue *behavior = step.find("behavior");
    if (!behavior)
      return malformed(field + ".behavior", "missing");
    COMPRESSA_RETURN_IF_ERROR(expectKind(*behavior, Kind::String, field + ".behavior"));
    if (behavior->stringValue() != "Isolated")
      return unsupported(field + ".behavior",
                         "'" + printable(behavior->stringValue()) +
                             "' is not supported (only Isolated is)");
    bool invert = false;
    COMPRESSA_RETURN_IF_ERROR(getBool(step, "invert", field, invert, false));
    if (invert)
      return unsupported(field + ".invert", "true is not supported");
    return addSplit(pattern->memberValue(0).stringValue(),
                    pattern->memberKey(0) == "String", patternField);
  }
  if (type == "ByteLevel") {
    COMPRESSA_RETURN_IF_ERROR(checkKeys(
        step, field, {"type", "add_prefix_space", "trim_offsets", "use_regex"}));
    bool addPrefixSpace = false, useRegex = false, trimOffsets = false;
    COMPRESSA_RETURN_IF_ERROR(
        getBool(step, "add_prefix_space", field, addPrefixSpace, false, true));
    COMPRESSA_RETURN_IF_ERROR(getBool(step, "use_regex", field, useRegex, false, true));
    COMPRESSA_RETURN_IF_ERROR(getBool(step, "trim_offsets", field, trimOffsets, false));
    if (addPrefixSpace)
      return unsupported(field + ".add_prefix_space", "true is not supported");
    if (useRegex)
      COMPRESSA_RETURN_IF_ERROR(addSplit(kByteLevelRegex, false, field + ".use_regex"));
    byteLevelSeen = true;
    return okStatus();
  }
  return unsupported(field + ".type", "pre-tokenizer '" + printable(type) +
                                          "' is not supported (Sequence, Split "
                                          "and ByteLevel are)");
}

Status Loader::loadPostProcessor(const JsonValue &step, const std::string &field) {
  std::string type;
  COMPRESSA_RETURN_IF_ERROR(getType(step, field, type));
  if (type == "Sequence") {
    COMPRESSA_RETURN_IF_ERROR(checkKeys(step, field, {"type", "processors"}));
    const JsonValue *list = step.find("processors");
    if (!list)
      return malformed(field + ".processors", "missing");
    COMPRESSA_RETURN_IF_ERROR(expectKind(*list, Kind::Array, field + ".processors"));
    for (size_t i = 0; i < list->size(); ++i)
      COMPRESSA_RETURN_IF_ERROR(
          loadPostProcessor(list->elements()[i], index(field + ".processors", i)));
    return okStatus();
  }
  if (type == "ByteLevel")
    // Only adjusts offsets, which this tokenizer does not report.
    return checkKeys(step, field, {"type", "add_prefix_space", "trim_offsets", "use_regex"});
  if (type == "TemplateProcessing")
    // Its tokens are added only with add_special_tokens=True; encode() is
    // add_special_tokens=False, as DeepSeek's prompts are encoded.
    return checkKeys(step, field, {"type", "single", "pair", "special_tokens"});
  return unsupported(field + ".type", "post-processor '" + printable(type) +
                                          "' is not supported (TemplateProcessing, "
                                          "ByteLevel and Sequence are)");
}

Status Loader::loadDecoder(const JsonValue *decoder) {
  if (!decoder || decoder->isNull())
    return unsupported("decoder", "null; only the ByteLevel decoder is supported");
  std::string type;
  COMPRESSA_RETURN_IF_ERROR(getType(*decoder, "decoder", type));
  if (type != "ByteLevel")
    return unsupported("decoder.type", "decoder '" + printable(type) +
                                           "' is not supported (only ByteLevel is)");
  // The ByteLevel decoder ignores its options.
  return checkKeys(*decoder, "decoder",
                   {"type", "add_prefix_space", "trim_offsets", "use_regex"});
}

Status Loader::finish() {
  const JsonValue &entries = *vocab;
  int64_t size = 0;
  for (size_t i = 0; i < entries.size(); ++i)
    size = std::max(size, *entries.memberValue(i).intValue() + 1);
  for (const AddedToken &t : added)
    size = std::max(size, t.id + 1);
  tok.idPieces.assign(size_t(size), BpeTokenizer::Piece());
  tok.idKnown.assign(size_t(size), 0);
  /// The model.vocab entry with id `id` (for messages).
  auto vocabEntryOf = [&](size_t id) -> std::string {
    for (size_t i = 0; i < entries.size(); ++i)
      if (*entries.memberValue(i).intValue() == int64_t(id))
        return std::string(entries.memberKey(i));
    return std::string();
  };
  auto store = [&](size_t id, std::string_view text) {
    tok.idPieces[id] = {uint32_t(tok.idBytesPool.size()), uint32_t(text.size())};
    tok.idBytesPool.append(text.data(), text.size());
  };
  size_t poolBytes = 0;
  for (size_t i = 0; i < entries.size(); ++i)
    poolBytes += entries.memberKey(i).size();
  for (const AddedToken &t : added)
    poolBytes += t.content.size();
  tok.idBytesPool.reserve(poolBytes);
  std::string bytes;
  for (size_t i = 0; i < entries.size(); ++i) {
    std::string_view token = entries.memberKey(i);
    size_t id = size_t(*entries.memberValue(i).intValue());
    if (tok.idKnown[id])
      return malformed("model.vocab['" + printable(token) + "']",
                       "id " + std::to_string(id) + " is also the id of '" +
                           printable(vocabEntryOf(id)) + "'");
    tok.idKnown[id] = BpeTokenizer::kVocabId;
    if (byteLevelToBytes(token, bytes)) {
      store(id, bytes);
      if (tok.model.ignoreMerges)
        tok.model.idsByBytes.emplace(bytes, int32_t(id));
    } else {
      store(id, token);
    }
  }
  for (size_t i = 0; i < added.size(); ++i) {
    const AddedToken &t = added[i];
    size_t id = size_t(t.id);
    bool sameAsVocab = tok.idKnown[id] == BpeTokenizer::kVocabId &&
                       tok.vocabByString.find(t.content) == int32_t(id);
    if (tok.idKnown[id] == BpeTokenizer::kVocabId && !sameAsVocab)
      return malformed(index("added_tokens", i) + ".id",
                       "id " + std::to_string(id) + " of '" + printable(t.content) +
                           "' is also the id of model.vocab entry '" +
                           printable(vocabEntryOf(id)) + "'");
    if (tok.idKnown[id] == BpeTokenizer::kAddedId)
      return malformed(index("added_tokens", i) + ".id",
                       "id " + std::to_string(id) + " of '" + printable(t.content) +
                           "' is also the id of an earlier added token");
    if (!sameAsVocab) {
      tok.idKnown[id] = BpeTokenizer::kAddedId;
      store(id, byteLevelToBytes(t.content, bytes) ? std::string_view(bytes)
                                                   : std::string_view(t.content));
    }
    tok.addedByContent.insert(t.content, int32_t(id));
    (t.normalized ? tok.normalizedAdded : tok.rawAdded).insert(t.content, int32_t(id));
  }
  bool allBytes = true;
  std::string symbol;
  for (int b = 0; b < 256; ++b) {
    symbol.clear();
    utf8::appendCodePoint(byteToCodePoint(uint8_t(b)), symbol);
    int32_t id = tok.vocabByString.find(symbol);
    tok.model.byteIds[b] = id;
    allBytes = allBytes && id >= 0;
  }
  if (unkToken && !allBytes)
    return unsupported("model.unk_token",
                       "an unk_token standing in for bytes missing from "
                       "model.vocab is not supported");
  return okStatus();
}

} // namespace

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::fromJson(std::string_view json,
                                                         const std::string &name) {
  JsonLimits limits;
  // A 129280-token vocabulary with ~128k merges is ~520k values; allow
  // vocabularies several times larger.
  limits.maxValues = size_t(1) << 23;
  StatusOr<JsonDocument> root = parseJson(json, limits);
  if (!root.ok())
    return Status(root.status().code(), name + ": " + root.status().message());
  std::unique_ptr<BpeTokenizer> tok(new BpeTokenizer);
  tok->name = name;
  Loader loader(*tok);
  COMPRESSA_RETURN_IF_ERROR(loader.load(root.value()));
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::fromFile(const std::string &path) {
  // ReadOnlyFile refuses a named pipe or a directory instead of blocking.
  COMPRESSA_ASSIGN_OR_RETURN(std::string text,
                             ReadOnlyFile::readAll(path, kMaxFileBytes));
  return fromJson(text, path);
}

} // namespace compressa
