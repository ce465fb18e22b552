// RUN: compressa-opt %s --convert-dsv4-to-kernels=target=cuda:sm_90a | FileCheck %s
// The same norm for CUDA: a gpu.func kernel of 256 threads in a gpu.module
// for sm_90a; a warp per row (thread ids, shuffles), barriers between
// phases, sqrt in f64 (the target interface, CudaTarget.cpp).
module attributes {dsv4.max_context = 64 : i64} {
  func.func private @dispatch_0(%x: tensor<?x8xf32>, %w: !dsv4.weight<tensor<8xbf16>>) -> tensor<?x8xf32> attributes {dsv4.kernel = "layers.0.attn_norm"} {
    %y = dsv4.rms_norm %x weight(%w : !dsv4.weight<tensor<8xbf16>>) {eps = 1.0e-06 : f64} : tensor<?x8xf32>
    return %y : tensor<?x8xf32>
  }
}
// CHECK: module attributes {dsv4.max_context = 64 : i64, gpu.container_module}
// CHECK: gpu.module @compressa_kernels [#nvvm.target<O = 3, chip = "sm_90a", features = "+ptx80">]
// CHECK: gpu.func @compressa_kernel_0(%arg0: !llvm.ptr) kernel attributes {dsv4.abi = {block = 256 : i64
// CHECK: gpu.barrier
// CHECK: gpu.thread_id x
// CHECK: gpu.shuffle xor
// CHECK: math.sqrt %{{.*}} : f64
// CHECK: gpu.return
