//===- Reference.h - Plain C++ DeepSeek-V4 reference ----------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// A deliberately simple, double-precision implementation of the DeepSeek-V4
// forward pass (spec/deepseek-v4.md §3-§5): the ground truth that the
// compiler's CPU kernels are unit-tested against, one function per op, and a
// proof (ReferenceTest.cpp) that we read the spec the way the golden logits
// (transformers, float64) compute it. Test code: clarity over speed.
//
// Every vector is row-major and every computation runs in double. Weights are
// dequantized exactly (FP8 e4m3 x UE8M0 per 128x128 block, FP4 e2m1 x UE8M0
// per 1x32 block, BF16) when a Model is loaded.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_TEST_REFERENCE_REFERENCE_H
#define COMPRESSA_TEST_REFERENCE_REFERENCE_H

#include "frontend/Config/ModelConfig.h"
#include "runtime/base/status.h"
#include "runtime/weights/safetensors.h"

#include <cstdint>
#include <string>
#include <vector>

namespace compressa::reference {

using mlir::compressa::AttentionKind;
using mlir::compressa::LayerSpec;
using mlir::compressa::ModelConfig;
using mlir::compressa::MoeKind;
using mlir::compressa::RopeParams;

//===----------------------------------------------------------------------===//
// Weights
//===----------------------------------------------------------------------===//

/// A dense tensor of doubles. A 2-D tensor [out, in] is a linear weight.
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<double> data;

  bool empty() const { return data.empty(); }
  int64_t numElements() const { return static_cast<int64_t>(data.size()); }
  /// shape[0] (1 for a scalar).
  int64_t rows() const { return shape.empty() ? 1 : shape[0]; }
  /// numElements / rows: the row width of a 2-D tensor.
  int64_t cols() const { return rows() == 0 ? 0 : numElements() / rows(); }
  const double *row(int64_t r) const { return data.data() + r * cols(); }
};

/// A compressor (spec §4.5.1/§4.5.2; also the indexer's own, §4.5.3).
struct CompressorWeights {
  Tensor wkv;   ///< [c*dc, D]; c = 2 for CSA (overlap), 1 for HCA
  Tensor wgate; ///< [c*dc, D]
  Tensor ape;   ///< [m, c*dc] positional bias added to the gate
  Tensor norm;  ///< [dc] weighted RMSNorm of the pooled vector
};

/// One SwiGLU expert (routed or shared, spec §4.6).
struct ExpertWeights {
  Tensor w1; ///< gate [I, D]
  Tensor w2; ///< down [D, I]
  Tensor w3; ///< up   [I, D]
};

/// All weights of one decoder block (spec §2.2, official names).
struct LayerWeights {
  LayerSpec spec;
  Tensor attnNorm, ffnNorm;                 ///< [D]
  Tensor hcAttnFn, hcAttnBase, hcAttnScale; ///< [(2+N)N, N*D], [(2+N)N], [3]
  Tensor hcFfnFn, hcFfnBase, hcFfnScale;
  Tensor attnSink;                     ///< [H]
  Tensor wqA, qNorm, wqB;              ///< [Q, D], [Q], [H*d, Q]
  Tensor wkv, kvNorm;                  ///< [d, D], [d]
  Tensor woA, woB;                     ///< [G*R_o, H*d/G], [D, G*R_o]
  CompressorWeights compressor;        ///< CSA and HCA layers
  CompressorWeights indexerCompressor; ///< CSA layers
  Tensor indexerWqB;                   ///< [HI*dI, Q] (CSA)
  Tensor indexerWeightsProj;           ///< [HI, D] (CSA)
  Tensor gateWeight;                   ///< [E, D]
  Tensor gateBias;                     ///< [E] (score layers) or empty
  std::vector<int64_t> tid2eid;        ///< [V, K] (hash layers)
  std::vector<ExpertWeights> experts;  ///< E routed experts
  ExpertWeights shared;                ///< the shared expert
};

/// A whole model with dequantized weights. MTP weights are not loaded.
struct Model {
  ModelConfig config;
  Tensor embed;                             ///< [V, D]
  Tensor head;                              ///< [V, D]
  Tensor norm;                              ///< [D]
  Tensor hcHeadFn, hcHeadBase, hcHeadScale; ///< [N, N*D], [N], [1]
  std::vector<LayerWeights> layers;
};

