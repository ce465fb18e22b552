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

#include "llvm/ADT/STLFunctionalExtras.h"
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
  /// i64 and i32 constants, an i64 binary op.
  std::string c64(int64_t x) {
    std::string n = v();
    os << "    " << n << " = arith.constant " << x << " : i64\n";
    return n;
  }
  std::string c32(int64_t x) {
    std::string n = v();
    os << "    " << n << " = arith.constant " << x << " : i32\n";
    return n;
  }
  std::string a64(llvm::StringRef name, llvm::StringRef a, llvm::StringRef b) {
    return op(name, a, b, "i64");
  }
  /// &ptr[index] (index i64) of elements `elt`, and a load of `type` with
  /// `align`, through a pointer of `ptrType` (!llvm.ptr<1>: global memory).
  std::string gep(llvm::StringRef ptr, llvm::StringRef index, llvm::StringRef elt,
                  llvm::StringRef ptrType = "!llvm.ptr") {
    std::string n = v();
    os << "    " << n << " = llvm.getelementptr " << ptr << "[" << index << "] : ("
       << ptrType << ", i64) -> " << ptrType << ", " << elt << "\n";
    return n;
  }
  std::string load(llvm::StringRef ptr, llvm::StringRef type, int align,
                   llvm::StringRef ptrType = "!llvm.ptr") {
    std::string n = v();
    os << "    " << n << " = llvm.load " << ptr << " {alignment = " << align << " : i64} : "
       << ptrType << " -> " << type << "\n";
    return n;
  }
  std::string i64(llvm::StringRef index) {
    std::string n = v();
    os << "    " << n << " = arith.index_cast " << index << " : index to i64\n";
    return n;
  }

  /// %smem (the dynamic shared memory, of type `smemType`) and %pad, the
  /// bytes from its start to its first 1024-byte boundary, where the tiles
  /// start (the 128-byte swizzle repeats every 8 rows of 128 bytes, and the
  /// wgmma descriptors assume its phase); with `address`, %sbase: that
  /// boundary's shared-memory address (i64).
  void alignedSharedMemory(llvm::StringRef smemType, bool address) {
    os << "    %smem = gpu.dynamic_shared_memory : " << smemType << "\n"
       << "    %base = memref.extract_aligned_pointer_as_index %smem : " << smemType
       << " -> index\n"
       << "    %mis = arith.remui %base, %c1024 : index\n"
       << "    %pad0 = arith.subi %c1024, %mis : index\n"
       << "    %pad = arith.remui %pad0, %c1024 : index\n";
    if (address)
      os << "    %tileBase = arith.addi %base, %pad : index\n"
         << "    %sbase = arith.index_cast %tileBase : index to i64\n";
  }
  /// A persistent launch's share of %items (i64; needs %one64, %zero64):
  /// %bid64, %grid64 (i64) and %myItems (index), the count of items bid,
  /// bid + grid, ... below %items.
  void persistentItems() {
    os << "    %bid = gpu.block_id x\n"
          "    %gridI = gpu.grid_dim x\n"
          "    %bid64 = arith.index_cast %bid : index to i64\n"
          "    %grid64 = arith.index_cast %gridI : index to i64\n";
    os << "    %left = arith.subi %items, %bid64 : i64\n";
    os << "    %leftG = arith.addi %left, %grid64 : i64\n";
    os << "    %leftG1 = arith.subi %leftG, %one64 : i64\n";
    os << "    %mine0 = arith.divsi %leftG1, %grid64 : i64\n";
    os << "    %some = arith.cmpi sgt, %left, %zero64 : i64\n";
    os << "    %mine = arith.select %some, %mine0, %zero64 : i64\n";
    os << "    %myItems = arith.index_cast %mine : i64 to index\n";
  }
  /// %tid, %wg (the warpgroup's index made warp-uniform by a shuffle from
  /// lane 0, so that ptxas sees the consumers' wgmma on a uniform path),
  /// %tl (the thread in its warpgroup), %warp and %lane (index values).
  void warpgroupIds() {
    os << "    %tid = gpu.thread_id x\n"
          "    %wgT = arith.divui %tid, %c128 : index\n"
          "    %wgT32 = arith.index_cast %wgT : index to i32\n"
          "    %lane0 = arith.constant 0 : i32\n"
          "    %width32 = arith.constant 32 : i32\n"
          "    %wgU32, %wgOk = gpu.shuffle idx %wgT32, %lane0, %width32 : i32\n"
          "    %wg = arith.index_cast %wgU32 : i32 to index\n"
          "    %tl = arith.remui %tid, %c128 : index\n"
          "    %warp = arith.divui %tl, %c32 : index\n"
          "    %lane = arith.remui %tl, %c32 : index\n";
  }
  /// %bar (full) and %ebar (empty), `stages` mbarriers each (of type !bar),
  /// initialised by thread %tid 0 to expect `full` and `empty` arrivals
  /// (index values); `more` writes the rest of thread 0's setup. Then a
  /// barrier of the block.
  void stageBarriers(int64_t stages, llvm::StringRef full, llvm::StringRef empty,
                     llvm::function_ref<void()> more = {}) {
    os << "    %bar = nvgpu.mbarrier.create -> !bar\n";
    os << "    %ebar = nvgpu.mbarrier.create -> !bar\n";
    os << "    %is0 = arith.cmpi eq, %tid, %c0 : index\n";
    os << "    scf.if %is0 {\n";
    for (int64_t st = 0; st < stages; ++st) {
      std::string c = ci(st);
      os << "    nvgpu.mbarrier.init %bar[" << c << "], " << full << " : !bar\n";
      os << "    nvgpu.mbarrier.init %ebar[" << c << "], " << empty << " : !bar\n";
    }
    if (more)
      more();
    os << "    }\n    gpu.barrier\n";
  }

  /// The accumulator type of a warpgroup's 64 x 128 f32 tile.
  static constexpr llvm::StringLiteral kAccumulator =
      "!nvgpu.warpgroup.accumulator<fragmented = vector<64x128xf32>>";

  /// `steps` nvgpu.warpgroup.mma into `acc`: step k multiplies columns
  /// [k kCols, (k + 1) kCols) of the warpgroup's 64 rows of `a` (from row
  /// `wgRow`) by the same columns of the 128 rows of `w`; both are K-major
  /// tiles of type `tile` (rows of `rowElems` elements of `elt`) whose
  /// descriptors take the swizzle of `mapA` / `mapB` (of type !map).
  /// Returns the last accumulator. `waitGroup` >= 0: each step's
  /// wgmma.wait_group count (NVGPU's default, 1, otherwise).
  std::string wgmmaSteps(llvm::StringRef a, llvm::StringRef w, llvm::StringRef wgRow,
                         llvm::StringRef tile, llvm::StringRef elt, int64_t rowElems,
                         int64_t kCols, int steps, llvm::StringRef mapA,
                         llvm::StringRef mapB, std::string acc, int64_t waitGroup = -1) {
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
      os << "    " << nx << " = nvgpu.warpgroup.mma " << da << ", " << db << ", " << acc;
      if (waitGroup >= 0)
        os << " {waitGroup = " << waitGroup << " : i64}";
      os << " : " << dA << ", " << dB << ", " << kAccumulator << " -> " << kAccumulator
         << "\n";
      acc = nx;
    }
    return acc;
  }
};

/// The module text `write` produces, or empty with `error` set where
/// `chip` has no wgmma (`what`: the message's start, "the ... needs").
inline std::string sm90aModuleText(llvm::StringRef chip, llvm::StringRef what,
                                   std::string &error,
                                   llvm::function_ref<void(llvm::raw_ostream &)> write) {
  if (!chip.starts_with("sm_90a")) {
    error = what.str() + " sm_90a (wgmma), got '" + chip.str() + "'";
    return "";
  }
  std::string text;
  llvm::raw_string_ostream os(text);
  write(os);
  return text;
}

} // namespace mlir::compressa

#endif // COMPRESSA_LOWERING_TENSORCORE_MLIRTEXT_H
