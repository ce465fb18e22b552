// SPDX-License-Identifier: Apache-2.0
// Exact tests of the dtype table and scalar decoders: every FP8 e4m3 and UE8M0
// code against an independent bit-level formula, and every FP4 e2m1 code.
#include "runtime/weights/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

namespace compressa {
namespace {

/// The float whose IEEE-754 bit pattern is `bits`.
float floatFromBits(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

/// Bit-exact equality that also tells -0.0 from +0.0.
void expectSameFloat(float actual, float expected, int code) {
  uint32_t a, e;
  std::memcpy(&a, &actual, sizeof(a));
  std::memcpy(&e, &expected, sizeof(e));
  EXPECT_EQ(a, e) << "code 0x" << std::hex << code << ": got " << actual
                  << ", expected " << expected;
}

TEST(DTypeTest, NamesAndSizes) {
  struct Row {
    DType dtype;
    const char *name;
    size_t size;
  };
  const Row rows[] = {
      {DType::F64, "F64", 8},        {DType::F32, "F32", 4},
      {DType::F16, "F16", 2},        {DType::BF16, "BF16", 2},
      {DType::F8E4M3, "F8_E4M3", 1}, {DType::F8E5M2, "F8_E5M2", 1},
      {DType::F8E8M0, "F8_E8M0", 1}, {DType::I64, "I64", 8},
      {DType::I32, "I32", 4},        {DType::I16, "I16", 2},
      {DType::I8, "I8", 1},          {DType::U8, "U8", 1},
      {DType::Bool, "BOOL", 1},
  };
  EXPECT_EQ(std::size(rows), std::size(kAllDTypes));
  for (const Row &row : rows) {
    EXPECT_STREQ(dtypeName(row.dtype), row.name);
    EXPECT_EQ(dtypeSize(row.dtype), row.size) << row.name;
    std::optional<DType> parsed = parseDType(row.name);
    ASSERT_TRUE(parsed.has_value()) << row.name;
    EXPECT_EQ(*parsed, row.dtype);
  }
  EXPECT_FALSE(parseDType("f32").has_value());
  EXPECT_FALSE(parseDType("F8_E4M3FN").has_value());
  EXPECT_FALSE(parseDType("").has_value());
}

TEST(DTypeTest, Bf16) {
  expectSameFloat(bf16ToFloat(0x3F80), 1.0f, 0x3F80);
  expectSameFloat(bf16ToFloat(0xC000), -2.0f, 0xC000);
  expectSameFloat(bf16ToFloat(0x3EAA), floatFromBits(0x3EAA0000), 0x3EAA);
  expectSameFloat(bf16ToFloat(0x8000), -0.0f, 0x8000);
  EXPECT_TRUE(std::isinf(bf16ToFloat(0x7F80)));
  EXPECT_TRUE(std::isnan(bf16ToFloat(0x7FC0)));
  for (uint32_t code = 0; code < 0x10000; code += 0x101)
    if (!std::isnan(bf16ToFloat(static_cast<uint16_t>(code))))
      expectSameFloat(bf16ToFloat(static_cast<uint16_t>(code)),
                      floatFromBits(code << 16), static_cast<int>(code));
}

TEST(DTypeTest, F8E4M3AllCodes) {
  for (int code = 0; code < 256; ++code) {
    uint32_t sign = (code >> 7) & 1;
    uint32_t exponent = (code >> 3) & 0xF;
    uint32_t mantissa = code & 0x7;
    float got = f8e4m3ToFloat(static_cast<uint8_t>(code));
    if (exponent == 0xF && mantissa == 0x7) {
      EXPECT_TRUE(std::isnan(got)) << "code " << code;
      continue;
    }
    float expected;
    if (exponent == 0) {
      // Subnormal: mantissa * 2^-9, exact in float.
      expected = static_cast<float>(mantissa) / 512.0f;
      if (sign)
        expected = -expected;
    } else {
      // Normal: rebias the exponent (7 -> 127), widen the mantissa (3 -> 23).
      expected = floatFromBits((sign << 31) | ((exponent - 7 + 127) << 23) |
                               (mantissa << 20));
    }
    expectSameFloat(got, expected, code);
  }
}

TEST(DTypeTest, F8E4M3KnownValues) {
  EXPECT_EQ(f8e4m3ToFloat(0x38), 1.0f);
  EXPECT_EQ(f8e4m3ToFloat(0x40), 2.0f);
  EXPECT_EQ(f8e4m3ToFloat(0x7E), 448.0f);
  EXPECT_EQ(f8e4m3ToFloat(0xFE), -448.0f);
  EXPECT_EQ(f8e4m3ToFloat(0x08), 0.015625f);    // 2^-6, smallest normal
  EXPECT_EQ(f8e4m3ToFloat(0x01), 0.001953125f); // 2^-9, smallest subnormal
  EXPECT_EQ(f8e4m3ToFloat(0x07), 0.013671875f); // 7 * 2^-9
  EXPECT_EQ(f8e4m3ToFloat(0x3C), 1.5f);
  EXPECT_EQ(f8e4m3ToFloat(0x78), 256.0f); // no infinity at exponent 15
  expectSameFloat(f8e4m3ToFloat(0x80), -0.0f, 0x80);
  EXPECT_TRUE(std::isnan(f8e4m3ToFloat(0x7F)));
  EXPECT_TRUE(std::isnan(f8e4m3ToFloat(0xFF)));
  // Positive codes increase strictly up to the largest finite value.
  for (int code = 1; code <= 0x7E; ++code)
    EXPECT_LT(f8e4m3ToFloat(static_cast<uint8_t>(code - 1)),
              f8e4m3ToFloat(static_cast<uint8_t>(code)))
        << "code " << code;
}

TEST(DTypeTest, F8E8M0) {
  EXPECT_EQ(f8e8m0ToFloat(127), 1.0f);
  EXPECT_EQ(f8e8m0ToFloat(128), 2.0f);
  EXPECT_EQ(f8e8m0ToFloat(126), 0.5f);
  EXPECT_EQ(f8e8m0ToFloat(120), 1.0f / 128.0f);
  EXPECT_EQ(f8e8m0ToFloat(137), 1024.0f);
  expectSameFloat(f8e8m0ToFloat(0), floatFromBits(0x00400000), 0); // 2^-127
  expectSameFloat(f8e8m0ToFloat(254), floatFromBits(0x7F000000), 254);
  EXPECT_TRUE(std::isnan(f8e8m0ToFloat(0xFF)));
  // 2^(v-127) has the IEEE exponent field v for every normal v.
  for (int code = 1; code <= 254; ++code)
    expectSameFloat(f8e8m0ToFloat(static_cast<uint8_t>(code)),
                    floatFromBits(static_cast<uint32_t>(code) << 23), code);
}

TEST(DTypeTest, Fp4E2M1AllCodes) {
  const float expected[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,
                              4.0f,  6.0f,  -0.0f, -0.5f, -1.0f, -1.5f,
                              -2.0f, -3.0f, -4.0f, -6.0f};
  for (int code = 0; code < 16; ++code) {
    expectSameFloat(fp4e2m1ToFloat(static_cast<uint8_t>(code)), expected[code],
                    code);
    // Only the low nibble counts.
    expectSameFloat(fp4e2m1ToFloat(static_cast<uint8_t>(0xF0 | code)),
                    expected[code], code);
  }
}

TEST(DTypeTest, UnpackFp4PairLowNibbleFirst) {
  float even = 0, odd = 0;
  unpackFp4x2(0x72, even, odd); // low 2 -> 1.0, high 7 -> 6.0
  EXPECT_EQ(even, 1.0f);
  EXPECT_EQ(odd, 6.0f);
  unpackFp4x2(0xA9, even, odd); // low 9 -> -0.5, high 10 -> -1.0
  EXPECT_EQ(even, -0.5f);
  EXPECT_EQ(odd, -1.0f);
}

TEST(DTypeTest, ReadUnaligned) {
  uint8_t bytes[9] = {0xAA, 0x00, 0x00, 0x80, 0x3F, 0x01, 0x02, 0x03, 0x04};
  EXPECT_EQ(readUnaligned<float>(bytes + 1), 1.0f);
  EXPECT_EQ(readUnaligned<uint32_t>(bytes + 5), 0x04030201u);
}

} // namespace
} // namespace compressa
