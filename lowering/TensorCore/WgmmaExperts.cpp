//===- WgmmaExperts.cpp - Routed experts as grouped GEMMs on wgmma --------===//
// SPDX-License-Identifier: Apache-2.0
//
// The kernel is MLIR text specialised for one shape (the producers' loads
// and stores of a step, the 4 wgmma of a step and the epilogue's registers
// unrolled here), lowered by MLIR's gpu-lower-to-nvvm-pipeline like the FP8
// GEMM (WgmmaGemm.cpp). Three instructions MLIR's dialects do not spell
// come as inline PTX: mul.rn.bf16x2 (the block scale), cvt.rn.bf16x2.f32 and
// fence.proxy.async.shared::cta (generic-proxy stores before the tensor
// cores read them); ex2.approx.ftz.f32 for SiLU's exponential.

#include "lowering/TensorCore/WgmmaExperts.h"

#include "lowering/TensorCore/MlirText.h"
#include "lowering/TensorCore/WgmmaGemm.h"

#include "llvm/ADT/bit.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdlib>
#include <vector>

using namespace mlir;
using namespace mlir::compressa;

std::string WgmmaExpertsShape::name() const {
  // The clamp's bits: kernels of two limits never share a name.
  uint64_t bits = llvm::bit_cast<uint64_t>(limit);
  if (!gateUp)
    return llvm::formatv("compressa_tc_experts_down_n{0}_k{1}_e{2}_t{3}_a{4}", n, k,
                         experts, topk, tableSlot)
        .str();
  return llvm::formatv("compressa_tc_experts_gu_n{0}_k{1}_e{2}_t{3}_a{4}_{5}_l{6:x-}", n,
                       k, experts, topk, tableSlot, tableSlot3, bits)
      .str();
}

namespace {

class Writer : MlirTextWriter {
public:
  Writer(const WgmmaExpertsShape &shape, llvm::raw_ostream &os)
      : MlirTextWriter(os), s(shape) {}
  void module();

private:
  const WgmmaExpertsShape &s;

