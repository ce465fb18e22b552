//===- DSV4Ops.td - dsv4 operations ------------------------*- tablegen -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// Ops are grouped by family; the semantics of each follow the section of
// shared/spec/deepseek-v4.md named in its description. Shapes use S for the
// tokens of a call, D hidden, H heads, d head_dim, N hc_mult, K experts per
// token, V vocabulary. Dynamic sizes (`?`) match anything.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_DSV4_OPS
#define COMPRESSA_DSV4_OPS

include "dialects/DSV4/IR/DSV4Types.td"
include "mlir/IR/CommonAttrConstraints.td"
include "mlir/IR/CommonTypeConstraints.td"

def DSV4_Activation : RankedTensorOf<[F32, BF16, F16]>;
def DSV4_TokenIds : 1DTensorOf<[I64]>;
def DSV4_ExpertIds : 2DTensorOf<[I32]>;

//===----------------------------------------------------------------------===//
// Weights and embedding
//===----------------------------------------------------------------------===//

def DSV4_ParamOp : DSV4_PureOp<"param"> {
  let summary = "Names a tensor of the official checkpoint.";
  let description = [{
    Produces the weight `name` of the checkpoint (spec §2.2) in its storage
    format. Its scale companion, if the type has block scales, is the tensor
    of the same name with `.weight` replaced by `.scale`. A rank-3 weight is a
    stack of routed experts; its name holds one `*` path component that
    stands for the expert index.

    ```mlir
    %w = dsv4.param "layers.0.attn.wq_a.weight" : !dsv4.weight<tensor<1024x4096xf8E4M3FN>, #dsv4.block_scale<f8E8M0FNU, [128, 128]>>
    %e = dsv4.param "layers.0.ffn.experts.*.w1.weight" : !dsv4.weight<tensor<256x2048x4096xf4E2M1FN>, #dsv4.block_scale<f8E8M0FNU, [1, 32]>>
    ```
  }];
  let arguments = (ins StrAttr:$name);
  let results = (outs DSV4_WeightType:$result);
  let assemblyFormat = "$name attr-dict `:` qualified(type($result))";
  let hasVerifier = 1;
}

