//===- KernelABI.cpp - How a kernel receives its operands ----------------===//
// SPDX-License-Identifier: Apache-2.0

#include "lowering/DSV4ToKernels/KernelABI.h"

#include <algorithm>

using namespace mlir::dsv4;

namespace mlir::compressa {

int64_t StateGeometry::bytes(int64_t maxContext) const {
  int64_t total = rowBytes * (rows + (ratio ? maxContext / ratio : 0));
  // Entries of a ratio larger than the context never exist; keep 1 byte so
  // the allocation is valid.
  return std::max<int64_t>(total, 1);
}

FailureOr<StateGeometry> stateGeometry(Type type) {
  auto eltBytes = [](Type e) { return int64_t(e.getIntOrFloatBitWidth() / 8); };
  StateGeometry g;
  if (auto w = dyn_cast<WindowKVType>(type)) {
    g.rowBytes = w.getDim() * eltBytes(w.getElementType());
    g.rows = w.getWindow();
  } else if (auto c = dyn_cast<CompressorStateType>(type)) {
    // kv and score halves of slots x width f32 each.
    g.rowBytes = 2 * c.getWidth() * 4;
    g.rows = c.getSlots();
    g.compressor = true;
  } else if (auto e = dyn_cast<CompressedKVType>(type)) {
    g.rowBytes = e.getDim() * eltBytes(e.getElementType());
    g.ratio = e.getRatio();
  } else if (auto k = dyn_cast<IndexerKeysType>(type)) {
    g.rowBytes = k.getDim() * eltBytes(k.getElementType());
    g.ratio = k.getRatio();
  } else {
    return failure();
  }
  return g;
}

SmallVector<AbiParam, 2> abiParamsOf(Type type, bool isResult,
                                     int64_t maxContext, bool batched) {
  if (auto tensor = dyn_cast<RankedTensorType>(type)) {
    uint64_t elements = 1;
    bool perToken = false;
    for (int64_t d : tensor.getShape()) {
      if (ShapedType::isDynamic(d))
        perToken = true;
      else
        elements *= uint64_t(d);
    }
    uint64_t bytes = elements * tensor.getElementTypeBitWidth() / 8;
    if (perToken)
      return {{fb::ArgKind::Buffer, bytes, 0}};
    return {{fb::ArgKind::Buffer, 0, bytes}};
  }
  if (auto weight = dyn_cast<WeightType>(type)) {
    if (weight.getRank() == 3)
      return {{fb::ArgKind::ExpertTable, 0, uint64_t(weight.getShape()[0])}};
    SmallVector<AbiParam, 2> out = {{fb::ArgKind::Weight, 0, weightBytes(weight)}};
    if (weight.isQuantized())
      out.push_back({fb::ArgKind::WeightScale, 0, scaleBytes(weight)});
    return out;
  }
  if (FailureOr<StateGeometry> g = stateGeometry(type); succeeded(g)) {
    if (isResult)
      return {};
    return {{batched ? fb::ArgKind::StateTable : fb::ArgKind::State, 0,
             uint64_t(g->bytes(maxContext))}};
  }
  return {}; // index: start_pos travels in slot 1
}

SmallVector<AbiParam> kernelAbi(FunctionType type, int64_t maxContext,
                                bool batched, bool logitRows) {
  SmallVector<AbiParam> abi = {{fb::ArgKind::Tokens},
                               {fb::ArgKind::StartPos},
                               {fb::ArgKind::Scratch}};
  if (batched)
    abi.append({{fb::ArgKind::Positions}, {fb::ArgKind::SlotIds}});
  for (Type t : type.getInputs())
    llvm::append_range(abi, abiParamsOf(t, /*isResult=*/false, maxContext, batched));
  for (Type t : type.getResults())
    llvm::append_range(abi, abiParamsOf(t, /*isResult=*/true, maxContext, batched));
  if (logitRows)
    abi.push_back({fb::ArgKind::LogitRows});
  return abi;
}

std::string weightDtype(WeightType type) {
  Type elt = type.getElementType();
  if (isa<Float8E4M3FNType>(elt))
    return "F8_E4M3";
  if (isa<Float4E2M1FNType>(elt))
    return "I8";
  if (elt.isBF16())
    return "BF16";
  if (elt.isF32())
    return "F32";
  if (elt.isInteger(64))
    return "I64";
  return "?";
}

SmallVector<int64_t> weightDiskShape(WeightType type) {
  ArrayRef<int64_t> shape = type.getShape();
  if (type.getRank() == 3)
    shape = shape.drop_front();
  SmallVector<int64_t> out(shape);
  if (isa<Float4E2M1FNType>(type.getElementType()))
    out.back() = (out.back() + 1) / 2; // two e2m1 codes a byte
  return out;
}

uint64_t weightBytes(WeightType type) {
  uint64_t elements = 1;
  for (int64_t d : weightDiskShape(type))
    elements *= uint64_t(d);
  Type elt = type.getElementType();
  if (isa<Float8E4M3FNType, Float4E2M1FNType>(elt))
    return elements;
  return elements * elt.getIntOrFloatBitWidth() / 8;
}

SmallVector<int64_t> scaleShape(WeightType type) {
  BlockScaleAttr scale = type.getScale();
  if (!scale)
    return {};
  ArrayRef<int64_t> shape = type.getShape();
  if (type.getRank() == 3)
    shape = shape.drop_front();
  int64_t rows = shape.size() == 2 ? shape[0] : 1, cols = shape.back();
  return {(rows + scale.getRows() - 1) / scale.getRows(),
          (cols + scale.getCols() - 1) / scale.getCols()};
}

uint64_t scaleBytes(WeightType type) {
  uint64_t n = 1;
  for (int64_t d : scaleShape(type))
    n *= uint64_t(d);
  return type.isQuantized() ? n : 0;
}

std::string scaleName(StringRef weightName) {
  StringRef base = weightName;
  base.consume_back(".weight");
  return (base + ".scale").str();
}

} // namespace mlir::compressa
