// RUN: compressa-opt %s -split-input-file -verify-diagnostics
// Every verifier error of the dsv4 types, attributes and ops: one case per
// split block, each checking that the message names the offending value.

// expected-error @+1 {{f8E4M3FN weight needs block scales #dsv4.block_scale<f8E8M0FNU, [128, 128]>}}
func.func private @f(!dsv4.weight<tensor<24x64xf8E4M3FN>>)

// -----

// expected-error @+1 {{f4E2M1FN weight input width 48 is not a multiple of the 1x32 scale block}}
func.func private @f(!dsv4.weight<tensor<8x48xf4E2M1FN>, #dsv4.block_scale<f8E8M0FNU, [1, 32]>>)

// -----

// expected-error @+1 {{f4E2M1FN weight needs block scales #dsv4.block_scale<f8E8M0FNU, [1, 32]>}}
func.func private @f(!dsv4.weight<tensor<8x64xf4E2M1FN>, #dsv4.block_scale<f8E8M0FNU, [128, 128]>>)

// -----

// expected-error @+1 {{only f8E4M3FN and f4E2M1FN weights carry block scales}}
func.func private @f(!dsv4.weight<tensor<8x64xbf16>, #dsv4.block_scale<f8E8M0FNU, [128, 128]>>)

// -----

// expected-error @+1 {{weight shape must be static}}
func.func private @f(!dsv4.weight<tensor<?x64xbf16>>)

// -----

// expected-error @+1 {{unsupported weight element type 'i8'}}
func.func private @f(!dsv4.weight<tensor<8x64xi8>>)

// -----

// expected-error @+1 {{weight rank must be 1, 2 or 3}}
func.func private @f(!dsv4.weight<tensor<2x2x2x2xbf16>>)

// -----

// expected-error @+2 {{block scale block must be positive, got [0, 32]}}
// expected-error @+1 {{failed to parse DSV4_WeightType parameter 'scale'}}
func.func private @f(!dsv4.weight<tensor<8x64xf4E2M1FN>, #dsv4.block_scale<f8E8M0FNU, [0, 32]>>)

// -----

// expected-error @+1 {{window_kv needs a positive window and dim, got 0 and 32}}
func.func private @f(!dsv4.window_kv<0, 32, f32>)

// -----

// expected-error @+1 {{window_kv element type must be f32, bf16, f16 or f8E4M3FN, got 'i32'}}
func.func private @f(!dsv4.window_kv<16, 32, i32>)

// -----

// expected-error @+1 {{compressed_kv needs ratio > 1 and a positive dim, got 1 and 32}}
func.func private @f(!dsv4.compressed_kv<1, 32, f32>)

// -----

// expected-error @+1 {{indexer_keys needs ratio > 1 and a positive dim, got 4 and 0}}
func.func private @f(!dsv4.indexer_keys<4, 0, f32>)

// -----

// expected-error @+1 {{compressor_state needs ratio > 1 and a positive dim, got 0 and 32}}
func.func private @f(!dsv4.compressor_state<0, 32>)

// -----

func.func @f(%x: tensor<?x4x32xf32>, %p: index) {
  // expected-error @+1 {{rope dim must be positive and even, got 7}}
  %0 = dsv4.rope %x at %p {rope = #dsv4.rope<dim = 7, theta = 10000.0>} : tensor<?x4x32xf32>
  return
}

// -----

func.func @f(%x: tensor<?x4x32xf32>, %p: index) {
  // expected-error @+1 {{yarn factor must be > 1, got 5.000000e-01}}
  %0 = dsv4.rope %x at %p {rope = #dsv4.rope<dim = 8, theta = 10000.0, yarn = [0.5, 65536, 32.0, 1.0]>} : tensor<?x4x32xf32>
  return
}

// -----

func.func @f(%x: tensor<?x4x32xf32>, %p: index) {
  // expected-error @+1 {{yarn needs beta_fast >= beta_slow > 0}}
  %0 = dsv4.rope %x at %p {rope = #dsv4.rope<dim = 8, theta = 10000.0, yarn = [16.0, 65536, 1.0, 32.0]>} : tensor<?x4x32xf32>
  return
}

// -----

func.func @f() {
  // expected-error @+1 {{'name' must not be empty}}
  %0 = dsv4.param "" : !dsv4.weight<tensor<4xf32>>
  return
}

// -----

func.func @f() {
  // expected-error @+1 {{stands for a stack of experts, so the weight must have rank 3, got rank 2}}
  %0 = dsv4.param "layers.0.ffn.experts.*.w1.weight" : !dsv4.weight<tensor<32x64xbf16>>
  return
}

// -----

func.func @f() {
  // expected-error @+1 {{rank-3 weight "layers.0.ffn.w1" is a stack of experts; its name needs a '*' component}}
  %0 = dsv4.param "layers.0.ffn.w1" : !dsv4.weight<tensor<8x32x64xbf16>>
  return
}

// -----

func.func @f() {
  // expected-error @+1 {{may hold at most one '*', as a whole path component}}
  %0 = dsv4.param "layers.*.ffn.experts.*.w1" : !dsv4.weight<tensor<8x32x64xbf16>>
  return
}

// -----

func.func @f(%t: !dsv4.weight<tensor<512x64xbf16>>, %ids: tensor<?xi64>) {
  // expected-error @+1 {{'result' has shape [?, 32], expected [?, 64] ([tokens of 'ids', hidden of 'table'])}}
  %0 = dsv4.embed %t[%ids] : (!dsv4.weight<tensor<512x64xbf16>>, tensor<?xi64>) -> tensor<?x32xf32>
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %w: !dsv4.weight<tensor<32xbf16>>) {
  // expected-error @+1 {{'weight' has shape [32], expected [64] (the last dimension of 'x')}}
  %0 = dsv4.rms_norm %x weight(%w : !dsv4.weight<tensor<32xbf16>>) {eps = 1.0e-06 : f64} : tensor<?x64xf32>
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>) {
  // expected-error @+1 {{'eps' must be positive, got 0}}
  %0 = dsv4.rms_norm %x {eps = 0.0 : f64} : tensor<?x64xf32>
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>) {
  // expected-error @+1 {{'result' has shape [?, 4, 32], expected [?, 4, 64] ([S, N, D] with S and D of 'x')}}
  %0 = dsv4.hc.expand %x : tensor<?x64xf32> -> tensor<?x4x32xf32>
  return
}

// -----

func.func @f(%X: tensor<?x4x64xf32>, %fn: !dsv4.weight<tensor<24x64xf32>>, %b: !dsv4.weight<tensor<24xf32>>, %s: !dsv4.weight<tensor<3xf32>>) {
  // expected-error @+1 {{'fn' has shape [24, 64], expected [24, 256] ([(2 + N) N, N D])}}
  %0:3 = dsv4.hc.pre %X, %fn, %b, %s {hc_eps = 1.0e-06 : f64, norm_eps = 1.0e-06 : f64, sinkhorn_iters = 20 : i64}
      : (tensor<?x4x64xf32>, !dsv4.weight<tensor<24x64xf32>>, !dsv4.weight<tensor<24xf32>>, !dsv4.weight<tensor<3xf32>>)
      -> (tensor<?x64xf32>, tensor<?x4xf32>, tensor<?x4x4xf32>)
  return
}

// -----

func.func @f(%X: tensor<?x4x64xf32>, %fn: !dsv4.weight<tensor<24x256xf32>>, %b: !dsv4.weight<tensor<24xf32>>, %s: !dsv4.weight<tensor<3xf32>>) {
  // expected-error @+1 {{'sinkhorn_iters' failed to satisfy constraint}}
  %0:3 = dsv4.hc.pre %X, %fn, %b, %s {hc_eps = 1.0e-06 : f64, norm_eps = 1.0e-06 : f64, sinkhorn_iters = 0 : i64}
      : (tensor<?x4x64xf32>, !dsv4.weight<tensor<24x256xf32>>, !dsv4.weight<tensor<24xf32>>, !dsv4.weight<tensor<3xf32>>)
      -> (tensor<?x64xf32>, tensor<?x4xf32>, tensor<?x4x4xf32>)
  return
}

// -----

func.func @f(%a: tensor<?x64xf32>, %X: tensor<?x4x64xf32>, %p: tensor<?x4xf32>, %c: tensor<?x4x2xf32>) {
  // expected-error @+1 {{'comb' has shape [?, 4, 2], expected [?, 4, 4] ([S, N, N])}}
  %0 = dsv4.hc.post %a, %X, %p, %c : (tensor<?x64xf32>, tensor<?x4x64xf32>, tensor<?x4xf32>, tensor<?x4x2xf32>) -> tensor<?x4x64xf32>
  return
}

// -----

func.func @f(%X: tensor<?x4x64xf32>, %fn: !dsv4.weight<tensor<4x256xf32>>, %b: !dsv4.weight<tensor<4xf32>>, %s: !dsv4.weight<tensor<3xf32>>) {
  // expected-error @+1 {{'scale' has shape [3], expected [1] (one scale per mix part)}}
  %0 = dsv4.hc.head %X, %fn, %b, %s {hc_eps = 1.0e-06 : f64, norm_eps = 1.0e-06 : f64}
      : (tensor<?x4x64xf32>, !dsv4.weight<tensor<4x256xf32>>, !dsv4.weight<tensor<4xf32>>, !dsv4.weight<tensor<3xf32>>) -> tensor<?x64xf32>
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %a: !dsv4.weight<tensor<24x64xbf16>>, %n: !dsv4.weight<tensor<24xbf16>>, %b: !dsv4.weight<tensor<96x24xbf16>>) {
  // expected-error @+1 {{'wq_b' has shape [96, 24], expected [128, 24] ([H d of 'q', q_lora_rank])}}
  %0:2 = dsv4.attn.q_proj %x, %a, %n, %b {eps = 1.0e-06 : f64}
      : (tensor<?x64xf32>, !dsv4.weight<tensor<24x64xbf16>>, !dsv4.weight<tensor<24xbf16>>, !dsv4.weight<tensor<96x24xbf16>>) -> (tensor<?x4x32xf32>, tensor<?x24xf32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %w: !dsv4.weight<tensor<32x64xbf16>>, %n: !dsv4.weight<tensor<16xbf16>>) {
  // expected-error @+1 {{'kv_norm' has shape [16], expected [32] ([d])}}
  %0 = dsv4.attn.kv_proj %x, %w, %n {eps = 1.0e-06 : f64} : (tensor<?x64xf32>, !dsv4.weight<tensor<32x64xbf16>>, !dsv4.weight<tensor<16xbf16>>) -> tensor<?x32xf32>
  return
}

// -----

func.func @f(%x: tensor<?x4x32xf32>, %p: index) {
  // expected-error @+1 {{rope dim 64 exceeds the last dimension of 'x' (32)}}
  %0 = dsv4.rope %x at %p {rope = #dsv4.rope<dim = 64, theta = 10000.0>} : tensor<?x4x32xf32>
  return
}

// -----

func.func @f(%r: !dsv4.window_kv<16, 32, f32>, %kv: tensor<?x64xf32>, %p: index) {
  // expected-error @+1 {{'kv' has shape [?, 64], expected [?, 32] ([S, dim of 'ring'])}}
  %0 = dsv4.kv.window_update %r, %kv at %p : !dsv4.window_kv<16, 32, f32>, tensor<?x64xf32>
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %wkv: !dsv4.weight<tensor<64x64xbf16>>, %wg: !dsv4.weight<tensor<64x64xbf16>>,
             %ape: !dsv4.weight<tensor<4x64xf32>>, %n: !dsv4.weight<tensor<32xbf16>>, %st: !dsv4.compressor_state<4, 32, overlap>, %e: !dsv4.compressed_kv<16, 32, f32>, %p: index) {
  // expected-error @+1 {{'state' '!dsv4.compressor_state<4, 32, overlap>' does not match 'entries' '!dsv4.compressed_kv<16, 32, f32>' (ratio and dim must agree)}}
  %0:2 = dsv4.kv.compress %x, %wkv, %wg, %ape, %n, %st, %e, %p {eps = 1.0e-06 : f64, rope = #dsv4.rope<dim = 8, theta = 160000.0>}
      : (tensor<?x64xf32>, !dsv4.weight<tensor<64x64xbf16>>, !dsv4.weight<tensor<64x64xbf16>>, !dsv4.weight<tensor<4x64xf32>>,
         !dsv4.weight<tensor<32xbf16>>, !dsv4.compressor_state<4, 32, overlap>, !dsv4.compressed_kv<16, 32, f32>, index) -> (!dsv4.compressor_state<4, 32, overlap>, !dsv4.compressed_kv<16, 32, f32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %wkv: !dsv4.weight<tensor<32x64xbf16>>, %wg: !dsv4.weight<tensor<32x64xbf16>>,
             %ape: !dsv4.weight<tensor<4x32xf32>>, %n: !dsv4.weight<tensor<32xbf16>>, %st: !dsv4.compressor_state<4, 32>, %e: !dsv4.indexer_keys<4, 32, f32>, %p: index) {
  // expected-error @+1 {{indexer keys come from an overlapping (CSA) compressor}}
  %0:2 = dsv4.kv.compress %x, %wkv, %wg, %ape, %n, %st, %e, %p {eps = 1.0e-06 : f64, rope = #dsv4.rope<dim = 8, theta = 160000.0>}
      : (tensor<?x64xf32>, !dsv4.weight<tensor<32x64xbf16>>, !dsv4.weight<tensor<32x64xbf16>>, !dsv4.weight<tensor<4x32xf32>>,
         !dsv4.weight<tensor<32xbf16>>, !dsv4.compressor_state<4, 32>, !dsv4.indexer_keys<4, 32, f32>, index) -> (!dsv4.compressor_state<4, 32>, !dsv4.indexer_keys<4, 32, f32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %wkv: !dsv4.weight<tensor<32x64xbf16>>, %wg: !dsv4.weight<tensor<32x64xbf16>>,
             %ape: !dsv4.weight<tensor<4x32xf32>>, %n: !dsv4.weight<tensor<32xbf16>>, %st: !dsv4.compressor_state<4, 32, overlap>, %e: !dsv4.compressed_kv<4, 32, f32>, %p: index) {
  // expected-error @+1 {{'wkv' has shape [32, 64], expected [64, 64] ([2 dim, D]: an overlapping compressor projects both halves)}}
  %0:2 = dsv4.kv.compress %x, %wkv, %wg, %ape, %n, %st, %e, %p {eps = 1.0e-06 : f64, rope = #dsv4.rope<dim = 8, theta = 160000.0>}
      : (tensor<?x64xf32>, !dsv4.weight<tensor<32x64xbf16>>, !dsv4.weight<tensor<32x64xbf16>>, !dsv4.weight<tensor<4x32xf32>>,
         !dsv4.weight<tensor<32xbf16>>, !dsv4.compressor_state<4, 32, overlap>, !dsv4.compressed_kv<4, 32, f32>, index) -> (!dsv4.compressor_state<4, 32, overlap>, !dsv4.compressed_kv<4, 32, f32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %wkv: !dsv4.weight<tensor<32x64xbf16>>, %wg: !dsv4.weight<tensor<32x64xbf16>>,
             %ape: !dsv4.weight<tensor<8x32xf32>>, %n: !dsv4.weight<tensor<32xbf16>>, %st: !dsv4.compressor_state<16, 32>, %e: !dsv4.compressed_kv<16, 32, f32>, %p: index) {
  // expected-error @+1 {{'ape' has shape [8, 32], expected [16, 32] ([ratio, projection width])}}
  %0:2 = dsv4.kv.compress %x, %wkv, %wg, %ape, %n, %st, %e, %p {eps = 1.0e-06 : f64, rope = #dsv4.rope<dim = 8, theta = 160000.0>}
      : (tensor<?x64xf32>, !dsv4.weight<tensor<32x64xbf16>>, !dsv4.weight<tensor<32x64xbf16>>, !dsv4.weight<tensor<8x32xf32>>,
         !dsv4.weight<tensor<32xbf16>>, !dsv4.compressor_state<16, 32>, !dsv4.compressed_kv<16, 32, f32>, index) -> (!dsv4.compressor_state<16, 32>, !dsv4.compressed_kv<16, 32, f32>)
  return
}

// -----

func.func @f(%qr: tensor<?x24xf32>, %x: tensor<?x64xf32>, %wq: !dsv4.weight<tensor<128x24xbf16>>, %wp: !dsv4.weight<tensor<16x64xbf16>>,
             %k: !dsv4.indexer_keys<4, 16, f32>, %p: index) {
  // expected-error @+1 {{'wq_b' has shape [128, 24], expected [256, 24] ([heads x index_head_dim, q_lora_rank])}}
  %0 = dsv4.attn.indexer_topk %qr, %x, %wq, %wp, %k, %p {heads = 16 : i64, rope = #dsv4.rope<dim = 8, theta = 160000.0>, topk = 8 : i64}
      : (tensor<?x24xf32>, tensor<?x64xf32>, !dsv4.weight<tensor<128x24xbf16>>, !dsv4.weight<tensor<16x64xbf16>>, !dsv4.indexer_keys<4, 16, f32>, index) -> tensor<?x8xi32>
  return
}

// -----

func.func @f(%qr: tensor<?x24xf32>, %x: tensor<?x64xf32>, %wq: !dsv4.weight<tensor<256x24xbf16>>, %wp: !dsv4.weight<tensor<16x64xbf16>>,
             %k: !dsv4.indexer_keys<4, 16, f32>, %p: index) {
  // expected-error @+1 {{'indices' has shape [?, 4], expected [?, 8] ([S, topk])}}
  %0 = dsv4.attn.indexer_topk %qr, %x, %wq, %wp, %k, %p {heads = 16 : i64, rope = #dsv4.rope<dim = 8, theta = 160000.0>, topk = 8 : i64}
      : (tensor<?x24xf32>, tensor<?x64xf32>, !dsv4.weight<tensor<256x24xbf16>>, !dsv4.weight<tensor<16x64xbf16>>, !dsv4.indexer_keys<4, 16, f32>, index) -> tensor<?x4xi32>
  return
}

// -----

func.func @f(%q: tensor<?x4x32xf32>, %kv: tensor<?x32xf32>, %r: !dsv4.window_kv<16, 32, f32>, %p: index, %s: !dsv4.weight<tensor<4xf32>>,
             %e: !dsv4.compressed_kv<4, 32, f32>, %i: tensor<?x8xi32>) {
  // expected-error @+1 {{'topk' selects compressed entries, so 'entries' must be given}}
  %0 = dsv4.attn.sparse %q, %kv, %r at %p sink(%s) topk(%i) {scale = 0.17 : f64}
      : (tensor<?x4x32xf32>, tensor<?x32xf32>, !dsv4.window_kv<16, 32, f32>, index, !dsv4.weight<tensor<4xf32>>, tensor<?x8xi32>) -> tensor<?x4x32xf32>
  return
}

// -----

func.func @f(%q: tensor<?x4x32xf32>, %kv: tensor<?x32xf32>, %r: !dsv4.window_kv<16, 32, f32>, %p: index, %s: !dsv4.weight<tensor<8xf32>>,
             %e: !dsv4.compressed_kv<4, 32, f32>, %i: tensor<?x8xi32>) {
  // expected-error @+1 {{'sink' has shape [8], expected [4] (one logit per head)}}
  %0 = dsv4.attn.sparse %q, %kv, %r at %p sink(%s)  {scale = 0.17 : f64}
      : (tensor<?x4x32xf32>, tensor<?x32xf32>, !dsv4.window_kv<16, 32, f32>, index, !dsv4.weight<tensor<8xf32>>) -> tensor<?x4x32xf32>
  return
}

// -----

func.func @f(%q: tensor<?x4x32xf32>, %kv: tensor<?x32xf32>, %r: !dsv4.window_kv<16, 32, f32>, %p: index, %s: !dsv4.weight<tensor<4xf32>>,
             %e: !dsv4.compressed_kv<4, 64, f32>, %i: tensor<?x8xi32>) {
  // expected-error @+1 {{'entries' '!dsv4.compressed_kv<4, 64, f32>' hold 64 channels, but 'q' has head dim 32}}
  %0 = dsv4.attn.sparse %q, %kv, %r at %p sink(%s) entries(%e) {scale = 0.17 : f64}
      : (tensor<?x4x32xf32>, tensor<?x32xf32>, !dsv4.window_kv<16, 32, f32>, index, !dsv4.weight<tensor<4xf32>>, !dsv4.compressed_kv<4, 64, f32>) -> tensor<?x4x32xf32>
  return
}

// -----

func.func @f(%q: tensor<?x4x32xf32>, %kv: tensor<?x32xf32>, %r: !dsv4.window_kv<16, 64, f32>, %p: index, %s: !dsv4.weight<tensor<4xf32>>,
             %e: !dsv4.compressed_kv<4, 32, f32>, %i: tensor<?x8xi32>) {
  // expected-error @+1 {{'ring' '!dsv4.window_kv<16, 64, f32>' holds vectors of 64 channels, but 'q' has head dim 32}}
  %0 = dsv4.attn.sparse %q, %kv, %r at %p sink(%s)  {scale = 0.17 : f64}
      : (tensor<?x4x32xf32>, tensor<?x32xf32>, !dsv4.window_kv<16, 64, f32>, index, !dsv4.weight<tensor<4xf32>>) -> tensor<?x4x32xf32>
  return
}

// -----

func.func @f(%o: tensor<?x4x32xf32>, %a: !dsv4.weight<tensor<48x64xbf16>>, %b: !dsv4.weight<tensor<64x48xbf16>>) {
  // expected-error @+1 {{'groups' (3) must divide the 4 heads of 'o'}}
  %0 = dsv4.attn.out_proj %o, %a, %b {groups = 3 : i64} : (tensor<?x4x32xf32>, !dsv4.weight<tensor<48x64xbf16>>, !dsv4.weight<tensor<64x48xbf16>>) -> tensor<?x64xf32>
  return
}

// -----

func.func @f(%o: tensor<?x4x32xf32>, %a: !dsv4.weight<tensor<32x32xbf16>>, %b: !dsv4.weight<tensor<64x32xbf16>>) {
  // expected-error @+1 {{'wo_a' has shape [32, 32], expected [32, 64] ([G R_o, (H/G) d])}}
  %0 = dsv4.attn.out_proj %o, %a, %b {groups = 2 : i64} : (tensor<?x4x32xf32>, !dsv4.weight<tensor<32x32xbf16>>, !dsv4.weight<tensor<64x32xbf16>>) -> tensor<?x64xf32>
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %w: !dsv4.weight<tensor<8x64xbf16>>, %b: !dsv4.weight<tensor<8xf32>>) {
  // expected-error @+1 {{'topk' (9) exceeds the 8 experts of 'w'}}
  %0:2 = dsv4.moe.gate %x, %w, %b {route_scale = 1.5 : f64, topk = 9 : i64}
      : (tensor<?x64xf32>, !dsv4.weight<tensor<8x64xbf16>>, !dsv4.weight<tensor<8xf32>>) -> (tensor<?x9xf32>, tensor<?x9xi32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %w: !dsv4.weight<tensor<8x64xbf16>>, %b: !dsv4.weight<tensor<7xf32>>) {
  // expected-error @+1 {{'bias' has shape [7], expected [8] ([E])}}
  %0:2 = dsv4.moe.gate %x, %w, %b {route_scale = 1.5 : f64, topk = 2 : i64}
      : (tensor<?x64xf32>, !dsv4.weight<tensor<8x64xbf16>>, !dsv4.weight<tensor<7xf32>>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %w: !dsv4.weight<tensor<8x64xbf16>>, %t: !dsv4.weight<tensor<512x2xi32>>, %ids: tensor<?xi64>) {
  // expected-error @+1 {{'tid2eid' must hold i64 expert ids}}
  %0:2 = dsv4.moe.hash_gate %x, %w, %t, %ids {route_scale = 1.5 : f64}
      : (tensor<?x64xf32>, !dsv4.weight<tensor<8x64xbf16>>, !dsv4.weight<tensor<512x2xi32>>, tensor<?xi64>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %wt: tensor<?x2xf32>, %ids: tensor<?x2xi32>, %w1: !dsv4.weight<tensor<8x32x64xbf16>>, %w2: !dsv4.weight<tensor<8x32x64xbf16>>) {
  // expected-error @+1 {{'w2' has shape [8, 32, 64], expected [8, 64, 32] ([E, D, I])}}
  %0 = dsv4.moe.experts %x, %wt, %ids, %w1, %w1, %w2 {swiglu_limit = 10.0 : f64}
      : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, !dsv4.weight<tensor<8x32x64xbf16>>, !dsv4.weight<tensor<8x32x64xbf16>>, !dsv4.weight<tensor<8x32x64xbf16>>) -> tensor<?x64xf32>
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %w1: !dsv4.weight<tensor<32x64xbf16>>) {
  // expected-error @+1 {{'w2' has shape [32, 64], expected [64, 32] ([D, I])}}
  %0 = dsv4.moe.shared_expert %x, %w1, %w1, %w1 {swiglu_limit = 10.0 : f64}
      : (tensor<?x64xf32>, !dsv4.weight<tensor<32x64xbf16>>, !dsv4.weight<tensor<32x64xbf16>>, !dsv4.weight<tensor<32x64xbf16>>) -> tensor<?x64xf32>
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %w1: !dsv4.weight<tensor<32x64xbf16>>, %w2: !dsv4.weight<tensor<64x32xbf16>>) {
  // expected-error @+1 {{'swiglu_limit' must be positive, got -1}}
  %0 = dsv4.moe.shared_expert %x, %w1, %w1, %w2 {swiglu_limit = -1.0 : f64}
      : (tensor<?x64xf32>, !dsv4.weight<tensor<32x64xbf16>>, !dsv4.weight<tensor<32x64xbf16>>, !dsv4.weight<tensor<64x32xbf16>>) -> tensor<?x64xf32>
  return
}

// -----

func.func @f(%y: tensor<?x64xf32>, %h: !dsv4.weight<tensor<512x32xbf16>>) {
  // expected-error @+1 {{'head' has shape [512, 32], expected [512, 64] ([V, D of 'y'])}}
  %0 = dsv4.lm_head %y, %h : (tensor<?x64xf32>, !dsv4.weight<tensor<512x32xbf16>>) -> tensor<?x512xf32>
  return
}

// -----

func.func @f(%e: tensor<?x64xf32>, %X: tensor<?x4x64xf32>, %n: !dsv4.weight<tensor<64xbf16>>, %p: !dsv4.weight<tensor<64x32xbf16>>) {
  // expected-error @+1 {{'e_proj' has shape [64, 32], expected [64, 64] ([D, D])}}
  %0 = dsv4.mtp.project %e, %X, %n, %n, %p, %p {eps = 1.0e-06 : f64}
      : (tensor<?x64xf32>, tensor<?x4x64xf32>, !dsv4.weight<tensor<64xbf16>>, !dsv4.weight<tensor<64xbf16>>, !dsv4.weight<tensor<64x32xbf16>>, !dsv4.weight<tensor<64x32xbf16>>) -> tensor<?x4x64xf32>
  return
}
