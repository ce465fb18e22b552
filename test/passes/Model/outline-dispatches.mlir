// RUN: compressa-opt %s --dsv4-outline-dispatches | FileCheck %s
// Each dispatch becomes a kernel function (token dimension dynamic) called
// by a dsv4.launch that carries the arena slots of its results and which
// operand its decode-state result updates; a single-token program's kernels
// are marked dsv4.single_token.

module attributes {dsv4.model = "t"} {
  // CHECK-LABEL: func.func @decode
  func.func @decode(%ids: tensor<1xi64> {dsv4.buffer = array<i64: 0, 8>, dsv4.input = "input_ids"},
                    %pos: index {dsv4.input = "start_pos"},
                    %ring: !dsv4.window_kv<4, 8, f32> {dsv4.state = "layers.0.attn.window"})
      -> (tensor<1x8xf32>, !dsv4.window_kv<4, 8, f32>)
      attributes {dsv4.max_tokens = 1 : i64, dsv4.arena_bytes = 192 : i64} {
    // CHECK: %[[E:.*]] = dsv4.launch @dispatch_0(%{{.*}}, %arg0) updates [-1] {dsv4.buffers = [array<i64: 64, 32>]} : (!dsv4.weight<tensor<16x8xf32>>, tensor<1xi64>) -> tensor<1x8xf32>
    %w = dsv4.param "embed.weight" : !dsv4.weight<tensor<16x8xf32>>
    %e = dsv4.embed %w[%ids] {dsv4.dispatch = 0 : i64, dsv4.buffers = [array<i64: 64, 32>]} : (!dsv4.weight<tensor<16x8xf32>>, tensor<1xi64>) -> tensor<1x8xf32>
    // The norm and the window update share dispatch 1: the norm's weight
    // (defined after the dispatch's first op) moves up to the launch.
    // CHECK: %[[N:.*]] = dsv4.param "norm.weight"
    // CHECK: %[[L:.*]]:2 = dsv4.launch @dispatch_1(%arg2, %[[E]], %arg1, %[[N]]) updates [0, -1] {dsv4.buffers = [array<i64: -1, 0>, array<i64: 128, 32>]}
    // CHECK-SAME: -> (!dsv4.window_kv<4, 8, f32>, tensor<1x8xf32>)
    %r2 = dsv4.kv.window_update %ring, %e at %pos {dsv4.dispatch = 1 : i64} : !dsv4.window_kv<4, 8, f32>, tensor<1x8xf32>
    %n = dsv4.param "norm.weight" : !dsv4.weight<tensor<8xf32>>
    %y = dsv4.rms_norm %e weight(%n : !dsv4.weight<tensor<8xf32>>) {dsv4.dispatch = 1 : i64, dsv4.buffers = [array<i64: 128, 32>], eps = 1.0e-06 : f64} : tensor<1x8xf32>
    // CHECK: return %[[L]]#1, %[[L]]#0
    return %y, %r2 : tensor<1x8xf32>, !dsv4.window_kv<4, 8, f32>
  }
  // CHECK: func.func private @dispatch_0(%arg0: !dsv4.weight<tensor<16x8xf32>>, %arg1: tensor<?xi64>) -> tensor<?x8xf32> attributes {dsv4.kernel = "dsv4.embed", dsv4.single_token}
  // CHECK-NEXT: dsv4.embed %arg0[%arg1] : (!dsv4.weight<tensor<16x8xf32>>, tensor<?xi64>) -> tensor<?x8xf32>
  // CHECK: func.func private @dispatch_1(%arg0: !dsv4.window_kv<4, 8, f32>, %arg1: tensor<?x8xf32>, %arg2: index, %arg3: !dsv4.weight<tensor<8xf32>>) -> (!dsv4.window_kv<4, 8, f32>, tensor<?x8xf32>)
  // CHECK-NEXT: dsv4.kv.window_update %arg0, %arg1 at %arg2 : !dsv4.window_kv<4, 8, f32>, tensor<?x8xf32>
  // CHECK-NEXT: dsv4.rms_norm %arg1 weight(%arg3 : !dsv4.weight<tensor<8xf32>>) {eps = {{.*}}} : tensor<?x8xf32>
  // CHECK-NOT: dsv4.dispatch
}
