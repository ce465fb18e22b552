// SPDX-License-Identifier: Apache-2.0
// Split patterns: Oniguruma-to-PCRE2 translation and matching.
#include "runtime/tokenizer/split_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstring>

namespace compressa {
namespace tokenizer_internal {
namespace {

/// A General_Category property and the PCRE2 class items that make PCRE2's
/// \p{name} equal the reference library's (nullptr: cannot be made equal).
struct PropertyDelta {
  const char *name;
  const char *additions;
};

constexpr PropertyDelta kPropertyDeltas[] = {
#include "runtime/tokenizer/unicode_delta.inc"
};

const PropertyDelta *findProperty(std::string_view name) {
  for (const PropertyDelta &p : kPropertyDeltas)
    if (name == p.name)
      return &p;
  return nullptr;
}

bool isHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
         (c >= 'A' && c <= 'F');
}
bool isAlnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
         (c >= 'A' && c <= 'Z');
}
bool isDigit(char c) { return c >= '0' && c <= '9'; }

/// `pattern` for a message: as written, except control characters (\xNN)
/// and a length cap; backslashes stay as they are.
std::string quoted(std::string_view pattern) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : pattern.substr(0, 300)) {
    uint8_t c = uint8_t(ch);
    if (c < 0x20 || c == 0x7F) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += ch;
    }
  }
  if (pattern.size() > 300)
    out += "...";
  return out;
}

Status unsupported(std::string_view pattern, size_t pos, const std::string &what) {
  return COMPRESSA_ERROR(Unimplemented,
                         "%s at byte %zu of pattern '%s' is not supported (its "
                         "Oniguruma meaning has no checked PCRE2 equivalent)",
                         what.c_str(), pos, quoted(pattern).c_str());
}

/// Emits property `name` (negated or not) in or out of a class.
Status emitProperty(std::string_view pattern, size_t pos, std::string_view name,
                    bool negated, bool inClass, std::string &out) {
  const PropertyDelta *prop = findProperty(name);
  if (!prop)
    return unsupported(pattern, pos,
                       "Unicode property \\p{" + std::string(name) +
                           "} (only General_Category properties are)");
  if (!prop->additions)
    return unsupported(pattern, pos,
                       "\\p{" + std::string(name) +
                           "} (PCRE2's Unicode tables put code points in it "
                           "that the reference's do not)");
  std::string base = std::string(negated ? "\\P{" : "\\p{") + prop->name + "}";
  bool plain = prop->additions[0] == '\0';
  if (plain) {
    out += base;
    return okStatus();
  }
  std::string positive = std::string("\\p{") + prop->name + "}" + prop->additions;
  if (!inClass) {
    out += negated ? "[^" : "[";
    out += positive;
    out += "]";
    return okStatus();
  }
  if (negated)
    return unsupported(pattern, pos,
                       "\\P{" + std::string(name) +
                           "} inside a character class (it needs code points "
                           "added)");
  out += positive;
  return okStatus();
}

} // namespace

