// SPDX-License-Identifier: Apache-2.0
// Recursive-descent implementation of the strict JSON parser in json.h. The
// grammar is RFC 8259 exactly: no comments, no trailing commas, no NaN, no
// leading zeros, no raw control characters, valid UTF-8 only.
//
// Two passes over the text keep memory a small multiple of the input:
//  1. validate everything but duplicate keys, and count the values, the
//     decoded string bytes and the size of every array and object (in the
//     order they open);
//  2. allocate exactly that many nodes and bytes, and parse again into them:
//     an array or object takes its block of children from the node pool when
//     it opens (its size is known from pass 1), strings are decoded straight
//     into the byte pool, and each object's keys are checked for duplicates
//     when it closes.
#include "runtime/weights/json.h"

#include <charconv>
#include <cstdio>
#include <algorithm>
#include <vector>

namespace compressa {

const JsonValue *JsonValue::find(std::string_view key) const {
  if (valueKind != Kind::Object)
    return nullptr;
  for (size_t i = 0; i < count; ++i)
    if (payload.children[i].stringValue() == key)
      return &payload.children[count + i];
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

  StatusOr<JsonDocument> parseDocument() {
    if (input.size() >= UINT32_MAX)
      return Status::error(StatusCode::InvalidArgument,
                           "a JSON document of %zu bytes is too large (at "
                           "most 4 GiB)",
                           input.size());
    // Pass 1: validate and count.
    JsonDocument document;
    if (!parseTopLevel(document))
      return error;
    // Pass 2: build into exactly-sized storage.
    std::vector<uint32_t>(containerSizes).swap(containerSizes);
    static_cast<JsonValue &>(document) = JsonValue();
    building = true;
    if (numNodes > 1)
      document.nodes.reset(new JsonValue[numNodes - 1]);
    if (numStringBytes > 0)
      document.chars.reset(new char[numStringBytes]);
    nextNode = document.nodes.get();
    nextChar = document.chars.get();
    nextContainer = 0;
    pos = 0;
    numValues = 0;
    if (!parseTopLevel(document))
      return error;
    return document;
  }

private:
  bool parseTopLevel(JsonValue &root) {
    skipWhitespace();
    if (!parseValue(root, 0))
      return false;
    skipWhitespace();
    if (pos != input.size())
      return fail("end of input after the top-level value");
    return true;
  }

  /// `count` nodes from the pool (pass 2).
  JsonValue *takeNodes(size_t count) {
    JsonValue *block = nextNode;
    nextNode += count;
    return block;
  }

  /// Where decoded string bytes go: counted in pass 1, stored in pass 2.
  struct StringSink {
    char *out = nullptr;
    size_t length = 0;
    void push(char c) {
      if (out)
        out[length] = c;
      ++length;
    }
    void append(const char *bytes, size_t n) {
      if (out)
        std::copy(bytes, bytes + n, out + length);
      length += n;
    }
  };

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
    ++numNodes;
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
      return parseStringValue(out);
    case 't':
      out.valueKind = JsonValue::Kind::Bool;
      out.flags = JsonValue::kTrue;
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
    out.payload.number = value;
    if (integral) {
      int64_t exact = 0;
      auto [intEnd, intEc] = std::from_chars(first, last, exact);
      if (intEc == std::errc() && intEnd == last) {
        out.flags = JsonValue::kExactInteger;
        out.payload.integer = exact;
      }
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

  static void appendUtf8(StringSink &out, uint32_t cp) {
    if (cp < 0x80) {
      out.push(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push(static_cast<char>(0xC0 | (cp >> 6)));
      out.push(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push(static_cast<char>(0xE0 | (cp >> 12)));
      out.push(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push(static_cast<char>(0xF0 | (cp >> 18)));
      out.push(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  /// Copies one raw UTF-8 sequence starting at `pos` (lead byte >= 0x80),
  /// rejecting overlong forms, surrogates and code points past U+10FFFF.
  bool copyUtf8Sequence(StringSink &out) {
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

  /// A string value: its bytes go to the document's byte pool.
  bool parseStringValue(JsonValue &out) {
    StringSink sink;
    sink.out = building ? nextChar : nullptr;
    if (!parseString(sink))
      return false;
    if (building) {
      out.valueKind = JsonValue::Kind::String;
      out.count = static_cast<uint32_t>(sink.length);
      out.payload.chars = nextChar;
      nextChar += sink.length;
    } else {
      numStringBytes += sink.length;
    }
    return true;
  }

  bool parseString(StringSink &out) {
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
        out.push(static_cast<char>(c));
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
        out.push(escape);
        break;
      case 'b':
        out.push('\b');
        break;
      case 'f':
        out.push('\f');
        break;
      case 'n':
        out.push('\n');
        break;
      case 'r':
        out.push('\r');
        break;
      case 't':
        out.push('\t');
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

  /// Pass 1: the index of a new container's size; pass 2: its size.
  bool openContainer(unsigned depth, size_t &slot, uint32_t &size) {
    if (!enterContainer(depth))
      return false;
    if (building) {
      size = containerSizes[nextContainer++];
    } else {
      slot = containerSizes.size();
      containerSizes.push_back(0);
    }
    return true;
  }

  bool parseArray(JsonValue &out, unsigned depth) {
    size_t slot = 0;
    uint32_t size = 0;
    if (!openContainer(depth, slot, size))
      return false;
    out.valueKind = JsonValue::Kind::Array;
    JsonValue *children = building ? takeNodes(size) : nullptr;
    out.count = size;
    out.payload.children = children;
    uint32_t index = 0;
    ++pos; // '['
    skipWhitespace();
    if (pos < input.size() && input[pos] == ']') {
      ++pos;
      return true;
    }
    JsonValue scratch;
    while (true) {
      skipWhitespace();
      if (!parseValue(building ? children[index] : scratch, depth))
        return false;
      ++index;
      skipWhitespace();
      if (pos < input.size() && input[pos] == ',') {
        ++pos;
        continue;
      }
      if (pos < input.size() && input[pos] == ']') {
        ++pos;
        if (!building)
          containerSizes[slot] = index;
        return true;
      }
      return fail("',' or ']' in an array");
    }
  }

  bool parseObject(JsonValue &out, unsigned depth) {
    size_t slot = 0;
    uint32_t size = 0;
    if (!openContainer(depth, slot, size))
      return false;
    out.valueKind = JsonValue::Kind::Object;
    // Keys in children[0, size), values in children[size, 2 * size).
    JsonValue *children = building ? takeNodes(size_t(size) * 2) : nullptr;
    out.count = size;
    out.payload.children = children;
    uint32_t index = 0;
    // Where each key starts, for a duplicate's message (pass 2).
    std::vector<uint32_t> keyStarts;
    if (building)
      keyStarts.reserve(size);
    ++pos; // '{'
    skipWhitespace();
    if (pos < input.size() && input[pos] == '}') {
      ++pos;
      return true;
    }
    JsonValue scratch;
    while (true) {
      skipWhitespace();
      if (pos >= input.size() || input[pos] != '"')
        return fail("'\"' to start an object key");
      if (building)
        keyStarts.push_back(static_cast<uint32_t>(pos));
      // A key is a value too (it takes a node), but not one that counts
      // against maxValues.
      if (!parseStringValue(building ? children[index] : scratch))
        return false;
      if (!building)
        ++numNodes;
      skipWhitespace();
      if (pos >= input.size() || input[pos] != ':')
        return fail("':' after an object key");
      ++pos;
      skipWhitespace();
      if (!parseValue(building ? children[size + index] : scratch, depth))
        return false;
      ++index;
      skipWhitespace();
      if (pos < input.size() && input[pos] == ',') {
        ++pos;
        continue;
      }
      if (pos < input.size() && input[pos] == '}') {
        ++pos;
        if (!building) {
          containerSizes[slot] = index;
          return true;
        }
        return checkDuplicateKeys(children, size, keyStarts);
      }
      return fail("',' or '}' in an object");
    }
  }

  /// Fails at the second occurrence of a key that appears twice.
  bool checkDuplicateKeys(const JsonValue *keys, uint32_t size,
                          std::vector<uint32_t> &keyStarts) {
    if (size < 2)
      return true;
    // Sort the member indices by key; equal keys end up side by side.
    std::vector<uint32_t> order(size);
    for (uint32_t i = 0; i < size; ++i)
      order[i] = i;
    std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
      std::string_view ka = keys[a].stringValue(), kb = keys[b].stringValue();
      return ka != kb ? ka < kb : a < b;
    });
    size_t first = SIZE_MAX;
    uint32_t duplicate = 0;
    for (uint32_t i = 1; i < size; ++i) {
      if (keys[order[i]].stringValue() == keys[order[i - 1]].stringValue() &&
          keyStarts[order[i]] < first) {
        first = keyStarts[order[i]];
        duplicate = order[i];
      }
    }
    if (first == SIZE_MAX)
      return true;
    return failAt(first, "duplicate key '" +
                             printable(keys[duplicate].stringValue()) + "'");
  }

  std::string_view input;
  JsonLimits limits;
  size_t pos = 0;
  size_t numValues = 0;
  /// Values and object keys: the nodes of the document (pass 1).
  size_t numNodes = 0;
  Status error;
  /// False in pass 1 (validate and count), true in pass 2 (build).
  bool building = false;
  /// Decoded bytes of all strings (pass 1).
  size_t numStringBytes = 0;
  /// Elements or members of every array and object, in opening order.
  std::vector<uint32_t> containerSizes;
  size_t nextContainer = 0;
  JsonValue *nextNode = nullptr;
  char *nextChar = nullptr;
};

StatusOr<JsonDocument> parseJson(std::string_view text, JsonLimits limits) {
  return JsonParser(text, limits).parseDocument();
}

} // namespace compressa
