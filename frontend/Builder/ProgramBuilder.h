//===- ProgramBuilder.h - DeepSeek-V4 config -> dsv4 programs ---*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// Builds the dsv4 module of a model: a prefill program (any number of tokens),
// a decode program (one token) and, when the config has MTP layers, the MTP
// program. Weights are `dsv4.param` ops naming checkpoint tensors, typed from
// the weight manifest; decode state is passed in and returned.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_FRONTEND_BUILDER_PROGRAMBUILDER_H
#define COMPRESSA_FRONTEND_BUILDER_PROGRAMBUILDER_H

#include "frontend/Config/ModelConfig.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

namespace mlir::compressa {

/// What to build.
struct ProgramOptions {
  /// Activation (and decode state) element type: "f32" or "bf16".
  std::string activationType = "f32";
  bool prefill = true;
  bool decode = true;
  /// Builds @mtp when the config has MTP layers.
  bool mtp = true;
  /// The config.json text, kept on the module (dsv4.config_json) for the
  /// artifact; empty: none.
  std::string configJson;
};

/// Builds and verifies the dsv4 module of `config`. Errors are emitted as
/// diagnostics on `context` and return failure.
FailureOr<OwningOpRef<ModuleOp>> buildDSV4Module(MLIRContext &context,
                                                 const ModelConfig &config,
                                                 const ProgramOptions &options);

} // namespace mlir::compressa

#endif // COMPRESSA_FRONTEND_BUILDER_PROGRAMBUILDER_H
