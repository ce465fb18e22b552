// RUN: compressa-opt %s | compressa-opt | FileCheck %s
// RUN: compressa-opt %s --mlir-print-op-generic | compressa-opt | FileCheck %s
// Round trip of every dsv4 op, type and attribute, in the custom and the
// generic form. Shapes are those of a tiny model: D=64, H=4, d=32, r=8,
// q_lora_rank=24, N=4 streams, 8 experts of width 32, vocab 512.

!fp8_q_a = !dsv4.weight<tensor<24x64xf8E4M3FN>, #dsv4.block_scale<f8E8M0FNU, [128, 128]>>
!fp8_q_b = !dsv4.weight<tensor<128x24xf8E4M3FN>, #dsv4.block_scale<f8E8M0FNU, [128, 128]>>
!fp4_up = !dsv4.weight<tensor<8x32x64xf4E2M1FN>, #dsv4.block_scale<f8E8M0FNU, [1, 32]>>
!fp4_down = !dsv4.weight<tensor<8x64x32xf4E2M1FN>, #dsv4.block_scale<f8E8M0FNU, [1, 32]>>

// CHECK-LABEL: func.func @weights
func.func @weights() {
  // CHECK: dsv4.param "layers.0.attn.wq_a.weight" : !dsv4.weight<tensor<24x64xf8E4M3FN>, #dsv4.block_scale<f8E8M0FNU, [128, 128]>>
  %0 = dsv4.param "layers.0.attn.wq_a.weight" : !fp8_q_a
  // CHECK: dsv4.param "layers.0.ffn.experts.*.w1.weight" : !dsv4.weight<tensor<8x32x64xf4E2M1FN>, #dsv4.block_scale<f8E8M0FNU, [1, 32]>>
  %1 = dsv4.param "layers.0.ffn.experts.*.w1.weight" : !fp4_up
  // CHECK: dsv4.param "layers.0.ffn.gate.tid2eid" : !dsv4.weight<tensor<512x2xi64>>
  %2 = dsv4.param "layers.0.ffn.gate.tid2eid" : !dsv4.weight<tensor<512x2xi64>>
  // CHECK: dsv4.param "norm.weight" : !dsv4.weight<tensor<64xbf16>>
  %3 = dsv4.param "norm.weight" : !dsv4.weight<tensor<64xbf16>>
  return
}

// CHECK-LABEL: func.func @state_types
// CHECK-SAME: !dsv4.window_kv<16, 32, f32>
// CHECK-SAME: !dsv4.compressor_state<4, 32, overlap>
// CHECK-SAME: !dsv4.compressed_kv<4, 32, bf16>
// CHECK-SAME: !dsv4.compressor_state<16, 32>
// CHECK-SAME: !dsv4.indexer_keys<4, 16, f32>
func.func @state_types(%a: !dsv4.window_kv<16, 32, f32>,
                       %b: !dsv4.compressor_state<4, 32, overlap>,
                       %c: !dsv4.compressed_kv<4, 32, bf16>,
                       %d: !dsv4.compressor_state<16, 32>,
                       %e: !dsv4.indexer_keys<4, 16, f32>) {
  return
}

