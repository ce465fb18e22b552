// RUN: compressa-opt %s --convert-dsv4-to-kernels | FileCheck %s
// LogitRows (KernelABI.h): the one-sequence kernel holding the head (hc.head,
// then only rms_norm and lm_head on its values) takes the call's logit rows
// L as its last argument (kind 12) and, from hc.head on, works on the last L
// tokens: the streams view starts at token S - L. A batched kernel, or one
// where a value from hc.head on other than the logits leaves the kernel,
// computes every row and takes no LogitRows.
module attributes {dsv4.max_context = 64 : i64} {
  func.func private @dispatch_0(%X: tensor<?x4x8xf32>, %fn: !dsv4.weight<tensor<4x32xf32>>, %base: !dsv4.weight<tensor<4xf32>>, %scale: !dsv4.weight<tensor<1xf32>>, %nw: !dsv4.weight<tensor<8xbf16>>, %hw: !dsv4.weight<tensor<16x8xbf16>>) -> tensor<?x16xf32> attributes {dsv4.kernel = "head"} {
    %y = dsv4.hc.head %X, %fn, %base, %scale {hc_eps = 1.0e-06 : f64, norm_eps = 1.0e-06 : f64} : (tensor<?x4x8xf32>, !dsv4.weight<tensor<4x32xf32>>, !dsv4.weight<tensor<4xf32>>, !dsv4.weight<tensor<1xf32>>) -> tensor<?x8xf32>
    %n = dsv4.rms_norm %y weight(%nw : !dsv4.weight<tensor<8xbf16>>) {eps = 1.0e-06 : f64} : tensor<?x8xf32>
    %l = dsv4.lm_head %n, %hw : (tensor<?x8xf32>, !dsv4.weight<tensor<16x8xbf16>>) -> tensor<?x16xf32>
    return %l : tensor<?x16xf32>
  }
  func.func private @dispatch_1(%X: tensor<?x4x8xf32>, %fn: !dsv4.weight<tensor<4x32xf32>>, %base: !dsv4.weight<tensor<4xf32>>, %scale: !dsv4.weight<tensor<1xf32>>, %nw: !dsv4.weight<tensor<8xbf16>>, %hw: !dsv4.weight<tensor<16x8xbf16>>) -> tensor<?x16xf32> attributes {dsv4.kernel = "head", dsv4.batched} {
    %y = dsv4.hc.head %X, %fn, %base, %scale {hc_eps = 1.0e-06 : f64, norm_eps = 1.0e-06 : f64} : (tensor<?x4x8xf32>, !dsv4.weight<tensor<4x32xf32>>, !dsv4.weight<tensor<4xf32>>, !dsv4.weight<tensor<1xf32>>) -> tensor<?x8xf32>
    %n = dsv4.rms_norm %y weight(%nw : !dsv4.weight<tensor<8xbf16>>) {eps = 1.0e-06 : f64} : tensor<?x8xf32>
    %l = dsv4.lm_head %n, %hw : (tensor<?x8xf32>, !dsv4.weight<tensor<16x8xbf16>>) -> tensor<?x16xf32>
    return %l : tensor<?x16xf32>
  }
  func.func private @dispatch_2(%X: tensor<?x4x8xf32>, %fn: !dsv4.weight<tensor<4x32xf32>>, %base: !dsv4.weight<tensor<4xf32>>, %scale: !dsv4.weight<tensor<1xf32>>, %nw: !dsv4.weight<tensor<8xbf16>>, %hw: !dsv4.weight<tensor<16x8xbf16>>) -> (tensor<?x16xf32>, tensor<?x8xf32>) attributes {dsv4.kernel = "head"} {
    %y = dsv4.hc.head %X, %fn, %base, %scale {hc_eps = 1.0e-06 : f64, norm_eps = 1.0e-06 : f64} : (tensor<?x4x8xf32>, !dsv4.weight<tensor<4x32xf32>>, !dsv4.weight<tensor<4xf32>>, !dsv4.weight<tensor<1xf32>>) -> tensor<?x8xf32>
    %n = dsv4.rms_norm %y weight(%nw : !dsv4.weight<tensor<8xbf16>>) {eps = 1.0e-06 : f64} : tensor<?x8xf32>
    %l = dsv4.lm_head %n, %hw : (tensor<?x8xf32>, !dsv4.weight<tensor<16x8xbf16>>) -> tensor<?x16xf32>
    return %l, %y : tensor<?x16xf32>, tensor<?x8xf32>
  }
}
// Tokens, StartPos, Scratch, the operands, the logits buffer, LogitRows.
// CHECK-LABEL: func.func @compressa_kernel_0(%arg0: !llvm.ptr)
// CHECK-SAME: params = array<i64: 5, 0, 0, 6, 0, 0, 7, 0, 0, 0, 128, 0, 1, 0, 512, 1, 0, 16, 1, 0, 4, 1, 0, 16, 1, 0, 256, 0, 64, 0, 12, 0, 0>
// S is slot 0, L the last slot (10): the streams start at (S - L) * 32
// floats.
// CHECK: %[[S:.*]] = llvm.ptrtoint %{{.*}} : !llvm.ptr to i64
// CHECK: %[[C10:.*]] = arith.constant 10 : i64
// CHECK-NEXT: %[[P:.*]] = llvm.getelementptr %arg0[%[[C10]]]
// CHECK-NEXT: %[[V:.*]] = llvm.load %[[P]]
// CHECK-NEXT: %[[L:.*]] = llvm.ptrtoint %[[V]] : !llvm.ptr to i64
// CHECK: %[[D:.*]] = arith.subi %[[S]], %[[L]] : i64
// CHECK-NEXT: %[[OFF:.*]] = arith.muli %[[D]], %{{.*}} : i64
// CHECK-NEXT: llvm.getelementptr %{{.*}}[%[[OFF]]] : (!llvm.ptr, i64) -> !llvm.ptr, f32
// Batched: Positions and SlotIds, no LogitRows.
// CHECK-LABEL: func.func @compressa_kernel_1(%arg0: !llvm.ptr)
// CHECK-SAME: params = array<i64: 5, 0, 0, 6, 0, 0, 7, 0, 0, 9, 0, 0, 10, 0, 0, 0, 128, 0, 1, 0, 512, 1, 0, 16, 1, 0, 4, 1, 0, 16, 1, 0, 256, 0, 64, 0>
// hc.head's result leaves the kernel: every row, no LogitRows.
// CHECK-LABEL: func.func @compressa_kernel_2(%arg0: !llvm.ptr)
// CHECK-SAME: params = array<i64: 5, 0, 0, 6, 0, 0, 7, 0, 0, 0, 128, 0, 1, 0, 512, 1, 0, 16, 1, 0, 4, 1, 0, 16, 1, 0, 256, 0, 64, 0, 0, 32, 0>
