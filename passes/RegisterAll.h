//===- RegisterAll.h - The one registry of Compressa's compiler -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// compressa-opt, compressa-compile and every test register dialects and
// passes through these two functions, so all tools see the same set.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_PASSES_REGISTERALL_H
#define COMPRESSA_PASSES_REGISTERALL_H

namespace mlir {
class DialectRegistry;

namespace compressa {

/// Registers dsv4 and the upstream dialects, extensions and LLVM IR
/// translations (GPU ones included) that the project parses or lowers to.
void registerAllDSV4Dialects(DialectRegistry &registry);

/// Registers the upstream pass groups the project uses (core transforms,
/// conversions, and the transforms of the dialects we lower through) and our
/// own passes and pipelines.
void registerAllDSV4Passes();

} // namespace compressa
} // namespace mlir

#endif // COMPRESSA_PASSES_REGISTERALL_H
