// RUN: compressa-opt %s --pass-pipeline="builtin.module(func.func(dsv4-form-dispatches))" | FileCheck %s
// RUN: compressa-opt %s --pass-pipeline="builtin.module(func.func(dsv4-form-dispatches{fuse-norms=false}))" | FileCheck %s --check-prefix=APART
// A norm joins the projection it feeds, RoPE the projection it follows:
// one dispatch. With fuse-norms=false the norm keeps a dispatch of its own.
func.func @f(%x: tensor<?x64xf32>, %pos: index) -> tensor<?x32xf32> {
  %w = dsv4.param "layers.0.attn_norm.weight" : !dsv4.weight<tensor<64xbf16>>
  // CHECK: dsv4.rms_norm {{.*}}dsv4.dispatch = 0 : i64
  // APART: dsv4.rms_norm {{.*}}dsv4.dispatch = 0 : i64
  %n = dsv4.rms_norm %x weight(%w : !dsv4.weight<tensor<64xbf16>>) {eps = 1.0e-06 : f64} : tensor<?x64xf32>
  %wkv = dsv4.param "layers.0.attn.wkv.weight" : !dsv4.weight<tensor<32x64xbf16>>
  %kvn = dsv4.param "layers.0.attn.kv_norm.weight" : !dsv4.weight<tensor<32xbf16>>
  // CHECK: dsv4.attn.kv_proj {{.*}}dsv4.dispatch = 0 : i64
  // APART: dsv4.attn.kv_proj {{.*}}dsv4.dispatch = 1 : i64
  %kv = dsv4.attn.kv_proj %n, %wkv, %kvn {eps = 1.0e-06 : f64}
      : (tensor<?x64xf32>, !dsv4.weight<tensor<32x64xbf16>>, !dsv4.weight<tensor<32xbf16>>) -> tensor<?x32xf32>
  // CHECK: dsv4.rope {{.*}}dsv4.dispatch = 0 : i64
  // APART: dsv4.rope {{.*}}dsv4.dispatch = 1 : i64
  %r = dsv4.rope %kv at %pos {rope = #dsv4.rope<dim = 8, theta = 10000.0>} : tensor<?x32xf32>
  // CHECK-NOT: dsv4.dispatch = 1
  return %r : tensor<?x32xf32>
}
