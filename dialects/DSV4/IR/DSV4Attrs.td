//===- DSV4Attrs.td - dsv4 attributes ----------------------*- tablegen -*-===//
// SPDX-License-Identifier: Apache-2.0
#ifndef COMPRESSA_DSV4_ATTRS
#define COMPRESSA_DSV4_ATTRS

include "dialects/DSV4/IR/DSV4Base.td"

class DSV4_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<DSV4_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

def DSV4_BlockScaleAttr : DSV4_Attr<"BlockScale", "block_scale"> {
  let summary = "Block scales of a quantized weight.";
  let description = [{
    Each `rows x cols` block of the weight shares one scale of `scaleType`
    (UE8M0, `f8E8M0FNU`, in DeepSeek-V4 checkpoints). The scale tensor has
    shape `[ceil(out / rows), ceil(in / cols)]` (a last, partial block is
    allowed); the real value is `q * 2^(s - 127)`.

    Example: `#dsv4.block_scale<f8E8M0FNU, [128, 128]>` (FP8 dense weights),
    `#dsv4.block_scale<f8E8M0FNU, [1, 32]>` (FP4 routed experts).
  }];
  let parameters = (ins "::mlir::Type":$scaleType, "int64_t":$rows,
                        "int64_t":$cols);
  let assemblyFormat = "`<` $scaleType `,` `[` $rows `,` $cols `]` `>`";
  let genVerifyDecl = 1;
}

def DSV4_RopeAttr : DSV4_Attr<"Rope", "rope"> {
  let summary = "Interleaved partial rotary embedding parameters.";
  let description = [{
    RoPE on the last `dim` channels of a vector, pairs adjacent
    (channel `2k`, `2k+1` of the slice), frequencies `theta^(-2k/dim)` (spec
    §1.3). With `yarn`, frequencies are blended between `f` and `f / factor`
    by the YaRN ramp built from `original_max_position_embeddings`,
    `beta_fast` and `beta_slow`; there is no attention-factor scaling.

    ```mlir
    #dsv4.rope<dim = 64, theta = 10000.0>
    #dsv4.rope<dim = 64, theta = 160000.0, yarn = [16.0, 65536, 32.0, 1.0]>
    ```
  }];
  let parameters = (ins "int64_t":$dim, APFloatParameter<"">:$theta,
                        APFloatParameter<"">:$factor,
                        "int64_t":$originalMaxPositions,
                        APFloatParameter<"">:$betaFast,
                        APFloatParameter<"">:$betaSlow);
  let builders = [
    AttrBuilder<(ins "int64_t":$dim, "double":$theta, "double":$factor,
                     "int64_t":$originalMaxPositions, "double":$betaFast,
                     "double":$betaSlow), [{
      return $_get($_ctxt, dim, ::llvm::APFloat(theta), ::llvm::APFloat(factor),
                   originalMaxPositions, ::llvm::APFloat(betaFast),
                   ::llvm::APFloat(betaSlow));
    }]>
  ];
  let hasCustomAssemblyFormat = 1; // `yarn = [...]` is optional as a group.
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// Whether the YaRN blend is applied (factor > 1).
    bool isYarn() const { return getFactor().convertToDouble() > 1.0; }
    /// The rotation frequency of pair `k` (0 <= k < dim / 2).
    double frequency(int64_t k) const;
  }];
}

#endif // COMPRESSA_DSV4_ATTRS
