// RUN: compressa-opt %s --convert-dsv4-to-kernels | FileCheck %s
// Attention family (Patterns/Attention.cpp): RoPE rotates the last channels
// in place (cos/sin of position x frequency); the window update writes each
// token's K=V entry into the ring, whose state result aliases the ring
// operand (one State slot, no result slot).
module attributes {dsv4.max_context = 64 : i64} {
  func.func private @dispatch_0(%x: tensor<?x8xf32>, %pos: index, %ring: !dsv4.window_kv<4, 8, f32>) -> (tensor<?x8xf32>, !dsv4.window_kv<4, 8, f32>) attributes {dsv4.kernel = "layers.0.attn.kv"} {
    %r = dsv4.rope %x at %pos {rope = #dsv4.rope<dim = 4, theta = 10000.0>} : tensor<?x8xf32>
    %ring2 = dsv4.kv.window_update %ring, %r at %pos : !dsv4.window_kv<4, 8, f32>, tensor<?x8xf32>
    return %r, %ring2 : tensor<?x8xf32>, !dsv4.window_kv<4, 8, f32>
  }
}
// CHECK: func.func @compressa_kernel_0(%arg0: !llvm.ptr) attributes {dsv4.abi = {block = 1 : i64, grid = 1 : i64, params = array<i64: 5, 0, 0, 6, 0, 0, 7, 0, 0, 0, 32, 0, 4, 0, 128, 0, 32, 0>, scratch = array<i64: 0, 0>}, dsv4.kernel = "layers.0.attn.kv"}
// CHECK: math.cos
// CHECK: math.sin
// CHECK: arith.remsi
// CHECK: llvm.store
