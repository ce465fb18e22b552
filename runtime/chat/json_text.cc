// SPDX-License-Identifier: Apache-2.0
// JSON written as Python's json.dumps(ensure_ascii=False) writes it
// (json_text.h).
#include "runtime/chat/json_text.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace compressa {

void appendPythonJsonString(std::string_view text, std::string &out) {
  out += '"';
  for (char c : text) {
    unsigned char byte = static_cast<unsigned char>(c);
    switch (c) {
    case '"':
      out += "\\\"";
      break;
    case '\\':
      out += "\\\\";
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
    case '\b':
      out += "\\b";
      break;
    case '\f':
      out += "\\f";
      break;
    default:
      if (byte < 0x20) {
        char escape[8];
        std::snprintf(escape, sizeof(escape), "\\u%04x", byte);
        out += escape;
      } else {
        out += c;
      }
    }
  }
  out += '"';
}

namespace {

/// Python's float repr: the shortest digits that round-trip, in exponent
/// form when the decimal exponent is below -4 or at least 16.
void appendPythonFloat(double value, std::string &out) {
  if (std::isnan(value)) {
    out += "NaN";
    return;
  }
  if (std::isinf(value)) {
    out += value < 0 ? "-Infinity" : "Infinity";
    return;
  }
  char buffer[64];
  // Shortest round trip in scientific form: [-]d[.ddd]e[+-]XX.
  std::to_chars_result result = std::to_chars(
      buffer, buffer + sizeof(buffer), value, std::chars_format::scientific);
  std::string sci(buffer, result.ptr);
  std::string sign;
  if (!sci.empty() && sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  size_t e = sci.find('e');
  std::string mantissa = sci.substr(0, e);
  int exponent = std::atoi(sci.c_str() + e + 1);
  std::string digits;
  for (char c : mantissa)
    if (c != '.')
      digits += c;
  out += sign;
  if (exponent < -4 || exponent >= 16) {
    out += digits[0];
    if (digits.size() > 1) {
      out += '.';
      out.append(digits, 1, std::string::npos);
    }
    char tail[16];
    std::snprintf(tail, sizeof(tail), "e%c%02d", exponent < 0 ? '-' : '+',
                  std::abs(exponent));
    out += tail;
    return;
  }
  if (exponent < 0) {
    out += "0.";
    out.append(static_cast<size_t>(-exponent - 1), '0');
    out += digits;
    return;
  }
  size_t intDigits = static_cast<size_t>(exponent) + 1;
  if (digits.size() <= intDigits) {
    out += digits;
    out.append(intDigits - digits.size(), '0');
    out += ".0";
  } else {
    out.append(digits, 0, intDigits);
    out += '.';
    out.append(digits, intDigits, std::string::npos);
  }
}

} // namespace

void appendPythonJson(const nlohmann::ordered_json &value, std::string &out) {
  using Type = nlohmann::ordered_json::value_t;
  switch (value.type()) {
  case Type::null:
  case Type::discarded:
    out += "null";
    return;
  case Type::boolean:
    out += value.get<bool>() ? "true" : "false";
    return;
  case Type::number_integer:
    out += std::to_string(value.get<int64_t>());
    return;
  case Type::number_unsigned:
    out += std::to_string(value.get<uint64_t>());
    return;
  case Type::number_float:
    appendPythonFloat(value.get<double>(), out);
    return;
  case Type::string:
    appendPythonJsonString(value.get_ref<const std::string &>(), out);
    return;
  case Type::array: {
    out += '[';
    bool first = true;
    for (const auto &element : value) {
      if (!first)
        out += ", ";
      first = false;
      appendPythonJson(element, out);
    }
    out += ']';
    return;
  }
  case Type::object: {
    out += '{';
    bool first = true;
    for (const auto &item : value.items()) {
      if (!first)
        out += ", ";
      first = false;
      appendPythonJsonString(item.key(), out);
      out += ": ";
      appendPythonJson(item.value(), out);
    }
    out += '}';
    return;
  }
  case Type::binary:
    out += "null";
    return;
  }
}

std::string pythonJson(const nlohmann::ordered_json &value) {
  std::string out;
  appendPythonJson(value, out);
  return out;
}

// nlohmann's lexer takes a NUL byte for the end of the input, so "[1]\0x"
// would pass; a raw NUL is never valid JSON (strings escape it).
bool isJsonText(std::string_view text) {
  return text.find('\0') == std::string_view::npos &&
         nlohmann::json::accept(text.begin(), text.end());
}

namespace {

/// A SAX pass (no tree built) that checks the limits of parseOrderedJson
/// and keeps the parser's message on a syntax error.
class ShapeCheck : public nlohmann::json::json_sax_t {
public:
  std::string problem;

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t &) override { return true; }
  bool string(string_t &) override { return true; }
  bool binary(binary_t &) override { return true; }
  bool start_object(std::size_t) override { return open(); }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(); }
  bool end_array() override { return close(); }
  bool key(string_t &) override {
    work += ++keys.back();
    if (work <= kMaxJsonKeyWork)
      return true;
    problem = "has too many keys in its objects (an object of about " +
              std::to_string(keys.back()) + " keys; the limit is about 10000)";
    return false;
  }
  bool parse_error(std::size_t, const std::string &,
                   const nlohmann::detail::exception &error) override {
    problem = std::string("is not valid JSON: ") + error.what();
    return false;
  }

private:
  bool open() {
    if (keys.size() < kMaxJsonDepth) {
      keys.push_back(0);
      return true;
    }
    problem = "nests deeper than " + std::to_string(kMaxJsonDepth) + " levels";
    return false;
  }
  bool close() {
    keys.pop_back();
    return true;
  }

  std::vector<uint64_t> keys;
  uint64_t work = 0;
};

} // namespace

StatusOr<nlohmann::ordered_json> parseOrderedJson(std::string_view text,
                                                  const char *what) {
  size_t nul = text.find('\0');
  if (nul != std::string_view::npos)
    return COMPRESSA_ERROR(InvalidArgument,
                           "%s is not valid JSON: a NUL byte at offset %zu",
                           what, nul);
  ShapeCheck check;
  if (!nlohmann::json::sax_parse(text.begin(), text.end(), &check))
    return COMPRESSA_ERROR(InvalidArgument, "%s %s", what,
                           check.problem.empty() ? "is not valid JSON"
                                                 : check.problem.c_str());
  nlohmann::ordered_json value = nlohmann::ordered_json::parse(
      text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded())
    return COMPRESSA_ERROR(InvalidArgument, "%s is not valid JSON", what);
  return value;
}

} // namespace compressa
