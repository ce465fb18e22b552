//===- utf8.h - UTF-8 validation, lossy decoding, JSON quoting ---*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// The UTF-8 helpers of the tokenizer. Validity follows RFC 3629 / Unicode
// Table 3-7 (no overlong forms, no surrogates, nothing past U+10FFFF). Lossy
// decoding replaces each maximal invalid subpart with one U+FFFD, which is
// what Rust's String::from_utf8_lossy (the reference ByteLevel decoder) and
// Python's bytes.decode("utf-8", "replace") do.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_RUNTIME_TOKENIZER_UTF8_H
#define COMPRESSA_RUNTIME_TOKENIZER_UTF8_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace compressa {
namespace utf8 {

/// The byte offset of the first byte that does not start a valid UTF-8
/// sequence of `text`, or std::string_view::npos when all of it is valid.
size_t findInvalid(std::string_view text);

/// Length of the valid UTF-8 sequence at the start of `text` (1 to 4), or 0
/// when it does not start with one (also for an empty or truncated input).
size_t validSequenceLength(std::string_view text);

/// Length of the maximal subpart at the start of `text`: the longest prefix
/// that is a valid start of some UTF-8 sequence (at least 1 byte). Only
/// meaningful when validSequenceLength(text) == 0.
size_t maximalSubpartLength(std::string_view text);

/// True when all of `text` (non-empty) is the valid beginning of one UTF-8
/// sequence that lacks its last bytes.
bool isTruncatedSequence(std::string_view text);

/// Appends `bytes` to `out`, replacing each maximal invalid subpart with
/// U+FFFD.
void appendLossy(std::string_view bytes, std::string &out);

/// Appends the UTF-8 encoding of `codePoint` (must be a scalar value).
void appendCodePoint(uint32_t codePoint, std::string &out);

/// Decodes the valid sequence at `text[pos]` (the caller has validated it)
/// and advances `pos` past it.
uint32_t decodeAt(std::string_view text, size_t &pos);

/// Appends `text` (valid UTF-8) as a JSON string literal: quotes, `\"`, `\\`,
/// `\b \f \n \r \t`, other control characters below U+0020 as `\u00xx`, and
/// everything else as is (Python's json.dumps(..., ensure_ascii=False)).
void appendJsonString(std::string_view text, std::string &out);

} // namespace utf8
} // namespace compressa

#endif // COMPRESSA_RUNTIME_TOKENIZER_UTF8_H
