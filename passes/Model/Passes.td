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
    * the indexer's compressor into the indexer top-k.

    Compressor pooling + norm + RoPE are one op (`dsv4.kv.compress`) already.
    A merge happens only when the group stays executable at its first op: no
    member reads a value produced after that point, and no op outside the
    group reads a member's result before the group's last op.

    Before: `%n = dsv4.rms_norm %x ...` `%q, %qr = dsv4.attn.q_proj %n ...`
    After: both carry `{dsv4.dispatch = 3 : i64}`.
  }];
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
    splits longer prompts into chunks.
  }];
  let options = [
    Option<"prefillMaxTokens", "prefill-max-tokens", "int64_t", "64",
           "Most tokens one prefill call takes">,
  ];
}

#endif // COMPRESSA_PASSES_MODEL_PASSES
