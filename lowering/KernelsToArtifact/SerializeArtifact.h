//===- SerializeArtifact.h - Programs and kernels -> .cpa artifact -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// The last step of the pipeline: a module after lower-kernels-to-llvm
// becomes the FlatBuffer artifact (runtime/format/artifact.fbs). Everything
// comes from the IR, nothing from a config:
//
//   module attributes (dsv4.model, dsv4.model_info, dsv4.config_json,
//     dsv4.max_context)                       ──▶ ModelInfo, config_json
//   programs (func.func with dsv4.max_tokens)  ──▶ Program { arena, buffers,
//     dsv4.launch in order                          launches [kernel, args] }
//   kernels in @compressa_kernels (dsv4.abi)   ──▶ Kernel { symbol, params,
//                                                   scratch, block }
//   dsv4.param ops                             ──▶ weights, expert tables
//   state arguments (dsv4.state)               ──▶ decode-state table
//   @compressa_kernels ──target code generation──▶ shared object / PTX+cubin
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_KERNELSTOARTIFACT_SERIALIZEARTIFACT_H
#define COMPRESSA_LOWERING_KERNELSTOARTIFACT_SERIALIZEARTIFACT_H

#include "lowering/Target/TargetInfo.h"

#include "mlir/IR/BuiltinOps.h"

#include <string>
#include <vector>

namespace mlir::compressa {

struct ArtifactOptions {
  /// CPU target: the LLVM CPU name ("x86-64" runs on any x86-64 machine,
  /// "native" tunes for the compiling host).
  std::string cpu = "x86-64";
  /// CUDA target: the toolkit (libdevice, ptxas).
  std::string cudaToolkit = "/usr/local/cuda";
  /// Where to write the device code's intermediates (empty = nowhere).
  std::string dumpDir;
  /// Expert parallelism (docs/parallel.md): the module holds rank `rank`'s
  /// programs of `ranks` (after dsv4-shard-experts). Rank 0's artifact
  /// carries the other ranks' artifacts, `peers` (ranks 1..ranks-1, each a
  /// complete .cpa file).
  int64_t rank = 0;
  int64_t ranks = 1;
  std::vector<std::string> peers;
};

/// Statistics of a serialization, for tools and tests.
struct ArtifactStats {
  int64_t kernels = 0;     ///< distinct kernels compiled
  int64_t launches = 0;    ///< launches over all programs
  int64_t codeBytes = 0;   ///< size of the device code
  std::string ptx;         ///< the PTX text (CUDA target)
};

/// The artifact of `module` (after lower-kernels-to-llvm for `target`);
/// `module` is only read. Errors go to the module's diagnostics.
FailureOr<std::string> serializeArtifact(ModuleOp module, const TargetInfo &target,
                                         const ArtifactOptions &options,
                                         ArtifactStats &stats);

} // namespace mlir::compressa

#endif // COMPRESSA_LOWERING_KERNELSTOARTIFACT_SERIALIZEARTIFACT_H
