//===- DSV4Dialect.cpp - dsv4 dialect, types and attributes -------------===//
// SPDX-License-Identifier: Apache-2.0
//
// Registration of the dsv4 dialect, and the verifiers and custom syntax of its
// types and attributes. Op verifiers live in DSV4Ops.cpp.
//
//===----------------------------------------------------------------------===//

#include "dialects/DSV4/IR/DSV4Dialect.h"
#include "dialects/DSV4/IR/DSV4Ops.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>

using namespace mlir;
using namespace mlir::dsv4;

#include "dialects/DSV4/IR/DSV4Dialect.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/DSV4/IR/DSV4Attrs.cpp.inc"

#define GET_TYPEDEF_CLASSES
#include "dialects/DSV4/IR/DSV4Types.cpp.inc"

void DSV4Dialect::initialize() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/DSV4/IR/DSV4Attrs.cpp.inc"
      >();
  addTypes<
#define GET_TYPEDEF_LIST
#include "dialects/DSV4/IR/DSV4Types.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "dialects/DSV4/IR/DSV4Ops.cpp.inc"
      >();
}

//===----------------------------------------------------------------------===//
// BlockScaleAttr
//===----------------------------------------------------------------------===//

LogicalResult
BlockScaleAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                       Type scaleType, int64_t rows, int64_t cols) {
  if (!isa<Float8E8M0FNUType, FloatType>(scaleType))
    return emitError() << "block scale type must be a float type, got "
                       << scaleType;
  if (rows <= 0 || cols <= 0)
    return emitError() << "block scale block must be positive, got [" << rows
                       << ", " << cols << "]";
  return success();
}

//===----------------------------------------------------------------------===//
// RopeAttr
//===----------------------------------------------------------------------===//

LogicalResult RopeAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                               int64_t dim, APFloat thetaF, APFloat factorF,
                               int64_t originalMaxPositions, APFloat betaFastF,
                               APFloat betaSlowF) {
  double theta = thetaF.convertToDouble(), factor = factorF.convertToDouble();
  double betaFast = betaFastF.convertToDouble();
  double betaSlow = betaSlowF.convertToDouble();
  if (dim <= 0 || dim % 2 != 0)
    return emitError() << "rope dim must be positive and even, got " << dim;
  if (!(theta > 1.0))
    return emitError() << "rope theta must be > 1, got " << theta;
  if (factor > 1.0) {
    if (originalMaxPositions <= 0)
      return emitError() << "yarn original_max_position_embeddings must be "
                            "positive, got "
                         << originalMaxPositions;
    if (!(betaFast > 0.0) || !(betaSlow > 0.0) || betaFast < betaSlow)
      return emitError() << "yarn needs beta_fast >= beta_slow > 0, got "
                         << betaFast << " and " << betaSlow;
  } else if (factor != 1.0) {
    return emitError() << "yarn factor must be > 1, got " << factor;
  }
  return success();
}

double RopeAttr::frequency(int64_t k) const {
  // spec §1.3: base_i = theta^(-2i/dim); YaRN blends base and base/factor
  // with a linear ramp between the correction dims of beta_fast and beta_slow.
  int64_t dim = getDim();
  double theta = getTheta().convertToDouble();
  double base = std::pow(theta, -2.0 * static_cast<double>(k) / dim);
  if (!isYarn())
    return base;
  auto correctionDim = [&](double beta) {
    return dim *
           std::log(getOriginalMaxPositions() / (2.0 * M_PI * beta)) /
           (2.0 * std::log(theta));
  };
  double low =
      std::max(std::floor(correctionDim(getBetaFast().convertToDouble())), 0.0);
  double high = std::min(
      std::ceil(correctionDim(getBetaSlow().convertToDouble())), double(dim - 1));
  if (low == high)
    high += 0.001;
  double ramp = std::clamp((k - low) / (high - low), 0.0, 1.0);
  return base * (1.0 - ramp) + base / getFactor().convertToDouble() * ramp;
}

