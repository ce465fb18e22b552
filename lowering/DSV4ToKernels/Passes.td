//===- Passes.td - dsv4 dispatches -> kernels ---------------*- tablegen -*-===//
// SPDX-License-Identifier: Apache-2.0
#ifndef COMPRESSA_LOWERING_DSV4TOKERNELS_PASSES
#define COMPRESSA_LOWERING_DSV4TOKERNELS_PASSES

include "mlir/Pass/PassBase.td"

def ConvertDSV4ToKernelsPass : Pass<"convert-dsv4-to-kernels", "::mlir::ModuleOp"> {
  let summary = "Turns each outlined dispatch into a kernel of the target.";
  let description = [{
    Every `func.func` marked `dsv4.kernel` (an outlined dispatch of dsv4 ops)
    becomes a kernel of the target in `@compressa_kernels` (a nested module
    of `func.func`s on the CPU, a `gpu.module` of `gpu.func`s on CUDA) that
    takes the argument vector of the kernel ABI (KernelABI.h) and computes
    the dispatch's ops as loop nests of scf/arith/math/llvm code, built by
    the op families' patterns (Patterns/*.cpp) through KernelBuilder and the
    target interface. The kernel records its signature in `dsv4.abi`, the
    launches are retargeted to it and the dsv4 function is erased.
    Values a dispatch keeps to itself live in the kernel's scratch.

    Before:
    ```mlir
    func.func private @dispatch_3(%x: tensor<?x128xf32>, %w: !dsv4.weight<tensor<64x128xbf16>>)
        -> tensor<?x64xf32> attributes {dsv4.kernel = "layers.0.attn.kv_proj"} { ... }
    %k = dsv4.launch @dispatch_3(%n, %w0) updates [-1] ...
    ```
    After (CPU):
    ```mlir
    module @compressa_kernels {
      func.func @compressa_kernel_3(%argv: !llvm.ptr) attributes {dsv4.kernel = "layers.0.attn.kv_proj",
          dsv4.abi = {block = 1 : i64, params = array<i64: 5, 0, 0, 6, 0, 0, 7, 0, 0, 0, 512, 0, 1, 0, 16384, 0, 256, 0>,
                      scratch = array<i64: 0, 0>}} { scf.for ... }
    }
    %k = dsv4.launch @compressa_kernels::@compressa_kernel_3(%n, %w0) updates [-1] ...
    ```
  }];
  let options = [
    Option<"target", "target", "std::string", "\"cpu\"",
           "The target: cpu, or cuda:<chip> (e.g. cuda:sm_90a)">,
    Option<"gridWeightBytes", "grid-weight-bytes", "int64_t", "262144",
           "On a parallel target, a kernel that reads at least this many "
           "bytes of weights and decode state spreads over every "
           "multiprocessor (grid-wide barriers); 0: every kernel does">,
    Option<"l2PrefetchBytes", "l2-prefetch-bytes", "int64_t", "0",
           "On CUDA, a grid-wide kernel first asks the L2 cache to fetch its "
           "weight matrices of 256 KiB or more, in the order its ops read "
           "them, up to this many bytes, so that they stream while the "
           "kernel's latency-bound steps run; 0 (the default: 24 MiB made "
           "V4-Flash decode 20% slower on an H200): no prefetch">,
    Option<"maxRegisters", "max-registers", "int64_t", "128",
           "On CUDA, a grid-wide kernel uses at most this many registers per "
           "thread (PTX .maxnreg), so that more blocks fit a multiprocessor "
           "(128: two blocks of 256 threads; V4-Flash decode 15% faster on "
           "an H200 than without); 0: ptxas chooses">,
  ];
}

def LowerKernelsToLLVMPass : Pass<"lower-kernels-to-llvm", "::mlir::ModuleOp"> {
  let summary = "Lowers the target's kernels to the LLVM dialect.";
  let description = [{
    Runs the target's lowering on `@compressa_kernels`: on the CPU scf->cf
    and arith/math/cf/func->LLVM; on CUDA scf->cf and gpu->NVVM (with
    canonicalisation and CSE). The programs are untouched. What follows is
    the target's code generation when the artifact is written (LLVM IR at O3
    -> object -> shared object on the CPU; PTX and a cubin through the
    NVPTX back end and ptxas on CUDA).
  }];
  let options = [
    Option<"target", "target", "std::string", "\"cpu\"",
           "The target: cpu, or cuda:<chip> (e.g. cuda:sm_90a)">,
  ];
}

#endif // COMPRESSA_LOWERING_DSV4TOKERNELS_PASSES
