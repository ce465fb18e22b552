//===- WgmmaGemm.cpp - FP8 block-scaled GEMM on Hopper tensor cores -------===//
// SPDX-License-Identifier: Apache-2.0
//
// The kernel is written as MLIR text specialised for one shape (its loops
// over the 4 wgmma of a K block and the 64 accumulator registers of a
// thread are unrolled here), parsed, and lowered by MLIR's own
// gpu-lower-to-nvvm-pipeline.

#include "lowering/TensorCore/WgmmaGemm.h"

#include "lowering/TensorCore/MlirText.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Dialect/GPU/Pipelines/Passes.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdio>
#include <cstdlib>
#include <string>

using namespace mlir;
using namespace mlir::compressa;

std::string WgmmaGemmShape::name() const {
  std::string options = std::string(cluster == 2 ? "_c2" : "") + (persistent ? "_p" : "") +
                        (groups > 1 ? "_g" + std::to_string(groups) : "") +
                        (persistent && groupM > 0 ? "_m" + std::to_string(groupM) : "");
  if (program)
    return llvm::formatv("compressa_tc_gemm_n{0}_k{1}_s{2}{3}", n, k, stages, options).str();
  return llvm::formatv("compressa_fp8_gemm_n{0}_k{1}{2}", n, k, options).str();
}

namespace {

/// The consumers' two accumulators (WgmmaGemm.h), for the kernels without
/// pairs; COMPRESSA_GEMM_OVERLAP=0 at compile time keeps one accumulator
/// (for A/B runs). Pairs keep one unless COMPRESSA_GEMM_PAIR_OVERLAP=1 (an
/// experiment: the twenty-seventh session's C7511 is gone, and with
/// COMPRESSA_GEMM_REGS=24/240 ptxas spills nothing; measured only with the
/// flat loop, docs/perf.md).
bool gemmOverlap(const WgmmaGemmShape &shape) {
  static const bool on = [] {
    const char *e = std::getenv("COMPRESSA_GEMM_OVERLAP");
    return !(e && std::string(e) == "0");
  }();
  static const bool pairs = [] {
    const char *e = std::getenv("COMPRESSA_GEMM_PAIR_OVERLAP");
    return e && std::string(e) == "1";
  }();
  return on && (shape.cluster == 1 || pairs);
}

/// setmaxnreg of the producer's warpgroup and of the consumers'
/// (COMPRESSA_GEMM_REGS=P/C at compile time, for experiments: multiples of
/// 8 in [24, 256] whose total fits the block's 384 threads x 168; anything
/// else is reported and the defaults 40/232 kept).
std::pair<int, int> gemmRegs() {
  static const std::pair<int, int> regs = [] {
    const char *e = std::getenv("COMPRESSA_GEMM_REGS");
    int p = 40, c = 232;
    if (!e || !*e)
      return std::make_pair(p, c);
    int rp = 0, rc = 0;
    char tail = 0;
    auto valid = [](int r) { return r >= 24 && r <= 256 && r % 8 == 0; };
    if (std::sscanf(e, "%d/%d%c", &rp, &rc, &tail) == 2 && valid(rp) && valid(rc) &&
        128 * rp + 256 * rc <= 384 * 168)
      return std::make_pair(rp, rc);
    std::fprintf(stderr,
                 "compressa: warning: COMPRESSA_GEMM_REGS='%s' is not P/C (multiples of 8 "
                 "in [24, 256], 128 P + 256 C <= 64512); keeping 40/232\n",
                 e);
    return std::make_pair(p, c);
  }();
  return regs;
}

/// The consumers' K loop runs over all of a persistent block's tiles at
/// once (two accumulators and an even count of K blocks, so that the
/// accumulators keep their registers across tiles): a tile's epilogue
/// overlaps the next tile's first MMAs. Only with COMPRESSA_GEMM_FLAT=1 at
/// compile time: it ran 4-7 % slower than a loop a tile on an H100
/// (docs/perf.md, twenty-eighth session).
bool flatConsumers(const WgmmaGemmShape &shape) {
  static const bool on = [] {
    const char *e = std::getenv("COMPRESSA_GEMM_FLAT");
    return e && std::string(e) == "1";
  }();
  return on && shape.persistent && gemmOverlap(shape) && shape.kBlocks() % 2 == 0;
}

/// Writes the kernel body; SSA names are numbered by `v()`.
class Writer : MlirTextWriter {
public:
  Writer(const WgmmaGemmShape &shape, llvm::raw_ostream &os)
      : MlirTextWriter(os), s(shape) {}

  void module();

private:
  const WgmmaGemmShape &s;

