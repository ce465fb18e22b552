//===- OpEmitters_test.cpp - CPU kernels vs the plain C++ reference -------===//
// SPDX-License-Identifier: Apache-2.0
//
// One test per dispatch kind of the CPU target: each builds a function with
// one dsv4 op, compiles the op's kernel exactly as the artifact serializer
// binds it (KernelTestHarness.h), runs it on random data (fixed seeds) with
// weights in their checkpoint format (f32, bf16, FP8 e4m3 x UE8M0 128x128
// blocks with partial blocks, FP4 e2m1 x UE8M0 1x32 blocks, i64) and
// compares every output element with test/reference on the same dequantized
// data: max |kernel - reference| <= 1e-4 * (1 + max |reference|) per output
// (the kernels accumulate in f32, the reference in double).
//
//===----------------------------------------------------------------------===//

#include "lowering/DSV4ToKernels/KernelTestHarness.h"
#include "lowering/Target/CPU/CpuTarget.h"
#include "lowering/Target/CUDA/CudaTarget.h"
#include "lowering/TensorCore/ActQuantReference.h"

#include "runtime/weights/dtype.h"
#include "test/reference/Reference.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <limits>
#include <random>
#include <utility>

namespace {

namespace ref = ::compressa::reference;
using ::compressa::cpu_test::Arg;
using ::compressa::cpu_test::GuardedBuffer;
using ::compressa::cpu_test::OpKernel;
using ::compressa::cpu_test::Rng;
using ::compressa::cpu_test::subst;
using ::compressa::cpu_test::toBf16;

constexpr double kRelTol = 1e-4;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

//===----------------------------------------------------------------------===//
// Data
//===----------------------------------------------------------------------===//

int64_t product(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

std::string dims(const std::vector<int64_t> &shape) {
  std::string s;
  for (int64_t d : shape)
    s += std::to_string(d) + "x";
  return s;
}

/// A float attribute value MLIR parses back exactly.
std::string f64(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17e", v);
  return buf;
}

/// A weight in its storage format, its MLIR type and its exact dequantized
/// values (the reference's Tensor).
struct Weight {
  std::string type;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data, scale;
  ref::Tensor deq;
  Arg arg() { return Arg{data.data(), scale.empty() ? nullptr : scale.data()}; }
};

/// An f32 or bf16 weight holding `values` (bf16: rounded).
Weight denseWeight(const std::vector<int64_t> &shape, const std::vector<float> &values,
                   bool bf16) {
  Weight w;
  w.shape = shape;
  w.type = "!dsv4.weight<tensor<" + dims(shape) + (bf16 ? "bf16" : "f32") + ">>";
  int64_t n = product(shape);
  w.deq.shape = shape;
  w.deq.data.resize(n);
  w.data.resize(n * (bf16 ? 2 : 4));
  for (int64_t i = 0; i < n; ++i) {
    if (bf16) {
      uint16_t bits = toBf16(values[i]);
      std::memcpy(&w.data[2 * i], &bits, 2);
      w.deq.data[i] = ::compressa::bf16ToFloat(bits);
    } else {
      std::memcpy(&w.data[4 * i], &values[i], 4);
      w.deq.data[i] = values[i];
    }
  }
  return w;
}

Weight randomDense(const std::vector<int64_t> &shape, Rng &rng, double lo, double hi,
                   bool bf16) {
  std::vector<float> v(product(shape));
  for (float &x : v)
    x = static_cast<float>(rng.uniform(lo, hi));
  return denseWeight(shape, v, bf16);
}
Weight f32Weight(const std::vector<int64_t> &shape, Rng &rng, double lo, double hi) {
  return randomDense(shape, rng, lo, hi, false);
}
Weight bf16Weight(const std::vector<int64_t> &shape, Rng &rng, double lo, double hi) {
  return randomDense(shape, rng, lo, hi, true);
}

/// A UE8M0 scale code around 1: 2^-3 .. 2^3.
uint8_t scaleCode(Rng &rng) { return static_cast<uint8_t>(rng.integer(124, 130)); }

/// A random e4m3fn code that is not NaN (0x7F, 0xFF). `fullRange`: any of
/// the 254 finite codes (up to +-448); else exponents 0..8 (|v| < 3.75,
/// subnormals included) so that products stay moderate.
uint8_t fp8Code(Rng &rng, bool fullRange) {
  if (fullRange) {
    while (true) {
      auto c = static_cast<uint8_t>(rng.integer(0, 255));
      if ((c & 0x7F) != 0x7F)
        return c;
    }
  }
  return static_cast<uint8_t>((rng.integer(0, 1) << 7) | (rng.integer(0, 8) << 3) |
                              rng.integer(0, 7));
}

const char *kFp8Scale = "#dsv4.block_scale<f8E8M0FNU, [128, 128]>";
const char *kFp4Scale = "#dsv4.block_scale<f8E8M0FNU, [1, 32]>";

/// FP8 e4m3 [rows, cols] with one UE8M0 scale per 128x128 block (the last
/// row and column blocks may be partial).
Weight fp8Weight(int64_t rows, int64_t cols, Rng &rng, bool fullRange) {
  Weight w;
  w.shape = {rows, cols};
  w.type = "!dsv4.weight<tensor<" + dims(w.shape) + "f8E4M3FN>, " + kFp8Scale + ">";
  int64_t sr = (rows + 127) / 128, sc = (cols + 127) / 128;
  w.data.resize(rows * cols);
  w.scale.resize(sr * sc);
  for (uint8_t &c : w.data)
    c = fp8Code(rng, fullRange);
  for (uint8_t &s : w.scale)
    s = scaleCode(rng);
  w.deq.shape = w.shape;
  w.deq.data.resize(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      w.deq.data[r * cols + c] =
          double(::compressa::f8e4m3ToFloat(w.data[r * cols + c])) *
          double(::compressa::f8e8m0ToFloat(w.scale[(r / 128) * sc + c / 128]));
  return w;
}

/// FP4 e2m1 [rows, cols] packed two per byte (low nibble = even column) with
/// one UE8M0 scale per 1x32 block.
Weight fp4Weight(int64_t rows, int64_t cols, Rng &rng) {
  Weight w;
  w.shape = {rows, cols};
  w.type = "!dsv4.weight<tensor<" + dims(w.shape) + "f4E2M1FN>, " + kFp4Scale + ">";
  w.data.resize(rows * cols / 2);
  w.scale.resize(rows * cols / 32);
  for (uint8_t &b : w.data)
    b = static_cast<uint8_t>(rng.integer(0, 255));
  for (uint8_t &s : w.scale)
    s = scaleCode(rng);
  w.deq.shape = w.shape;
  w.deq.data.resize(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols / 2; ++j) {
      float even, odd;
      ::compressa::unpackFp4x2(w.data[r * cols / 2 + j], even, odd);
      for (int64_t c : {2 * j, 2 * j + 1})
        w.deq.data[r * cols + c] =
            double(c % 2 ? odd : even) *
            double(::compressa::f8e8m0ToFloat(w.scale[r * (cols / 32) + c / 32]));
    }
  return w;
}

/// A stack of E expert matrices: argv gets a table of 2E pointers (data,
/// then scales; null scales for unquantized stacks).
struct ExpertStack {
  std::string type;
  std::vector<Weight> experts;
  std::vector<void *> table;
  Arg arg() { return Arg{table.data(), nullptr}; }
};

ExpertStack makeStack(std::vector<Weight> experts) {
  ExpertStack s;
  s.experts = std::move(experts);
  const Weight &w0 = s.experts.front();
  const std::string &t = w0.type; // !dsv4.weight<tensor<RxCxELT>...
  std::string prefix = "!dsv4.weight<tensor<";
  s.type = prefix + std::to_string(s.experts.size()) + "x" + t.substr(prefix.size());
  for (Weight &w : s.experts)
    s.table.push_back(w.data.data());
  for (Weight &w : s.experts)
    s.table.push_back(w.scale.empty() ? nullptr : w.scale.data());
  return s;
}

/// `n` random floats in [lo, hi) in a guarded buffer.
GuardedBuffer randomFloats(int64_t n, Rng &rng, double lo, double hi) {
  GuardedBuffer b(n * 4);
  for (int64_t i = 0; i < n; ++i)
    b.as<float>()[i] = static_cast<float>(rng.uniform(lo, hi));
  return b;
}

GuardedBuffer floatBuffer(int64_t n, float fill = 0.0f) {
  GuardedBuffer b(n * 4);
  std::fill(b.as<float>(), b.as<float>() + n, fill);
  return b;
}

std::vector<double> toDoubles(const float *p, int64_t n) {
  return std::vector<double>(p, p + n);
}

//===----------------------------------------------------------------------===//
// Checks
//===----------------------------------------------------------------------===//

/// Every element within kRelTol * (1 + max |ref|) of the reference; -inf
/// reference values must be -inf exactly.
void expectClose(const std::string &what, const float *got, const std::vector<double> &want) {
  double maxRef = 0.0;
  for (double v : want)
    if (std::isfinite(v))
      maxRef = std::max(maxRef, std::fabs(v));
  double tol = kRelTol * (1.0 + maxRef);
  int64_t bad = 0, worst = -1;
  double worstErr = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    double err = std::isinf(want[i]) ? (double(got[i]) == want[i] ? 0.0 : kNaN)
                                     : std::fabs(double(got[i]) - want[i]);
    if (!(err <= tol)) {
      ++bad;
      if (worst < 0 || !(err <= worstErr)) {
        worst = static_cast<int64_t>(i);
        worstErr = err;
      }
    }
  }
  if (bad == 0)
    return;
  ADD_FAILURE() << what << ": " << bad << " of " << want.size()
                << " elements differ; worst [" << worst << "]: kernel " << got[worst]
                << ", reference " << want[worst] << ", |diff| " << worstErr
                << " > tol " << tol << " (max |ref| " << maxRef << ")";
}

void expectGuards(std::initializer_list<GuardedBuffer *> buffers) {
  int i = 0;
  for (GuardedBuffer *b : buffers) {
    EXPECT_TRUE(b->guardsIntact()) << "buffer #" << i << " was written out of bounds";
    ++i;
  }
}

/// Compares selected indices row by row. A position may differ from the
/// reference only by a near-tie (reference selection scores within
/// tolerance) between candidates that are not identical by construction
/// (`identical(a, b)`): exact ties must go to the lower index.
void expectSelection(const std::string &what, const int32_t *got,
                     const std::vector<int64_t> &want, const std::vector<double> &scores,
                     const std::function<bool(int64_t, int64_t)> &identical) {
  double maxScore = 0.0;
  for (double v : scores)
    maxScore = std::max(maxScore, std::fabs(v));
  double tol = kRelTol * (1.0 + maxScore);
  for (size_t j = 0; j < want.size(); ++j) {
    int64_t g = got[j], w = want[j];
    if (g == w)
      continue;
    bool nearTie = g >= 0 && w >= 0 && g < int64_t(scores.size()) &&
                   std::fabs(scores[g] - scores[w]) <= tol && !identical(g, w);
    EXPECT_TRUE(nearTie) << what << ": pick #" << j << " is " << g << ", reference " << w
                         << (g >= 0 && w >= 0 && g < int64_t(scores.size())
                                 ? " (scores " + std::to_string(scores[g]) + " vs " +
                                       std::to_string(scores[w]) + ")"
                                 : std::string());
  }
}

#define COMPILE(kernel, text, maxContext)                                       \
  do {                                                                         \
    std::string compileError;                                                  \
    ASSERT_TRUE((kernel).compile((text), (maxContext), compileError))          \
        << compileError << "\n--- module ---\n" << (text);                     \
  } while (false)

constexpr int64_t kNoContext = 64;

ref::RopeParams mainRope() {
  ref::RopeParams p;
  p.theta = 10000.0;
  return p;
}
ref::RopeParams yarnRope() {
  ref::RopeParams p;
  p.theta = 160000.0;
  p.yarn = true;
  p.factor = 16.0;
  p.originalMaxPositions = 65536;
  p.betaFast = 32.0;
  p.betaSlow = 1.0;
  return p;
}
const char *kMainRopeAttr = "#dsv4.rope<dim = $R$, theta = 10000.0>";
const char *kYarnRopeAttr =
    "#dsv4.rope<dim = $R$, theta = 160000.0, yarn = [16.0, 65536, 32.0, 1.0]>";

//===----------------------------------------------------------------------===//
// Norms, embedding, mHC
//===----------------------------------------------------------------------===//

TEST(CpuKernels, RmsNormWeightedAndUnweighted) {
  Rng rng(1);
  {
    // Weighted (bf16 weight), rank 3: every [200] row of [S, 3, 200].
    Weight w = bf16Weight({200}, rng, -2.0, 2.0);
    std::string text = subst(R"(
      func.func @t(%x: tensor<?x3x200xf32>) {
        %w = dsv4.param "norm.weight" : $W$
        %y = dsv4.rms_norm %x weight(%w : $W$) {eps = 1.0e-06 : f64} : tensor<?x3x200xf32>
        return
      })", {{"W", w.type}});
    OpKernel k;
    COMPILE(k, text, kNoContext);
    const int64_t S = 4, n = S * 3 * 200;
    GuardedBuffer x = randomFloats(n, rng, -3.0, 3.0), y = floatBuffer(n, kNaN);
    ASSERT_TRUE(k.run(S, 5, {{x.data()}, w.arg()}, {y.data()}));
    std::vector<double> want;
    for (int64_t r = 0; r < S * 3; ++r) {
      std::vector<double> row = ref::rmsNorm(toDoubles(x.as<float>() + r * 200, 200).data(),
                                             200, w.deq.data.data(), 1e-6);
      want.insert(want.end(), row.begin(), row.end());
    }
    expectClose("rms_norm weighted", y.as<float>(), want);
    expectGuards({&x, &y});
  }
  {
    // Unweighted, eps 1e-5, on small values (eps matters).
    std::string text = R"(
      func.func @t(%x: tensor<?x72xf32>) {
        %y = dsv4.rms_norm %x {eps = 1.0e-05 : f64} : tensor<?x72xf32>
        return
      })";
    OpKernel k;
    COMPILE(k, text, kNoContext);
    const int64_t S = 3, n = S * 72;
    GuardedBuffer x = randomFloats(n, rng, -0.01, 0.01), y = floatBuffer(n, kNaN);
    ASSERT_TRUE(k.run(S, 0, {{x.data()}}, {y.data()}));
    std::vector<double> want;
    for (int64_t r = 0; r < S; ++r) {
      std::vector<double> row =
          ref::rmsNorm(toDoubles(x.as<float>() + r * 72, 72).data(), 72, nullptr, 1e-5);
      want.insert(want.end(), row.begin(), row.end());
    }
    expectClose("rms_norm unweighted", y.as<float>(), want);
    expectGuards({&x, &y});
  }
}

TEST(CpuKernels, Embed) {
  Rng rng(2);
  // dsv4.embed's operands are (table, ids).
  auto check = [&](const std::string &tag, Weight &table, const std::vector<int64_t> &idList) {
    const int64_t D = table.shape[1], S = static_cast<int64_t>(idList.size());
    std::string text = subst(R"(
      func.func @t(%ids: tensor<?xi64>) {
        %t = dsv4.param "embed.weight" : $T$
        %h = dsv4.embed %t[%ids] : ($T$, tensor<?xi64>) -> tensor<?x$D$xf32>
        return
      })", {{"T", table.type}, {"D", std::to_string(D)}});
    OpKernel k;
    COMPILE(k, text, kNoContext);
    GuardedBuffer ids(S * 8), h = floatBuffer(S * D, kNaN);
    std::copy(idList.begin(), idList.end(), ids.as<int64_t>());
    ASSERT_TRUE(k.run(S, 3, {table.arg(), {ids.data()}}, {h.data()}));
    std::vector<double> want;
    for (int64_t id : idList)
      want.insert(want.end(), table.deq.row(id), table.deq.row(id) + D);
    expectClose("embed " + tag, h.as<float>(), want);
    expectGuards({&ids, &h});
  };
  Weight bf16Table = bf16Weight({64, 200}, rng, -1.0, 1.0);
  check("bf16", bf16Table, {0, 63, 17, 17, 40});
  // FP8 table with partial row and column blocks; ids on both row blocks.
  Weight fp8Table = fp8Weight(130, 200, rng, /*fullRange=*/true);
  check("fp8", fp8Table, {129, 0, 127, 128, 5});
  Weight f32Table = f32Weight({10, 24}, rng, -1.0, 1.0);
  check("f32", f32Table, {9, 3, 0});
}

TEST(CpuKernels, HcExpand) {
  Rng rng(3);
  std::string text = R"(
    func.func @t(%h: tensor<?x40xf32>) {
      %X = dsv4.hc.expand %h : tensor<?x40xf32> -> tensor<?x4x40xf32>
      return
    })";
  OpKernel k;
  COMPILE(k, text, kNoContext);
  const int64_t S = 3;
  GuardedBuffer h = randomFloats(S * 40, rng, -1, 1), X = floatBuffer(S * 4 * 40, kNaN);
  ASSERT_TRUE(k.run(S, 0, {{h.data()}}, {X.data()}));
  std::vector<double> want;
  for (int64_t s = 0; s < S; ++s)
    for (int j = 0; j < 4; ++j)
      for (int i = 0; i < 40; ++i)
        want.push_back(h.as<float>()[s * 40 + i]);
  expectClose("hc.expand", X.as<float>(), want);
  expectGuards({&h, &X});
}

