// RUN: compressa-opt %s --convert-dsv4-to-kernels | FileCheck %s
// Norm family (Patterns/Norm.cpp): rms_norm as a CPU kernel taking the
// argument vector; the ABI lists tokens, start, scratch, x, the weight and
// the result (KernelABI.h), and the inverse RMS of each row sits in scratch.
module attributes {dsv4.max_context = 64 : i64} {
  func.func private @dispatch_0(%x: tensor<?x8xf32>, %w: !dsv4.weight<tensor<8xbf16>>) -> tensor<?x8xf32> attributes {dsv4.kernel = "layers.0.attn_norm"} {
    %y = dsv4.rms_norm %x weight(%w : !dsv4.weight<tensor<8xbf16>>) {eps = 1.0e-06 : f64} : tensor<?x8xf32>
    return %y : tensor<?x8xf32>
  }
}
// CHECK-NOT: func.func private @dispatch_0
// CHECK: module @compressa_kernels {
// CHECK: func.func @compressa_kernel_0(%arg0: !llvm.ptr) attributes {dsv4.abi = {block = 1 : i64, grid = 1 : i64, params = array<i64: 5, 0, 0, 6, 0, 0, 7, 0, 0, 0, 32, 0, 1, 0, 16, 0, 32, 0>, scratch = array<i64: 64, 0>}, dsv4.kernel = "layers.0.attn_norm"}
// CHECK: scf.for
// CHECK: math.sqrt
// CHECK: arith.divf
// CHECK: llvm.store
// CHECK: return
