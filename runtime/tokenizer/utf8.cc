// SPDX-License-Identifier: Apache-2.0
// UTF-8 helpers of the tokenizer, and Utf8Stream (declared in tokenizer.h).
#include "runtime/tokenizer/utf8.h"

#include "runtime/tokenizer/tokenizer.h"

#include <cstring>

namespace compressa {
namespace utf8 {
namespace {

/// The allowed range of the second byte after lead byte `lead`, and the
/// sequence length; length 0 for bytes that never start a sequence.
struct LeadInfo {
  uint8_t length;
  uint8_t secondMin;
  uint8_t secondMax;
};

LeadInfo leadInfo(uint8_t lead) {
  if (lead < 0x80)
    return {1, 0, 0};
  if (lead < 0xC2)
    return {0, 0, 0};
  if (lead < 0xE0)
    return {2, 0x80, 0xBF};
  if (lead == 0xE0)
    return {3, 0xA0, 0xBF};
  if (lead == 0xED)
    return {3, 0x80, 0x9F};
  if (lead < 0xF0)
    return {3, 0x80, 0xBF};
  if (lead == 0xF0)
    return {4, 0x90, 0xBF};
  if (lead < 0xF4)
    return {4, 0x80, 0xBF};
  if (lead == 0xF4)
    return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

/// How many bytes at the start of `text` form a valid prefix of a sequence
/// (stops at the first byte out of range); `complete` tells whether that
/// prefix is a whole sequence.
size_t validPrefix(std::string_view text, bool &complete) {
  complete = false;
  if (text.empty())
    return 0;
  LeadInfo info = leadInfo(uint8_t(text[0]));
  if (info.length == 0)
    return 0;
  if (info.length == 1) {
    complete = true;
    return 1;
  }
  size_t n = 1;
  for (; n < info.length; ++n) {
    if (n >= text.size())
      return n;
    uint8_t b = uint8_t(text[n]);
    uint8_t lo = n == 1 ? info.secondMin : 0x80;
    uint8_t hi = n == 1 ? info.secondMax : 0xBF;
    if (b < lo || b > hi)
      return n;
  }
  complete = true;
  return n;
}

} // namespace

size_t validSequenceLength(std::string_view text) {
  bool complete;
  size_t n = validPrefix(text, complete);
  return complete ? n : 0;
}

size_t maximalSubpartLength(std::string_view text) {
  bool complete;
  size_t n = validPrefix(text, complete);
  return n == 0 ? 1 : n;
}

bool isTruncatedSequence(std::string_view text) {
  bool complete;
  size_t n = validPrefix(text, complete);
  return !complete && n != 0 && n == text.size();
}

size_t findInvalid(std::string_view text) {
  const size_t size = text.size();
  const char *data = text.data();
  size_t pos = 0;
  while (pos < size) {
    // ASCII fast path, 8 bytes at a time.
    while (pos + 8 <= size) {
      uint64_t word;
      std::memcpy(&word, data + pos, 8);
      if (word & 0x8080808080808080ull)
        break;
      pos += 8;
    }
    if (pos >= size)
      break;
    if (uint8_t(data[pos]) < 0x80) {
      ++pos;
      continue;
    }
    size_t n = validSequenceLength(text.substr(pos));
    if (n == 0)
      return pos;
    pos += n;
  }
  return std::string_view::npos;
}

void appendCodePoint(uint32_t c, std::string &out) {
  if (c < 0x80) {
    out += char(c);
  } else if (c < 0x800) {
    out += char(0xC0 | (c >> 6));
    out += char(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += char(0xE0 | (c >> 12));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  } else {
    out += char(0xF0 | (c >> 18));
    out += char(0x80 | ((c >> 12) & 0x3F));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  }
}

uint32_t decodeAt(std::string_view text, size_t &pos) {
  uint8_t b0 = uint8_t(text[pos]);
  if (b0 < 0x80) {
    ++pos;
    return b0;
  }
  if (b0 < 0xE0) {
    uint32_t c = (uint32_t(b0 & 0x1F) << 6) | (uint8_t(text[pos + 1]) & 0x3F);
    pos += 2;
    return c;
  }
  if (b0 < 0xF0) {
    uint32_t c = (uint32_t(b0 & 0x0F) << 12) |
                 (uint32_t(uint8_t(text[pos + 1]) & 0x3F) << 6) |
                 (uint8_t(text[pos + 2]) & 0x3F);
    pos += 3;
    return c;
  }
  uint32_t c = (uint32_t(b0 & 0x07) << 18) |
               (uint32_t(uint8_t(text[pos + 1]) & 0x3F) << 12) |
               (uint32_t(uint8_t(text[pos + 2]) & 0x3F) << 6) |
               (uint8_t(text[pos + 3]) & 0x3F);
  pos += 4;
  return c;
}

void appendLossy(std::string_view bytes, std::string &out) {
  static constexpr char kReplacement[] = "\xEF\xBF\xBD";
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t invalid = findInvalid(bytes.substr(pos));
    if (invalid == std::string_view::npos) {
      out.append(bytes.substr(pos));
      return;
    }
    out.append(bytes.substr(pos, invalid));
    pos += invalid;
    pos += maximalSubpartLength(bytes.substr(pos));
    out.append(kReplacement, 3);
  }
}

void appendJsonString(std::string_view text, std::string &out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (char ch : text) {
    uint8_t c = uint8_t(ch);
    switch (c) {
    case '"':
      out += "\\\"";
      break;
    case '\\':
      out += "\\\\";
      break;
    case '\b':
      out += "\\b";
      break;
    case '\f':
      out += "\\f";
      break;
    case '\n':
      out += "\\n";
      break;
    case '\r':
      out += "\\r";
      break;
    case '\t':
      out += "\\t";
      break;
    default:
      if (c < 0x20) {
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 15];
      } else {
        out += ch;
      }
    }
  }
  out += '"';
}

} // namespace utf8

std::string Utf8Stream::push(std::string_view bytes) {
  pending.append(bytes.data(), bytes.size());
  std::string out;
  size_t pos = 0;
  std::string_view view(pending);
  while (pos < view.size()) {
    std::string_view rest = view.substr(pos);
    size_t n = utf8::validSequenceLength(rest);
    if (n != 0) {
      out.append(rest.substr(0, n));
      pos += n;
      continue;
    }
    // A valid but unfinished sequence at the very end waits for more bytes.
    if (utf8::isTruncatedSequence(rest))
      break;
    size_t subpart = utf8::maximalSubpartLength(rest);
    out.append("\xEF\xBF\xBD", 3);
    pos += subpart;
  }
  pending.erase(0, pos);
  return out;
}

std::string Utf8Stream::finish() {
  std::string out;
  utf8::appendLossy(pending, out);
  pending.clear();
  return out;
}

} // namespace compressa
