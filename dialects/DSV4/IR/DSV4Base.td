//===- DSV4Base.td - The dsv4 dialect and its op base classes -*- tablegen -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// The model-level dialect of Compressa: one op per concept of DeepSeek-V4's
// forward pass (spec §3-§5), typed decode state, and weight formats built on
// MLIR's own f8E4M3FN / f4E2M1FN / f8E8M0FNU.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_DSV4_BASE
#define COMPRESSA_DSV4_BASE

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def DSV4_Dialect : Dialect {
  let name = "dsv4";
  let cppNamespace = "::mlir::dsv4";
  let summary = "Model-level ops and decode state of the DeepSeek-V4 family.";
  let description = [{
    `dsv4` describes a DeepSeek-V4 forward pass (V4-Flash, V4-Pro and any
    config of the architecture) at the level of the reference implementation:
    mHC hyper-connections, the query and shared K=V paths, interleaved partial
    RoPE (main and YaRN "compress"), the CSA/HCA compressors, the lightning
    indexer, attention with sink over the sliding window plus compressed
    entries, the grouped output projection, hash and score MoE routing, routed
    and shared experts, the LM head and the MTP block.

    Activations are ranked tensors `[S, ...]` whose first dimension is the
    token; token `i` of a call sits at absolute position `start_pos + i`.
    Weights are `!dsv4.weight` values produced by `dsv4.param`, which names the
    tensor of the official checkpoint. Decode state (window ring, compressed
    entries, indexer keys, compressor state) are values of dialect types that
    the programs take as arguments and return updated.
  }];
  let useDefaultTypePrinterParser = 1;
  let useDefaultAttributePrinterParser = 1;
  // The dispatch and memory contracts between the passes and the lowering
  // (`dsv4.dispatch`, `dsv4.buffers`, `dsv4.buffer`, `dsv4.max_tokens`,
  // `dsv4.arena_bytes`, `dsv4.state`, `dsv4.input`, `dsv4.model`,
  // `dsv4.kernel`) are discardable attributes verified by the dialect
  // (DSV4Dialect.cpp, "Contract attributes").
  let hasOperationAttrVerify = 1;
  let hasRegionArgAttrVerify = 1;
}

class DSV4_Op<string mnemonic, list<Trait> traits = []>
    : Op<DSV4_Dialect, mnemonic, traits>;

/// An op without side effects; all dsv4 ops are value semantics.
class DSV4_PureOp<string mnemonic, list<Trait> traits = []>
    : DSV4_Op<mnemonic, !listconcat(traits, [Pure])>;

#endif // COMPRESSA_DSV4_BASE
