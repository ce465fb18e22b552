//===- Numerics.cpp - dsv4-select-numerics -------------------------------===//
// SPDX-License-Identifier: Apache-2.0

#include "lowering/TensorCore/Numerics.h"
#include "dialects/DSV4/IR/DSV4Ops.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/PassRegistry.h"
#include "llvm/ADT/StringSwitch.h"

#include <cstdlib>
#include <string>

using namespace mlir;
using namespace mlir::compressa;

std::optional<Numerics> compressa::parseNumerics(llvm::StringRef name) {
  return llvm::StringSwitch<std::optional<Numerics>>(name)
      .Case("exact", Numerics::Exact)
      .Case("fast", Numerics::Fast)
      .Case("fast-decode", Numerics::FastDecode)
      .Default(std::nullopt);
}

const char *compressa::numericsName(Numerics numerics) {
  switch (numerics) {
  case Numerics::Fast:
    return "fast";
  case Numerics::FastDecode:
    return "fast-decode";
  case Numerics::Exact:
    break;
  }
  return "exact";
}

bool compressa::usesFastLinear(Operation *op) {
  auto mark = op->getAttrOfType<StringAttr>(dsv4::kNumericsAttr);
  return mark && mark.getValue() == "fast";
}

bool compressa::usesFp8Experts(Operation *op) {
  auto mark = op->getAttrOfType<StringAttr>(dsv4::kNumericsAttr);
  return mark && mark.getValue() == "fp8";
}

namespace {

/// The ops whose kernels multiply by FP8 dense weights through
/// Emitter::linearTokens (wq_a, wq_b, wkv, wo_b, the indexer's wq_b).
bool hasFp8LinearLayer(Operation *op) {
  if (!isa<dsv4::QProjOp, dsv4::KVProjOp, dsv4::OutProjOp, dsv4::IndexerTopkOp>(op))
    return false;
  return llvm::any_of(op->getOperandTypes(), [](Type t) {
    auto w = dyn_cast<dsv4::WeightType>(t);
    return w && w.getRank() == 2 && isa<Float8E4M3FNType>(w.getElementType());
  });
}

struct SelectNumericsPass
    : public PassWrapper<SelectNumericsPass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(SelectNumericsPass)

  SelectNumericsPass() = default;
  SelectNumericsPass(const SelectNumericsPass &other) : PassWrapper(other) {}
  explicit SelectNumericsPass(Numerics n) { numerics = numericsName(n); }

  StringRef getArgument() const final { return "dsv4-select-numerics"; }
  StringRef getDescription() const final {
    return "Records --numerics on the module; for `fast`, marks the prefill "
           "ops whose FP8 linear layers quantise activations (act_quant "
           "1x128, UE8M0) and run FP8 x FP8 block-scaled GEMMs";
  }

  Option<std::string> numerics{*this, "numerics",
                               llvm::cl::desc("exact, fast or fast-decode"),
                               llvm::cl::init("exact")};

  void runOnOperation() override {
    ModuleOp module = getOperation();
    std::optional<Numerics> n = parseNumerics(numerics);
    if (!n) {
      module.emitError() << "dsv4-select-numerics: unknown numerics '"
                         << numerics << "' (expected exact, fast or fast-decode)";
      return signalPassFailure();
    }
    // Absent means exact: the exact pipeline's output is unchanged.
    if (*n == Numerics::Exact)
      return;
    Builder b(module.getContext());
    module->setAttr(dsv4::kNumericsAttr, b.getStringAttr(numericsName(*n)));
    for (auto func : module.getOps<func::FuncOp>()) {
      if (func.getName() != "prefill") {
        // fast-decode: the other programs' (decode, batched decode) routed
        // experts, with the shared expert they fuse, in FP8 GEMM semantics.
        // With COMPRESSA_FP8_DECODE_LINEAR=1 at compile time (an
        // experiment), their dense FP8 layers too (wq_a, wq_b, wkv, wo_a,
        // wo_b, the indexer's wq_b: Emitter::fp8DecodeLinear).
        static const bool linears = [] {
          const char *v = std::getenv("COMPRESSA_FP8_DECODE_LINEAR");
          return v && std::string(v) == "1";
        }();
        if (*n == Numerics::FastDecode)
          func.walk([&](Operation *op) {
            auto experts = dyn_cast<dsv4::MoeExpertsOp>(op);
            if ((experts && !experts.getFirstExpert()) || (linears && hasFp8LinearLayer(op)))
              op->setAttr(dsv4::kNumericsAttr, b.getStringAttr("fp8"));
          });
        continue;
      }
      func.walk([&](Operation *op) {
        // The routed and shared experts: bf16 warp matrix tiles
        // (Emitter::expertsMma); the sparse attention: scores and weighted
        // sums on them (Emitter::attention); the compressors: their bf16
        // wkv and wgate projections on them (Emitter::compress). The mHC
        // mixes and the routers: their dots in token tiles (the same bits
        // as one token at a time; Emitter::rowDots), in kernels apart from
        // decode's, whose code stays as it was.
        if (hasFp8LinearLayer(op) ||
            isa<dsv4::MoeExpertsOp, dsv4::SharedExpertOp, dsv4::SparseAttentionOp,
                dsv4::CompressOp, dsv4::HcPreOp, dsv4::MoeGateOp, dsv4::MoeHashGateOp>(op))
          op->setAttr(dsv4::kNumericsAttr, b.getStringAttr("fast"));
      });
    }
  }
};

} // namespace

std::unique_ptr<Pass> compressa::createSelectNumericsPass(Numerics numerics) {
  return std::make_unique<SelectNumericsPass>(numerics);
}

void compressa::registerNumericsPasses() {
  PassRegistration<SelectNumericsPass>();
}