TEST(CpuKernels, HcPreWithSinkhorn) {
  Rng rng(4);
  const int64_t N = 4, D = 64, mix = (2 + N) * N, S = 4;
  Weight fn = f32Weight({mix, N * D}, rng, -0.15, 0.15);
  Weight base = f32Weight({mix}, rng, -1.0, 1.0);
  Weight scale = denseWeight({3}, {0.7f, 1.3f, 2.1f}, false);
  struct Variant {
    int64_t iters;
    double hcEps, normEps;
  };
  for (Variant v : {Variant{20, 1e-6, 1e-6}, Variant{1, 1e-2, 1e-5}, Variant{3, 1e-6, 1e-6}}) {
    std::string text = subst(R"(
      func.func @t(%X: tensor<?x4x64xf32>) {
        %fn = dsv4.param "hc_attn_fn" : $FN$
        %base = dsv4.param "hc_attn_base" : $BASE$
        %scale = dsv4.param "hc_attn_scale" : $SCALE$
        %x, %post, %comb = dsv4.hc.pre %X, %fn, %base, %scale {hc_eps = $HE$ : f64, norm_eps = $NE$ : f64, sinkhorn_iters = $IT$ : i64}
            : (tensor<?x4x64xf32>, $FN$, $BASE$, $SCALE$) -> (tensor<?x64xf32>, tensor<?x4xf32>, tensor<?x4x4xf32>)
        return
      })", {{"FN", fn.type}, {"BASE", base.type}, {"SCALE", scale.type},
            {"HE", f64(v.hcEps)}, {"NE", f64(v.normEps)}, {"IT", std::to_string(v.iters)}});
    OpKernel k;
    COMPILE(k, text, kNoContext);
    GuardedBuffer X = randomFloats(S * N * D, rng, -2, 2);
    GuardedBuffer x = floatBuffer(S * D, kNaN), post = floatBuffer(S * N, kNaN),
                  comb = floatBuffer(S * N * N, kNaN);
    ASSERT_TRUE(k.run(S, 7, {{X.data()}, fn.arg(), base.arg(), scale.arg()},
                      {x.data(), post.data(), comb.data()}));
    std::vector<double> wx, wpost, wcomb;
    for (int64_t s = 0; s < S; ++s) {
      ref::HcPreResult r =
          ref::hcPre(toDoubles(X.as<float>() + s * N * D, N * D).data(), N, D, fn.deq,
                     base.deq, scale.deq, v.iters, v.hcEps, v.normEps);
      wx.insert(wx.end(), r.collapsed.begin(), r.collapsed.end());
      wpost.insert(wpost.end(), r.post.begin(), r.post.end());
      wcomb.insert(wcomb.end(), r.comb.begin(), r.comb.end());
    }
    std::string tag = " (iters " + std::to_string(v.iters) + ")";
    expectClose("hc.pre x" + tag, x.as<float>(), wx);
    expectClose("hc.pre post" + tag, post.as<float>(), wpost);
    expectClose("hc.pre comb" + tag, comb.as<float>(), wcomb);
    expectGuards({&X, &x, &post, &comb});
  }
}

TEST(CpuKernels, HcPost) {
  Rng rng(5);
  const int64_t N = 4, D = 64, S = 3;
  std::string text = R"(
    func.func @t(%a: tensor<?x64xf32>, %X: tensor<?x4x64xf32>, %post: tensor<?x4xf32>, %comb: tensor<?x4x4xf32>) {
      %X2 = dsv4.hc.post %a, %X, %post, %comb : (tensor<?x64xf32>, tensor<?x4x64xf32>, tensor<?x4xf32>, tensor<?x4x4xf32>) -> tensor<?x4x64xf32>
      return
    })";
  OpKernel k;
  COMPILE(k, text, kNoContext);
  GuardedBuffer a = randomFloats(S * D, rng, -2, 2), X = randomFloats(S * N * D, rng, -2, 2);
  GuardedBuffer post = randomFloats(S * N, rng, 0, 2), comb = randomFloats(S * N * N, rng, 0, 1);
  GuardedBuffer out = floatBuffer(S * N * D, kNaN);
  ASSERT_TRUE(k.run(S, 0, {{a.data()}, {X.data()}, {post.data()}, {comb.data()}}, {out.data()}));
  std::vector<double> want;
  for (int64_t s = 0; s < S; ++s) {
    ref::HcPreResult mix;
    mix.post = toDoubles(post.as<float>() + s * N, N);
    mix.comb = toDoubles(comb.as<float>() + s * N * N, N * N);
    std::vector<double> r = ref::hcPost(toDoubles(a.as<float>() + s * D, D).data(),
                                        toDoubles(X.as<float>() + s * N * D, N * D).data(),
                                        mix, N, D);
    want.insert(want.end(), r.begin(), r.end());
  }
  expectClose("hc.post", out.as<float>(), want);
  expectGuards({&a, &X, &post, &comb, &out});
}

