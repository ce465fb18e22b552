//===- Reference.cpp - Plain C++ reference of the DeepSeek-V4 forward -----===//
// SPDX-License-Identifier: Apache-2.0
//
// Weight loading (exact dequantization), the ops of spec §3-§4 and the
// token-at-a-time Session of spec §5.2. See Reference.h.
//
//===----------------------------------------------------------------------===//
#include "test/reference/Reference.h"

#include "runtime/weights/dtype.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <numeric>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace compressa::reference {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr double kPi = 3.14159265358979323846;

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

double dot(const double *a, const double *b, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i)
    s += a[i] * b[i];
  return s;
}

/// Four dots of `x` with the rows r0..r3, each summed exactly as dot() sums
/// it (its own accumulator, index order): the four independent chains only
/// hide the adds' latency, the results are dot()'s bit for bit.
void dot4(const double *x, const double *r0, const double *r1,
          const double *r2, const double *r3, int64_t n, double *out) {
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    s0 += x[i] * r0[i];
    s1 += x[i] * r1[i];
    s2 += x[i] * r2[i];
    s3 += x[i] * r3[i];
  }
  out[0] = s0;
  out[1] = s1;
  out[2] = s2;
  out[3] = s3;
}

/// Below this many multiply-adds a loop runs on the calling thread: forking
/// costs more than it saves.
constexpr int64_t kParallelWork = int64_t(1) << 16;

/// The thread count of the parallel loops (setThreads; 0 = OpenMP's default,
/// the hardware threads).
int gThreads = 0;

int loopThreads() {
#ifdef _OPENMP
  return gThreads > 0 ? gThreads : omp_get_max_threads();
#else
  return 1;
#endif
}

/// The name of the block-scale tensor of `name` ("x.weight" -> "x.scale").
StatusOr<std::string> scaleName(const std::string &name) {
  static const std::string kSuffix = ".weight";
  if (name.size() <= kSuffix.size() ||
      name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0)
    return COMPRESSA_ERROR(InvalidArgument,
                           "%s: quantized tensor without a '.weight' suffix",
                           name.c_str());
  return name.substr(0, name.size() - kSuffix.size()) + ".scale";
}

/// The UE8M0 scale tensor of `name`, checked to be [rows, cols].
StatusOr<const TensorView *> lookupScale(const WeightStore &store,
                                         const std::string &name, int64_t rows,
                                         int64_t cols) {
  COMPRESSA_ASSIGN_OR_RETURN(std::string sname, scaleName(name));
  COMPRESSA_ASSIGN_OR_RETURN(const TensorView *scale, store.lookup(sname));
  if (scale->dtype != DType::F8E8M0 || scale->shape.size() != 2 ||
      scale->shape[0] != rows || scale->shape[1] != cols)
    return COMPRESSA_ERROR(
        DataLoss, "%s: expected F8_E8M0 [%lld, %lld], got %s %s", sname.c_str(),
        static_cast<long long>(rows), static_cast<long long>(cols),
        dtypeName(scale->dtype), formatShape(scale->shape).c_str());
  return scale;
}

/// Checks that `t` has shape `shape`.
Status expectShape(const Tensor &t, const std::string &name,
                   const std::vector<int64_t> &shape) {
  if (t.shape != shape)
    return COMPRESSA_ERROR(DataLoss, "%s: expected shape %s, got %s",
                           name.c_str(), formatShape(shape).c_str(),
                           formatShape(t.shape).c_str());
  return okStatus();
}

/// Loads `name` and checks its shape.
Status loadInto(const WeightStore &store, const std::string &name,
                const std::vector<int64_t> &shape, Tensor &out) {
  COMPRESSA_ASSIGN_OR_RETURN(out, loadTensor(store, name));
  return expectShape(out, name, shape);
}

Status loadCompressor(const WeightStore &store, const std::string &prefix,
                      int64_t hidden, int64_t ratio, int64_t headDim,
                      bool overlap, CompressorWeights &w) {
  int64_t width = overlap ? 2 * headDim : headDim;
  COMPRESSA_RETURN_IF_ERROR(
      loadInto(store, prefix + "wkv.weight", {width, hidden}, w.wkv));
  COMPRESSA_RETURN_IF_ERROR(
      loadInto(store, prefix + "wgate.weight", {width, hidden}, w.wgate));
  COMPRESSA_RETURN_IF_ERROR(
      loadInto(store, prefix + "ape", {ratio, width}, w.ape));
  return loadInto(store, prefix + "norm.weight", {headDim}, w.norm);
}

Status loadExpert(const WeightStore &store, const std::string &prefix,
                  int64_t hidden, int64_t inter, ExpertWeights &e) {
  COMPRESSA_RETURN_IF_ERROR(
      loadInto(store, prefix + "w1.weight", {inter, hidden}, e.w1));
  COMPRESSA_RETURN_IF_ERROR(
      loadInto(store, prefix + "w3.weight", {inter, hidden}, e.w3));
  return loadInto(store, prefix + "w2.weight", {hidden, inter}, e.w2);
}

