//===- FormDispatches.cpp - Group dsv4 ops into kernel launches ---------===//
// SPDX-License-Identifier: Apache-2.0

#include "dialects/DSV4/IR/DSV4Ops.h"
#include "passes/Model/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/EquivalenceClasses.h"

namespace mlir::dsv4 {
#define GEN_PASS_DEF_DSV4FORMDISPATCHESPASS
#include "passes/Model/Passes.h.inc"
} // namespace mlir::dsv4

using namespace mlir;
using namespace mlir::dsv4;

bool dsv4::isComputeOp(Operation *op) {
  if (isa<ParamOp, func::ReturnOp>(op))
    return false;
  return isa<DSV4Dialect>(op->getDialect()) || isa<arith::AddFOp>(op);
}

namespace {

/// The only op that uses `v`, or null. The program's return does not count
/// for decode state: updated state always flows to it.
Operation *singleUser(Value v) {
  bool state = !isa<RankedTensorType>(v.getType());
  Operation *user = nullptr;
  for (Operation *u : v.getUsers()) {
    if (state && isa<func::ReturnOp>(u))
      continue;
    if (user && user != u)
      return nullptr;
    user = u;
  }
  return user;
}

struct FormDispatches : dsv4::impl::DSV4FormDispatchesPassBase<FormDispatches> {
  using Base::Base;

  void runOnOperation() override {
    func::FuncOp func = getOperation();
    for (Operation &op : func.getBody().front())
      position[&op] = position.size();
    for (Operation &op : func.getBody().front())
      if (isComputeOp(&op))
        groups.insert(&op);

    // Rule order matters little: each merge is checked for legality alone.
    func.walk([&](Operation *op) {
      if (auto norm = dyn_cast<RmsNormOp>(op)) {
        if (!fuseNorms)
          return;
        // hc.pre / hc.head + the norm of their output.
        if (Operation *def = norm.getX().getDefiningOp())
          if (isa<HcPreOp, HcHeadOp>(def) && singleUser(norm.getX()) == op)
            tryMerge(def, op);
      } else if (auto rope = dyn_cast<RopeOp>(op)) {
        // RoPE as the epilogue of the projection or attention it follows.
        if (Operation *def = rope.getX().getDefiningOp())
          if (isa<QProjOp, KVProjOp, SparseAttentionOp>(def) &&
              singleUser(rope.getX()) == op)
            tryMerge(def, op);
      } else if (auto cmp = dyn_cast<CompressOp>(op)) {
        // The indexer's compressor feeds only the indexer.
        if (isa<IndexerKeysType>(cmp.getEntries().getType()))
          if (Operation *user = singleUser(cmp.getNewEntries()))
            if (isa<IndexerTopkOp>(user))
              tryMerge(op, user);
      } else if (isa<MoeGateOp, MoeHashGateOp>(op)) {
        // Router (with its top-k) + routed experts.
        if (Operation *user = singleUser(op->getResult(0)))
          if (isa<MoeExpertsOp>(user) && singleUser(op->getResult(1)) == user)
            tryMerge(op, user);
      } else if (auto sum = dyn_cast<arith::AddFOp>(op)) {
        // routed + shared experts and their sum.
        Operation *lhs = sum.getLhs().getDefiningOp();
        Operation *rhs = sum.getRhs().getDefiningOp();
        if (lhs && rhs && isa<MoeExpertsOp, AllReduceOp>(lhs) &&
            isa<SharedExpertOp>(rhs)) {
          // The shared expert sits between the routed experts and the sum.
          tryMerge(rhs, op);
          // A collective (dsv4-shard-experts) stays a dispatch of its own.
          if (!isa<AllReduceOp>(lhs))
            tryMerge(lhs, op);
        }
      } else if (auto expand = dyn_cast<HcExpandOp>(op)) {
        // The embedding and hc.expand (a few KB a decode token) as the
        // prologue of the first hc.pre: alone they were two launches of
        // 5-11 us a decode step on an H200.
        if (Operation *def = expand.getX().getDefiningOp())
          if (isa<EmbedOp>(def) && singleUser(expand.getX()) == op)
            tryMerge(def, op);
        Operation *pre = nullptr;
        for (Operation *u : expand.getResult().getUsers())
          if (isa<HcPreOp>(u) && (!pre || position[u] < position[pre]))
            pre = u;
        if (pre)
          tryMerge(op, pre);
      } else if (auto update = dyn_cast<WindowUpdateOp>(op)) {
        // The ring's new entries written in the launch of the attention
        // that read the ring before them (a barrier apart): alone, a
        // launch of about 4.5 us a decode step on an H200 per layer.
        for (Operation *u : update.getRing().getUsers())
          if (isa<SparseAttentionOp>(u) && position[u] < position[op]) {
            tryMerge(u, op);
            break;
          }
      } else if (auto post = dyn_cast<HcPostOp>(op)) {
        // The residual mix as the epilogue of the sub-layer it closes.
        if (Operation *def = post.getA().getDefiningOp())
          if (singleUser(post.getA()) == op)
            tryMerge(def, op);
      }
    });
    // A norm joins its consumers when they all ended up in one dispatch
    // (the final norm and lm_head; ffn_norm and the MoE).
    func.walk([&](RmsNormOp norm) {
      if (!fuseNorms)
        return;
      Operation *leader = nullptr;
      bool one = !norm.getResult().use_empty();
      for (Operation *u : norm.getResult().getUsers()) {
        Operation *l = groups.getLeaderValue(u);
        one &= !leader || leader == l;
        leader = l;
      }
      if (one && leader)
        tryMerge(norm, leader);
    });

    if (branches)
      formBranches(func);
    if (attentionLaunch)
      formAttentionLaunches(func);

    // Number the dispatches in the order of their first op.
    OpBuilder b(func.getContext());
    llvm::DenseMap<Operation *, int64_t> ids;
    for (Operation &op : func.getBody().front()) {
      if (!isComputeOp(&op))
        continue;
      Operation *leader = groups.getLeaderValue(&op);
      auto [it, inserted] = ids.try_emplace(leader, ids.size());
      op.setAttr(kDispatchAttr, b.getI64IntegerAttr(it->second));
    }
  }

