//===- DSV4Types.td - dsv4 types ---------------------------*- tablegen -*-===//
// SPDX-License-Identifier: Apache-2.0
#ifndef COMPRESSA_DSV4_TYPES
#define COMPRESSA_DSV4_TYPES

include "dialects/DSV4/IR/DSV4Attrs.td"
include "mlir/IR/BuiltinTypes.td"

class DSV4_Type<string name, string typeMnemonic, list<Trait> traits = []>
    : TypeDef<DSV4_Dialect, name, traits> {
  let mnemonic = typeMnemonic;
}

//===----------------------------------------------------------------------===//
// Weights
//===----------------------------------------------------------------------===//

def DSV4_WeightType : DSV4_Type<"Weight", "weight"> {
  let summary = "A checkpoint tensor in its storage format.";
  let description = [{
    The logical shape and element type of a weight, plus its block scales
    when quantized. Supported formats (spec §2.1):

    | element      | scale                                     | use                  |
    |--------------|-------------------------------------------|----------------------|
    | `f8E4M3FN`   | `#dsv4.block_scale<f8E8M0FNU, [128, 128]>` | FP8 dense projections |
    | `f4E2M1FN`   | `#dsv4.block_scale<f8E8M0FNU, [1, 32]>`    | FP4 routed experts   |
    | `bf16`, `f32`| none                                      | everything else      |
    | `i64`        | none                                      | `tid2eid`            |

    A rank-3 weight is a stack of per-expert matrices `[E, out, in]`. FP4
    weights are stored two per byte; their logical shape counts elements.

    ```mlir
    !dsv4.weight<tensor<1024x4096xf8E4M3FN>, #dsv4.block_scale<f8E8M0FNU, [128, 128]>>
    !dsv4.weight<tensor<256x2048x4096xf4E2M1FN>, #dsv4.block_scale<f8E8M0FNU, [1, 32]>>
    !dsv4.weight<tensor<4096xbf16>>
    ```
  }];
  let parameters = (ins "::mlir::RankedTensorType":$storage,
                        OptionalParameter<"::mlir::dsv4::BlockScaleAttr">:$scale);
  let assemblyFormat = "`<` $storage (`,` qualified($scale)^)? `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    ::llvm::ArrayRef<int64_t> getShape() const { return getStorage().getShape(); }
    ::mlir::Type getElementType() const { return getStorage().getElementType(); }
    int64_t getRank() const { return getStorage().getRank(); }
    bool isQuantized() const { return static_cast<bool>(getScale()); }
  }];
}

//===----------------------------------------------------------------------===//
// Decode state
//===----------------------------------------------------------------------===//

def DSV4_WindowKVType : DSV4_Type<"WindowKV", "window_kv"> {
  let summary = "The sliding-window ring of raw K=V vectors of one layer.";
  let description = [{
    `window` slots of `dim` channels; the vector of position `t` lives in slot
    `t mod window` (spec §5.1). Example: `!dsv4.window_kv<128, 512, bf16>`.
  }];
  let parameters = (ins "int64_t":$window, "int64_t":$dim,
                        "::mlir::Type":$elementType);
  let assemblyFormat = "`<` $window `,` $dim `,` $elementType `>`";
  let genVerifyDecl = 1;
}

def DSV4_CompressedKVType : DSV4_Type<"CompressedKV", "compressed_kv"> {
  let summary = "The compressed K=V entries of a CSA or HCA layer.";
  let description = [{
    One `dim`-channel entry per complete window of `ratio` tokens; entry `w`
    covers tokens `ratio*w ... ratio*w + ratio - 1` (and, for the
    overlapping CSA compressor, the previous window too) and carries RoPE at
    position `ratio*w`. Example: `!dsv4.compressed_kv<4, 512, bf16>`.
  }];
  let parameters = (ins "int64_t":$ratio, "int64_t":$dim,
                        "::mlir::Type":$elementType);
  let assemblyFormat = "`<` $ratio `,` $dim `,` $elementType `>`";
  let genVerifyDecl = 1;
}

def DSV4_IndexerKeysType : DSV4_Type<"IndexerKeys", "indexer_keys"> {
  let summary = "The lightning indexer's compressed keys of a CSA layer.";
  let description = [{
    Like `!dsv4.compressed_kv` but `index_head_dim` wide; the indexer scores
    queries against them to pick the CSA entries to attend to.
    Example: `!dsv4.indexer_keys<4, 128, bf16>`.
  }];
  let parameters = (ins "int64_t":$ratio, "int64_t":$dim,
                        "::mlir::Type":$elementType);
  let assemblyFormat = "`<` $ratio `,` $dim `,` $elementType `>`";
  let genVerifyDecl = 1;
}

def DSV4_CompressorStateType : DSV4_Type<"CompressorState", "compressor_state"> {
  let summary = "The open window of a compressor (and the CSA overlap half).";
  let description = [{
    fp32 `kv` and `score` (gate + position bias) of the tokens of the window
    that is not complete yet. A plain compressor (HCA) holds `ratio` slots of
    `dim` channels. An overlapping compressor (CSA, and the indexer's) holds
    `2 * ratio` slots of `2 * dim` channels: slots `0 .. ratio-1` keep the
    previous window whose A half feeds the next entry (spec §4.5.2, §5.1).

    ```mlir
    !dsv4.compressor_state<128, 512>           // HCA
    !dsv4.compressor_state<4, 512, overlap>    // CSA
    ```
  }];
  let parameters = (ins "int64_t":$ratio, "int64_t":$dim, "bool":$overlap);
  let hasCustomAssemblyFormat = 1; // the `overlap` keyword is optional.
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// Number of token slots held.
    int64_t getSlots() const { return getOverlap() ? 2 * getRatio() : getRatio(); }
    /// Channels per slot (the projection width).
    int64_t getWidth() const { return getOverlap() ? 2 * getDim() : getDim(); }
  }];
}

def DSV4_AnyEntries : AnyTypeOf<[DSV4_CompressedKVType, DSV4_IndexerKeysType]>;

#endif // COMPRESSA_DSV4_TYPES
