// SPDX-License-Identifier: Apache-2.0
// The seeded generator of random weights (`compressa-bench --weights
// random`), written once for the host (CPU target, and the host twin of the
// CUDA generator) and the device (runtime/cuda/random_weights.cu, compiled to
// PTX by nvcc at build time): plain C++ that nvcc compiles as
// __host__ __device__.
//
// Counter-based: element i of a tensor is a function of (seed, tensor index,
// i) only, through SplitMix64's finalizer, so any thread may make any
// element and the CPU and the GPU produce the same bytes for the same seed.
// Floats are made with integer operations and single roundings (the device
// uses __fmul_rn/__fadd_rn so that nothing is contracted into an FMA).
//
// Encodings (RandomKind):
// - F32, BF16: center + amplitude * u, u uniform in [-1, 1) (24 bits).
// - E4M3: an e4m3 code of a uniform integer magnitude in [0, 448] with a
//   random sign; never the NaN codes 0x7F/0xFF. The weight's UE8M0 scales
//   (Const8) scale 448 to the intended amplitude.
// - E2M1: a random byte: two e2m1 nibbles, each any of the 16 values.
// - Const8: every byte `byteValue` (UE8M0 block scales).
// - I64Index: int64 values in [0, below): each row of `rowLength` holds
//   consecutive distinct values from a random start (hash routing's tid2eid).
// - StatePairs: 32-bit words whose halves are bf16 values uniform in
//   [-1, 1): read as f32 the word is a finite value within 1% of its high
//   half, so it serves f32 and bf16 decode states alike (--context fills).
#ifndef COMPRESSA_RUNTIME_CUDA_RANDOM_WEIGHTS_H
#define COMPRESSA_RUNTIME_CUDA_RANDOM_WEIGHTS_H

#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define COMPRESSA_HD __host__ __device__ __forceinline__
#else
#define COMPRESSA_HD inline
#endif

