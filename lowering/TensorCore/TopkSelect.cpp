//===- TopkSelect.cpp - The indexer's top-k selection, a block a token ----===//
// SPDX-License-Identifier: Apache-2.0
//
// Written as MLIR text (gpu, scf, arith, memref and llvm ops; the warp
// votes as PTX) and lowered by gpu-lower-to-nvvm-pipeline, like the
// tensor-core kernels beside it.

#include "lowering/TensorCore/TopkSelect.h"

#include "lowering/TensorCore/MlirText.h"
#include "lowering/TensorCore/WgmmaGemm.h"
#include "lowering/TensorCore/WgmmaIndexer.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

#include <array>
#include <vector>

using namespace mlir;
using namespace mlir::compressa;

std::string TopkSelectShape::name() const {
  return llvm::formatv("compressa_tc_topk_c{0}_k{1}_r{2}", capacity, topk, ratio).str();
}

namespace {

// A tile: two runs of 4 keys a thread (both loads in flight at once), the
// second run 4 kThreads keys after the first.
constexpr int64_t kThreads = TopkSelectShape::kThreads, kWarps = kThreads / 32,
                  kRun = 4 * kThreads, kTile = 2 * kRun, kKeys = 8;
// Pointers into global memory (ld.global, st.global).
constexpr llvm::StringLiteral kGlobal = "!llvm.ptr<1>";
constexpr llvm::StringLiteral kHist = "memref<2048xi32, #gpu.address_space<workgroup>>";
constexpr llvm::StringLiteral kWarpSums = "memref<32xi32, #gpu.address_space<workgroup>>";

class Writer : MlirTextWriter {
public:
  Writer(const TopkSelectShape &shape, llvm::raw_ostream &os)
      : MlirTextWriter(os), s(shape) {}
  void module();

private:
  const TopkSelectShape &s;

  std::string a32(llvm::StringRef name, llvm::StringRef a, llvm::StringRef b) {
    return op(name, a, b, "i32");
  }
  std::string cmp(llvm::StringRef pred, llvm::StringRef a, llvm::StringRef b,
                  llvm::StringRef type = "i32") {
    std::string n = v();
    os << "    " << n << " = arith.cmpi " << pred << ", " << a << ", " << b << " : " << type
       << "\n";
    return n;
  }
  std::string sel(llvm::StringRef c, llvm::StringRef a, llvm::StringRef b,
                  llvm::StringRef type = "i32") {
    std::string n = v();
    os << "    " << n << " = arith.select " << c << ", " << a << ", " << b << " : " << type
       << "\n";
    return n;
  }
  std::string andI(llvm::StringRef a, llvm::StringRef b) { return op("arith.andi", a, b, "i1"); }
  std::string ext(llvm::StringRef i1) {
    std::string n = v();
    os << "    " << n << " = arith.extui " << i1 << " : i1 to i32\n";
    return n;
  }
  std::string cast(llvm::StringRef x, llvm::StringRef from, llvm::StringRef to) {
    std::string n = v();
    os << "    " << n << " = arith.index_cast " << x << " : " << from << " to " << to << "\n";
    return n;
  }
  /// Shared memory: hist[i], warps[i] (i: index).
  std::string sload(llvm::StringRef mem, llvm::StringRef type, llvm::StringRef i) {
    std::string n = v();
    os << "    " << n << " = memref.load " << mem << "[" << i << "] : " << type << "\n";
    return n;
  }
  void sstore(llvm::StringRef x, llvm::StringRef mem, llvm::StringRef type,
              llvm::StringRef i) {
    os << "    memref.store " << x << ", " << mem << "[" << i << "] : " << type << "\n";
  }