TEST(CpuKernels, HcHead) {
  Rng rng(6);
  const int64_t N = 4, D = 64, S = 4;
  Weight fn = f32Weight({N, N * D}, rng, -0.2, 0.2);
  Weight base = f32Weight({N}, rng, -1.0, 1.0);
  Weight scale = denseWeight({1}, {1.7f}, false);
  std::string text = subst(R"(
    func.func @t(%X: tensor<?x4x64xf32>) {
      %fn = dsv4.param "hc_head_fn" : $FN$
      %base = dsv4.param "hc_head_base" : $BASE$
      %scale = dsv4.param "hc_head_scale" : $SCALE$
      %y = dsv4.hc.head %X, %fn, %base, %scale {hc_eps = 1.0e-03 : f64, norm_eps = 1.0e-06 : f64}
          : (tensor<?x4x64xf32>, $FN$, $BASE$, $SCALE$) -> tensor<?x64xf32>
      return
    })", {{"FN", fn.type}, {"BASE", base.type}, {"SCALE", scale.type}});
  OpKernel k;
  COMPILE(k, text, kNoContext);
  GuardedBuffer X = randomFloats(S * N * D, rng, -2, 2), y = floatBuffer(S * D, kNaN);
  ASSERT_TRUE(k.run(S, 0, {{X.data()}, fn.arg(), base.arg(), scale.arg()}, {y.data()}));
  std::vector<double> want;
  for (int64_t s = 0; s < S; ++s) {
    std::vector<double> r = ref::hcHead(toDoubles(X.as<float>() + s * N * D, N * D).data(), N,
                                        D, fn.deq, base.deq, scale.deq, 1e-3, 1e-6);
    want.insert(want.end(), r.begin(), r.end());
  }
  expectClose("hc.head", y.as<float>(), want);
  expectGuards({&X, &y});
}

//===----------------------------------------------------------------------===//
// Attention projections and RoPE
//===----------------------------------------------------------------------===//

TEST(CpuKernels, AttnQProjFp8) {
  Rng rng(7);
  // q_lora_rank 130 and D 200: partial FP8 blocks along both dims of wq_a
  // and along the columns of wq_b [192, 130].
  const int64_t S = 3, D = 200, Q = 130, H = 4, d = 48;
  Weight wqa = fp8Weight(Q, D, rng, true);
  Weight qn = bf16Weight({Q}, rng, 0.5, 1.5);
  Weight wqb = fp8Weight(H * d, Q, rng, true);
  std::string text = subst(R"(
    func.func @t(%x: tensor<?x200xf32>) {
      %wqa = dsv4.param "attn.wq_a.weight" : $WQA$
      %qn = dsv4.param "attn.q_norm.weight" : $QN$
      %wqb = dsv4.param "attn.wq_b.weight" : $WQB$
      %q, %qr = dsv4.attn.q_proj %x, %wqa, %qn, %wqb {eps = 1.0e-06 : f64}
          : (tensor<?x200xf32>, $WQA$, $QN$, $WQB$) -> (tensor<?x4x48xf32>, tensor<?x130xf32>)
      return
    })", {{"WQA", wqa.type}, {"QN", qn.type}, {"WQB", wqb.type}});
  OpKernel k;
  COMPILE(k, text, kNoContext);
  GuardedBuffer x = randomFloats(S * D, rng, -1, 1);
  GuardedBuffer q = floatBuffer(S * H * d, kNaN), qr = floatBuffer(S * Q, kNaN);
  ASSERT_TRUE(k.run(S, 5, {{x.data()}, wqa.arg(), qn.arg(), wqb.arg()}, {q.data(), qr.data()}));
  std::vector<double> wq, wqr;
  for (int64_t s = 0; s < S; ++s) {
    std::vector<double> qa = ref::linear(toDoubles(x.as<float>() + s * D, D).data(), wqa.deq);
    std::vector<double> r = ref::rmsNorm(qa.data(), Q, qn.deq.data.data(), 1e-6);
    std::vector<double> qq = ref::linear(r.data(), wqb.deq);
    for (int64_t h = 0; h < H; ++h) {
      std::vector<double> qh = ref::rmsNorm(qq.data() + h * d, d, nullptr, 1e-6);
      wq.insert(wq.end(), qh.begin(), qh.end());
    }
    wqr.insert(wqr.end(), r.begin(), r.end());
  }
  expectClose("attn.q_proj q", q.as<float>(), wq);
  expectClose("attn.q_proj qr", qr.as<float>(), wqr);
  expectGuards({&x, &q, &qr});
}

TEST(CpuKernels, AttnKvProjFp8) {
  Rng rng(8);
  // wkv [130, 260]: two row blocks (128 + 2), three column blocks (128 + 128 + 4).
  const int64_t S = 4, D = 260, d = 130;
  Weight wkv = fp8Weight(d, D, rng, true);
  Weight norm = f32Weight({d}, rng, 0.5, 1.5);
  std::string text = subst(R"(
    func.func @t(%x: tensor<?x260xf32>) {
      %wkv = dsv4.param "attn.wkv.weight" : $WKV$
      %n = dsv4.param "attn.kv_norm.weight" : $N$
      %kv = dsv4.attn.kv_proj %x, %wkv, %n {eps = 1.0e-06 : f64}
          : (tensor<?x260xf32>, $WKV$, $N$) -> tensor<?x130xf32>
      return
    })", {{"WKV", wkv.type}, {"N", norm.type}});
  OpKernel k;
  COMPILE(k, text, kNoContext);
  GuardedBuffer x = randomFloats(S * D, rng, -1, 1), kv = floatBuffer(S * d, kNaN);
  ASSERT_TRUE(k.run(S, 126, {{x.data()}, wkv.arg(), norm.arg()}, {kv.data()}));
  std::vector<double> want;
  for (int64_t s = 0; s < S; ++s) {
    std::vector<double> a = ref::linear(toDoubles(x.as<float>() + s * D, D).data(), wkv.deq);
    std::vector<double> r = ref::rmsNorm(a.data(), d, norm.deq.data.data(), 1e-6);
    want.insert(want.end(), r.begin(), r.end());
  }
  expectClose("attn.kv_proj", kv.as<float>(), want);
  expectGuards({&x, &kv});
}

TEST(CpuKernels, RopeMainAndYarnInverse) {
  Rng rng(9);
  struct Variant {
    std::string name, type, attr;
    ref::RopeParams params;
    int64_t ropeDim, rows, len, S, start;
    bool inverse, inPlace;
  };
  std::vector<Variant> variants = {
      {"main", "tensor<?x3x40xf32>", subst(kMainRopeAttr, {{"R", "16"}}), mainRope(), 16, 3,
       40, 4, 5, false, false},
      {"main in place", "tensor<?x3x40xf32>", subst(kMainRopeAttr, {{"R", "16"}}),
       mainRope(), 16, 3, 40, 4, 5, false, true},
      {"yarn inverse", "tensor<?x3x40xf32>", subst(kYarnRopeAttr, {{"R", "16"}}), yarnRope(),
       16, 3, 40, 5, 126, true, false},
      {"main at 4096", "tensor<?x3x40xf32>", subst(kMainRopeAttr, {{"R", "16"}}), mainRope(),
       16, 3, 40, 2, 4096, false, false},
      {"yarn full width", "tensor<?x32xf32>", subst(kYarnRopeAttr, {{"R", "32"}}), yarnRope(),
       32, 1, 32, 3, 126, false, false},
  };
  // The YaRN ramp must actually change some frequencies of this rope.
  {
    ref::RopeParams p = yarnRope();
    p.yarn = false;
    std::vector<double> base = ref::ropeInverseFrequencies(p, 16);
    std::vector<double> yarn = ref::ropeInverseFrequencies(yarnRope(), 16);
    EXPECT_NE(base.back(), yarn.back());
    EXPECT_EQ(base.front(), yarn.front());
  }
  for (const Variant &v : variants) {
    std::string text = subst(R"(
      func.func @t(%x: $T$, %pos: index) {
        %y = dsv4.rope %x at %pos {$INV$rope = $ROPE$} : $T$
        return
      })", {{"T", v.type}, {"ROPE", v.attr}, {"INV", v.inverse ? "inverse, " : ""}});
    OpKernel k;
    COMPILE(k, text, kNoContext);
    const int64_t n = v.S * v.rows * v.len;
    GuardedBuffer x = randomFloats(n, rng, -2, 2), y = floatBuffer(n, kNaN);
    std::vector<double> want = toDoubles(x.as<float>(), n);
    void *out = v.inPlace ? x.data() : y.data();
    ASSERT_TRUE(k.run(v.S, v.start, {{x.data()}, {}}, {out}));
    std::vector<double> freq = ref::ropeInverseFrequencies(v.params, v.ropeDim);
    for (int64_t s = 0; s < v.S; ++s)
      for (int64_t r = 0; r < v.rows; ++r)
        ref::applyRope(want.data() + (s * v.rows + r) * v.len, v.len, v.ropeDim, freq,
                       v.start + s, v.inverse);
    expectClose("rope " + v.name, static_cast<float *>(out), want);
    expectGuards({&x, &y});
  }
}

//===----------------------------------------------------------------------===//
// Decode state: window ring, compressors
//===----------------------------------------------------------------------===//

/// Writes a chunk of S tokens at `start` into a window_kv<8, 24, elt> ring
/// prefilled with random data and checks the whole ring: the chunk's slots
/// (start + s) mod 8, last writer wins, and every other slot unchanged. A copy
/// (or a round-to-nearest-even to bf16) is exact.
void checkWindowUpdate(int64_t S, int64_t start, bool bf16, Rng &rng) {
  const int64_t W = 8, d = 24;
  std::string elt = bf16 ? "bf16" : "f32";
  std::string text = subst(R"(
    func.func @t(%ring: !dsv4.window_kv<8, 24, $E$>, %kv: tensor<?x24xf32>, %pos: index) {
      %r2 = dsv4.kv.window_update %ring, %kv at %pos : !dsv4.window_kv<8, 24, $E$>, tensor<?x24xf32>
      return
    })", {{"E", elt}});
  OpKernel k;
  COMPILE(k, text, kNoContext);
  GuardedBuffer kv = randomFloats(S * d, rng, -1, 1);
  GuardedBuffer ring(W * d * (bf16 ? 2 : 4));
  std::vector<double> want(W * d);
  for (int64_t i = 0; i < W * d; ++i) {
    float f = static_cast<float>(rng.uniform(-5, 5));
    if (bf16) {
      uint16_t bits = toBf16(f);
      ring.as<uint16_t>()[i] = bits;
      want[i] = ::compressa::bf16ToFloat(bits);
    } else {
      ring.as<float>()[i] = f;
      want[i] = f;
    }
  }
  for (int64_t s = 0; s < S; ++s)
    for (int64_t i = 0; i < d; ++i) {
      float f = kv.as<float>()[s * d + i];
      want[((start + s) % W) * d + i] = bf16 ? ::compressa::bf16ToFloat(toBf16(f)) : double(f);
    }
  ASSERT_TRUE(k.run(S, start, {{ring.data()}, {kv.data()}, {}}, {}));
  for (int64_t i = 0; i < W * d; ++i) {
    double got = bf16 ? ::compressa::bf16ToFloat(ring.as<uint16_t>()[i]) : ring.as<float>()[i];
    ASSERT_EQ(got, want[i]) << "ring element " << i << " (slot " << i / d << "), S " << S
                            << " at " << start << ", " << elt;
  }
  expectGuards({&kv, &ring});
}

TEST(CpuKernels, KvWindowUpdateRingWrap) {
  Rng rng(10);
  checkWindowUpdate(5, 6, false, rng);   // slots 6, 7, 0, 1, 2
  checkWindowUpdate(11, 3, false, rng);  // longer than the ring: positions 6..13 survive
  checkWindowUpdate(3, 126, false, rng); // slots 6, 7, 0
}

TEST(CpuKernels, KvWindowUpdateBf16Ring) {
  // A bf16 ring (the state type of a bf16-activation build): the kernel
  // stores f32 -> bf16 (arith.truncf).
  Rng rng(25);
  checkWindowUpdate(5, 14, true, rng);
}