/// `<dim = 64, theta = 10000.0 [, yarn = [factor, orig, beta_fast, beta_slow]]>`
Attribute RopeAttr::parse(AsmParser &parser, Type) {
  int64_t dim = 0, orig = 0;
  double theta = 0, factor = 1.0, betaFast = 32.0, betaSlow = 1.0;
  if (parser.parseLess() || parser.parseKeyword("dim") || parser.parseEqual() ||
      parser.parseInteger(dim) || parser.parseComma() ||
      parser.parseKeyword("theta") || parser.parseEqual() ||
      parser.parseFloat(theta))
    return {};
  if (succeeded(parser.parseOptionalComma())) {
    if (parser.parseKeyword("yarn") || parser.parseEqual() ||
        parser.parseLSquare() || parser.parseFloat(factor) ||
        parser.parseComma() || parser.parseInteger(orig) ||
        parser.parseComma() || parser.parseFloat(betaFast) ||
        parser.parseComma() || parser.parseFloat(betaSlow) ||
        parser.parseRSquare())
      return {};
  }
  if (parser.parseGreater())
    return {};
  return RopeAttr::getChecked(
      [&] { return parser.emitError(parser.getNameLoc()); },
      parser.getContext(), dim, APFloat(theta), APFloat(factor), orig,
      APFloat(betaFast), APFloat(betaSlow));
}

void RopeAttr::print(AsmPrinter &printer) const {
  printer << "<dim = " << getDim() << ", theta = ";
  printer.printFloat(getTheta());
  if (isYarn()) {
    printer << ", yarn = [";
    printer.printFloat(getFactor());
    printer << ", " << getOriginalMaxPositions() << ", ";
    printer.printFloat(getBetaFast());
    printer << ", ";
    printer.printFloat(getBetaSlow());
    printer << "]";
  }
  printer << ">";
}

//===----------------------------------------------------------------------===//
// WeightType
//===----------------------------------------------------------------------===//

LogicalResult WeightType::verify(function_ref<InFlightDiagnostic()> emitError,
                                 RankedTensorType storage,
                                 BlockScaleAttr scale) {
  Type elt = storage.getElementType();
  if (!storage.hasStaticShape())
    return emitError() << "weight shape must be static, got " << storage;
  for (int64_t size : storage.getShape())
    if (size <= 0)
      return emitError() << "weight dimensions must be positive, got "
                         << storage;
  if (storage.getRank() < 1 || storage.getRank() > 3)
    return emitError() << "weight rank must be 1, 2 or 3, got " << storage;

  if (isa<Float8E4M3FNType>(elt)) {
    if (!scale || !isa<Float8E8M0FNUType>(scale.getScaleType()) ||
        scale.getRows() != 128 || scale.getCols() != 128)
      return emitError() << "f8E4M3FN weight needs block scales "
                            "#dsv4.block_scale<f8E8M0FNU, [128, 128]>, got "
                         << (scale ? Attribute(scale) : Attribute());
    if (storage.getRank() < 2)
      return emitError() << "f8E4M3FN weight must be a matrix (or a stack of "
                            "matrices), got "
                         << storage;
    return success();
  }
  if (isa<Float4E2M1FNType>(elt)) {
    if (!scale || !isa<Float8E8M0FNUType>(scale.getScaleType()) ||
        scale.getRows() != 1 || scale.getCols() != 32)
      return emitError() << "f4E2M1FN weight needs block scales "
                            "#dsv4.block_scale<f8E8M0FNU, [1, 32]>, got "
                         << (scale ? Attribute(scale) : Attribute());
    if (storage.getRank() < 2)
      return emitError() << "f4E2M1FN weight must be a matrix (or a stack of "
                            "matrices), got "
                         << storage;
    int64_t in = storage.getShape().back();
    if (in % 32 != 0)
      return emitError() << "f4E2M1FN weight input width " << in
                         << " is not a multiple of the 1x32 scale block";
    return success();
  }
  if (scale)
    return emitError() << "only f8E4M3FN and f4E2M1FN weights carry block "
                          "scales, got "
                       << elt << " with " << Attribute(scale);
  if (!elt.isBF16() && !elt.isF32() && !elt.isF16() &&
      !elt.isSignlessInteger(64) && !elt.isSignlessInteger(32))
    return emitError() << "unsupported weight element type " << elt
                       << " (expected f8E4M3FN, f4E2M1FN, bf16, f16, f32, "
                          "i32 or i64)";
  return success();
}

//===----------------------------------------------------------------------===//
// Decode state types
//===----------------------------------------------------------------------===//

static LogicalResult verifyStateElement(function_ref<InFlightDiagnostic()> emitError,
                                        StringRef what, Type elt) {
  if (!elt.isF32() && !elt.isBF16() && !elt.isF16() &&
      !isa<Float8E4M3FNType>(elt))
    return emitError() << what
                       << " element type must be f32, bf16, f16 or f8E4M3FN, got "
                       << elt;
  return success();
}

