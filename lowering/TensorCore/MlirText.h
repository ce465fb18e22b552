//===- MlirText.h - Writing tensor-core kernels as MLIR text -----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// What the generators of the tensor-core kernels (WgmmaGemm.cpp,
// WgmmaExperts.cpp) share: numbered SSA names, constants and binary ops as
// text, and the wgmma steps over a K-major pair of shared-memory tiles.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_TENSORCORE_MLIRTEXT_H
#define COMPRESSA_LOWERING_TENSORCORE_MLIRTEXT_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdint>
#include <string>

namespace mlir::compressa {

class MlirTextWriter {
protected:
  explicit MlirTextWriter(llvm::raw_ostream &os) : os(os) {}
  llvm::raw_ostream &os;
  int next = 0;

  /// A fresh SSA name.
  std::string v() { return "%v" + std::to_string(next++); }
  /// The index constants both kernels name: %c0, %c1, %c2, ... %c256, %c1024.
  void indexConstants() {
    for (int x : {0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 1024})
      os << "    %c" << x << " = arith.constant " << x << " : index\n";
  }
  /// An index constant.
  std::string ci(int64_t x) {
    std::string n = v();
    os << "    " << n << " = arith.constant " << x << " : index\n";
    return n;
  }
  std::string op(llvm::StringRef name, llvm::StringRef a, llvm::StringRef b,
                 llvm::StringRef type = "index") {
    std::string n = v();
    os << "    " << n << " = " << name << " " << a << ", " << b << " : " << type << "\n";
    return n;
  }
  std::string i64(llvm::StringRef index) {
    std::string n = v();
    os << "    " << n << " = arith.index_cast " << index << " : index to i64\n";
    return n;
  }

  /// The accumulator type of a warpgroup's 64 x 128 f32 tile.
  static constexpr llvm::StringLiteral kAccumulator =
      "!nvgpu.warpgroup.accumulator<fragmented = vector<64x128xf32>>";

  /// `steps` nvgpu.warpgroup.mma into `acc`: step k multiplies columns
  /// [k kCols, (k + 1) kCols) of the warpgroup's 64 rows of `a` (from row
  /// `wgRow`) by the same columns of the 128 rows of `w`; both are K-major
  /// tiles of type `tile` (rows of `rowElems` elements of `elt`) whose
  /// descriptors take the swizzle of `mapA` / `mapB` (of type !map).
  /// Returns the last accumulator.
  std::string wgmmaSteps(llvm::StringRef a, llvm::StringRef w, llvm::StringRef wgRow,
                         llvm::StringRef tile, llvm::StringRef elt, int64_t rowElems,
                         int64_t kCols, int steps, llvm::StringRef mapA,
                         llvm::StringRef mapB, std::string acc) {
    std::string space = "#gpu.address_space<workgroup>";
    std::string cols = std::to_string(kCols), row = std::to_string(rowElems);
    std::string dA = "!nvgpu.warpgroup.descriptor<tensor = memref<64x" + cols + "x" +
                     elt.str() + ", " + space + ">>";
    std::string dB = "!nvgpu.warpgroup.descriptor<tensor = memref<" + cols + "x128x" +
                     elt.str() + ", " + space + ">>";
    std::string subA = "memref<64x" + cols + "x" + elt.str() + ", strided<[" + row +
                       ", 1], offset: ?>, " + space + ">";
    for (int k = 0; k < steps; ++k) {
      std::string sa = v(), sb = v(), da = v(), db = v(), nx = v();
      std::string subB = "memref<128x" + cols + "x" + elt.str() + ", strided<[" + row +
                         ", 1], offset: " + std::to_string(kCols * k) + ">, " + space + ">";
      os << "    " << sa << " = memref.subview " << a << "[" << wgRow << ", " << kCols * k
         << "] [64, " << kCols << "] [1, 1] : " << tile << " to " << subA << "\n";
      os << "    " << sb << " = memref.subview " << w << "[0, " << kCols * k << "] [128, "
         << kCols << "] [1, 1] : " << tile << " to " << subB << "\n";
      os << "    " << da << " = nvgpu.warpgroup.generate.descriptor " << sa << ", " << mapA
         << " : " << subA << ", !map -> " << dA << "\n";
      os << "    " << db << " = nvgpu.warpgroup.generate.descriptor " << sb << ", " << mapB
         << " : " << subB << ", !map -> " << dB << "\n";
      os << "    " << nx << " = nvgpu.warpgroup.mma " << da << ", " << db << ", " << acc
         << " : " << dA << ", " << dB << ", " << kAccumulator << " -> " << kAccumulator
         << "\n";
      acc = nx;
    }
    return acc;
  }
};

} // namespace mlir::compressa

#endif // COMPRESSA_LOWERING_TENSORCORE_MLIRTEXT_H