/// Runs a compressor over `chunks` (start, length) of a token sequence
/// starting at 0 and checks, after every call, all entries completed so far,
/// the untouched tail of the entries, and the state (kv and score slots)
/// against ref::compressorStep applied token by token.
void checkCompressSequence(const std::string &tag, bool overlap, bool indexerKeys,
                           int64_t m, int64_t dim, int64_t D, Weight &wkv, Weight &wgate,
                           Weight &ape, Weight &norm, const std::vector<std::pair<int64_t, int64_t>> &chunks,
                           Rng &rng) {
  const int64_t ropeDim = 8, maxContext = 64;
  const int64_t slots = overlap ? 2 * m : m, width = overlap ? 2 * dim : dim;
  const int64_t capacity = maxContext / m;
  std::string stateType = "!dsv4.compressor_state<" + std::to_string(m) + ", " +
                          std::to_string(dim) + (overlap ? ", overlap>" : ">");
  std::string entriesType = std::string(indexerKeys ? "!dsv4.indexer_keys<" : "!dsv4.compressed_kv<") +
                            std::to_string(m) + ", " + std::to_string(dim) + ", f32>";
  std::string text = subst(R"(
    func.func @t(%x: tensor<?x$D$xf32>, %st: $ST$, %e: $ET$, %pos: index) {
      %wkv = dsv4.param "attn.compressor.wkv.weight" : $WKV$
      %wg = dsv4.param "attn.compressor.wgate.weight" : $WG$
      %ape = dsv4.param "attn.compressor.ape" : $APE$
      %n = dsv4.param "attn.compressor.norm.weight" : $N$
      %st2, %e2 = dsv4.kv.compress %x, %wkv, %wg, %ape, %n, %st, %e, %pos {eps = 1.0e-06 : f64, rope = $ROPE$}
          : (tensor<?x$D$xf32>, $WKV$, $WG$, $APE$, $N$, $ST$, $ET$, index) -> ($ST$, $ET$)
      return
    })", {{"D", std::to_string(D)}, {"ST", stateType}, {"ET", entriesType},
          {"WKV", wkv.type}, {"WG", wgate.type}, {"APE", ape.type}, {"N", norm.type},
          {"ROPE", subst(kYarnRopeAttr, {{"R", std::to_string(ropeDim)}})}});
  OpKernel k;
  COMPILE(k, text, maxContext);

  // Fresh state as the runtime resets it: kv 0, score -inf.
  GuardedBuffer state(2 * slots * width * 4);
  std::fill(state.as<float>(), state.as<float>() + slots * width, 0.0f);
  std::fill(state.as<float>() + slots * width, state.as<float>() + 2 * slots * width,
            -std::numeric_limits<float>::infinity());
  GuardedBuffer entries = floatBuffer(capacity * dim, 0.0f);

  ref::CompressorState st;
  st.reset(m, dim, overlap);
  ref::CompressorWeights cw{wkv.deq, wgate.deq, ape.deq, norm.deq};
  std::vector<double> freq = ref::ropeInverseFrequencies(yarnRope(), ropeDim);
  int64_t next = 0;
  for (auto [start, len] : chunks) {
    ASSERT_EQ(start, next) << "chunks must be contiguous";
    GuardedBuffer x = randomFloats(len * D, rng, -1, 1);
    ASSERT_TRUE(k.run(len, start,
                      {{x.data()}, wkv.arg(), wgate.arg(), ape.arg(), norm.arg(),
                       {state.data()}, {entries.data()}, {}},
                      {}));
    for (int64_t s = 0; s < len; ++s)
      ref::compressorStep(st, toDoubles(x.as<float>() + s * D, D).data(), cw, start + s, freq,
                          ropeDim, 1e-6);
    next = start + len;
    std::string where = tag + " after the chunk [" + std::to_string(start) + ", " +
                        std::to_string(next) + ")";
    const int64_t done = next / m;
    ASSERT_EQ(static_cast<int64_t>(st.entries.size()), done);
    std::vector<double> wantEntries(capacity * dim, 0.0);
    for (int64_t w = 0; w < done; ++w)
      std::copy(st.entries[w].begin(), st.entries[w].end(), wantEntries.begin() + w * dim);
    expectClose(where + ": entries", entries.as<float>(), wantEntries);
    expectClose(where + ": state kv", state.as<float>(), st.kv);
    expectClose(where + ": state score", state.as<float>() + slots * width, st.score);
    expectGuards({&x, &state, &entries});
  }
}

TEST(CpuKernels, KvCompressHcaPlain) {
  Rng rng(11);
  const int64_t m = 4, dim = 32, D = 64;
  Weight wkv = bf16Weight({dim, D}, rng, -0.3, 0.3);
  Weight wgate = bf16Weight({dim, D}, rng, -0.3, 0.3);
  Weight ape = f32Weight({m, dim}, rng, -1, 1);
  Weight norm = bf16Weight({dim}, rng, 0.5, 1.5);
  checkCompressSequence("HCA", false, false, m, dim, D, wkv, wgate, ape, norm,
                        {{0, 3}, {3, 5}, {8, 1}, {9, 6}, {15, 2}, {17, 7}, {24, 4}}, rng);
}

TEST(CpuKernels, KvCompressCsaOverlapping) {
  Rng rng(12);
  {
    // CSA entries: wkv FP8 [64, 200] (partial column block), wgate bf16.
    const int64_t m = 4, dim = 32, D = 200;
    Weight wkv = fp8Weight(2 * dim, D, rng, false);
    Weight wgate = bf16Weight({2 * dim, D}, rng, -0.1, 0.1);
    Weight ape = f32Weight({m, 2 * dim}, rng, -1, 1);
    Weight norm = bf16Weight({dim}, rng, 0.5, 1.5);
    checkCompressSequence("CSA", true, false, m, dim, D, wkv, wgate, ape, norm,
                          {{0, 2}, {2, 5}, {7, 1}, {8, 9}, {17, 3}, {20, 6}}, rng);
  }
  {
    // The indexer's compressor: overlapping, into indexer keys.
    const int64_t m = 4, dim = 16, D = 64;
    Weight wkv = bf16Weight({2 * dim, D}, rng, -0.3, 0.3);
    Weight wgate = f32Weight({2 * dim, D}, rng, -0.3, 0.3);
    Weight ape = f32Weight({m, 2 * dim}, rng, -1, 1);
    Weight norm = f32Weight({dim}, rng, 0.5, 1.5);
    checkCompressSequence("CSA indexer keys", true, true, m, dim, D, wkv, wgate, ape, norm,
                          {{0, 5}, {5, 3}, {8, 4}, {12, 13}}, rng);
  }
}

//===----------------------------------------------------------------------===//
// Indexer and attention
//===----------------------------------------------------------------------===//

TEST(CpuKernels, AttnIndexerTopk) {
  Rng rng(13);
  const int64_t heads = 4, dI = 16, Q = 24, D = 64, m = 4, topk = 4, ropeDim = 8;
  const int64_t maxContext = 256, capacity = maxContext / m;
  Weight wqb = bf16Weight({heads * dI, Q}, rng, -0.5, 0.5);
  Weight wpRandom = bf16Weight({heads, D}, rng, -0.5, 0.5);
  Weight wpPositive = bf16Weight({heads, D}, rng, 0.0, 0.5);
  std::string text = subst(R"(
    func.func @t(%qr: tensor<?x24xf32>, %x: tensor<?x64xf32>, %keys: !dsv4.indexer_keys<4, 16, f32>, %pos: index) {
      %wqb = dsv4.param "attn.indexer.wq_b.weight" : $WQB$
      %wp = dsv4.param "attn.indexer.weights_proj.weight" : $WP$
      %idx = dsv4.attn.indexer_topk %qr, %x, %wqb, %wp, %keys, %pos {heads = 4 : i64, rope = $ROPE$, topk = 4 : i64}
          : (tensor<?x24xf32>, tensor<?x64xf32>, $WQB$, $WP$, !dsv4.indexer_keys<4, 16, f32>, index) -> tensor<?x4xi32>
      return
    })", {{"WQB", wqb.type}, {"WP", wpRandom.type},
          {"ROPE", subst(kYarnRopeAttr, {{"R", std::to_string(ropeDim)}})}});
  OpKernel k;
  COMPILE(k, text, maxContext);
  std::vector<double> freq = ref::ropeInverseFrequencies(yarnRope(), ropeDim);

  // `copies`: groups of entries holding bit-identical keys (exact ties).
  auto runCase = [&](const std::string &tag, int64_t S, int64_t start, Weight &wp,
                     double xLo, const std::vector<std::vector<int64_t>> &copies,
                     bool expectTieInTop) {
    GuardedBuffer qr = randomFloats(S * Q, rng, -1, 1), x = randomFloats(S * D, rng, xLo, 1);
    GuardedBuffer keys = floatBuffer(capacity * dI, kNaN); // unwritten entries: NaN
    const int64_t valid = (start + S) / m;
    for (int64_t i = 0; i < valid * dI; ++i)
      keys.as<float>()[i] = static_cast<float>(rng.uniform(-0.3, 0.3));
    std::vector<int64_t> group(capacity, -1);
    for (size_t g = 0; g < copies.size(); ++g) {
      // A strong key, copied to every member of the group.
      std::vector<float> key(dI);
      for (float &f : key)
        f = static_cast<float>(rng.uniform(-2, 2));
      for (int64_t e : copies[g]) {
        std::copy(key.begin(), key.end(), keys.as<float>() + e * dI);
        group[e] = static_cast<int64_t>(g);
      }
    }
    GuardedBuffer idx(S * topk * 4);
    std::fill(idx.as<int32_t>(), idx.as<int32_t>() + S * topk, 12345);
    ASSERT_TRUE(k.run(S, start, {{qr.data()}, {x.data()}, wqb.arg(), wp.arg(), {keys.data()}, {}},
                      {idx.data()}));
    std::vector<std::vector<double>> keyVecs;
    for (int64_t e = 0; e < valid; ++e)
      keyVecs.push_back(toDoubles(keys.as<float>() + e * dI, dI));
    bool sawTie = false;
    for (int64_t s = 0; s < S; ++s) {
      const int64_t t = start + s, avail = (t + 1) / m;
      std::vector<double> q = ref::linear(toDoubles(qr.as<float>() + s * Q, Q).data(), wqb.deq);
      for (int64_t h = 0; h < heads; ++h)
        ref::applyRope(q.data() + h * dI, dI, ropeDim, freq, t);
      std::vector<double> w =
          ref::indexerHeadWeights(toDoubles(x.as<float>() + s * D, D).data(), wp.deq, dI);
      std::vector<double> scores = ref::indexerScores(q.data(), w, keyVecs, avail, dI);
      std::vector<int64_t> want = ref::topKIndices(scores, std::min(topk, avail));
      want.resize(topk, -1);
      for (size_t j = 0; j + 1 < want.size(); ++j)
        if (want[j] >= 0 && want[j + 1] >= 0 && group[want[j]] >= 0 &&
            group[want[j]] == group[want[j + 1]])
          sawTie = true;
      expectSelection(tag + ", token at " + std::to_string(t), idx.as<int32_t>() + s * topk,
                      want, scores, [&](int64_t a, int64_t b) {
                        return group[a] >= 0 && group[a] == group[b];
                      });
    }
    if (expectTieInTop) {
      EXPECT_TRUE(sawTie) << tag << ": the test data should put an exact tie in the top-k";
    }
    expectGuards({&qr, &x, &keys, &idx});
  };
  // Fewer candidates than topk (1, 1, 2, 2): -1 padding.
  runCase("few entries", 4, 5, wpRandom, -1, {}, false);
  // Many candidates, random head weights.
  runCase("31-32 entries", 5, 126, wpRandom, -1, {}, false);
  // Positive head weights and three bit-identical strong keys (entries 2, 9,
  // 30) plus two others (4, 11): ties must go to the lower index.
  runCase("exact ties", 5, 126, wpPositive, 0, {{30, 2, 9}, {11, 4}}, true);
}