// CHECK-LABEL: func.func @embed_norm_hc
func.func @embed_norm_hc(%ids: tensor<?xi64>) -> tensor<?x4x64xf32> {
  %table = dsv4.param "embed.weight" : !dsv4.weight<tensor<512x64xbf16>>
  // CHECK: %[[H:.*]] = dsv4.embed %{{.*}}[%{{.*}}] : (!dsv4.weight<tensor<512x64xbf16>>, tensor<?xi64>) -> tensor<?x64xf32>
  %h = dsv4.embed %table[%ids] : (!dsv4.weight<tensor<512x64xbf16>>, tensor<?xi64>) -> tensor<?x64xf32>
  // CHECK: %[[X:.*]] = dsv4.hc.expand %[[H]] : tensor<?x64xf32> -> tensor<?x4x64xf32>
  %X = dsv4.hc.expand %h : tensor<?x64xf32> -> tensor<?x4x64xf32>
  %fn = dsv4.param "layers.0.hc_attn_fn" : !dsv4.weight<tensor<24x256xf32>>
  %base = dsv4.param "layers.0.hc_attn_base" : !dsv4.weight<tensor<24xf32>>
  %scale = dsv4.param "layers.0.hc_attn_scale" : !dsv4.weight<tensor<3xf32>>
  // CHECK: %[[XIN:.*]], %[[POST:.*]], %[[COMB:.*]] = dsv4.hc.pre %[[X]], {{.*}} {hc_eps = 9.9999999999999995E-7 : f64, norm_eps = 9.9999999999999995E-7 : f64, sinkhorn_iters = 20 : i64}
  %x, %post, %comb = dsv4.hc.pre %X, %fn, %base, %scale {hc_eps = 1.0e-06 : f64, norm_eps = 1.0e-06 : f64, sinkhorn_iters = 20 : i64}
      : (tensor<?x4x64xf32>, !dsv4.weight<tensor<24x256xf32>>, !dsv4.weight<tensor<24xf32>>, !dsv4.weight<tensor<3xf32>>)
      -> (tensor<?x64xf32>, tensor<?x4xf32>, tensor<?x4x4xf32>)
  %w = dsv4.param "layers.0.attn_norm.weight" : !dsv4.weight<tensor<64xbf16>>
  // CHECK: dsv4.rms_norm %[[XIN]] weight(%{{.*}} : !dsv4.weight<tensor<64xbf16>>) {eps = 9.9999999999999995E-7 : f64} : tensor<?x64xf32>
  %xn = dsv4.rms_norm %x weight(%w : !dsv4.weight<tensor<64xbf16>>) {eps = 1.0e-06 : f64} : tensor<?x64xf32>
  // CHECK: dsv4.rms_norm %{{.*}} {eps = 9.9999999999999995E-7 : f64} : tensor<?x64xf32>
  %xu = dsv4.rms_norm %xn {eps = 1.0e-06 : f64} : tensor<?x64xf32>
  // CHECK: dsv4.hc.post %{{.*}}, %[[X]], %[[POST]], %[[COMB]] : (tensor<?x64xf32>, tensor<?x4x64xf32>, tensor<?x4xf32>, tensor<?x4x4xf32>) -> tensor<?x4x64xf32>
  %X2 = dsv4.hc.post %xu, %X, %post, %comb : (tensor<?x64xf32>, tensor<?x4x64xf32>, tensor<?x4xf32>, tensor<?x4x4xf32>) -> tensor<?x4x64xf32>
  return %X2 : tensor<?x4x64xf32>
}

// CHECK-LABEL: func.func @head
func.func @head(%X: tensor<?x4x64xf32>) -> tensor<?x512xf32> {
  %fn = dsv4.param "hc_head_fn" : !dsv4.weight<tensor<4x256xf32>>
  %base = dsv4.param "hc_head_base" : !dsv4.weight<tensor<4xf32>>
  %scale = dsv4.param "hc_head_scale" : !dsv4.weight<tensor<1xf32>>
  // CHECK: dsv4.hc.head
  %y = dsv4.hc.head %X, %fn, %base, %scale {hc_eps = 1.0e-06 : f64, norm_eps = 1.0e-06 : f64}
      : (tensor<?x4x64xf32>, !dsv4.weight<tensor<4x256xf32>>, !dsv4.weight<tensor<4xf32>>, !dsv4.weight<tensor<1xf32>>) -> tensor<?x64xf32>
  %hw = dsv4.param "head.weight" : !dsv4.weight<tensor<512x64xbf16>>
  // CHECK: dsv4.lm_head %{{.*}}, %{{.*}} : (tensor<?x64xf32>, !dsv4.weight<tensor<512x64xbf16>>) -> tensor<?x512xf32>
  %logits = dsv4.lm_head %y, %hw : (tensor<?x64xf32>, !dsv4.weight<tensor<512x64xbf16>>) -> tensor<?x512xf32>
  return %logits : tensor<?x512xf32>
}