Status loadLayer(const WeightStore &store, const ModelConfig &c, int64_t i,
                 LayerWeights &l) {
  const std::string p = "layers." + std::to_string(i) + ".";
  const int64_t D = c.hiddenSize, N = c.hcMult, H = c.numHeads, d = c.headDim,
                Q = c.qLoraRank, G = c.oGroups, Ro = c.oLoraRank,
                E = c.numRoutedExperts;
  const int64_t mix = (2 + N) * N;
  l.spec = c.layers[i];
  COMPRESSA_RETURN_IF_ERROR(
      loadInto(store, p + "attn_norm.weight", {D}, l.attnNorm));
  COMPRESSA_RETURN_IF_ERROR(
      loadInto(store, p + "ffn_norm.weight", {D}, l.ffnNorm));
  COMPRESSA_RETURN_IF_ERROR(
      loadInto(store, p + "hc_attn_fn", {mix, N * D}, l.hcAttnFn));
  COMPRESSA_RETURN_IF_ERROR(
      loadInto(store, p + "hc_attn_base", {mix}, l.hcAttnBase));
  COMPRESSA_RETURN_IF_ERROR(
      loadInto(store, p + "hc_attn_scale", {3}, l.hcAttnScale));
  COMPRESSA_RETURN_IF_ERROR(
      loadInto(store, p + "hc_ffn_fn", {mix, N * D}, l.hcFfnFn));
  COMPRESSA_RETURN_IF_ERROR(
      loadInto(store, p + "hc_ffn_base", {mix}, l.hcFfnBase));
  COMPRESSA_RETURN_IF_ERROR(
      loadInto(store, p + "hc_ffn_scale", {3}, l.hcFfnScale));

  const std::string a = p + "attn.";
  COMPRESSA_RETURN_IF_ERROR(loadInto(store, a + "attn_sink", {H}, l.attnSink));
  COMPRESSA_RETURN_IF_ERROR(loadInto(store, a + "wq_a.weight", {Q, D}, l.wqA));
  COMPRESSA_RETURN_IF_ERROR(loadInto(store, a + "q_norm.weight", {Q}, l.qNorm));
  COMPRESSA_RETURN_IF_ERROR(
      loadInto(store, a + "wq_b.weight", {H * d, Q}, l.wqB));
  COMPRESSA_RETURN_IF_ERROR(loadInto(store, a + "wkv.weight", {d, D}, l.wkv));
  // transformers' save_pretrained writes the attention kv_norm as attn.norm.
  std::string kvNormName = a + "kv_norm.weight";
  if (!store.find(kvNormName) && store.find(a + "norm.weight"))
    kvNormName = a + "norm.weight";
  COMPRESSA_RETURN_IF_ERROR(loadInto(store, kvNormName, {d}, l.kvNorm));
  COMPRESSA_RETURN_IF_ERROR(
      loadInto(store, a + "wo_a.weight", {G * Ro, H * d / G}, l.woA));
  COMPRESSA_RETURN_IF_ERROR(
      loadInto(store, a + "wo_b.weight", {D, G * Ro}, l.woB));

  const int64_t m = l.spec.compressRatio;
  if (l.spec.attention == AttentionKind::HCA)
    COMPRESSA_RETURN_IF_ERROR(loadCompressor(store, a + "compressor.", D, m, d,
                                             /*overlap=*/false, l.compressor));
  if (l.spec.attention == AttentionKind::CSA) {
    const int64_t HI = c.indexNumHeads, dI = c.indexHeadDim;
    COMPRESSA_RETURN_IF_ERROR(loadCompressor(store, a + "compressor.", D, m, d,
                                             /*overlap=*/true, l.compressor));
    COMPRESSA_RETURN_IF_ERROR(loadCompressor(store, a + "indexer.compressor.",
                                             D, m, dI, /*overlap=*/true,
                                             l.indexerCompressor));
    COMPRESSA_RETURN_IF_ERROR(
        loadInto(store, a + "indexer.wq_b.weight", {HI * dI, Q}, l.indexerWqB));
    COMPRESSA_RETURN_IF_ERROR(loadInto(store, a + "indexer.weights_proj.weight",
                                       {HI, D}, l.indexerWeightsProj));
  }

  const std::string f = p + "ffn.";
  COMPRESSA_RETURN_IF_ERROR(
      loadInto(store, f + "gate.weight", {E, D}, l.gateWeight));
  if (l.spec.moe == MoeKind::Hash) {
    COMPRESSA_ASSIGN_OR_RETURN(const TensorView *view,
                               store.lookup(f + "gate.tid2eid"));
    const int64_t K = c.numExpertsPerTok;
    if (view->shape != std::vector<int64_t>{c.vocabSize, K} ||
        (view->dtype != DType::I64 && view->dtype != DType::I32))
      return COMPRESSA_ERROR(
          DataLoss, "%sgate.tid2eid: expected I64 [%lld, %lld]", f.c_str(),
          static_cast<long long>(c.vocabSize), static_cast<long long>(K));
    l.tid2eid.resize(view->numElements());
    for (int64_t j = 0; j < view->numElements(); ++j) {
      int64_t e = view->dtype == DType::I64
                      ? readUnaligned<int64_t>(view->data + 8 * j)
                      : readUnaligned<int32_t>(view->data + 4 * j);
      if (e < 0 || e >= E)
        return COMPRESSA_ERROR(DataLoss,
                               "%sgate.tid2eid: expert %lld out of range",
                               f.c_str(), static_cast<long long>(e));
      l.tid2eid[j] = e;
    }
  } else if (store.find(f + "gate.bias")) {
    COMPRESSA_RETURN_IF_ERROR(
        loadInto(store, f + "gate.bias", {E}, l.gateBias));
  }
  l.experts.resize(E);
  for (int64_t e = 0; e < E; ++e)
    COMPRESSA_RETURN_IF_ERROR(
        loadExpert(store, f + "experts." + std::to_string(e) + ".", D,
                   c.moeIntermediateSize, l.experts[e]));
  // The shared expert's width is n_shared_experts * moe_intermediate_size.
  return loadExpert(store, f + "shared_experts.", D,
                    c.numSharedExperts * c.moeIntermediateSize, l.shared);
}

} // namespace

//===----------------------------------------------------------------------===//
// Weights
//===----------------------------------------------------------------------===//

