//===- WgmmaIndexer.cpp - The indexer's scores on Hopper tensor cores -----===//
// SPDX-License-Identifier: Apache-2.0
//
// MLIR text specialised for one indexer shape (the producers' chunks, the
// wgmma steps and the epilogue's registers unrolled here), lowered by
// MLIR's gpu-lower-to-nvvm-pipeline like the grouped experts
// (WgmmaExperts.cpp). cvt.rn.bf16x2.f32 and fence.proxy.async.shared::cta
// come as inline PTX.

#include "lowering/TensorCore/WgmmaIndexer.h"

#include "lowering/TensorCore/MlirText.h"
#include "lowering/TensorCore/WgmmaGemm.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdlib>
#include <vector>

using namespace mlir;
using namespace mlir::compressa;

std::string WgmmaIndexerShape::name() const {
  return llvm::formatv("compressa_tc_indexer_h{0}_d{1}_r{2}_c{3}_s{4}{5}", heads, dim, ratio,
                       capacity, stages, fp8 ? "_f8" : "")
      .str();
}

namespace {

constexpr llvm::StringLiteral kSmem = "memref<?xi8, #gpu.address_space<workgroup>>";
constexpr llvm::StringLiteral kTileBf16 =
    "memref<128x64xbf16, #gpu.address_space<workgroup>>";
constexpr llvm::StringLiteral kTileFp8 =
    "memref<128x128xf8E4M3FN, #gpu.address_space<workgroup>>";

class Writer : MlirTextWriter {
public:
  Writer(const WgmmaIndexerShape &shape, llvm::raw_ostream &os)
      : MlirTextWriter(os), s(shape), kTile(shape.fp8 ? kTileFp8 : kTileBf16) {}
  void module();

private:
  const WgmmaIndexerShape &s;
  llvm::StringRef kTile; ///< a 128 x 128-byte tile's type

