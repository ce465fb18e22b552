// SPDX-License-Identifier: Apache-2.0
// Recursive-descent implementation of the strict JSON parser in json.h. The
// grammar is RFC 8259 exactly: no comments, no trailing commas, no NaN, no
// leading zeros, no raw control characters, valid UTF-8 only.
#include "runtime/weights/json.h"

#include <charconv>
#include <cstdio>
#include <unordered_set>

namespace compressa {

const JsonValue *JsonValue::find(std::string_view key) const {
  for (size_t i = 0; i < keys.size(); ++i)
    if (keys[i] == key)
      return &items[i];
  return nullptr;
}

const char *JsonValue::kindName(Kind kind) {
  switch (kind) {
  case Kind::Null:
    return "null";
  case Kind::Bool:
    return "boolean";
  case Kind::Number:
    return "number";
  case Kind::String:
    return "string";
  case Kind::Array:
    return "array";
  case Kind::Object:
    return "object";
  }
  return "?";
}

/// Parses one document; holds the cursor and the first error.
class JsonParser {
public:
  JsonParser(std::string_view text, JsonLimits limits)
      : input(text), limits(limits) {}

  StatusOr<JsonValue> parseDocument() {
    JsonValue root;
    skipWhitespace();
    if (!parseValue(root, 0))
      return error;
    skipWhitespace();
    if (pos != input.size()) {
      fail("end of input after the top-level value");
      return error;
    }
    return root;
  }

private:
  /// Records "expected X, found Y" at the current position; returns false.
  bool fail(const std::string &expected) {
    return failAt(pos, "expected " + expected + ", found " + describeAt(pos));
  }