StatusOr<Tensor> loadTensor(const WeightStore &store, const std::string &name) {
  COMPRESSA_ASSIGN_OR_RETURN(const TensorView *view, store.lookup(name));
  Tensor t;
  t.shape = view->shape;
  const int64_t n = view->numElements();
  const uint8_t *bytes = view->data;
  switch (view->dtype) {
  case DType::F64:
    t.data.resize(n);
    for (int64_t i = 0; i < n; ++i)
      t.data[i] = readUnaligned<double>(bytes + 8 * i);
    return t;
  case DType::F32:
    t.data.resize(n);
    for (int64_t i = 0; i < n; ++i)
      t.data[i] = readUnaligned<float>(bytes + 4 * i);
    return t;
  case DType::BF16:
    t.data.resize(n);
#pragma omp parallel for schedule(static) num_threads(loopThreads())         \
    if (n >= kParallelWork)
    for (int64_t i = 0; i < n; ++i)
      t.data[i] = bf16ToFloat(readUnaligned<uint16_t>(bytes + 2 * i));
    return t;
  case DType::F8E4M3: {
    // W[o, i] = e4m3(q[o, i]) * 2^(S[o/128, i/128] - 127).
    if (view->shape.size() != 2)
      return COMPRESSA_ERROR(DataLoss, "%s: FP8 weight must be 2-D, got %s",
                             name.c_str(), formatShape(view->shape).c_str());
    const int64_t rows = view->shape[0], cols = view->shape[1];
    const int64_t scaleCols = ceilDiv(cols, 128);
    COMPRESSA_ASSIGN_OR_RETURN(
        const TensorView *scale,
        lookupScale(store, name, ceilDiv(rows, 128), scaleCols));
    t.data.resize(n);
#pragma omp parallel for schedule(static) num_threads(loopThreads())         \
    if (n >= kParallelWork)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t col = 0; col < cols; ++col) {
        double s =
            f8e8m0ToFloat(scale->data[(r / 128) * scaleCols + col / 128]);
        t.data[r * cols + col] = f8e4m3ToFloat(bytes[r * cols + col]) * s;
      }
    return t;
  }
  case DType::I8: {
    // FP4 e2m1 pairs: byte [o, j] holds (o, 2j) low and (o, 2j+1) high;
    // W[o, i] = fp4(code) * 2^(S[o, i/32] - 127).
    if (view->shape.size() != 2)
      return COMPRESSA_ERROR(DataLoss, "%s: FP4 weight must be 2-D, got %s",
                             name.c_str(), formatShape(view->shape).c_str());
    const int64_t rows = view->shape[0], cols = 2 * view->shape[1];
    const int64_t scaleCols = ceilDiv(cols, 32);
    COMPRESSA_ASSIGN_OR_RETURN(const TensorView *scale,
                               lookupScale(store, name, rows, scaleCols));
    t.shape = {rows, cols};
    t.data.resize(rows * cols);
#pragma omp parallel for schedule(static) num_threads(loopThreads())         \
    if (rows * cols >= kParallelWork)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < cols / 2; ++j) {
        float even, odd;
        unpackFp4x2(bytes[r * (cols / 2) + j], even, odd);
        const uint8_t *srow = scale->data + r * scaleCols;
        t.data[r * cols + 2 * j] = even * f8e8m0ToFloat(srow[(2 * j) / 32]);
        t.data[r * cols + 2 * j + 1] =
            odd * f8e8m0ToFloat(srow[(2 * j + 1) / 32]);
      }
    return t;
  }
  default:
    return COMPRESSA_ERROR(Unimplemented, "%s: dtype %s is not a weight dtype",
                           name.c_str(), dtypeName(view->dtype));
  }
}

StatusOr<Model> loadModel(const ModelConfig &config,
                          const std::string &directory) {
  COMPRESSA_ASSIGN_OR_RETURN(std::unique_ptr<WeightStore> store,
                             WeightStore::open(directory));
  Model m;
  m.config = config;
  const int64_t D = config.hiddenSize, V = config.vocabSize, N = config.hcMult;
  COMPRESSA_RETURN_IF_ERROR(loadInto(*store, "embed.weight", {V, D}, m.embed));
  COMPRESSA_RETURN_IF_ERROR(loadInto(*store, "head.weight", {V, D}, m.head));
  COMPRESSA_RETURN_IF_ERROR(loadInto(*store, "norm.weight", {D}, m.norm));
  COMPRESSA_RETURN_IF_ERROR(
      loadInto(*store, "hc_head_fn", {N, N * D}, m.hcHeadFn));
  COMPRESSA_RETURN_IF_ERROR(
      loadInto(*store, "hc_head_base", {N}, m.hcHeadBase));
  COMPRESSA_RETURN_IF_ERROR(
      loadInto(*store, "hc_head_scale", {1}, m.hcHeadScale));
  m.layers.resize(config.numLayers);
  for (int64_t i = 0; i < config.numLayers; ++i)
    COMPRESSA_RETURN_IF_ERROR(loadLayer(*store, config, i, m.layers[i]), "%s",
                              directory.c_str());
  return m;
}

//===----------------------------------------------------------------------===//
// Ops
//===----------------------------------------------------------------------===//

std::vector<double> rmsNorm(const double *x, int64_t n, const double *weight,
                            double eps) {
  double ms = 0.0;
  for (int64_t i = 0; i < n; ++i)
    ms += x[i] * x[i];
  const double inv = 1.0 / std::sqrt(ms / static_cast<double>(n) + eps);
  std::vector<double> y(n);
  for (int64_t i = 0; i < n; ++i)
    y[i] = x[i] * inv * (weight ? weight[i] : 1.0);
  return y;
}

void setThreads(int threads) { gThreads = threads < 0 ? 0 : threads; }

int threads() { return loopThreads(); }

std::vector<double> linear(const double *x, const Tensor &w) {
  const int64_t out = w.rows(), in = w.cols();
  std::vector<double> y(out);
  // Rows in groups of four; every output is one dot in index order on one
  // thread, so the result does not depend on the thread count.
  const int64_t groups = out / 4;
#pragma omp parallel for schedule(static) num_threads(loopThreads())         \
    if (out * in >= kParallelWork)
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t o = 4 * g;
    dot4(x, w.row(o), w.row(o + 1), w.row(o + 2), w.row(o + 3), in, &y[o]);
  }
  for (int64_t o = 4 * groups; o < out; ++o)
    y[o] = dot(x, w.row(o), in);
  return y;
}