  /// Merges the dispatches of `a` and `b` if the result stays executable
  /// at its first op.
  void tryMerge(Operation *a, Operation *b) {
    if (groups.isEquivalent(a, b))
      return;
    SmallVector<Operation *> members;
    for (Operation *root : {a, b})
      for (auto it = groups.findLeader(root); it != groups.member_end(); ++it)
        members.push_back(*it);
    llvm::SmallPtrSet<Operation *, 16> inGroup(members.begin(), members.end());
    size_t first = SIZE_MAX, last = 0;
    for (Operation *m : members) {
      first = std::min(first, position[m]);
      last = std::max(last, position[m]);
    }
    for (Operation *m : members) {
      for (Value operand : m->getOperands()) {
        Operation *def = operand.getDefiningOp();
        if (def && isComputeOp(def) && !inGroup.contains(def) &&
            position[def] > first)
          return;
      }
      for (Operation *user : m->getUsers())
        if (!inGroup.contains(user) && position[user] < last)
          return;
    }
    groups.unionSets(a, b);
  }

  /// The ops of `leader`'s dispatch, in program order.
  SmallVector<Operation *> membersOf(Operation *leader) {
    SmallVector<Operation *> out(groups.findLeader(leader), groups.member_end());
    llvm::sort(out, [&](Operation *a, Operation *b) { return position[a] < position[b]; });
    return out;
  }

