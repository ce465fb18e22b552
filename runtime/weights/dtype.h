// SPDX-License-Identifier: Apache-2.0
// Element types of safetensors checkpoints and exact scalar decoders for the
// low-precision formats DeepSeek-V4 stores (spec §2.1): BF16, FP8 e4m3fn,
// UE8M0 block scales and FP4 e2m1 nibbles packed two per I8 byte.
#ifndef COMPRESSA_RUNTIME_WEIGHTS_DTYPE_H
#define COMPRESSA_RUNTIME_WEIGHTS_DTYPE_H

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string_view>
#include <type_traits>

namespace compressa {

/// A safetensors element type. The spelling on disk is dtypeName().
enum class DType : uint8_t {
  F64,
  F32,
  F16,
  BF16,
  F8E4M3,
  F8E5M2,
  F8E8M0,
  I64,
  I32,
  I16,
  I8,
  U8,
  Bool,
};

/// Every DType, in enum order.
inline constexpr DType kAllDTypes[] = {
    DType::F64,    DType::F32,    DType::F16, DType::BF16, DType::F8E4M3,
    DType::F8E5M2, DType::F8E8M0, DType::I64, DType::I32,  DType::I16,
    DType::I8,     DType::U8,     DType::Bool};

/// The safetensors spelling: "F32", "BF16", "F8_E4M3", "BOOL", ...
constexpr const char *dtypeName(DType dtype) {
  switch (dtype) {
  case DType::F64:
    return "F64";
  case DType::F32:
    return "F32";
  case DType::F16:
    return "F16";
  case DType::BF16:
    return "BF16";
  case DType::F8E4M3:
    return "F8_E4M3";
  case DType::F8E5M2:
    return "F8_E5M2";
  case DType::F8E8M0:
    return "F8_E8M0";
  case DType::I64:
    return "I64";
  case DType::I32:
    return "I32";
  case DType::I16:
    return "I16";
  case DType::I8:
    return "I8";
  case DType::U8:
    return "U8";
  case DType::Bool:
    return "BOOL";
  }
  return "?";
}

/// Bytes per element.
constexpr size_t dtypeSize(DType dtype) {
  switch (dtype) {
  case DType::F64:
  case DType::I64:
    return 8;
  case DType::F32:
  case DType::I32:
    return 4;
  case DType::F16:
  case DType::BF16:
  case DType::I16:
    return 2;
  case DType::F8E4M3:
  case DType::F8E5M2:
  case DType::F8E8M0:
  case DType::I8:
  case DType::U8:
  case DType::Bool:
    return 1;
  }
  return 0;
}

/// The DType spelled `name` on disk (exact, case-sensitive), or nullopt.
inline std::optional<DType> parseDType(std::string_view name) {
  for (DType dtype : kAllDTypes)
    if (name == dtypeName(dtype))
      return dtype;
  return std::nullopt;
}

/// Reads a T in host byte order (the runtime needs a little-endian host, like
/// safetensors itself) from a possibly unaligned address. Safetensors data
/// offsets carry no alignment guarantee, so never cast the pointer instead.
template <class T> inline T readUnaligned(const uint8_t *bytes) {
  static_assert(std::is_trivially_copyable_v<T>, "plain data only");
  T value;
  std::memcpy(&value, bytes, sizeof(T));
  return value;
}

/// bfloat16 bits -> float (exact: bf16 is the top half of an IEEE float).
inline float bf16ToFloat(uint16_t bits) {
  uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &wide, sizeof(value));
  return value;
}

/// FP8 e4m3fn -> float (exact). Sign bit 7, 4 exponent bits with bias 7,
/// 3 mantissa bits; exponent 0 is subnormal (m/8 * 2^-6); no infinities;
/// 0x7F and 0xFF are NaN; the largest finite value is 448.
inline float f8e4m3ToFloat(uint8_t bits) {
  unsigned exponent = (bits >> 3) & 0xF;
  unsigned mantissa = bits & 0x7;
  if (exponent == 0xF && mantissa == 0x7)
    return std::numeric_limits<float>::quiet_NaN();
  float magnitude = exponent == 0
                        ? std::ldexp(static_cast<float>(mantissa), -9)
                        : std::ldexp(static_cast<float>(8 + mantissa),
                                     static_cast<int>(exponent) - 7 - 3);
  return (bits & 0x80) ? -magnitude : magnitude;
}

/// UE8M0 scale -> float (exact): 2^(bits - 127); 0xFF is NaN. Code 0 gives
/// 2^-127, a float subnormal.
inline float f8e8m0ToFloat(uint8_t bits) {
  if (bits == 0xFF)
    return std::numeric_limits<float>::quiet_NaN();
  return std::ldexp(1.0f, static_cast<int>(bits) - 127);
}

/// FP4 e2m1 nibble (low 4 bits of `code`) -> float (exact). Bit 3 is the
/// sign; bits 2..0 index {0, 0.5, 1, 1.5, 2, 3, 4, 6}. Code 8 is -0.0.
inline float fp4e2m1ToFloat(uint8_t code) {
  static constexpr float kMagnitudes[8] = {0.0f, 0.5f, 1.0f, 1.5f,
                                           2.0f, 3.0f, 4.0f, 6.0f};
  float magnitude = kMagnitudes[code & 0x7];
  return (code & 0x8) ? -magnitude : magnitude;
}

/// The two FP4 values packed in one I8 byte of a routed-expert weight: the low
/// nibble is the even column, the high nibble the odd one (spec §2.1).
inline void unpackFp4x2(uint8_t byte, float &even, float &odd) {
  even = fp4e2m1ToFloat(byte & 0xF);
  odd = fp4e2m1ToFloat(byte >> 4);
}

} // namespace compressa

#endif // COMPRESSA_RUNTIME_WEIGHTS_DTYPE_H
