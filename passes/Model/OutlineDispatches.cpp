//===- OutlineDispatches.cpp - Dispatches -> kernel functions + launches -===//
// SPDX-License-Identifier: Apache-2.0

#include "passes/Model/Passes.h"
#include "dialects/DSV4/IR/DSV4Ops.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/SetVector.h"

#include <map>

namespace mlir::dsv4 {
#define GEN_PASS_DEF_DSV4OUTLINEDISPATCHESPASS
#include "passes/Model/Passes.h.inc"
} // namespace mlir::dsv4

using namespace mlir;
using namespace mlir::dsv4;

namespace {

/// `type` with a dynamic token (first) dimension, for a tensor.
Type withDynamicTokens(Type type) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  if (!tensor || tensor.getRank() == 0)
    return type;
  SmallVector<int64_t> shape(tensor.getShape());
  shape[0] = ShapedType::kDynamic;
  return RankedTensorType::get(shape, tensor.getElementType());
}

struct OutlineDispatches
    : dsv4::impl::DSV4OutlineDispatchesPassBase<OutlineDispatches> {
  int64_t next = 0;

  LogicalResult outline(func::FuncOp program, ArrayRef<Operation *> members,
                        ModuleOp module) {
    MLIRContext *ctx = module.getContext();
    llvm::SmallPtrSet<Operation *, 16> inGroup(members.begin(), members.end());
    // The values read from outside, in order of first use.
    llvm::SetVector<Value> operands;
    for (Operation *op : members)
      for (Value v : op->getOperands()) {
        Operation *def = v.getDefiningOp();
        if (!def || !inGroup.contains(def))
          operands.insert(v);
      }
    // The values handed out: used outside the dispatch (or returned).
    SmallVector<Value> results;
    for (Operation *op : members)
      for (Value r : op->getResults())
        if (llvm::any_of(r.getUsers(),
                         [&](Operation *u) { return !inGroup.contains(u); }))
          results.push_back(r);

    // The kernel function, after the program.
    OpBuilder b(ctx);
    b.setInsertionPointToEnd(module.getBody());
    SmallVector<Type> argTypes, resultTypes;
    for (Value v : operands)
      argTypes.push_back(withDynamicTokens(v.getType()));
    for (Value r : results)
      resultTypes.push_back(withDynamicTokens(r.getType()));
    std::string name = "dispatch_" + std::to_string(next++);
    auto kernel = func::FuncOp::create(b, members.front()->getLoc(), name,
                                       b.getFunctionType(argTypes, resultTypes));
    kernel.setPrivate();
    kernel->setAttr(kKernelAttr, b.getStringAttr(componentName(members.front())));
    // A batched program's kernels address per-token positions and state
    // slots (their code and ABI differ from the same ops' elsewhere).
    if (program->hasAttr(kBatchedAttr))
      kernel->setAttr(kBatchedAttr, b.getUnitAttr());
    // A single-token program's kernels read each weight row once a launch.
    else if (auto bound = program->getAttrOfType<IntegerAttr>(kMaxTokensAttr);
             bound && bound.getInt() == 1)
      kernel->setAttr(kSingleTokenAttr, b.getUnitAttr());
    Block *entry = kernel.addEntryBlock();
    IRMapping map;
    for (auto [v, arg] : llvm::zip(operands, entry->getArguments()))
      map.map(v, arg);
    b.setInsertionPointToEnd(entry);
    for (Operation *op : members) {
      Operation *copy = b.clone(*op, map);
      copy->removeAttr(kDispatchAttr);
      copy->removeAttr(kBuffersAttr);
      for (Value r : copy->getResults())
        r.setType(withDynamicTokens(r.getType()));
    }
    SmallVector<Value> returned;
    for (Value r : results)
      returned.push_back(map.lookup(r));
    func::ReturnOp::create(b, kernel.getLoc(), returned);
    if (failed(verify(kernel)))
      return failure();

    // The launch, where the dispatch began, so launches keep the order of
    // dispatch ids: its operands other than weights are defined before its
    // first op and nothing reads its results before its last
    // (dsv4-form-dispatches keeps both true); the dsv4.param ops of weights
    // read by later members move up (they have no operands).
    Operation *first = members.front();
    for (Value v : operands)
      if (auto param = v.getDefiningOp<ParamOp>())
        if (param->getBlock() == first->getBlock() && first->isBeforeInBlock(param))
          param->moveBefore(first);
    b.setInsertionPoint(first);
    SmallVector<int64_t> updates;
    SmallVector<Attribute> slots;
    for (Value r : results) {
      int64_t u = -1;
      if (!isa<RankedTensorType>(r.getType())) {
        Value base = updatedState(r);
        while (base && base.getDefiningOp() &&
               inGroup.contains(base.getDefiningOp()))
          base = updatedState(base);
        if (!base || !operands.contains(base))
          return members.front()->emitOpError()
                 << "hands out decode state that updates no operand of its "
                    "dispatch";
        u = std::distance(operands.begin(), llvm::find(operands, base));
      }
      updates.push_back(u);
      Attribute slot = b.getDenseI64ArrayAttr({-1, 0});
      if (auto all = r.getDefiningOp()->getAttrOfType<ArrayAttr>(kBuffersAttr))
        slot = all[cast<OpResult>(r).getResultNumber()];
      else if (isa<RankedTensorType>(r.getType()))
        return r.getDefiningOp()->emitOpError()
               << "hands a tensor out of its dispatch without an arena slot "
                  "(run dsv4-plan-memory first)";
      slots.push_back(slot);
    }
    SmallVector<Type> launchTypes;
    for (Value r : results)
      launchTypes.push_back(r.getType());
    auto launch = LaunchOp::create(b, members.front()->getLoc(), launchTypes,
                                   FlatSymbolRefAttr::get(kernel.getSymNameAttr()),
                                   operands.getArrayRef(),
                                   b.getDenseI64ArrayAttr(updates));
    launch->setAttr(kBuffersAttr, b.getArrayAttr(slots));
    for (auto [r, l] : llvm::zip(results, launch.getResults()))
      r.replaceUsesWithIf(l, [&](OpOperand &use) {
        return !inGroup.contains(use.getOwner());
      });
    for (Operation *op : llvm::reverse(members))
      op->erase();
    return success();
  }

  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<func::FuncOp> programs;
    for (auto func : module.getOps<func::FuncOp>())
      if (func->hasAttr(kMaxTokensAttr))
        programs.push_back(func);
    for (func::FuncOp program : programs) {
      if (!program->hasAttr(kArenaBytesAttr)) {
        program.emitError() << "program @" << program.getName()
                            << " has no memory plan (run dsv4-plan-memory)";
        return signalPassFailure();
      }
      // Dispatches in id order: ids were assigned in program order.
      std::map<int64_t, SmallVector<Operation *>> groups;
      for (Operation &op : program.getBody().front())
        if (auto id = op.getAttrOfType<IntegerAttr>(kDispatchAttr))
          groups[id.getInt()].push_back(&op);
      for (auto &[id, members] : groups) {
        // A collective stays a step of the program (serialized as a call
        // into the runtime's communicator), never inside a kernel.
        if (members.size() == 1 && isa<AllReduceOp>(members.front()))
          continue;
        if (failed(outline(program, members, module)))
          return signalPassFailure();
      }
    }
  }
};

} // namespace