std::vector<std::vector<double>>
linearBatch(const std::vector<const double *> &xs, const Tensor &w) {
  const int64_t out = w.rows(), in = w.cols();
  const int64_t T = static_cast<int64_t>(xs.size());
  std::vector<std::vector<double>> ys(T, std::vector<double>(out));
  // Inputs in groups of kLanes, interleaved ([in][kLanes]) so that one weight
  // row meets kLanes inputs in vector registers; each y_t[o] is still summed
  // like dot(x_t, W[o]) (x_t[i]·W[o, i] in index order, its own sum).
  constexpr int64_t kLanes = 8;
  const int64_t groups = T / kLanes;
  std::vector<double> interleaved(groups * in * kLanes);
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t k = 0; k < kLanes; ++k)
      for (int64_t i = 0; i < in; ++i)
        interleaved[(g * in + i) * kLanes + k] = xs[g * kLanes + k][i];
#pragma omp parallel for schedule(static) num_threads(loopThreads())         \
    if (out * in * T >= kParallelWork)
  for (int64_t o = 0; o < out; ++o) {
    const double *row = w.row(o);
    for (int64_t g = 0; g < groups; ++g) {
      const double *xg = interleaved.data() + g * in * kLanes;
      double s[kLanes] = {};
      for (int64_t i = 0; i < in; ++i)
        for (int64_t k = 0; k < kLanes; ++k)
          s[k] += xg[i * kLanes + k] * row[i];
      for (int64_t k = 0; k < kLanes; ++k)
        ys[g * kLanes + k][o] = s[k];
    }
    for (int64_t t = groups * kLanes; t < T; ++t)
      ys[t][o] = dot(xs[t], row, in);
  }
  return ys;
}

std::vector<double> ropeInverseFrequencies(const RopeParams &params,
                                           int64_t ropeDim) {
  const int64_t half = ropeDim / 2;
  const double r = static_cast<double>(ropeDim);
  std::vector<double> freq(half);
  for (int64_t i = 0; i < half; ++i)
    freq[i] = std::pow(params.theta, -2.0 * static_cast<double>(i) / r);
  if (!params.yarn)
    return freq;
  auto correctionDim = [&](double beta) {
    return r *
           std::log(static_cast<double>(params.originalMaxPositions) /
                    (2.0 * kPi * beta)) /
           (2.0 * std::log(params.theta));
  };
  double low = std::max(std::floor(correctionDim(params.betaFast)), 0.0);
  double high = std::min(std::ceil(correctionDim(params.betaSlow)), r - 1.0);
  if (low == high)
    high += 0.001;
  for (int64_t i = 0; i < half; ++i) {
    double ramp =
        std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    freq[i] = freq[i] * (1.0 - ramp) + freq[i] / params.factor * ramp;
  }
  return freq;
}

void applyRope(double *x, int64_t n, int64_t ropeDim,
               const std::vector<double> &invFreq, int64_t pos, bool inverse) {
  double *rope = x + (n - ropeDim);
  for (int64_t k = 0; k < ropeDim / 2; ++k) {
    double phi = static_cast<double>(pos) * invFreq[k];
    double c = std::cos(phi), s = inverse ? -std::sin(phi) : std::sin(phi);
    double a = rope[2 * k], b = rope[2 * k + 1];
    rope[2 * k] = a * c - b * s;
    rope[2 * k + 1] = a * s + b * c;
  }
}

std::vector<double> sinkhorn(std::vector<double> c, int64_t n, int64_t iters,
                             double eps) {
  auto normalizeRows = [&] {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (int64_t k = 0; k < n; ++k)
        s += c[j * n + k];
      for (int64_t k = 0; k < n; ++k)
        c[j * n + k] /= s + eps;
    }
  };
  auto normalizeColumns = [&] {
    for (int64_t k = 0; k < n; ++k) {
      double s = 0.0;
      for (int64_t j = 0; j < n; ++j)
        s += c[j * n + k];
      for (int64_t j = 0; j < n; ++j)
        c[j * n + k] /= s + eps;
    }
  };
  // Row softmax + eps.
  for (int64_t j = 0; j < n; ++j) {
    double mx = kNegInf;
    for (int64_t k = 0; k < n; ++k)
      mx = std::max(mx, c[j * n + k]);
    double s = 0.0;
    for (int64_t k = 0; k < n; ++k)
      s += (c[j * n + k] = std::exp(c[j * n + k] - mx));
    for (int64_t k = 0; k < n; ++k)
      c[j * n + k] = c[j * n + k] / s + eps;
  }
  normalizeColumns();
  for (int64_t it = 0; it + 1 < iters; ++it) {
    normalizeRows();
    normalizeColumns();
  }
  return c;
}

HcPreResult hcPre(const double *streams, int64_t numStreams, int64_t dim,
                  const Tensor &fn, const Tensor &base, const Tensor &scale,
                  int64_t sinkhornIters, double hcEps, double normEps) {
  const int64_t N = numStreams;
  std::vector<double> flat = rmsNorm(streams, N * dim, nullptr, normEps);
  std::vector<double> mu = linear(flat.data(), fn);
  HcPreResult r;
  r.pre.resize(N);
  r.post.resize(N);
  std::vector<double> combLogits(N * N);
  for (int64_t j = 0; j < N; ++j) {
    r.pre[j] = sigmoid(scale.data[0] * mu[j] + base.data[j]) + hcEps;
    r.post[j] = 2.0 * sigmoid(scale.data[1] * mu[N + j] + base.data[N + j]);
  }
  for (int64_t jk = 0; jk < N * N; ++jk)
    combLogits[jk] = scale.data[2] * mu[2 * N + jk] + base.data[2 * N + jk];
  r.comb = sinkhorn(std::move(combLogits), N, sinkhornIters, hcEps);
  r.collapsed.assign(dim, 0.0);
  for (int64_t j = 0; j < N; ++j)
    for (int64_t i = 0; i < dim; ++i)
      r.collapsed[i] += r.pre[j] * streams[j * dim + i];
  return r;
}