/// Reads `name` from `store` as doubles. F64/F32/BF16 are converted; F8_E4M3
/// is multiplied by its `<base>.scale` (UE8M0, one per 128x128 block);
/// I8 is FP4 e2m1 packed two per byte (low nibble = even column) times its
/// `<base>.scale` (UE8M0, one per 1x32 block), giving [out, 2*bytes].
/// `<base>` is `name` without its ".weight" suffix.
StatusOr<Tensor> loadTensor(const WeightStore &store, const std::string &name);

/// Loads the checkpoint in `directory` (model.safetensors or an index) for
/// `config`. Shapes are checked against the config.
StatusOr<Model> loadModel(const ModelConfig &config,
                          const std::string &directory);

//===----------------------------------------------------------------------===//
// Ops (pure functions on row-major arrays)
//===----------------------------------------------------------------------===//

/// §3 RMSNorm: y = w ⊙ x / sqrt(mean(x²) + eps); `weight` == nullptr gives
/// the unweighted form (per-head q norm, mHC input norm).
std::vector<double> rmsNorm(const double *x, int64_t n, const double *weight,
                            double eps);

/// y = x·Wᵀ for W [out, in]: y[o] = Σ_i x[i]·W[o, i].
std::vector<double> linear(const double *x, const Tensor &w);

/// linear() of several inputs at once: ys[t][o] is exactly linear(xs[t], w)[o]
/// (the same dot, in the same order); each weight row is read once for all.
std::vector<std::vector<double>>
linearBatch(const std::vector<const double *> &xs, const Tensor &w);

/// Threads of the reference's large loops (linear layers, attention heads,
/// indexer scores); 0 (the default) = the hardware threads. Every output
/// element is computed by one thread in the serial order, so the results are
/// the same for any count. A no-op without OpenMP.
void setThreads(int threads);
/// The thread count the loops use now.
int threads();

/// §1.3 inverse frequencies f_i, i < ropeDim/2: base_i = θ^(−2i/r); with
/// YaRN, c(β) = r·ln(orig/(2πβ)) / (2·ln θ), low = max(floor(c(β_fast)), 0),
/// high = min(ceil(c(β_slow)), r − 1) (high += 0.001 when equal),
/// ramp_i = clamp((i − low)/(high − low), 0, 1),
/// f_i = base_i·(1 − ramp_i) + (base_i/factor)·ramp_i. No mscale.
std::vector<double> ropeInverseFrequencies(const RopeParams &params,
                                           int64_t ropeDim);

/// §3 interleaved partial RoPE on the last `ropeDim` channels of x[0..n):
/// pair k = (x[n−r+2k], x[n−r+2k+1]) is rotated by φ = pos·f_k (in double):
/// a' = a·cosφ − b·sinφ, b' = a·sinφ + b·cosφ. `inverse` rotates by −φ.
void applyRope(double *x, int64_t n, int64_t ropeDim,
               const std::vector<double> &invFreq, int64_t pos,
               bool inverse = false);

/// §4.3 step 4, Sinkhorn on the N×N logits (row-major, C[j][k]):
/// C = rowsoftmax(C) + eps; C[j][k] /= (Σ_j C[j][k] + eps); then
/// (iters − 1) times: row-normalize (Σ_k + eps), column-normalize (Σ_j + eps).
std::vector<double> sinkhorn(std::vector<double> logits, int64_t n,
                             int64_t iters, double eps);

/// The output of HCPre (§4.3).
struct HcPreResult {
  std::vector<double> collapsed; ///< x_in = Σ_j pre_j X_j, [D]
  std::vector<double> pre;       ///< [N]
  std::vector<double> post;      ///< [N]
  std::vector<double> comb;      ///< [N, N] after Sinkhorn
};

/// §4.3 HCPre on the streams X [N, D]: ρ = rsqrt(mean(x̄²) + normEps),
/// μ = ρ·F x̄; pre = sigmoid(s0·μ_pre + b_pre) + hcEps,
/// post = 2·sigmoid(s1·μ_post + b_post), C = sinkhorn(s2·μ_comb + b_comb).
HcPreResult hcPre(const double *streams, int64_t numStreams, int64_t dim,
                  const Tensor &fn, const Tensor &base, const Tensor &scale,
                  int64_t sinkhornIters, double hcEps, double normEps);

/// §4.3 HCPost: X'_k = post_k·a + Σ_j C[j][k]·X_j (X' = post ⊗ a + Cᵀ X).
std::vector<double> hcPost(const double *blockOutput, const double *streams,
                           const HcPreResult &mix, int64_t numStreams,
                           int64_t dim);