/// Reference sink attention of one token: window keys from the ring (before
/// the chunk) or the chunk, then the given entries.
std::vector<double> attentionRef(const float *q, int64_t H, int64_t d, int64_t t, int64_t start,
                                 int64_t W, const float *ring, const float *kv,
                                 const std::vector<const float *> &entryKeys,
                                 const std::vector<double> &sinks, double scale) {
  std::vector<std::vector<double>> keys;
  for (int64_t u = std::max<int64_t>(0, t - W + 1); u <= t; ++u)
    keys.push_back(u >= start ? toDoubles(kv + (u - start) * d, d)
                              : toDoubles(ring + (u % W) * d, d));
  for (const float *e : entryKeys)
    keys.push_back(toDoubles(e, d));
  std::vector<const double *> ptrs;
  for (const auto &k : keys)
    ptrs.push_back(k.data());
  return ref::sinkAttention(toDoubles(q, H * d).data(), H, d, ptrs, sinks.data(), scale);
}

enum class EntryMode { None, Dense, Topk };

/// The test module of a dsv4.attn.sparse over 2 heads of 32 channels, a
/// window of 8 and (mode) compressed entries of ratio 4 with top-4 picks.
std::string sparseAttentionText(EntryMode mode, const Weight &sink, double scale) {
  std::string entries = mode == EntryMode::None ? "" : " entries(%e)";
  std::string topk = mode == EntryMode::Topk ? " topk(%idx)" : "";
  std::string extraArgs = std::string(mode == EntryMode::None ? "" : ", %e: !dsv4.compressed_kv<4, 32, f32>") +
                          (mode == EntryMode::Topk ? ", %idx: tensor<?x4xi32>" : "");
  std::string extraTypes = std::string(mode == EntryMode::None ? "" : ", !dsv4.compressed_kv<4, 32, f32>") +
                           (mode == EntryMode::Topk ? ", tensor<?x4xi32>" : "");
  return subst(R"(
    func.func @t(%q: tensor<?x2x32xf32>, %kv: tensor<?x32xf32>, %ring: !dsv4.window_kv<8, 32, f32>, %pos: index$EA$) {
      %sink = dsv4.param "attn.attn_sink" : $SINK$
      %o = dsv4.attn.sparse %q, %kv, %ring at %pos sink(%sink)$EN$$TK$ {scale = $SC$ : f64}
          : (tensor<?x2x32xf32>, tensor<?x32xf32>, !dsv4.window_kv<8, 32, f32>, index, $SINK$$ET$) -> tensor<?x2x32xf32>
      return
    })", {{"EA", extraArgs}, {"SINK", sink.type}, {"EN", entries}, {"TK", topk},
          {"SC", f64(scale)}, {"ET", extraTypes}});
}

void checkSparseAttention(EntryMode mode, uint32_t seed) {
  Rng rng(seed);
  const int64_t H = 2, d = 32, W = 8, m = 4, K = 4, capacity = 64;
  const double scale = 1.0 / std::sqrt(32.0);
  Weight sink = f32Weight({H}, rng, -1, 1);
  std::string text = sparseAttentionText(mode, sink, scale);
  OpKernel k;
  COMPILE(k, text, 256);
  std::vector<double> sinks = sink.deq.data;

  struct Case {
    int64_t S, start;
  };
  // (S, start): window partly from the ring; a chunk straddling the ring's
  // wrap (positions 126..130 use ring slots 6, 7, 0, 1, 2 and keys from
  // positions 119..125 in the ring); a chunk longer than the window.
  for (Case c : {Case{4, 5}, Case{5, 126}, Case{10, 126}, Case{1, 0}}) {
    std::string tag = std::string(mode == EntryMode::None    ? "window only"
                                  : mode == EntryMode::Dense ? "window + HCA entries"
                                                             : "window + CSA top-k") +
                      ", S " + std::to_string(c.S) + " at " + std::to_string(c.start);
    GuardedBuffer q = randomFloats(c.S * H * d, rng, -1, 1);
    GuardedBuffer kv = randomFloats(c.S * d, rng, -1, 1);
    // Ring: only positions start-W .. start-1 (>= 0) are valid; others NaN.
    GuardedBuffer ring = floatBuffer(W * d, kNaN);
    for (int64_t u = std::max<int64_t>(0, c.start - W); u < c.start; ++u)
      for (int64_t i = 0; i < d; ++i)
        ring.as<float>()[(u % W) * d + i] = static_cast<float>(rng.uniform(-1, 1));
    // Entries: the ones complete at the end of the chunk; later ones NaN.
    const int64_t valid = (c.start + c.S) / m;
    GuardedBuffer e = floatBuffer(capacity * d, kNaN);
    for (int64_t i = 0; i < valid * d; ++i)
      e.as<float>()[i] = static_cast<float>(rng.uniform(-1.5, 1.5));
    GuardedBuffer idx(c.S * K * 4);
    std::vector<std::vector<int64_t>> picks(c.S);
    for (int64_t s = 0; s < c.S; ++s) {
      const int64_t avail = (c.start + s + 1) / m;
      for (int64_t j = 0; j < K; ++j) {
        // Distinct visible entries first, then -1 padding (or all -1).
        int64_t pick = -1;
        if (j < std::min<int64_t>(avail, s % 2 ? 2 : K)) {
          do
            pick = rng.integer(0, avail - 1);
          while (std::find(picks[s].begin(), picks[s].end(), pick) != picks[s].end());
        }
        if (s == 2)
          pick = -1; // a token that selects nothing
        idx.as<int32_t>()[s * K + j] = static_cast<int32_t>(pick);
        if (pick >= 0)
          picks[s].push_back(pick);
      }
    }
    GuardedBuffer o = floatBuffer(c.S * H * d, kNaN);
    std::vector<Arg> args = {{q.data()}, {kv.data()}, {ring.data()}, {}, sink.arg()};
    if (mode != EntryMode::None)
      args.push_back({e.data()});
    if (mode == EntryMode::Topk)
      args.push_back({idx.data()});
    ASSERT_TRUE(k.run(c.S, c.start, args, {o.data()}));
    std::vector<double> want;
    for (int64_t s = 0; s < c.S; ++s) {
      const int64_t t = c.start + s;
      std::vector<const float *> entryKeys;
      if (mode == EntryMode::Dense)
        for (int64_t w = 0; w < (t + 1) / m; ++w)
          entryKeys.push_back(e.as<float>() + w * d);
      if (mode == EntryMode::Topk)
        for (int64_t w : picks[s])
          entryKeys.push_back(e.as<float>() + w * d);
      std::vector<double> r = attentionRef(q.as<float>() + s * H * d, H, d, t, c.start, W,
                                           ring.as<float>(), kv.as<float>(), entryKeys, sinks,
                                           scale);
      want.insert(want.end(), r.begin(), r.end());
    }
    expectClose("attn.sparse " + tag, o.as<float>(), want);
    expectGuards({&q, &kv, &ring, &e, &idx, &o});
  }
}

TEST(CpuKernels, AttnSparseWindowOnly) { checkSparseAttention(EntryMode::None, 14); }
TEST(CpuKernels, AttnSparseWindowAndDenseHcaEntries) { checkSparseAttention(EntryMode::Dense, 15); }
TEST(CpuKernels, AttnSparseWindowAndCsaTopkEntries) { checkSparseAttention(EntryMode::Topk, 16); }

/// A chunk of 80 tokens (more than the kernel splits over threads: each
/// thread then sums the key ranges in turn) gives every token the same row,
/// bit for bit, as a one-token call at its position (the ranges summed by
/// separate threads, then added), and both match the reference.
void checkSparseAttentionRowsAcrossCallSizes(EntryMode mode, uint32_t seed) {
  Rng rng(seed);
  const int64_t H = 2, d = 32, W = 8, m = 4, K = 4, capacity = 64;
  const int64_t S = 80, start = 100;
  const double scale = 1.0 / std::sqrt(32.0);
  Weight sink = f32Weight({H}, rng, -1, 1);
  OpKernel k;
  COMPILE(k, sparseAttentionText(mode, sink, scale), 256);
  // The keys of positions 0 .. start + S - 1, the entries (all complete),
  // the queries and each position's picks (some -1).
  GuardedBuffer keys = randomFloats((start + S) * d, rng, -1, 1);
  GuardedBuffer e = randomFloats(capacity * d, rng, -1.5, 1.5);
  GuardedBuffer q = randomFloats(S * H * d, rng, -1, 1);
  GuardedBuffer idx(S * K * 4);
  for (int64_t s = 0; s < S; ++s) {
    const int64_t avail = (start + s + 1) / m;
    for (int64_t j = 0; j < K; ++j)
      idx.as<int32_t>()[s * K + j] =
          s % 3 == 1 && j == K - 1 ? -1 : static_cast<int32_t>((s * 7 + j * 5) % avail);
  }
  // The ring before a call at `at`: positions at - W .. at - 1.
  auto ringBefore = [&](int64_t at) {
    GuardedBuffer ring = floatBuffer(W * d, kNaN);
    for (int64_t u = std::max<int64_t>(0, at - W); u < at; ++u)
      std::copy_n(keys.as<float>() + u * d, d, ring.as<float>() + (u % W) * d);
    return ring;
  };
  auto argsOf = [&](void *qp, void *kvp, void *ringp, void *idxp) {
    std::vector<Arg> args = {{qp}, {kvp}, {ringp}, {}, sink.arg()};
    if (mode != EntryMode::None)
      args.push_back({e.data()});
    if (mode == EntryMode::Topk)
      args.push_back({idxp});
    return args;
  };
  GuardedBuffer ring = ringBefore(start);
  GuardedBuffer chunk = floatBuffer(S * H * d, kNaN);
  ASSERT_TRUE(k.run(S, start,
                    argsOf(q.data(), keys.as<float>() + start * d, ring.data(), idx.data()),
                    {chunk.data()}));
  std::vector<double> want;
  for (int64_t s = 0; s < S; ++s) {
    const int64_t t = start + s;
    GuardedBuffer ringT = ringBefore(t), one = floatBuffer(H * d, kNaN);
    ASSERT_TRUE(k.run(1, t,
                      argsOf(q.as<float>() + s * H * d, keys.as<float>() + t * d, ringT.data(),
                             idx.as<int32_t>() + s * K),
                      {one.data()}));
    ASSERT_EQ(0, std::memcmp(one.data(), chunk.as<float>() + s * H * d, H * d * 4))
        << "position " << t << ": the chunk's row differs from the one-token call's";
    std::vector<const float *> entryKeys;
    if (mode == EntryMode::Dense)
      for (int64_t w = 0; w < (t + 1) / m; ++w)
        entryKeys.push_back(e.as<float>() + w * d);
    if (mode == EntryMode::Topk)
      for (int64_t j = 0; j < K; ++j)
        if (int32_t w = idx.as<int32_t>()[s * K + j]; w >= 0)
          entryKeys.push_back(e.as<float>() + w * d);
    std::vector<double> r = attentionRef(q.as<float>() + s * H * d, H, d, t, t, W,
                                         ringT.as<float>(), keys.as<float>() + t * d,
                                         entryKeys, sink.deq.data, scale);
    want.insert(want.end(), r.begin(), r.end());
  }
  expectClose("attn.sparse 80-token chunk", chunk.as<float>(), want);
}

