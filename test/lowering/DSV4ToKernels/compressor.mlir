// RUN: compressa-opt %s --convert-dsv4-to-kernels | FileCheck %s
// Compressor family (Patterns/Compressor.cpp): kv.compress pools the
// compressor state into indexer keys (norm, RoPE); its two state results
// alias the state and keys operands. The keys' allocation grows with the
// context: 64 / 4 rows of 16 f32 = 1024 bytes at max_context 64.
module attributes {dsv4.max_context = 64 : i64} {
  func.func private @dispatch_0(%x: tensor<?x32xf32>, %wkv: !dsv4.weight<tensor<32x32xbf16>>, %wg: !dsv4.weight<tensor<32x32xbf16>>, %ape: !dsv4.weight<tensor<4x32xf32>>, %norm: !dsv4.weight<tensor<16xbf16>>, %st: !dsv4.compressor_state<4, 16, overlap>, %keys: !dsv4.indexer_keys<4, 16, f32>, %pos: index) -> (!dsv4.compressor_state<4, 16, overlap>, !dsv4.indexer_keys<4, 16, f32>) attributes {dsv4.kernel = "layers.1.attn.indexer.compressor"} {
    %st2, %keys2 = dsv4.kv.compress %x, %wkv, %wg, %ape, %norm, %st, %keys, %pos
        {eps = 1.0e-06 : f64, rope = #dsv4.rope<dim = 8, theta = 160000.0, yarn = [16.0, 65536, 32.0, 1.0]>}
        : (tensor<?x32xf32>, !dsv4.weight<tensor<32x32xbf16>>, !dsv4.weight<tensor<32x32xbf16>>, !dsv4.weight<tensor<4x32xf32>>,
           !dsv4.weight<tensor<16xbf16>>, !dsv4.compressor_state<4, 16, overlap>, !dsv4.indexer_keys<4, 16, f32>, index)
        -> (!dsv4.compressor_state<4, 16, overlap>, !dsv4.indexer_keys<4, 16, f32>)
    return %st2, %keys2 : !dsv4.compressor_state<4, 16, overlap>, !dsv4.indexer_keys<4, 16, f32>
  }
}
// CHECK: func.func @compressa_kernel_0(%arg0: !llvm.ptr) attributes {dsv4.abi = {block = 1 : i64, grid = 1 : i64, params = array<i64: 5, 0, 0, 6, 0, 0, 7, 0, 0, 0, 128, 0, 1, 0, 2048, 1, 0, 2048, 1, 0, 512, 1, 0, 32, 4, 0, 2048, 4, 0, 1024>
// CHECK: math.exp
// CHECK: math.cos