  /// The byte at `ptr[index]` as the f32 2^(byte - 127) (bytes 1..254).
  std::string ue8m0(llvm::StringRef ptr, llvm::StringRef index) {
    std::string i = i64(index);
    std::string p = v(), b = v(), w = v(), sh = v(), f = v();
    os << "    " << p << " = llvm.getelementptr " << ptr << "[" << i
       << "] : (!llvm.ptr, i64) -> !llvm.ptr, i8\n";
    os << "    " << b << " = llvm.load " << p << " : !llvm.ptr -> i8\n";
    os << "    " << w << " = arith.extui " << b << " : i8 to i32\n";
    os << "    " << sh << " = arith.shli " << w << ", %c23i : i32\n";
    os << "    " << f << " = arith.bitcast " << sh << " : i32 to f32\n";
    return f;
  }
  /// The producer's loads of K block `kb` of the tile at rows `m0`,
  /// columns `n0` into buffer `stage` (index values).
  void loads(llvm::StringRef stage, llvm::StringRef kb, llvm::StringRef m0,
             llvm::StringRef n0);
  /// Waits on mbarrier `bar`[stage] for the phase of round `round` (index
  /// values): buffers are refilled round after round, the phase alternating.
  void waitRound(llvm::StringRef bar, llvm::StringRef stage, llvm::StringRef round) {
    std::string parity = op("arith.remui", round, "%c2");
    std::string phase = v();
    os << "    " << phase << " = arith.cmpi ne, " << parity << ", %c0 : index\n";
    os << "    nvgpu.mbarrier.try_wait.parity " << bar << "[" << stage << "], " << phase
       << ", %ticks : !bar\n";
  }
  /// A cluster's barrier: every thread of both blocks (cluster = 2).
  void clusterSync() {
    os << "    llvm.inline_asm has_side_effects \"barrier.cluster.arrive.release.aligned; "
          "barrier.cluster.wait.acquire.aligned;\", \"\" : () -> ()\n";
  }
  /// The tile of unit `t` of this block's share (persistent): %m0 and %n0
  /// into `m0`, `n0`, and its N tile into `nt` (index values).
  void unitTile(llvm::StringRef t, std::string &m0, std::string &n0, std::string &nt) {
    std::string unit = op("arith.addi", "%cid", op("arith.muli", t, "%gc"));
    std::string mt, nu;
    if (int64_t g = s.groupM; g > 0) {
      // Groups of g M tiles (the last one may be shorter), M fastest in a
      // group: the grid's blocks share fewer rows of w at a time.
      std::string gSize = ci(g * s.nUnits());
      std::string grp = op("arith.divui", unit, gSize);
      std::string idx = op("arith.remui", unit, gSize);
      std::string firstM = op("arith.muli", grp, ci(g));
      std::string rows = op("arith.minui", ci(g), op("arith.subi", "%mTiles", firstM));
      mt = op("arith.addi", firstM, op("arith.remui", idx, rows));
      nu = op("arith.divui", idx, rows);
    } else {
      mt = op("arith.divui", unit, "%cNU");
      nu = op("arith.remui", unit, "%cNU");
    }
    nt = op("arith.addi", op("arith.muli", nu, "%cCluster"), "%rank");
    m0 = op("arith.muli", mt, "%c128");
    n0 = op("arith.muli", nt, "%c128");
  }
  /// The consumers' work on the tile at `m0`, `n0` (N tile `nt`): the K
  /// loop from iteration `it0` (the stages' count goes on across tiles) and
  /// the epilogue.
  /// `flat` (persistent, two accumulators, an even count of K blocks): all
  /// of this block's tiles as one loop over their K blocks (m0, n0, nt and
  /// it0 unused), so that a tile's epilogue runs while the next tile's first
  /// MMAs do.
  void consumeTile(llvm::StringRef m0, llvm::StringRef n0, llvm::StringRef nt,
                   llvm::StringRef it0, bool flat = false);
  /// The memref views of buffer `stage`'s tiles of a and w.
  std::pair<std::string, std::string> tiles(llvm::StringRef stage);
};

constexpr llvm::StringLiteral kTile =
    "memref<128x128xf8E4M3FN, #gpu.address_space<workgroup>>";
constexpr llvm::StringLiteral kHalfTile =
    "memref<64x128xf8E4M3FN, #gpu.address_space<workgroup>>";
constexpr llvm::StringLiteral kSmem = "memref<?xi8, #gpu.address_space<workgroup>>";

std::pair<std::string, std::string> Writer::tiles(llvm::StringRef stage) {
  std::string off = op("arith.muli", stage, "%cStageBytes");
  std::string offA = op("arith.addi", off, "%pad");
  std::string offW = op("arith.addi", offA, "%cTileBytes");
  std::string a = v(), w = v();
  os << "    " << a << " = memref.view %smem[" << offA << "][] : " << kSmem
     << " to " << kTile << "\n";
  os << "    " << w << " = memref.view %smem[" << offW << "][] : " << kSmem
     << " to " << kTile << "\n";
  return {a, w};
}

void Writer::loads(llvm::StringRef stage, llvm::StringRef kb, llvm::StringRef m0,
                   llvm::StringRef n0) {
  auto [a, w] = tiles(stage);
  std::string kc = op("arith.muli", kb, "%c128");
  // w's K coordinate; a's is the group's column range (groups > 1).
  std::string wk = kc;
  if (s.groups > 1)
    kc = op("arith.addi", kc,
            op("arith.muli", op("arith.divui", n0, ci(s.n / s.groups)), ci(s.k)));
  os << "    nvgpu.mbarrier.arrive.expect_tx %bar[" << stage
     << "], %cStageBytes : !bar\n";
  // Coordinates innermost first: (column = k, row).
  if (s.cluster == 2) {
    // This block's half of the shared a tile, into both blocks of the
    // cluster (the same shared-memory offset and mbarrier in each).
    std::string half = v(), row = op("arith.addi", m0, "%rankRow");
    std::string off = op("arith.addi", op("arith.addi", op("arith.muli", stage, "%cStageBytes"),
                                          "%pad"),
                         "%rankOff");
    os << "    " << half << " = memref.view %smem[" << off << "][] : " << kSmem << " to "
       << kHalfTile << "\n";
    os << "    nvgpu.tma.async.load %amap[" << kc << ", " << row << "], %bar[" << stage
       << "] to " << half << " multicast_mask = %mask : !amap, !bar -> " << kHalfTile
       << "\n";
  } else {
    os << "    nvgpu.tma.async.load %amap[" << kc << ", " << m0 << "], %bar[" << stage
       << "] to " << a << " : !map, !bar -> " << kTile << "\n";
  }
  os << "    nvgpu.tma.async.load %wmap[" << wk << ", " << n0 << "], %bar[" << stage
     << "] to " << w << " : !map, !bar -> " << kTile << "\n";
}

void Writer::module() {
  int64_t kBlocks = s.kBlocks();
  bool pair = s.cluster == 2;

  os << "// The FP8 x FP8 block-scaled GEMM y[M, " << s.n << "] of a[M, "
     << (s.groups > 1 ? std::to_string(s.groups) + " x " : "") << s.k << "] and w[" << s.n
     << ", " << s.k << "]" << (s.groups > 1 ? " in " + std::to_string(s.groups) + " groups" : "")
     << " (lowering/TensorCore/WgmmaGemm.h), generated by Compressa.\n";
  os << "!bar = !nvgpu.mbarrier.group<memorySpace = #gpu.address_space<workgroup>, "
        "num_barriers = "
     << s.stages << ">\n";
  os << "!map = !nvgpu.tensormap.descriptor<tensor = memref<128x128xf8E4M3FN, 3>, "
        "swizzle = swizzle_128b, l2promo = l2promo_256b, oob = zero, "
        "interleave = none>\n";
  if (pair)
    os << "!amap = !nvgpu.tensormap.descriptor<tensor = memref<64x128xf8E4M3FN, 3>, "
          "swizzle = swizzle_128b, l2promo = l2promo_256b, oob = zero, "
          "interleave = none>\n";
  os << "module attributes {gpu.container_module} {\n";
  // The target (chip, +ptx80, O3) is attached by the lowering pipeline.
  os << "gpu.module @compressa_tc {\n";
  std::string attrs = "known_block_size = array<i32: 384, 1, 1>";
  if (pair)
    attrs += ", nvvm.cluster_dim = array<i32: 2, 1, 1>";
  if (s.program) {
    // The program's argument vector (WgmmaGemm.h): the token count behind
    // slot 0, the staging area (slot 2) holding the output's address, the
    // codes and their scales, the maps and the weight's scales.
    os << "  gpu.func @" << s.name() << "(%argv: !llvm.ptr) kernel attributes {" << attrs
       << "} {\n";
    auto slot = [&](int i, llvm::StringRef name) {
      os << "    %slot" << i << " = llvm.getelementptr %argv[" << i
         << "] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr\n";
      os << "    " << name << " = llvm.load %slot" << i
         << " : !llvm.ptr -> !llvm.ptr\n";
    };
    slot(0, "%tokp");
    slot(2, "%stage");
    slot(3, "%ap");
    slot(4, "%wp");
    slot(5, "%sw");
    os << "    %m64 = llvm.load %tokp : !llvm.ptr -> i64\n"
          "    %m32 = arith.trunci %m64 : i64 to i32\n"
          "    %y = llvm.load %stage : !llvm.ptr -> !llvm.ptr\n"
          "    %codes = llvm.getelementptr %stage[64] : (!llvm.ptr) -> !llvm.ptr, i8\n"
       << "    %cK64 = arith.constant " << s.k * s.groups << " : i64\n"
       << "    %saOff = arith.muli %m64, %cK64 : i64\n"
          "    %sa = llvm.getelementptr %codes[%saOff] : (!llvm.ptr, i64) -> !llvm.ptr, i8\n";
  } else {
    os << "  gpu.func @" << s.name()
       << "(%ap: !llvm.ptr, %wp: !llvm.ptr, %sa: !llvm.ptr, %sw: !llvm.ptr, "
          "%y: !llvm.ptr, %m32: i32) kernel attributes {"
       << attrs << "} {\n";
  }
  os << "    %amap = builtin.unrealized_conversion_cast %ap : !llvm.ptr to "
     << (pair ? "!amap" : "!map") << "\n";
  os << "    %wmap = builtin.unrealized_conversion_cast %wp : !llvm.ptr to !map\n";
  indexConstants();
  os << "    %c23i = arith.constant 23 : i32\n"
        "    %cTileBytes = arith.constant 16384 : index\n"
        "    %cStageBytes = arith.constant 32768 : index\n"
        "    %ticks = arith.constant 10000000 : index\n"
        "    %zero = arith.constant 0.0 : f32\n";
  os << "    %cN = arith.constant " << s.n << " : index\n";
  os << "    %cKB = arith.constant " << kBlocks << " : index\n";
  os << "    %cStages = arith.constant " << s.stages << " : index\n";
  os << "    %m = arith.index_cast %m32 : i32 to index\n";
  if (s.persistent) {
    // This block's share of the units (tiles, or pairs of N tiles): units
    // cid, cid + gc, ... below ceil(M / 128) x nUnits, N fastest.
    os << "    %cNU = arith.constant " << s.nUnits() << " : index\n"
       << "    %cCluster = arith.constant " << s.cluster << " : index\n"
       << "    %bid = gpu.block_id x\n"
          "    %gridI = gpu.grid_dim x\n"
          "    %cid = arith.divui %bid, %cCluster : index\n"
          "    %gc = arith.divui %gridI, %cCluster : index\n"
          "    %rank = arith.remui %bid, %cCluster : index\n"
          "    %m127 = arith.addi %m, %c128 : index\n"
          "    %m128 = arith.subi %m127, %c1 : index\n"
          "    %mTiles = arith.divui %m128, %c128 : index\n"
          "    %units = arith.muli %mTiles, %cNU : index\n"
          "    %some = arith.cmpi ult, %cid, %units : index\n"
          "    %left = arith.subi %units, %cid : index\n"
          "    %leftG = arith.addi %left, %gc : index\n"
          "    %leftG1 = arith.subi %leftG, %c1 : index\n"
          "    %mine = arith.divui %leftG1, %gc : index\n"
          "    %myUnits = arith.select %some, %mine, %c0 : index\n";
  } else {
    if (s.program) {
      // A 1-D grid of N tiles (pairs padded) x the most M tiles; the tiles
      // past M idle.
      os << "    %cNT = arith.constant " << s.nUnits() * s.cluster << " : index\n"
         << "    %bid = gpu.block_id x\n"
            "    %bx = arith.remui %bid, %cNT : index\n"
            "    %by = arith.divui %bid, %cNT : index\n";
    } else {
      os << "    %bx = gpu.block_id x\n"
            "    %by = gpu.block_id y\n";
    }
    if (pair)
      os << "    %rank = arith.remui %bx, %c2 : index\n";
    os << "    %n0 = arith.muli %bx, %c128 : index\n"
          "    %m0 = arith.muli %by, %c128 : index\n"
          "    %active = arith.cmpi ult, %m0, %m : index\n"
          "    scf.if %active {\n";
  }
  if (pair)
    os << "    %mask = arith.constant 3 : i16\n"
          "    %rankRow = arith.muli %rank, %c64 : index\n"
          "    %cHalfBytes = arith.constant 8192 : index\n"
          "    %rankOff = arith.muli %rank, %cHalfBytes : index\n";
  warpgroupIds();
  alignedSharedMemory(kSmem, false);
  // full[s]: buffer s holds its K block (the producer's expect_tx and the
  // copies' bytes complete it); empty[s]: both consumer warpgroups are done
  // with it (each of their 256 threads arrives; with cluster = 2 lanes 0
  // and 1 of each of the 8 consumer warps of both blocks).
  stageBarriers(s.stages, "%c1", pair ? "%c16" : "%c256", [&] {
    os << "    nvgpu.tma.prefetch.descriptor %amap : " << (pair ? "!amap" : "!map") << "\n"
       << "    nvgpu.tma.prefetch.descriptor %wmap : !map\n";
    if (pair)
      os << "    llvm.inline_asm has_side_effects \"fence.mbarrier_init.release.cluster;\", "
            "\"\" : () -> ()\n";
  });
  // The peer's copies and arrivals target this block's barriers: both
  // blocks have initialised theirs.
  if (pair)
    clusterSync();

  // The producer: the first thread of warpgroup 2 streams every K block,
  // waiting for a buffer's consumers before it refills it.
  // With two accumulators (192 of a consumer thread's registers) the
  // producer's warpgroup gives most of its registers up and the consumers
  // take them (%wg is warp-uniform for setmaxnreg's .aligned).
  if (gemmOverlap(s))
    os << "    %isProducerWG = arith.cmpi eq, %wg, %c2 : index\n"
          "    scf.if %isProducerWG {\n"
          "    nvvm.setmaxregister decrease " << gemmRegs().first << "\n";
  os << "    %isProducer = arith.cmpi eq, %tid, %c256 : index\n";
  os << "    scf.if %isProducer {\n";
  std::string pk = "%pk", pm0 = "%m0", pn0 = "%n0";
  if (s.persistent) {
    os << "    %pTotal = arith.muli %myUnits, %cKB : index\n";
    os << "    scf.for %pit = %c0 to %pTotal step %c1 {\n";
    std::string unit = op("arith.divui", "%pit", "%cKB"), nt;
    pk = op("arith.remui", "%pit", "%cKB");
    unitTile(unit, pm0, pn0, nt);
  } else {
    os << "    scf.for %pk = %c0 to %cKB step %c1 {\n";
  }
  {
    std::string it = s.persistent ? "%pit" : "%pk";
    std::string ps = op("arith.remui", it, "%cStages");
    std::string pround = op("arith.divui", it, "%cStages");
    std::string again = v();
    os << "    " << again << " = arith.cmpi uge, " << it << ", %cStages : index\n";
    os << "    scf.if " << again << " {\n";
    // The consumers' release of the round before.
    waitRound("%ebar", ps, op("arith.subi", pround, "%c1"));
    os << "    }\n";
    loads(ps, pk, pm0, pn0);
  }
  os << "    }\n    }\n";
  if (gemmOverlap(s))
    os << "    }\n";

  // The consumers: warpgroups 0 and 1, 64 rows of the tile each.
  os << "    %isConsumer = arith.cmpi ult, %" << (gemmOverlap(s) ? "wg, %c2" : "tid, %c256")
     << " : index\n";
  os << "    scf.if %isConsumer {\n";
  if (gemmOverlap(s))
    os << "    nvvm.setmaxregister increase " << gemmRegs().second << "\n";
  if (flatConsumers(s)) {
    os << "    %anyUnit = arith.cmpi ugt, %myUnits, %c0 : index\n";
    os << "    scf.if %anyUnit {\n";
    consumeTile("", "", "", "", true);
    os << "    }\n";
  } else if (s.persistent) {
    os << "    scf.for %ct = %c0 to %myUnits step %c1 {\n";
    std::string m0, n0, nt;
    unitTile("%ct", m0, n0, nt);
    consumeTile(m0, n0, nt, op("arith.muli", "%ct", "%cKB"));
    os << "    }\n";
  } else {
    consumeTile("%m0", "%n0", "%bx", "%c0");
  }
  os << "    }\n";
  // Neither block leaves while the other may still arrive on its barriers.
  if (pair)
    clusterSync();
  if (!s.persistent)
    os << "    }\n"; // %active
  os << "    gpu.return\n  }\n}\n}\n";
}

void Writer::consumeTile(llvm::StringRef m0, llvm::StringRef n0, llvm::StringRef nt,
                         llvm::StringRef it0, bool flat) {
  bool pair = s.cluster == 2;
  std::string acc = kAccumulator.str();
  std::string regs;
  for (int j = 0; j < 64; ++j)
    regs += j ? ", f32" : "f32";
  std::string accStruct = "!llvm.struct<(struct<(" + regs + ")>)>";
  // nvvm.wgmma.mma_async's accumulator (the two-accumulator form).
  std::string flatStruct = "!llvm.struct<(" + regs + ")>";
  // Rows of this thread's accumulator registers (wgmma's D fragment:
  // register j of lane l in warp w of the warpgroup holds row 16 w + l / 4
  // + 8 ((j / 2) % 2), column 8 (j / 4) + 2 (l % 4) + j % 2).
  std::string wgRow = op("arith.muli", "%wg", "%c64");
  std::string warpRow = op("arith.muli", "%warp", "%c16");
  std::string laneRow = op("arith.divui", "%lane", "%c4");
  std::string row0 = op("arith.addi", op("arith.addi", wgRow, warpRow), laneRow);
  std::string row1 = op("arith.addi", row0, "%c8");
  std::string mLast = op("arith.subi", "%m", "%c1");
  bool padded = pair && s.nTiles() % 2;
  // This thread's two rows of the tile at `tm0` (N tile `tnt`): y's, and
  // where their scales start in sa and sw.
  struct Rows {
    std::string g0, g1, saRow0, saRow1, swRow;
  };
  auto rowsOf = [&](llvm::StringRef tm0, llvm::StringRef tnt) {
    Rows r;
    r.g0 = op("arith.addi", tm0, row0);
    r.g1 = op("arith.addi", tm0, row1);
    // Scale rows clamped into [0, M): rows past M compute garbage nobody
    // stores.
    std::string sRow0 = op("arith.minui", r.g0, mLast), sRow1 = op("arith.minui", r.g1, mLast);
    if (s.groups > 1) {
      // a's scales: rows of groups x kBlocks, this tile's group's blocks.
      std::string stride = ci(s.groups * s.kBlocks());
      std::string first =
          op("arith.muli", op("arith.divui", tnt, ci(s.groupTiles())), "%cKB");
      r.saRow0 = op("arith.addi", op("arith.muli", sRow0, stride), first);
      r.saRow1 = op("arith.addi", op("arith.muli", sRow1, stride), first);
    } else {
      r.saRow0 = op("arith.muli", sRow0, "%cKB");
      r.saRow1 = op("arith.muli", sRow1, "%cKB");
    }
    // A pair's second tile past N (an odd count of N tiles) reads the last
    // tile's scales; its zero weights make garbage nobody stores.
    std::string ntScale =
        padded ? op("arith.minui", tnt, ci(s.nTiles() - 1)) : tnt.str();
    r.swRow = op("arith.muli", ntScale, "%cKB");
    return r;
  };
  Rows rows;
  if (!flat)
    rows = rowsOf(m0, nt);

  // The scales of K block `kb` for this thread's two rows (the products
  // of a's and w's UE8M0 scales).
  auto scalesOf = [&](const Rows &r, llvm::StringRef kb) -> std::pair<std::string, std::string> {
    std::string scaleW = ue8m0("%sw", op("arith.addi", r.swRow, kb));
    std::string scaleA0 = ue8m0("%sa", op("arith.addi", r.saRow0, kb));
    std::string scaleA1 = ue8m0("%sa", op("arith.addi", r.saRow1, kb));
    return {op("arith.mulf", scaleA0, scaleW, "f32"), op("arith.mulf", scaleA1, scaleW, "f32")};
  };
  auto blockScales = [&](llvm::StringRef kb) { return scalesOf(rows, kb); };
  // The tile of this block's flat K-block count `x` (flat): its m0, n0, nt.
  auto tileOf = [&](llvm::StringRef x, std::string &tm0, std::string &tn0, std::string &tnt) {
    unitTile(op("arith.divui", x, "%cKB"), tm0, tn0, tnt);
  };
  // The flat form's scales of block count `x`.
  auto flatScales = [&](llvm::StringRef x) {
    std::string tm0, tn0, tnt;
    tileOf(x, tm0, tn0, tnt);
    return scalesOf(rowsOf(tm0, tnt), op("arith.remui", x, "%cKB"));
  };
  // The buffers' count of K block `kb` (it goes on across a persistent
  // block's tiles), and its buffer. (The flat form's `kb` is that count.)
  auto iterOf = [&](llvm::StringRef kb) {
    return s.persistent && !flat ? op("arith.addi", it0, kb) : kb.str();
  };
  auto stageOf = [&](llvm::StringRef kb) { return op("arith.remui", iterOf(kb), "%cStages"); };
  // Waits for K block `kb`'s buffer and issues its 4 MMAs into a fresh
  // accumulator: K-major tiles, the k-th 32 columns of this warpgroup's 64
  // rows of a and of the 128 rows of w (a's descriptors take w's map: the
  // same swizzle, whatever a's box). Returns the accumulator.
  auto issue = [&](llvm::StringRef kb, int64_t wait, bool direct) {
    std::string it = iterOf(kb);
    std::string stage = op("arith.remui", it, "%cStages");
    waitRound("%bar", stage, op("arith.divui", it, "%cStages"));
    auto [a, w] = tiles(stage);
    if (direct) {
      // nvvm.wgmma.mma_async on descriptors of the k = 0 columns advanced by
      // 32 bytes (2 in the descriptor's 16-byte units) a step: both tiles
      // are K-major rows of 128 bytes in the 128-byte swizzle. The first
      // step's scale-d is 0 (no zeroed registers), one commit group.
      std::string space = "#gpu.address_space<workgroup>";
      std::string dA = "!nvgpu.warpgroup.descriptor<tensor = memref<64x32xf8E4M3FN, " +
                       space + ">>";
      std::string dB = "!nvgpu.warpgroup.descriptor<tensor = memref<32x128xf8E4M3FN, " +
                       space + ">>";
      std::string subA = "memref<64x32xf8E4M3FN, strided<[128, 1], offset: ?>, " + space + ">";
      std::string subB = "memref<128x32xf8E4M3FN, strided<[128, 1]>, " + space + ">";
      std::string sa = v(), sb = v(), da = v(), db = v(), da64 = v(), db64 = v();
      os << "    " << sa << " = memref.subview " << a << "[" << wgRow
         << ", 0] [64, 32] [1, 1] : " << kTile << " to " << subA << "\n";
      os << "    " << sb << " = memref.subview " << w << "[0, 0] [128, 32] [1, 1] : " << kTile
         << " to " << subB << "\n";
      os << "    " << da << " = nvgpu.warpgroup.generate.descriptor " << sa << ", "
         << (pair ? "%wmap" : "%amap") << " : " << subA << ", !map -> " << dA << "\n";
      os << "    " << db << " = nvgpu.warpgroup.generate.descriptor " << sb << ", %wmap : "
         << subB << ", !map -> " << dB << "\n";
      os << "    " << da64 << " = builtin.unrealized_conversion_cast " << da << " : " << dA
         << " to i64\n";
      os << "    " << db64 << " = builtin.unrealized_conversion_cast " << db << " : " << dB
         << " to i64\n";
      std::string accV = v();
      os << "    " << accV << " = llvm.mlir.poison : " << flatStruct << "\n";
      os << "    nvvm.wgmma.fence.aligned\n";
      for (int k = 0; k < 4; ++k) {
        std::string dak = da64, dbk = db64;
        if (k) {
          std::string off = v();
          os << "    " << off << " = arith.constant " << 2 * k << " : i64\n";
          dak = a64("arith.addi", da64, off);
          dbk = a64("arith.addi", db64, off);
        }
        std::string nx = v();
        os << "    " << nx << " = nvvm.wgmma.mma_async " << dak << ", " << dbk << ", " << accV
           << ", #nvvm.shape<m = 64, n = 128, k = 32>, D [<f32>, #nvvm.wgmma_scale_out<"
           << (k ? "one" : "zero")
           << ">], A [<e4m3>, #nvvm.wgmma_scale_in<one>, <row>], B [<e4m3>, "
              "#nvvm.wgmma_scale_in<one>, <col>] : "
           << flatStruct << " -> " << flatStruct << "\n";
        accV = nx;
      }
      os << "    nvvm.wgmma.commit.group.sync.aligned\n";
      return accV;
    }
    std::string accV = v();
    os << "    " << accV << " = nvgpu.warpgroup.mma.init.accumulator -> " << acc << "\n";
    return wgmmaSteps(a, w, wgRow, kTile, "f8E4M3FN", 128, 32, 4, pair ? "%wmap" : "%amap",
                      "%wmap", accV, wait);
  };
  // The tensor cores are done reading buffer `stage`: release it.
  auto release = [&](llvm::StringRef stage) {
    if (pair) {
      // Lane r of each warp releases it in block r of the cluster (the peer
      // multicasts into this block's buffer too).
      std::string bp = v(), lane32 = v(), first = v();
      os << "    " << bp << " = nvgpu.mbarrier.get %ebar[" << stage << "] : !bar -> i32\n";
      os << "    " << lane32 << " = arith.index_cast %lane : index to i32\n";
      os << "    " << first << " = arith.cmpi ult, %lane, %c2 : index\n";
      os << "    scf.if " << first << " {\n";
      // The arrive's default semantics (release at CTA scope): at cluster
      // scope the release fence (ERRBAR) took a fifth of the warps' stall
      // samples on an H100 and the pairs ran at ~60 % of the plain kernel.
      os << "    llvm.inline_asm has_side_effects \"{ .reg .b32 ra; mapa.shared::cluster.u32 "
            "ra, $0, $1; mbarrier.arrive.shared::cluster.b64 _, [ra]; }\", "
            "\"r,r\" "
         << bp << ", " << lane32 << " : (i32, i32) -> ()\n";
      os << "    }\n";
    } else {
      std::string token = v();
      os << "    " << token << " = nvgpu.mbarrier.arrive %ebar[" << stage
         << "] : !bar -> !nvgpu.mbarrier.token\n";
    }
  };
  // f[j] += accumulator[j] x the scale of its row: one fused multiply-add
  // (the scale is a power of two, UE8M0 times UE8M0, so the product is
  // exact and the FMA rounds as the product and the sum did;
  // COMPRESSA_SCALE_FMA=0 at compile time: the two, for A/B runs).
  // `pin` (the two-accumulator form, which COMPRESSA_SCALE_FMA does not
  // change): the FMAs as inline asm with side effects, so that LLVM moves
  // them neither above the wgmma.wait_group before them nor below the
  // next block's MMAs (ptxas serialises the wgmma, its C7514, where an
  // accumulator is read while a later wgmma is in flight).
  auto promote = [&](llvm::StringRef accV, const std::vector<std::string> &f,
                     const std::pair<std::string, std::string> &scales, bool pin) {
    static const bool off = [] {
      const char *e = std::getenv("COMPRESSA_SCALE_FMA");
      return e && std::string(e) == "0";
    }();
    // The two-accumulator form's (`pin`) is nvvm.wgmma.mma_async's flat
    // struct already.
    std::string regsV = accV.str();
    if (!pin) {
      regsV = v();
      os << "    " << regsV << " = builtin.unrealized_conversion_cast " << accV << " : " << acc
         << " to " << accStruct << "\n";
    }
    std::vector<std::string> updated(64);
    for (int j = 0; j < 64; ++j) {
      std::string x = v();
      os << "    " << x << " = llvm.extractvalue " << regsV << (pin ? "[" : "[0, ") << j
         << "] : " << (pin ? flatStruct : accStruct) << "\n";
      const std::string &scale = (j / 2) % 2 ? scales.second : scales.first;
      if (pin) {
        updated[j] = v();
        os << "    " << updated[j]
           << " = llvm.inline_asm has_side_effects \"fma.rn.f32 $0, $1, $2, $3;\", "
              "\"=f,f,f,f\" "
           << x << ", " << scale << ", " << f[j] << " : (f32, f32, f32) -> f32\n";
        continue;
      }
      if (off) {
        updated[j] = op("arith.addf", f[j], op("arith.mulf", x, scale, "f32"), "f32");
        continue;
      }
      updated[j] = v();
      os << "    " << updated[j] << " = llvm.intr.fma(" << x << ", " << scale << ", " << f[j]
         << ") : (f32, f32, f32) -> f32\n";
    }
    return updated;
  };
  // wgmma.wait_group after each of the 4 steps (COMPRESSA_GEMM_MMA_WAIT=N at
  // compile time, for A/B runs): 3 issues them back to back (NVGPU's
  // default, 1, issued a step only when the one before the last was done;
  // 7-11 % slower on an H100, docs/perf.md).
  static const int64_t mmaWait = [] {
    const char *e = std::getenv("COMPRESSA_GEMM_MMA_WAIT");
    return e && *e ? std::atoll(e) : int64_t(3);
  }();
  // Epilogue: each thread stores its register pairs (two adjacent columns)
  // of the rows below M of the tile at `n0` (rows `r`).
  auto epilogue = [&](const Rows &r, llvm::StringRef n0, const std::vector<std::string> &out) {
  std::string colLane = op("arith.muli", op("arith.remui", "%lane", "%c4"), "%c2");
  std::string colBase = op("arith.addi", n0, colLane);
  for (int half = 0; half < 2; ++half) {
    std::string g = half ? r.g1 : r.g0;
    std::string valid = v();
    os << "    " << valid << " = arith.cmpi ult, " << g << ", %m : index\n";
    os << "    scf.if " << valid << " {\n";
    std::string rowBase = op("arith.muli", g, "%cN");
    std::string base = op("arith.addi", rowBase, colBase);
    for (int j = 0; j < 64; j += 2) {
      if ((j / 2) % 2 != half)
        continue;
      // Columns past N (a last partial N tile read zero weights, or a
      // pair's tile past N): the pair is wholly in or out, N being even.
      bool masked = s.n % 128 != 0 || padded;
      if (masked) {
        std::string col = op("arith.addi", colBase, ci(8 * (j / 4)));
        std::string in = v();
        os << "    " << in << " = arith.cmpi ult, " << col << ", %cN : index\n";
        os << "    scf.if " << in << " {\n";
      }
      std::string idx = op("arith.addi", base, ci(8 * (j / 4)));
      std::string i = i64(idx);
      std::string p = v(), pairV = v();
      os << "    " << pairV << " = vector.from_elements " << out[j] << ", " << out[j + 1]
         << " : vector<2xf32>\n";
      os << "    " << p << " = llvm.getelementptr %y[" << i
         << "] : (!llvm.ptr, i64) -> !llvm.ptr, f32\n";
      os << "    llvm.store " << pairV << ", " << p
         << " {alignment = 8 : i64} : vector<2xf32>, !llvm.ptr\n";
      if (masked)
        os << "    }\n";
    }
    os << "    }\n";
  }
  };
  bool overlap = gemmOverlap(s);
  std::vector<std::string> fIn(64);
  for (int j = 0; j < 64; ++j)
    fIn[j] = "%f" + std::to_string(j);
  std::string res = "%res";
  // The tile's 64 sums of this thread, for the epilogue.
  std::vector<std::string> out(64);
  for (int j = 0; j < 64; ++j)
    out[j] = res + "#" + std::to_string(j);
  auto loopHead = [&](llvm::StringRef upper, llvm::StringRef more, llvm::StringRef moreTypes,
                      llvm::StringRef stepV = "%c1") {
    os << "    " << res << ":" << (more.empty() ? 64 : 67) << " = scf.for %kb = %c0 to "
       << upper << " step " << stepV << " iter_args(";
    for (int j = 0; j < 64; ++j)
      os << (j ? ", " : "") << "%f" << j << " = %zero";
    os << more << ") -> (" << regs << moreTypes << ") {\n";
  };
  auto yield = [&](const std::vector<std::string> &f, llvm::StringRef more,
                   llvm::StringRef moreTypes) {
    os << "    scf.yield ";
    for (int j = 0; j < 64; ++j)
      os << (j ? ", " : "") << f[j];
    os << more << " : " << regs << moreTypes << "\n    }\n";
  };
  // The two-accumulator forms' step: block `kb`'s accumulator `accKb` in
  // flight; wait for it, release its buffer, issue block `next` into
  // `accNext`, and promote `kb` into sums `f`.
  auto advance = [&](llvm::StringRef kb, llvm::StringRef accKb,
                     const std::pair<std::string, std::string> &scales,
                     const std::vector<std::string> &f, llvm::StringRef next,
                     std::string &accNext) {
    os << "    nvvm.wgmma.wait.group.sync.aligned 0\n";
    release(stageOf(kb));
    accNext = issue(next, 0, true);
    return promote(accKb, f, scales, true);
  };
  if (!overlap) {
    // Per K block: its scales (their loads overlap the wait and the MMAs),
    // the MMAs, a wait for all of them, the buffer released, the promotion.
    loopHead("%cKB", "", "");
    std::pair<std::string, std::string> scales = blockScales("%kb");
    std::string stage = stageOf("%kb");
    std::string accV = issue("%kb", mmaWait, false);
    os << "    nvvm.wgmma.wait.group.sync.aligned 0\n";
    release(stage);
    yield(promote(accV, fIn, scales, false), "", "");
  } else if (flat) {
    // Two accumulators over all of this block's tiles: block counts x = 0
    // .. T - 1 (T = its units x the K blocks, even), the tile x / KB, its K
    // block x % KB. Promoting a tile's last block stores the tile and
    // zeroes the sums, while the next tile's first MMAs run.
    std::string accT = ", " + flatStruct;
    std::string total = op("arith.muli", "%myUnits", "%cKB");
    std::string lastKb = ci(s.kBlocks() - 1);
    auto step = [&](llvm::StringRef x, llvm::StringRef accX,
                    const std::pair<std::string, std::string> &scales,
                    const std::vector<std::string> &f, llvm::StringRef next,
                    std::string &accNext) {
      std::vector<std::string> g = advance(x, accX, scales, f, next, accNext);
      std::string kbX = op("arith.remui", x, "%cKB");
      std::string isLast = v(), r = v();
      os << "    " << isLast << " = arith.cmpi eq, " << kbX << ", " << lastKb << " : index\n";
      os << "    " << r << ":64 = scf.if " << isLast << " -> (" << regs << ") {\n";
      std::string tm0, tn0, tnt;
      tileOf(x, tm0, tn0, tnt);
      epilogue(rowsOf(tm0, tnt), tn0, g);
      os << "    scf.yield ";
      for (int j = 0; j < 64; ++j)
        os << (j ? ", " : "") << "%zero";
      os << " : " << regs << "\n    } else {\n    scf.yield ";
      for (int j = 0; j < 64; ++j)
        os << (j ? ", " : "") << g[j];
      os << " : " << regs << "\n    }\n";
      for (int j = 0; j < 64; ++j)
        g[j] = r + "#" + std::to_string(j);
      return g;
    };
    std::pair<std::string, std::string> first = flatScales("%c0");
    std::string acc0 = issue("%c0", 0, true);
    // Turns of two blocks while a block after them is left for the tail.
    std::string upper = op("arith.subi", total, "%c2");
    loopHead(upper,
             ", %accIn = " + acc0 + ", %s0 = " + first.first + ", %s1 = " + first.second,
             accT + ", f32, f32", "%c2");
    std::string x1 = op("arith.addi", "%kb", "%c1"), x2 = op("arith.addi", "%kb", "%c2");
    std::pair<std::string, std::string> scalesB = flatScales(x1);
    std::pair<std::string, std::string> scalesC = flatScales(x2);
    std::string accB, accC;
    std::vector<std::string> g = step("%kb", "%accIn", {"%s0", "%s1"}, fIn, x1, accB);
    g = step(x1, accB, scalesB, g, x2, accC);
    yield(g, ", " + accC + ", " + scalesC.first + ", " + scalesC.second, accT + ", f32, f32");
    std::vector<std::string> f(64);
    for (int j = 0; j < 64; ++j)
      f[j] = res + "#" + std::to_string(j);
    // Block T - 2 is in flight: issue T - 1, promote T - 2, then T - 1.
    std::string xLast = op("arith.subi", total, "%c1");
    std::pair<std::string, std::string> scalesLast = flatScales(xLast);
    std::string accLast;
    f = step(upper, res + "#64", {res + "#65", res + "#66"}, f, xLast, accLast);
    os << "    nvvm.wgmma.wait.group.sync.aligned 0\n";
    release(stageOf(xLast));
    out = promote(accLast, f, scalesLast, true);
    std::string tm0, tn0, tnt;
    tileOf(xLast, tm0, tn0, tnt);
    epilogue(rowsOf(tm0, tnt), tn0, out);
    return;
  } else {
    // Two accumulators: K block kb + 1's MMAs are issued before block kb's
    // promotion, so the tensor cores always have this warpgroup's next
    // MMAs while it promotes. The loop takes two K blocks a turn, A and B,
    // so that each accumulator keeps its registers (a loop-carried copy of
    // an accumulator still in flight would make ptxas serialize the
    // wgmma: its C7514). Scales are loaded a block ahead.
    int64_t kBlocks = s.kBlocks(), turns = (kBlocks - 1) / 2;
    std::string accT = ", " + flatStruct;
    std::pair<std::string, std::string> first = blockScales("%c0");
    std::string acc0 = issue("%c0", 0, true);
    auto &step = advance;
    std::vector<std::string> f(64, "%zero");
    std::string accA = acc0;
    std::pair<std::string, std::string> scalesA = first;
    std::string kbA = "%c0";
    if (turns > 0) {
      loopHead(ci(2 * turns),
               ", %accIn = " + acc0 + ", %s0 = " + first.first + ", %s1 = " + first.second,
               accT + ", f32, f32", "%c2");
      std::string kb1 = op("arith.addi", "%kb", "%c1"), kb2 = op("arith.addi", "%kb", "%c2");
      std::pair<std::string, std::string> scalesB = blockScales(kb1);
      std::pair<std::string, std::string> scalesC = blockScales(kb2);
      std::string accB, accC;
      std::vector<std::string> g =
          step("%kb", "%accIn", {"%s0", "%s1"}, fIn, kb1, accB);
      g = step(kb1, accB, scalesB, g, kb2, accC);
      yield(g, ", " + accC + ", " + scalesC.first + ", " + scalesC.second,
            accT + ", f32, f32");
      for (int j = 0; j < 64; ++j)
        f[j] = res + "#" + std::to_string(j);
      accA = res + "#64";
      scalesA = {res + "#65", res + "#66"};
      kbA = ci(2 * turns);
    }
    if (kBlocks - 1 > 2 * turns) {
      // One block left after the loop's turns.
      std::string kbB = ci(kBlocks - 1), accB;
      std::pair<std::string, std::string> scalesB = blockScales(kbB);
      f = step(kbA, accA, scalesA, f, kbB, accB);
      accA = accB;
      scalesA = scalesB;
      kbA = kbB;
    }
    os << "    nvvm.wgmma.wait.group.sync.aligned 0\n";
    release(stageOf(kbA));
    out = promote(accA, f, scalesA, true);
  }

  epilogue(rows, n0, out);
}

} // namespace

