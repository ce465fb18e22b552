//===- ShardExperts.cpp - Expert parallelism: one rank's programs --------===//
// SPDX-License-Identifier: Apache-2.0
//
// Rewrites the programs of a module into those of rank `rank` of `ranks`
// (docs/parallel.md): the routed-expert stacks of every MoE layer shrink to
// the rank's experts [rank * E / ranks, (rank + 1) * E / ranks), the experts
// op learns its first expert, and a dsv4.all_reduce after it sums the ranks'
// parts. Everything else (attention, router, shared expert, embedding, LM
// head) stays replicated: each rank computes it whole, so the residual
// streams are identical on every rank after each all-reduce.
//
//===----------------------------------------------------------------------===//

#include "dialects/DSV4/IR/DSV4Ops.h"
#include "passes/Model/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"

namespace mlir::dsv4 {
#define GEN_PASS_DEF_DSV4SHARDEXPERTSPASS
#include "passes/Model/Passes.h.inc"
} // namespace mlir::dsv4

using namespace mlir;
using namespace mlir::dsv4;

namespace {

struct ShardExperts : dsv4::impl::DSV4ShardExpertsPassBase<ShardExperts> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (ranks < 1 || rank < 0 || rank >= ranks) {
      module.emitError() << "dsv4-shard-experts: rank " << rank
                         << " is not in [0, ranks = " << ranks << ")";
      return signalPassFailure();
    }
    if (ranks == 1)
      return;
    SmallVector<MoeExpertsOp> experts;
    module.walk([&](MoeExpertsOp op) { experts.push_back(op); });
    for (MoeExpertsOp op : experts)
      if (failed(shard(op)))
        return signalPassFailure();
  }

  LogicalResult shard(MoeExpertsOp op) {
    if (op.getFirstExpert())
      return op.emitOpError() << "is sharded already (first_expert is set)";
    auto stack = cast<WeightType>(op.getW1().getType());
    int64_t total = stack.getShape()[0];
    if (total % ranks != 0)
      return op.emitOpError()
             << "has " << total << " routed experts (n_routed_experts), which "
             << ranks << " ranks cannot share evenly: --ranks must divide "
                         "n_routed_experts";
    int64_t local = total / ranks, first = rank * local;
    OpBuilder b(op);
    for (Value w : {op.getW1(), op.getW3(), op.getW2()}) {
      auto param = w.getDefiningOp<ParamOp>();
      if (!param)
        return op.emitOpError() << "reads an expert stack no dsv4.param names";
      // Only experts ops read expert stacks, and they all shard alike.
      for (Operation *user : param->getUsers())
        if (!isa<MoeExpertsOp>(user))
          return user->emitOpError()
                 << "reads the expert stack \"" << param.getName()
                 << "\", which only dsv4.moe.experts may read when sharding";
      auto type = cast<WeightType>(param.getType());
      if (type.getShape()[0] == local)
        continue; // Shared by two experts ops and shrunk already.
      SmallVector<int64_t> shape(type.getShape());
      shape[0] = local;
      auto storage = RankedTensorType::get(shape, type.getElementType());
      param.getResult().setType(
          WeightType::get(op.getContext(), storage, type.getScale()));
    }
    op.setFirstExpertAttr(b.getI64IntegerAttr(first));
    b.setInsertionPointAfter(op);
    auto sum = AllReduceOp::create(b, op.getLoc(), op.getType(), op.getResult(),
                                   b.getI64IntegerAttr(ranks));
    op.getResult().replaceAllUsesExcept(sum.getResult(), sum);
    return success();
  }
};

} // namespace
