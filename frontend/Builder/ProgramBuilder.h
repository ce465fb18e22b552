//===- ProgramBuilder.h - DeepSeek-V4 config -> dsv4 programs ---*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// Builds the dsv4 module of a model: a prefill program (any number of tokens),
// a decode program (one token), with --max-batch B > 1 a batched decode
// program (one token of each of up to B sequences) and, when the config has
// MTP layers, the MTP program. Weights are `dsv4.param` ops naming checkpoint tensors, typed from
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
  /// With decode and maxBatch > 1, also @decode_batch (dsv4.batched =
  /// maxBatch): the decode program with a dynamic token count, each token
  /// the next one of its own sequence (position and state slot of its own,
  /// bound by the kernels, not by the IR).
  int64_t maxBatch = 1;
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