TEST(CpuKernels, AttnSparseChunkRowsEqualOneTokenCallsWindowOnly) {
  checkSparseAttentionRowsAcrossCallSizes(EntryMode::None, 17);
}
TEST(CpuKernels, AttnSparseChunkRowsEqualOneTokenCallsHcaEntries) {
  checkSparseAttentionRowsAcrossCallSizes(EntryMode::Dense, 18);
}
TEST(CpuKernels, AttnSparseChunkRowsEqualOneTokenCallsCsaTopk) {
  checkSparseAttentionRowsAcrossCallSizes(EntryMode::Topk, 19);
}

TEST(CpuKernels, AttnOutProjGroups2) {
  Rng rng(17);
  // H 4, d 24, G 2 (R_o 16): wo_a FP8 [32, 48] (one partial block), wo_b bf16 [40, 32].
  const int64_t S = 3, H = 4, d = 24, G = 2, R = 16, Dm = 40;
  Weight woa = fp8Weight(G * R, (H / G) * d, rng, false);
  Weight wob = bf16Weight({Dm, G * R}, rng, -0.5, 0.5);
  std::string text = subst(R"(
    func.func @t(%o: tensor<?x4x24xf32>) {
      %woa = dsv4.param "attn.wo_a.weight" : $WOA$
      %wob = dsv4.param "attn.wo_b.weight" : $WOB$
      %out = dsv4.attn.out_proj %o, %woa, %wob {groups = 2 : i64}
          : (tensor<?x4x24xf32>, $WOA$, $WOB$) -> tensor<?x40xf32>
      return
    })", {{"WOA", woa.type}, {"WOB", wob.type}});
  OpKernel k;
  COMPILE(k, text, kNoContext);
  GuardedBuffer o = randomFloats(S * H * d, rng, -1, 1), out = floatBuffer(S * Dm, kNaN);
  ASSERT_TRUE(k.run(S, 0, {{o.data()}, woa.arg(), wob.arg()}, {out.data()}));
  std::vector<double> want;
  for (int64_t s = 0; s < S; ++s) {
    std::vector<double> r =
        ref::attentionOutput(toDoubles(o.as<float>() + s * H * d, H * d), woa.deq, wob.deq, G);
    want.insert(want.end(), r.begin(), r.end());
  }
  expectClose("attn.out_proj", out.as<float>(), want);
  expectGuards({&o, &out});
}

//===----------------------------------------------------------------------===//
// MoE
//===----------------------------------------------------------------------===//

TEST(CpuKernels, MoeGateBiasSelectsOnly) {
  Rng rng(18);
  const int64_t S = 5, D = 64, E = 16, K = 4;
  const double routeScale = 1.5;
  Weight w = bf16Weight({E, D}, rng, -0.3, 0.3);
  std::vector<float> biasValues(E, 0.0f);
  Weight zeroBias = denseWeight({E}, biasValues, false);
  for (int64_t e : {1, 6, 11})
    biasValues[e] = 3.0f; // larger than any spread of sigma: always picked
  Weight bias = denseWeight({E}, biasValues, false);
  std::string text = subst(R"(
    func.func @t(%x: tensor<?x64xf32>) {
      %w = dsv4.param "ffn.gate.weight" : $W$
      %b = dsv4.param "ffn.gate.bias" : $B$
      %wts, %ids = dsv4.moe.gate %x, %w, %b {route_scale = 1.5 : f64, topk = 4 : i64}
          : (tensor<?x64xf32>, $W$, $B$) -> (tensor<?x4xf32>, tensor<?x4xi32>)
      return
    })", {{"W", w.type}, {"B", bias.type}});
  OpKernel k;
  COMPILE(k, text, kNoContext);
  GuardedBuffer x = randomFloats(S * D, rng, -1, 1);
  std::vector<std::vector<int32_t>> idsByRun;
  for (Weight *b : {&zeroBias, &bias}) {
    std::string tag = b == &bias ? "biased" : "unbiased";
    GuardedBuffer wts = floatBuffer(S * K, kNaN), ids(S * K * 4);
    ASSERT_TRUE(k.run(S, 0, {{x.data()}, w.arg(), b->arg()}, {wts.data(), ids.data()}));
    std::vector<double> wantW;
    for (int64_t s = 0; s < S; ++s) {
      std::vector<double> sigma = ref::routerScores(toDoubles(x.as<float>() + s * D, D).data(), w.deq);
      ref::Routing r = ref::scoreRouting(sigma, b->deq, K, routeScale);
      std::vector<double> sel = sigma;
      for (int64_t e = 0; e < E; ++e)
        sel[e] += b->deq.data[e];
      const int32_t *got = ids.as<int32_t>() + s * K;
      expectSelection("moe.gate " + tag + " token " + std::to_string(s), got, r.experts, sel,
                      [](int64_t, int64_t) { return false; });
      // Weights of the experts the kernel picked (equal to r's when the
      // picks agree): sigma-based, never bias-based.
      std::vector<int64_t> picked(got, got + K);
      ref::Routing rk = ref::hashRouting(sigma, picked.data(), K, routeScale);
      wantW.insert(wantW.end(), rk.weights.begin(), rk.weights.end());
      if (b == &bias) {
        // The test must tell sigma-based from (sigma + bias)-based weights.
        ref::Routing wrong = ref::hashRouting(sel, picked.data(), K, routeScale);
        double diff = 0;
        for (int64_t j = 0; j < K; ++j)
          diff = std::max(diff, std::fabs(wrong.weights[j] - rk.weights[j]));
        EXPECT_GT(diff, 1e-2);
        for (int64_t e : {1, 6, 11})
          EXPECT_NE(std::find(got, got + K, e), got + K) << "biased expert " << e << " not picked";
      }
    }
    expectClose("moe.gate " + tag + " weights", wts.as<float>(), wantW);
    idsByRun.emplace_back(ids.as<int32_t>(), ids.as<int32_t>() + S * K);
    expectGuards({&x, &wts, &ids});
  }
  EXPECT_NE(idsByRun[0], idsByRun[1]) << "the bias should change the selection";
}

TEST(CpuKernels, MoeHashGate) {
  Rng rng(19);
  const int64_t S = 4, D = 64, E = 16, K = 3, V = 50;
  Weight w = bf16Weight({E, D}, rng, -0.3, 0.3);
  Weight t2e;
  t2e.shape = {V, K};
  t2e.type = "!dsv4.weight<tensor<50x3xi64>>";
  t2e.data.resize(V * K * 8);
  std::vector<int64_t> table(V * K);
  for (int64_t i = 0; i < V * K; ++i)
    table[i] = rng.integer(0, E - 1);
  std::memcpy(t2e.data.data(), table.data(), V * K * 8);
  std::string text = subst(R"(
    func.func @t(%x: tensor<?x64xf32>, %tokens: tensor<?xi64>) {
      %w = dsv4.param "ffn.gate.weight" : $W$
      %t2e = dsv4.param "ffn.gate.tid2eid" : $T$
      %wts, %ids = dsv4.moe.hash_gate %x, %w, %t2e, %tokens {route_scale = 2.5 : f64}
          : (tensor<?x64xf32>, $W$, $T$, tensor<?xi64>) -> (tensor<?x3xf32>, tensor<?x3xi32>)
      return
    })", {{"W", w.type}, {"T", t2e.type}});
  OpKernel k;
  COMPILE(k, text, kNoContext);
  GuardedBuffer x = randomFloats(S * D, rng, -1, 1), tokens(S * 8);
  const int64_t tokenIds[S] = {49, 0, 17, 17};
  std::copy(tokenIds, tokenIds + S, tokens.as<int64_t>());
  GuardedBuffer wts = floatBuffer(S * K, kNaN), ids(S * K * 4);
  ASSERT_TRUE(k.run(S, 0, {{x.data()}, w.arg(), t2e.arg(), {tokens.data()}},
                    {wts.data(), ids.data()}));
  std::vector<double> wantW;
  for (int64_t s = 0; s < S; ++s) {
    std::vector<double> sigma = ref::routerScores(toDoubles(x.as<float>() + s * D, D).data(), w.deq);
    ref::Routing r = ref::hashRouting(sigma, table.data() + tokenIds[s] * K, K, 2.5);
    for (int64_t j = 0; j < K; ++j)
      EXPECT_EQ(ids.as<int32_t>()[s * K + j], r.experts[j]) << "token " << s << " pick " << j;
    wantW.insert(wantW.end(), r.weights.begin(), r.weights.end());
  }
  expectClose("moe.hash_gate weights", wts.as<float>(), wantW);
  expectGuards({&x, &tokens, &wts, &ids});
}

/// A limit that some |g| and |u| exceed and most do not: the 70th percentile
/// of the |pre-activation| values the kernel will see.
double swigluLimitFor(const std::vector<double> &preActivations) {
  std::vector<double> a;
  for (double v : preActivations)
    a.push_back(std::fabs(v));
  std::sort(a.begin(), a.end());
  return a[a.size() * 7 / 10];
}

/// Checks that the clamp fires on both g (above) and u (both signs) and
/// leaves most values alone.
void expectClampFires(const std::vector<double> &g, const std::vector<double> &u, double limit) {
  int64_t gHigh = 0, uHigh = 0, uLow = 0, inside = 0;
  for (double v : g)
    gHigh += v > limit;
  for (double v : u) {
    uHigh += v > limit;
    uLow += v < -limit;
    inside += std::fabs(v) < limit;
  }
  EXPECT_GT(gHigh, 0) << "no g above the SwiGLU limit";
  EXPECT_GT(uHigh, 0) << "no u above the SwiGLU limit";
  EXPECT_GT(uLow, 0) << "no u below -limit";
  EXPECT_GT(inside, int64_t(u.size() / 2)) << "the clamp fires almost everywhere";
}