  std::string cst(int64_t x, llvm::StringRef type) {
    std::string n = v();
    os << "    " << n << " = arith.constant " << x << " : " << type << "\n";
    return n;
  }
  std::string cast(llvm::StringRef name, llvm::StringRef x, llvm::StringRef from,
                   llvm::StringRef to) {
    std::string n = v();
    os << "    " << n << " = " << name << " " << x << " : " << from << " to " << to << "\n";
    return n;
  }
  std::string load(llvm::StringRef ptr, llvm::StringRef type, int align = 0) {
    std::string n = v();
    os << "    " << n << " = llvm.load " << ptr;
    if (align)
      os << " {alignment = " << align << " : i64}";
    os << " : !llvm.ptr -> " << type << "\n";
    return n;
  }
  /// The pointer in argv slot `slot`.
  std::string slot(int64_t i) {
    std::string p = gep("%argv", c64(i), "!llvm.ptr");
    return load(p, "!llvm.ptr");
  }
  std::string asm1(llvm::StringRef text, llvm::StringRef constraints,
                   llvm::ArrayRef<std::string> args, llvm::StringRef argTypes,
                   llvm::StringRef result) {
    std::string n = v();
    os << "    " << n << " = llvm.inline_asm \"" << text << "\", \"" << constraints << "\" ";
    for (size_t i = 0; i < args.size(); ++i)
      os << (i ? ", " : "") << args[i];
    os << " : (" << argTypes << ") -> " << result << "\n";
    return n;
  }
  void producer();
  void consumers();
  /// The bf16x2 word of the two e2m1 codes in byte `j` of `word`, times
  /// `scale` (a bf16x2, both halves the same power of two).
  std::string fp4Pair(llvm::StringRef word, int j, llvm::StringRef scale);
};

constexpr llvm::StringLiteral kSmem = "memref<?xi8, #gpu.address_space<workgroup>>";
constexpr llvm::StringLiteral kTile =
    "memref<128x64xbf16, #gpu.address_space<workgroup>>";

std::string Writer::fp4Pair(llvm::StringRef word, int j, llvm::StringRef scale) {
  // t = byte j; v = its low code at bits 0..3 and its high code at 16..19;
  // each code's sign to bit 15 of its half and its 3 magnitude bits to
  // bits 6..8: the bf16 of the e2m1 value times 2^-126 (exponent 0 is the
  // subnormal 0.5 * 2^-126), multiplied by `scale`.
  std::string t = word.str();
  if (j)
    t = op("arith.shrui", t, c32(8 * j), "i32");
  t = op("arith.andi", t, "%c255i", "i32");
  std::string spread = op("arith.ori", t, op("arith.shli", t, "%c12i", "i32"), "i32");
  std::string codes = op("arith.andi", spread, "%cNib", "i32");
  std::string sign =
      op("arith.shli", op("arith.andi", codes, "%cSign", "i32"), "%c12i", "i32");
  std::string mag = op("arith.shli", op("arith.andi", codes, "%cMag", "i32"), "%c6i", "i32");
  std::string placed = op("arith.ori", sign, mag, "i32");
  return asm1("mul.rn.bf16x2 $0, $1, $2;", "=r,r,r", {placed, scale.str()}, "i32, i32",
              "i32");
}

void Writer::producer() {
  // Threads p = 2 r + half of warpgroups 2 and 3: half `half` (32 columns
  // of the step) of slot row r of the tile and of weight row r.
  os << "    %p = arith.subi %tid, %c256 : index\n";
  os << "    %p64 = arith.index_cast %p : index to i64\n";
  std::string oneBit = c64(1);
  os << "    %prow = arith.shrui %p64, " << oneBit << " : i64\n";
  std::string half = op("arith.andi", "%p64", c64(1), "i64");
  std::string rowValid = op("arith.cmpi ult,", "%prow", "%cnt", "i64");
  // The slot of row r (the tile's last for rows past it: loads stay in
  // bounds, their values are replaced by zeros).
  std::string last = op("arith.subi", "%cnt", c64(1), "i64");
  std::string r = op("arith.minui", "%prow", last, "i64");
  std::string slotPtr = gep("%order", op("arith.addi", "%first", r, "i64"), "i64");
  std::string slotIdx = load(slotPtr, "i64", 8);
  std::string aRow;
  if (s.gateUp) {
    std::string token = op("arith.divui", slotIdx, c64(s.topk), "i64");
    aRow = gep("%xb", op("arith.muli", token, c64(s.k * 2), "i64"), "i8");
  } else {
    aRow = gep("%h", op("arith.muli", slotIdx, c64(s.k * 2), "i64"), "i8");
  }
  // Weight row r of the block: w1 (then w3 from r = 64 on) or w2.
  std::string codes = "%codes", scales = "%scales", wRow;
  if (s.gateUp) {
    std::string second = op("arith.cmpi uge,", "%prow", c64(64), "i64");
    codes = v();
    os << "    " << codes << " = arith.select " << second << ", %codes3, %codes : !llvm.ptr\n";
    scales = v();
    os << "    " << scales << " = arith.select " << second
       << ", %scales3, %scales : !llvm.ptr\n";
    std::string within = op("arith.remui", "%prow", c64(64), "i64");
    wRow = op("arith.addi", "%n0", within, "i64");
  } else {
    wRow = op("arith.addi", "%n0", "%prow", "i64");
  }
  std::string bRow = gep(codes, op("arith.muli", wRow, c64(s.k / 2), "i64"), "i8");
  std::string sRow = gep(scales, op("arith.muli", wRow, c64(s.k / 32), "i64"), "i8");
  std::string swz = op("arith.remui", "%prow", c64(8), "i64");
  std::string rowOff = op("arith.muli", "%prow", c64(128), "i64");
  // This thread's 16-byte chunks of the row: 4 half .. 4 half + 3.
  std::string chunk0 = op("arith.muli", half, c64(4), "i64");
  std::string zeros = v();
  os << "    " << zeros << " = arith.constant dense<0> : vector<4xi32>\n";

  // A step's global loads: 4 chunks of 16 bytes (32 bf16) of slot row r,
  // 16 bytes of FP4 codes of weight row r (32 values, one scale block) and
  // the block's scale byte. The loads of step k + 1 are issued before step
  // k is decoded and stored, so they are in flight meanwhile.
  auto loadStep = [&](const std::string &step) {
    std::vector<std::string> vals;
    std::string aStep = gep(aRow,
                            op("arith.addi", op("arith.muli", step, c64(128), "i64"),
                               op("arith.muli", half, c64(64), "i64"), "i64"),
                            "i8");
    for (int c = 0; c < 4; ++c)
      vals.push_back(load(gep(aStep, c64(16 * c), "i8"), "vector<4xi32>", 16));
    std::string blockIdx =
        op("arith.addi", op("arith.muli", step, c64(2), "i64"), half, "i64");
    vals.push_back(load(gep(bRow, op("arith.muli", blockIdx, c64(16), "i64"), "i8"),
                        "vector<4xi32>", 16));
    vals.push_back(load(gep(sRow, blockIdx, "i8"), "i8", 1));
    return vals;
  };
  std::vector<std::string> first0 = loadStep(c64(0));
  std::string carried = "vector<4xi32>, vector<4xi32>, vector<4xi32>, vector<4xi32>, "
                        "vector<4xi32>, i8";
  os << "    %pl:6 = scf.for %pk = %c0 to %cKS step %c1 iter_args(%la0 = " << first0[0]
     << ", %la1 = " << first0[1] << ", %la2 = " << first0[2] << ", %la3 = " << first0[3]
     << ", %lb = " << first0[4] << ", %lsc = " << first0[5] << ") -> (" << carried
     << ") {\n";
  std::string pk = i64("%pk");
  std::string lastStep = c64(s.kSteps() - 1);
  std::vector<std::string> next =
      loadStep(op("arith.minui", op("arith.addi", pk, c64(1), "i64"), lastStep, "i64"));
  std::string st = op("arith.remui", "%pk", "%cStages");
  std::string round = op("arith.divui", "%pk", "%cStages");
  std::string again = op("arith.cmpi uge,", "%pk", "%cStages");
  os << "    scf.if " << again << " {\n";
  std::string pp = op("arith.remui", op("arith.subi", round, "%c1"), "%c2");
  std::string phase = op("arith.cmpi ne,", pp, "%c0");
  os << "    nvgpu.mbarrier.try_wait.parity %ebar[" << st << "], " << phase
     << ", %ticks : !bar\n";
  os << "    }\n";
  std::string stageOff = op("arith.muli", i64(st), c64(32768), "i64");
  std::string aTile = op("arith.addi", "%sbase", stageOff, "i64");
  std::string bTile = op("arith.addi", aTile, c64(16384), "i64");
  std::string aRowS = op("arith.addi", aTile, rowOff, "i64");
  std::string bRowS = op("arith.addi", bTile, rowOff, "i64");
  // Chunk c of a row sits at chunk c ^ (r % 8): the 128-byte swizzle.
  auto store16 = [&](llvm::StringRef rowBase, int i, llvm::StringRef value) {
    std::string c = op("arith.xori", op("arith.addi", chunk0, c64(i), "i64"), swz, "i64");
    std::string addr = op("arith.addi", rowBase, op("arith.muli", c, c64(16), "i64"), "i64");
    std::string ptr = cast("llvm.inttoptr", addr, "i64", "!llvm.ptr<3>");
    os << "    llvm.store " << value << ", " << ptr
       << " {alignment = 16 : i64} : vector<4xi32>, !llvm.ptr<3>\n";
  };
  std::vector<std::string> aVals = {"%la0", "%la1", "%la2", "%la3"};
  std::string b0 = "%lb", sc = "%lsc";
  for (int c = 0; c < 4; ++c) {
    std::string val = v();
    os << "    " << val << " = arith.select " << rowValid << ", " << aVals[c] << ", "
       << zeros << " : vector<4xi32>\n";
    store16(aRowS, c, val);
  }
  // The placed codes are the values times 2^-126: block scale 2^(s - 127)
  // is one multiply by 2^(s - 1) (the bf16 of exponent field s + 126) for
  // s <= 128; above (a scale of 4 or more, which no V4 checkpoint holds),
  // a multiply by 2^126 and then one by 2^(s - 127), so every scale byte
  // gives the exact product.
  std::string e = cast("arith.extui", sc, "i8", "i32");
  auto bf16x2 = [&](const std::string &field) {
    std::string h = op("arith.shli", field, "%c7i", "i32");
    return op("arith.ori", h, op("arith.shli", h, "%c16i", "i32"), "i32");
  };
  std::string big = op("arith.cmpi ugt,", e, c32(128), "i32");
  std::string small = op("arith.addi", e, c32(126), "i32");
  std::string c253 = c32(253), one = c32(127);
  std::string f1 = v(), f2 = v();
  os << "    " << f1 << " = arith.select " << big << ", " << c253 << ", " << small
     << " : i32\n";
  os << "    " << f2 << " = arith.select " << big << ", " << e << ", " << one << " : i32\n";
  std::string first = bf16x2(f1), second = bf16x2(f2);
  std::vector<std::string> chunks;
  for (int q = 0; q < 4; ++q) {
    std::string word = v();
    os << "    " << word << " = vector.extract " << b0 << "[" << q
       << "] : i32 from vector<4xi32>\n";
    std::string out[4];
    for (int j = 0; j < 4; ++j)
      out[j] = fp4Pair(word, j, first);
    std::string vec = v();
    os << "    " << vec << " = vector.from_elements " << out[0] << ", " << out[1] << ", "
       << out[2] << ", " << out[3] << " : vector<4xi32>\n";
    chunks.push_back(vec);
  }
  std::string types = "vector<4xi32>, vector<4xi32>, vector<4xi32>, vector<4xi32>";
  std::string res = v();
  os << "    " << res << ":4 = scf.if " << big << " -> (" << types << ") {\n";
  std::vector<std::string> scaled;
  for (int q = 0; q < 4; ++q) {
    std::string w[4];
    for (int j = 0; j < 4; ++j) {
      std::string x = v();
      os << "    " << x << " = vector.extract " << chunks[q] << "[" << j
         << "] : i32 from vector<4xi32>\n";
      w[j] = asm1("mul.rn.bf16x2 $0, $1, $2;", "=r,r,r", {x, second}, "i32, i32", "i32");
    }
    std::string vec = v();
    os << "    " << vec << " = vector.from_elements " << w[0] << ", " << w[1] << ", " << w[2]
       << ", " << w[3] << " : vector<4xi32>\n";
    scaled.push_back(vec);
  }
  os << "    scf.yield " << scaled[0] << ", " << scaled[1] << ", " << scaled[2] << ", "
     << scaled[3] << " : " << types << "\n    } else {\n    scf.yield " << chunks[0] << ", "
     << chunks[1] << ", " << chunks[2] << ", " << chunks[3] << " : " << types
     << "\n    }\n";
  for (int q = 0; q < 4; ++q)
    store16(bRowS, q, res + "#" + std::to_string(q));
  // The stores are the generic proxy's; the tensor cores read through the
  // async proxy.
  os << "    llvm.inline_asm has_side_effects \"fence.proxy.async.shared::cta;\", \"\"  : () -> ()\n";
  std::string token = v();
  os << "    " << token << " = nvgpu.mbarrier.arrive %bar[" << st
     << "] : !bar -> !nvgpu.mbarrier.token\n";
  os << "    scf.yield " << next[0] << ", " << next[1] << ", " << next[2] << ", " << next[3]
     << ", " << next[4] << ", " << next[5] << " : " << carried << "\n";
  os << "    }\n";
}

void Writer::consumers() {
  std::string acc = kAccumulator.str();
  std::string regs;
  for (int j = 0; j < 64; ++j)
    regs += j ? ", f32" : "f32";
  std::string accStruct = "!llvm.struct<(struct<(" + regs + ")>)>";

  std::string wgRow = op("arith.muli", "%wg", "%c64");
  std::string init = v();
  os << "    " << init << " = nvgpu.warpgroup.mma.init.accumulator -> " << acc << "\n";
  std::string accF = v();
  os << "    " << accF << " = scf.for %kb = %c0 to %cKS step %c1 iter_args(%acc = " << init
     << ") -> (" << acc << ") {\n";
  std::string st = op("arith.remui", "%kb", "%cStages");
  std::string round = op("arith.divui", "%kb", "%cStages");
  std::string phase = op("arith.cmpi ne,", op("arith.remui", round, "%c2"), "%c0");
  os << "    nvgpu.mbarrier.try_wait.parity %bar[" << st << "], " << phase
     << ", %ticks : !bar\n";
  std::string off = op("arith.addi", op("arith.muli", st, "%cStageBytes"), "%pad");
  std::string offW = op("arith.addi", off, "%cTileBytes");
  std::string a = v(), w = v();
  os << "    " << a << " = memref.view %smem[" << off << "][] : " << kSmem << " to " << kTile
     << "\n";
  os << "    " << w << " = memref.view %smem[" << offW << "][] : " << kSmem << " to "
     << kTile << "\n";
  // The 4 wgmma of a K block issued with wait_group 4 (the previous
  // block's 4 are then done: its buffer is released here) instead of
  // waiting for this block's own before the next block's MMAs; the last
  // block's buffer is released after the loop. The same products in the
  // same order (byte-identical logits), about 1 % faster on an H100
  // (docs/perf.md, twenty-fifth session). COMPRESSA_EXPERTS_PIPELINE=0 at
  // compile time waits for each block (for A/B runs).
  static const bool pipeline = [] {
    const char *e = std::getenv("COMPRESSA_EXPERTS_PIPELINE");
    return !(e && std::string(e) == "0");
  }();
  std::string accV = wgmmaSteps(a, w, wgRow, kTile, "bf16", 64, 16, 4, "%dmap", "%dmap",
                                "%acc", pipeline ? 4 : -1);
  if (pipeline) {
    std::string notFirst = op("arith.cmpi ugt,", "%kb", "%c0");
    os << "    scf.if " << notFirst << " {\n";
    std::string prev = op("arith.remui", op("arith.subi", "%kb", "%c1"), "%cStages");
    std::string token = v();
    os << "    " << token << " = nvgpu.mbarrier.arrive %ebar[" << prev
       << "] : !bar -> !nvgpu.mbarrier.token\n";
    os << "    }\n";
  } else {
    os << "    nvvm.wgmma.wait.group.sync.aligned 0\n";
    std::string token = v();
    os << "    " << token << " = nvgpu.mbarrier.arrive %ebar[" << st
       << "] : !bar -> !nvgpu.mbarrier.token\n";
  }
  os << "    scf.yield " << accV << " : " << acc << "\n";
  os << "    }\n";
  if (pipeline) {
    os << "    nvvm.wgmma.wait.group.sync.aligned 0\n";
    std::string last = op("arith.remui", op("arith.subi", "%cKS", "%c1"), "%cStages");
    std::string token = v();
    os << "    " << token << " = nvgpu.mbarrier.arrive %ebar[" << last
       << "] : !bar -> !nvgpu.mbarrier.token\n";
  }

  // The epilogue. Register j of lane l in warp w holds row 16 w + l / 4 + 8
  // ((j / 2) % 2) of the warpgroup's 64, column 8 (j / 4) + 2 (l % 4) + j % 2.
  std::string regsV = cast("builtin.unrealized_conversion_cast", accF, acc, accStruct);
  std::vector<std::string> r(64);
  for (int j = 0; j < 64; ++j) {
    r[j] = v();
    os << "    " << r[j] << " = llvm.extractvalue " << regsV << "[0, " << j << "] : "
       << accStruct << "\n";
  }
  std::string row0 = op("arith.addi",
                        op("arith.addi", wgRow, op("arith.muli", "%warp", "%c16")),
                        op("arith.divui", "%lane", "%c4"));
  std::string colLane = i64(op("arith.muli", op("arith.remui", "%lane", "%c4"), "%c2"));
  std::string limit = v(), negLimit = v();
  if (s.gateUp) {
    os << "    " << limit << " = arith.constant " << llvm::formatv("{0:e}", s.limit)
       << " : f32\n";
    os << "    " << negLimit << " = arith.constant " << llvm::formatv("{0:e}", -s.limit)
       << " : f32\n";
  }
  auto swiglu = [&](const std::string &g, const std::string &u) {
    // min(g, limit) * sigmoid(min(g, limit)) * clamp(u, -limit, limit).
    std::string gc = op("arith.minimumf", g, limit, "f32");
    std::string uc = op("arith.maximumf", op("arith.minimumf", u, limit, "f32"), negLimit,
                        "f32");
    std::string arg = op("arith.mulf", gc, "%cNegLog2e", "f32");
    std::string e = asm1("ex2.approx.ftz.f32 $0, $1;", "=f,f", {arg}, "f32", "f32");
    std::string sig = op("arith.divf", "%one", op("arith.addf", "%one", e, "f32"), "f32");
    return op("arith.mulf", op("arith.mulf", gc, sig, "f32"), uc, "f32");
  };
  for (int half = 0; half < 2; ++half) {
    std::string row = i64(half ? op("arith.addi", row0, "%c8") : row0);
    std::string valid = op("arith.cmpi ult,", row, "%cnt", "i64");
    os << "    scf.if " << valid << " {\n";
    std::string slotIdx =
        load(gep("%order", op("arith.addi", "%first", row, "i64"), "i64"), "i64", 8);
    std::string rowBase =
        op("arith.addi", op("arith.muli", slotIdx, c64(s.n), "i64"), "%n0", "i64");
    rowBase = op("arith.addi", rowBase, colLane, "i64");
    int cols = s.gateUp ? 32 : 64;
    for (int j = 0; j < cols; j += 2) {
      if ((j / 2) % 2 != half)
        continue;
      std::string idx = op("arith.addi", rowBase, c64(8 * (j / 4)), "i64");
      if (s.gateUp) {
        std::string h0 = swiglu(r[j], r[j + 32]), h1 = swiglu(r[j + 1], r[j + 33]);
        std::string packed =
            asm1("cvt.rn.bf16x2.f32 $0, $1, $2;", "=r,f,f", {h1, h0}, "f32, f32", "i32");
        std::string p = gep("%hOut", idx, "bf16");
        os << "    llvm.store " << packed << ", " << p
           << " {alignment = 4 : i64} : i32, !llvm.ptr\n";
      } else {
        std::string pair = v();
        os << "    " << pair << " = vector.from_elements " << r[j] << ", " << r[j + 1]
           << " : vector<2xf32>\n";
        std::string p = gep("%ys", idx, "f32");
        os << "    llvm.store " << pair << ", " << p
           << " {alignment = 8 : i64} : vector<2xf32>, !llvm.ptr\n";
      }
    }
    os << "    }\n";
  }
}

void Writer::module() {
  os << "// The routed experts' " << (s.gateUp ? "gate/up" : "down")
     << " grouped GEMM (lowering/TensorCore/WgmmaExperts.h), generated by Compressa.\n";
  os << "!bar = !nvgpu.mbarrier.group<memorySpace = #gpu.address_space<workgroup>, "
        "num_barriers = "
     << s.stages << ">\n";
  // The descriptor generator reads only the swizzle of this type.
  os << "!map = !nvgpu.tensormap.descriptor<tensor = memref<128x64xbf16, 3>, "
        "swizzle = swizzle_128b, l2promo = none, oob = zero, interleave = none>\n";
  os << "module attributes {gpu.container_module} {\n";
  os << "gpu.module @compressa_tc {\n";
  os << "  gpu.func @" << s.name()
     << "(%argv: !llvm.ptr) kernel attributes {known_block_size = "
        "array<i32: 512, 1, 1>} {\n";
  indexConstants();
  os << "    %c1i = arith.constant 1 : i32\n"
        "    %c6i = arith.constant 6 : i32\n"
        "    %c7i = arith.constant 7 : i32\n"
        "    %c8i = arith.constant 8 : i32\n"
        "    %c12i = arith.constant 12 : i32\n"
        "    %c16i = arith.constant 16 : i32\n"
        "    %c255i = arith.constant 255 : i32\n"
        "    %cNib = arith.constant 983055 : i32\n"   // 0x000F000F
        "    %cSign = arith.constant 524296 : i32\n"  // 0x00080008
        "    %cMag = arith.constant 458759 : i32\n"   // 0x00070007
        "    %cTileBytes = arith.constant 16384 : index\n"
        "    %cStageBytes = arith.constant 32768 : index\n"
        "    %ticks = arith.constant 10000000 : index\n"
        "    %one = arith.constant 1.0 : f32\n"
        "    %cNegLog2e = arith.constant -1.44269504088896340736 : f32\n";
  os << "    %cKS = arith.constant " << s.kSteps() << " : index\n";
  os << "    %cStages = arith.constant " << s.stages << " : index\n";
  os << "    %dmap = builtin.unrealized_conversion_cast %argv : !llvm.ptr to !map\n";
  std::string tokp = slot(0), stage = slot(2);
  std::string tokens = load(tokp, "i64", 8);
  auto header = [&](int64_t byte, llvm::StringRef name) {
    std::string p = gep(stage, c64(byte), "i8");
    os << "    " << name << " = llvm.load " << p << " : !llvm.ptr -> !llvm.ptr\n";
  };
  header(kExpertsHeaderX, "%xb");
  header(kExpertsHeaderH, s.gateUp ? "%hOut" : "%h");
  header(kExpertsHeaderYs, "%ys");
  header(kExpertsHeaderOrder, "%order");
  header(kExpertsHeaderExpert, "%texp");
  header(kExpertsHeaderFirst, "%tfirst");
  header(kExpertsHeaderCount, "%tcount");
  os << "    %cNT = arith.constant " << s.nTiles() << " : index\n"
     << "    %bid = gpu.block_id x\n"
        "    %bx = arith.remui %bid, %cNT : index\n"
        "    %by = arith.divui %bid, %cNT : index\n"
        "    %by64 = arith.index_cast %by : index to i64\n";
  // The call's tiles: ceil(S topk / 128) + experts at most (expertTiles).
  std::string slots = op("arith.muli", tokens, c64(s.topk), "i64");
  std::string most = op("arith.addi",
                        op("arith.divui", op("arith.addi", slots, c64(127), "i64"),
                           c64(128), "i64"),
                        c64(s.experts), "i64");
  std::string inCall = op("arith.cmpi ult,", "%by64", most, "i64");
  os << "    scf.if " << inCall << " {\n";
  auto named = [&](llvm::StringRef name, llvm::StringRef ptr, llvm::StringRef type) {
    os << "    " << name << " = llvm.load " << ptr << " : !llvm.ptr -> " << type << "\n";
  };
  named("%cnt", gep("%tcount", "%by64", "i64"), "i64");
  std::string any = op("arith.cmpi sgt,", "%cnt", c64(0), "i64");
  os << "    scf.if " << any << " {\n";
  named("%e", gep("%texp", "%by64", "i64"), "i64");
  named("%first", gep("%tfirst", "%by64", "i64"), "i64");
  // The expert's codes and scales (its table: codes, then scales).
  auto expertPtrs = [&](int64_t tableSlot, llvm::StringRef codes, llvm::StringRef scales) {
    std::string table = slot(tableSlot);
    named(codes, gep(table, "%e", "!llvm.ptr"), "!llvm.ptr");
    std::string si = op("arith.addi", "%e", c64(s.experts), "i64");
    named(scales, gep(table, si, "!llvm.ptr"), "!llvm.ptr");
  };
  expertPtrs(s.tableSlot, "%codes", "%scales");
  if (s.gateUp)
    expertPtrs(s.tableSlot3, "%codes3", "%scales3");
  std::string n0 = op("arith.muli", i64("%bx"), c64(s.rowsPerBlock()), "i64");
  std::string zero = c64(0);
  os << "    %n0 = arith.addi " << n0 << ", " << zero << " : i64\n";
  os << "    %tid = gpu.thread_id x\n"
        "    %wg = arith.divui %tid, %c128 : index\n"
        "    %t = arith.remui %tid, %c128 : index\n"
        "    %warp = arith.divui %t, %c32 : index\n"
        "    %lane = arith.remui %t, %c32 : index\n";
  alignedSharedMemory(kSmem, true);
  // full[s]: the producers' 256 threads have filled buffer s; empty[s]: its
  // consumers (256 threads, or 128 when the second warpgroup idles) are done.
  std::string two = op("arith.cmpi sgt,", "%cnt", c64(64), "i64");
  os << "    %consumers = arith.select " << two << ", %c256, %c128 : index\n";
  stageBarriers(s.stages, "%c256", "%consumers");
  os << "    %isProducer = arith.cmpi uge, %tid, %c256 : index\n";
  os << "    scf.if %isProducer {\n";
  producer();
  os << "    }\n";
  // The consumers: warpgroup 0, and 1 where the tile has more than 64 slots.
  os << "    %isWg0 = arith.cmpi eq, %wg, %c0 : index\n"
        "    %isWg1 = arith.cmpi eq, %wg, %c1 : index\n"
        "    %wg1Works = arith.andi %isWg1, "
     << two << " : i1\n"
     << "    %consumes = arith.ori %isWg0, %wg1Works : i1\n"
        "    scf.if %consumes {\n";
  consumers();
  os << "    }\n";
  os << "    }\n    }\n"; // any, inCall
  os << "    gpu.return\n  }\n}\n}\n";
}

} // namespace

