//===- WgmmaAttention.cpp - HCA attention on Hopper tensor cores ----------===//
// SPDX-License-Identifier: Apache-2.0
//
// MLIR text specialised for one attention shape, lowered by MLIR's
// gpu-lower-to-nvvm-pipeline like the indexer's scores (WgmmaIndexer.cpp).
// The wgmma are nvvm.wgmma.mma_async on descriptors built here (the
// weighted sums read the key tile MN-major, which the NVGPU descriptor
// generator does not describe); cvt.rn.bf16x2.f32, fence.proxy.async and
// the named barriers come as inline PTX.

#include "lowering/TensorCore/WgmmaAttention.h"

#include "lowering/TensorCore/MlirText.h"
#include "lowering/TensorCore/WgmmaGemm.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

#include <cstring>
#include <vector>

using namespace mlir;
using namespace mlir::compressa;

std::string WgmmaAttentionShape::name() const {
  // The scale as the bits of the f32 the kernel multiplies by.
  float x = float(scale);
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  std::string name =
      llvm::formatv("compressa_tc_attention_{0}_h{1}_d{2}_w{3}_r{4}_c{5}_s{6}_x{7:x-}",
                    pass == Pass::Max ? "max" : "sums", heads, dim, window, ratio, capacity,
                    stages, bits)
          .str();
  return topk ? name + "_k" + std::to_string(topk) : name;
}

namespace {

constexpr llvm::StringLiteral kSmem = "memref<?xi8, #gpu.address_space<workgroup>>";
constexpr llvm::StringLiteral kBox = "memref<64x64xbf16, #gpu.address_space<workgroup>>";

/// The wgmma descriptor's constant bits: the leading and stride byte
/// offsets (in 16-byte units) and the 128-byte swizzle.
int64_t descriptorBits(int64_t leading, int64_t stride) {
  return ((leading >> 4) << 16) | ((stride >> 4) << 32) | (int64_t(1) << 62);
}

class Writer : MlirTextWriter {
public:
  Writer(const WgmmaAttentionShape &shape, llvm::StringRef chip, llvm::StringRef libdevice,
         llvm::raw_ostream &os)
      : MlirTextWriter(os), s(shape), chip(chip), libdevice(libdevice),
        sums(shape.pass == WgmmaAttentionShape::Pass::Sums) {}
  void module();

private:
  const WgmmaAttentionShape &s;
  llvm::StringRef chip, libdevice;
  bool sums;

