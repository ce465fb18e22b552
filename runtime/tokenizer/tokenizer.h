//===- tokenizer.h - Byte-level BPE tokenizer (tokenizer.json) ---*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// The DeepSeek-V3/V4 tokenizer: a Hugging Face `tokenizer.json` of the
// byte-level BPE kind (added special tokens matched first, a Sequence of Split
// regexes with Isolated behaviour + ByteLevel(use_regex=false) pre-tokenizer,
// BPE merges, ByteLevel decoder). Anything else in the file is an error that
// names the field, never an approximation.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_RUNTIME_TOKENIZER_TOKENIZER_H
#define COMPRESSA_RUNTIME_TOKENIZER_TOKENIZER_H

#include "runtime/base/status.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace compressa {

class Tokenizer {
public:
  /// Loads a tokenizer.json file.
  static StatusOr<std::unique_ptr<Tokenizer>> fromFile(const std::string &path);
  /// Parses tokenizer.json text; `name` is used in messages.
  static StatusOr<std::unique_ptr<Tokenizer>> fromJson(std::string_view json,
                                                       const std::string &name);
  virtual ~Tokenizer();

  /// Token ids of `text` (UTF-8). Special (added) tokens in the text are
  /// matched as such. Invalid UTF-8 is an error naming the byte offset. No
  /// token is added around the text (the reference's
  /// add_special_tokens=False); empty text encodes to no ids.
  virtual StatusOr<std::vector<int64_t>> encode(std::string_view text) const = 0;
  /// The text of `ids` (special tokens included as their content). Ids
  /// outside the vocabulary are an error naming the id and its position (the
  /// reference library skips them silently).
  /// Byte sequences that are not valid UTF-8 decode to U+FFFD, as the
  /// reference decoder does.
  virtual StatusOr<std::string> decode(const int64_t *ids, size_t count) const = 0;
  /// The raw bytes one token stands for (for streaming; may be a partial
  /// UTF-8 sequence). Error for ids outside the vocabulary.
  virtual StatusOr<std::string> tokenBytes(int64_t id) const = 0;
  /// The id of a token given by its content (e.g. "<｜User｜>"), if any.
  virtual std::optional<int64_t> tokenId(std::string_view content) const = 0;
  /// One more than the largest id the tokenizer knows.
  virtual int64_t vocabSize() const = 0;
  /// The pieces the pre-tokenizer alone cuts `text` into (added tokens are
  /// not matched), as the reference's `pre_tokenizer.pre_tokenize_str` gives
  /// them but as raw text rather than ByteLevel characters. A debugging and
  /// testing aid; the default says it is not available.
  virtual StatusOr<std::vector<std::string>>
  preTokenize(std::string_view text) const;
};

/// Reassembles a stream of token bytes into complete UTF-8 characters, so a
/// character split across tokens is printed once whole.
class Utf8Stream {
public:
  /// Appends bytes; returns the complete characters now available.
  std::string push(std::string_view bytes);
  /// The rest at the end of the stream (invalid leftovers become U+FFFD).
  std::string finish();

private:
  std::string pending;
};

} // namespace compressa

#endif // COMPRESSA_RUNTIME_TOKENIZER_TOKENIZER_H