void compressa::tuneWgmmaGemm(WgmmaGemmShape &shape) {
  if (shape.persistent && shape.groups == 1 && shape.n >= 16384 && shape.k <= 2048)
    shape.groupM = 8;
}

std::string compressa::wgmmaGemmModuleText(const WgmmaGemmShape &shape,
                                           llvm::StringRef chip, std::string &error) {
  // Partial tiles of N and K read zeros (the maps' out-of-bounds fill);
  // the bulk copies need rows of whole 16-byte units.
  int64_t unit = shape.program ? 16 : 128;
  if (shape.n <= 0 || shape.k <= 0 || shape.n % unit || shape.k % unit) {
    error = llvm::formatv("the FP8 GEMM needs N and K positive multiples of "
                          "{2}, got N = {0}, K = {1}",
                          shape.n, shape.k, unit);
    return "";
  }
  if (shape.groups < 1 ||
      (shape.groups > 1 &&
       (shape.k % 128 || shape.n % (128 * shape.groups) ||
        shape.groupTiles() % shape.cluster))) {
    error = llvm::formatv("groups of the FP8 GEMM need K a multiple of 128 and "
                          "N a multiple of 128 x groups (x cluster), got N = {0}, "
                          "K = {1}, groups = {2}",
                          shape.n, shape.k, shape.groups);
    return "";
  }
  if (shape.cluster != 1 && shape.cluster != 2) {
    error = llvm::formatv("cluster must be 1 or 2, got {0}", shape.cluster);
    return "";
  }
  if (shape.groupM < 0 || shape.groupM > 64) {
    error = llvm::formatv("the tile order's group of M tiles must be 0..64, got {0}",
                          shape.groupM);
    return "";
  }
  if (shape.stages < 1 || shape.stages > 7) {
    error = llvm::formatv("stages must be 1..7 (7 x 32 KiB of tiles fill the shared memory), got {0}",
                          shape.stages);
    return "";
  }
  return sm90aModuleText(chip, "the wgmma GEMM needs", error,
                         [&](llvm::raw_ostream &os) { Writer(shape, os).module(); });
}