// CHECK-LABEL: func.func @attention_csa
func.func @attention_csa(%x: tensor<?x64xf32>, %pos: index,
                         %ring: !dsv4.window_kv<16, 32, f32>,
                         %cst: !dsv4.compressor_state<4, 32, overlap>,
                         %ent: !dsv4.compressed_kv<4, 32, f32>,
                         %ist: !dsv4.compressor_state<4, 16, overlap>,
                         %keys: !dsv4.indexer_keys<4, 16, f32>) -> tensor<?x64xf32> {
  %wqa = dsv4.param "layers.1.attn.wq_a.weight" : !fp8_q_a
  %qn = dsv4.param "layers.1.attn.q_norm.weight" : !dsv4.weight<tensor<24xbf16>>
  %wqb = dsv4.param "layers.1.attn.wq_b.weight" : !fp8_q_b
  // CHECK: %[[Q:.*]], %[[QR:.*]] = dsv4.attn.q_proj
  %q, %qr = dsv4.attn.q_proj %x, %wqa, %qn, %wqb {eps = 1.0e-06 : f64}
      : (tensor<?x64xf32>, !fp8_q_a, !dsv4.weight<tensor<24xbf16>>, !fp8_q_b) -> (tensor<?x4x32xf32>, tensor<?x24xf32>)
  // CHECK: dsv4.rope %[[Q]] at %{{.*}} {rope = #dsv4.rope<dim = 8, theta = 1.600000e+05, yarn = [1.600000e+01, 65536, 3.200000e+01, 1.000000e+00]>} : tensor<?x4x32xf32>
  %qr2 = dsv4.rope %q at %pos {rope = #dsv4.rope<dim = 8, theta = 160000.0, yarn = [16.0, 65536, 32.0, 1.0]>} : tensor<?x4x32xf32>
  %wkv = dsv4.param "layers.1.attn.wkv.weight" : !dsv4.weight<tensor<32x64xbf16>>
  %kvn = dsv4.param "layers.1.attn.kv_norm.weight" : !dsv4.weight<tensor<32xbf16>>
  // CHECK: dsv4.attn.kv_proj
  %kv = dsv4.attn.kv_proj %x, %wkv, %kvn {eps = 1.0e-06 : f64}
      : (tensor<?x64xf32>, !dsv4.weight<tensor<32x64xbf16>>, !dsv4.weight<tensor<32xbf16>>) -> tensor<?x32xf32>
  %iwkv = dsv4.param "layers.1.attn.indexer.compressor.wkv.weight" : !dsv4.weight<tensor<32x64xbf16>>
  %iwg = dsv4.param "layers.1.attn.indexer.compressor.wgate.weight" : !dsv4.weight<tensor<32x64xbf16>>
  %iape = dsv4.param "layers.1.attn.indexer.compressor.ape" : !dsv4.weight<tensor<4x32xf32>>
  %inorm = dsv4.param "layers.1.attn.indexer.compressor.norm.weight" : !dsv4.weight<tensor<16xbf16>>
  // CHECK: dsv4.kv.compress {{.*}} -> (!dsv4.compressor_state<4, 16, overlap>, !dsv4.indexer_keys<4, 16, f32>)
  %ist2, %keys2 = dsv4.kv.compress %x, %iwkv, %iwg, %iape, %inorm, %ist, %keys, %pos
      {eps = 1.0e-06 : f64, rope = #dsv4.rope<dim = 8, theta = 160000.0, yarn = [16.0, 65536, 32.0, 1.0]>}
      : (tensor<?x64xf32>, !dsv4.weight<tensor<32x64xbf16>>, !dsv4.weight<tensor<32x64xbf16>>, !dsv4.weight<tensor<4x32xf32>>,
         !dsv4.weight<tensor<16xbf16>>, !dsv4.compressor_state<4, 16, overlap>, !dsv4.indexer_keys<4, 16, f32>, index)
      -> (!dsv4.compressor_state<4, 16, overlap>, !dsv4.indexer_keys<4, 16, f32>)
  %iwqb = dsv4.param "layers.1.attn.indexer.wq_b.weight" : !dsv4.weight<tensor<256x24xbf16>>
  %iwp = dsv4.param "layers.1.attn.indexer.weights_proj.weight" : !dsv4.weight<tensor<16x64xbf16>>
  // CHECK: %[[IDX:.*]] = dsv4.attn.indexer_topk %[[QR]], {{.*}} {heads = 16 : i64, rope = #dsv4.rope<{{.*}}>, topk = 8 : i64} {{.*}} -> tensor<?x8xi32>
  %idx = dsv4.attn.indexer_topk %qr, %x, %iwqb, %iwp, %keys2, %pos {heads = 16 : i64, rope = #dsv4.rope<dim = 8, theta = 160000.0, yarn = [16.0, 65536, 32.0, 1.0]>, topk = 8 : i64}
      : (tensor<?x24xf32>, tensor<?x64xf32>, !dsv4.weight<tensor<256x24xbf16>>, !dsv4.weight<tensor<16x64xbf16>>, !dsv4.indexer_keys<4, 16, f32>, index) -> tensor<?x8xi32>
  %cwkv = dsv4.param "layers.1.attn.compressor.wkv.weight" : !dsv4.weight<tensor<64x64xbf16>>
  %cwg = dsv4.param "layers.1.attn.compressor.wgate.weight" : !dsv4.weight<tensor<64x64xbf16>>
  %cape = dsv4.param "layers.1.attn.compressor.ape" : !dsv4.weight<tensor<4x64xf32>>
  %cnorm = dsv4.param "layers.1.attn.compressor.norm.weight" : !dsv4.weight<tensor<32xbf16>>
  %cst2, %ent2 = dsv4.kv.compress %x, %cwkv, %cwg, %cape, %cnorm, %cst, %ent, %pos
      {eps = 1.0e-06 : f64, rope = #dsv4.rope<dim = 8, theta = 160000.0, yarn = [16.0, 65536, 32.0, 1.0]>}
      : (tensor<?x64xf32>, !dsv4.weight<tensor<64x64xbf16>>, !dsv4.weight<tensor<64x64xbf16>>, !dsv4.weight<tensor<4x64xf32>>,
         !dsv4.weight<tensor<32xbf16>>, !dsv4.compressor_state<4, 32, overlap>, !dsv4.compressed_kv<4, 32, f32>, index)
      -> (!dsv4.compressor_state<4, 32, overlap>, !dsv4.compressed_kv<4, 32, f32>)
  %sink = dsv4.param "layers.1.attn.attn_sink" : !dsv4.weight<tensor<4xf32>>
  // CHECK: %[[O:.*]] = dsv4.attn.sparse %{{.*}}, %{{.*}}, %{{.*}} at %{{.*}} sink(%{{.*}}) entries(%{{.*}}) topk(%[[IDX]]) {scale = 0.17677669529663687 : f64}
  %o = dsv4.attn.sparse %qr2, %kv, %ring at %pos sink(%sink) entries(%ent2) topk(%idx) {scale = 0.17677669529663687 : f64}
      : (tensor<?x4x32xf32>, tensor<?x32xf32>, !dsv4.window_kv<16, 32, f32>, index, !dsv4.weight<tensor<4xf32>>,
         !dsv4.compressed_kv<4, 32, f32>, tensor<?x8xi32>) -> tensor<?x4x32xf32>
  // CHECK: dsv4.attn.sparse %{{.*}}, %{{.*}}, %{{.*}} at %{{.*}} sink(%{{.*}}) {scale
  %o2 = dsv4.attn.sparse %qr2, %kv, %ring at %pos sink(%sink) {scale = 0.17677669529663687 : f64}
      : (tensor<?x4x32xf32>, tensor<?x32xf32>, !dsv4.window_kv<16, 32, f32>, index, !dsv4.weight<tensor<4xf32>>) -> tensor<?x4x32xf32>
  // CHECK: dsv4.kv.window_update %{{.*}}, %{{.*}} at %{{.*}} : !dsv4.window_kv<16, 32, f32>, tensor<?x32xf32>
  %ring2 = dsv4.kv.window_update %ring, %kv at %pos : !dsv4.window_kv<16, 32, f32>, tensor<?x32xf32>
  // CHECK: dsv4.rope %[[O]] at %{{.*}} {inverse, rope = #dsv4.rope<dim = 8, theta = 1.000000e+04>}
  %o3 = dsv4.rope %o at %pos {inverse, rope = #dsv4.rope<dim = 8, theta = 10000.0>} : tensor<?x4x32xf32>
  %woa = dsv4.param "layers.1.attn.wo_a.weight" : !dsv4.weight<tensor<32x64xbf16>>
  %wob = dsv4.param "layers.1.attn.wo_b.weight" : !dsv4.weight<tensor<64x32xbf16>>
  // CHECK: dsv4.attn.out_proj {{.*}} {groups = 2 : i64}
  %out = dsv4.attn.out_proj %o3, %woa, %wob {groups = 2 : i64}
      : (tensor<?x4x32xf32>, !dsv4.weight<tensor<32x64xbf16>>, !dsv4.weight<tensor<64x32xbf16>>) -> tensor<?x64xf32>
  return %out : tensor<?x64xf32>
}

// CHECK-LABEL: func.func @moe
func.func @moe(%x: tensor<?x64xf32>, %tokens: tensor<?xi64>) -> tensor<?x64xf32> {
  %gw = dsv4.param "layers.3.ffn.gate.weight" : !dsv4.weight<tensor<8x64xbf16>>
  %gb = dsv4.param "layers.3.ffn.gate.bias" : !dsv4.weight<tensor<8xf32>>
  // CHECK: dsv4.moe.gate {{.*}} {route_scale = 1.500000e+00 : f64, topk = 2 : i64}
  %wts, %ids = dsv4.moe.gate %x, %gw, %gb {route_scale = 1.5 : f64, topk = 2 : i64}
      : (tensor<?x64xf32>, !dsv4.weight<tensor<8x64xbf16>>, !dsv4.weight<tensor<8xf32>>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
  %t2e = dsv4.param "layers.0.ffn.gate.tid2eid" : !dsv4.weight<tensor<512x2xi64>>
  // CHECK: dsv4.moe.hash_gate
  %hw, %hids = dsv4.moe.hash_gate %x, %gw, %t2e, %tokens {route_scale = 1.5 : f64}
      : (tensor<?x64xf32>, !dsv4.weight<tensor<8x64xbf16>>, !dsv4.weight<tensor<512x2xi64>>, tensor<?xi64>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
  %w1 = dsv4.param "layers.3.ffn.experts.*.w1.weight" : !fp4_up
  %w3 = dsv4.param "layers.3.ffn.experts.*.w3.weight" : !fp4_up
  %w2 = dsv4.param "layers.3.ffn.experts.*.w2.weight" : !fp4_down
  // CHECK: dsv4.moe.experts {{.*}} {swiglu_limit = 1.000000e+01 : f64}
  %y = dsv4.moe.experts %x, %wts, %ids, %w1, %w3, %w2 {swiglu_limit = 10.0 : f64}
      : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, !fp4_up, !fp4_up, !fp4_down) -> tensor<?x64xf32>
  %s1 = dsv4.param "layers.3.ffn.shared_experts.w1.weight" : !dsv4.weight<tensor<32x64xbf16>>
  %s3 = dsv4.param "layers.3.ffn.shared_experts.w3.weight" : !dsv4.weight<tensor<32x64xbf16>>
  %s2 = dsv4.param "layers.3.ffn.shared_experts.w2.weight" : !dsv4.weight<tensor<64x32xbf16>>
  // CHECK: dsv4.moe.shared_expert
  %s = dsv4.moe.shared_expert %x, %s1, %s3, %s2 {swiglu_limit = 10.0 : f64}
      : (tensor<?x64xf32>, !dsv4.weight<tensor<32x64xbf16>>, !dsv4.weight<tensor<32x64xbf16>>, !dsv4.weight<tensor<64x32xbf16>>) -> tensor<?x64xf32>
  %sum = arith.addf %y, %s : tensor<?x64xf32>
  return %sum : tensor<?x64xf32>
}

// CHECK-LABEL: func.func @mtp
func.func @mtp(%e: tensor<?x64xf32>, %X: tensor<?x4x64xf32>) -> tensor<?x4x64xf32> {
  %en = dsv4.param "mtp.0.enorm.weight" : !dsv4.weight<tensor<64xbf16>>
  %hn = dsv4.param "mtp.0.hnorm.weight" : !dsv4.weight<tensor<64xbf16>>
  %ep = dsv4.param "mtp.0.e_proj.weight" : !dsv4.weight<tensor<64x64xf8E4M3FN>, #dsv4.block_scale<f8E8M0FNU, [128, 128]>>
  %hp = dsv4.param "mtp.0.h_proj.weight" : !dsv4.weight<tensor<64x64xf8E4M3FN>, #dsv4.block_scale<f8E8M0FNU, [128, 128]>>
  // CHECK: dsv4.mtp.project
  %r = dsv4.mtp.project %e, %X, %en, %hn, %ep, %hp {eps = 1.0e-06 : f64}
      : (tensor<?x64xf32>, tensor<?x4x64xf32>, !dsv4.weight<tensor<64xbf16>>, !dsv4.weight<tensor<64xbf16>>,
         !dsv4.weight<tensor<64x64xf8E4M3FN>, #dsv4.block_scale<f8E8M0FNU, [128, 128]>>,
         !dsv4.weight<tensor<64x64xf8E4M3FN>, #dsv4.block_scale<f8E8M0FNU, [128, 128]>>) -> tensor<?x4x64xf32>
  return %r : tensor<?x4x64xf32>
}
