// RUN: compressa-opt %s --convert-dsv4-to-kernels --lower-kernels-to-llvm | FileCheck %s
// RUN: compressa-opt %s --convert-dsv4-to-kernels=target=cuda:sm_90a --lower-kernels-to-llvm=target=cuda:sm_90a | FileCheck %s --check-prefix=NVVM
// The llvm stage lowers only the kernels (the programs keep their launches):
// on the CPU to llvm.func, on CUDA to NVVM inside the gpu.module.
module attributes {dsv4.max_context = 64 : i64} {
  func.func private @dispatch_0(%x: tensor<?x8xf32>) -> tensor<?x8xf32> attributes {dsv4.kernel = "norm"} {
    %y = dsv4.rms_norm %x {eps = 1.0e-06 : f64} : tensor<?x8xf32>
    return %y : tensor<?x8xf32>
  }
  // CHECK: func.func @p
  // CHECK: dsv4.launch @compressa_kernels::@compressa_kernel_0
  // NVVM: dsv4.launch @compressa_kernels::@compressa_kernel_0
  func.func @p(%x: tensor<1x8xf32>) -> tensor<1x8xf32> {
    %0 = dsv4.launch @dispatch_0(%x) updates [-1] : (tensor<1x8xf32>) -> tensor<1x8xf32>
    return %0 : tensor<1x8xf32>
  }
}
// CHECK: module @compressa_kernels {
// CHECK: llvm.func @compressa_kernel_0(%arg0: !llvm.ptr)
// CHECK-NOT: scf.for
// CHECK: llvm.intr.sqrt
// NVVM: gpu.module @compressa_kernels
// NVVM: llvm.func @compressa_kernel_0(%arg0: !llvm.ptr) attributes {{{.*}}gpu.kernel
// NVVM: nvvm.shfl.sync bfly
// NVVM: nvvm.barrier0
