//===- ActQuantReference.h - act_quant and the FP8 GEMM, by the spec -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// The reference the --numerics=fast kernels are checked against (the unit
// tests on the CPU, gemm-bench on a GPU), written from the spec's
// definitions (section 3) in float64 and plain search, sharing no code with
// the kernels (TensorCoreGemm.cpp, WgmmaGemm.cpp):
//
//   act_quant, b = 128: amax = max(|x_blk|, 1e-4); s = 2^ceil(log2(amax /
//     448)); q = e4m3_rne(clamp(x / s, -448, 448)); the scale byte is
//     log2(s) + 127 (UE8M0).
//   FP8 GEMM: y[m, n] = sum_kb (sum_{k in kb} q[m, k] w[n, k]) s_a[m, kb]
//     s_w[n / 128, kb].
//
// Header-only and free of MLIR: gemm-bench links the runtime only.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_TENSORCORE_ACTQUANTREFERENCE_H
#define COMPRESSA_LOWERING_TENSORCORE_ACTQUANTREFERENCE_H

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace compressa::reference {

/// The value of e4m3fn code `c` (0x7F and 0xFF, NaN, are not asked for):
/// sign, 4 exponent bits (bias 7), 3 mantissa bits; exponent 0 is
/// subnormal. A table, since references over GEMMs ask billions of times.
inline double e4m3Value(int c) {
  struct Table {
    double v[256];
    Table() {
      for (int i = 0; i < 256; ++i) {
        int e = (i >> 3) & 15, m = i & 7;
        double x = e ? std::ldexp(8 + m, e - 10) : std::ldexp(m, -9);
        v[i] = (i & 0x80) ? -x : x;
      }
    }
  };
  static const Table table;
  return table.v[c & 0xFF];
}

/// The e4m3fn code nearest to `v` (|v| <= 448), ties to the code with an
/// even mantissa, found by search over the 127 finite magnitudes (codes
/// 0..126 grow with their values); the sign is kept (a negative value that
/// rounds to zero gives 0x80).
inline int e4m3Nearest(double v) {
  double a = std::fabs(v);
  int lo = 0, hi = 0x7E; // the largest code whose value is <= a
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (e4m3Value(mid) <= a)
      lo = mid;
    else
      hi = mid - 1;
  }
  int best = lo;
  if (lo < 0x7E) {
    double below = a - e4m3Value(lo), above = e4m3Value(lo + 1) - a;
    if (above < below || (above == below && ((lo + 1) & 1) == 0))
      best = lo + 1;
  }
  return (std::signbit(v) ? 0x80 : 0) | best;
}

/// 2^(b - 127) for a UE8M0 byte.
inline double ue8m0Value(uint8_t b) {
  struct Table {
    double v[256];
    Table() {
      for (int i = 0; i < 256; ++i)
        v[i] = std::ldexp(1.0, i - 127);
    }
  };
  static const Table table;
  return table.v[b];
}

/// act_quant of one row of `k` floats: `q` [k] codes, `scales` [ceil(k /
/// 128)] UE8M0 bytes.
inline void actQuantRow(const float *x, int64_t k, uint8_t *q, uint8_t *scales) {
  for (int64_t b = 0; b * 128 < k; ++b) {
    int64_t first = b * 128, len = std::min<int64_t>(128, k - first);
    double amax = double(1e-4f); // the floor, as the f32 constant
    for (int64_t j = 0; j < len; ++j)
      amax = std::max(amax, double(std::fabs(x[first + j])));
    // amax / 448 in f32 as the demo computes it, then the least power of
    // two not below it (exact; log2 only proposes).
    double r = double(float(amax) / 448.0f);
    int e = int(std::ceil(std::log2(r)));
    while (std::ldexp(1.0, e) < r)
      ++e;
    while (std::ldexp(1.0, e - 1) >= r)
      --e;
    scales[b] = uint8_t(e + 127);
    for (int64_t j = 0; j < len; ++j) {
      double v = std::ldexp(double(x[first + j]), -e);
      q[first + j] = uint8_t(e4m3Nearest(std::min(448.0, std::max(-448.0, v))));
    }
  }
}

/// One output of the FP8 GEMM in float64: row `q`/`sa` of the quantised
/// activations and row `w` of an [n, k] e4m3 weight whose scale row (for
/// this output's 128-row block) is `sw`. `absSum` receives the sum of the
/// magnitudes of the scaled products (the scale of f32 rounding errors).
inline double fp8GemmOutput(const uint8_t *q, const uint8_t *sa, const uint8_t *w,
                            const uint8_t *sw, int64_t k, double *absSum = nullptr) {
  double y = 0, mag = 0;
  for (int64_t b = 0; b * 128 < k; ++b) {
    double s = 0, a = 0;
    for (int64_t j = b * 128; j < std::min<int64_t>(k, b * 128 + 128); ++j) {
      double t = e4m3Value(q[j]) * e4m3Value(w[j]);
      s += t;
      a += std::fabs(t);
    }
    double scale = ue8m0Value(sa[b]) * ue8m0Value(sw[b]);
    y += s * scale;
    mag += a * scale;
  }
  if (absSum)
    *absSum = mag;
  return y;
}

} // namespace compressa::reference

#endif // COMPRESSA_LOWERING_TENSORCORE_ACTQUANTREFERENCE_H