def DSV4_EmbedOp : DSV4_PureOp<"embed"> {
  let summary = "Looks up token embeddings.";
  let description = [{
    `result[s, :] = table[ids[s], :]` (spec §4.1), converted to the
    activation type. Ids outside the table are a runtime error.

    ```mlir
    %h = dsv4.embed %table[%ids] : (!dsv4.weight<tensor<129280x4096xbf16>>, tensor<?xi64>) -> tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins DSV4_WeightType:$table, DSV4_TokenIds:$ids);
  let results = (outs DSV4_Activation:$result);
  let assemblyFormat = "$table `[` $ids `]` attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def DSV4_RmsNormOp : DSV4_PureOp<"rms_norm", [AllTypesMatch<["x", "result"]>]> {
  let summary = "RMSNorm over the last dimension, weighted or not.";
  let description = [{
    `y = x * rsqrt(mean(x^2) + eps)`, times `weight` when given (spec §3),
    statistics in fp32. Without a weight it is the unweighted norm used per
    head on queries.

    ```mlir
    %y = dsv4.rms_norm %x weight(%w : !dsv4.weight<tensor<4096xbf16>>) {eps = 1.0e-06 : f64} : tensor<?x4096xf32>
    %z = dsv4.rms_norm %q {eps = 1.0e-06 : f64} : tensor<?x64x512xf32>
    ```
  }];
  let arguments = (ins DSV4_Activation:$x, Optional<DSV4_WeightType>:$weight,
                       F64Attr:$eps);
  let results = (outs DSV4_Activation:$result);
  let assemblyFormat = [{
    $x (`weight` `(` $weight^ `:` qualified(type($weight)) `)`)? attr-dict `:` type($x)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// mHC hyper-connections
//===----------------------------------------------------------------------===//

def DSV4_HcExpandOp : DSV4_PureOp<"hc.expand"> {
  let summary = "Copies the embedding into the N residual streams.";
  let description = [{
    `result[s, j, :] = x[s, :]` for each of the `N = hc_mult` streams (spec
    §4.1).

    ```mlir
    %X = dsv4.hc.expand %h : tensor<?x4096xf32> -> tensor<?x4x4096xf32>
    ```
  }];
  let arguments = (ins DSV4_Activation:$x);
  let results = (outs DSV4_Activation:$result);
  let assemblyFormat = "$x attr-dict `:` type($x) `->` type($result)";
  let hasVerifier = 1;
}

def DSV4_HcPreOp : DSV4_PureOp<"hc.pre"> {
  let summary = "mHC pre-mix with the Sinkhorn-Knopp projection.";
  let description = [{
    Per token (spec §4.3): `mu = rsqrt(mean(x^2) + norm_eps) * (fn . x)` over
    the flattened streams; `pre = sigmoid(s0 mu_pre + base) + hc_eps`,
    `post = 2 sigmoid(s1 mu_post + base)`, `comb` = the N x N matrix
    `s2 mu_comb + base` projected towards doubly stochastic by a row softmax
    and `sinkhorn_iters` column/row normalisations (ending on columns). The
    layer input is `x = sum_j pre_j X_j`.

    Operands: `streams [S, N, D]`, `fn [(2+N)N, N D]`, `base [(2+N)N]`,
    `scale [3]`. Results: `x [S, D]`, `post [S, N]`, `comb [S, N, N]`.

    ```mlir
    %x, %post, %comb = dsv4.hc.pre %X, %fn, %base, %scale {hc_eps = 1.0e-06 : f64, norm_eps = 1.0e-06 : f64, sinkhorn_iters = 20 : i64}
        : (tensor<?x4x4096xf32>, !dsv4.weight<tensor<24x16384xf32>>, !dsv4.weight<tensor<24xf32>>, !dsv4.weight<tensor<3xf32>>)
        -> (tensor<?x4096xf32>, tensor<?x4xf32>, tensor<?x4x4xf32>)
    ```
  }];
  let arguments = (ins DSV4_Activation:$streams, DSV4_WeightType:$fn,
                       DSV4_WeightType:$base, DSV4_WeightType:$scale,
                       ConfinedAttr<I64Attr, [IntPositive]>:$sinkhorn_iters,
                       F64Attr:$hc_eps, F64Attr:$norm_eps);
  let results = (outs DSV4_Activation:$x, DSV4_Activation:$post,
                      DSV4_Activation:$comb);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def DSV4_HcPostOp : DSV4_PureOp<"hc.post", [AllTypesMatch<["streams", "result"]>]> {
  let summary = "mHC post-mix: writes a sub-layer's output into the streams.";
  let description = [{
    `X'_k = post_k * a + sum_j comb[j, k] * X_j`, i.e. `X' = post (x) a +
    comb^T X` (spec §4.3, the first index of `comb` is contracted).

    ```mlir
    %X2 = dsv4.hc.post %a, %X, %post, %comb : (tensor<?x4096xf32>, tensor<?x4x4096xf32>, tensor<?x4xf32>, tensor<?x4x4xf32>) -> tensor<?x4x4096xf32>
    ```
  }];
  let arguments = (ins DSV4_Activation:$a, DSV4_Activation:$streams,
                       DSV4_Activation:$post, DSV4_Activation:$comb);
  let results = (outs DSV4_Activation:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def DSV4_HcHeadOp : DSV4_PureOp<"hc.head"> {
  let summary = "Collapses the residual streams into one hidden vector.";
  let description = [{
    `mu = rsqrt(mean(x^2) + norm_eps) (fn . x)`, `pre = sigmoid(scale mu +
    base) + hc_eps`, `y = sum_j pre_j X_j` (spec §4.3 HCHead). Operands:
    `streams [S, N, D]`, `fn [N, N D]`, `base [N]`, `scale [1]`.

    ```mlir
    %y = dsv4.hc.head %X, %fn, %base, %scale {hc_eps = 1.0e-06 : f64, norm_eps = 1.0e-06 : f64}
        : (tensor<?x4x4096xf32>, !dsv4.weight<tensor<4x16384xf32>>, !dsv4.weight<tensor<4xf32>>, !dsv4.weight<tensor<1xf32>>) -> tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins DSV4_Activation:$streams, DSV4_WeightType:$fn,
                       DSV4_WeightType:$base, DSV4_WeightType:$scale,
                       F64Attr:$hc_eps, F64Attr:$norm_eps);
  let results = (outs DSV4_Activation:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Attention: projections and RoPE
//===----------------------------------------------------------------------===//

def DSV4_QProjOp : DSV4_PureOp<"attn.q_proj"> {
  let summary = "The query path: low-rank projection, norms, per-head split.";
  let description = [{
    `qr = RMSNorm(x . wq_a^T; q_norm)`, `q = qr . wq_b^T` viewed `[S, H, d]`,
    then the unweighted RMSNorm of each head (spec §4.4). `qr` is returned too:
    the lightning indexer reuses it. RoPE is a separate `dsv4.rope`.

    ```mlir
    %q, %qr = dsv4.attn.q_proj %x, %wq_a, %q_norm, %wq_b {eps = 1.0e-06 : f64}
        : (tensor<?x4096xf32>, !dsv4.weight<...>, !dsv4.weight<tensor<1024xbf16>>, !dsv4.weight<...>)
        -> (tensor<?x64x512xf32>, tensor<?x1024xf32>)
    ```
  }];
  let arguments = (ins DSV4_Activation:$x, DSV4_WeightType:$wq_a,
                       DSV4_WeightType:$q_norm, DSV4_WeightType:$wq_b,
                       F64Attr:$eps);
  let results = (outs DSV4_Activation:$q, DSV4_Activation:$qr);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def DSV4_KVProjOp : DSV4_PureOp<"attn.kv_proj"> {
  let summary = "The shared K=V path: one head, projected and normed.";
  let description = [{
    `kv = RMSNorm(x . wkv^T; kv_norm)`, `[S, d]`: one vector per token that
    is both key and value (spec §4.4). RoPE is a separate `dsv4.rope`.

    ```mlir
    %kv = dsv4.attn.kv_proj %x, %wkv, %kv_norm {eps = 1.0e-06 : f64}
        : (tensor<?x4096xf32>, !dsv4.weight<...>, !dsv4.weight<tensor<512xbf16>>) -> tensor<?x512xf32>
    ```
  }];
  let arguments = (ins DSV4_Activation:$x, DSV4_WeightType:$wkv,
                       DSV4_WeightType:$kv_norm, F64Attr:$eps);
  let results = (outs DSV4_Activation:$kv);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def DSV4_RopeOp : DSV4_PureOp<"rope", [AllTypesMatch<["x", "result"]>]> {
  let summary = "Interleaved partial RoPE, or its inverse.";
  let description = [{
    Rotates the last `rope.dim` channels of the last dimension; row `i` of the
    first dimension is at position `start_pos + i` (spec §3). With `inverse`
    the angle is negated (the de-rotation of attention outputs, spec §4.4).
    SWA layers use the main rope, CSA/HCA layers the YaRN compress rope.

    ```mlir
    %q2 = dsv4.rope %q at %pos {rope = #dsv4.rope<dim = 64, theta = 10000.0>} : tensor<?x64x512xf32>
    %o2 = dsv4.rope %o at %pos {inverse, rope = #dsv4.rope<dim = 64, theta = 160000.0, yarn = [16.0, 65536, 32.0, 1.0]>} : tensor<?x64x512xf32>
    ```
  }];
  let arguments = (ins DSV4_Activation:$x, Index:$start_pos,
                       DSV4_RopeAttr:$rope, UnitAttr:$inverse);
  let results = (outs DSV4_Activation:$result);
  let assemblyFormat = "$x `at` $start_pos attr-dict `:` type($x)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Attention: decode state, compressors, indexer
//===----------------------------------------------------------------------===//

def DSV4_WindowUpdateOp : DSV4_PureOp<"kv.window_update",
                                      [AllTypesMatch<["ring", "result"]>]> {
  let summary = "Writes a chunk's K=V vectors into the sliding-window ring.";
  let description = [{
    For each token `i` of `kv [S, d]`, slot `(start_pos + i) mod window` of
    the ring takes `kv[i]` (only the last `window` tokens of a long chunk
    survive). Attention reads the ring as it was before the chunk.

    ```mlir
    %ring2 = dsv4.kv.window_update %ring, %kv at %pos : !dsv4.window_kv<128, 512, f32>, tensor<?x512xf32>
    ```
  }];
  let arguments = (ins DSV4_WindowKVType:$ring, DSV4_Activation:$kv,
                       Index:$start_pos);
  let results = (outs DSV4_WindowKVType:$result);
  let assemblyFormat = [{
    $ring `,` $kv `at` $start_pos attr-dict `:` qualified(type($ring)) `,` type($kv)
  }];
  let hasVerifier = 1;
}

def DSV4_CompressOp : DSV4_PureOp<"kv.compress",
    [AllTypesMatch<["state", "new_state"]>, AllTypesMatch<["entries", "new_entries"]>]> {
  let summary = "A CSA/HCA (or indexer) compressor over a chunk of tokens.";
  let description = [{
    Softmax-gated pooling with a learned position bias (spec §4.5.1-§4.5.3,
    §5.2, §5.3). For each token, `c = x . wkv^T`, `z = x . wgate^T + ape[p mod
    ratio]` go into the open window held by `state`; each window of `ratio`
    tokens that completes is pooled per channel, `e = sum softmax(z) c`,
    normalised with `norm`, rotated by `rope` at position `ratio * w`, and
    appended to `entries` as entry `w`.

    An overlapping compressor (`state` has `overlap`; CSA and the indexer)
    projects `2 dim` channels: the A half of window `w - 1` and the B half of
    window `w` are pooled together over `2 ratio` slots. A plain compressor
    (HCA) projects `dim` channels over `ratio` slots.

    ```mlir
    %st2, %e2 = dsv4.kv.compress %x, %wkv, %wgate, %ape, %norm, %st, %e, %pos
        {eps = 1.0e-06 : f64, rope = #dsv4.rope<dim = 64, theta = 160000.0, yarn = [16.0, 65536, 32.0, 1.0]>}
        : (tensor<?x4096xf32>, !dsv4.weight<tensor<1024x4096xbf16>>, !dsv4.weight<tensor<1024x4096xbf16>>,
           !dsv4.weight<tensor<4x1024xf32>>, !dsv4.weight<tensor<512xbf16>>,
           !dsv4.compressor_state<4, 512, overlap>, !dsv4.compressed_kv<4, 512, f32>, index)
        -> (!dsv4.compressor_state<4, 512, overlap>, !dsv4.compressed_kv<4, 512, f32>)
    ```
  }];
  let arguments = (ins DSV4_Activation:$x, DSV4_WeightType:$wkv,
                       DSV4_WeightType:$wgate, DSV4_WeightType:$ape,
                       DSV4_WeightType:$norm, DSV4_CompressorStateType:$state,
                       DSV4_AnyEntries:$entries, Index:$start_pos,
                       DSV4_RopeAttr:$rope, F64Attr:$eps);
  let results = (outs DSV4_CompressorStateType:$new_state,
                      DSV4_AnyEntries:$new_entries);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def DSV4_IndexerTopkOp : DSV4_PureOp<"attn.indexer_topk"> {
  let summary = "The lightning indexer: scores compressed entries, picks top-k.";
  let description = [{
    Queries `qI = qr . wq_b^T` viewed `[S, heads, dI]`, rotated by `rope` at
    each token's position; head weights `w = (x . weights_proj^T) dI^-0.5
    heads^-0.5`. Score of token `t` against key `s`: `sum_h w_h relu(qI_h .
    k_s)` (spec §4.5.3). Only keys `s < floor((t + 1) / ratio)` are
    candidates; the result row holds the `topk` best (ties broken towards the
    lower entry index), padded with -1 when fewer exist.

    ```mlir
    %idx = dsv4.attn.indexer_topk %qr, %x, %wq_b, %wp, %keys, %pos {heads = 64 : i64, rope = #dsv4.rope<...>, topk = 512 : i64}
        : (tensor<?x1024xf32>, tensor<?x4096xf32>, !dsv4.weight<...>, !dsv4.weight<tensor<64x4096xbf16>>,
           !dsv4.indexer_keys<4, 128, f32>, index) -> tensor<?x512xi32>
    ```
  }];
  let arguments = (ins DSV4_Activation:$qr, DSV4_Activation:$x,
                       DSV4_WeightType:$wq_b, DSV4_WeightType:$weights_proj,
                       DSV4_IndexerKeysType:$keys, Index:$start_pos,
                       ConfinedAttr<I64Attr, [IntPositive]>:$heads,
                       ConfinedAttr<I64Attr, [IntPositive]>:$topk,
                       DSV4_RopeAttr:$rope);
  let results = (outs DSV4_ExpertIds:$indices);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def DSV4_SparseAttentionOp : DSV4_PureOp<"attn.sparse", [AttrSizedOperandSegments]> {
  let summary = "Attention with sink over the window and compressed entries.";
  let description = [{
    For the query of token `t = start_pos + i`, the key set is the raw K=V
    vectors of positions `max(0, t - window + 1) .. t` (from `ring` for
    positions before the chunk, from `kv` for the chunk) plus compressed
    entries: all complete ones (`w < floor((t + 1) / ratio)`) when `entries`
    is given without `topk` (HCA), or the ones `topk` selects (CSA; -1 = no
    key). One softmax with the sink logit `sink[h]` in the denominator:
    `o_h = sum_j e^(s_j - M) k_j / (sum_j e^(s_j - M) + e^(sink_h - M))`,
    `s_j = scale (q_h . k_j)` (spec §4.4, §4.5.4).

    ```mlir
    %o = dsv4.attn.sparse %q, %kv, %ring at %pos sink(%sink) entries(%e) topk(%idx) {scale = 0.044194173824159216 : f64}
        : (tensor<?x64x512xf32>, tensor<?x512xf32>, !dsv4.window_kv<128, 512, f32>, !dsv4.weight<tensor<64xf32>>, index,
           !dsv4.compressed_kv<4, 512, f32>, tensor<?x512xi32>) -> tensor<?x64x512xf32>
    ```
  }];
  let arguments = (ins DSV4_Activation:$q, DSV4_Activation:$kv,
                       DSV4_WindowKVType:$ring, Index:$start_pos,
                       DSV4_WeightType:$sink,
                       Optional<DSV4_CompressedKVType>:$entries,
                       Optional<DSV4_ExpertIds>:$topk, F64Attr:$scale);
  let results = (outs DSV4_Activation:$result);
  let assemblyFormat = [{
    $q `,` $kv `,` $ring `at` $start_pos `sink` `(` $sink `)`
    (`entries` `(` $entries^ `)`)? (`topk` `(` $topk^ `)`)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def DSV4_OutProjOp : DSV4_PureOp<"attn.out_proj"> {
  let summary = "The grouped low-rank output projection.";
  let description = [{
    Heads are split into `G` groups of `H / G` consecutive heads; group `g`'s
    `(H/G) d` values go through its own slice of `wo_a` (`[G R_o, (H/G) d]`,
    rows `g R_o .. (g+1) R_o - 1`), and the concatenation through `wo_b`
    (`[D, G R_o]`) (spec §4.4).

    ```mlir
    %out = dsv4.attn.out_proj %o, %wo_a, %wo_b {groups = 8 : i64}
        : (tensor<?x64x512xf32>, !dsv4.weight<...>, !dsv4.weight<...>) -> tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins DSV4_Activation:$o, DSV4_WeightType:$wo_a,
                       DSV4_WeightType:$wo_b,
                       ConfinedAttr<I64Attr, [IntPositive]>:$groups);
  let results = (outs DSV4_Activation:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// MoE
//===----------------------------------------------------------------------===//

def DSV4_MoeGateOp : DSV4_PureOp<"moe.gate"> {
  let summary = "Score routing: sqrt-softplus scores, bias-corrected top-k.";
  let description = [{
    `sigma = sqrt(softplus(x . w^T))`; experts `top_k(sigma + bias)` (the bias
    only selects); weights `sigma_e / sum sigma * route_scale` (spec §4.6).

    ```mlir
    %wts, %ids = dsv4.moe.gate %x, %w, %bias {route_scale = 1.5 : f64, topk = 6 : i64}
        : (tensor<?x4096xf32>, !dsv4.weight<tensor<256x4096xbf16>>, !dsv4.weight<tensor<256xf32>>)
        -> (tensor<?x6xf32>, tensor<?x6xi32>)
    ```
  }];
  let arguments = (ins DSV4_Activation:$x, DSV4_WeightType:$w,
                       DSV4_WeightType:$bias,
                       ConfinedAttr<I64Attr, [IntPositive]>:$topk,
                       F64Attr:$route_scale);
  let results = (outs DSV4_Activation:$weights, DSV4_ExpertIds:$ids);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def DSV4_MoeHashGateOp : DSV4_PureOp<"moe.hash_gate"> {
  let summary = "Hash routing: experts fixed per token id by tid2eid.";
  let description = [{
    Experts `tid2eid[token_ids[s]]` (`[V, K]` int64), weights from the same
    sqrt-softplus scores as `dsv4.moe.gate`, normalised over the chosen
    experts and scaled by `route_scale` (spec §4.6, hash layers).

    ```mlir
    %wts, %ids = dsv4.moe.hash_gate %x, %w, %tid2eid, %tokens {route_scale = 1.5 : f64}
        : (tensor<?x4096xf32>, !dsv4.weight<tensor<256x4096xbf16>>, !dsv4.weight<tensor<129280x6xi64>>, tensor<?xi64>)
        -> (tensor<?x6xf32>, tensor<?x6xi32>)
    ```
  }];
  let arguments = (ins DSV4_Activation:$x, DSV4_WeightType:$w,
                       DSV4_WeightType:$tid2eid, DSV4_TokenIds:$token_ids,
                       F64Attr:$route_scale);
  let results = (outs DSV4_Activation:$weights, DSV4_ExpertIds:$ids);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def DSV4_MoeExpertsOp : DSV4_PureOp<"moe.experts"> {
  let summary = "The routed experts: clamped SwiGLU, weighted sum.";
  let description = [{
    For each token and each of its K experts `e`: `g = min(x . w1_e^T,
    limit)`, `u = clamp(x . w3_e^T, -limit, limit)`, `y_e = (silu(g) u) .
    w2_e^T`; the result is `sum_k weights[k] y_{ids[k]}` (spec §4.6).
    `w1`, `w3` are `[E, I, D]` stacks, `w2` is `[E, D, I]`.

    With `first_expert` (set by `dsv4-shard-experts` on the program of one
    rank), the stacks hold experts `first_expert .. first_expert + E - 1` of
    the model and picks of any other expert add nothing: the result is that
    rank's part of the sum, which a `dsv4.all_reduce` completes.

    ```mlir
    %y = dsv4.moe.experts %x, %wts, %ids, %w1, %w3, %w2 {swiglu_limit = 10.0 : f64}
        : (tensor<?x4096xf32>, tensor<?x6xf32>, tensor<?x6xi32>, !dsv4.weight<...>, !dsv4.weight<...>, !dsv4.weight<...>)
        -> tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins DSV4_Activation:$x, DSV4_Activation:$weights,
                       DSV4_ExpertIds:$ids, DSV4_WeightType:$w1,
                       DSV4_WeightType:$w3, DSV4_WeightType:$w2,
                       F64Attr:$swiglu_limit,
                       OptionalAttr<ConfinedAttr<I64Attr, [IntNonNegative]>>:$first_expert);
  let results = (outs DSV4_Activation:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def DSV4_AllReduceOp : DSV4_Op<"all_reduce", [AllTypesMatch<["x", "result"]>]> {
  let summary = "Sum of a tensor over the ranks of a sharded model.";
  let description = [{
    Every rank of an artifact compiled with `--ranks N` holds its part of
    `x` (the routed experts it owns); the result, on every rank, is the
    element-wise sum of the `ranks` parts. Inserted by `dsv4-shard-experts`;
    it stays a program step of its own (never inside a kernel) and becomes a
    call into the runtime's communicator (docs/parallel.md).

    ```mlir
    %y = dsv4.all_reduce %x {ranks = 2 : i64} : tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins 2DTensorOf<[F32]>:$x,
                       ConfinedAttr<I64Attr, [IntMinValue<2>]>:$ranks);
  let results = (outs 2DTensorOf<[F32]>:$result);
  let assemblyFormat = "$x attr-dict `:` type($x)";
}

def DSV4_SharedExpertOp : DSV4_PureOp<"moe.shared_expert"> {
  let summary = "The shared expert: the same clamped SwiGLU, for every token.";
  let description = [{
    `(silu(min(x . w1^T, limit)) clamp(x . w3^T, -limit, limit)) . w2^T`
    (spec §4.6).

    ```mlir
    %s = dsv4.moe.shared_expert %x, %w1, %w3, %w2 {swiglu_limit = 10.0 : f64}
        : (tensor<?x4096xf32>, !dsv4.weight<...>, !dsv4.weight<...>, !dsv4.weight<...>) -> tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins DSV4_Activation:$x, DSV4_WeightType:$w1,
                       DSV4_WeightType:$w3, DSV4_WeightType:$w2,
                       F64Attr:$swiglu_limit);
  let results = (outs DSV4_Activation:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Head and MTP
//===----------------------------------------------------------------------===//

def DSV4_LmHeadOp : DSV4_PureOp<"lm_head"> {
  let summary = "Projects hidden states to vocabulary logits.";
  let description = [{
    `logits = y . head^T`, `[S, V]`, fp32 accumulation (spec §4.7).

    ```mlir
    %logits = dsv4.lm_head %y, %head : (tensor<?x4096xf32>, !dsv4.weight<tensor<129280x4096xbf16>>) -> tensor<?x129280xf32>
    ```
  }];
  let arguments = (ins DSV4_Activation:$y, DSV4_WeightType:$head);
  let results = (outs DSV4_Activation:$logits);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def DSV4_MtpProjectOp : DSV4_PureOp<"mtp.project"> {
  let summary = "The MTP block's input: next-token embedding plus streams.";
  let description = [{
    `X'_j = RMSNorm(e; enorm) . e_proj^T + RMSNorm(X_j; hnorm) . h_proj^T`
    for each stream `j` (spec §4.8): `e [S, D]` is the embedding of the next
    token, `streams [S, N, D]` the main model's residual streams.

    ```mlir
    %X2 = dsv4.mtp.project %e, %X, %enorm, %hnorm, %eproj, %hproj {eps = 1.0e-06 : f64}
        : (tensor<?x4096xf32>, tensor<?x4x4096xf32>, !dsv4.weight<...>, !dsv4.weight<...>, !dsv4.weight<...>, !dsv4.weight<...>)
        -> tensor<?x4x4096xf32>
    ```
  }];
  let arguments = (ins DSV4_Activation:$e, DSV4_Activation:$streams,
                       DSV4_WeightType:$enorm, DSV4_WeightType:$hnorm,
                       DSV4_WeightType:$e_proj, DSV4_WeightType:$h_proj,
                       F64Attr:$eps);
  let results = (outs DSV4_Activation:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Kernels
//===----------------------------------------------------------------------===//

def DSV4_LaunchOp : DSV4_Op<"launch"> {
  let summary = "Runs one kernel: a dispatch after outlining.";
  let description = [{
    Calls kernel `kernel` once for the tokens of the program's call. Before
    kernel conversion the callee is a `func.func` marked `dsv4.kernel` whose
    body holds the dispatch's dsv4 ops (token dimensions dynamic, so one
    kernel serves every program); afterwards it is the target's kernel in
    `@compressa_kernels`, taking the argument vector that the kernel ABI
    (lowering/DSV4ToKernels/KernelABI.h) lays out from these operands and
    results.

    `updates[i]` names, for result `i`, the operand (decode state) that the
    kernel updates in place, or is -1 for a tensor result, placed in the
    arena slot `dsv4.buffers[i]`.

    ```mlir
    %h, %s2 = dsv4.launch @dispatch_7(%x, %w, %s, %pos) updates [-1, 2]
        {dsv4.buffers = [array<i64: 0, 512>, array<i64: -1, 0>]}
        : (tensor<1x128xf32>, !dsv4.weight<tensor<64x128xbf16>>, !dsv4.window_kv<128, 64, f32>, index)
        -> (tensor<1x64xf32>, !dsv4.window_kv<128, 64, f32>)
    ```
  }];
  let arguments = (ins SymbolRefAttr:$kernel, Variadic<AnyType>:$args,
                       DenseI64ArrayAttr:$updates);
  let results = (outs Variadic<AnyType>:$results);
  let assemblyFormat = [{
    $kernel `(` $args `)` `updates` $updates attr-dict `:` functional-type($args, $results)
  }];
  let hasVerifier = 1;
}

#endif // COMPRESSA_DSV4_OPS