/// exactMma: the op marked dsv4.exact_mma, i.e. the CPU twin of the exact
/// tensor-core experts (Emitter::expertsExactMma: x split into three f16
/// parts per 32-column block, exact products, f32 sums), held to the same
/// tolerance as the f32 loops.
void checkExperts(bool fp4, uint32_t seed, bool exactMma = false) {
  Rng rng(seed);
  const int64_t S = 4, D = 64, I = 32, E = 4, K = 2;
  std::vector<Weight> w1s, w3s, w2s;
  for (int64_t e = 0; e < E; ++e) {
    w1s.push_back(fp4 ? fp4Weight(I, D, rng) : bf16Weight({I, D}, rng, -1, 1));
    w3s.push_back(fp4 ? fp4Weight(I, D, rng) : bf16Weight({I, D}, rng, -1, 1));
    w2s.push_back(fp4 ? fp4Weight(D, I, rng) : bf16Weight({D, I}, rng, -1, 1));
  }
  ExpertStack w1 = makeStack(std::move(w1s)), w3 = makeStack(std::move(w3s)),
              w2 = makeStack(std::move(w2s));
  GuardedBuffer x = randomFloats(S * D, rng, -1, 1);
  GuardedBuffer wts = randomFloats(S * K, rng, 0.2, 1.2), ids(S * K * 4);
  const int32_t idList[S * K] = {0, 3, 2, 1, 3, 0, 1, 2};
  std::copy(idList, idList + S * K, ids.as<int32_t>());

  std::vector<ref::ExpertWeights> experts(E);
  for (int64_t e = 0; e < E; ++e)
    experts[e] = ref::ExpertWeights{w1.experts[e].deq, w2.experts[e].deq, w3.experts[e].deq};
  std::vector<double> g, u;
  for (int64_t s = 0; s < S; ++s)
    for (int64_t j = 0; j < K; ++j) {
      std::vector<double> xs = toDoubles(x.as<float>() + s * D, D);
      std::vector<double> gs = ref::linear(xs.data(), experts[idList[s * K + j]].w1);
      std::vector<double> us = ref::linear(xs.data(), experts[idList[s * K + j]].w3);
      g.insert(g.end(), gs.begin(), gs.end());
      u.insert(u.end(), us.begin(), us.end());
    }
  std::vector<double> all = g;
  all.insert(all.end(), u.begin(), u.end());
  const double limit = swigluLimitFor(all);
  expectClampFires(g, u, limit);

  std::string text = subst(R"(
    func.func @t(%x: tensor<?x64xf32>, %wts: tensor<?x2xf32>, %ids: tensor<?x2xi32>) {
      %w1 = dsv4.param "ffn.experts.*.w1.weight" : $W1$
      %w3 = dsv4.param "ffn.experts.*.w3.weight" : $W3$
      %w2 = dsv4.param "ffn.experts.*.w2.weight" : $W2$
      %y = dsv4.moe.experts %x, %wts, %ids, %w1, %w3, %w2 {swiglu_limit = $L$ : f64$M$}
          : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, $W1$, $W3$, $W2$) -> tensor<?x64xf32>
      return
    })", {{"W1", w1.type}, {"W3", w3.type}, {"W2", w2.type}, {"L", f64(limit)},
          {"M", exactMma ? ", dsv4.exact_mma" : ""}});
  OpKernel k;
  COMPILE(k, text, kNoContext);
  // 4 tokens take the expert tiles (two slots an expert); the twin runs
  // below that, so its kernel gets the first 3.
  const int64_t runS = exactMma ? 3 : S;
  GuardedBuffer y = floatBuffer(S * D, kNaN);
  ASSERT_TRUE(k.run(runS, 0, {{x.data()}, {wts.data()}, {ids.data()}, w1.arg(), w3.arg(), w2.arg()},
                    {y.data()}));
  std::vector<double> want(S * D, 0.0);
  for (int64_t s = 0; s < S; ++s)
    for (int64_t j = 0; j < K; ++j) {
      std::vector<double> ys = ref::swigluExpert(toDoubles(x.as<float>() + s * D, D).data(),
                                                 experts[idList[s * K + j]], limit);
      for (int64_t i = 0; i < D; ++i)
        want[s * D + i] += double(wts.as<float>()[s * K + j]) * ys[i];
    }
  want.resize(runS * D);
  expectClose(std::string("moe.experts ") + (fp4 ? "fp4" : "bf16") + (exactMma ? " exact_mma" : ""),
              y.as<float>(), want);
  expectGuards({&x, &wts, &ids, &y});
}

/// --numerics=fast-decode: routed experts marked dsv4.numerics = "fp8" in a
/// call of at most 8 tokens (Emitter::expertsFp8Decode; on the CPU the twin
/// of its e4m3 tensor-core code) against the spec's FP4 / FP8 GEMM in
/// float64 (ActQuantReference.h): act_quant of x and of the SwiGLU hiddens
/// (these rounded to f32 first, as the kernel stores them), each 128-column
/// block's products exact, the blocks' sums times their scales. D = 256
/// splits the gate/up dots in two parts of K; I = 96 is a partial 128-block
/// (three 32-column blocks) for the down dots.
void checkExpertsFp8(bool fp4, uint32_t seed, int64_t S) {
  namespace aq = ::compressa::reference;
  Rng rng(seed);
  const int64_t D = 256, I = 96, E = 4, K = 2;
  auto weight = [&](int64_t rows, int64_t cols) {
    return fp4 ? fp4Weight(rows, cols, rng) : fp8Weight(rows, cols, rng, false);
  };
  std::vector<Weight> w1s, w3s, w2s;
  for (int64_t e = 0; e < E; ++e) {
    w1s.push_back(weight(I, D));
    w3s.push_back(weight(I, D));
    w2s.push_back(weight(D, I));
  }
  ExpertStack w1 = makeStack(std::move(w1s)), w3 = makeStack(std::move(w3s)),
              w2 = makeStack(std::move(w2s));
  GuardedBuffer x = randomFloats(S * D, rng, -1, 1);
  GuardedBuffer wts = randomFloats(S * K, rng, 0.2, 1.2), ids(S * K * 4);
  std::vector<int32_t> idList(S * K);
  for (int64_t i = 0; i < S * K; ++i)
    idList[i] = int32_t(rng.integer(0, E - 1));
  std::copy(idList.begin(), idList.end(), ids.as<int32_t>());

  // y = sum over 128-blocks of the block's scale times its exact products.
  auto gemm = [](const std::vector<uint8_t> &q, const std::vector<uint8_t> &sa,
                 const ref::Tensor &w, int64_t row) {
    int64_t k = w.shape[1];
    double y = 0;
    for (int64_t b = 0; b * 128 < k; ++b) {
      double sum = 0;
      for (int64_t c = b * 128; c < std::min<int64_t>(k, b * 128 + 128); ++c)
        sum += aq::e4m3Value(q[c]) * w.data[row * k + c];
      y += sum * aq::ue8m0Value(sa[b]);
    }
    return y;
  };
  auto quant = [](const float *v, int64_t n, std::vector<uint8_t> &q, std::vector<uint8_t> &sa) {
    q.assign(n, 0);
    sa.assign((n + 127) / 128, 0);
    aq::actQuantRow(v, n, q.data(), sa.data());
  };
  std::vector<std::vector<double>> gs, us;
  std::vector<double> all;
  for (int64_t s = 0; s < S; ++s) {
    std::vector<uint8_t> q, sa;
    quant(x.as<float>() + s * D, D, q, sa);
    for (int64_t j = 0; j < K; ++j) {
      int32_t e = idList[s * K + j];
      std::vector<double> g(I), u(I);
      for (int64_t i = 0; i < I; ++i) {
        g[i] = gemm(q, sa, w1.experts[e].deq, i);
        u[i] = gemm(q, sa, w3.experts[e].deq, i);
      }
      all.insert(all.end(), g.begin(), g.end());
      all.insert(all.end(), u.begin(), u.end());
      gs.push_back(std::move(g));
      us.push_back(std::move(u));
    }
  }
  const double limit = swigluLimitFor(all);
  std::vector<double> want(S * D, 0.0);
  for (int64_t s = 0; s < S; ++s)
    for (int64_t j = 0; j < K; ++j) {
      const std::vector<double> &g = gs[s * K + j], &u = us[s * K + j];
      std::vector<float> h(I);
      for (int64_t i = 0; i < I; ++i) {
        double gi = std::min(g[i], limit), ui = std::max(-limit, std::min(u[i], limit));
        h[i] = float(gi / (1.0 + std::exp(-gi)) * ui);
      }
      std::vector<uint8_t> q, sa;
      quant(h.data(), I, q, sa);
      for (int64_t o = 0; o < D; ++o)
        want[s * D + o] += double(wts.as<float>()[s * K + j]) *
                           gemm(q, sa, w2.experts[idList[s * K + j]].deq, o);
    }

  std::string text = subst(R"(
    func.func @t(%x: tensor<?x256xf32>, %wts: tensor<?x2xf32>, %ids: tensor<?x2xi32>) {
      %w1 = dsv4.param "ffn.experts.*.w1.weight" : $W1$
      %w3 = dsv4.param "ffn.experts.*.w3.weight" : $W3$
      %w2 = dsv4.param "ffn.experts.*.w2.weight" : $W2$
      %y = dsv4.moe.experts %x, %wts, %ids, %w1, %w3, %w2 {swiglu_limit = $L$ : f64, dsv4.numerics = "fp8"}
          : (tensor<?x256xf32>, tensor<?x2xf32>, tensor<?x2xi32>, $W1$, $W3$, $W2$) -> tensor<?x256xf32>
      return
    })", {{"W1", w1.type}, {"W3", w3.type}, {"W2", w2.type}, {"L", f64(limit)}});
  OpKernel k;
  COMPILE(k, text, kNoContext);
  GuardedBuffer y = floatBuffer(S * D, kNaN);
  ASSERT_TRUE(k.run(S, 0, {{x.data()}, {wts.data()}, {ids.data()}, w1.arg(), w3.arg(), w2.arg()},
                    {y.data()}));
  expectClose(std::string("moe.experts fp8 ") + (fp4 ? "fp4" : "fp8") + " S=" +
                  std::to_string(S),
              y.as<float>(), want);
  expectGuards({&x, &wts, &ids, &y});
}

/// fast-decode's dense FP8 layers (COMPRESSA_FP8_DECODE_LINEAR=1 marks
/// them dsv4.numerics = "fp8"; Emitter::fp8DecodeLinear): act_quant of each
/// token's input, the spec's block-scaled FP8 GEMM (exact products within a
/// 128-column block, times both scales), in float64 here. q_proj: wq_a [128,
/// 256] (K in two parts), the norm of its output, act_quant of the stored
/// f32 norm, wq_b [192, 128]; out_proj: wo_a's two groups of 64 rows, each
/// on its 128 values of o, then wo_b [48, 128]. Calls of 1, 3 and 8 tokens
/// (the most this path takes).
namespace {
namespace aq = ::compressa::reference;
/// y_row of the FP8 GEMM semantics on the act_quant codes q / scales sa.
double fp8Gemm(const std::vector<uint8_t> &q, const std::vector<uint8_t> &sa,
               const ref::Tensor &w, int64_t row, int64_t first = 0) {
  int64_t k = w.shape[1];
  double y = 0;
  for (int64_t b = 0; b * 128 < k; ++b) {
    double sum = 0;
    for (int64_t c = b * 128; c < std::min<int64_t>(k, b * 128 + 128); ++c)
      sum += aq::e4m3Value(q[first + c]) * w.data[row * k + c];
    y += sum * aq::ue8m0Value(sa[(first + b * 128) / 128]);
  }
  return y;
}
void actQuant(const float *v, int64_t n, std::vector<uint8_t> &q, std::vector<uint8_t> &sa) {
  q.assign(n, 0);
  sa.assign((n + 127) / 128, 0);
  aq::actQuantRow(v, n, q.data(), sa.data());
}
} // namespace

TEST(CpuKernels, AttnQProjFp8Decode) {
  Rng rng(31);
  const int64_t D = 256, Q = 128, H = 4, d = 48;
  Weight wqa = fp8Weight(Q, D, rng, true);
  Weight qn = bf16Weight({Q}, rng, 0.5, 1.5);
  Weight wqb = fp8Weight(H * d, Q, rng, true);
  std::string text = subst(R"(
    func.func @t(%x: tensor<?x256xf32>) {
      %wqa = dsv4.param "attn.wq_a.weight" : $WQA$
      %qn = dsv4.param "attn.q_norm.weight" : $QN$
      %wqb = dsv4.param "attn.wq_b.weight" : $WQB$
      %q, %qr = dsv4.attn.q_proj %x, %wqa, %qn, %wqb {eps = 1.0e-06 : f64, dsv4.numerics = "fp8"}
          : (tensor<?x256xf32>, $WQA$, $QN$, $WQB$) -> (tensor<?x4x48xf32>, tensor<?x128xf32>)
      return
    })", {{"WQA", wqa.type}, {"QN", qn.type}, {"WQB", wqb.type}});
  OpKernel k;
  COMPILE(k, text, kNoContext);
  for (int64_t S : {1, 3, 8}) {
    GuardedBuffer x = randomFloats(S * D, rng, -1, 1);
    GuardedBuffer q = floatBuffer(S * H * d, kNaN), qr = floatBuffer(S * Q, kNaN);
    ASSERT_TRUE(k.run(S, 5, {{x.data()}, wqa.arg(), qn.arg(), wqb.arg()}, {q.data(), qr.data()}));
    std::vector<double> wq, wqr;
    for (int64_t s = 0; s < S; ++s) {
      std::vector<uint8_t> xq, xs;
      actQuant(x.as<float>() + s * D, D, xq, xs);
      std::vector<double> qa(Q);
      for (int64_t r = 0; r < Q; ++r)
        qa[r] = fp8Gemm(xq, xs, wqa.deq, r);
      std::vector<double> r = ref::rmsNorm(qa.data(), Q, qn.deq.data.data(), 1e-6);
      // wq_b quantises the norm as the kernel stored it (f32).
      std::vector<float> rf(r.begin(), r.end());
      std::vector<uint8_t> rq, rs;
      actQuant(rf.data(), Q, rq, rs);
      std::vector<double> qq(H * d);
      for (int64_t o = 0; o < H * d; ++o)
        qq[o] = fp8Gemm(rq, rs, wqb.deq, o);
      for (int64_t h = 0; h < H; ++h) {
        std::vector<double> qh = ref::rmsNorm(qq.data() + h * d, d, nullptr, 1e-6);
        wq.insert(wq.end(), qh.begin(), qh.end());
      }
      wqr.insert(wqr.end(), r.begin(), r.end());
    }
    expectClose("attn.q_proj fp8 q S=" + std::to_string(S), q.as<float>(), wq);
    expectClose("attn.q_proj fp8 qr S=" + std::to_string(S), qr.as<float>(), wqr);
    expectGuards({&x, &q, &qr});
  }
}

