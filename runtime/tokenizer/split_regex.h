//===- split_regex.h - Pre-tokenizer Split patterns on PCRE2 -----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// The regexes of a tokenizer.json Split pre-tokenizer. The reference library
// runs them on Oniguruma (Ruby syntax); this runtime runs them on PCRE2
// (8-bit, UTF + UCP, JIT when available) after translating the pattern to a
// PCRE2 pattern with the same meaning. Constructs whose meaning differs
// between the two engines and that have no exact translation are rejected.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_RUNTIME_TOKENIZER_SPLIT_REGEX_H
#define COMPRESSA_RUNTIME_TOKENIZER_SPLIT_REGEX_H

#include "runtime/base/status.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace compressa {
namespace tokenizer_internal {

/// Translates an Oniguruma (Ruby syntax) pattern into PCRE2 syntax:
///  - `\s`/`\S` become `\p{White_Space}`/`\P{White_Space}` (PCRE2's UCP `\s`
///    also matches U+180E, Oniguruma's does not);
///  - `\p{X}` (General_Category X) gains the code points that the reference
///    library's newer Unicode tables put in X and PCRE2's do not
///    (unicode_delta.inc); `\d`/`\D` are `\p{Nd}`/`\P{Nd}`;
///  - `.` becomes `[^\n]`, `^`/`$` become line anchors, `\v` the vertical
///    tab, `\uHHHH` `\x{HHHH}`, `{,n}` `{0,n}`.
/// Rejected (Unimplemented): `\w \W \b \B \h \H \R \X \K \G`, back
/// references, other properties, inline options such as `(?i)`, nested
/// classes and `&&`, `{n,m}+`, and `\P{X}` inside a class when X needs
/// additions.
StatusOr<std::string> translateOnigurumaPattern(std::string_view pattern);

/// A start and end byte offset.
struct Span {
  uint32_t begin;
  uint32_t end;
};

/// Scratch state for matching (PCRE2 match data, JIT stack). One per thread
/// at a time; cheap to create.
class RegexScratch {
public:
  RegexScratch();
  ~RegexScratch();
  RegexScratch(const RegexScratch &) = delete;
  RegexScratch &operator=(const RegexScratch &) = delete;

private:
  friend class SplitRegex;
  struct Impl;
  std::unique_ptr<Impl> impl;
};

/// A compiled Split pattern.
class SplitRegex {
public:
  /// Compiles `pattern`: a regex in Oniguruma syntax (translated), or, when
  /// `literal`, a plain string to find.
  static StatusOr<std::unique_ptr<SplitRegex>> compile(std::string_view pattern,
                                                       bool literal);
  ~SplitRegex();
  SplitRegex(const SplitRegex &) = delete;
  SplitRegex &operator=(const SplitRegex &) = delete;

  /// Appends to `matches` the successive non-overlapping leftmost matches in
  /// `subject` (valid UTF-8, checked by the caller). A match of the empty
  /// string is an error: the reference's handling of them is not reproduced.
  Status findAll(std::string_view subject, RegexScratch &scratch,
                 std::vector<Span> &matches) const;

  /// The PCRE2 pattern this was compiled from.
  const std::string &pcrePattern() const { return translated; }
  /// Whether PCRE2's JIT compiled it.
  bool jitCompiled() const { return jit; }

private:
  SplitRegex() = default;
  void *code = nullptr; // pcre2_code_8
  std::string translated;
  bool jit = false;
};

} // namespace tokenizer_internal
} // namespace compressa

#endif // COMPRESSA_RUNTIME_TOKENIZER_SPLIT_REGEX_H