  /// branches=true: the dispatches of the projections and compressors that
  /// read one norm's output, merged, their independent ops marked as
  /// branches (a single-token program without `fast` ops only).
  void formBranches(func::FuncOp func) {
    auto bound = func->getAttrOfType<IntegerAttr>(kMaxTokensAttr);
    if (!bound || bound.getInt() != 1 || func->hasAttr(kBatchedAttr))
      return;
    func.walk([&](RmsNormOp norm) {
      // The consumers' dispatches, in program order of their first op.
      SmallVector<Operation *> leaders;
      for (Operation *u : norm.getResult().getUsers()) {
        // The indexer's top-k reads x too; it joined its compressor.
        if (isa<IndexerTopkOp>(u))
          continue;
        if (!isa<QProjOp, KVProjOp, CompressOp>(u) || u->hasAttr(kNumericsAttr))
          return;
        Operation *l = groups.getLeaderValue(u);
        if (groups.isEquivalent(l, norm) || llvm::is_contained(leaders, l))
          continue;
        leaders.push_back(l);
      }
      if (leaders.size() < 2)
        return;
      llvm::sort(leaders, [&](Operation *a, Operation *b) {
        return position[membersOf(a).front()] < position[membersOf(b).front()];
      });
      // Each former dispatch's ops (its branch), then the merge.
      llvm::DenseMap<Operation *, int64_t> branchOf;
      SmallVector<Operation *> merged = {leaders.front()};
      for (auto [i, l] : llvm::enumerate(leaders))
        for (Operation *m : membersOf(l))
          branchOf[m] = int64_t(i);
      for (Operation *l : ArrayRef(leaders).drop_front()) {
        tryMerge(leaders.front(), l);
        if (!groups.isEquivalent(leaders.front(), l))
          for (Operation *m : membersOf(l))
            branchOf.erase(m);
      }
      // An op that reads a result of another branch's op, or of an op no
      // longer a branch's, runs after the branches (-1).
      SmallVector<Operation *> members = membersOf(leaders.front());
      for (Operation *m : members) {
        auto it = branchOf.find(m);
        if (it == branchOf.end()) {
          branchOf[m] = -1;
          continue;
        }
        for (Value v : m->getOperands()) {
          Operation *def = v.getDefiningOp();
          if (!def || !branchOf.count(def) || branchOf[def] == it->second)
            continue;
          it->second = -1;
          break;
        }
      }
      // The branches run first: an op after them must not read decode
      // state a branch op reads or updates in place (it would see the
      // update), and at least two branches must hold ops.
      SmallVector<Operation *> inBranches, after;
      llvm::SmallDenseSet<int64_t> used;
      for (Operation *m : members) {
        (branchOf[m] >= 0 ? inBranches : after).push_back(m);
        if (branchOf[m] >= 0)
          used.insert(branchOf[m]);
      }
      if (used.size() < 2 || readsAny(after, stateOf(inBranches)))
        return;
      // Branch numbers 0, 1, ... in the order of their first op.
      llvm::DenseMap<int64_t, int64_t> dense;
      OpBuilder b(func.getContext());
      for (Operation *m : members)
        if (int64_t i = branchOf[m]; i >= 0) {
          auto [it, inserted] = dense.try_emplace(i, int64_t(dense.size()));
          m->setAttr(kBranchAttr, b.getI64IntegerAttr(it->second));
        }
      // The norm's dispatch (hc.pre and the norm) opens the same launch:
      // one launch fewer a layer (the branches start after a barrier).
      if (fuseNorms)
        tryMerge(norm, leaders.front());
    });
  }

  /// The decode state (block arguments other than activations, weights and
  /// indices) that `ops` read or update in place.
  static llvm::DenseSet<Value> stateOf(ArrayRef<Operation *> ops) {
    llvm::DenseSet<Value> state;
    for (Operation *m : ops)
      for (Value v : m->getOperands())
        if (isa<BlockArgument>(v) && !isa<RankedTensorType, WeightType, IndexType>(v.getType()))
          state.insert(v);
    return state;
  }
  /// Whether an op of `ops` reads a value of `values`.
  static bool readsAny(ArrayRef<Operation *> ops, const llvm::DenseSet<Value> &values) {
    for (Operation *m : ops)
      for (Value v : m->getOperands())
        if (values.contains(v))
          return true;
    return false;
  }

  /// Whether `leader`'s dispatch can take the ops of `other`'s: none of
  /// them reads decode state that an op of a branch there reads or updates
  /// in place (the branches run first; the joining ops run after them and
  /// would see the update).
  bool stateApart(Operation *leader, Operation *other) {
    SmallVector<Operation *> inBranches;
    for (Operation *m : membersOf(leader))
      if (m->hasAttr(kBranchAttr))
        inBranches.push_back(m);
    return !readsAny(membersOf(other), stateOf(inBranches));
  }

  /// attention-launch=true: in a single-token program, the attention (with
  /// its window update and RoPE) joins the dispatch of the op that made its
  /// queries (with branches: after the join of the projections and
  /// compressors), and the output projection (with hc.post) joins the
  /// attention: an attention sub-layer's ops in one launch, its steps
  /// separated by grid barriers instead of launch boundaries.
  void formAttentionLaunches(func::FuncOp func) {
    auto bound = func->getAttrOfType<IntegerAttr>(kMaxTokensAttr);
    if (!bound || bound.getInt() != 1 || func->hasAttr(kBatchedAttr))
      return;
    func.walk([&](SparseAttentionOp att) {
      if (att->hasAttr(kNumericsAttr))
        return;
      if (Operation *q = att.getQ().getDefiningOp())
        if (isComputeOp(q) && !q->hasAttr(kNumericsAttr) &&
            stateApart(groups.getLeaderValue(q), att))
          tryMerge(q, att);
      // The output projection that reads the attention's dispatch.
      for (Operation *m : membersOf(groups.getLeaderValue(att)))
        for (Operation *u : m->getUsers())
          if (isa<OutProjOp>(u) && !u->hasAttr(kNumericsAttr) &&
              stateApart(groups.getLeaderValue(att), u)) {
            tryMerge(att, u);
            return;
          }
    });
  }

  llvm::DenseMap<Operation *, size_t> position;
  llvm::EquivalenceClasses<Operation *> groups;
};
} // namespace