  /// Records `what` as the error at byte `at`; always returns false.
  bool failAt(size_t at, const std::string &what) {
    size_t line = 1, column = 1;
    for (size_t i = 0; i < at && i < input.size(); ++i) {
      if (input[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    error = Status::error(StatusCode::InvalidArgument,
                          "line %zu, column %zu (byte %zu): %s", line, column,
                          at, what.c_str());
    return false;
  }

  /// A short description of the input at `at` for error messages.
  std::string describeAt(size_t at) const {
    if (at >= input.size())
      return "end of input";
    unsigned char c = static_cast<unsigned char>(input[at]);
    if (c >= 0x20 && c < 0x7F)
      return std::string("'") + static_cast<char>(c) + "'";
    char buf[16];
    std::snprintf(buf, sizeof(buf), "byte 0x%02X", c);
    return buf;
  }

  void skipWhitespace() {
    while (pos < input.size() && (input[pos] == ' ' || input[pos] == '\t' ||
                                  input[pos] == '\n' || input[pos] == '\r'))
      ++pos;
  }

  bool countValue() {
    if (++numValues > limits.maxValues)
      return failAt(pos, "more than " + std::to_string(limits.maxValues) +
                             " values in one document (limit)");
    return true;
  }

  bool parseValue(JsonValue &out, unsigned depth) {
    if (!countValue())
      return false;
    if (pos >= input.size())
      return fail("a value");
    switch (input[pos]) {
    case '{':
      return parseObject(out, depth + 1);
    case '[':
      return parseArray(out, depth + 1);
    case '"':
      out.valueKind = JsonValue::Kind::String;
      return parseString(out.text);
    case 't':
      out.valueKind = JsonValue::Kind::Bool;
      out.boolean = true;
      return parseLiteral("true");
    case 'f':
      out.valueKind = JsonValue::Kind::Bool;
      return parseLiteral("false");
    case 'n':
      return parseLiteral("null");
    default:
      if (input[pos] == '-' || (input[pos] >= '0' && input[pos] <= '9'))
        return parseNumber(out);
      return fail("a value");
    }
  }

  bool parseLiteral(std::string_view word) {
    if (input.substr(pos, word.size()) != word)
      return fail("'" + std::string(word) + "'");
    pos += word.size();
    return true;
  }

  bool isDigit(size_t at) const {
    return at < input.size() && input[at] >= '0' && input[at] <= '9';
  }

  bool parseNumber(JsonValue &out) {
    size_t start = pos;
    bool integral = true;
    if (input[pos] == '-')
      ++pos;
    if (!isDigit(pos))
      return fail("a digit");
    if (input[pos] == '0') {
      ++pos;
      if (isDigit(pos))
        return fail("no leading zero in a number");
    } else {
      while (isDigit(pos))
        ++pos;
    }
    if (pos < input.size() && input[pos] == '.') {
      integral = false;
      ++pos;
      if (!isDigit(pos))
        return fail("a digit after '.'");
      while (isDigit(pos))
        ++pos;
    }
    if (pos < input.size() && (input[pos] == 'e' || input[pos] == 'E')) {
      integral = false;
      ++pos;
      if (pos < input.size() && (input[pos] == '+' || input[pos] == '-'))
        ++pos;
      if (!isDigit(pos))
        return fail("a digit in the exponent");
      while (isDigit(pos))
        ++pos;
    }
    const char *first = input.data() + start;
    const char *last = input.data() + pos;
    double value = 0;
    auto [end, ec] = std::from_chars(first, last, value);
    if (ec != std::errc() || end != last)
      return failAt(start, "number " +
                               printable(input.substr(start, pos - start)) +
                               " does not fit in a double");
    out.valueKind = JsonValue::Kind::Number;
    out.number = value;
    if (integral) {
      int64_t exact = 0;
      auto [intEnd, intEc] = std::from_chars(first, last, exact);
      out.exactInteger = intEc == std::errc() && intEnd == last;
      out.integer = out.exactInteger ? exact : 0;
    }
    return true;
  }

  bool parseHex4(uint32_t &out) {
    out = 0;
    for (int i = 0; i < 4; ++i, ++pos) {
      if (pos >= input.size())
        return fail("4 hex digits after \\u");
      char c = input[pos];
      uint32_t digit;
      if (c >= '0' && c <= '9')
        digit = c - '0';
      else if (c >= 'a' && c <= 'f')
        digit = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        digit = c - 'A' + 10;
      else
        return fail("4 hex digits after \\u");
      out = out * 16 + digit;
    }
    return true;
  }

  static void appendUtf8(std::string &out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  /// Copies one raw UTF-8 sequence starting at `pos` (lead byte >= 0x80),
  /// rejecting overlong forms, surrogates and code points past U+10FFFF.
  bool copyUtf8Sequence(std::string &out) {
    unsigned char lead = static_cast<unsigned char>(input[pos]);
    size_t length;
    uint32_t cp, minimum;
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2, cp = lead & 0x1F, minimum = 0x80;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3, cp = lead & 0x0F, minimum = 0x800;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4, cp = lead & 0x07, minimum = 0x10000;
    } else {
      return fail("valid UTF-8 in a string");
    }
    if (input.size() - pos < length)
      return fail("valid UTF-8 in a string");
    for (size_t i = 1; i < length; ++i) {
      unsigned char c = static_cast<unsigned char>(input[pos + i]);
      if ((c & 0xC0) != 0x80)
        return fail("valid UTF-8 in a string");
      cp = (cp << 6) | (c & 0x3F);
    }
    if (cp < minimum || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return fail("valid UTF-8 in a string");
    out.append(input.data() + pos, length);
    pos += length;
    return true;
  }

  bool parseString(std::string &out) {
    ++pos; // opening quote
    while (true) {
      if (pos >= input.size())
        return fail("'\"' to close the string");
      unsigned char c = static_cast<unsigned char>(input[pos]);
      if (c == '"') {
        ++pos;
        return true;
      }
      if (c < 0x20)
        return fail("no raw control character in a string");
      if (c >= 0x80) {
        if (!copyUtf8Sequence(out))
          return false;
        continue;
      }
      if (c != '\\') {
        out += static_cast<char>(c);
        ++pos;
        continue;
      }
      ++pos; // backslash
      if (pos >= input.size())
        return fail("an escape character after '\\'");
      char escape = input[pos++];
      switch (escape) {
      case '"':
      case '\\':
      case '/':
        out += escape;
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'u': {
        uint32_t cp;
        if (!parseHex4(cp))
          return false;
        if (cp >= 0xDC00 && cp <= 0xDFFF)
          return fail("a high surrogate before a low one");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          if (input.substr(pos, 2) != "\\u")
            return fail("a \\u low surrogate after a high one");
          pos += 2;
          uint32_t low;
          if (!parseHex4(low))
            return false;
          if (low < 0xDC00 || low > 0xDFFF)
            return fail("a low surrogate (\\uDC00-\\uDFFF)");
          cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        appendUtf8(out, cp);
        break;
      }
      default:
        --pos;
        return fail("one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u");
      }
    }
  }

  bool enterContainer(unsigned depth) {
    if (depth > limits.maxDepth)
      return failAt(pos, "arrays and objects nested deeper than " +
                             std::to_string(limits.maxDepth) +
                             " levels (limit)");
    return true;
  }

  bool parseArray(JsonValue &out, unsigned depth) {
    if (!enterContainer(depth))
      return false;
    out.valueKind = JsonValue::Kind::Array;
    ++pos; // '['
    skipWhitespace();
    if (pos < input.size() && input[pos] == ']') {
      ++pos;
      return true;
    }
    while (true) {
      skipWhitespace();
      out.items.emplace_back();
      if (!parseValue(out.items.back(), depth))
        return false;
      skipWhitespace();
      if (pos < input.size() && input[pos] == ',') {
        ++pos;
        continue;
      }
      if (pos < input.size() && input[pos] == ']') {
        ++pos;
        return true;
      }
      return fail("',' or ']' in an array");
    }
  }

  bool parseObject(JsonValue &out, unsigned depth) {
    if (!enterContainer(depth))
      return false;
    out.valueKind = JsonValue::Kind::Object;
    ++pos; // '{'
    skipWhitespace();
    if (pos < input.size() && input[pos] == '}') {
      ++pos;
      return true;
    }
    std::unordered_set<std::string> seen;
    while (true) {
      skipWhitespace();
      if (pos >= input.size() || input[pos] != '"')
        return fail("'\"' to start an object key");
      size_t keyStart = pos;
      std::string key;
      if (!parseString(key))
        return false;
      if (!seen.insert(key).second)
        return failAt(keyStart, "duplicate key '" + printable(key) + "'");
      skipWhitespace();
      if (pos >= input.size() || input[pos] != ':')
        return fail("':' after an object key");
      ++pos;
      skipWhitespace();
      out.keys.push_back(std::move(key));
      out.items.emplace_back();
      if (!parseValue(out.items.back(), depth))
        return false;
      skipWhitespace();
      if (pos < input.size() && input[pos] == ',') {
        ++pos;
        continue;
      }
      if (pos < input.size() && input[pos] == '}') {
        ++pos;
        return true;
      }
      return fail("',' or '}' in an object");
    }
  }

  std::string_view input;
  JsonLimits limits;
  size_t pos = 0;
  size_t numValues = 0;
  Status error;
};

StatusOr<JsonValue> parseJson(std::string_view text, JsonLimits limits) {
  return JsonParser(text, limits).parseDocument();
}

} // namespace compressa
