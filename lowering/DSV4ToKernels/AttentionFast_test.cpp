//===- AttentionFast_test.cpp - dsv4.attn.sparse with --numerics=fast ----===//
// SPDX-License-Identifier: Apache-2.0
//
// The sparse attention of the fast prefill (Emitter::attention, marked
// dsv4.numerics = "fast" by dsv4-select-numerics) against a plain reference
// of its semantics, on the CPU target (the twin of the CUDA tensor-core
// code: the same rounded inputs, the exact products summed in k order):
//   score_j = scale * sum_i bf16(q[i]) bf16(key_j[i])  (f32 sum in i order;
//             -inf for a missing key)
//   m = max(sink, score_j), p_j = exp(score_j - m),
//   den = sum_j p_j + exp(sink - m)
//   out[i] = sum_j bf16(p_j) bf16(key_j[i]) / den       (f32 sum in j order)
// Geometries: 4 heads (a partial tile of 16 heads, as tiny-c), 20 heads
// (a full and a partial tile) with 96 channels (channel blocks of 32);
// window only, all compressed entries (HCA), top-k picks with -1 slots
// (CSA); chunks crossing the ring's wrap, unwritten ring slots and entries
// holding NaN (a missing key must not reach the sums).
//
//===----------------------------------------------------------------------===//

#include "lowering/DSV4ToKernels/KernelTestHarness.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>