std::string compressa::wgmmaModulePtx(MLIRContext &context, llvm::StringRef text,
                                     llvm::StringRef chip, std::string &error) {
  if (text.empty())
    return ""; // The generator failed (its message is in `error`).
  std::string diagnostics;
  llvm::raw_string_ostream diag(diagnostics);
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler handler(sourceMgr, &context, diag);
  OwningOpRef<ModuleOp> module =
      parseSourceString<ModuleOp>(text, ParserConfig(&context));
  if (!module) {
    error = "the generated kernel does not parse: " + diagnostics;
    return "";
  }
  PassManager pm(&context);
  gpu::GPUToNVVMPipelineOptions options;
  options.cubinChip = chip.str();
  options.cubinFeatures = "+ptx80";
  options.cubinFormat = "isa";
  options.optLevel = 3;
  gpu::buildLowerToNVVMPassPipeline(pm, options);
  if (failed(pm.run(*module))) {
    error = "lowering the kernel to PTX failed: " + diagnostics;
    return "";
  }
  std::string ptx;
  module->walk([&](gpu::BinaryOp bin) {
    bool linked = false;
    for (Attribute a : bin.getObjectsAttr()) {
      auto object = cast<gpu::ObjectAttr>(a);
      auto target = dyn_cast<NVVM::NVVMTargetAttr>(object.getTarget());
      bool links = target && target.getLink() && !target.getLink().empty();
      if (linked && !links)
        continue; // The pipeline's target, without the module's libraries.
      ptx = object.getObject().getValue().str();
      linked |= links;
    }
  });
  if (ptx.empty())
    error = "gpu-module-to-binary produced no PTX";
  return ptx;
}

std::string compressa::wgmmaModulePtx(llvm::StringRef text, llvm::StringRef chip,
                                     std::string &error) {
  if (text.empty())
    return "";
  DialectRegistry registry;
  registerAllDialects(registry);
  registerAllExtensions(registry);
  registerAllGPUToLLVMIRTranslations(registry);
  MLIRContext context(registry, MLIRContext::Threading::DISABLED);
  context.loadAllAvailableDialects();
  return wgmmaModulePtx(context, text, chip, error);
}

std::string compressa::wgmmaGemmPtx(MLIRContext &context, const WgmmaGemmShape &shape,
                                    llvm::StringRef chip, std::string &error) {
  return wgmmaModulePtx(context, wgmmaGemmModuleText(shape, chip, error), chip, error);
}

std::string compressa::wgmmaGemmPtx(const WgmmaGemmShape &shape, llvm::StringRef chip,
                                    std::string &error) {
  return wgmmaModulePtx(wgmmaGemmModuleText(shape, chip, error), chip, error);
}
