//===- ConvertDSV4ToKernels.cpp - Outlined dispatches -> target kernels --===//
// SPDX-License-Identifier: Apache-2.0

#include "lowering/DSV4ToKernels/KernelABI.h"
#include "lowering/DSV4ToKernels/KernelBuilder.h"
#include "lowering/DSV4ToKernels/Passes.h"
#include "lowering/DSV4ToKernels/TensorCoreGemm.h"
#include "lowering/DSV4ToKernels/Patterns.h"
#include "lowering/Target/TargetInfo.h"
#include "lowering/TensorCore/Numerics.h"
#include "dialects/DSV4/IR/DSV4Ops.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/SmallPtrSet.h"
#include "llvm/Support/MathExtras.h"

#include <cstdlib>
#include <string>

namespace mlir::compressa {
#define GEN_PASS_DEF_CONVERTDSV4TOKERNELSPASS
#define GEN_PASS_DEF_LOWERKERNELSTOLLVMPASS
#include "lowering/DSV4ToKernels/Passes.h.inc"
} // namespace mlir::compressa

using namespace mlir;
using namespace mlir::compressa;
using namespace mlir::compressa::cpu;
using namespace mlir::dsv4;

namespace {

/// The most blocks a kernel asks for (the runtime launches at most one per
/// multiprocessor).
constexpr int64_t kMaxGrid = 1024;

/// The weight and decode-state bytes an outlined dispatch of type `type`
/// reads at most (every expert of a table counted, state at `maxContext`).
uint64_t memoryTraffic(FunctionType type, int64_t maxContext) {
  uint64_t bytes = 0;
  for (Type t : type.getInputs()) {
    if (auto w = dyn_cast<WeightType>(t))
      bytes += (weightBytes(w) + scaleBytes(w)) *
               uint64_t(w.getRank() == 3 ? w.getShape()[0] : 1);
    else if (FailureOr<StateGeometry> g = stateGeometry(t); succeeded(g))
      bytes += uint64_t(g->bytes(maxContext));
  }
  return bytes;
}

/// The hc.head of a one-sequence kernel that computes only the logit rows
/// the caller asks for (KernelABI.h, LogitRows): the model's head followed
/// in the kernel by nothing but the final norm and lm_head, each reading
/// only values computed from hc.head on, with lm_head's logits the only
/// value from hc.head on that leaves the kernel. Null for any other kernel
/// (it computes every row, as before).
HcHeadOp logitRowsHead(func::FuncOp func) {
  Block &body = func.getBody().front();
  HcHeadOp head;
  llvm::SmallPtrSet<Operation *, 4> fromHead;
  Operation *last = nullptr;
  for (Operation &op : body.without_terminator()) {
    if (auto h = dyn_cast<HcHeadOp>(op)) {
      if (head)
        return nullptr;
      head = h;
      fromHead.insert(&op);
      continue;
    }
    if (!head)
      continue;
    if (!isa<RmsNormOp, LmHeadOp>(op))
      return nullptr;
    for (Value operand : op.getOperands())
      if (isa<RankedTensorType>(operand.getType()) &&
          !fromHead.contains(operand.getDefiningOp()))
        return nullptr;
    fromHead.insert(&op);
    last = &op;
  }
  if (!head || !last || !isa<LmHeadOp>(last))
    return nullptr;
  for (Value r : body.getTerminator()->getOperands())
    if (fromHead.contains(r.getDefiningOp()) && r.getDefiningOp() != last)
      return nullptr;
  return head;
}

/// The elements of one token's row of `type` (every dimension but the
/// first).
int64_t perTokenElements(RankedTensorType type) {
  int64_t per = 1;
  for (int64_t d : type.getShape().drop_front())
    per *= d;
  return per;
}

/// Tensor bytes per token of a kernel's operands and results from which it
/// spreads over the grid whatever weights it reads.
constexpr uint64_t kGridTensorBytesPerToken = 16 << 10;

/// The bytes per token of the tensors an outlined dispatch of type `type`
/// reads and writes.
uint64_t tensorBytesPerToken(FunctionType type) {
  uint64_t bytes = 0;
  for (TypeRange types : {TypeRange(type.getInputs()), TypeRange(type.getResults())})
    for (Type t : types)
      if (auto tensor = dyn_cast<RankedTensorType>(t)) {
        uint64_t n = tensor.getElementTypeBitWidth() / 8;
        for (int64_t d : tensor.getShape().drop_front())
          n *= uint64_t(d);
        bytes += n;
      }
  return bytes;
}

/// Emits the kernel of one outlined dispatch `func` into `container`.
LogicalResult convertKernel(func::FuncOp func, StringRef symbol,
                            Operation *container, const TargetInfo &target,
                            const KernelPatternSet &patterns, int64_t maxContext,
                            int64_t gridWeightBytes, int64_t l2PrefetchBytes,
                            int64_t maxRegisters) {
  MLIRContext *ctx = func.getContext();
  Location loc = func.getLoc();
  OpBuilder b(ctx);
  Block *entry = target.createKernel(b, loc, container, symbol);
  Operation *kernel = entry->getParentOp();
  b.setInsertionPointToStart(entry);
  target.kernelPrologue(b, loc, kernel);
  KernelBuilder kb(b, loc, container, target);
  Value argv = entry->getArgument(0);
  auto slotPtr = [&](int64_t slot) { return kb.loadArgPtr(argv, slot); };

  EmitContext ec;
  ec.maxContext = maxContext;
  // Scalars: where the target's ABI keeps them (TargetInfo::loadScalarArg).
  auto scalar = [&](int64_t slot) -> Value {
    return target.loadScalarArg(b, loc, slotPtr(slot));
  };
  ec.tokens = scalar(kTokensSlot);
  ec.startPos = scalar(kStartPosSlot);
  // A batched decode kernel: each token's position and slot (KernelABI.h).
  bool batched = func->hasAttr(kBatchedAttr);
  kb.setSingleToken(func->hasAttr(kSingleTokenAttr));
  if (batched) {
    ec.batched = true;
    ec.positions = slotPtr(kPositionsSlot);
    ec.slotIds = slotPtr(kSlotIdsSlot);
  }
  Value scratchBase = slotPtr(kScratchSlot);
  // Grid-wide barriers meet on the word before the scratch area.
  if (kb.threads() > 1)
    kb.setSyncWord(kb.offset(b.getI8Type(), scratchBase, kb.c(-kSyncWordOffset)));
  int64_t scratchPerToken = 0, scratchFixed = 0;
  useScratchArea(kb, ec, scratchBase, scratchPerToken, scratchFixed);
  // The head's kernel works on the call's last L tokens from hc.head on
  // (ec.tokens = L there); its scratch is still carved with S as the bound,
  // so a part carved after the switch never overlaps one carved before.
  HcHeadOp head = batched ? nullptr : logitRowsHead(func);
  Value callTokens = ec.tokens;
  if (head) {
    auto carve = ec.scratch;
    ec.scratch = [&ec, callTokens, carve](int64_t perToken, int64_t bytes) {
      Value tokens = ec.tokens;
      ec.tokens = callTokens;
      Value part = carve(perToken, bytes);
      ec.tokens = tokens;
      return part;
    };
  }
  // --numerics=fast on sm_90a: the FP8 linear layers on tensor cores (its
  // staging area is the scratch's first part).
  std::unique_ptr<TensorCoreSplit> tensorCore =
      TensorCoreSplit::create(func, kb, ec, target, container, symbol);
  ec.tensorCore = tensorCore.get();
  // Step 1. The operands, slot by slot (KernelABI.h).
  Block &body = func.getBody().front();
  int64_t slot = (batched ? kSlotIdsSlot : kScratchSlot) + 1;
  for (BlockArgument arg : body.getArguments()) {
    Type t = arg.getType();
    if (auto tensor = dyn_cast<RankedTensorType>(t)) {
      ec.tensors[arg] = View{slotPtr(slot++), tensor.getElementType()};
    } else if (auto wt = dyn_cast<WeightType>(t)) {
      ArrayRef<int64_t> shape = wt.getShape();
      if (wt.getRank() == 3) {
        ec.experts[arg] = ExpertView{slotPtr(slot++), shape[0], wt.getElementType(),
                                     shape[1], shape[2]};
        continue;
      }
      WeightView view;
      view.data = slotPtr(slot++);
      if (wt.isQuantized())
        view.scale = slotPtr(slot++);
      view.elt = wt.getElementType();
      view.rows = wt.getRank() == 2 ? shape[0] : 1;
      view.cols = shape.back();
      view.readOnly = true;
      ec.weights[arg] = view;
    } else if (succeeded(stateGeometry(t))) {
      ec.states[arg] = slotPtr(slot++);
    } else if (!isa<IndexType>(t)) {
      return func.emitError() << "kernel operand #" << arg.getArgNumber()
                              << " has a type no kernel slot holds: " << t;
    }
  }
  // The results: tensors in their Buffer slots, in order.
  auto ret = cast<func::ReturnOp>(body.getTerminator());
  llvm::DenseMap<Value, int64_t> resultSlot;
  for (Value r : ret.getOperands())
    if (isa<RankedTensorType>(r.getType()) && !resultSlot.count(r))
      resultSlot[r] = slot++;
  // Then the head's LogitRows.
  int64_t logitRowsSlot = head ? slot++ : -1;

  // The launch spreads over every multiprocessor when it reads enough
  // weights and state, or when its tensors are large per token (work that
  // grows with a prefill chunk: hc.expand writes 64 KiB per V4 token).
  bool gridWide = kb.threads() > 1 &&
                  (memoryTraffic(func.getFunctionType(), maxContext) >=
                       uint64_t(std::max<int64_t>(gridWeightBytes, 0)) ||
                   tensorBytesPerToken(func.getFunctionType()) >= kGridTensorBytesPerToken);
  // A grid-wide kernel first asks the L2 cache for its weight matrices (in
  // the order its ops read them, up to the budget): they stream from memory
  // while the kernel's latency-bound steps (norms, mixes, routing) run.
  if (gridWide && l2PrefetchBytes > 0) {
    int64_t budget = l2PrefetchBytes;
    llvm::DenseSet<Value> seen;
    for (Operation &op : body.without_terminator())
      for (Value operand : op.getOperands()) {
        auto it = ec.weights.find(operand);
        if (it == ec.weights.end() || !seen.insert(operand).second)
          continue;
        int64_t bytes = int64_t(weightBytes(cast<WeightType>(operand.getType())));
        if (bytes < (int64_t(256) << 10) || bytes > budget)
          continue;
        kb.prefetchL2(it->second.data, bytes);
        budget -= bytes;
      }
  }

  // Step 2. The ops, in order. Results go to their Buffer slots or to
  // scratch (placed once: a fused op's are placed with the op it joins).
  auto place = [&](Operation &op) -> LogicalResult {
    for (Value r : op.getResults()) {
      if (ec.tensors.count(r) || ec.states.count(r))
        continue;
      if (auto tensor = dyn_cast<RankedTensorType>(r.getType())) {
        auto it = resultSlot.find(r);
        if (it != resultSlot.end()) {
          ec.tensors[r] = View{slotPtr(it->second), tensor.getElementType()};
          continue;
        }
        int64_t per = 1;
        for (int64_t d : tensor.getShape().drop_front())
          per *= d;
        int64_t bytes = per * tensor.getElementTypeBitWidth() / 8;
        ec.tensors[r] = View{ec.scratch(bytes, 0), tensor.getElementType()};
        continue;
      }
      // New state aliases the state it updates.
      Value base = updatedState(r);
      if (!base || !ec.states.count(base))
        return op.emitOpError() << "produces a value the kernel cannot place";
      ec.states[r] = ec.states[base];
    }
    return success();
  };
  auto emitOne = [&](Operation &op) -> LogicalResult {
    if (failed(place(op)))
      return failure();
    // From hc.head on, the last L of the call's S tokens: hc.head reads
    // the streams of token S - L on, and writes (as the norm and lm_head
    // after it do) rows 0..L-1.
    if (head && &op == head.getOperation()) {
      Value rows = scalar(logitRowsSlot);
      Value streams = head.getStreams();
      int64_t per = perTokenElements(cast<RankedTensorType>(streams.getType()));
      ec.tensors[streams] =
          kb.at(ec.tensors.lookup(streams),
                kb.mul(kb.sub(callTokens, rows), kb.c(per)));
      ec.tokens = rows;
    }
    // The shared expert right after the routed experts on the same x runs
    // in their two steps (Emitter::experts): its results are placed now.
    if (auto routed = dyn_cast<MoeExpertsOp>(op); routed && !routed.getFirstExpert()) {
      auto shared = dyn_cast_or_null<SharedExpertOp>(op.getNextNode());
      if (shared && shared.getX() == routed.getX() && !usesFastLinear(&op) &&
          !usesFastLinear(shared)) {
        if (failed(place(*shared)))
          return failure();
        ec.fusedShared = shared;
      }
    }
    // The exact attention's inverse RoPE, its only reader in this kernel,
    // in the attention's last step (Emitter::attention).
    if (auto attn = dyn_cast<SparseAttentionOp>(op); attn && !usesFastLinear(&op)) {
      Value o = attn.getResult();
      auto rope = o.hasOneUse() ? dyn_cast<RopeOp>(*o.getUsers().begin()) : RopeOp();
      if (rope && rope->getBlock() == op.getBlock() && op.isBeforeInBlock(rope) &&
          ropeFusesIntoAttention(&op, rope)) {
        if (failed(place(*rope)))
          return failure();
        ec.fusedRope = rope;
      }
      auto window = dyn_cast_or_null<WindowUpdateOp>(op.getNextNode());
      if (window && window.getRing() == attn.getRing() && window.getKv() == attn.getKv() &&
          windowFusesIntoAttention()) {
        if (failed(place(*window)))
          return failure();
        ec.fusedWindow = window;
      }
    }
    ec.fastLinear = usesFastLinear(&op);
    ec.fp8Decode = usesFp8Experts(&op);
    // The exact experts' tensor-core program (ExactMma.cpp) only where
    // COMPRESSA_EXACT_MMA=1 at compile time: on CUDA its mma.sync kernels, on
    // the CPU its twin. Off by default: on an H200 a V4-Flash decode step's
    // experts took 439 us with it against 402 us with the f32 dots (see
    // docs/perf.md, eighth session).
    static const bool exactMmaOn = [] {
      const char *v = std::getenv("COMPRESSA_EXACT_MMA");
      return v && std::string(v) == "1";
    }();
    ec.exactMma = exactMmaOn || op.hasAttr(dsv4::kExactMmaAttr);
    if (failed(emitOp(kb, &op, ec, patterns)))
      return failure();
    if (kb.storedOutsideRegion())
      return op.emitOpError()
             << "internal error: its kernel code stores outside a parallel or "
                "single region (a race on CUDA)";
    return success();
  };
  // Ops side by side (dsv4.branch, dsv4-form-dispatches' branches=true):
  // at the first of them, all of them, each branch on its own part of the
  // grid (KernelBuilder::branches), in proportion to the bytes its weights
  // hold plus 2 MiB an op for its latency-bound steps (COMPRESSA_BRANCH_OP_MIB
  // at compile time: another amount, for A/B runs).
  SmallVector<SmallVector<Operation *>> branchOps;
  for (Operation &op : body.without_terminator())
    if (auto id = op.getAttrOfType<IntegerAttr>(kBranchAttr)) {
      size_t p = size_t(id.getInt());
      if (p >= KernelBuilder::kMaxBranches)
        return op.emitOpError() << "has branch " << p << "; a kernel runs at most "
                                << KernelBuilder::kMaxBranches << " side by side";
      if (branchOps.size() <= p)
        branchOps.resize(p + 1);
      branchOps[p].push_back(&op);
    }
  bool branchesDone = branchOps.empty();
  for (Operation &op : body.without_terminator()) {
    if (!op.hasAttr(kBranchAttr)) {
      if (failed(emitOne(op)))
        return failure();
      continue;
    }
    if (branchesDone)
      continue;
    branchesDone = true;
    static const int64_t opBytes =
        KernelBuilder::experimentInt("COMPRESSA_BRANCH_OP_MIB", 2) << 20;
    SmallVector<int64_t> weights;
    for (ArrayRef<Operation *> ops : branchOps) {
      int64_t bytes = 0;
      for (Operation *m : ops) {
        bytes += opBytes;
        for (Value v : m->getOperands())
          if (auto w = dyn_cast<WeightType>(v.getType()))
            bytes += int64_t(weightBytes(w) + scaleBytes(w));
      }
      weights.push_back(bytes);
    }
    // Their results' places first, outside the branches: the ops after
    // them address those places too.
    for (ArrayRef<Operation *> ops : branchOps)
      for (Operation *m : ops)
        if (failed(place(*m)))
          return failure();
    LogicalResult result = success();
    kb.branches(weights, [&](size_t p) {
      for (Operation *m : branchOps[p])
        if (succeeded(result))
          result = emitOne(*m);
    });
    if (failed(result))
      return failure();
  }
  kb.endLaunch();
  target.createReturn(b, loc);

  // Step 3. The signature the runtime checks every launch against.
  SmallVector<int64_t> params;
  for (const AbiParam &p :
       kernelAbi(func.getFunctionType(), maxContext, batched, bool(head)))
    llvm::append_values(params, int64_t(p.kind), int64_t(p.bytesPerToken),
                        int64_t(p.bytes));
  if (slot != int64_t(params.size() / 3))
    return func.emitError() << "internal error: the kernel binds " << slot
                            << " slots, its ABI lists " << params.size() / 3;
  // The blocks of a launch: every multiprocessor for a kernel that reads
  // enough weights and state to need them, one block for the others (a grid
  // barrier costs microseconds; one block's barrier does not).
  int64_t grid = gridWide ? kMaxGrid : 1;
  if (gridWide && maxRegisters > 0)
    target.limitRegisters(kernel, maxRegisters);
  kernel->setAttr(kKernelAttr, func->getAttr(kKernelAttr));
  kernel->setAttr(kAbiAttr,
                  b.getDictionaryAttr({
                      b.getNamedAttr("grid", b.getI64IntegerAttr(grid)),
                      b.getNamedAttr("params", b.getDenseI64ArrayAttr(params)),
                      b.getNamedAttr("scratch", b.getDenseI64ArrayAttr(
                                                    {scratchPerToken, scratchFixed})),
                      b.getNamedAttr("block", b.getI64IntegerAttr(kb.threads())),
                  }));
  if (tensorCore && failed(tensorCore->finish(kernel)))
    return failure();
  return success();
}

/// The dialects the kernels of target `spec` use (none for a bad spec: the
/// pass reports it when it runs).
void registerTargetDialects(StringRef spec, DialectRegistry &registry) {
  std::string error;
  if (std::unique_ptr<TargetInfo> t = createTarget(spec, error))
    t->registerDialects(registry);
}

struct ConvertDSV4ToKernelsPass
    : public mlir::compressa::impl::ConvertDSV4ToKernelsPassBase<ConvertDSV4ToKernelsPass> {
  using Base::Base;

  void getDependentDialects(DialectRegistry &registry) const override {
    registerTargetDialects(target, registry);
  }

  void runOnOperation() override {
    ModuleOp module = getOperation();
    std::string error;
    std::unique_ptr<TargetInfo> info = createTarget(target, error);
    if (!info) {
      module.emitError() << "convert-dsv4-to-kernels: " << error;
      return signalPassFailure();
    }
    auto maxContext = module->getAttrOfType<IntegerAttr>(kMaxContextAttr);
    if (!maxContext) {
      module.emitError() << "no " << kMaxContextAttr
                         << " on the module (run dsv4-specialize-shapes)";
      return signalPassFailure();
    }
    KernelPatternSet patterns;
    populateAllKernelPatterns(patterns);

    SmallVector<func::FuncOp> dispatches;
    for (auto func : module.getOps<func::FuncOp>())
      if (func->hasAttr(kKernelAttr))
        dispatches.push_back(func);
    if (dispatches.empty())
      return;
    Operation *container = info->getOrCreateContainer(module);
    StringAttr containerName = SymbolTable::getSymbolName(container);
    for (auto [i, func] : llvm::enumerate(dispatches)) {
      std::string symbol = "compressa_kernel_" + std::to_string(i);
      if (failed(convertKernel(func, symbol, container, *info, patterns,
                               maxContext.getInt(), gridWeightBytes, l2PrefetchBytes,
                               maxRegisters)))
        return signalPassFailure();
      auto callee = SymbolRefAttr::get(
          containerName, {FlatSymbolRefAttr::get(&getContext(), symbol)});
      module.walk([&](LaunchOp launch) {
        if (launch.getKernel().getRootReference() == func.getSymNameAttr())
          launch.setKernelAttr(callee);
      });
      func.erase();
    }
  }
};

struct LowerKernelsToLLVMPass
    : public mlir::compressa::impl::LowerKernelsToLLVMPassBase<LowerKernelsToLLVMPass> {
  using Base::Base;

  void getDependentDialects(DialectRegistry &registry) const override {
    registerTargetDialects(target, registry);
  }

  void runOnOperation() override {
    std::string error;
    std::unique_ptr<TargetInfo> info = createTarget(target, error);
    if (!info) {
      getOperation().emitError() << "lower-kernels-to-llvm: " << error;
      return signalPassFailure();
    }
    OpPassManager pm(ModuleOp::getOperationName());
    info->buildLowerToLLVM(pm);
    if (failed(runPipeline(pm, getOperation())))
      return signalPassFailure();
  }
};

} // namespace