std::vector<double> hcPost(const double *blockOutput, const double *streams,
                           const HcPreResult &mix, int64_t numStreams,
                           int64_t dim) {
  const int64_t N = numStreams;
  std::vector<double> out(N * dim);
  for (int64_t k = 0; k < N; ++k)
    for (int64_t i = 0; i < dim; ++i) {
      double v = mix.post[k] * blockOutput[i];
      for (int64_t j = 0; j < N; ++j)
        v += mix.comb[j * N + k] * streams[j * dim + i];
      out[k * dim + i] = v;
    }
  return out;
}

std::vector<double> hcHead(const double *streams, int64_t numStreams,
                           int64_t dim, const Tensor &fn, const Tensor &base,
                           const Tensor &scale, double hcEps, double normEps) {
  const int64_t N = numStreams;
  std::vector<double> flat = rmsNorm(streams, N * dim, nullptr, normEps);
  std::vector<double> mu = linear(flat.data(), fn);
  std::vector<double> y(dim, 0.0);
  for (int64_t j = 0; j < N; ++j) {
    double pre = sigmoid(scale.data[0] * mu[j] + base.data[j]) + hcEps;
    for (int64_t i = 0; i < dim; ++i)
      y[i] += pre * streams[j * dim + i];
  }
  return y;
}

std::vector<double> compressorPool(const double *kv, const double *score,
                                   int64_t numSlots, int64_t width) {
  std::vector<double> e(width, 0.0);
  for (int64_t c = 0; c < width; ++c) {
    double mx = kNegInf;
    for (int64_t s = 0; s < numSlots; ++s)
      mx = std::max(mx, score[s * width + c]);
    double denom = 0.0, num = 0.0;
    for (int64_t s = 0; s < numSlots; ++s) {
      double p = std::exp(score[s * width + c] - mx); // exp(-inf) = 0
      denom += p;
      num += p * kv[s * width + c];
    }
    e[c] = num / denom;
  }
  return e;
}

void CompressorState::reset(int64_t m, int64_t dc, bool withOverlap) {
  ratio = m;
  headDim = dc;
  overlap = withOverlap;
  kv.assign(numSlots() * slotWidth(), 0.0);
  score.assign(numSlots() * slotWidth(), kNegInf);
  entries.clear();
}

bool compressorStep(CompressorState &st, const double *x,
                    const CompressorWeights &w, int64_t pos,
                    const std::vector<double> &invFreq, int64_t ropeDim,
                    double eps) {
  std::vector<double> c = linear(x, w.wkv);
  std::vector<double> z = linear(x, w.wgate);
  return compressorUpdate(st, c.data(), z.data(), w, pos, invFreq, ropeDim,
                          eps);
}

bool compressorUpdate(CompressorState &st, const double *c, const double *z,
                      const CompressorWeights &w, int64_t pos,
                      const std::vector<double> &invFreq, int64_t ropeDim,
                      double eps) {
  const int64_t m = st.ratio, dc = st.headDim, width = st.slotWidth();
  const int64_t j = pos % m;
  const int64_t slot = st.overlap ? m + j : j;
  for (int64_t i = 0; i < width; ++i) {
    st.kv[slot * width + i] = c[i];
    st.score[slot * width + i] = z[i] + w.ape.row(j)[i];
  }
  if ((pos + 1) % m != 0)
    return false;

  std::vector<double> pooled;
  if (!st.overlap) {
    pooled = compressorPool(st.kv.data(), st.score.data(), m, dc);
  } else {
    // 2m slots of width dc: previous window's A half ([:dc]) in slots 0..m-1,
    // the current window's B half ([dc:]) in slots m..2m-1.
    std::vector<double> kv(2 * m * dc), score(2 * m * dc);
    for (int64_t s = 0; s < 2 * m; ++s) {
      const int64_t offset = s < m ? 0 : dc;
      for (int64_t i = 0; i < dc; ++i) {
        kv[s * dc + i] = st.kv[s * width + offset + i];
        score[s * dc + i] = st.score[s * width + offset + i];
      }
    }
    pooled = compressorPool(kv.data(), score.data(), 2 * m, dc);
    // The current window becomes the previous one.
    std::copy(st.kv.begin() + m * width, st.kv.end(), st.kv.begin());
    std::copy(st.score.begin() + m * width, st.score.end(), st.score.begin());
  }
  std::vector<double> entry =
      rmsNorm(pooled.data(), dc, w.norm.data.data(), eps);
  applyRope(entry.data(), dc, ropeDim, invFreq, pos + 1 - m);
  st.entries.push_back(std::move(entry));
  return true;
}

std::vector<double> indexerHeadWeights(const double *x,
                                       const Tensor &weightsProj,
                                       int64_t indexHeadDim) {
  std::vector<double> w = linear(x, weightsProj);
  scaleIndexerHeadWeights(w, indexHeadDim);
  return w;
}

void scaleIndexerHeadWeights(std::vector<double> &projected,
                             int64_t indexHeadDim) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(indexHeadDim)) /
                       std::sqrt(static_cast<double>(projected.size()));
  for (double &v : projected)
    v *= scale;
}

std::vector<double> indexerScores(const double *q,
                                  const std::vector<double> &headWeights,
                                  const std::vector<std::vector<double>> &keys,
                                  int64_t numCandidates, int64_t indexHeadDim) {
  std::vector<double> scores(numCandidates, 0.0);
  const int64_t work = numCandidates * static_cast<int64_t>(headWeights.size()) *
                       indexHeadDim;
#pragma omp parallel for schedule(static) num_threads(loopThreads())         \
    if (work >= kParallelWork)
  for (int64_t s = 0; s < numCandidates; ++s) {
    double total = 0.0;
    for (size_t h = 0; h < headWeights.size(); ++h)
      total +=
          headWeights[h] * std::max(0.0, dot(q + h * indexHeadDim,
                                             keys[s].data(), indexHeadDim));
    scores[s] = total;
  }
  return scores;
}

std::vector<int64_t> topKIndices(const std::vector<double> &scores, int64_t k) {
  std::vector<int64_t> idx(scores.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](int64_t a, int64_t b) { return scores[a] > scores[b]; });
  idx.resize(std::min<int64_t>(k, static_cast<int64_t>(idx.size())));
  return idx;
}