std::string compressa::wgmmaExpertsModuleText(const WgmmaExpertsShape &shape,
                                              llvm::StringRef chip, std::string &error) {
  int64_t dm = shape.gateUp ? shape.k : shape.n, inter = shape.gateUp ? shape.n : shape.k;
  if (!WgmmaExpertsShape::fits(dm, inter)) {
    error = llvm::formatv("the grouped experts GEMM needs the hidden size a "
                          "multiple of 128 and the expert width a multiple of "
                          "64, got {0} and {1}",
                          dm, inter)
                .str();
    return "";
  }
  if (shape.topk < 1 || shape.experts < 1 || shape.tableSlot < 0 ||
      (shape.gateUp && shape.tableSlot3 < 0) || shape.stages < 1 || shape.stages > 6 ||
      (shape.gateUp && !(shape.limit > 0))) {
    error = "the grouped experts GEMM needs top-k, experts, the expert tables' "
            "slots, 1..6 stages and (gate_up) a positive SwiGLU limit";
    return "";
  }
  return sm90aModuleText(chip, "the grouped experts GEMM needs", error,
                         [&](llvm::raw_ostream &os) { Writer(shape, os).module(); });
}

std::string compressa::wgmmaExpertsPtx(const WgmmaExpertsShape &shape, llvm::StringRef chip,
                                       std::string &error) {
  return wgmmaModulePtx(wgmmaExpertsModuleText(shape, chip, error), chip, error);
}
