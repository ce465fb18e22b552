// RUN: compressa-opt %s --convert-dsv4-to-kernels=target=cuda:sm_90a | FileCheck %s
// RUN: compressa-opt %s --convert-dsv4-to-kernels="target=cuda:sm_90a grid-weight-bytes=0" | FileCheck %s --check-prefix=GRID
// The same norm for CUDA: a gpu.func kernel of 256 threads in a gpu.module
// for sm_90a; a warp per row (thread ids, shuffles), barriers between
// phases (none before the first or after the last), sqrt in f64 (the target interface, CudaTarget.cpp). A small
// kernel is one block; with grid-weight-bytes=0 it asks for every
// multiprocessor, and its barriers are grid-wide: threads are numbered
// across blocks, and thread 0 of each block arrives on the sync word 64
// bytes before the scratch area (a release atomic) and waits for its top bit
// to flip (acquire loads; no fences).
module attributes {dsv4.max_context = 64 : i64} {
  func.func private @dispatch_0(%x: tensor<?x8xf32>, %w: !dsv4.weight<tensor<8xbf16>>) -> tensor<?x8xf32> attributes {dsv4.kernel = "layers.0.attn_norm"} {
    %y = dsv4.rms_norm %x weight(%w : !dsv4.weight<tensor<8xbf16>>) {eps = 1.0e-06 : f64} : tensor<?x8xf32>
    return %y : tensor<?x8xf32>
  }
}
// CHECK: module attributes {dsv4.max_context = 64 : i64, gpu.container_module}
// CHECK: gpu.module @compressa_kernels [#nvvm.target<O = 3, chip = "sm_90a", features = "+ptx80">]
// CHECK: gpu.func @compressa_kernel_0(%arg0: !llvm.ptr) kernel attributes {compressa.programmatic, dsv4.abi = {block = 256 : i64, grid = 1 : i64
// The prologue of programmatic dependent launch (CudaTarget::kernelPrologue):
// wait for the grid before, then let the next one be scheduled; no barrier
// follows it (it touches no memory of the launch).
// CHECK-NEXT: nvvm.griddepcontrol wait
// CHECK-NEXT: nvvm.griddepcontrol launch_dependents
// CHECK-NOT: gpu.barrier
// CHECK: gpu.thread_id x
// CHECK: gpu.shuffle xor
// CHECK: math.sqrt %{{.*}} : f64
// CHECK: gpu.barrier
// CHECK: gpu.return

// GRID: gpu.func @compressa_kernel_0(%arg0: !llvm.ptr) kernel attributes {compressa.programmatic, dsv4.abi = {block = 256 : i64, grid = 1024 : i64
// GRID: %[[SLOT:.*]] = llvm.getelementptr %arg0[%c2_i64]
// GRID-NEXT: %[[SCRATCH:.*]] = llvm.load %[[SLOT]]
// GRID: %[[SYNC:.*]] = llvm.getelementptr %[[SCRATCH]][%c-64_i64] : (!llvm.ptr, i64) -> !llvm.ptr, i8
// GRID: gpu.block_id x
// GRID: gpu.grid_dim x
// GRID: gpu.barrier
// GRID-NOT: llvm.fence
// GRID: llvm.inline_asm has_side_effects "atom.release.gpu.global.add.u32 $0, [$1], $2;", "=r,l,r,~{memory}" %[[SYNC]]
// GRID: scf.while
// GRID: llvm.load %[[SYNC]] atomic syncscope("device") acquire
// GRID-NOT: llvm.fence
// GRID: gpu.barrier
