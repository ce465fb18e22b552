//===- PlanMemory.cpp - Place cross-dispatch buffers in an arena --------===//
// SPDX-License-Identifier: Apache-2.0

#include "passes/Model/Passes.h"

#include "mlir/IR/Builders.h"
#include "llvm/Support/MathExtras.h"

namespace mlir::dsv4 {
#define GEN_PASS_DEF_DSV4PLANMEMORYPASS
#include "passes/Model/Passes.h.inc"
} // namespace mlir::dsv4

using namespace mlir;
using namespace mlir::dsv4;

namespace {

/// A value that needs an arena slot, live from dispatch `def` to `end`.
struct Interval {
  Value value;
  int64_t def, end, bytes;
  int64_t offset = -1;
};

int64_t dispatchOf(Operation *op) {
  if (auto id = op->getAttrOfType<IntegerAttr>(kDispatchAttr))
    return id.getInt();
  return -1;
}

struct PlanMemory : dsv4::impl::DSV4PlanMemoryPassBase<PlanMemory> {
  using Base::Base;

  void runOnOperation() override {
    func::FuncOp func = getOperation();
    auto bound = func->getAttrOfType<IntegerAttr>(kMaxTokensAttr);
    if (!bound)
      return; // Not a program (run dsv4-specialize-shapes first).
    maxTokens = bound.getInt();
    Block &body = func.getBody().front();
    int64_t endOfProgram = INT64_MAX;

    // Step 1. The values that cross dispatches, with their live ranges.
    SmallVector<Interval> intervals;
    auto lastUse = [&](Value v, int64_t def) -> int64_t {
      int64_t end = def;
      for (Operation *user : v.getUsers()) {
        if (isa<func::ReturnOp>(user))
          return endOfProgram;
        end = std::max(end, dispatchOf(user));
      }
      return end;
    };
    for (BlockArgument arg : body.getArguments())
      if (isa<RankedTensorType>(arg.getType()))
        intervals.push_back({arg, -1, lastUse(arg, -1), bytesOf(arg.getType())});
    for (Operation &op : body) {
      int64_t id = dispatchOf(&op);
      if (id < 0)
        continue;
      for (Value r : op.getResults()) {
        if (!isa<RankedTensorType>(r.getType()))
          continue; // Decode state aliases the state it updates.
        bool crosses = llvm::any_of(r.getUsers(), [&](Operation *u) {
          return isa<func::ReturnOp>(u) || dispatchOf(u) != id;
        });
        if (crosses)
          intervals.push_back({r, id, lastUse(r, id), bytesOf(r.getType())});
      }
    }
    if (failed(status))
      return signalPassFailure();

    // Step 2. First fit: a slot is free again after its last reader ran.
    int64_t arena = 0;
    for (size_t i = 0; i < intervals.size(); ++i) {
      Interval &cur = intervals[i];
      SmallVector<std::pair<int64_t, int64_t>> busy; // [offset, end)
      for (size_t j = 0; j < i; ++j)
        if (!reuse || intervals[j].end >= cur.def)
          busy.push_back({intervals[j].offset, intervals[j].offset + intervals[j].bytes});
      llvm::sort(busy);
      int64_t offset = 0;
      for (auto [lo, hi] : busy) {
        if (offset + cur.bytes <= lo)
          break;
        offset = std::max<int64_t>(offset, llvm::alignTo(hi, 64));
      }
      cur.offset = offset;
      arena = std::max(arena, offset + cur.bytes);
    }

    // Step 3. Annotate.
    OpBuilder b(func.getContext());
    auto slot = [&](int64_t offset, int64_t bytes) {
      return b.getDenseI64ArrayAttr({offset, bytes});
    };
    llvm::DenseMap<Value, Attribute> placed;
    for (const Interval &in : intervals)
      placed[in.value] = slot(in.offset, in.bytes);
    for (BlockArgument arg : body.getArguments())
      if (Attribute a = placed.lookup(arg))
        func.setArgAttr(arg.getArgNumber(), kBufferAttr, a);
    for (Operation &op : body) {
      if (dispatchOf(&op) < 0 || !llvm::any_of(op.getResults(), [&](Value r) {
            return placed.count(r);
          }))
        continue;
      SmallVector<Attribute> slots;
      for (Value r : op.getResults())
        slots.push_back(placed.count(r) ? placed[r] : slot(-1, 0));
      op.setAttr(kBuffersAttr, b.getArrayAttr(slots));
    }
    func->setAttr(kArenaBytesAttr, b.getI64IntegerAttr(arena));
  }

  /// Bytes of a tensor with its token dimension at the bound.
  int64_t bytesOf(Type type) {
    auto t = cast<RankedTensorType>(type);
    int64_t n = 1;
    for (int64_t d : t.getShape())
      n *= ShapedType::isDynamic(d) ? maxTokens : d;
    unsigned bits = t.getElementType().getIntOrFloatBitWidth();
    if (bits % 8 != 0) {
      emitError(UnknownLoc::get(&getContext()))
          << "cannot place a tensor of " << t.getElementType();
      status = failure();
      return 0;
    }
    return n * bits / 8;
  }

  int64_t maxTokens = 1;
  LogicalResult status = success();
};
} // namespace