std::vector<double> sinkAttention(const double *q, int64_t numHeads,
                                  int64_t headDim,
                                  const std::vector<const double *> &keys,
                                  const double *sinks, double scale) {
  std::vector<double> o(numHeads * headDim, 0.0);
  const int64_t work = numHeads * static_cast<int64_t>(keys.size()) * headDim;
  // Heads are independent: one thread per head, each in the serial order.
#pragma omp parallel for schedule(static) num_threads(loopThreads())         \
    if (work >= kParallelWork)
  for (int64_t h = 0; h < numHeads; ++h) {
    std::vector<double> s(keys.size());
    const double *qh = q + h * headDim;
    double mx = sinks[h];
    for (size_t j = 0; j < keys.size(); ++j) {
      s[j] = scale * dot(qh, keys[j], headDim);
      mx = std::max(mx, s[j]);
    }
    double denom = std::exp(sinks[h] - mx);
    double *oh = o.data() + h * headDim;
    for (size_t j = 0; j < keys.size(); ++j) {
      double p = std::exp(s[j] - mx);
      denom += p;
      for (int64_t i = 0; i < headDim; ++i)
        oh[i] += p * keys[j][i];
    }
    for (int64_t i = 0; i < headDim; ++i)
      oh[i] /= denom;
  }
  return o;
}

std::vector<double> attentionOutput(const std::vector<double> &o,
                                    const Tensor &woA, const Tensor &woB,
                                    int64_t groups) {
  return attentionOutputBatch({o}, woA, woB, groups)[0];
}

std::vector<std::vector<double>>
attentionOutputBatch(const std::vector<std::vector<double>> &os,
                     const Tensor &woA, const Tensor &woB, int64_t groups) {
  const int64_t T = static_cast<int64_t>(os.size());
  const int64_t perGroup = static_cast<int64_t>(os[0].size()) / groups;
  const int64_t rank = woA.rows() / groups;
  assert(woA.cols() == perGroup && "wo_a width != H*d/G");
  std::vector<std::vector<double>> z(T, std::vector<double>(groups * rank));
#pragma omp parallel for schedule(static) num_threads(loopThreads())         \
    if (T * groups * rank * perGroup >= kParallelWork)
  for (int64_t gr = 0; gr < groups * rank; ++gr)
    for (int64_t t = 0; t < T; ++t)
      z[t][gr] =
          dot(os[t].data() + (gr / rank) * perGroup, woA.row(gr), perGroup);
  std::vector<const double *> zp(T);
  for (int64_t t = 0; t < T; ++t)
    zp[t] = z[t].data();
  return linearBatch(zp, woB);
}

std::vector<double> routerScores(const double *x, const Tensor &gateWeight) {
  std::vector<double> s = linear(x, gateWeight);
  for (double &v : s) {
    double softplus = std::max(v, 0.0) + std::log1p(std::exp(-std::fabs(v)));
    v = std::sqrt(softplus);
  }
  return s;
}

namespace {
Routing normalizedRouting(const std::vector<double> &scores,
                          std::vector<int64_t> experts, double routedScale) {
  Routing r;
  r.experts = std::move(experts);
  double sum = 0.0;
  for (int64_t e : r.experts)
    sum += scores[e];
  for (int64_t e : r.experts)
    r.weights.push_back(scores[e] / sum * routedScale);
  return r;
}
} // namespace

Routing scoreRouting(const std::vector<double> &scores, const Tensor &bias,
                     int64_t k, double routedScale) {
  std::vector<double> biased = scores;
  if (!bias.empty())
    for (size_t e = 0; e < biased.size(); ++e)
      biased[e] += bias.data[e];
  return normalizedRouting(scores, topKIndices(biased, k), routedScale);
}

Routing hashRouting(const std::vector<double> &scores,
                    const int64_t *tokenExperts, int64_t k,
                    double routedScale) {
  return normalizedRouting(scores,
                           std::vector<int64_t>(tokenExperts, tokenExperts + k),
                           routedScale);
}

std::vector<double> swigluExpert(const double *x, const ExpertWeights &e,
                                 double limit) {
  return swigluBatch({x}, e, limit)[0];
}

std::vector<std::vector<double>>
swigluBatch(const std::vector<const double *> &xs, const ExpertWeights &e,
            double limit) {
  std::vector<std::vector<double>> g = linearBatch(xs, e.w1);
  std::vector<std::vector<double>> u = linearBatch(xs, e.w3);
  std::vector<std::vector<double>> h(xs.size());
  std::vector<const double *> hp(xs.size());
  for (size_t t = 0; t < xs.size(); ++t) {
    h[t].resize(g[t].size());
    for (size_t i = 0; i < g[t].size(); ++i) {
      double gi = std::min(g[t][i], limit);
      double ui = std::clamp(u[t][i], -limit, limit);
      h[t][i] = gi / (1.0 + std::exp(-gi)) * ui;
    }
    hp[t] = h[t].data();
  }
  return linearBatch(hp, e.w2);
}

std::vector<double> moe(const double *x, int64_t tokenId,
                        const LayerWeights &layer, const ModelConfig &config) {
  return moeBatch({x}, {tokenId}, layer, config)[0];
}