  /// The u32 key of score f (f32): the same order as the floats.
  std::string keyOf(llvm::StringRef f) {
    std::string bits = v();
    os << "    " << bits << " = arith.bitcast " << f << " : f32 to i32\n";
    std::string negative = cmp("slt", bits, "%z32");
    std::string flipped = a32("arith.xori", bits, "%m1");
    std::string marked = a32("arith.ori", bits, "%sign");
    return sel(negative, flipped, marked);
  }
  /// The eight scores of this thread in the tile at `base` (index; its
  /// first key): keys[j] and valid[j] (i1: below n); keys 0..3 are keys
  /// base + 4 tid + j, keys 4..7 kRun later.
  void tileKeys(llvm::StringRef base, std::string keys[kKeys], std::string valid[kKeys],
                const std::string *loaded = nullptr);
  /// The loads of tileKeys alone (rows of a length that is a multiple of
  /// 4): the two runs' vectors of the tile at `base`.
  std::array<std::string, 2> tileLoads(llvm::StringRef base);
  /// scf.for over the tiles of the row, carrying `carried` (initial values
  /// and types) and, where rows are vector-loaded, the next tile's loads
  /// (issued before this tile's work, so that they overlap it). body(base,
  /// keys, valid, carried values) returns the carried values' next ones.
  /// Returns the loop's results (the carried values).
  std::vector<std::string> tileLoop(
      const std::vector<std::pair<std::string, std::string>> &carried,
      llvm::function_ref<std::vector<std::string>(llvm::StringRef, std::string *, std::string *,
                                                  const std::vector<std::string> &)>
          body);
  /// The inclusive sum of `x` (i32) over the warp's lanes up to this one.
  std::string warpScan(llvm::StringRef x);
  /// One step of the threshold's search: the histogram of the `width` bits
  /// at `shift` of the keys agreeing with `prefix` above them, then the
  /// digit where the count from the top reaches `rem`. Returns (prefix with
  /// the digit, rem less the keys above the digit, whether the digit's bin
  /// is taken whole) as i32, i32, i1.
  std::array<std::string, 3> pass(int64_t shift, int64_t width, llvm::StringRef prefix,
                                  llvm::StringRef rem);
  /// The selection of a token whose n (i64, > topk) keys are at %row.
  void select();
};

std::array<std::string, 2> Writer::tileLoads(llvm::StringRef base) {
  std::string first = cast(op("arith.addi", base, "%tid4"), "index", "i64");
  std::array<std::string, 2> vecs;
  for (int r = 0; r < 2; ++r) {
    // A row starts 16-byte aligned (the scratch's 64-byte parts, 4k floats
    // a row); keys past n are read but not used, none past the row.
    std::string at = r ? a64("arith.addi", first, c64(kRun)) : first;
    std::string inRow = cmp("slt", at, "%cCap", "i64");
    vecs[r] = v();
    os << "    " << vecs[r] << " = scf.if " << inRow << " -> (vector<4xf32>) {\n";
    std::string p = gep("%rowG", at, "f32", kGlobal);
    std::string x = load(p, "vector<4xf32>", 16, kGlobal);
    os << "    scf.yield " << x << " : vector<4xf32>\n    } else {\n";
    os << "    scf.yield %zv : vector<4xf32>\n    }\n";
  }
  return vecs;
}

void Writer::tileKeys(llvm::StringRef base, std::string keys[kKeys],
                      std::string valid[kKeys], const std::string *loaded) {
  std::string firsts[2], vals[kKeys];
  firsts[0] = cast(op("arith.addi", base, "%tid4"), "index", "i64");
  firsts[1] = a64("arith.addi", firsts[0], c64(kRun));
  if (loaded) {
    for (int j = 0; j < kKeys; ++j) {
      vals[j] = v();
      os << "    " << vals[j] << " = vector.extract " << loaded[j / 4] << "[" << j % 4
         << "] : f32 from vector<4xf32>\n";
    }
  }
  for (int j = 0; j < kKeys; ++j) {
    std::string i = j % 4 ? a64("arith.addi", firsts[j / 4], c64(j % 4)) : firsts[j / 4];
    valid[j] = cmp("slt", i, "%n", "i64");
    if (!loaded) {
      vals[j] = v();
      os << "    " << vals[j] << " = scf.if " << valid[j] << " -> (f32) {\n";
      std::string p = gep("%rowG", i, "f32", kGlobal);
      std::string x = load(p, "f32", 4, kGlobal);
      os << "    scf.yield " << x << " : f32\n    } else {\n";
      os << "    scf.yield %zf : f32\n    }\n";
    }
  }
  for (int j = 0; j < kKeys; ++j)
    keys[j] = keyOf(vals[j]);
}

std::vector<std::string> Writer::tileLoop(
    const std::vector<std::pair<std::string, std::string>> &carried,
    llvm::function_ref<std::vector<std::string>(llvm::StringRef, std::string *, std::string *,
                                                const std::vector<std::string> &)>
        body) {
  bool vec = s.capacity % 4 == 0;
  std::vector<std::pair<std::string, std::string>> all;
  if (vec) {
    auto first = tileLoads("%c0");
    all.push_back({first[0], "vector<4xf32>"});
    all.push_back({first[1], "vector<4xf32>"});
  }
  llvm::append_range(all, carried);
  std::string t = v(), res = v();
  std::vector<std::string> args;
  for (size_t i = 0; i < all.size(); ++i)
    args.push_back(v());
  os << "    ";
  if (!all.empty())
    os << res << ":" << all.size() << " = ";
  os << "scf.for " << t << " = %c0 to %tiles step %c1";
  if (!all.empty()) {
    os << " iter_args(";
    for (size_t i = 0; i < all.size(); ++i)
      os << (i ? ", " : "") << args[i] << " = " << all[i].first;
    os << ") -> (";
    for (size_t i = 0; i < all.size(); ++i)
      os << (i ? ", " : "") << all[i].second;
    os << ")";
  }
  os << " {\n";
  std::string base = op("arith.muli", t, "%cTile");
  std::array<std::string, 2> next;
  if (vec)
    next = tileLoads(op("arith.addi", base, "%cTile"));
  std::string keys[kKeys], valid[kKeys];
  std::string loaded[2] = {vec ? args[0] : "", vec ? args[1] : ""};
  tileKeys(base, keys, valid, vec ? loaded : nullptr);
  std::vector<std::string> in(args.begin() + (vec ? 2 : 0), args.end());
  std::vector<std::string> out = body(base, keys, valid, in);
  if (!all.empty()) {
    os << "    scf.yield ";
    std::vector<std::string> yields;
    if (vec)
      yields = {next[0], next[1]};
    llvm::append_range(yields, out);
    for (size_t i = 0; i < yields.size(); ++i)
      os << (i ? ", " : "") << yields[i];
    os << " : ";
    for (size_t i = 0; i < all.size(); ++i)
      os << (i ? ", " : "") << all[i].second;
    os << "\n";
  }
  os << "    }\n";
  std::vector<std::string> results;
  for (size_t i = vec ? 2 : 0; i < all.size(); ++i)
    results.push_back(res + "#" + std::to_string(i));
  return results;
}

std::string Writer::warpScan(llvm::StringRef x) {
  std::string acc = x.str();
  for (int off : {1, 2, 4, 8, 16}) {
    std::string o = c32(off), up = v(), ok = v();
    os << "    " << up << ", " << ok << " = gpu.shuffle up " << acc << ", " << o
       << ", %w32 : i32\n";
    std::string has = cmp("uge", "%lane32", o);
    acc = a32("arith.addi", acc, sel(has, up, "%z32"));
  }
  return acc;
}

std::array<std::string, 3> Writer::pass(int64_t shift, int64_t width, llvm::StringRef prefix,
                                        llvm::StringRef rem) {
  int64_t bins = int64_t(1) << width, above = shift + width, per = bins / kThreads;
  std::string cBins = ci(bins);
  // Zero the bins.
  os << "    scf.for %zb" << shift << " = %tid to " << cBins << " step %cThreads {\n";
  sstore("%z32", "%hist", kHist, "%zb" + std::to_string(shift));
  os << "    }\n    gpu.barrier\n";
  // The histogram: every thread runs every tile (the warps' votes need
  // all lanes), the keys past n or off the prefix in no bin.
  tileLoop({}, [&](llvm::StringRef, std::string *keys, std::string *valid,
                   const std::vector<std::string> &) -> std::vector<std::string> {
    std::string prefixHigh = above < 32 ? a32("arith.shrui", prefix, c32(above)) : "";
    for (int j = 0; j < kKeys; ++j) {
      std::string ok = valid[j];
      if (above < 32)
        ok = andI(ok, cmp("eq", a32("arith.shrui", keys[j], c32(above)), prefixHigh));
      std::string digit = a32("arith.andi", a32("arith.shrui", keys[j], c32(shift)),
                              c32(bins - 1));
      std::string bin = sel(ok, digit, "%m1");
      if (above < 32) {
        // Past the first digit few keys agree with the prefix: a warp
        // with none skips the vote.
        std::string any = v();
        os << "    " << any << " = nvvm.vote.sync ballot %m1, " << ok << " -> i32\n";
        std::string some = cmp("ne", any, "%z32");
        os << "    scf.if " << some << " {\n";
      }
      std::string peers = v();
      os << "    " << peers << " = llvm.inline_asm has_side_effects \"match.any.sync.b32 $0, "
            "$1, -1;\", \"=r,r\" "
         << bin << " : (i32) -> i32\n";
      std::string lower = a32("arith.andi", peers, "%ltMask");
      std::string leader = andI(ok, cmp("eq", lower, "%z32"));
      os << "    scf.if " << leader << " {\n";
      std::string count = v();
      os << "    " << count << " = llvm.intr.ctpop(" << peers << ") : (i32) -> i32\n";
      std::string bi = cast(digit, "i32", "index");
      std::string old = v();
      os << "    " << old << " = memref.atomic_rmw addi " << count << ", %hist[" << bi
         << "] : (i32, " << kHist << ") -> i32\n";
      os << "    }\n";
      if (above < 32)
        os << "    }\n";
    }
    return {};
  });
  os << "    gpu.barrier\n";
  // Thread t's bins: the digits bins - 1 - (t per + q), q < per, from the
  // top; their sum, the scan over the block.
  std::string firstBin = op("arith.subi", ci(bins - 1), op("arith.muli", "%tid", ci(per)));
  std::vector<std::string> h(per), digits(per);
  std::string local = "%z32";
  for (int64_t q = 0; q < per; ++q) {
    digits[q] = q ? op("arith.subi", firstBin, ci(q)) : firstBin;
    h[q] = sload("%hist", kHist, digits[q]);
    local = a32("arith.addi", local, h[q]);
  }
  std::string incl = warpScan(local);
  std::string isLast = cmp("eq", "%lane32", c32(31));
  os << "    scf.if " << isLast << " {\n";
  sstore(incl, "%warps", kWarpSums, "%warp");
  os << "    }\n    gpu.barrier\n";
  std::string warpEx = "%z32";
  for (int64_t w = 0; w < kWarps; ++w) {
    std::string x = sload("%warps", kWarpSums, ci(w));
    std::string below = cmp("ult", ci(w), "%warp", "index");
    warpEx = a32("arith.addi", warpEx, sel(below, x, "%z32"));
  }
  std::string ex = a32("arith.subi", a32("arith.addi", warpEx, incl), local);
  std::string mine = andI(cmp("ult", ex, rem), cmp("ule", rem, a32("arith.addi", ex, local)));
  os << "    scf.if " << mine << " {\n";
  {
    // This thread's bins hold the digit: the first from the top where the
    // count reaches rem.
    std::string cum = ex, found = "%false", d = "%z32", cAbove = "%z32", cnt = "%z32";
    for (int64_t q = 0; q < per; ++q) {
      std::string reach = cmp("uge", a32("arith.addi", cum, h[q]), rem);
      std::string hit = andI(reach, op("arith.xori", found, "%true", "i1"));
      d = sel(hit, cast(digits[q], "index", "i32"), d);
      cAbove = sel(hit, cum, cAbove);
      cnt = sel(hit, h[q], cnt);
      found = op("arith.ori", found, hit, "i1");
      cum = a32("arith.addi", cum, h[q]);
    }
    sstore(d, "%ctrl", kWarpSums, "%c0");
    sstore(cAbove, "%ctrl", kWarpSums, "%c1");
    sstore(cnt, "%ctrl", kWarpSums, "%c2");
  }
  os << "    }\n    gpu.barrier\n";
  std::string d = sload("%ctrl", kWarpSums, "%c0");
  std::string cAbove = sload("%ctrl", kWarpSums, "%c1");
  std::string cnt = sload("%ctrl", kWarpSums, "%c2");
  std::string prefixOut = a32("arith.ori", prefix, a32("arith.shli", d, c32(shift)));
  std::string remOut = a32("arith.subi", rem, cAbove);
  std::string whole = cmp("eq", cnt, remOut);
  return {prefixOut, remOut, whole};
}

void Writer::select() {
  // The threshold: three digits, most significant first, until a bin is
  // taken whole. (thr, taken, all): all = the keys >= thr (a whole bin's
  // lowest key and above); else the keys > thr and the first `taken` keys
  // equal to thr.
  auto p0 = pass(21, 11, "%z32", "%cTopk");
  std::string r = v();
  os << "    " << r << ":3 = scf.if " << p0[2] << " -> (i32, i32, i1) {\n";
  os << "    scf.yield " << p0[0] << ", %z32, %true : i32, i32, i1\n    } else {\n";
  {
    auto p1 = pass(10, 11, p0[0], p0[1]);
    std::string r1 = v();
    os << "    " << r1 << ":3 = scf.if " << p1[2] << " -> (i32, i32, i1) {\n";
    os << "    scf.yield " << p1[0] << ", %z32, %true : i32, i32, i1\n    } else {\n";
    auto p2 = pass(0, 10, p1[0], p1[1]);
    os << "    scf.yield " << p2[0] << ", " << p2[1] << ", %false : i32, i32, i1\n    }\n";
    os << "    scf.yield " << r1 << "#0, " << r1 << "#1, " << r1 << "#2 : i32, i32, i1\n";
  }
  os << "    }\n";
  std::string thr = r + "#0", taken = r + "#1", all = r + "#2";
  std::string exact = op("arith.xori", all, "%true", "i1");
  // The picks in index order, a tile at a time: (above, equal) counts as
  // one word (a run holds at most 2048 keys, a tile 4096: 16 bits each).
  tileLoop({{"%z32", "i32"}, {"%z32", "i32"}}, [&](llvm::StringRef base, std::string *keys,
                                                   std::string *valid,
                                                   const std::vector<std::string> &runs)
                                                   -> std::vector<std::string> {
    const std::string &gRun = runs[0], &eRun = runs[1];
    std::string gt[kKeys], eq[kKeys];
    // Per run: this thread's counts, their scan over the warp; lane 31
    // writes the warp's totals (run r at warps[16 r + warp]).
    std::string packed[2] = {"%z32", "%z32"}, incl[2];
    for (int j = 0; j < kKeys; ++j) {
      std::string above = sel(all, cmp("uge", keys[j], thr), cmp("ugt", keys[j], thr), "i1");
      gt[j] = andI(valid[j], above);
      eq[j] = andI(andI(valid[j], exact), cmp("eq", keys[j], thr));
      packed[j / 4] = a32("arith.addi", packed[j / 4],
                          a32("arith.addi", ext(gt[j]), a32("arith.shli", ext(eq[j]), c32(16))));
    }
    for (int r = 0; r < 2; ++r)
      incl[r] = warpScan(packed[r]);
    std::string isLast = cmp("eq", "%lane32", c32(31));
    os << "    scf.if " << isLast << " {\n";
    sstore(incl[0], "%warps", kWarpSums, "%warp");
    std::string second = op("arith.addi", "%warp", ci(kWarps));
    sstore(incl[1], "%warps", kWarpSums, second);
    os << "    }\n    gpu.barrier\n";
    // Run 0's keys come before run 1's in index order.
    std::string warpEx[2] = {"%z32", "%z32"}, total = "%z32";
    for (int r = 0; r < 2; ++r) {
      warpEx[r] = total;
      for (int64_t w = 0; w < kWarps; ++w) {
        std::string x = sload("%warps", kWarpSums, ci(r * kWarps + w));
        std::string below = cmp("ult", ci(w), "%warp", "index");
        warpEx[r] = a32("arith.addi", warpEx[r], sel(below, x, "%z32"));
        total = a32("arith.addi", total, x);
      }
    }
    std::string first = op("arith.addi", base, "%tid4");
    for (int r = 0; r < 2; ++r) {
      std::string ex = a32("arith.subi", a32("arith.addi", warpEx[r], incl[r]), packed[r]);
      std::string gB = a32("arith.addi", gRun, a32("arith.andi", ex, c32(0xFFFF)));
      std::string eB = a32("arith.addi", eRun, a32("arith.shrui", ex, c32(16)));
      for (int q = 0; q < 4; ++q) {
        int j = 4 * r + q;
        std::string eqTaken = cmp("ult", eB, taken);
        std::string pick = op("arith.ori", gt[j], andI(eq[j], eqTaken), "i1");
        os << "    scf.if " << pick << " {\n";
        std::string at = a32("arith.addi", gB, op("arith.minui", eB, taken, "i32"));
        std::string at64 = v();
        os << "    " << at64 << " = arith.extui " << at << " : i32 to i64\n";
        std::string idx = cast(op("arith.addi", first, ci(r * kRun + q)), "index", "i32");
        std::string dst = gep("%outRowG", at64, "i32", kGlobal);
        os << "    llvm.store " << idx << ", " << dst
           << " {alignment = 4 : i64} : i32, !llvm.ptr<1>\n";
        os << "    }\n";
        gB = a32("arith.addi", gB, ext(gt[j]));
        eB = a32("arith.addi", eB, ext(eq[j]));
      }
    }
    // Every thread has read the warps' sums before the next tile's.
    os << "    gpu.barrier\n";
    std::string g = a32("arith.addi", gRun, a32("arith.andi", total, c32(0xFFFF)));
    std::string e = a32("arith.addi", eRun, a32("arith.shrui", total, c32(16)));
    return {g, e};
  });
}

void Writer::module() {
  os << "// The indexer's top-k selection, a block a token "
        "(lowering/TensorCore/TopkSelect.h), generated by Compressa.\n";
  os << "module attributes {gpu.container_module} {\n";
  os << "gpu.module @compressa_tc {\n";
  os << "  memref.global \"private\" @topk_hist : " << kHist << "\n";
  os << "  memref.global \"private\" @topk_warps : " << kWarpSums << "\n";
  os << "  memref.global \"private\" @topk_ctrl : " << kWarpSums << "\n";
  os << "  gpu.func @" << s.name()
     << "(%argv: !llvm.ptr) kernel attributes {known_block_size = array<i32: " << kThreads
     << ", 1, 1>, nvvm.minctasm = 2 : i32} {\n";
  indexConstants();
  os << "    %one64 = arith.constant 1 : i64\n"
        "    %zero64 = arith.constant 0 : i64\n"
        "    %z32 = arith.constant 0 : i32\n"
        "    %one32 = arith.constant 1 : i32\n"
        "    %m1 = arith.constant -1 : i32\n"
        "    %sign = arith.constant -2147483648 : i32\n"
        "    %w32 = arith.constant 32 : i32\n"
        "    %zf = arith.constant 0.0 : f32\n"
        "    %zv = arith.constant dense<0.0> : vector<4xf32>\n"
        "    %true = arith.constant true\n"
        "    %false = arith.constant false\n";
  os << "    %cThreads = arith.constant " << kThreads << " : index\n";
  os << "    %cTile = arith.constant " << kTile << " : index\n";
  os << "    %cTileM1 = arith.constant " << kTile - 1 << " : i64\n";
  os << "    %cTile64 = arith.constant " << kTile << " : i64\n";
  os << "    %cCap = arith.constant " << s.capacity << " : i64\n";
  os << "    %cTopk = arith.constant " << s.topk << " : i32\n";
  os << "    %cTopk64 = arith.constant " << s.topk << " : i64\n";
  os << "    %cRatio = arith.constant " << s.ratio << " : i64\n";
  auto slot = [&](int64_t i) { return load(gep("%argv", c64(i), "!llvm.ptr"), "!llvm.ptr", 8); };
  std::string tokp = slot(0), startp = slot(1), stage = slot(2);
  os << "    %S = llvm.load " << tokp << " {alignment = 8 : i64} : !llvm.ptr -> i64\n";
  os << "    %start = llvm.load " << startp << " {alignment = 8 : i64} : !llvm.ptr -> i64\n";
  std::string scoresAt = gep(stage, c64(kIndexerHeaderScores), "i8");
  os << "    %scores = llvm.load " << scoresAt
     << " {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr\n";
  std::string picksAt = gep(stage, c64(kIndexerHeaderPicks), "i8");
  os << "    %picks = llvm.load " << picksAt
     << " {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr\n";
  os << "    %items = arith.addi %S, %zero64 : i64\n";
  persistentItems();
  os << "    %tid = gpu.thread_id x\n"
        "    %tid4 = arith.muli %tid, %c4 : index\n"
        "    %warp = arith.divui %tid, %c32 : index\n"
        "    %laneI = arith.remui %tid, %c32 : index\n"
        "    %lane32 = arith.index_cast %laneI : index to i32\n"
        "    %oneBit = arith.shli %one32, %lane32 : i32\n"
        "    %ltMask = arith.subi %oneBit, %one32 : i32\n";
  os << "    %hist = memref.get_global @topk_hist : " << kHist << "\n";
  os << "    %warps = memref.get_global @topk_warps : " << kWarpSums << "\n";
  os << "    %ctrl = memref.get_global @topk_ctrl : " << kWarpSums << "\n";
  os << "    scf.for %it = %c0 to %myItems step %c1 {\n";
  os << "    %it64 = arith.index_cast %it : index to i64\n"
        "    %sOff = arith.muli %it64, %grid64 : i64\n"
        "    %s = arith.addi %bid64, %sOff : i64\n"
        "    %pos = arith.addi %start, %s : i64\n"
        "    %pos1 = arith.addi %pos, %one64 : i64\n"
        "    %n = arith.divsi %pos1, %cRatio : i64\n"
        "    %rowOff = arith.muli %s, %cCap : i64\n"
        "    %row = llvm.getelementptr %scores[%rowOff] : (!llvm.ptr, i64) -> !llvm.ptr, f32\n"
        "    %outOff = arith.muli %s, %cTopk64 : i64\n"
        "    %outRow = llvm.getelementptr %picks[%outOff] : (!llvm.ptr, i64) -> !llvm.ptr, i32\n"
        "    %rowG = llvm.addrspacecast %row : !llvm.ptr to !llvm.ptr<1>\n"
        "    %outRowG = llvm.addrspacecast %outRow : !llvm.ptr to !llvm.ptr<1>\n"
        "    %nT = arith.addi %n, %cTileM1 : i64\n"
        "    %tiles64 = arith.divsi %nT, %cTile64 : i64\n"
        "    %tiles = arith.index_cast %tiles64 : i64 to index\n"
        "    %few = arith.cmpi sle, %n, %cTopk64 : i64\n";
  os << "    scf.if %few {\n";
  // Every visible key, in index order.
  os << "    %nI = arith.index_cast %n : i64 to index\n";
  os << "    scf.for %fi = %tid to %nI step %cThreads {\n";
  os << "    %fi32 = arith.index_cast %fi : index to i32\n"
        "    %fi64 = arith.index_cast %fi : index to i64\n"
        "    %fp = llvm.getelementptr %outRow[%fi64] : (!llvm.ptr, i64) -> !llvm.ptr, i32\n"
        "    llvm.store %fi32, %fp {alignment = 4 : i64} : i32, !llvm.ptr\n";
  os << "    }\n";
  os << "    } else {\n";
  select();
  os << "    }\n";
  os << "    }\n"; // items
  os << "    gpu.return\n  }\n}\n}\n";
}

} // namespace

std::string compressa::topkSelectModuleText(const TopkSelectShape &shape, llvm::StringRef chip,
                                            std::string &error) {
  if (!TopkSelectShape::fits(shape.capacity, shape.topk, shape.ratio)) {
    error = llvm::formatv("the indexer's top-k selection needs a positive capacity "
                          "below 2^30, top-k and ratio, got {0}, {1}, {2}",
                          shape.capacity, shape.topk, shape.ratio)
                .str();
    return "";
  }
  return sm90aModuleText(chip, "the indexer's top-k selection needs", error,
                         [&](llvm::raw_ostream &os) { Writer(shape, os).module(); });
}

std::string compressa::topkSelectPtx(const TopkSelectShape &shape, llvm::StringRef chip,
                                     std::string &error) {
  return wgmmaModulePtx(topkSelectModuleText(shape, chip, error), chip, error);
}