  std::string cf(float x) {
    uint32_t bits;
    std::memcpy(&bits, &x, 4);
    std::string n = v();
    // MLIR reads a hexadecimal float literal as its bits.
    os << "    " << n << " = arith.constant " << llvm::format_hex(bits, 10) << " : f32\n";
    return n;
  }
  std::string f32op(llvm::StringRef name, llvm::StringRef a, llvm::StringRef b) {
    return op(name, a, b, "f32");
  }
  std::string toIndex(llvm::StringRef x) {
    std::string n = v();
    os << "    " << n << " = arith.index_cast " << x << " : i64 to index\n";
    return n;
  }
  std::string select(llvm::StringRef c, llvm::StringRef a, llvm::StringRef b,
                     llvm::StringRef type) {
    std::string n = v();
    os << "    " << n << " = arith.select " << c << ", " << a << ", " << b << " : " << type
       << "\n";
    return n;
  }
  std::string parity(llvm::StringRef round) {
    return op("arith.cmpi ne,", op("arith.remui", round, "%c2"), "%c0");
  }
  /// A view of box `index` (an index value, in boxes from the aligned base).
  std::string boxView(llvm::StringRef index) {
    std::string off =
        op("arith.addi", "%pad", op("arith.muli", index, ci(WgmmaAttentionShape::kBoxBytes)));
    std::string t = v();
    os << "    " << t << " = memref.view %smem[" << off << "][] : " << kSmem << " to " << kBox
       << "\n";
    return t;
  }
  /// A shared-memory pointer from an i64 address.
  std::string sptr(llvm::StringRef addr) {
    std::string p = v();
    os << "    " << p << " = llvm.inttoptr " << addr << " : i64 to !llvm.ptr<3>\n";
    return p;
  }
  void namedBarrier() {
    os << "    llvm.inline_asm has_side_effects \"bar.sync 1, 256;\", \"\" : () -> ()\n";
  }
  /// The item's values both roles compute: %s, %qRow, %inWin, %ne, %wRow0
  /// (i64), %nT (index) for item index `e` (i64).
  void item(llvm::StringRef e);
  void producer();
  void consumers();
  /// The accumulator struct type of n f32.
  static std::string accType(int64_t n) {
    std::string regs;
    for (int64_t j = 0; j < n; ++j)
      regs += j ? ", f32" : "f32";
    return "!llvm.struct<(" + regs + ")>";
  }
  /// One wgmma.mma_async (bf16, f32 accumulators) of shape m64 n k16.
  std::string wgmma(llvm::StringRef da, llvm::StringRef db, llvm::StringRef acc, int64_t n,
                    bool zero, bool bMnMajor) {
    std::string t = accType(n / 2), nx = v(); // 64 n / 128 threads
    os << "    " << nx << " = nvvm.wgmma.mma_async " << da << ", " << db << ", " << acc
       << ", #nvvm.shape<m = 64, n = " << n << ", k = 16>, D [<f32>, #nvvm.wgmma_scale_out<"
       << (zero ? "zero" : "one")
       << ">], A [<bf16>, #nvvm.wgmma_scale_in<one>, <row>], B [<bf16>, "
          "#nvvm.wgmma_scale_in<one>, <"
       << (bMnMajor ? "row" : "col") << ">] : " << t << " -> " << t << "\n";
    return nx;
  }
  /// A descriptor of shared address `addr` (i64) with constant bits `bits`.
  std::string descriptor(llvm::StringRef addr, llvm::StringRef bits) {
    return a64("arith.addi", bits, a64("arith.shrui", addr, "%four64"));
  }
};

void Writer::item(llvm::StringRef e) {
  os << "    %s = arith.divui " << e << ", %headTiles : i64\n";
  os << "    %ht = arith.remui " << e << ", %headTiles : i64\n";
  os << "    %sh = arith.muli %s, %cHeads : i64\n";
  os << "    %ht64 = arith.muli %ht, %c64i : i64\n";
  os << "    %qRow = arith.addi %sh, %ht64 : i64\n";
  os << "    %pos = arith.addi %start, %s : i64\n";
  os << "    %posW = arith.subi %pos, %cWinM1 : i64\n";
  os << "    %first = arith.maxsi %posW, %zero64 : i64\n";
  os << "    %inWin0 = arith.subi %pos, %first : i64\n";
  os << "    %inWin = arith.addi %inWin0, %one64 : i64\n";
  os << "    %pos1 = arith.addi %pos, %one64 : i64\n";
  os << "    %ne = arith.divsi %pos1, %cRatio : i64\n";
  os << "    %ne63 = arith.addi %ne, %c63i : i64\n";
  os << "    %neT = arith.divsi %ne63, %c64i : i64\n";
  if (s.topk)
    os << "    %nT64 = arith.addi %zero64, %cTiles : i64\n";
  else
    os << "    %nT64 = arith.addi %neT, %cWinTiles : i64\n";
  os << "    %nT = arith.index_cast %nT64 : i64 to index\n";
  os << "    %wRow0 = arith.subi %first, %wBase : i64\n";
}

void Writer::producer() {
  int64_t tileBytes = s.boxes() * WgmmaAttentionShape::kBoxBytes;
  os << "    %pres = scf.for %it = %c0 to %myItems step %c1 iter_args(%g = %c0) -> (index) {\n";
  std::string it64 = i64("%it");
  item(a64("arith.addi", "%bid64", a64("arith.muli", it64, "%grid64")));
  os << "    scf.for %t = %c0 to %nT step %c1 {\n";
  std::string gg = op("arith.addi", "%g", "%t");
  std::string st = op("arith.remui", gg, "%cStages");
  std::string round = op("arith.divui", gg, "%cStages");
  std::string refill = op("arith.cmpi uge,", gg, "%cStages");
  os << "    scf.if " << refill << " {\n";
  std::string ph = parity(op("arith.subi", round, "%c1"));
  os << "    nvgpu.mbarrier.try_wait.parity %ebar[" << st << "], " << ph << ", %ticks : !bar\n";
  os << "    }\n";
  std::string kBytes = ci(tileBytes);
  os << "    nvgpu.mbarrier.arrive.expect_tx %bar[" << st << "], " << kBytes << " : !bar\n";
  std::string t64 = i64("%t");
  std::string isWin = op("arith.cmpi ult,", "%t", "%cWinTilesI");
  std::string boxBase = op("arith.addi", ci(s.boxes()), op("arith.muli", st, ci(s.boxes())));
  auto loads = [&](llvm::StringRef map, llvm::StringRef row64) {
    std::string row = toIndex(row64);
    for (int64_t kt = 0; kt < s.boxes(); ++kt) {
      std::string box = boxView(op("arith.addi", boxBase, ci(kt))), col = ci(128 * kt);
      os << "    nvgpu.tma.async.load " << map << "[" << col << ", " << row << "], %bar["
         << st << "] to " << box << " : !map, !bar -> " << kBox << "\n";
    }
  };
  if (s.topk) {
    // The token's own rows: s (window + k) + 64 t.
    loads("%emap", a64("arith.addi", a64("arith.muli", "%s", c64(s.keysPerToken())),
                       a64("arith.muli", t64, "%c64i")));
  } else {
    os << "    scf.if " << isWin << " {\n";
    loads("%wmap", a64("arith.addi", "%wRow0", a64("arith.muli", t64, "%c64i")));
    os << "    } else {\n";
    loads("%emap", a64("arith.muli", a64("arith.subi", t64, "%cWinTiles"), "%c64i"));
    os << "    }\n";
  }
  os << "    }\n"; // tiles
  os << "    %pg = arith.addi %g, %nT : index\n";
  os << "    scf.yield %pg : index\n";
  os << "    }\n";
}

void Writer::consumers() {
  const int64_t half = s.dim / 2, steps = s.dim / 16;
  std::string sType = accType(16), oType = accType(half / 2);
  std::string wg64 = i64("%wg");
  std::string ct = a64("arith.addi", a64("arith.muli", wg64, c64(128)), i64("%tl"));
  std::string row0 = i64(op("arith.addi", op("arith.muli", "%warp", "%c16"),
                            op("arith.divui", "%lane", "%c4")));
  std::string row1 = a64("arith.addi", row0, c64(8));
  std::string t4 = i64(op("arith.remui", "%lane", "%c4"));
  std::string col0 = a64("arith.addi", a64("arith.muli", wg64, c64(32)),
                         a64("arith.muli", t4, c64(2))); // + 8 i + u
  std::string negInf = v(), zeroF = v();
  os << "    " << negInf << " = arith.constant 0xFF800000 : f32\n";
  os << "    " << zeroF << " = arith.constant 0.0 : f32\n";
  std::string scale = cf(float(s.scale));
  std::string one32 = v(), two32 = v(), w32 = v();
  os << "    " << one32 << " = arith.constant 1 : i32\n";
  os << "    " << two32 << " = arith.constant 2 : i32\n";
  os << "    " << w32 << " = arith.constant 32 : i32\n";
  std::string kBits = c64(descriptorBits(16, 1024));
  std::string vBits = c64(descriptorBits(WgmmaAttentionShape::kBoxBytes, 1024));
  std::string boxB = c64(WgmmaAttentionShape::kBoxBytes);
  // The accumulators' zero (the weighted sums start from it each item).
  std::string oZero;
  if (sums) {
    oZero = v();
    os << "    " << oZero << " = llvm.mlir.zero : " << oType << "\n";
  }
  // The exchange: [parity][warpgroup][64 rows] f32.
  std::string xBase = a64("arith.addi", "%sbase", c64(s.exchangeOffset()));
  std::string sinkP = gep("%sink", "%zero64", "f32");

  std::string qd = descriptor("%sbase", kBits);
  os << "    %qDesc0 = arith.addi " << qd << ", %zero64 : i64\n";
  os << "    %cres = scf.for %it = %c0 to %myItems step %c1 iter_args(%g = %c0) -> (index) {\n";
  std::string it64 = i64("%it");
  item(a64("arith.addi", "%bid64", a64("arith.muli", it64, "%grid64")));
  // q's 64 rows (f32 in global) to bf16 in the q boxes, 16 bytes a job:
  // job i of consumer thread ct = 128 wg + tl is row (ct + 256 i) / (dim /
  // 8), chunk (ct + 256 i) % (dim / 8): box chunk / 8, at chunk % 8 ^ row % 8
  // of the swizzled row. The previous item's scores are done (the
  // exchange's barrier), so the boxes are free.
  {
    const int64_t chunks = s.dim / 8, jobs = 64 * chunks / 256;
    std::vector<std::string> words;
    std::vector<std::string> addrs;
    for (int64_t i = 0; i < jobs; ++i) {
      std::string job = a64("arith.addi", ct, c64(256 * i));
      std::string row = a64("arith.divui", job, c64(chunks));
      std::string chunk = a64("arith.remui", job, c64(chunks));
      std::string src = gep("%qsrc", a64("arith.addi", a64("arith.muli", a64("arith.addi", "%qRow", row), c64(s.dim)),
                                         a64("arith.muli", chunk, c64(8))), "f32");
      std::string lo = load(src, "vector<4xf32>", 16);
      std::string hi = load(gep(src, c64(4), "f32"), "vector<4xf32>", 16);
      std::string w4[4];
      for (int w = 0; w < 4; ++w) {
        const std::string &from = w < 2 ? lo : hi;
        int at = 2 * (w % 2);
        std::string x0 = v(), x1 = v();
        os << "    " << x0 << " = vector.extract " << from << "[" << at << "] : f32 from vector<4xf32>\n";
        os << "    " << x1 << " = vector.extract " << from << "[" << at + 1 << "] : f32 from vector<4xf32>\n";
        w4[w] = v();
        os << "    " << w4[w] << " = llvm.inline_asm \"cvt.rn.bf16x2.f32 $0, $1, $2;\", \"=r,f,f\" "
           << x1 << ", " << x0 << " : (f32, f32) -> i32\n";
      }
      std::string vec = v();
      os << "    " << vec << " = vector.from_elements " << w4[0] << ", " << w4[1] << ", " << w4[2]
         << ", " << w4[3] << " : vector<4xi32>\n";
      std::string box = a64("arith.divui", chunk, c64(8));
      std::string cc = a64("arith.xori", a64("arith.remui", chunk, c64(8)), a64("arith.remui", row, c64(8)));
      std::string addr = a64("arith.addi", "%sbase",
                             a64("arith.addi", a64("arith.muli", box, boxB),
                                 a64("arith.addi", a64("arith.muli", row, c64(128)),
                                     a64("arith.muli", cc, c64(16)))));
      words.push_back(vec);
      addrs.push_back(addr);
    }
    for (size_t i = 0; i < words.size(); ++i) {
      std::string ptr = sptr(addrs[i]);
      os << "    llvm.store " << words[i] << ", " << ptr
         << " {alignment = 16 : i64} : vector<4xi32>, !llvm.ptr<3>\n";
    }
    os << "    llvm.inline_asm has_side_effects \"fence.proxy.async.shared::cta;\", \"\" : () "
          "-> ()\n";
    namedBarrier();
  }
  std::string rowG0 = a64("arith.addi", "%qRow", row0), rowG1 = a64("arith.addi", "%qRow", row1);
  std::string m0, m1;
  if (sums) {
    m0 = load(gep("%mx", rowG0, "f32"), "f32", 4);
    m1 = load(gep("%mx", rowG1, "f32"), "f32", 4);
  }
  // The tiles.
  std::string res = v();
  if (sums)
    os << "    " << res << ":3 = scf.for %t = %c0 to %nT step %c1 iter_args(%o = " << oZero
       << ", %d0 = " << zeroF << ", %d1 = " << zeroF << ") -> (" << oType << ", f32, f32) {\n";
  else
    os << "    " << res << ":2 = scf.for %t = %c0 to %nT step %c1 iter_args(%x0 = " << negInf
       << ", %x1 = " << negInf << ") -> (f32, f32) {\n";
  {
    std::string t64 = i64("%t");
    std::vector<std::string> sc(16), valid(8);
    // Which of the thread's 8 key columns count: computed before the wait
    // for the tile and its MMAs, so the top-k ids' loads (CSA) are in
    // flight meanwhile (COMPRESSA_ATTENTION_EARLY=0 at compile time: after
    // the MMAs, the code before, for A/B runs).
    static const bool early = [] {
      const char *e = std::getenv("COMPRESSA_ATTENTION_EARLY");
      return !(e && std::string(e) == "0");
    }();
    auto validKeys = [&] {
      // Key index of register j: kbase + col0 + 8 (j / 4) + j % 2; row row0
      // (j % 4 < 2) or row1.
      std::string isWin = op("arith.cmpi ult,", "%t", "%cWinTilesI");
      std::string kbase = select(isWin, a64("arith.muli", t64, "%c64i"),
                                 a64("arith.muli", a64("arith.subi", t64, "%cWinTiles"), "%c64i"),
                                 "i64");
      // Past the window: the entries a token sees (every visible one), or
      // the k slots (top-k; each slot's id says whether it holds one).
      std::string limit = select(isWin, "%inWin", s.topk ? c64(s.topk) : "%ne", "i64");
      std::string kfirst = a64("arith.addi", kbase, col0);
      for (int c = 0; c < 8; ++c) {
        // Column 8 (c / 2) + c % 2 of the thread's: registers j with j / 4 =
        // c / 2 and j % 2 = c % 2.
        std::string key = a64("arith.addi", kfirst, c64(8 * (c / 2) + c % 2));
        valid[c] = op("arith.cmpi slt,", key, limit, "i64");
        if (s.topk) {
          // A selected entry: its slot's id >= 0 (past the window the key
          // index is the slot; in the window the id is read, clamped into
          // the row, and not used).
          std::string slot = a64("arith.minsi", key, c64(s.topk - 1));
          std::string at = a64("arith.addi", a64("arith.muli", "%s", c64(s.topk)), slot);
          std::string id = load(gep("%topkIds", at, "i32"), "i32", 4);
          std::string chosen = op("arith.cmpi sge,", id, c32(0), "i32");
          valid[c] = select(isWin, valid[c], chosen, "i1");
        }
      }
    };
    if (early)
      validKeys();
    std::string gg = op("arith.addi", "%g", "%t");
    std::string st = op("arith.remui", gg, "%cStages");
    std::string round = op("arith.divui", gg, "%cStages");
    std::string fullPhase = parity(round);
    os << "    nvgpu.mbarrier.try_wait.parity %bar[" << st << "], " << fullPhase
       << ", %ticks : !bar\n";
    std::string st64 = i64(st);
    std::string stageAddr = a64(
        "arith.addi", "%sbase",
        a64("arith.addi", c64(s.keyOffset()), a64("arith.muli", st64, c64(s.boxes() * WgmmaAttentionShape::kBoxBytes))));
    // q's descriptor through an opaque copy made in the loop: hoisted out
    // of it, the dim / 16 descriptors (64 bits each) stayed live and the
    // accumulators spilled.
    std::string qDesc = v();
    os << "    " << qDesc << " = llvm.inline_asm has_side_effects \"mov.b64 $0, $1;\", \"=l,l\" "
       << "%qDesc0 : (i64) -> i64\n";
    std::string keyDesc = descriptor(
        a64("arith.addi", stageAddr, a64("arith.muli", wg64, c64(32 * 128))), kBits);
    // Scores of the warpgroup's 32 keys: dim / 16 steps, 4 within a box
    // (32 bytes apart in the swizzled rows), boxes 8 KiB apart.
    std::string sAcc = v();
    os << "    " << sAcc << " = llvm.mlir.undef : " << sType << "\n";
    os << "    nvvm.wgmma.fence.aligned\n";
    for (int64_t k = 0; k < steps; ++k) {
      int64_t off = (k / 4) * WgmmaAttentionShape::kBoxBytes + (k % 4) * 32;
      std::string offV = c64(off >> 4);
      std::string da = a64("arith.addi", qDesc, offV), db = a64("arith.addi", keyDesc, offV);
      sAcc = wgmma(da, db, sAcc, 32, k == 0, false);
    }
    os << "    nvvm.wgmma.commit.group.sync.aligned\n";
    os << "    nvvm.wgmma.wait.group.sync.aligned 0\n";
    std::vector<std::string> r;
    for (int j = 0; j < 16; ++j) {
      r.push_back(v());
      os << "    " << r[j] << " = llvm.extractvalue " << sAcc << "[" << j << "] : " << sType
         << "\n";
    }
    if (!early)
      validKeys();
    for (int j = 0; j < 16; ++j) {
      const std::string &ok = valid[2 * (j / 4) + j % 2];
      sc[j] = select(ok, f32op("arith.mulf", r[j], scale), negInf, "f32");
    }
    if (!sums) {
      std::string x0 = "%x0", x1 = "%x1";
      for (int j = 0; j < 16; ++j) {
        std::string &x = j % 4 < 2 ? x0 : x1;
        x = f32op("arith.maximumf", x, sc[j]);
      }
      std::string tk = v();
      os << "    " << tk << " = nvgpu.mbarrier.arrive %ebar[" << st
         << "] : !bar -> !nvgpu.mbarrier.token\n";
      os << "    scf.yield " << x0 << ", " << x1 << " : f32, f32\n";
    } else {
      std::string d0 = "%d0", d1 = "%d1";
      std::vector<std::string> p(16);
      // The weights' exponential in f32 (libdevice's expf, within 2 ulp;
      // p is rounded to bf16 next, 2^-9 relative): the f64 one took the
      // FP64 pipe ~25 operations a weight. COMPRESSA_ATTENTION_EXP=f64 at
      // compile time: through f64, as the warp MMA attention (the CPU
      // twin) computes it, for A/B runs.
      static const bool expF64 = [] {
        const char *e = std::getenv("COMPRESSA_ATTENTION_EXP");
        return e && std::string(e) == "f64";
      }();
      for (int j = 0; j < 16; ++j) {
        std::string diff = f32op("arith.subf", sc[j], j % 4 < 2 ? m0 : m1);
        if (!expF64) {
          p[j] = v();
          os << "    " << p[j] << " = math.exp " << diff << " : f32\n";
        } else {
          std::string wide = v(), e = v(), narrow = v();
          os << "    " << wide << " = arith.extf " << diff << " : f32 to f64\n";
          os << "    " << e << " = math.exp " << wide << " : f64\n";
          os << "    " << narrow << " = arith.truncf " << e << " : f64 to f32\n";
          p[j] = narrow;
        }
        std::string &d = j % 4 < 2 ? d0 : d1;
        d = f32op("arith.addf", d, p[j]);
      }
      // bf16(p) into the weights' buffer gg % 2 (64 rows x 128 bytes,
      // swizzled): register pair (j, j + 1) is row row0 / row1, columns
      // 32 wg + 8 (j / 4) + 2 t4 + {0, 1}: 16-byte chunk 4 wg + j / 4 of
      // the row at chunk ^ (row % 8), byte 4 t4 in it.
      std::string pb = op("arith.remui", gg, "%c2");
      std::string pAddr = a64("arith.addi", "%sbase",
                              a64("arith.addi", c64(s.weightsOffset()),
                                  a64("arith.muli", i64(pb), boxB)));
      for (int j = 0; j < 16; j += 2) {
        std::string word = v();
        os << "    " << word << " = llvm.inline_asm \"cvt.rn.bf16x2.f32 $0, $1, $2;\", \"=r,f,f\" "
           << p[j + 1] << ", " << p[j] << " : (f32, f32) -> i32\n";
        const std::string &row = j % 4 < 2 ? row0 : row1;
        std::string chunk = a64("arith.xori",
                                a64("arith.addi", a64("arith.muli", wg64, c64(4)), c64(j / 4)),
                                a64("arith.remui", row, c64(8)));
        std::string addr = a64(
            "arith.addi", pAddr,
            a64("arith.addi", a64("arith.muli", row, c64(128)),
                a64("arith.addi", a64("arith.muli", chunk, c64(16)), a64("arith.muli", t4, c64(4)))));
        std::string ptr = sptr(addr);
        os << "    llvm.store " << word << ", " << ptr << " {alignment = 4 : i64} : i32, !llvm.ptr<3>\n";
      }
      os << "    llvm.inline_asm has_side_effects \"fence.proxy.async.shared::cta;\", \"\" : () "
            "-> ()\n";
      namedBarrier();
      // O[:, half wg ..] += P V: 4 steps of 16 keys; V is the key tile
      // read MN-major from box half / 64 wg (boxes 8 KiB apart: the
      // leading byte offset; 8 keys 1024 bytes apart: the stride).
      std::string vAddr = a64("arith.addi", stageAddr,
                              a64("arith.muli", wg64, c64((half / 64) * WgmmaAttentionShape::kBoxBytes)));
      std::string oAcc = "%o";
      std::string pDesc = descriptor(pAddr, kBits), vDesc = descriptor(vAddr, vBits);
      os << "    nvvm.wgmma.fence.aligned\n";
      for (int64_t k = 0; k < 4; ++k) {
        std::string da = a64("arith.addi", pDesc, c64(32 * k >> 4));
        std::string db = a64("arith.addi", vDesc, c64(2048 * k >> 4));
        oAcc = wgmma(da, db, oAcc, half, false, true);
      }
      os << "    nvvm.wgmma.commit.group.sync.aligned\n";
      os << "    nvvm.wgmma.wait.group.sync.aligned 0\n";
      std::string tk = v();
      os << "    " << tk << " = nvgpu.mbarrier.arrive %ebar[" << st
         << "] : !bar -> !nvgpu.mbarrier.token\n";
      os << "    scf.yield " << oAcc << ", " << d0 << ", " << d1 << " : " << oType
         << ", f32, f32\n";
    }
  }
  os << "    }\n"; // tiles
  // The rows' values over the quad, then over the two warpgroups through
  // the exchange buffer of the item's parity.
  std::string a0 = res + (sums ? "#1" : "#0"), a1 = res + (sums ? "#2" : "#1");
  for (const std::string &off : {one32, two32}) {
    for (std::string *a : {&a0, &a1}) {
      std::string sh = v(), ok = v();
      os << "    " << sh << ", " << ok << " = gpu.shuffle xor " << *a << ", " << off << ", "
         << w32 << " : f32\n";
      *a = f32op(sums ? "arith.addf" : "arith.maximumf", *a, sh);
    }
  }
  std::string par = i64(op("arith.remui", "%it", "%c2"));
  std::string xPar = a64("arith.addi", xBase, a64("arith.muli", par, c64(2 * 64 * 4)));
  std::string mine = a64("arith.addi", xPar, a64("arith.muli", wg64, c64(64 * 4)));
  std::string wg0Base = xPar, wg1Base = a64("arith.addi", xPar, c64(64 * 4));
  for (auto [a, row] : {std::pair{a0, row0}, std::pair{a1, row1}}) {
    std::string ptr = sptr(a64("arith.addi", mine, a64("arith.muli", row, c64(4))));
    os << "    llvm.store " << a << ", " << ptr << " {alignment = 4 : i64} : f32, !llvm.ptr<3>\n";
  }
  namedBarrier();
  auto fromX = [&](llvm::StringRef base, llvm::StringRef row) {
    std::string ptr = sptr(a64("arith.addi", base, a64("arith.muli", row, c64(4))));
    std::string x = v();
    os << "    " << x << " = llvm.load " << ptr << " {alignment = 4 : i64} : !llvm.ptr<3> -> f32\n";
    return x;
  };
  std::string headBase = a64("arith.muli", "%ht", "%c64i");
  std::string sink0 = load(gep(sinkP, a64("arith.addi", headBase, row0), "f32"), "f32", 4);
  std::string sink1 = load(gep(sinkP, a64("arith.addi", headBase, row1), "f32"), "f32", 4);
  if (!sums) {
    // m = max(sink, the scores' max): WG 0 stores it (every lane of a quad
    // the same value).
    std::string mA = f32op("arith.maximumf", sink0, f32op("arith.maximumf", fromX(wg0Base, row0), fromX(wg1Base, row0)));
    std::string mB = f32op("arith.maximumf", sink1, f32op("arith.maximumf", fromX(wg0Base, row1), fromX(wg1Base, row1)));
    std::string isWg0 = v();
    os << "    " << isWg0 << " = arith.cmpi eq, %wg, %c0 : index\n";
    std::string flag = v();
    os << "    " << flag << " = arith.extui " << isWg0 << " : i1 to i32\n";
    for (auto [row, m] : {std::pair{rowG0, mA}, std::pair{rowG1, mB}}) {
      std::string p = gep("%mx", row, "f32");
      os << "    llvm.inline_asm has_side_effects \"{ .reg .pred p; setp.ne.b32 p, $2, 0; "
            "@p st.global.f32 [$0], $1; }\", \"l,f,r\" "
         << p << ", " << m << ", " << flag << " : (!llvm.ptr, f32, i32) -> ()\n";
    }
  } else {
    // den = (WG 0's sum + WG 1's sum) + exp(sink - m), the same in both.
    auto den = [&](llvm::StringRef row, llvm::StringRef sinkV, llvm::StringRef m) {
      std::string both = f32op("arith.addf", fromX(wg0Base, row), fromX(wg1Base, row));
      std::string diff = f32op("arith.subf", sinkV, m);
      std::string wide = v(), e = v(), narrow = v();
      os << "    " << wide << " = arith.extf " << diff << " : f32 to f64\n";
      os << "    " << e << " = math.exp " << wide << " : f64\n";
      os << "    " << narrow << " = arith.truncf " << e << " : f64 to f32\n";
      return f32op("arith.addf", both, narrow);
    };
    std::string den0 = den(row0, sink0, m0), den1 = den(row1, sink1, m1);
    // out[qRow + row, half wg + 8 i + 2 t4 + {0, 1}] = O / den.
    std::string o = res + "#0";
    std::string chan0 = a64("arith.addi", a64("arith.muli", wg64, c64(half)),
                            a64("arith.muli", t4, c64(2)));
    std::string outR0 = gep("%out", a64("arith.addi", a64("arith.muli", rowG0, c64(s.dim)), chan0), "f32");
    std::string outR1 = gep("%out", a64("arith.addi", a64("arith.muli", rowG1, c64(s.dim)), chan0), "f32");
    for (int64_t i = 0; i < half / 8; ++i) {
      for (int rh = 0; rh < 2; ++rh) {
        std::string x[2];
        for (int u = 0; u < 2; ++u) {
          std::string e = v();
          os << "    " << e << " = llvm.extractvalue " << o << "[" << 4 * i + 2 * rh + u << "] : "
             << oType << "\n";
          x[u] = f32op("arith.divf", e, rh ? den1 : den0);
        }
        std::string vec = v();
        os << "    " << vec << " = vector.from_elements " << x[0] << ", " << x[1]
           << " : vector<2xf32>\n";
        std::string p = gep(rh ? outR1 : outR0, c64(8 * i), "f32");
        os << "    llvm.store " << vec << ", " << p
           << " {alignment = 8 : i64} : vector<2xf32>, !llvm.ptr\n";
      }
    }
  }
  os << "    %cg = arith.addi %g, %nT : index\n";
  os << "    scf.yield %cg : index\n";
  os << "    }\n";
}

void Writer::module() {
  os << "// The HCA attention's " << (sums ? "weighted sums" : "maxima")
     << " (lowering/TensorCore/WgmmaAttention.h), generated by Compressa.\n";
  os << "!bar = !nvgpu.mbarrier.group<memorySpace = #gpu.address_space<workgroup>, "
        "num_barriers = "
     << s.stages << ">\n";
  // Rows as bytes in 64-row x 128-byte boxes: 64 rows x 64 bf16.
  os << "!map = !nvgpu.tensormap.descriptor<tensor = memref<64x64xbf16, 3>, "
        "swizzle = swizzle_128b, l2promo = l2promo_256b, oob = zero, interleave = none>\n";
  os << "module attributes {gpu.container_module} {\n";
  // Its own target: the pipeline's (attached next to it) links no
  // libdevice, whose __nv_exp the weights' exponential calls.
  os << "gpu.module @compressa_tc [#nvvm.target<O = 3, chip = \"" << chip
     << "\", features = \"+ptx80\", link = [\"" << libdevice << "\"]>] {\n";
  os << "  gpu.func @" << s.name()
     << "(%argv: !llvm.ptr) kernel attributes {known_block_size = array<i32: "
     << WgmmaAttentionShape::kThreads << ", 1, 1>, nvvm.minctasm = 1 : i32} {\n";
  indexConstants();
  os << "    %ticks = arith.constant 10000000 : index\n";
  os << "    %cStages = arith.constant " << s.stages << " : index\n";
  os << "    %one64 = arith.constant 1 : i64\n"
        "    %zero64 = arith.constant 0 : i64\n"
        "    %four64 = arith.constant 4 : i64\n"
        "    %c63i = arith.constant 63 : i64\n"
        "    %c64i = arith.constant 64 : i64\n";
  os << "    %cHeads = arith.constant " << s.heads << " : i64\n";
  os << "    %headTiles = arith.constant " << s.heads / 64 << " : i64\n";
  os << "    %cWinM1 = arith.constant " << s.window - 1 << " : i64\n";
  os << "    %cWinTiles = arith.constant " << s.windowTiles() << " : i64\n";
  os << "    %cWinTilesI = arith.constant " << s.windowTiles() << " : index\n";
  os << "    %cRatio = arith.constant " << s.ratio << " : i64\n";
  os << "    %cTiles = arith.constant " << s.keysPerToken() / 64 << " : i64\n";
  auto slot = [&](int64_t i) { return load(gep("%argv", c64(i), "!llvm.ptr"), "!llvm.ptr", 8); };
  std::string tokp = slot(0), startp = slot(1), stage = slot(2);
  std::string maps[2] = {slot(3), slot(4)};
  const char *mapNames[2] = {"%wmap", "%emap"};
  for (int i = 0; i < 2; ++i)
    os << "    " << mapNames[i] << " = builtin.unrealized_conversion_cast " << maps[i]
       << " : !llvm.ptr to !map\n";
  os << "    %S = llvm.load " << tokp << " {alignment = 8 : i64} : !llvm.ptr -> i64\n";
  os << "    %start = llvm.load " << startp << " {alignment = 8 : i64} : !llvm.ptr -> i64\n";
  auto header = [&](int64_t byte, llvm::StringRef name, llvm::StringRef type) {
    std::string p = gep(stage, c64(byte), "i8");
    os << "    " << name << " = llvm.load " << p << " {alignment = 8 : i64} : !llvm.ptr -> "
       << type << "\n";
  };
  header(kAttentionHeaderSink, "%sink", "!llvm.ptr");
  header(kAttentionHeaderMax, "%mx", "!llvm.ptr");
  header(kAttentionHeaderOut, "%out", "!llvm.ptr");
  header(kAttentionHeaderWindowBase, "%wBase", "i64");
  header(kAttentionHeaderQ, "%qsrc", "!llvm.ptr");
  if (s.topk)
    header(kAttentionHeaderTopk, "%topkIds", "!llvm.ptr");
  os << "    %items = arith.muli %S, %headTiles : i64\n";
  persistentItems();
  warpgroupIds();
  alignedSharedMemory(kSmem, true);
  stageBarriers(s.stages, "%c1", "%c256", [&] {
    for (const char *m : mapNames)
      os << "    nvgpu.tma.prefetch.descriptor " << m << " : !map\n";
  });
  // Registers: the producer's warpgroup gives most of its up, the
  // consumers (the weighted sums' 128 accumulators) take them.
  os << "    %isProducerWG = arith.cmpi eq, %wg, %c2 : index\n";
  os << "    scf.if %isProducerWG {\n";
  os << "    nvvm.setmaxregister decrease 40\n";
  os << "    %isProducer = arith.cmpi eq, %tid, %c256 : index\n";
  os << "    scf.if %isProducer {\n";
  producer();
  os << "    }\n";
  os << "    }\n";
  os << "    %isConsumer = arith.cmpi ult, %wg, %c2 : index\n";
  os << "    scf.if %isConsumer {\n";
  os << "    nvvm.setmaxregister increase 232\n";
  consumers();
  os << "    }\n";
  os << "    gpu.return\n  }\n}\n}\n";
}

} // namespace