std::vector<std::vector<double>>
moeBatch(const std::vector<const double *> &xs,
         const std::vector<int64_t> &tokenIds, const LayerWeights &layer,
         const ModelConfig &config) {
  const int64_t K = config.numExpertsPerTok;
  const size_t T = xs.size();
  std::vector<Routing> routing(T);
  for (size_t t = 0; t < T; ++t) {
    std::vector<double> scores = routerScores(xs[t], layer.gateWeight);
    routing[t] =
        layer.spec.moe == MoeKind::Hash
            ? hashRouting(scores, layer.tid2eid.data() + tokenIds[t] * K, K,
                          config.routedScalingFactor)
            : scoreRouting(scores, layer.gateBias, K,
                           config.routedScalingFactor);
  }
  std::vector<std::vector<double>> out =
      swigluBatch(xs, layer.shared, config.swigluLimit);
  // Each routed expert once over the tokens that chose it; y[t][k] is the
  // k-th chosen expert's output for token t.
  std::vector<std::vector<std::vector<double>>> y(T);
  for (size_t t = 0; t < T; ++t)
    y[t].resize(routing[t].experts.size());
  for (size_t e = 0; e < layer.experts.size(); ++e) {
    std::vector<std::pair<size_t, size_t>> users;
    std::vector<const double *> inputs;
    for (size_t t = 0; t < T; ++t)
      for (size_t k = 0; k < routing[t].experts.size(); ++k)
        if (routing[t].experts[k] == static_cast<int64_t>(e)) {
          users.push_back({t, k});
          inputs.push_back(xs[t]);
        }
    if (users.empty())
      continue;
    std::vector<std::vector<double>> ye =
        swigluBatch(inputs, layer.experts[e], config.swigluLimit);
    for (size_t u = 0; u < users.size(); ++u)
      y[users[u].first][users[u].second] = std::move(ye[u]);
  }
  // out = shared + Σ_k w_k·y_k, added in the routing order k = 0, 1, ...
  for (size_t t = 0; t < T; ++t)
    for (size_t k = 0; k < routing[t].experts.size(); ++k)
      for (size_t i = 0; i < out[t].size(); ++i)
        out[t][i] += routing[t].weights[k] * y[t][k][i];
  return out;
}

std::vector<double> lmHead(const double *y, const Tensor &head) {
  return linear(y, head);
}

//===----------------------------------------------------------------------===//
// Session
//===----------------------------------------------------------------------===//

Session::Session(const Model &m) : model(m) {
  const ModelConfig &c = model.config;
  mainFreq = ropeInverseFrequencies(c.mainRope, c.ropeHeadDim);
  compressFreq = ropeInverseFrequencies(c.compressRope, c.ropeHeadDim);
  reset();
}

void Session::reset() {
  const ModelConfig &c = model.config;
  states.assign(model.layers.size(), LayerState());
  for (size_t l = 0; l < model.layers.size(); ++l) {
    const LayerSpec &spec = model.layers[l].spec;
    LayerState &s = states[l];
    s.window.assign(c.slidingWindow, std::vector<double>());
    if (spec.attention == AttentionKind::HCA)
      s.compressor.reset(spec.compressRatio, c.headDim, /*overlap=*/false);
    if (spec.attention == AttentionKind::CSA) {
      s.compressor.reset(spec.compressRatio, c.headDim, /*overlap=*/true);
      s.indexer.reset(spec.compressRatio, c.indexHeadDim, /*overlap=*/true);
    }
  }
  nextPos = 0;
}

std::vector<double> Session::forward(const std::vector<int64_t> &ids,
                                     int64_t startPos) {
  if (ids.empty() || startPos != nextPos) {
    std::fprintf(stderr,
                 "reference::Session::forward: chunk of %zu tokens at %lld, "
                 "but the session is at position %lld\n",
                 ids.size(), static_cast<long long>(startPos),
                 static_cast<long long>(nextPos));
    std::abort();
  }
  std::vector<double> logits;
  logits.reserve(ids.size() * model.config.vocabSize);
  // Batches only share the weight reads of the linear layers; every token's
  // arithmetic is that of processing it alone (see forward's comment).
  constexpr size_t kBatch = 64;
  for (size_t at = 0; at < ids.size(); at += kBatch) {
    std::vector<int64_t> batch(ids.begin() + at,
                               ids.begin() + std::min(ids.size(), at + kBatch));
    std::vector<std::vector<double>> rows = steps(batch, nextPos);
    for (const std::vector<double> &row : rows)
      logits.insert(logits.end(), row.begin(), row.end());
    nextPos += static_cast<int64_t>(batch.size());
  }
  return logits;
}