LogicalResult WindowKVType::verify(function_ref<InFlightDiagnostic()> emitError,
                                   int64_t window, int64_t dim, Type elt) {
  if (window <= 0 || dim <= 0)
    return emitError() << "window_kv needs a positive window and dim, got "
                       << window << " and " << dim;
  return verifyStateElement(emitError, "window_kv", elt);
}

LogicalResult
CompressedKVType::verify(function_ref<InFlightDiagnostic()> emitError,
                         int64_t ratio, int64_t dim, Type elt) {
  if (ratio <= 1 || dim <= 0)
    return emitError() << "compressed_kv needs ratio > 1 and a positive dim, "
                          "got "
                       << ratio << " and " << dim;
  return verifyStateElement(emitError, "compressed_kv", elt);
}

LogicalResult
IndexerKeysType::verify(function_ref<InFlightDiagnostic()> emitError,
                        int64_t ratio, int64_t dim, Type elt) {
  if (ratio <= 1 || dim <= 0)
    return emitError() << "indexer_keys needs ratio > 1 and a positive dim, "
                          "got "
                       << ratio << " and " << dim;
  return verifyStateElement(emitError, "indexer_keys", elt);
}

LogicalResult
CompressorStateType::verify(function_ref<InFlightDiagnostic()> emitError,
                            int64_t ratio, int64_t dim, bool overlap) {
  if (ratio <= 1 || dim <= 0)
    return emitError() << "compressor_state needs ratio > 1 and a positive "
                          "dim, got "
                       << ratio << " and " << dim;
  return success();
}

/// `<ratio, dim [, overlap]>`
Type CompressorStateType::parse(AsmParser &parser) {
  int64_t ratio = 0, dim = 0;
  bool overlap = false;
  if (parser.parseLess() || parser.parseInteger(ratio) || parser.parseComma() ||
      parser.parseInteger(dim))
    return {};
  if (succeeded(parser.parseOptionalComma())) {
    if (parser.parseKeyword("overlap"))
      return {};
    overlap = true;
  }
  if (parser.parseGreater())
    return {};
  return CompressorStateType::getChecked(
      [&] { return parser.emitError(parser.getNameLoc()); },
      parser.getContext(), ratio, dim, overlap);
}

void CompressorStateType::print(AsmPrinter &printer) const {
  printer << "<" << getRatio() << ", " << getDim();
  if (getOverlap())
    printer << ", overlap";
  printer << ">";
}

//===----------------------------------------------------------------------===//
// Contract attributes (DSV4Dialect.h lists them)
//===----------------------------------------------------------------------===//

/// A [offset, bytes] slot: offset >= 0 and bytes >= 0, or [-1, 0] where
/// `allowNone` (a value that never leaves its dispatch).
static LogicalResult verifySlot(Operation *op, Attribute attr, StringRef what,
                                bool allowNone) {
  auto slot = dyn_cast<DenseI64ArrayAttr>(attr);
  if (!slot || slot.size() != 2)
    return op->emitOpError() << what << " must be array<i64: offset, bytes>, got "
                             << attr;
  int64_t offset = slot[0], bytes = slot[1];
  if (allowNone && offset == -1 && bytes == 0)
    return success();
  if (offset < 0 || bytes < 0)
    return op->emitOpError() << what << " [" << offset << ", " << bytes
                             << "] must have offset >= 0 and bytes >= 0"
                             << (allowNone ? " (or be [-1, 0])" : "");
  if (offset % 64 != 0)
    return op->emitOpError() << what << " offset " << offset
                             << " is not 64-byte aligned";
  return success();
}

/// The bytes a tensor needs when its dynamic dimensions (the token count)
/// are `maxTokens`; -1 when that is not known.
static int64_t tensorBytes(RankedTensorType type, int64_t maxTokens) {
  int64_t elements = 1;
  for (int64_t d : type.getShape()) {
    if (ShapedType::isDynamic(d)) {
      if (maxTokens <= 0)
        return -1;
      d = maxTokens;
    }
    elements *= d;
  }
  return elements * std::max<int64_t>(1, type.getElementTypeBitWidth() / 8);
}

/// The dsv4.max_tokens of the program around `op`, or 0.
static int64_t maxTokensAround(Operation *op) {
  for (Operation *p = op; p; p = p->getParentOp())
    if (auto bound = p->getAttrOfType<IntegerAttr>(kMaxTokensAttr))
      return bound.getInt();
  return 0;
}