  std::string toIndex(llvm::StringRef x) {
    std::string n = v();
    os << "    " << n << " = arith.index_cast " << x << " : i64 to index\n";
    return n;
  }
  std::string extract(llvm::StringRef vec, int i, llvm::StringRef elt, llvm::StringRef type) {
    std::string n = v();
    os << "    " << n << " = vector.extract " << vec << "[" << i << "] : " << elt << " from "
       << type << "\n";
    return n;
  }
  /// The mbarrier phase bit of round `round` (an index): round % 2 != 0.
  std::string parity(llvm::StringRef round) {
    return op("arith.cmpi ne,", op("arith.remui", round, "%c2"), "%c0");
  }
  /// A view of tile `index` (an index value, in tiles from the aligned base).
  std::string tileView(llvm::StringRef index) {
    std::string off = op("arith.addi", "%pad", op("arith.muli", index, ci(WgmmaIndexerShape::kTileBytes)));
    std::string t = v();
    os << "    " << t << " = memref.view %smem[" << off << "][] : " << kSmem << " to " << kTile
       << "\n";
    return t;
  }
  /// The item's values both roles compute: %kt, %j0, %sLo, %sHi, %nSteps
  /// (i64) and %has (i1) for item index `e` (i64).
  void item(llvm::StringRef e);
  void producer();
  void consumers();
  /// FP8: act_quant of the key row at `keyRow` (di f32) into the tile row
  /// at shared address `rowBase` (i64; 16-byte chunk c at c ^ `swz`) and
  /// its scale into the keys' scales at %scaleSlot.
  void fp8Key(llvm::StringRef keyRow, llvm::StringRef rowBase, llvm::StringRef swz);
};

void Writer::fp8Key(llvm::StringRef keyRow, llvm::StringRef rowBase, llvm::StringRef swz) {
  // amax = max(|x|, 1e-4) over the row (one block: di = 128), ...
  // (|x| as the larger of the row's maximum and minus its minimum).
  std::string m = v(), lo = v();
  os << "    " << m << " = arith.constant 1.0e-04 : f32\n";
  os << "    " << lo << " = arith.constant -1.0e-04 : f32\n";
  auto quad = [&](int64_t i) { return load(gep(keyRow, c64(4 * i), "f32"), "vector<4xf32>", 16); };
  for (int64_t i = 0; i < s.dim / 4; ++i) {
    std::string x = quad(i);
    for (int e = 0; e < 4; ++e) {
      std::string xe = extract(x, e, "f32", "vector<4xf32>");
      m = op("arith.maximumf", m, xe, "f32");
      lo = op("arith.minimumf", lo, xe, "f32");
    }
  }
  std::string neg = v();
  os << "    " << neg << " = arith.negf " << lo << " : f32\n";
  m = op("arith.maximumf", m, neg, "f32");
  // ... log2(s) = ceil(log2(amax / 448)): amax = f 2^e with f in [1, 2)
  // gives e - 8, plus 1 where f > 1.75 (mantissa bits above 0x600000), ...
  std::string bits = v();
  os << "    " << bits << " = arith.bitcast " << m << " : f32 to i32\n";
  std::string e = op("arith.shrui", bits, c32(23), "i32");
  std::string mant = op("arith.andi", bits, c32(0x7FFFFF), "i32");
  std::string above = op("arith.cmpi ugt,", mant, c32(0x600000), "i32");
  std::string up = v();
  os << "    " << up << " = arith.extui " << above << " : i1 to i32\n";
  // ... biased: log2(s) + 127 = e_biased - 8 + up.
  std::string biased = op("arith.addi", op("arith.subi", e, c32(8), "i32"), up, "i32");
  std::string scaleBits = op("arith.shli", biased, c32(23), "i32");
  std::string invBits =
      op("arith.shli", op("arith.subi", c32(254), biased, "i32"), c32(23), "i32");
  std::string scale = v(), inv = v();
  os << "    " << scale << " = arith.bitcast " << scaleBits << " : i32 to f32\n";
  os << "    " << inv << " = arith.bitcast " << invBits << " : i32 to f32\n";
  std::string sp = v();
  os << "    " << sp << " = llvm.inttoptr %scaleSlot : i64 to !llvm.ptr<3>\n";
  os << "    llvm.store " << scale << ", " << sp << " {alignment = 4 : i64} : f32, !llvm.ptr<3>\n";
  // The codes: x / s rounded to nearest even, saturated to +-448 (the
  // clamp), four a word, 16 a chunk.
  for (int64_t c = 0; c < s.dim / 16; ++c) {
    std::string words[4];
    for (int w = 0; w < 4; ++w) {
      std::string x = quad(4 * c + w);
      std::string y[4];
      for (int e2 = 0; e2 < 4; ++e2)
        y[e2] = op("arith.mulf", extract(x, e2, "f32", "vector<4xf32>"), inv, "f32");
      words[w] = v();
      os << "    " << words[w]
         << " = llvm.inline_asm \"{ .reg .b16 lo, hi; cvt.rn.satfinite.e4m3x2.f32 lo, $2, $1; "
            "cvt.rn.satfinite.e4m3x2.f32 hi, $4, $3; mov.b32 $0, {lo, hi}; }\", "
            "\"=r,f,f,f,f\" "
         << y[0] << ", " << y[1] << ", " << y[2] << ", " << y[3]
         << " : (f32, f32, f32, f32) -> i32\n";
    }
    std::string vec = v();
    os << "    " << vec << " = vector.from_elements " << words[0] << ", " << words[1] << ", "
       << words[2] << ", " << words[3] << " : vector<4xi32>\n";
    std::string cc = a64("arith.xori", c64(c), swz);
    std::string addr = a64("arith.addi", rowBase, a64("arith.muli", cc, c64(16)));
    std::string ptr = v();
    os << "    " << ptr << " = llvm.inttoptr " << addr << " : i64 to !llvm.ptr<3>\n";
    os << "    llvm.store " << vec << ", " << ptr
       << " {alignment = 16 : i64} : vector<4xi32>, !llvm.ptr<3>\n";
  }
}

void Writer::item(llvm::StringRef e) {
  os << "    %kt = arith.remui " << e << ", %keyTiles : i64\n";
  os << "    %tb = arith.divui " << e << ", %keyTiles : i64\n";
  os << "    %j0 = arith.muli %kt, %cKeys : i64\n";
  os << "    %sBegin = arith.muli %tb, %cTB : i64\n";
  // Token s sees key j when (start + s + 1) / ratio > j: from s =
  // (j + 1) ratio - start - 1 on.
  os << "    %j0p = arith.addi %j0, %one64 : i64\n";
  os << "    %jr = arith.muli %j0p, %cRatio : i64\n";
  os << "    %sp1 = arith.addi %start, %one64 : i64\n";
  os << "    %sFirst = arith.subi %jr, %sp1 : i64\n";
  os << "    %sLo = arith.maxsi %sBegin, %sFirst : i64\n";
  os << "    %sEnd = arith.addi %sBegin, %cTB : i64\n";
  os << "    %sHi = arith.minsi %S, %sEnd : i64\n";
  os << "    %has = arith.cmpi slt, %sLo, %sHi : i64\n";
  os << "    %span = arith.subi %sHi, %sLo : i64\n";
  os << "    %span1 = arith.addi %span, %cT2m1 : i64\n";
  os << "    %steps0 = arith.divsi %span1, %cT2 : i64\n";
  os << "    %nSteps = arith.select %has, %steps0, %zero64 : i64\n";
  os << "    %nStepsI = arith.index_cast %nSteps : i64 to index\n";
}

void Writer::producer() {
  // One thread: per step, the 128 q rows of tokens sLo + T2 t .. + T2 - 1
  // (rows s heads .. s heads + 127 of the map), di / 64 boxes of 128 bytes
  // wide, into the step's buffer.
  int64_t stageBytes = s.kTiles() * WgmmaIndexerShape::kTileBytes;
  os << "    %pres = scf.for %it = %c0 to %myItems step %c1 iter_args(%g = %c0) -> (index) {\n";
  std::string it64 = i64("%it");
  item(a64("arith.addi", "%bid64", a64("arith.muli", it64, "%grid64")));
  os << "    scf.for %t = %c0 to %nStepsI step %c1 {\n";
  std::string gg = op("arith.addi", "%g", "%t");
  std::string st = op("arith.remui", gg, "%cStages");
  std::string round = op("arith.divui", gg, "%cStages");
  std::string refill = op("arith.cmpi uge,", gg, "%cStages");
  os << "    scf.if " << refill << " {\n";
  std::string ph = parity(op("arith.subi", round, "%c1"));
  os << "    nvgpu.mbarrier.try_wait.parity %ebar[" << st << "], " << ph << ", %ticks : !bar\n";
  os << "    }\n";
  std::string s0 = a64("arith.addi", "%sLo", a64("arith.muli", i64("%t"), "%cT2"));
  std::string row = toIndex(a64("arith.muli", s0, c64(s.heads)));
  std::string bytes = ci(stageBytes);
  os << "    nvgpu.mbarrier.arrive.expect_tx %bar[" << st << "], " << bytes << " : !bar\n";
  for (int64_t kt = 0; kt < s.kTiles(); ++kt) {
    std::string tile = tileView(
        op("arith.addi", ci(2 * s.kTiles() + kt), op("arith.muli", st, ci(s.kTiles()))));
    std::string col = ci(128 * kt);
    os << "    nvgpu.tma.async.load %qmap[" << col << ", " << row << "], %bar[" << st
       << "] to " << tile << " : !map, !bar -> " << kTile << "\n";
  }
  os << "    }\n";
  os << "    %pg = arith.addi %g, %nStepsI : index\n";
  os << "    scf.yield %pg : index\n";
  os << "    }\n";
}

void Writer::consumers() {
  std::string acc = kAccumulator.str();
  std::string regs;
  for (int j = 0; j < 64; ++j)
    regs += j ? ", f32" : "f32";
  std::string accStruct = "!llvm.struct<(struct<(" + regs + ")>)>";
  int64_t t2 = s.tokensPerStep(), perToken = s.heads / 8; // j / 4 groups a token
  int64_t chunks = s.dim / 8;                              // 16-byte chunks of a bf16 row
  std::string wg64 = i64("%wg"), tl64 = i64("%tl");
  // The thread's rows (key of the tile: 128 wg + 64 half + row0 + 8 rh)
  // and columns (col0 + 8 q + {0, 1}).
  std::string row0 = i64(op("arith.addi", op("arith.muli", "%warp", "%c16"),
                            op("arith.divui", "%lane", "%c4")));
  std::string col0 = i64(op("arith.muli", op("arith.remui", "%lane", "%c4"), "%c2"));
  std::string quadLead = op("arith.cmpi eq,", op("arith.remui", "%lane", "%c4"), "%c0");
  std::string sLast = a64("arith.subi", "%S", "%one64");
  std::string capLast = c64(s.capacity - 1);
  std::string zeroF = v();
  os << "    " << zeroF << " = arith.constant 0.0 : f32\n";
  std::string one32 = v(), two32 = v(), w32 = v();
  os << "    " << one32 << " = arith.constant 1 : i32\n";
  os << "    " << two32 << " = arith.constant 2 : i32\n";
  os << "    " << w32 << " = arith.constant 32 : i32\n";
  std::string wgPlus1 = op("arith.addi", "%wg", "%c1");
  std::string barId = v();
  os << "    " << barId << " = arith.index_cast " << wgPlus1 << " : index to i32\n";
  // This warpgroup's key tiles: tile wg kTiles + kt.
  std::string keyTile0 = op("arith.muli", "%wg", ci(s.kTiles()));
  std::string keyBase = a64("arith.addi", "%sbase",
                            a64("arith.muli", i64(keyTile0), c64(WgmmaIndexerShape::kTileBytes)));
  if (s.fp8) {
    // The 256 keys' scales (f32): this thread's key's at %scaleSlot.
    std::string off = c64(s.scaleOffset());
    os << "    %scaleBase = arith.addi %sbase, " << off << " : i64\n";
    std::string mine = a64("arith.addi", a64("arith.muli", wg64, c64(128)), tl64);
    std::string bytes = a64("arith.muli", mine, c64(4));
    os << "    %scaleSlot = arith.addi %scaleBase, " << bytes << " : i64\n";
  }

  os << "    %cres = scf.for %it = %c0 to %myItems step %c1 iter_args(%g = %c0) -> (index) {\n";
  std::string it64 = i64("%it");
  item(a64("arith.addi", "%bid64", a64("arith.muli", it64, "%grid64")));
  os << "    scf.if %has {\n";
  {
    // The keys: thread tl converts key j0 + 128 wg + tl (f32, clamped into
    // the state; keys past the visible ones are never stored) into row tl
    // of the warpgroup's tiles.
    std::string j = a64("arith.minui",
                        a64("arith.addi", "%j0",
                            a64("arith.addi", a64("arith.muli", wg64, c64(128)), tl64)),
                        capLast);
    std::string keyRow = gep("%keys", a64("arith.muli", j, c64(s.dim)), "f32");
    std::string swz = a64("arith.remui", tl64, c64(8));
    std::string rowBase = a64("arith.addi", keyBase, a64("arith.muli", tl64, c64(128)));
    if (s.fp8) {
      // The warpgroup's threads are done with the last item's key scales
      // (its epilogue reads them) before they change.
      os << "    llvm.inline_asm has_side_effects \"bar.sync $0, 128;\", \"r\" " << barId
         << " : (i32) -> ()\n";
      fp8Key(keyRow, rowBase, swz);
    }
    for (int64_t i = 0; i < (s.fp8 ? 0 : chunks); ++i) {
      std::string p0 = gep(keyRow, c64(8 * i), "f32");
      std::string lo = load(p0, "vector<4xf32>", 16);
      std::string hi = load(gep(p0, c64(4), "f32"), "vector<4xf32>", 16);
      std::string words[4];
      for (int w = 0; w < 4; ++w) {
        const std::string &src = w < 2 ? lo : hi;
        int at = 2 * (w % 2);
        std::string x0 = extract(src, at, "f32", "vector<4xf32>");
        std::string x1 = extract(src, at + 1, "f32", "vector<4xf32>");
        words[w] = v();
        os << "    " << words[w]
           << " = llvm.inline_asm \"cvt.rn.bf16x2.f32 $0, $1, $2;\", \"=r,f,f\" " << x1 << ", "
           << x0 << " : (f32, f32) -> i32\n";
      }
      std::string vec = v();
      os << "    " << vec << " = vector.from_elements " << words[0] << ", " << words[1] << ", "
         << words[2] << ", " << words[3] << " : vector<4xi32>\n";
      // Tile i / 8, chunk i % 8 of the row at chunk (i % 8) ^ (row % 8).
      std::string cc = a64("arith.xori", c64(i % 8), swz);
      std::string addr = a64(
          "arith.addi",
          a64("arith.addi", rowBase, c64((i / 8) * WgmmaIndexerShape::kTileBytes)),
          a64("arith.muli", cc, c64(16)));
      std::string ptr = v();
      os << "    " << ptr << " = llvm.inttoptr " << addr << " : i64 to !llvm.ptr<3>\n";
      os << "    llvm.store " << vec << ", " << ptr
         << " {alignment = 16 : i64} : vector<4xi32>, !llvm.ptr<3>\n";
    }
    os << "    llvm.inline_asm has_side_effects \"fence.proxy.async.shared::cta;\", \"\"  : () "
          "-> ()\n";
    os << "    llvm.inline_asm has_side_effects \"bar.sync $0, 128;\", \"r\" " << barId
       << " : (i32) -> ()\n";
  }
  os << "    scf.for %t = %c0 to %nStepsI step %c1 {\n";
  {
    std::string t64 = i64("%t");
    std::string s0 = a64("arith.addi", "%sLo", a64("arith.muli", t64, "%cT2"));
    std::vector<std::string> toks;
    for (int64_t tau = 0; tau < t2; ++tau)
      toks.push_back(a64("arith.addi", s0, c64(tau)));
    // The step's head weights, loaded before the wait for q and the MMAs:
    // their latency (from L2) overlaps both halves' MMAs instead of
    // following each half's (COMPRESSA_INDEXER_HW_EARLY=0 at compile time:
    // loaded in each half after its MMAs, for A/B runs).
    static const bool hwEarly = [] {
      const char *e = std::getenv("COMPRESSA_INDEXER_HW_EARLY");
      return !(e && std::string(e) == "0");
    }();
    auto loadHw = [&](int64_t tau) {
      std::string tc = a64("arith.minsi", toks[tau], sLast);
      std::string hwRow =
          gep("%hw", a64("arith.addi", a64("arith.muli", tc, c64(s.heads)), col0), "f32");
      std::vector<std::pair<std::string, std::string>> w;
      for (int64_t q = 0; q < perToken; ++q) {
        std::string pair = load(gep(hwRow, c64(8 * q), "f32"), "vector<2xf32>", 8);
        w.emplace_back(extract(pair, 0, "f32", "vector<2xf32>"),
                       extract(pair, 1, "f32", "vector<2xf32>"));
      }
      return w;
    };
    std::vector<std::vector<std::pair<std::string, std::string>>> hwEarlyPairs;
    if (hwEarly)
      for (int64_t tau = 0; tau < t2; ++tau)
        hwEarlyPairs.push_back(loadHw(tau));
    std::string gg = op("arith.addi", "%g", "%t");
    std::string st = op("arith.remui", gg, "%cStages");
    std::string round = op("arith.divui", gg, "%cStages");
    std::string fullPhase = parity(round);
    os << "    nvgpu.mbarrier.try_wait.parity %bar[" << st << "], " << fullPhase
       << ", %ticks : !bar\n";
    // The two 64-key halves one after the other, in a loop: one
    // accumulator (64 registers) and one epilogue's values live at a time
    // (both at once, ptxas spilled and serialized the wgmma: C7520); the
    // other warpgroup's MMAs overlap this one's epilogue.
    os << "    scf.for %h = %c0 to %c2 step %c1 {\n";
    std::string h64 = i64("%h");
    std::string hRow = op("arith.muli", "%h", "%c64");
    {
      std::string accV = v();
      os << "    " << accV << " = nvgpu.warpgroup.mma.init.accumulator -> " << acc << "\n";
      for (int64_t kt = 0; kt < s.kTiles(); ++kt) {
        std::string a = tileView(op("arith.addi", keyTile0, ci(kt)));
        std::string w = tileView(
            op("arith.addi", ci(2 * s.kTiles() + kt), op("arith.muli", st, ci(s.kTiles()))));
        // Each wgmma's wait_group count: 7, the 8 steps of a half issued
        // back to back (2.9 % faster than NVGPU's default, 1, on an H100
        // with the head weights loaded early; docs/perf.md, twenty-fifth
        // session). COMPRESSA_INDEXER_MMA_WAIT=N at compile time sets it
        // (-1: NVGPU's default; for A/B runs).
        static const int64_t mmaWait = [] {
          const char *e = std::getenv("COMPRESSA_INDEXER_MMA_WAIT");
          return e && *e ? std::atoll(e) : int64_t(7);
        }();
        if (s.fp8)
          accV = wgmmaSteps(a, w, hRow, kTile, "f8E4M3FN", 128, 32, int(s.dim / 32), "%dmap",
                            "%dmap", accV,
                            mmaWait < 0 ? mmaWait : std::min<int64_t>(mmaWait, s.dim / 32 - 1));
        else
          accV = wgmmaSteps(a, w, hRow, kTile, "bf16", 64, 16, 4, "%dmap", "%dmap", accV,
                            mmaWait);
      }
      os << "    nvvm.wgmma.wait.group.sync.aligned 0\n";
      std::string regsV = v();
      os << "    " << regsV << " = builtin.unrealized_conversion_cast " << accV << " : " << acc
         << " to " << accStruct << "\n";
      std::vector<std::string> r;
      for (int j = 0; j < 64; ++j) {
        r.push_back(v());
        os << "    " << r[j] << " = llvm.extractvalue " << regsV << "[0, " << j << "] : "
           << accStruct << "\n";
      }
      // Register j: row 8 ((j / 2) % 2) + row0 of the half, column 8 (j / 4)
      // + col0 + j % 2; its token is 8 (j / 4) / heads.
      for (int64_t tau = 0; tau < t2; ++tau) {
        const std::string &tokS = toks[tau];
        std::vector<std::pair<std::string, std::string>> w =
            hwEarly ? hwEarlyPairs[tau] : loadHw(tau);
        std::string avail = a64(
            "arith.divsi", a64("arith.addi", a64("arith.addi", "%start", tokS), "%one64"),
            "%cRatio");
        std::string okTok =
            op("arith.andi", op("arith.cmpi slt,", tokS, "%sHi", "i64"), quadLead, "i1");
        std::string scoreRow = gep("%scores", a64("arith.muli", tokS, c64(s.capacity)), "f32");
        for (int rh = 0; rh < 2; ++rh) {
          std::string sum = zeroF;
          for (int j = 0; j < 64; ++j) {
            int64_t q4 = j / 4;
            if ((j / 2) % 2 != rh || q4 / perToken != tau)
              continue;
            const auto &pair = w[q4 % perToken];
            const std::string &wj = j % 2 ? pair.second : pair.first;
            std::string rl = op("arith.maximumf", r[j], zeroF, "f32");
            std::string f = v();
            os << "    " << f << " = llvm.intr.fma(" << rl << ", " << wj << ", " << sum
               << ") : (f32, f32, f32) -> f32\n";
            sum = f;
          }
          for (const std::string &off : {one32, two32}) {
            std::string sh = v(), ok = v();
            os << "    " << sh << ", " << ok << " = gpu.shuffle xor " << sum << ", " << off
               << ", " << w32 << " : f32\n";
            sum = op("arith.addf", sum, sh, "f32");
          }
          std::string key = a64(
              "arith.addi", "%j0",
              a64("arith.addi", a64("arith.muli", wg64, c64(128)),
                  a64("arith.addi", a64("arith.addi", row0, a64("arith.muli", h64, c64(64))),
                      c64(8 * rh))));
          if (s.fp8) {
            // Times the key's scale (a power of two: exact).
            std::string at = a64(
                "arith.addi", "%scaleBase",
                a64("arith.muli",
                    a64("arith.addi", a64("arith.muli", wg64, c64(128)),
                        a64("arith.addi",
                            a64("arith.addi", row0, a64("arith.muli", h64, c64(64))),
                            c64(8 * rh))),
                    c64(4)));
            std::string sp = v();
            os << "    " << sp << " = llvm.inttoptr " << at << " : i64 to !llvm.ptr<3>\n";
            sum = op("arith.mulf", sum, load(sp, "f32", 4, "!llvm.ptr<3>"), "f32");
          }
          std::string ok =
              op("arith.andi", okTok, op("arith.cmpi slt,", key, avail, "i64"), "i1");
          // A predicated store, not a branch: a wgmma after a divergent
          // branch is serialized by ptxas (C7520).
          std::string p = gep(scoreRow, key, "f32");
          std::string flag = v();
          os << "    " << flag << " = arith.extui " << ok << " : i1 to i32\n";
          os << "    llvm.inline_asm has_side_effects \"{ .reg .pred p; setp.ne.b32 p, $2, 0; "
                "@p st.global.f32 [$0], $1; }\", \"l,f,r\" "
             << p << ", " << sum << ", " << flag << " : (!llvm.ptr, f32, i32) -> ()\n";
        }
      }
    }
    os << "    }\n"; // halves
    std::string tk = v();
    os << "    " << tk << " = nvgpu.mbarrier.arrive %ebar[" << st
       << "] : !bar -> !nvgpu.mbarrier.token\n";
  }
  os << "    }\n"; // steps
  os << "    }\n"; // has
  os << "    %cg = arith.addi %g, %nStepsI : index\n";
  os << "    scf.yield %cg : index\n";
  os << "    }\n";
}

void Writer::module() {
  os << "// The lightning indexer's scores (lowering/TensorCore/WgmmaIndexer.h), "
        "generated by Compressa.\n";
  os << "!bar = !nvgpu.mbarrier.group<memorySpace = #gpu.address_space<workgroup>, "
        "num_barriers = "
     << s.stages << ">\n";
  // q's rows as bytes in 128 x 128-byte boxes: 128 rows x 64 bf16.
  os << "!map = !nvgpu.tensormap.descriptor<tensor = memref<"
     << (s.fp8 ? "128x128xf8E4M3FN" : "128x64xbf16")
     << ", 3>, swizzle = swizzle_128b, l2promo = l2promo_256b, oob = zero, interleave = none>\n";
  os << "module attributes {gpu.container_module} {\n";
  os << "gpu.module @compressa_tc {\n";
  os << "  gpu.func @" << s.name()
     << "(%argv: !llvm.ptr) kernel attributes {known_block_size = "
        "array<i32: 384, 1, 1>} {\n";
  indexConstants();
  os << "    %ticks = arith.constant 10000000 : index\n";
  os << "    %cStages = arith.constant " << s.stages << " : index\n";
  os << "    %one64 = arith.constant 1 : i64\n"
        "    %zero64 = arith.constant 0 : i64\n";
  os << "    %cKeys = arith.constant " << WgmmaIndexerShape::kKeys << " : i64\n";
  // The tokens of a work item: kTokenBlock, kLongTokenBlock where the call's
  // last token sees at least kLongKeys keys (each item converts its key
  // tile once: fewer, longer items convert less; the last 8192 tokens of a
  // 1M prompt took 45.4-45.7 ms with 128 and 43.4-43.6 ms with 512 on an
  // H100, docs/perf.md). COMPRESSA_INDEXER_TOKEN_BLOCK=N at compile time
  // fixes N (a multiple of the step's tokens; for A/B runs).
  static const int64_t fixedBlock = [] {
    const char *e = std::getenv("COMPRESSA_INDEXER_TOKEN_BLOCK");
    int64_t n = e && *e ? std::atoll(e) : 0;
    return n >= 8 && n % 8 == 0 ? n : 0;
  }();
  os << "    %cRatio = arith.constant " << s.ratio << " : i64\n";
  os << "    %cT2 = arith.constant " << s.tokensPerStep() << " : i64\n";
  os << "    %cT2m1 = arith.constant " << s.tokensPerStep() - 1 << " : i64\n";
  // The descriptor generator reads only the swizzle of the map's type.
  os << "    %dmap = builtin.unrealized_conversion_cast %argv : !llvm.ptr to !map\n";
  auto slot = [&](int64_t i) { return load(gep("%argv", c64(i), "!llvm.ptr"), "!llvm.ptr", 8); };
  std::string tokp = slot(0), startp = slot(1), stage = slot(2), qmapPtr = slot(3);
  os << "    %qmap = builtin.unrealized_conversion_cast " << qmapPtr
     << " : !llvm.ptr to !map\n";
  os << "    %S = llvm.load " << tokp << " {alignment = 8 : i64} : !llvm.ptr -> i64\n";
  os << "    %start = llvm.load " << startp << " {alignment = 8 : i64} : !llvm.ptr -> i64\n";
  auto header = [&](int64_t byte, llvm::StringRef name) {
    std::string p = gep(stage, c64(byte), "i8");
    os << "    " << name << " = llvm.load " << p
       << " {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr\n";
  };
  header(kIndexerHeaderKeys, "%keys");
  header(kIndexerHeaderHw, "%hw");
  header(kIndexerHeaderScores, "%scores");
  // The keys the call's last token sees, their tiles, the token blocks.
  std::string keysM1 = c64(WgmmaIndexerShape::kKeys - 1);
  os << "    %endPos = arith.addi %start, %S : i64\n";
  os << "    %most = arith.divsi %endPos, %cRatio : i64\n";
  if (fixedBlock) {
    os << "    %cTB = arith.constant " << fixedBlock << " : i64\n";
  } else {
    std::string longKeys = c64(WgmmaIndexerShape::kLongKeys);
    std::string shortTB = c64(WgmmaIndexerShape::kTokenBlock);
    std::string longTB = c64(WgmmaIndexerShape::kLongTokenBlock);
    os << "    %long = arith.cmpi sge, %most, " << longKeys << " : i64\n";
    os << "    %cTB = arith.select %long, " << longTB << ", " << shortTB << " : i64\n";
  }
  std::string blockM1 = a64("arith.subi", "%cTB", "%one64");
  os << "    %mostUp = arith.addi %most, " << keysM1 << " : i64\n";
  os << "    %keyTiles0 = arith.divsi %mostUp, %cKeys : i64\n";
  os << "    %keyTiles = arith.maxsi %keyTiles0, %one64 : i64\n";
  os << "    %sTB = arith.addi %S, " << blockM1 << " : i64\n";
  os << "    %tBlocks = arith.divsi %sTB, %cTB : i64\n";
  os << "    %items0 = arith.muli %keyTiles, %tBlocks : i64\n";
  os << "    %anyKey = arith.cmpi sgt, %most, %zero64 : i64\n";
  os << "    %items = arith.select %anyKey, %items0, %zero64 : i64\n";
  persistentItems();
  warpgroupIds();
  alignedSharedMemory(kSmem, true);
  // full[s]: the producer's expect_tx and the copies' bytes; empty[s]: the
  // consumers' 256 threads are done with buffer s.
  stageBarriers(s.stages, "%c1", "%c256", [&] {
    os << "    nvgpu.tma.prefetch.descriptor %qmap : !map\n";
  });
  os << "    %isProducer = arith.cmpi eq, %tid, %c256 : index\n";
  os << "    scf.if %isProducer {\n";
  producer();
  os << "    }\n";
  os << "    %isConsumer = arith.cmpi ult, %wg, %c2 : index\n";
  os << "    scf.if %isConsumer {\n";
  consumers();
  os << "    }\n";
  os << "    gpu.return\n  }\n}\n}\n";
}

} // namespace

