//===- json_text.h - JSON written as DeepSeek's encoder writes it -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// DeepSeek-V4's encoder writes JSON with Python's json.dumps(value,
// ensure_ascii=False): ", " between items, ": " after keys, keys in the order
// they came, non-ASCII text as is, and only '"', '\\' and control characters
// escaped (\n \r \t \b \f, others as \u00xx). Floats are written as Python's
// repr writes them (shortest round trip; exponent form below 1e-4 and from
// 1e16 on, e.g. 1e-05, 1e+16; otherwise at least one decimal, e.g. 1.0);
// integers beyond 64 bits, which nlohmann reads as doubles, are written as
// floats (Python would keep their digits). The
// prompt is only byte-exact when the JSON of tools and tool-call arguments is
// written the same way, so the encoder uses these functions.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_RUNTIME_CHAT_JSON_TEXT_H
#define COMPRESSA_RUNTIME_CHAT_JSON_TEXT_H

#include "runtime/base/status.h"

#include <nlohmann/json.hpp>

#include <cstdint>

#include <string>
#include <string_view>

namespace compressa {

/// `text` as a JSON string (quotes included), escaped as json.dumps does with
/// ensure_ascii=False. Bytes are copied as they are (the caller checks UTF-8).
void appendPythonJsonString(std::string_view text, std::string &out);

/// `value` as json.dumps(value, ensure_ascii=False) writes it. Objects keep
/// the order of ordered_json.
void appendPythonJson(const nlohmann::ordered_json &value, std::string &out);
std::string pythonJson(const nlohmann::ordered_json &value);

/// True when `text` is one JSON value (surrounding whitespace allowed).
bool isJsonText(std::string_view text);

/// Limits on JSON read into ordered_json, whose objects are vectors: adding
/// a key compares it with every key before it, so an object of n keys costs
/// n^2/2 comparisons, and the writers above recurse once per level. A body
/// within them parses in well under a second; beyond them it is refused.
inline constexpr size_t kMaxJsonDepth = 512;
/// The sum over all objects of n(n+1)/2 (about 10000 keys in one object).
inline constexpr uint64_t kMaxJsonKeyWork = 50'000'000;

/// Parses `text` (named `what` in errors) keeping the order of keys: an
/// error names the position of a syntax error, or the limit exceeded.
StatusOr<nlohmann::ordered_json> parseOrderedJson(std::string_view text,
                                                  const char *what);

} // namespace compressa

#endif // COMPRESSA_RUNTIME_CHAT_JSON_TEXT_H
