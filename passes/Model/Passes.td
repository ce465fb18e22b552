//===- Passes.td - Passes on dsv4 programs ------------------*- tablegen -*-===//
// SPDX-License-Identifier: Apache-2.0
#ifndef COMPRESSA_PASSES_MODEL_PASSES
#define COMPRESSA_PASSES_MODEL_PASSES

include "mlir/Pass/PassBase.td"

def DSV4FormDispatchesPass : Pass<"dsv4-form-dispatches", "::mlir::func::FuncOp"> {
  let summary = "Groups dsv4 ops into dispatches, each one kernel launch.";
  let description = [{
    Every compute op gets `dsv4.dispatch = N`; ops with the same N run as one
    kernel, in program order, with the values they pass among themselves kept
    in the kernel's scratch instead of program buffers. Fusions:

    * a norm into its only consumer (`hc.pre` + `rms_norm`, `rms_norm` + the
      op it feeds, the final `rms_norm` + `lm_head`),
    * RoPE into the projection or attention it follows (`q_proj`, `kv_proj`
      epilogues; the inverse RoPE into `attn.sparse`),
    * the MoE: router (`moe.gate`/`moe.hash_gate`, with its top-k) + routed
      experts (with the SwiGLU clamp) + shared expert + their sum,
    * the indexer's compressor into the indexer top-k,
    * the embedding and `hc.expand` into the first `hc.pre`, and the window
      ring's update (`kv.window_update`) into the attention that read the
      ring before it (launches of a few KB each otherwise).

    Compressor pooling + norm + RoPE are one op (`dsv4.kv.compress`) already.
    A merge happens only when the group stays executable at its first op: no
    member reads a value produced after that point, and no op outside the
    group reads a member's result before the group's last op.

    Before: `%n = dsv4.rms_norm %x ...` `%q, %qr = dsv4.attn.q_proj %n ...`
    After: both carry `{dsv4.dispatch = 3 : i64}`.

    With `fuse-norms=false` every `rms_norm` stays a dispatch of its own (an
    experiment: its output then goes through the arena).

    With `branches=true` (an experiment), in a program of one token the
    dispatches of the `q_proj`, `kv_proj` and `kv.compress` ops that read
    one `rms_norm`'s output become one, and each op that reads nothing
    another of those dispatches' ops writes gets `dsv4.branch = i` (i its
    former dispatch's rank): the kernel runs the branches side by side, each
    on a part of the grid, then the rest (the indexer's top-k, which reads
    the q projection's `qr`) on the whole grid. The norm's dispatch (with
    `fuse-norms`: `hc.pre` and the norm) joins that dispatch, before the
    branches.

    With `attention-launch=true` (an experiment; slower on an H100, see
    docs/perf.md), in a program of one token
    the attention (with its window update and RoPE) joins the dispatch of
    the op that made its queries (after the branches' join), and the output
    projection (with `hc.post`) joins the attention's: a layer's attention
    half in one launch. An op that would read decode state a branch op
    reads or updates in place does not join.
  }];
  let options = [
    Option<"fuseNorms", "fuse-norms", "bool", "true",
           "Fuse norms into their producer or consumers">,
    Option<"branches", "branches", "bool", "false",
           "In a single-token program, the projections and compressors that "
           "read one norm's output: one dispatch whose independent ops run "
           "side by side (dsv4.branch)">,
    Option<"attentionLaunch", "attention-launch", "bool", "false",
           "In a single-token program, the attention joins the dispatch of "
           "the op that made its queries, and the output projection the "
           "attention's: an attention sub-layer in one launch">,
  ];
  let dependentDialects = ["::mlir::dsv4::DSV4Dialect"];
}

def DSV4ShardExpertsPass : Pass<"dsv4-shard-experts", "::mlir::ModuleOp"> {
  let summary = "Expert parallelism: the programs of one rank of several.";
  let description = [{
    For `ranks` > 1, rewrites every program into rank `rank`'s part of an
    expert-parallel model (docs/parallel.md): each `dsv4.moe.experts` reads
    only experts `[rank * E / ranks, (rank + 1) * E / ranks)` (its
    `dsv4.param` stacks shrink to those, the op gets `first_expert`) and a
    `dsv4.all_reduce` after it sums the ranks' parts; all other ops stay
    replicated. `ranks` must divide every layer's expert count.

    Before: `%y = dsv4.moe.experts %x, %w, %ids, %w1, %w3, %w2 {swiglu_limit = 10.0 : f64}`
    with `%w1 : !dsv4.weight<tensor<8x32x64xf32>>`.
    After (rank 1 of 2): `%w1 : !dsv4.weight<tensor<4x32x64xf32>>`,
    `%y = dsv4.moe.experts ... {first_expert = 4 : i64, swiglu_limit = 10.0 : f64}`,
    `%s = dsv4.all_reduce %y {ranks = 2 : i64}` and `%s` replaces `%y`.
  }];
  let options = [
    Option<"rank", "rank", "int64_t", "0", "This rank, in [0, ranks)">,
    Option<"ranks", "ranks", "int64_t", "1", "Ranks the experts are spread over">,
  ];
  let dependentDialects = ["::mlir::dsv4::DSV4Dialect"];
}

def DSV4PlanMemoryPass : Pass<"dsv4-plan-memory", "::mlir::func::FuncOp"> {
  let summary = "Places the buffers that cross dispatches in one arena.";
  let description = [{
    For a program whose token count is bounded by `dsv4.max_tokens`, every
    tensor that a dispatch hands to another (and the program's `input_ids`
    and results) gets an arena slot `dsv4.buffer = [offset, bytes]` (on its
    defining op as `dsv4.buffers`, one entry per result, or on the argument).
    Slots are reused once their last reader has run (first fit over a live
    interval scan, 64-byte aligned). Decode state is not placed here: the
    runtime owns it, and state results alias the state they update.
    The function gets `dsv4.arena_bytes`. With `reuse=false` every value gets
    its own slot (for debugging: an arena dump then holds every intermediate).
  }];
  let options = [
    Option<"reuse", "reuse", "bool", "true",
           "Reuse a slot once its value is dead">,
  ];
  let dependentDialects = ["::mlir::dsv4::DSV4Dialect"];
}

def DSV4SpecializeShapesPass : Pass<"dsv4-specialize-shapes", "::mlir::ModuleOp"> {
  let summary = "Bounds the token count of each program.";
  let description = [{
    `@decode` runs one token (`dsv4.max_tokens = 1`); `@prefill` runs chunks
    of 1 to `prefill-max-tokens` tokens (`dsv4.max_tokens = N`). Memory
    planning sizes buffers from these bounds. The token dimension of prefill
    stays dynamic: one kernel serves every chunk length, and the runtime
    splits longer prompts into chunks. The module gets `dsv4.max_context`,
    the longest context the decode state is sized for.
  }];
  let options = [
    Option<"prefillMaxTokens", "prefill-max-tokens", "int64_t", "64",
           "Most tokens one prefill call takes">,
    Option<"maxContext", "max-context", "int64_t", "4096",
           "Longest context (prompt + generation) the decode state holds">,
  ];
}

def DSV4OutlineDispatchesPass : Pass<"dsv4-outline-dispatches", "::mlir::ModuleOp"> {
  let summary = "Moves each dispatch into a kernel function called by dsv4.launch.";
  let description = [{
    The ops of each dispatch of a memory-planned program move into a new
    `func.func private @dispatch_N` marked `dsv4.kernel = "<component>"`,
    whose arguments are the values the dispatch reads from outside (in order
    of first use: activations, weights, decode state, start_pos) and whose
    results are the values it hands out (activations placed in the arena,
    updated decode state). The token dimension of every tensor of the kernel
    is dynamic, so a prefill and a decode dispatch of the same structure can
    share one kernel. In the program a `dsv4.launch` replaces the dispatch,
    carrying the arena slots of its results (`dsv4.buffers`) and which
    operand each state result updates (`updates`).

    Before:
    ```mlir
    %7 = dsv4.rms_norm %x weight(%6 : ...) {dsv4.dispatch = 2 : i64, dsv4.buffers = [array<i64: 2624, 512>], eps = ...} : tensor<1x128xf32>
    ```
    After:
    ```mlir
    %7 = dsv4.launch @dispatch_2(%x, %6) updates [-1] {dsv4.buffers = [array<i64: 2624, 512>]} : (...) -> tensor<1x128xf32>
    func.func private @dispatch_2(%arg0: tensor<?x128xf32>, %arg1: !dsv4.weight<...>) -> tensor<?x128xf32>
        attributes {dsv4.kernel = "layers.0.attn_norm"} { ... }
    ```
  }];
  let dependentDialects = ["::mlir::dsv4::DSV4Dialect", "::mlir::func::FuncDialect"];
}

def DSV4DeduplicateKernelsPass : Pass<"dsv4-deduplicate-kernels", "::mlir::ModuleOp"> {
  let summary = "Keeps one kernel function of each structure.";
  let description = [{
    Two outlined kernels (`dsv4.kernel` functions) whose types and bodies are
    equivalent (MLIR's OperationEquivalence, locations ignored) compute the
    same code: every launch of the second calls the first, and the second is
    erased. The layers of a model share a few kernels this way (19 for every
    layer of tiny-c's prefill and decode programs), so kernel conversion and
    code generation see each structure once.

    Before: `dsv4.launch @dispatch_9(...)`, `dsv4.launch @dispatch_25(...)`
    with equal bodies. After: both `dsv4.launch @dispatch_9(...)`;
    `@dispatch_25` is gone. Statistics: `kernels` (kept), `duplicates`
    (removed); Debian's LLVM compiles pass statistics out (NDEBUG, no
    LLVM_FORCE_ENABLE_STATS), so `report=true` also states both counts as a
    remark.
  }];
  let options = [
    Option<"report", "report", "bool", "false",
           "Emit a remark with the counts of kept and removed kernels">,
  ];
}

#endif // COMPRESSA_PASSES_MODEL_PASSES