namespace compressa {

enum RandomKind : uint32_t {
  kRandomF32 = 0,
  kRandomBF16 = 1,
  kRandomE4M3 = 2,
  kRandomE2M1 = 3,
  kRandomConst8 = 4,
  kRandomI64Index = 5,
  kRandomStatePairs = 6,
};

/// One tensor to generate. Plain data: the CUDA backend copies it to the
/// device as the generator kernel's argument (the layout is fixed: 64 bytes).
struct RandomSpec {
  /// Where the elements go: a device address on CUDA (the host ignores it).
  uint64_t dst = 0;
  /// Elements to generate (bytes for E4M3, E2M1 and Const8; 32-bit words
  /// for StatePairs).
  uint64_t count = 0;
  /// randomStreamKey(seed, tensor index).
  uint64_t key = 0;
  /// Index of the first element (a state fill continues a row range).
  uint64_t first = 0;
  uint32_t kind = kRandomF32;
  /// I64Index: values per row, and the exclusive upper bound.
  uint32_t rowLength = 1;
  uint64_t below = 1;
  float center = 0.0f;
  float amplitude = 0.0f;
  /// Const8: the byte.
  uint32_t byteValue = 0;
  uint32_t pad = 0;
};
static_assert(sizeof(RandomSpec) == 64, "RandomSpec is shared with the device");

/// SplitMix64's finalizer.
COMPRESSA_HD uint64_t randomMix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// The stream of tensor `tensor` under `seed`.
COMPRESSA_HD uint64_t randomStreamKey(uint64_t seed, uint64_t tensor) {
  return randomMix(randomMix(seed) ^ (tensor * 0xD1B54A32D192ED03ull));
}

/// 64 random bits for element `i` of the stream `key`.
COMPRESSA_HD uint64_t randomBits(uint64_t key, uint64_t i) {
  return randomMix(key ^ randomMix(i));
}

COMPRESSA_HD uint32_t randomFloatBits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

/// center + amplitude * u, u in [-1, 1) from the top 24 bits, rounded once
/// per operation (no FMA).
COMPRESSA_HD float randomUniform(uint64_t bits, float center, float amplitude) {
  int32_t q = static_cast<int32_t>(bits >> 40) - (1 << 23);
  float u = static_cast<float>(q) * (1.0f / 8388608.0f); // exact
#ifdef __CUDA_ARCH__
  return __fadd_rn(center, __fmul_rn(amplitude, u));
#else
  float scaled = amplitude * u;
  return center + scaled;
#endif
}

/// f32 -> bf16, round to nearest even (values here are finite).
COMPRESSA_HD uint16_t randomToBF16(float f) {
  uint32_t u = randomFloatBits(f);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

/// The e4m3 code of the integer magnitude q in [0, 448], rounded to
/// nearest even: exponent e = floor(log2 q) (bias 7), 3 mantissa bits.
COMPRESSA_HD uint8_t randomE4M3Magnitude(uint32_t q) {
  if (q == 0)
    return 0;
  uint32_t e = 0;
  while ((q >> (e + 1)) != 0)
    ++e;
  uint32_t mant; // mantissa in units of 2^(e-3), before dropping the 1
  if (e <= 3) {
    mant = q << (3 - e);
  } else {
    uint32_t shift = e - 3;
    uint32_t rest = q & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    mant = q >> shift;
    if (rest > half || (rest == half && (mant & 1u)))
      ++mant;
    if (mant == 16) { // rounded up to the next power of two
      mant = 8;
      ++e;
    }
  }
  return static_cast<uint8_t>(((e + 7) << 3) | (mant - 8));
}

/// Writes element `i` (absolute index) of `spec` at `out`, which points to
/// that element's bytes.
COMPRESSA_HD void randomElement(const RandomSpec &spec, uint64_t i,
                                uint8_t *out) {
  uint64_t bits = randomBits(spec.key, i);
  switch (spec.kind) {
  case kRandomF32: {
    uint32_t u = randomFloatBits(randomUniform(bits, spec.center, spec.amplitude));
    for (int b = 0; b < 4; ++b)
      out[b] = static_cast<uint8_t>(u >> (8 * b));
    break;
  }
  case kRandomBF16: {
    uint16_t h = randomToBF16(randomUniform(bits, spec.center, spec.amplitude));
    out[0] = static_cast<uint8_t>(h);
    out[1] = static_cast<uint8_t>(h >> 8);
    break;
  }
  case kRandomE4M3: {
    uint32_t q = static_cast<uint32_t>((bits >> 32) % 449u);
    out[0] = static_cast<uint8_t>(randomE4M3Magnitude(q) |
                                  ((bits & 1u) ? 0x80u : 0u));
    break;
  }
  case kRandomE2M1:
    out[0] = static_cast<uint8_t>(bits >> 56);
    break;
  case kRandomConst8:
    out[0] = static_cast<uint8_t>(spec.byteValue);
    break;
  case kRandomI64Index: {
    uint64_t row = i / spec.rowLength, column = i % spec.rowLength;
    uint64_t start = randomBits(spec.key, row) % spec.below;
    uint64_t v = (start + column) % spec.below;
    for (int b = 0; b < 8; ++b)
      out[b] = static_cast<uint8_t>(v >> (8 * b));
    break;
  }
  case kRandomStatePairs: {
    uint16_t hi = randomToBF16(randomUniform(bits, 0.0f, 1.0f));
    uint16_t lo = randomToBF16(randomUniform(bits << 24, 0.0f, 1.0f));
    uint32_t w = (static_cast<uint32_t>(hi) << 16) | lo;
    for (int b = 0; b < 4; ++b)
      out[b] = static_cast<uint8_t>(w >> (8 * b));
    break;
  }
  default:
    break;
  }
}

/// Bytes of one element of `kind`.
COMPRESSA_HD uint32_t randomElementBytes(uint32_t kind) {
  switch (kind) {
  case kRandomF32:
  case kRandomStatePairs:
    return 4;
  case kRandomBF16:
    return 2;
  case kRandomI64Index:
    return 8;
  default:
    return 1;
  }
}

} // namespace compressa

#undef COMPRESSA_HD

#endif // COMPRESSA_RUNTIME_CUDA_RANDOM_WEIGHTS_H