std::string compressa::wgmmaAttentionModuleText(const WgmmaAttentionShape &shape,
                                                llvm::StringRef chip,
                                                llvm::StringRef cudaToolkit,
                                                std::string &error) {
  if (!WgmmaAttentionShape::fits(shape.heads, shape.dim)) {
    error = llvm::formatv("the attention's tensor-core kernels need a multiple of 64 heads "
                          "and a key width of 128, 256 or 512, got {0} heads of {1}",
                          shape.heads, shape.dim)
                .str();
    return "";
  }
  if (shape.topk < 0 || (shape.topk && (shape.topk % 64 || shape.window % 64))) {
    error = llvm::formatv("the attention's tensor-core kernels need a top-k and a window "
                          "that are multiples of 64, got {0} and {1}",
                          shape.topk, shape.window)
                .str();
    return "";
  }
  if (shape.window < 1 || shape.ratio < 1 || shape.capacity < 1 || shape.stages < 1 ||
      shape.stages > 2 || !(shape.scale > 0)) {
    error = "the attention's tensor-core kernels need a positive window, ratio, capacity "
            "and scale and 1..2 stages";
    return "";
  }
  if (shape.sharedBytes() > 227 * 1024) {
    error = llvm::formatv("the attention's tensor-core kernels need {0} bytes of shared "
                          "memory, more than a block has",
                          shape.sharedBytes())
                .str();
    return "";
  }
  std::string libdevice = (cudaToolkit + "/nvvm/libdevice/libdevice.10.bc").str();
  if (!llvm::sys::fs::exists(libdevice)) {
    error = "the attention's tensor-core kernels need the CUDA toolkit's libdevice, not "
            "found at " + libdevice;
    return "";
  }
  return sm90aModuleText(chip, "the attention's tensor-core kernels need", error,
                         [&](llvm::raw_ostream &os) {
                           Writer(shape, chip, libdevice, os).module();
                         });
}

std::string compressa::wgmmaAttentionPtx(const WgmmaAttentionShape &shape, llvm::StringRef chip,
                                         llvm::StringRef cudaToolkit, std::string &error) {
  return wgmmaModulePtx(wgmmaAttentionModuleText(shape, chip, cudaToolkit, error), chip, error);
}