std::vector<std::vector<double>>
Session::attention(size_t layer, const std::vector<std::vector<double>> &xs,
                   int64_t pos0) {
  const ModelConfig &c = model.config;
  const LayerWeights &L = model.layers[layer];
  LayerState &S = states[layer];
  const int64_t H = c.numHeads, d = c.headDim, r = c.ropeHeadDim,
                W = c.slidingWindow;
  const double eps = c.rmsNormEps;
  const size_t T = xs.size();
  // SWA layers use the main rope, CSA/HCA layers the compress (YaRN) rope for
  // everything: q, kv, compressed entries, indexer, output de-rotation.
  const std::vector<double> &freq =
      L.spec.attention == AttentionKind::Sliding ? mainFreq : compressFreq;
  const bool compressed = L.spec.attention != AttentionKind::Sliding;
  const bool csa = L.spec.attention == AttentionKind::CSA;
  std::vector<const double *> xp(T);
  for (size_t t = 0; t < T; ++t)
    xp[t] = xs[t].data();

  // The projections of every token (they need no state).
  // Query path: qr = q_norm(wq_a x); q = wq_b qr.
  std::vector<std::vector<double>> qa = linearBatch(xp, L.wqA);
  std::vector<std::vector<double>> qr(T);
  std::vector<const double *> qrp(T);
  for (size_t t = 0; t < T; ++t) {
    qr[t] = rmsNorm(qa[t].data(), c.qLoraRank, L.qNorm.data.data(), eps);
    qrp[t] = qr[t].data();
  }
  std::vector<std::vector<double>> q = linearBatch(qrp, L.wqB);
  std::vector<std::vector<double>> kvRaw = linearBatch(xp, L.wkv);
  std::vector<std::vector<double>> cKv, cGate, iKv, iGate, qI, headWeights;
  if (compressed) {
    cKv = linearBatch(xp, L.compressor.wkv);
    cGate = linearBatch(xp, L.compressor.wgate);
  }
  if (csa) {
    iKv = linearBatch(xp, L.indexerCompressor.wkv);
    iGate = linearBatch(xp, L.indexerCompressor.wgate);
    qI = linearBatch(qrp, L.indexerWqB);
    headWeights = linearBatch(xp, L.indexerWeightsProj);
    for (std::vector<double> &w : headWeights)
      scaleIndexerHeadWeights(w, c.indexHeadDim);
  }

  // Then the tokens in order through the state (spec §5.2).
  std::vector<std::vector<double>> o(T);
  for (size_t t = 0; t < T; ++t) {
    const int64_t pos = pos0 + static_cast<int64_t>(t);
    // Per-head unweighted norm of q; RoPE at pos.
    for (int64_t h = 0; h < H; ++h) {
      std::vector<double> qh = rmsNorm(q[t].data() + h * d, d, nullptr, eps);
      applyRope(qh.data(), d, r, freq, pos);
      std::copy(qh.begin(), qh.end(), q[t].begin() + h * d);
    }

    // Shared K=V: kv = kv_norm(wkv x), RoPE at pos, into the window ring.
    std::vector<double> kv =
        rmsNorm(kvRaw[t].data(), d, L.kvNorm.data.data(), eps);
    applyRope(kv.data(), d, r, freq, pos);
    S.window[pos % W] = std::move(kv);

    // Compressors run before attention: an entry completed by this token is
    // visible to it (spec §4.5.4).
    std::vector<const double *> keys;
    std::vector<int64_t> picks;
    if (compressed) {
      const int64_t m = L.spec.compressRatio;
      compressorUpdate(S.compressor, cKv[t].data(), cGate[t].data(),
                       L.compressor, pos, freq, r, eps);
      const int64_t available = (pos + 1) / m;
      if (static_cast<int64_t>(S.compressor.entries.size()) != available) {
        std::fprintf(stderr, "reference: compressor entry count mismatch\n");
        std::abort();
      }
      if (!csa) {
        for (int64_t w = 0; w < available; ++w)
          picks.push_back(w);
      } else {
        const int64_t HI = c.indexNumHeads, dI = c.indexHeadDim;
        compressorUpdate(S.indexer, iKv[t].data(), iGate[t].data(),
                         L.indexerCompressor, pos, freq, r, eps);
        for (int64_t h = 0; h < HI; ++h)
          applyRope(qI[t].data() + h * dI, dI, r, freq, pos);
        std::vector<double> scores = indexerScores(
            qI[t].data(), headWeights[t], S.indexer.entries, available, dI);
        picks = topKIndices(scores, std::min(c.indexTopk, available));
      }
    }

    // Key set: window positions max(0, pos-W+1)..pos, then compressed
    // entries.
    for (int64_t p = std::max<int64_t>(0, pos - W + 1); p <= pos; ++p)
      keys.push_back(S.window[p % W].data());
    for (int64_t w : picks)
      keys.push_back(S.compressor.entries[w].data());

    o[t] = sinkAttention(q[t].data(), H, d, keys, L.attnSink.data.data(),
                         1.0 / std::sqrt(static_cast<double>(d)));
    // The value carries the key's rope: de-rotate at the query position.
    for (int64_t h = 0; h < H; ++h)
      applyRope(o[t].data() + h * d, d, r, freq, pos, /*inverse=*/true);
  }
  return attentionOutputBatch(o, L.woA, L.woB, c.oGroups);
}

std::vector<std::vector<double>>
Session::steps(const std::vector<int64_t> &tokenIds, int64_t pos0) {
  const ModelConfig &c = model.config;
  const int64_t D = c.hiddenSize, N = c.hcMult;
  const size_t T = tokenIds.size();
  for (int64_t tokenId : tokenIds)
    if (tokenId < 0 || tokenId >= c.vocabSize) {
      std::fprintf(stderr, "reference: token id %lld out of range\n",
                   static_cast<long long>(tokenId));
      std::abort();
    }
  // N identical residual streams of the (unscaled) embedding.
  std::vector<std::vector<double>> X(T, std::vector<double>(N * D));
  for (size_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < N; ++j)
      std::copy(model.embed.row(tokenIds[t]), model.embed.row(tokenIds[t]) + D,
                X[t].begin() + j * D);

  std::vector<HcPreResult> mix(T);
  std::vector<std::vector<double>> xn(T);
  std::vector<const double *> xp(T);
  for (size_t l = 0; l < model.layers.size(); ++l) {
    const LayerWeights &L = model.layers[l];
    for (size_t t = 0; t < T; ++t) {
      mix[t] = hcPre(X[t].data(), N, D, L.hcAttnFn, L.hcAttnBase,
                     L.hcAttnScale, c.hcSinkhornIters, c.hcEps, c.rmsNormEps);
      xn[t] = rmsNorm(mix[t].collapsed.data(), D, L.attnNorm.data.data(),
                      c.rmsNormEps);
    }
    std::vector<std::vector<double>> a = attention(l, xn, pos0);
    for (size_t t = 0; t < T; ++t) {
      X[t] = hcPost(a[t].data(), X[t].data(), mix[t], N, D);
      mix[t] = hcPre(X[t].data(), N, D, L.hcFfnFn, L.hcFfnBase, L.hcFfnScale,
                     c.hcSinkhornIters, c.hcEps, c.rmsNormEps);
      xn[t] = rmsNorm(mix[t].collapsed.data(), D, L.ffnNorm.data.data(),
                      c.rmsNormEps);
      xp[t] = xn[t].data();
    }
    std::vector<std::vector<double>> f = moeBatch(xp, tokenIds, L, c);
    for (size_t t = 0; t < T; ++t)
      X[t] = hcPost(f[t].data(), X[t].data(), mix[t], N, D);
  }
  std::vector<std::vector<double>> y(T);
  for (size_t t = 0; t < T; ++t) {
    y[t] = hcHead(X[t].data(), N, D, model.hcHeadFn, model.hcHeadBase,
                  model.hcHeadScale, c.hcEps, c.rmsNormEps);
    y[t] = rmsNorm(y[t].data(), D, model.norm.data.data(), c.rmsNormEps);
    xp[t] = y[t].data();
  }
  return linearBatch(xp, model.head);
}

} // namespace compressa::reference
