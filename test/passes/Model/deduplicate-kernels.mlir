// RUN: compressa-opt %s --dsv4-deduplicate-kernels=report=true 2>&1 | FileCheck %s
// Kernels with equivalent bodies (OperationEquivalence, locations and the
// readable dsv4.kernel name aside) become one; every launch calls the one
// kept. A different attribute (eps) keeps a kernel apart.

// CHECK: remark: dsv4-deduplicate-kernels: 2 kernels kept, 1 duplicates removed
// CHECK-LABEL: func.func @p
func.func @p(%x: tensor<1x8xf32>) -> tensor<1x8xf32> {
  %a = dsv4.param "a.weight" : !dsv4.weight<tensor<8xf32>>
  %b = dsv4.param "b.weight" : !dsv4.weight<tensor<8xf32>>
  // CHECK: dsv4.launch @dispatch_0(
  %0 = dsv4.launch @dispatch_0(%x, %a) updates [-1] : (tensor<1x8xf32>, !dsv4.weight<tensor<8xf32>>) -> tensor<1x8xf32>
  // CHECK: dsv4.launch @dispatch_0(
  %1 = dsv4.launch @dispatch_1(%0, %b) updates [-1] : (tensor<1x8xf32>, !dsv4.weight<tensor<8xf32>>) -> tensor<1x8xf32>
  // CHECK: dsv4.launch @dispatch_2(
  %2 = dsv4.launch @dispatch_2(%1, %b) updates [-1] : (tensor<1x8xf32>, !dsv4.weight<tensor<8xf32>>) -> tensor<1x8xf32>
  return %2 : tensor<1x8xf32>
}
// CHECK: func.func private @dispatch_0
func.func private @dispatch_0(%x: tensor<?x8xf32>, %w: !dsv4.weight<tensor<8xf32>>) -> tensor<?x8xf32> attributes {dsv4.kernel = "layers.0.attn_norm"} {
  %y = dsv4.rms_norm %x weight(%w : !dsv4.weight<tensor<8xf32>>) {eps = 1.0e-06 : f64} : tensor<?x8xf32> loc("a")
  return %y : tensor<?x8xf32>
}
// CHECK-NOT: func.func private @dispatch_1
func.func private @dispatch_1(%x: tensor<?x8xf32>, %w: !dsv4.weight<tensor<8xf32>>) -> tensor<?x8xf32> attributes {dsv4.kernel = "layers.1.attn_norm"} {
  %y = dsv4.rms_norm %x weight(%w : !dsv4.weight<tensor<8xf32>>) {eps = 1.0e-06 : f64} : tensor<?x8xf32> loc("b")
  return %y : tensor<?x8xf32>
}
// CHECK: func.func private @dispatch_2
func.func private @dispatch_2(%x: tensor<?x8xf32>, %w: !dsv4.weight<tensor<8xf32>>) -> tensor<?x8xf32> attributes {dsv4.kernel = "layers.2.attn_norm"} {
  %y = dsv4.rms_norm %x weight(%w : !dsv4.weight<tensor<8xf32>>) {eps = 1.0e-05 : f64} : tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