/// Checks that every slot of program `func` lies inside its arena.
static LogicalResult verifyArena(Operation *func, int64_t arena) {
  auto check = [&](Operation *at, ArrayRef<int64_t> slot,
                   const Twine &what) -> LogicalResult {
    if (slot[0] >= 0 && slot[0] + slot[1] > arena)
      return at->emitOpError() << what << " [" << slot[0] << ", " << slot[1]
                               << "] ends past dsv4.arena_bytes = " << arena;
    return success();
  };
  if (func->getNumRegions() == 1 && !func->getRegion(0).empty()) {
    Block &entry = func->getRegion(0).front();
    if (auto argAttrs = func->getAttrOfType<ArrayAttr>("arg_attrs"))
      for (auto [i, a] : llvm::enumerate(argAttrs))
        if (auto dict = dyn_cast<DictionaryAttr>(a))
          if (auto slot = dict.getAs<DenseI64ArrayAttr>(kBufferAttr))
            if (slot.size() == 2 &&
                failed(check(func, slot.asArrayRef(),
                             "dsv4.buffer of argument #" + Twine(i))))
              return failure();
    (void)entry;
  }
  WalkResult result = func->walk([&](Operation *op) {
    auto slots = op->getAttrOfType<ArrayAttr>(kBuffersAttr);
    if (!slots)
      return WalkResult::advance();
    for (auto [i, s] : llvm::enumerate(slots))
      if (auto slot = dyn_cast<DenseI64ArrayAttr>(s))
        if (slot.size() == 2 &&
            failed(check(op, slot.asArrayRef(),
                         "dsv4.buffers entry #" + Twine(i))))
          return WalkResult::interrupt();
    return WalkResult::advance();
  });
  return failure(result.wasInterrupted());
}

LogicalResult DSV4Dialect::verifyOperationAttribute(Operation *op,
                                                    NamedAttribute attr) {
  StringRef name = attr.getName().getValue();
  Attribute value = attr.getValue();
  auto positiveI64 = [&](int64_t min) -> FailureOr<int64_t> {
    auto i = dyn_cast<IntegerAttr>(value);
    if (!i || !i.getType().isInteger(64) || i.getInt() < min)
      return op->emitOpError() << name << " must be an i64 >= " << min
                               << ", got " << value;
    return i.getInt();
  };
  if (name == kDispatchAttr)
    return positiveI64(0);
  if (name == kSingleTokenAttr) {
    if (!isa<UnitAttr>(value))
      return op->emitOpError() << name << " must be a unit, got " << value;
    return success();
  }
  // One of the ops of a dispatch run side by side (dsv4-form-dispatches).
  if (name == kBranchAttr)
    return positiveI64(0);
  if (name == kMaxTokensAttr)
    return positiveI64(1);
  if (name == kArenaBytesAttr) {
    FailureOr<int64_t> arena = positiveI64(0);
    if (failed(arena))
      return failure();
    return verifyArena(op, *arena);
  }
  if (name == kBuffersAttr) {
    auto slots = dyn_cast<ArrayAttr>(value);
    if (!slots || slots.size() != op->getNumResults())
      return op->emitOpError()
             << name << " must hold one slot per result (" << op->getNumResults()
             << "), got " << value;
    int64_t maxTokens = maxTokensAround(op);
    for (auto [i, s] : llvm::enumerate(slots)) {
      if (failed(verifySlot(op, s, name.str() + " entry #" + std::to_string(i),
                            /*allowNone=*/true)))
        return failure();
      auto slot = cast<DenseI64ArrayAttr>(s);
      if (slot[0] < 0)
        continue;
      auto type = dyn_cast<RankedTensorType>(op->getResult(i).getType());
      if (!type)
        return op->emitOpError() << name << " entry #" << i
                                 << " places result #" << i
                                 << ", which is not a tensor but "
                                 << op->getResult(i).getType();
      int64_t needed = tensorBytes(type, maxTokens);
      if (needed > slot[1])
        return op->emitOpError()
               << name << " entry #" << i << " has " << slot[1]
               << " bytes, but result #" << i << " (" << type << ") needs "
               << needed << " at dsv4.max_tokens = " << maxTokens;
    }
    return success();
  }
  if (name == kModelAttr || name == kConfigJsonAttr || name == kKernelAttr) {
    if (!isa<StringAttr>(value))
      return op->emitOpError() << name << " must be a string, got " << value;
    return success();
  }
  if (name == kMaxContextAttr)
    return positiveI64(1);
  // The batched decode program (its B) or one of its kernels (a unit).
  if (name == kBatchedAttr)
    return isa<UnitAttr>(value) ? success() : LogicalResult(positiveI64(1));
  if (name == kNumericsAttr) {
    auto str = dyn_cast<StringAttr>(value);
    bool onModule = isa<mlir::ModuleOp>(op);
    if (str && str.getValue() == "fp8" &&
        isa<MoeExpertsOp, QProjOp, KVProjOp, OutProjOp, IndexerTopkOp>(op))
      return success();
    if (!str || (str.getValue() != "exact" && str.getValue() != "fast" &&
                 !(onModule && str.getValue() == "fast-decode")))
      return op->emitOpError()
             << name
             << " must be \"exact\" or \"fast\" (also \"fast-decode\" on a module, "
                "\"fp8\" on a dsv4.moe.experts or an op with FP8 linear layers), got "
             << value;
    return success();
  }
  if (name == kExactMmaAttr) {
    if (!isa<UnitAttr>(value) || !isa<MoeExpertsOp>(op))
      return op->emitOpError() << name << " must be a unit on a dsv4.moe.experts, got "
                               << value;
    return success();
  }
  if (name == kModelInfoAttr) {
    auto dict = dyn_cast<DictionaryAttr>(value);
    if (!dict)
      return op->emitOpError() << name << " must be a dictionary, got " << value;
    for (StringRef key : kModelInfoKeys) {
      auto v = dict.getAs<IntegerAttr>(key);
      if (!v || !v.getType().isInteger(64))
        return op->emitOpError() << name << " needs '" << key
                                 << "' as an i64, got " << value;
    }
    if (dict.size() != std::size(kModelInfoKeys))
      return op->emitOpError() << name << " has keys beyond "
                               << "vocab_size, hidden_size, bos_token_id, "
                                  "eos_token_id, n_routed_experts: "
                               << value;
    return success();
  }
  if (name == kAbiAttr) {
    auto dict = dyn_cast<DictionaryAttr>(value);
    auto params = dict ? dict.getAs<DenseI64ArrayAttr>("params") : nullptr;
    auto scratch = dict ? dict.getAs<DenseI64ArrayAttr>("scratch") : nullptr;
    auto block = dict ? dict.getAs<IntegerAttr>("block") : nullptr;
    if (!params || params.size() % 3 != 0 || !scratch || scratch.size() != 2 ||
        !block || block.getInt() < 1)
      return op->emitOpError()
             << name << " must be {params = array<i64: kind, bytes_per_token, "
                "bytes, ...>, scratch = array<i64: bytes_per_token, bytes>, "
                "block = N >= 1}, got "
             << value;
    return success();
  }
  return op->emitOpError() << "unknown dsv4 attribute '" << name << "'";
}