/// §4.3 HCHead: μ = ρ·F_h x̄, pre = sigmoid(scale·μ + base) + hcEps,
/// y = Σ_j pre_j X_j.
std::vector<double> hcHead(const double *streams, int64_t numStreams,
                           int64_t dim, const Tensor &fn, const Tensor &base,
                           const Tensor &scale, double hcEps, double normEps);

/// §4.5.1 pooling: per channel c, e[c] = Σ_s softmax_s(score[s, c])·kv[s, c]
/// over `numSlots` slots of width `width` (−inf scores get weight 0).
std::vector<double> compressorPool(const double *kv, const double *score,
                                   int64_t numSlots, int64_t width);

/// The decode-time state of one compressor (spec §5.1/§5.2).
struct CompressorState {
  int64_t ratio = 0;    ///< m
  int64_t headDim = 0;  ///< width of an entry (d, or dI for the indexer)
  bool overlap = false; ///< CSA two-series layout (2m slots of 2·headDim)
  /// Slots [numSlots, slotWidth]: kv = c_p, score = z_p + ape[p mod m].
  /// Non-overlap: slot p mod m. Overlap: slot m + p mod m (current window);
  /// slots 0..m−1 hold the previous window (its A half is read).
  std::vector<double> kv, score;
  /// Emitted entries (normed, RoPE'd at position m·w), entry w at index w.
  std::vector<std::vector<double>> entries;

  /// Empties the state: kv = 0, score = −inf, no entries.
  void reset(int64_t ratio, int64_t headDim, bool overlap);
  int64_t numSlots() const { return overlap ? 2 * ratio : ratio; }
  int64_t slotWidth() const { return overlap ? 2 * headDim : headDim; }
};

/// §5.2 step 3, one token at position `pos`: c = Wkv x, z = Wgate x + ape[pos
/// mod m] go to their slot; when (pos + 1) mod m == 0 the window is pooled
/// (overlap: slots 0..m−1 use [:d] of the previous window, slots m..2m−1 use
/// [d:] of the current one), RMSNorm'd with `w.norm`, RoPE'd at position
/// pos + 1 − m, appended to `state.entries`, and (overlap) the current window
/// becomes the previous one. Returns true when an entry was emitted.
bool compressorStep(CompressorState &state, const double *x,
                    const CompressorWeights &w, int64_t pos,
                    const std::vector<double> &invFreq, int64_t ropeDim,
                    double eps);
/// compressorStep with c = Wkv x and z = Wgate x already computed.
bool compressorUpdate(CompressorState &state, const double *c, const double *z,
                      const CompressorWeights &w, int64_t pos,
                      const std::vector<double> &invFreq, int64_t ropeDim,
                      double eps);

/// §4.5.3 indexer head weights: ω_h = (Wproj x)_h · dI^−0.5 · HI^−0.5.
std::vector<double> indexerHeadWeights(const double *x,
                                       const Tensor &weightsProj,
                                       int64_t indexHeadDim);
/// The scaling of indexerHeadWeights on Wproj x (HI = projected.size()).
void scaleIndexerHeadWeights(std::vector<double> &projected,
                             int64_t indexHeadDim);

/// §4.5.3 scores I_s = Σ_h ω_h · ReLU(q_h · k_s) for s < numCandidates;
/// q is [HI, dI] (already RoPE'd), keys are the indexer entries.
std::vector<double> indexerScores(const double *q,
                                  const std::vector<double> &headWeights,
                                  const std::vector<std::vector<double>> &keys,
                                  int64_t numCandidates, int64_t indexHeadDim);

/// The indices of the k largest scores, best first; among equal scores the
/// lower index comes first (deterministic tie order).
std::vector<int64_t> topKIndices(const std::vector<double> &scores, int64_t k);

/// §4.4 core attention with sink, shared K=V: per head h,
/// s_j = scale·(q_h·k_j), o_h = Σ_j e^{s_j−M} k_j / (Σ_j e^{s_j−M} +
/// e^{z_h−M}). q is [H, d]; returns o [H, d].
std::vector<double> sinkAttention(const double *q, int64_t numHeads,
                                  int64_t headDim,
                                  const std::vector<const double *> &keys,
                                  const double *sinks, double scale);

