// RUN: compressa-opt %s --convert-dsv4-to-kernels | FileCheck %s
// HyperConn family (Patterns/HyperConn.cpp): hc.expand copies the hidden
// vector into every stream; hc.pre mixes the streams with the
// Sinkhorn-normalised combination (exp in the Sinkhorn loop).
module attributes {dsv4.max_context = 64 : i64} {
  func.func private @dispatch_0(%h: tensor<?x8xf32>) -> tensor<?x4x8xf32> attributes {dsv4.kernel = "hc.expand"} {
    %x = dsv4.hc.expand %h : tensor<?x8xf32> -> tensor<?x4x8xf32>
    return %x : tensor<?x4x8xf32>
  }
  func.func private @dispatch_1(%X: tensor<?x4x8xf32>, %fn: !dsv4.weight<tensor<24x32xf32>>, %base: !dsv4.weight<tensor<24xf32>>, %scale: !dsv4.weight<tensor<3xf32>>) -> (tensor<?x8xf32>, tensor<?x4xf32>, tensor<?x4x4xf32>) attributes {dsv4.kernel = "layers.0.hc_attn"} {
    %x, %post, %comb = dsv4.hc.pre %X, %fn, %base, %scale {hc_eps = 1.0e-06 : f64, norm_eps = 1.0e-06 : f64, sinkhorn_iters = 20 : i64}
        : (tensor<?x4x8xf32>, !dsv4.weight<tensor<24x32xf32>>, !dsv4.weight<tensor<24xf32>>, !dsv4.weight<tensor<3xf32>>)
        -> (tensor<?x8xf32>, tensor<?x4xf32>, tensor<?x4x4xf32>)
    return %x, %post, %comb : tensor<?x8xf32>, tensor<?x4xf32>, tensor<?x4x4xf32>
  }
}
// CHECK: func.func @compressa_kernel_0(%arg0: !llvm.ptr) attributes {dsv4.abi = {block = 1 : i64, grid = 1 : i64, params = array<i64: 5, 0, 0, 6, 0, 0, 7, 0, 0, 0, 32, 0, 0, 128, 0>
// CHECK: func.func @compressa_kernel_1(%arg0: !llvm.ptr) attributes {dsv4.abi = {block = 1 : i64, grid = 1 : i64, params = array<i64: 5, 0, 0, 6, 0, 0, 7, 0, 0, 0, 128, 0, 1, 0, 3072, 1, 0, 96, 1, 0, 12, 0, 32, 0, 0, 16, 0, 0, 64, 0>
// CHECK: math.exp