LogicalResult DSV4Dialect::verifyRegionArgAttribute(Operation *op,
                                                    unsigned regionIndex,
                                                    unsigned argIndex,
                                                    NamedAttribute attr) {
  StringRef name = attr.getName().getValue();
  Attribute value = attr.getValue();
  Region &region = op->getRegion(regionIndex);
  if (region.empty() || argIndex >= region.getNumArguments())
    return success(); // A declaration: nothing to check the type against.
  Type type = region.getArgument(argIndex).getType();
  std::string what = name.str() + " of argument #" + std::to_string(argIndex);
  if (name == kBufferAttr) {
    if (failed(verifySlot(op, value, what, /*allowNone=*/false)))
      return failure();
    auto tensor = dyn_cast<RankedTensorType>(type);
    if (!tensor)
      return op->emitOpError() << what << " places a " << type
                               << ", expected a tensor";
    int64_t needed = tensorBytes(tensor, maxTokensAround(op));
    if (needed > cast<DenseI64ArrayAttr>(value)[1])
      return op->emitOpError() << what << " has " << cast<DenseI64ArrayAttr>(value)[1]
                               << " bytes, but " << type << " needs " << needed;
    return success();
  }
  if (name == kStateAttr) {
    auto s = dyn_cast<StringAttr>(value);
    if (!s || s.getValue().empty())
      return op->emitOpError() << what << " must be a non-empty string, got "
                               << value;
    if (!isa<WindowKVType, CompressedKVType, IndexerKeysType,
             CompressorStateType>(type))
      return op->emitOpError() << what << " names decode state, but the "
                               << "argument is a " << type;
    return success();
  }
  if (name == kInputAttr) {
    if (!isa<StringAttr>(value))
      return op->emitOpError() << what << " must be a string, got " << value;
    return success();
  }
  return op->emitOpError() << "unknown dsv4 argument attribute '" << name << "'";
}
