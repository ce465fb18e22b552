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
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace compressa {

/// One parsed JSON value. Objects keep their members in file order.
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
  bool boolValue() const { return boolean; }
  /// The number as a double; 0 unless isNumber().
  double numberValue() const { return number; }
  /// The number as an exact integer when its literal had no fraction or
  /// exponent and fits in int64; nullopt otherwise (including non-numbers).
  std::optional<int64_t> intValue() const {
    if (valueKind == Kind::Number && exactInteger)
      return integer;
    return std::nullopt;
  }
  /// The decoded UTF-8 content of a string; empty unless isString().
  const std::string &stringValue() const { return text; }

  /// Number of elements of an array or members of an object; 0 otherwise.
  size_t size() const { return items.size(); }
  /// The elements of an array, or the member values of an object.
  const std::vector<JsonValue> &elements() const { return items; }
  /// The key of member `index` of an object (file order).
  const std::string &memberKey(size_t index) const { return keys[index]; }
  /// The value of member `index` of an object (file order).
  const JsonValue &memberValue(size_t index) const { return items[index]; }
  /// The member named `key` of an object, or nullptr (also for non-objects).
  /// Linear time: iterate members for large objects.
  const JsonValue *find(std::string_view key) const;

  /// "null", "boolean", "number", "string", "array" or "object".
  static const char *kindName(Kind kind);

private:
  friend class JsonParser;

  Kind valueKind = Kind::Null;
  bool boolean = false;
  bool exactInteger = false;
  int64_t integer = 0;
  double number = 0;
  std::string text;
  std::vector<std::string> keys;
  std::vector<JsonValue> items;
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
StatusOr<JsonValue> parseJson(std::string_view text, JsonLimits limits = {});

} // namespace compressa

#endif // COMPRESSA_RUNTIME_WEIGHTS_JSON_H
