// SPDX-License-Identifier: Apache-2.0
// A small strict JSON (RFC 8259) parser for the runtime's own inputs:
// safetensors headers and model.safetensors.index.json. It treats its input as
// hostile: depth and value-count limits, UTF-8 validation, no duplicate keys,
// and errors that say where (line, column, byte) and what was expected.
#ifndef COMPRESSA_RUNTIME_WEIGHTS_JSON_H
#define COMPRESSA_RUNTIME_WEIGHTS_JSON_H

#include "runtime/base/status.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

namespace compressa {

class JsonValue;

/// The elements of an array (or the member values of an object): a range of
/// contiguous values.
class JsonRange {
public:
  JsonRange() = default;
  JsonRange(const JsonValue *first, size_t count) : first(first), count(count) {}
  const JsonValue *begin() const { return first; }
  inline const JsonValue *end() const;
  size_t size() const { return count; }
  bool empty() const { return count == 0; }
  inline const JsonValue &operator[](size_t index) const;

private:
  const JsonValue *first = nullptr;
  size_t count = 0;
};

/// One parsed JSON value: 16 bytes, a view into the JsonDocument that owns
/// every node and string of the document (copies are cheap views that must
/// not outlive it). Objects keep their members in file order.
class JsonValue {
public:
  enum class Kind : uint8_t { Null, Bool, Number, String, Array, Object };

  /// A null value.
  JsonValue() = default;

  Kind kind() const { return valueKind; }
  bool isNull() const { return valueKind == Kind::Null; }
  bool isBool() const { return valueKind == Kind::Bool; }
  bool isNumber() const { return valueKind == Kind::Number; }
  bool isString() const { return valueKind == Kind::String; }
  bool isArray() const { return valueKind == Kind::Array; }
  bool isObject() const { return valueKind == Kind::Object; }

  /// The boolean; false unless isBool().
  bool boolValue() const { return valueKind == Kind::Bool && (flags & kTrue); }
  /// The number as a double (correctly rounded from the literal); 0 unless
  /// isNumber().
  double numberValue() const {
    if (valueKind != Kind::Number)
      return 0;
    return (flags & kExactInteger) ? static_cast<double>(payload.integer)
                                   : payload.number;
  }
  /// The number as an exact integer when its literal had no fraction or
  /// exponent and fits in int64; nullopt otherwise (including non-numbers).
  std::optional<int64_t> intValue() const {
    if (valueKind == Kind::Number && (flags & kExactInteger))
      return payload.integer;
    return std::nullopt;
  }
  /// The decoded UTF-8 content of a string; empty unless isString().
  std::string_view stringValue() const {
    if (valueKind != Kind::String)
      return {};
    return std::string_view(payload.chars, count);
  }

  /// Number of elements of an array or members of an object; 0 otherwise.
  size_t size() const {
    return valueKind == Kind::Array || valueKind == Kind::Object ? count : 0;
  }
  /// The elements of an array, or the member values of an object (file
  /// order); empty otherwise.
  JsonRange elements() const {
    if (valueKind == Kind::Array)
      return JsonRange(payload.children, count);
    if (valueKind == Kind::Object)
      return JsonRange(payload.children + count, count);
    return JsonRange();
  }
  /// The key of member `index` of an object (file order).
  std::string_view memberKey(size_t index) const {
    return payload.children[index].stringValue();
  }
  /// The value of member `index` of an object (file order).
  const JsonValue &memberValue(size_t index) const {
    return payload.children[count + index];
  }
  /// The member named `key` of an object, or nullptr (also for non-objects).
  /// Linear time: iterate members for large objects.
  const JsonValue *find(std::string_view key) const;

  /// "null", "boolean", "number", "string", "array" or "object".
  static const char *kindName(Kind kind);

private:
  friend class JsonParser;
  static constexpr uint8_t kTrue = 1;
  static constexpr uint8_t kExactInteger = 2;

  Kind valueKind = Kind::Null;
  uint8_t flags = 0;
  /// String: its byte length. Array: elements. Object: members, whose keys
  /// (strings) are children[0, count) and values children[count, 2 * count).
  uint32_t count = 0;
  union Payload {
    int64_t integer;       // Number with kExactInteger
    double number;         // other Numbers
    const char *chars;     // String
    const JsonValue *children; // Array, Object
  } payload = {0};
};
static_assert(sizeof(JsonValue) == 16, "JsonValue is meant to stay compact");

inline const JsonValue *JsonRange::end() const { return first + count; }
inline const JsonValue &JsonRange::operator[](size_t index) const {
  return first[index];
}

/// A whole parsed document: the root value, and the storage of every other
/// value and string in it. Move-only; the values it hands out are valid while
/// it lives.
///
/// Memory: one 16-byte node per value (object keys included) and the
/// decoded bytes of every string, each in one exactly-sized allocation; while
/// parsing, 4 bytes per array or object and, for the object being closed,
/// 8 bytes per member (the duplicate-key check). Every value takes at least
/// 2 input bytes (itself and a separator), so the worst case is a document
/// of one-digit numbers, "[0,0,0,...]": 8 bytes per input byte. A document
/// of empty containers ("[[],[],...]", 3 bytes each) costs 16 + 4 bytes per
/// 3 input bytes; objects of one-letter keys ("a":0, 6 bytes a member) 32 +
/// 1 + 8 bytes per 6. So memory <= 8x the input, plus the input itself;
/// runtime_memory_bounds_test measures 8.0x on 10 MB of "[0,0,...]", where
/// the previous DOM (a std::string and two vectors per value) took 124.8x.
class JsonDocument : public JsonValue {
public:
  JsonDocument() = default;
  JsonDocument(JsonDocument &&) = default;
  JsonDocument &operator=(JsonDocument &&) = default;
  JsonDocument(const JsonDocument &) = delete;
  JsonDocument &operator=(const JsonDocument &) = delete;

  /// The root value.
  const JsonValue &root() const { return *this; }

private:
  friend class JsonParser;
  std::unique_ptr<JsonValue[]> nodes;
  std::unique_ptr<char[]> chars;
};

/// Limits that keep a hostile document from exhausting stack or memory.
struct JsonLimits {
  /// Deepest nesting of arrays and objects.
  unsigned maxDepth = 64;
  /// Most values (of any kind) in one document.
  size_t maxValues = size_t(1) << 22;
};

/// Parses `text` as one JSON value surrounded by optional whitespace. Errors
/// are InvalidArgument with "line L, column C (byte B): expected X, found Y".
/// Inputs of 4 GiB or more are refused.
StatusOr<JsonDocument> parseJson(std::string_view text, JsonLimits limits = {});

} // namespace compressa

#endif // COMPRESSA_RUNTIME_WEIGHTS_JSON_H