StatusOr<std::string> translateOnigurumaPattern(std::string_view p) {
  std::string out;
  out.reserve(p.size() * 2);
  bool inClass = false;
  // True right after `[` or `[^`, where `]` is a literal.
  bool classStart = false;
  // True right after a `{n,m}` quantifier.
  bool afterInterval = false;
  size_t i = 0;
  while (i < p.size()) {
    char c = p[i];
    bool wasClassStart = classStart;
    classStart = false;
    bool wasAfterInterval = afterInterval;
    afterInterval = false;
    if (c == '\\') {
      if (i + 1 >= p.size())
        return COMPRESSA_ERROR(InvalidArgument,
                               "pattern '%s' ends with a lone backslash",
                               quoted(p).c_str());
      char e = p[i + 1];
      size_t at = i;
      i += 2;
      switch (e) {
      case 's':
        out += "\\p{White_Space}";
        continue;
      case 'S':
        out += "\\P{White_Space}";
        continue;
      case 'd':
      case 'D': {
        COMPRESSA_RETURN_IF_ERROR(
            emitProperty(p, at, "Nd", e == 'D', inClass, out));
        continue;
      }
      case 'p':
      case 'P': {
        std::string_view name;
        if (i < p.size() && p[i] == '{') {
          size_t close = p.find('}', i);
          if (close == std::string_view::npos)
            return COMPRESSA_ERROR(InvalidArgument,
                                   "pattern '%s': \\%c{ without } at byte %zu",
                                   quoted(p).c_str(), e, at);
          name = p.substr(i + 1, close - i - 1);
          i = close + 1;
        } else if (i < p.size() && isAlnum(p[i])) {
          name = p.substr(i, 1);
          i += 1;
        } else {
          return COMPRESSA_ERROR(InvalidArgument,
                                 "pattern '%s': \\%c without a property name "
                                 "at byte %zu",
                                 quoted(p).c_str(), e, at);
        }
        bool negated = e == 'P';
        if (!name.empty() && name[0] == '^') {
          negated = !negated;
          name.remove_prefix(1);
        }
        COMPRESSA_RETURN_IF_ERROR(
            emitProperty(p, at, name, negated, inClass, out));
        continue;
      }
      case 'x': {
        out += "\\x";
        if (i < p.size() && p[i] == '{') {
          size_t close = p.find('}', i);
          if (close == std::string_view::npos)
            return COMPRESSA_ERROR(InvalidArgument,
                                   "pattern '%s': \\x{ without } at byte %zu",
                                   quoted(p).c_str(), at);
          out.append(p.substr(i, close + 1 - i));
          i = close + 1;
        } else {
          // Up to two hex digits in both engines.
          for (int k = 0; k < 2 && i < p.size() && isHex(p[i]); ++k)
            out += p[i++];
        }
        continue;
      }
      case 'u': {
        if (i + 4 > p.size() || !isHex(p[i]) || !isHex(p[i + 1]) ||
            !isHex(p[i + 2]) || !isHex(p[i + 3]))
          return COMPRESSA_ERROR(InvalidArgument,
                                 "pattern '%s': \\u needs 4 hex digits at "
                                 "byte %zu",
                                 quoted(p).c_str(), at);
        out += "\\x{";
        out.append(p.substr(i, 4));
        out += "}";
        i += 4;
        continue;
      }
      case 'v':
        out += "\\x0B";
        continue;
      case 'n':
      case 'r':
      case 't':
      case 'f':
      case 'e':
      case 'a':
      case 'A':
      case 'z':
      case 'Z':
        if (inClass && (e == 'A' || e == 'z' || e == 'Z'))
          return unsupported(p, at, std::string("\\") + e + " in a class");
        out += '\\';
        out += e;
        continue;
      case 'Q': {
        // Quoted literal up to \E (or the end) in both engines.
        size_t end = p.find("\\E", i);
        std::string_view quoted =
            p.substr(i, end == std::string_view::npos ? p.npos : end - i);
        out += "\\Q";
        out.append(quoted);
        out += "\\E";
        i = end == std::string_view::npos ? p.size() : end + 2;
        continue;
      }
      default:
        if (isAlnum(e))
          return unsupported(p, at, std::string("escape \\") + e);
        // An escaped punctuation or non-ASCII character: a literal.
        out += '\\';
        out += e;
        continue;
      }
    }
    if (inClass) {
      if (c == ']' && !wasClassStart) {
        inClass = false;
      } else if (c == '[') {
        return unsupported(p, i, "a nested class or POSIX bracket");
      } else if (c == '&' && i + 1 < p.size() && p[i + 1] == '&') {
        return unsupported(p, i, "class intersection &&");
      } else if (c == '^' && wasClassStart && out.back() == '[') {
        classStart = true; // `[^]` : the `]` after it is a literal too
      }
      out += c;
      ++i;
      continue;
    }
    switch (c) {
    case '[':
      inClass = true;
      classStart = true;
      out += c;
      ++i;
      continue;
    case '.':
      out += "[^\\n]";
      ++i;
      continue;
    case '^':
      out += "(?:^|(?<=\\n))";
      ++i;
      continue;
    case '$':
      out += "(?=\\n|\\z)";
      ++i;
      continue;
    case '(':
      if (i + 1 < p.size() && p[i + 1] == '?') {
        char k = i + 2 < p.size() ? p[i + 2] : '\0';
        bool lookbehindOrName = k == '<';
        if (!(k == ':' || k == '=' || k == '!' || k == '>' || k == '#' ||
              lookbehindOrName))
          return unsupported(p, i, "the group (?" + std::string(1, k) +
                                       " (inline options differ)");
      }
      out += c;
      ++i;
      continue;
    case '{': {
      // {n}, {n,}, {n,m} and Oniguruma's {,m}.
      size_t j = i + 1;
      size_t digitsBefore = 0;
      while (j < p.size() && isDigit(p[j]))
        ++j, ++digitsBefore;
      bool comma = j < p.size() && p[j] == ',';
      size_t digitsAfter = 0;
      if (comma) {
        ++j;
        while (j < p.size() && isDigit(p[j]))
          ++j, ++digitsAfter;
      }
      bool isInterval = j < p.size() && p[j] == '}' &&
                        (digitsBefore > 0 || (comma && digitsAfter > 0));
      if (!isInterval) {
        out += "\\{"; // a literal brace in both engines
        ++i;
        continue;
      }
      if (digitsBefore == 0)
        out += "{0";
      else
        out += '{';
      out.append(p.substr(i + 1, j - i));
      i = j + 1;
      afterInterval = true;
      continue;
    }
    case '+':
      if (wasAfterInterval)
        return unsupported(p, i, "'+' after an interval {n,m}");
      out += c;
      ++i;
      continue;
    default:
      out += c;
      ++i;
      continue;
    }
  }
  if (inClass)
    return COMPRESSA_ERROR(InvalidArgument,
                           "pattern '%s' has an unterminated character class",
                           quoted(p).c_str());
  return out;
}