/// §4.4 output: o [H·d] viewed [G, H·d/G]; z[g·R + r] = Σ_i o[g, i]·Wo_a[g·R
/// + r, i]; out = Wo_b z.
std::vector<double> attentionOutput(const std::vector<double> &o,
                                    const Tensor &woA, const Tensor &woB,
                                    int64_t groups);
/// attentionOutput of several tokens' o at once (identical results).
std::vector<std::vector<double>>
attentionOutputBatch(const std::vector<std::vector<double>> &os,
                     const Tensor &woA, const Tensor &woB, int64_t groups);

/// Routed experts and their weights for one token (spec §4.6).
struct Routing {
  std::vector<int64_t> experts;
  std::vector<double> weights;
};

/// §4.6 router scores σ_e = sqrt(softplus((W_g x)_e)).
std::vector<double> routerScores(const double *x, const Tensor &gateWeight);

/// §4.6 score routing: idx = topK(σ + bias) (bias may be empty, used for the
/// selection only), w_k = σ_idx_k / Σ σ_idx · routedScale.
Routing scoreRouting(const std::vector<double> &scores, const Tensor &bias,
                     int64_t k, double routedScale);

/// §4.6 hash routing: idx = tokenExperts[0..k) (= tid2eid[token]), weights as
/// for score routing (σ of the chosen experts, normalized, × routedScale).
Routing hashRouting(const std::vector<double> &scores,
                    const int64_t *tokenExperts, int64_t k, double routedScale);

/// §4.6 expert: g = min(W1 x, L), u = clamp(W3 x, −L, L), y = W2 (silu(g)·u).
std::vector<double> swigluExpert(const double *x, const ExpertWeights &e,
                                 double limit);
/// swigluExpert of several inputs at once (identical results).
std::vector<std::vector<double>>
swigluBatch(const std::vector<const double *> &xs, const ExpertWeights &e,
            double limit);

/// §4.6 MoE of one token: Σ_k w_k·expert_{idx_k}(x) + shared(x).
std::vector<double> moe(const double *x, int64_t tokenId,
                        const LayerWeights &layer, const ModelConfig &config);
/// moe() of several tokens at once (identical results): each expert runs once
/// over the tokens that chose it; a token's terms are added in routing order.
std::vector<std::vector<double>>
moeBatch(const std::vector<const double *> &xs,
         const std::vector<int64_t> &tokenIds, const LayerWeights &layer,
         const ModelConfig &config);

/// §4.7 logits = Head · y (y already final-normed).
std::vector<double> lmHead(const double *y, const Tensor &head);

//===----------------------------------------------------------------------===//
// Session: the decode state of spec §5.1 and the forward pass
//===----------------------------------------------------------------------===//

class Session {
public:
  /// A fresh sequence; `model` must outlive the session.
  explicit Session(const Model &model);

  /// Forgets the sequence (window, entries, compressor states).
  void reset();

  /// Number of tokens processed so far (= the next position).
  int64_t position() const { return nextPos; }

  /// Processes `ids` at positions startPos, startPos+1, ... and returns the
  /// logits of every token, [ids.size(), V] row-major. Every token is
  /// computed exactly as if processed alone (spec §5.2), so any chunking
  /// gives identical results: tokens go through the state in order, and
  /// only the state-free projections (linear layers, experts) of a batch of
  /// up to 64 tokens share their weight reads.
  /// Precondition (aborts otherwise): !ids.empty() and startPos ==
  /// position().
  std::vector<double> forward(const std::vector<int64_t> &ids,
                              int64_t startPos);

private:
  struct LayerState {
    std::vector<std::vector<double>> window; ///< ring, slot = pos mod W
    CompressorState compressor;              ///< CSA/HCA main compressor
    CompressorState indexer;                 ///< CSA indexer compressor
  };

  /// The logits of `tokenIds` at positions pos0, pos0 + 1, ...
  std::vector<std::vector<double>> steps(const std::vector<int64_t> &tokenIds,
                                         int64_t pos0);
  /// One layer's attention of the tokens at pos0, pos0 + 1, ...
  std::vector<std::vector<double>>
  attention(size_t layer, const std::vector<std::vector<double>> &xs,
            int64_t pos0);

  const Model &model;
  std::vector<double> mainFreq, compressFreq;
  std::vector<LayerState> states;
  int64_t nextPos = 0;
};

} // namespace compressa::reference

#endif // COMPRESSA_TEST_REFERENCE_REFERENCE_H