std::string compressa::wgmmaIndexerModuleText(const WgmmaIndexerShape &shape,
                                              llvm::StringRef chip, std::string &error) {
  if (!WgmmaIndexerShape::fits(shape.heads, shape.dim)) {
    error = llvm::formatv("the indexer's tensor-core scores need heads dividing 64 "
                          "(at least 8) and a key width of 64 or 128, "
                          "got {0} heads of {1}",
                          shape.heads, shape.dim)
                .str();
    return "";
  }
  if (shape.ratio < 1 || shape.capacity < 1 || shape.stages < 1 || shape.stages > 4) {
    error = "the indexer's tensor-core scores need a positive ratio and capacity "
            "and 1..4 stages";
    return "";
  }
  if (shape.sharedBytes() > 227 * 1024) {
    error = llvm::formatv("the indexer's tensor-core scores need {0} bytes of shared "
                          "memory, more than a block has",
                          shape.sharedBytes())
                .str();
    return "";
  }
  return sm90aModuleText(chip, "the indexer's tensor-core scores need", error,
                         [&](llvm::raw_ostream &os) { Writer(shape, os).module(); });
}

std::string compressa::wgmmaIndexerPtx(const WgmmaIndexerShape &shape, llvm::StringRef chip,
                                       std::string &error) {
  return wgmmaModulePtx(wgmmaIndexerModuleText(shape, chip, error), chip, error);
}