struct RegexScratch::Impl {
  pcre2_match_data *matchData = nullptr;
  pcre2_match_context *context = nullptr;
  pcre2_jit_stack *jitStack = nullptr;
  ~Impl() {
    if (matchData)
      pcre2_match_data_free(matchData);
    if (context)
      pcre2_match_context_free(context);
    if (jitStack)
      pcre2_jit_stack_free(jitStack);
  }
};

RegexScratch::RegexScratch() : impl(new Impl) {}
RegexScratch::~RegexScratch() = default;

SplitRegex::~SplitRegex() {
  if (code)
    pcre2_code_free(static_cast<pcre2_code *>(code));
}

StatusOr<std::unique_ptr<SplitRegex>> SplitRegex::compile(std::string_view pattern,
                                                          bool literal) {
  if (pattern.empty())
    return COMPRESSA_ERROR(InvalidArgument, "the pattern is empty");
  std::unique_ptr<SplitRegex> regex(new SplitRegex);
  uint32_t options = PCRE2_UTF | PCRE2_UCP | PCRE2_NEVER_BACKSLASH_C;
  if (literal) {
    regex->translated = std::string(pattern);
    options = PCRE2_UTF | PCRE2_LITERAL; // UCP is not allowed with LITERAL
  } else {
    COMPRESSA_ASSIGN_OR_RETURN(regex->translated,
                               translateOnigurumaPattern(pattern));
  }
  int errorCode = 0;
  PCRE2_SIZE errorOffset = 0;
  pcre2_code *code = pcre2_compile(
      reinterpret_cast<PCRE2_SPTR>(regex->translated.data()),
      regex->translated.size(), options, &errorCode, &errorOffset, nullptr);
  if (!code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(errorCode, message, sizeof(message));
    return COMPRESSA_ERROR(InvalidArgument,
                           "pattern '%s' does not compile (as PCRE2 '%s'): %s "
                           "at byte %zu",
                           quoted(pattern).c_str(),
                           quoted(regex->translated).c_str(),
                           reinterpret_cast<const char *>(message),
                           size_t(errorOffset));
  }
  regex->code = code;
  regex->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return regex;
}

Status SplitRegex::findAll(std::string_view subject, RegexScratch &scratch,
                           std::vector<Span> &matches) const {
  RegexScratch::Impl &s = *scratch.impl;
  if (!s.matchData) {
    s.matchData = pcre2_match_data_create(1, nullptr);
    if (!s.matchData)
      return COMPRESSA_ERROR(ResourceExhausted, "out of memory for PCRE2 match data");
  }
  auto *re = static_cast<const pcre2_code *>(code);
  auto *data = reinterpret_cast<PCRE2_SPTR>(subject.data());
  size_t start = 0;
  while (start < subject.size()) {
    int rc;
    if (jit)
      rc = pcre2_jit_match(re, data, subject.size(), start, 0, s.matchData,
                           s.context);
    else
      rc = pcre2_match(re, data, subject.size(), start, PCRE2_NO_UTF_CHECK,
                       s.matchData, s.context);
    if (rc == PCRE2_ERROR_NOMATCH)
      break;
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !s.jitStack) {
      // The default 32 KiB JIT stack was not enough: retry with up to 64 MiB.
      s.jitStack = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, nullptr);
      s.context = pcre2_match_context_create(nullptr);
      if (!s.jitStack || !s.context)
        return COMPRESSA_ERROR(ResourceExhausted, "out of memory for a PCRE2 JIT stack");
      pcre2_jit_stack_assign(s.context, nullptr, s.jitStack);
      continue;
    }
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof(message));
      return COMPRESSA_ERROR(ResourceExhausted,
                             "pre-tokenizer pattern '%s' failed at byte %zu of "
                             "a %zu-byte piece: %s",
                             quoted(translated).c_str(), start,
                             subject.size(),
                             reinterpret_cast<const char *>(message));
    }
    PCRE2_SIZE *ovector = pcre2_get_ovector_pointer(s.matchData);
    size_t begin = ovector[0], end = ovector[1];
    if (end <= begin)
      return COMPRESSA_ERROR(Unimplemented,
                             "pre-tokenizer pattern '%s' matched the empty "
                             "string at byte %zu; patterns that can match "
                             "nothing are not supported",
                             quoted(translated).c_str(), begin);
    matches.push_back({uint32_t(begin), uint32_t(end)});
    start = end;
  }
  return okStatus();
}

} // namespace tokenizer_internal
} // namespace compressa