namespace {

using namespace ::compressa::cpu_test;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();


GuardedBuffer floats(int64_t n, float fill) {
  GuardedBuffer b(n * 4);
  std::fill(b.as<float>(), b.as<float>() + n, fill);
  return b;
}

enum class Mode { Window, Hca, Csa };

struct Geometry {
  int64_t H, d;
};

constexpr int64_t kWindow = 16, kRatio = 4, kTopk = 8, kMaxContext = 256;

/// The module of one dsv4.attn.sparse; `fast`: marked for --numerics=fast.
std::string moduleText(Geometry g, Mode mode, double scale, bool fast) {
  std::string H = std::to_string(g.H), d = std::to_string(g.d);
  std::string qT = "tensor<?x" + H + "x" + d + "xf32>", kvT = "tensor<?x" + d + "xf32>";
  std::string ringT = "!dsv4.window_kv<" + std::to_string(kWindow) + ", " + d + ", f32>";
  std::string entT = "!dsv4.compressed_kv<" + std::to_string(kRatio) + ", " + d + ", f32>";
  std::string idxT = "tensor<?x" + std::to_string(kTopk) + "xi32>";
  std::string sinkT = "!dsv4.weight<tensor<" + H + "xf32>>";
  std::string args = "%q: " + qT + ", %kv: " + kvT + ", %ring: " + ringT + ", %pos: index";
  std::string types = qT + ", " + kvT + ", " + ringT + ", index, " + sinkT;
  std::string extra;
  if (mode != Mode::Window) {
    args += ", %e: " + entT;
    types += ", " + entT;
    extra += " entries(%e)";
  }
  if (mode == Mode::Csa) {
    args += ", %idx: " + idxT;
    types += ", " + idxT;
    extra += " topk(%idx)";
  }
  char sc[64];
  std::snprintf(sc, sizeof(sc), "%.17e", scale);
  std::string attrs = std::string("{scale = ") + sc + " : f64" +
                      (fast ? ", dsv4.numerics = \"fast\"" : "") + "}";
  return "func.func @t(" + args + ") {\n  %sink = dsv4.param \"attn.attn_sink\" : " + sinkT +
         "\n  %o = dsv4.attn.sparse %q, %kv, %ring at %pos sink(%sink)" + extra + " " + attrs +
         " : (" + types + ") -> " + qT + "\n  return\n}\n";
}

/// One token's rows (H x d): `keys` are its keys in the kernel's order
/// (window, then entries), null for a missing one. `rounded`: the fast
/// semantics above; else the exact f32 one (in double). `slack` receives,
/// per output, 2^-8 max_j |bf16(p_j) bf16(key_j[i])| / den: what one weight
/// that rounds to the other bf16 neighbour (an ulp of exp apart) moves it.
void reference(const float *q, int64_t H, int64_t d, const std::vector<const float *> &keys,
               const float *sinks, double scale, bool rounded, double *out, double *slack) {
  const float fscale = static_cast<float>(scale);
  const int64_t n = static_cast<int64_t>(keys.size());
  for (int64_t h = 0; h < H; ++h) {
    const float *qh = q + h * d;
    std::vector<double> score(n);
    double mx = sinks[h];
    for (int64_t j = 0; j < n; ++j) {
      if (!keys[j]) {
        score[j] = -std::numeric_limits<double>::infinity();
        continue;
      }
      if (rounded) {
        float acc = 0.0f;
        for (int64_t i = 0; i < d; ++i)
          acc += roundToBf16(qh[i]) * roundToBf16(keys[j][i]);
        score[j] = acc * fscale;
      } else {
        double acc = 0.0;
        for (int64_t i = 0; i < d; ++i)
          acc += double(qh[i]) * keys[j][i];
        score[j] = acc * scale;
      }
      mx = std::max(mx, score[j]);
    }
    std::vector<double> p(n);
    double den = rounded ? std::exp(float(sinks[h]) - float(mx)) : std::exp(sinks[h] - mx);
    for (int64_t j = 0; j < n; ++j) {
      p[j] = rounded ? double(std::exp(float(score[j]) - float(mx))) : std::exp(score[j] - mx);
      den += p[j];
    }
    for (int64_t i = 0; i < d; ++i) {
      float accF = 0.0f;
      double acc = 0.0, big = 0.0;
      for (int64_t j = 0; j < n; ++j) {
        if (!keys[j])
          continue;
        float term = roundToBf16(float(p[j])) * roundToBf16(keys[j][i]);
        accF += term;
        acc += p[j] * keys[j][i];
        big = std::max(big, std::fabs(double(term)));
      }
      out[h * d + i] = (rounded ? double(accF) : acc) / den;
      slack[h * d + i] = std::ldexp(big, -8) / den;
    }
  }
}

void checkFast(Geometry g, Mode mode, uint32_t seed) {
  Rng rng(seed);
  const int64_t H = g.H, d = g.d, capacity = kMaxContext / kRatio;
  const double scale = 1.0 / std::sqrt(double(d));
  std::vector<float> sinks(H);
  for (float &s : sinks)
    s = static_cast<float>(rng.uniform(-1, 1));
  OpKernel fast, exact;
  std::string error;
  ASSERT_TRUE(fast.compile(moduleText(g, mode, scale, true), kMaxContext, error)) << error;
  ASSERT_TRUE(exact.compile(moduleText(g, mode, scale, false), kMaxContext, error)) << error;

  struct Case {
    int64_t S, start;
  };
  // Ring partly written; a chunk across the ring's wrap; a long chunk (up
  // to 16 + 50 keys: several 32-key score blocks and 16-key steps); the
  // first token (no entries: every top-k slot -1, entry 0 unwritten).
  for (Case c : {Case{4, 5}, Case{37, 126}, Case{60, 180}, Case{1, 0}}) {
    std::string tag = std::string(mode == Mode::Window ? "window"
                                  : mode == Mode::Hca  ? "window + HCA entries"
                                                       : "window + CSA top-k") +
                      ", " + std::to_string(H) + " heads x " + std::to_string(d) + ", S " +
                      std::to_string(c.S) + " at " + std::to_string(c.start);
    auto randoms = [&](int64_t n, double lo, double hi) {
      GuardedBuffer b(n * 4);
      for (int64_t i = 0; i < n; ++i)
        b.as<float>()[i] = static_cast<float>(rng.uniform(lo, hi));
      return b;
    };
    GuardedBuffer q = randoms(c.S * H * d, -2, 2), kv = randoms(c.S * d, -2, 2);
    GuardedBuffer ring = floats(kWindow * d, kNaN);
    for (int64_t u = std::max<int64_t>(0, c.start - kWindow); u < c.start; ++u)
      for (int64_t i = 0; i < d; ++i)
        ring.as<float>()[(u % kWindow) * d + i] = static_cast<float>(rng.uniform(-2, 2));
    const int64_t written = (c.start + c.S) / kRatio;
    GuardedBuffer e = floats(capacity * d, kNaN);
    for (int64_t i = 0; i < written * d; ++i)
      e.as<float>()[i] = static_cast<float>(rng.uniform(-2, 2));
    GuardedBuffer idx(c.S * kTopk * 4);
    for (int64_t s = 0; s < c.S; ++s) {
      const int64_t avail = (c.start + s + 1) / kRatio;
      std::vector<int64_t> picked;
      for (int64_t j = 0; j < kTopk; ++j) {
        int64_t pick = -1;
        if (j < std::min<int64_t>(avail, s % 3 ? kTopk : 3)) {
          do
            pick = rng.integer(0, avail - 1);
          while (std::find(picked.begin(), picked.end(), pick) != picked.end());
          picked.push_back(pick);
        }
        idx.as<int32_t>()[s * kTopk + j] = static_cast<int32_t>(pick);
      }
    }
    std::vector<Arg> args = {{q.data()}, {kv.data()}, {ring.data()}, {}, {sinks.data()}};
    if (mode != Mode::Window)
      args.push_back({e.data()});
    if (mode == Mode::Csa)
      args.push_back({idx.data()});
    GuardedBuffer o = floats(c.S * H * d, kNaN), oExact = floats(c.S * H * d, kNaN);
    ASSERT_TRUE(fast.run(c.S, c.start, args, {o.data()})) << tag;
    ASSERT_TRUE(exact.run(c.S, c.start, args, {oExact.data()})) << tag;

    // Elements beyond fp32 tolerance (1e-5 relative) but within one weight
    // rounded the other way: at most 1 in 1000 (none seen so far).
    int64_t bad = 0, worst = -1, flipped = 0;
    double worstErr = 0, worstTol = 0, fastVsExact = 0, maxRef = 0;
    std::vector<double> want(H * d), slack(H * d), wantExact(H * d), unused(H * d);
    for (int64_t s = 0; s < c.S; ++s) {
      const int64_t t = c.start + s;
      std::vector<const float *> keys;
      for (int64_t u = std::max<int64_t>(0, t - kWindow + 1); u <= t; ++u)
        keys.push_back(u >= c.start ? kv.as<float>() + (u - c.start) * d
                                    : ring.as<float>() + (u % kWindow) * d);
      if (mode == Mode::Hca)
        for (int64_t w = 0; w < (t + 1) / kRatio; ++w)
          keys.push_back(e.as<float>() + w * d);
      if (mode == Mode::Csa)
        for (int64_t j = 0; j < kTopk; ++j) {
          int32_t w = idx.as<int32_t>()[s * kTopk + j];
          keys.push_back(w >= 0 ? e.as<float>() + w * d : nullptr);
        }
      const float *qs = q.as<float>() + s * H * d;
      reference(qs, H, d, keys, sinks.data(), scale, true, want.data(), slack.data());
      reference(qs, H, d, keys, sinks.data(), scale, false, wantExact.data(), unused.data());
      for (int64_t i = 0; i < H * d; ++i) {
        double got = o.as<float>()[s * H * d + i];
        double err = std::fabs(got - want[i]);
        double strict = 1e-5 * (1 + std::fabs(want[i])), tol = strict + slack[i];
        maxRef = std::max(maxRef, std::fabs(want[i]));
        if (!(err <= strict))
          ++flipped;
        if (!(err <= tol)) {
          ++bad;
          if (worst < 0 || err > worstErr) {
            worst = s * H * d + i;
            worstErr = err;
            worstTol = tol;
          }
        }
        fastVsExact = std::max(fastVsExact, std::fabs(got - wantExact[i]));
        // The exact kernel (not marked) keeps its f32 semantics.
        EXPECT_NEAR(oExact.as<float>()[s * H * d + i], wantExact[i],
                    1e-4 * (1 + std::fabs(wantExact[i])))
            << tag << ": exact kernel, token " << s << " element " << i;
      }
    }
    EXPECT_EQ(bad, 0) << tag << ": " << bad << " of " << c.S * H * d
                      << " elements off the reference; worst [" << worst << "]: |diff| "
                      << worstErr << " > tol " << worstTol << " (max |ref| " << maxRef << ")";
    EXPECT_LE(flipped, std::max<int64_t>(1, c.S * H * d / 1000))
        << tag << ": elements beyond fp32 tolerance of the reference";
    // The fast kernel rounds to bf16: it must differ from the f32 semantics
    // (else the test ran the exact code), by about bf16's relative
    // precision at most.
    EXPECT_GT(fastVsExact, 1e-5) << tag << ": the fast kernel looks like the exact one";
    EXPECT_LT(fastVsExact, 0.05) << tag;
    for (GuardedBuffer *b : {&q, &kv, &ring, &e, &idx, &o, &oExact})
      EXPECT_TRUE(b->guardsIntact()) << tag << ": a buffer was written out of bounds";
  }
}

TEST(AttentionFast, WindowOnly4Heads) { checkFast({4, 64}, Mode::Window, 1); }
TEST(AttentionFast, HcaEntries4Heads) { checkFast({4, 64}, Mode::Hca, 2); }
TEST(AttentionFast, CsaTopk4Heads) { checkFast({4, 64}, Mode::Csa, 3); }
TEST(AttentionFast, WindowOnly20Heads96) { checkFast({20, 96}, Mode::Window, 4); }
TEST(AttentionFast, HcaEntries20Heads96) { checkFast({20, 96}, Mode::Hca, 5); }
TEST(AttentionFast, CsaTopk20Heads96) { checkFast({20, 96}, Mode::Csa, 6); }

} // namespace
