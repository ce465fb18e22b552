// RUN: compressa-opt %s --convert-dsv4-to-kernels | FileCheck %s
// MoE family (Patterns/Moe.cpp): the shared expert (SwiGLU with clamp)
// plus the sum with the routed experts' output; FP8 weights come with their
// UE8M0 scales (Weight + WeightScale slots) and are decoded by lookup
// tables on the CPU.
!fp8_up = !dsv4.weight<tensor<16x32xf8E4M3FN>, #dsv4.block_scale<f8E8M0FNU, [128, 128]>>
!fp8_down = !dsv4.weight<tensor<32x16xf8E4M3FN>, #dsv4.block_scale<f8E8M0FNU, [128, 128]>>
module attributes {dsv4.max_context = 64 : i64} {
  func.func private @dispatch_0(%x: tensor<?x32xf32>, %routed: tensor<?x32xf32>, %w1: !fp8_up, %w3: !fp8_up, %w2: !fp8_down) -> tensor<?x32xf32> attributes {dsv4.kernel = "layers.0.ffn"} {
    %s = dsv4.moe.shared_expert %x, %w1, %w3, %w2 {swiglu_limit = 10.0 : f64} : (tensor<?x32xf32>, !fp8_up, !fp8_up, !fp8_down) -> tensor<?x32xf32>
    %y = arith.addf %routed, %s : tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
// CHECK: llvm.mlir.global internal constant @__compressa_lut_e4m3
// CHECK: func.func @compressa_kernel_0(%arg0: !llvm.ptr) attributes {dsv4.abi = {block = 1 : i64, grid = 1 : i64, params = array<i64: 5, 0, 0, 6, 0, 0, 7, 0, 0, 0, 128, 0, 0, 128, 0, 1, 0, 512, 2, 0, 1, 1, 0, 512, 2, 0, 1, 1, 0, 512, 2, 0, 1, 0, 128, 0>
// CHECK: math.exp
// CHECK: llvm.mlir.addressof @__compressa_lut_e4m3