TEST(CpuKernels, AttnOutProjFp8Decode) {
  Rng rng(32);
  const int64_t H = 4, d = 64, G = 2, R = 64, Dm = 48;
  Weight woa = fp8Weight(G * R, (H / G) * d, rng, true);
  Weight wob = fp8Weight(Dm, G * R, rng, true);
  std::string text = subst(R"(
    func.func @t(%o: tensor<?x4x64xf32>) {
      %woa = dsv4.param "attn.wo_a.weight" : $WOA$
      %wob = dsv4.param "attn.wo_b.weight" : $WOB$
      %out = dsv4.attn.out_proj %o, %woa, %wob {groups = 2 : i64, dsv4.numerics = "fp8"}
          : (tensor<?x4x64xf32>, $WOA$, $WOB$) -> tensor<?x48xf32>
      return
    })", {{"WOA", woa.type}, {"WOB", wob.type}});
  OpKernel k;
  COMPILE(k, text, kNoContext);
  for (int64_t S : {1, 3, 8}) {
    GuardedBuffer o = randomFloats(S * H * d, rng, -1, 1), out = floatBuffer(S * Dm, kNaN);
    ASSERT_TRUE(k.run(S, 0, {{o.data()}, woa.arg(), wob.arg()}, {out.data()}));
    std::vector<double> want;
    for (int64_t s = 0; s < S; ++s) {
      // act_quant of the whole row of o; group g's rows read its blocks.
      std::vector<uint8_t> oq, os;
      actQuant(o.as<float>() + s * H * d, H * d, oq, os);
      std::vector<float> z(G * R);
      for (int64_t r = 0; r < G * R; ++r)
        z[r] = float(fp8Gemm(oq, os, woa.deq, r, (r / R) * (H / G) * d));
      std::vector<uint8_t> zq, zs;
      actQuant(z.data(), G * R, zq, zs);
      for (int64_t i = 0; i < Dm; ++i)
        want.push_back(fp8Gemm(zq, zs, wob.deq, i));
    }
    expectClose("attn.out_proj fp8 S=" + std::to_string(S), out.as<float>(), want);
    expectGuards({&o, &out});
  }
}

TEST(CpuKernels, MoeExpertsFp8DecodeFp4) {
  checkExpertsFp8(true, 23, 1);
  checkExpertsFp8(true, 24, 8);
}
TEST(CpuKernels, MoeExpertsFp8DecodeFp8) { checkExpertsFp8(false, 25, 3); }

TEST(CpuKernels, MoeExpertsFp4Stack) { checkExperts(true, 20); }
TEST(CpuKernels, MoeExpertsBf16Stack) { checkExperts(false, 21); }
TEST(CpuKernels, MoeExpertsFp4ExactMmaTwin) { checkExperts(true, 20, true); }

TEST(CpuKernels, MoeSharedExpertFp8) {
  Rng rng(22);
  // I 130, D 200: partial FP8 blocks in both dims of w1/w3 [130, 200] and w2 [200, 130].
  const int64_t S = 3, D = 200, I = 130;
  Weight w1 = fp8Weight(I, D, rng, false), w3 = fp8Weight(I, D, rng, false);
  Weight w2 = fp8Weight(D, I, rng, false);
  GuardedBuffer x = randomFloats(S * D, rng, -0.1, 0.1);
  ref::ExpertWeights ew{w1.deq, w2.deq, w3.deq};
  std::vector<double> g, u;
  for (int64_t s = 0; s < S; ++s) {
    std::vector<double> xs = toDoubles(x.as<float>() + s * D, D);
    std::vector<double> gs = ref::linear(xs.data(), w1.deq), us = ref::linear(xs.data(), w3.deq);
    g.insert(g.end(), gs.begin(), gs.end());
    u.insert(u.end(), us.begin(), us.end());
  }
  std::vector<double> all = g;
  all.insert(all.end(), u.begin(), u.end());
  const double limit = swigluLimitFor(all);
  expectClampFires(g, u, limit);
  std::string text = subst(R"(
    func.func @t(%x: tensor<?x200xf32>) {
      %w1 = dsv4.param "ffn.shared_experts.w1.weight" : $W1$
      %w3 = dsv4.param "ffn.shared_experts.w3.weight" : $W3$
      %w2 = dsv4.param "ffn.shared_experts.w2.weight" : $W2$
      %y = dsv4.moe.shared_expert %x, %w1, %w3, %w2 {swiglu_limit = $L$ : f64}
          : (tensor<?x200xf32>, $W1$, $W3$, $W2$) -> tensor<?x200xf32>
      return
    })", {{"W1", w1.type}, {"W3", w3.type}, {"W2", w2.type}, {"L", f64(limit)}});
  OpKernel k;
  COMPILE(k, text, kNoContext);
  GuardedBuffer y = floatBuffer(S * D, kNaN);
  ASSERT_TRUE(k.run(S, 0, {{x.data()}, w1.arg(), w3.arg(), w2.arg()}, {y.data()}));
  std::vector<double> want;
  for (int64_t s = 0; s < S; ++s) {
    std::vector<double> r = ref::swigluExpert(toDoubles(x.as<float>() + s * D, D).data(), ew, limit);
    want.insert(want.end(), r.begin(), r.end());
  }
  expectClose("moe.shared_expert", y.as<float>(), want);
  expectGuards({&x, &y});
}

//===----------------------------------------------------------------------===//
// Head and elementwise
//===----------------------------------------------------------------------===//

TEST(CpuKernels, LmHead) {
  Rng rng(23);
  const int64_t S = 3, D = 200, V = 300;
  Weight head = bf16Weight({V, D}, rng, -0.5, 0.5);
  std::string text = subst(R"(
    func.func @t(%y: tensor<?x200xf32>) {
      %h = dsv4.param "head.weight" : $H$
      %logits = dsv4.lm_head %y, %h : (tensor<?x200xf32>, $H$) -> tensor<?x300xf32>
      return
    })", {{"H", head.type}});
  OpKernel k;
  COMPILE(k, text, kNoContext);
  GuardedBuffer y = randomFloats(S * D, rng, -1, 1), logits = floatBuffer(S * V, kNaN);
  ASSERT_TRUE(k.run(S, 0, {{y.data()}, head.arg()}, {logits.data()}));
  std::vector<double> want;
  for (int64_t s = 0; s < S; ++s) {
    std::vector<double> r = ref::lmHead(toDoubles(y.as<float>() + s * D, D).data(), head.deq);
    want.insert(want.end(), r.begin(), r.end());
  }
  expectClose("lm_head", logits.as<float>(), want);
  expectGuards({&y, &logits});
}

TEST(CpuKernels, ArithAddf) {
  Rng rng(24);
  std::string text = R"(
    func.func @t(%a: tensor<?x3x20xf32>, %b: tensor<?x3x20xf32>) {
      %c = arith.addf %a, %b : tensor<?x3x20xf32>
      return
    })";
  OpKernel k;
  COMPILE(k, text, kNoContext);
  const int64_t S = 5, n = S * 60;
  GuardedBuffer a = randomFloats(n, rng, -10, 10), b = randomFloats(n, rng, -10, 10);
  GuardedBuffer c = floatBuffer(n, kNaN);
  ASSERT_TRUE(k.run(S, 0, {{a.data()}, {b.data()}}, {c.data()}));
  std::vector<double> want(n);
  for (int64_t i = 0; i < n; ++i)
    want[i] = double(a.as<float>()[i]) + double(b.as<float>()[i]);
  expectClose("arith.addf", c.as<float>(), want);
  expectGuards({&a, &b, &c});
}

} // namespace

//===----------------------------------------------------------------------===//
// Work sharing
//===----------------------------------------------------------------------===//

namespace {

// The store discipline CUDA depends on: a store outside parallelLoop/single
// is recorded (the serializer then refuses the kernel); stores inside, at
// any nesting, are not. On CUDA the regions fence with block barriers.
TEST(KernelBuilderWorkSharing, StoresOutsideARegionAreRecorded) {
  using namespace mlir;
  using mlir::compressa::cpu::KernelBuilder;
  using mlir::compressa::TargetInfo;
  MLIRContext ctx;
  ctx.loadDialect<arith::ArithDialect, scf::SCFDialect, LLVM::LLVMDialect,
                  func::FuncDialect, gpu::GPUDialect, math::MathDialect>();
  OpBuilder b(&ctx);
  Location loc = b.getUnknownLoc();
  mlir::compressa::cpu::CpuTarget cpuTarget;
  mlir::compressa::cuda::CudaTarget cudaTarget("sm_90a");
  for (const TargetInfo *target : {(const TargetInfo *)&cpuTarget,
                                   (const TargetInfo *)&cudaTarget}) {
    OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
    b.setInsertionPointToEnd(module->getBody());
    Type ptr = LLVM::LLVMPointerType::get(&ctx);
    auto fn = func::FuncOp::create(b, loc, "k", b.getFunctionType({ptr}, {}));
    b.setInsertionPointToStart(fn.addEntryBlock());
    KernelBuilder kb(b, loc, *module, *target);
    Value p = fn.getArgument(0);
    EXPECT_EQ(kb.threads(), target->isCuda() ? 256 : 1);
    kb.parallelLoop(kb.c(0), kb.c(8), [&](Value i) {
      kb.store(kb.cf(1.0), p, i);
      kb.single([&] { kb.store(kb.cf(2.0), p, i); }); // nested: plain code
    });
    kb.single([&] {
      kb.loop(kb.c(0), kb.c(4), [&](Value i) { kb.store(kb.cf(3.0), p, i); });
    });
    EXPECT_FALSE(kb.storedOutsideRegion());
    int barriers = 0;
    fn.walk([&](gpu::BarrierOp) { ++barriers; });
    // On CUDA a barrier between the two top-level regions and one after the
    // last (endLaunch, not called here, would drop it): none before the
    // first, which nothing touching memory precedes (the launch's start
    // separates it, 90baa3a); none on the CPU.
    EXPECT_EQ(barriers, target->isCuda() ? 2 : 0);
    kb.loop(kb.c(0), kb.c(4), [&](Value i) { kb.store(kb.cf(4.0), p, i); });
    EXPECT_TRUE(kb.storedOutsideRegion());
  }
}

} // namespace
