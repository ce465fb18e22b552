// RUN: compressa-opt %s --convert-dsv4-to-kernels | FileCheck %s
// Embed family (Patterns/Embed.cpp): the table row of each token id, and the
// LM head's dot products. Weights are read in their checkpoint format.
module attributes {dsv4.max_context = 64 : i64} {
  func.func private @dispatch_0(%w: !dsv4.weight<tensor<16x8xbf16>>, %ids: tensor<?xi64>) -> tensor<?x8xf32> attributes {dsv4.kernel = "embed"} {
    %h = dsv4.embed %w[%ids] : (!dsv4.weight<tensor<16x8xbf16>>, tensor<?xi64>) -> tensor<?x8xf32>
    return %h : tensor<?x8xf32>
  }
  func.func private @dispatch_1(%y: tensor<?x8xf32>, %w: !dsv4.weight<tensor<16x8xbf16>>) -> tensor<?x16xf32> attributes {dsv4.kernel = "head"} {
    %l = dsv4.lm_head %y, %w : (tensor<?x8xf32>, !dsv4.weight<tensor<16x8xbf16>>) -> tensor<?x16xf32>
    return %l : tensor<?x16xf32>
  }
}
// CHECK: func.func @compressa_kernel_0(%arg0: !llvm.ptr) attributes {dsv4.abi = {block = 1 : i64, grid = 1 : i64, params = array<i64: 5, 0, 0, 6, 0, 0, 7, 0, 0, 1, 0, 256, 0, 8, 0, 0, 32, 0>, scratch = array<i64: 0, 0>}, dsv4.kernel = "embed"}
// CHECK: llvm.load %{{.*}} {alignment = 1 : i64} : !llvm.ptr -> i64
// CHECK: llvm.load %{{.*}} {alignment = 1 : i64} : !llvm.ptr -> i16
// CHECK: func.func @compressa_kernel_1(%arg0: !llvm.ptr) attributes {dsv4.abi = {block = 1 : i64, grid = 1 : i64, params = array<i64: 5, 0, 0, 6, 0, 0, 7, 0, 0, 0, 32, 0, 1, 0, 256, 0, 64, 0>, scratch = array<i64: 0, 0>}, dsv4.kernel = "head"}
