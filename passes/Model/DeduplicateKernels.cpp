//===- DeduplicateKernels.cpp - One kernel function per structure --------===//
// SPDX-License-Identifier: Apache-2.0

#include "passes/Model/Passes.h"
#include "dialects/DSV4/IR/DSV4Ops.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OperationSupport.h"
#include "mlir/IR/SymbolTable.h"

#include <map>
#include <tuple>

namespace mlir::dsv4 {
#define GEN_PASS_DEF_DSV4DEDUPLICATEKERNELSPASS
#include "passes/Model/Passes.h.inc"
} // namespace mlir::dsv4

using namespace mlir;
using namespace mlir::dsv4;

namespace {

struct DeduplicateKernels
    : dsv4::impl::DSV4DeduplicateKernelsPassBase<DeduplicateKernels> {
  using Base::Base;
  Statistic kept{this, "kernels", "Kernel functions kept"};
  Statistic removed{this, "duplicates",
                    "Kernel functions replaced by an equivalent one"};

  void runOnOperation() override {
    ModuleOp module = getOperation();
    // Candidates are compared only within a bucket of equal type, size,
    // batching (a batched decode kernel's code differs from the same ops')
    // and single-token use (its weight loads differ: dsv4.single_token).
    std::map<std::tuple<void *, size_t, bool, bool>, SmallVector<func::FuncOp>> buckets;
    SmallVector<func::FuncOp> kernels;
    for (auto func : module.getOps<func::FuncOp>())
      if (func->hasAttr(kKernelAttr) && !func.isExternal())
        kernels.push_back(func);
    int64_t keptCount = 0, removedCount = 0;
    for (func::FuncOp func : kernels) {
      size_t ops = func.getBody().front().getOperations().size();
      auto &bucket = buckets[std::make_tuple(
          const_cast<void *>(func.getFunctionType().getAsOpaquePointer()), ops,
          func->hasAttr(kBatchedAttr), func->hasAttr(kSingleTokenAttr))];
      func::FuncOp same;
      for (func::FuncOp candidate : bucket)
        if (OperationEquivalence::isRegionEquivalentTo(
                &candidate.getBody(), &func.getBody(),
                OperationEquivalence::IgnoreLocations)) {
          same = candidate;
          break;
        }
      if (!same) {
        bucket.push_back(func);
        ++kept;
        ++keptCount;
        continue;
      }
      if (failed(SymbolTable::replaceAllSymbolUses(
              func.getSymNameAttr(), same.getSymNameAttr(), module)))
        return signalPassFailure();
      func.erase();
      ++removed;
      ++removedCount;
    }
    if (report)
      module.emitRemark() << "dsv4-deduplicate-kernels: " << keptCount
                          << " kernels kept, " << removedCount
                          << " duplicates removed";
  }
};

} // namespace
