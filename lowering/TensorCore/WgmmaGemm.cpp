//===- WgmmaGemm.cpp - FP8 block-scaled GEMM on Hopper tensor cores -------===//
// SPDX-License-Identifier: Apache-2.0
//
// The kernel is written as MLIR text specialised for one shape (its loops
// over the 4 wgmma of a K block and the 64 accumulator registers of a
// thread are unrolled here), parsed, and lowered by MLIR's own
// gpu-lower-to-nvvm-pipeline.

#include "lowering/TensorCore/WgmmaGemm.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Dialect/GPU/Pipelines/Passes.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;
using namespace mlir::compressa;

std::string WgmmaGemmShape::name() const {
  if (program)
    return llvm::formatv("compressa_tc_gemm_n{0}_k{1}_s{2}", n, k, stages).str();
  return llvm::formatv("compressa_fp8_gemm_n{0}_k{1}", n, k).str();
}

namespace {

/// Writes the kernel body; SSA names are numbered by `v()`.
class Writer {
public:
  Writer(const WgmmaGemmShape &shape, llvm::raw_ostream &os) : s(shape), os(os) {}

  void module();

private:
  const WgmmaGemmShape &s;
  llvm::raw_ostream &os;
  int next = 0;

  std::string v() { return "%v" + std::to_string(next++); }
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
  /// Thread 0's loads of K block `kb` into buffer `stage` (index values).
  void loads(llvm::StringRef stage, llvm::StringRef kb);
  /// The memref views of buffer `stage`'s tiles of a and w.
  std::pair<std::string, std::string> tiles(llvm::StringRef stage);
};

constexpr llvm::StringLiteral kTile =
    "memref<128x128xf8E4M3FN, #gpu.address_space<workgroup>>";
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

void Writer::loads(llvm::StringRef stage, llvm::StringRef kb) {
  auto [a, w] = tiles(stage);
  std::string kc = op("arith.muli", kb, "%c128");
  os << "    nvgpu.mbarrier.arrive.expect_tx %bar[" << stage
     << "], %cStageBytes : !bar\n";
  // Coordinates innermost first: (column = k, row).
  os << "    nvgpu.tma.async.load %amap[" << kc << ", %m0], %bar[" << stage
     << "] to " << a << " : !map, !bar -> " << kTile << "\n";
  os << "    nvgpu.tma.async.load %wmap[" << kc << ", %n0], %bar[" << stage
     << "] to " << w << " : !map, !bar -> " << kTile << "\n";
}

void Writer::module() {
  int64_t kBlocks = s.kBlocks();
  std::string acc = "!nvgpu.warpgroup.accumulator<fragmented = vector<64x128xf32>>";
  std::string dA = "!nvgpu.warpgroup.descriptor<tensor = memref<64x32xf8E4M3FN, "
                   "#gpu.address_space<workgroup>>>";
  std::string dB = "!nvgpu.warpgroup.descriptor<tensor = memref<32x128xf8E4M3FN, "
                   "#gpu.address_space<workgroup>>>";
  std::string subA = "memref<64x32xf8E4M3FN, strided<[128, 1], offset: ?>, "
                     "#gpu.address_space<workgroup>>";
  std::string regs;
  for (int j = 0; j < 64; ++j)
    regs += j ? ", f32" : "f32";
  std::string accStruct = "!llvm.struct<(struct<(" + regs + ")>)>";

  os << "// The FP8 x FP8 block-scaled GEMM y[M, " << s.n << "] of a[M, " << s.k
     << "] and w[" << s.n << ", " << s.k
     << "] (lowering/TensorCore/WgmmaGemm.h), generated by Compressa.\n";
  os << "!bar = !nvgpu.mbarrier.group<memorySpace = #gpu.address_space<workgroup>, "
        "num_barriers = "
     << s.stages << ">\n";
  os << "!map = !nvgpu.tensormap.descriptor<tensor = memref<128x128xf8E4M3FN, 3>, "
        "swizzle = swizzle_128b, l2promo = l2promo_256b, oob = zero, "
        "interleave = none>\n";
  os << "module attributes {gpu.container_module} {\n";
  // The target (chip, +ptx80, O3) is attached by the lowering pipeline.
  os << "gpu.module @compressa_tc {\n";
  if (s.program) {
    // The program's argument vector (WgmmaGemm.h): the token count behind
    // slot 0, the staging area (slot 2) holding the output's address, the
    // codes and their scales, the maps and the weight's scales.
    os << "  gpu.func @" << s.name()
       << "(%argv: !llvm.ptr) kernel attributes {known_block_size = "
          "array<i32: 384, 1, 1>} {\n";
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
       << "    %cK64 = arith.constant " << s.k << " : i64\n"
       << "    %saOff = arith.muli %m64, %cK64 : i64\n"
          "    %sa = llvm.getelementptr %codes[%saOff] : (!llvm.ptr, i64) -> !llvm.ptr, i8\n";
  } else {
    os << "  gpu.func @" << s.name()
       << "(%ap: !llvm.ptr, %wp: !llvm.ptr, %sa: !llvm.ptr, %sw: !llvm.ptr, "
          "%y: !llvm.ptr, %m32: i32) kernel attributes {known_block_size = "
          "array<i32: 384, 1, 1>} {\n";
  }
  os << "    %amap = builtin.unrealized_conversion_cast %ap : !llvm.ptr to !map\n";
  os << "    %wmap = builtin.unrealized_conversion_cast %wp : !llvm.ptr to !map\n";
  os << "    %c0 = arith.constant 0 : index\n"
        "    %c1 = arith.constant 1 : index\n"
        "    %c2 = arith.constant 2 : index\n"
        "    %c4 = arith.constant 4 : index\n"
        "    %c8 = arith.constant 8 : index\n"
        "    %c16 = arith.constant 16 : index\n"
        "    %c32 = arith.constant 32 : index\n"
        "    %c64 = arith.constant 64 : index\n"
        "    %c128 = arith.constant 128 : index\n"
        "    %c256 = arith.constant 256 : index\n"
        "    %c1024 = arith.constant 1024 : index\n"
        "    %c23i = arith.constant 23 : i32\n"
        "    %cTileBytes = arith.constant 16384 : index\n"
        "    %cStageBytes = arith.constant 32768 : index\n"
        "    %ticks = arith.constant 10000000 : index\n"
        "    %zero = arith.constant 0.0 : f32\n";
  os << "    %cN = arith.constant " << s.n << " : index\n";
  os << "    %cKB = arith.constant " << kBlocks << " : index\n";
  os << "    %cStages = arith.constant " << s.stages << " : index\n";
  os << "    %m = arith.index_cast %m32 : i32 to index\n";
  os << "    %tid = gpu.thread_id x\n";
  if (s.program) {
    // A 1-D grid of N tiles x the most M tiles; the tiles past M idle.
    os << "    %cNT = arith.constant " << s.nTiles() << " : index\n"
       << "    %bid = gpu.block_id x\n"
          "    %bx = arith.remui %bid, %cNT : index\n"
          "    %by = arith.divui %bid, %cNT : index\n";
  } else {
    os << "    %bx = gpu.block_id x\n"
          "    %by = gpu.block_id y\n";
  }
  os << "    %n0 = arith.muli %bx, %c128 : index\n"
        "    %m0 = arith.muli %by, %c128 : index\n"
        "    %active = arith.cmpi ult, %m0, %m : index\n"
        "    scf.if %active {\n"
        "    %wg = arith.divui %tid, %c128 : index\n"
        "    %t = arith.remui %tid, %c128 : index\n"
        "    %warp = arith.divui %t, %c32 : index\n"
        "    %lane = arith.remui %t, %c32 : index\n";
  // The tiles start at a 1024-byte boundary (the 128-byte swizzle repeats
  // every 8 rows of 128 bytes, and the wgmma descriptors assume its phase).
  os << "    %smem = gpu.dynamic_shared_memory : " << kSmem << "\n"
     << "    %base = memref.extract_aligned_pointer_as_index %smem : " << kSmem
     << " -> index\n"
     << "    %mis = arith.remui %base, %c1024 : index\n"
     << "    %pad0 = arith.subi %c1024, %mis : index\n"
     << "    %pad = arith.remui %pad0, %c1024 : index\n";
  // full[s]: buffer s holds its K block (the producer's expect_tx and the
  // copies' bytes complete it); empty[s]: both consumer warpgroups are done
  // with it (each of their 256 threads arrives).
  os << "    %bar = nvgpu.mbarrier.create -> !bar\n";
  os << "    %ebar = nvgpu.mbarrier.create -> !bar\n";
  os << "    %is0 = arith.cmpi eq, %tid, %c0 : index\n";
  os << "    scf.if %is0 {\n";
  for (int64_t st = 0; st < s.stages; ++st) {
    std::string c = ci(st);
    os << "    nvgpu.mbarrier.init %bar[" << c << "], %c1 : !bar\n";
    os << "    nvgpu.mbarrier.init %ebar[" << c << "], %c256 : !bar\n";
  }
  os << "    nvgpu.tma.prefetch.descriptor %amap : !map\n"
        "    nvgpu.tma.prefetch.descriptor %wmap : !map\n"
        "    }\n"
        "    gpu.barrier\n";

  // The producer: the first thread of warpgroup 2 streams every K block,
  // waiting for a buffer's consumers before it refills it.
  os << "    %isProducer = arith.cmpi eq, %tid, %c256 : index\n";
  os << "    scf.if %isProducer {\n";
  os << "    scf.for %pk = %c0 to %cKB step %c1 {\n";
  {
    std::string ps = op("arith.remui", "%pk", "%cStages");
    std::string pround = op("arith.divui", "%pk", "%cStages");
    std::string again = v();
    os << "    " << again << " = arith.cmpi uge, %pk, %cStages : index\n";
    os << "    scf.if " << again << " {\n";
    std::string prev = op("arith.subi", pround, "%c1");
    std::string pp = op("arith.remui", prev, "%c2");
    std::string phase = v();
    os << "    " << phase << " = arith.cmpi ne, " << pp << ", %c0 : index\n";
    os << "    nvgpu.mbarrier.try_wait.parity %ebar[" << ps << "], " << phase
       << ", %ticks : !bar\n";
    os << "    }\n";
    loads(ps, "%pk");
  }
  os << "    }\n    }\n";

  // The consumers: warpgroups 0 and 1, 64 rows of the tile each.
  os << "    %isConsumer = arith.cmpi ult, %tid, %c256 : index\n";
  os << "    scf.if %isConsumer {\n";
  // Rows of this thread's accumulator registers (wgmma's D fragment:
  // register j of lane l in warp w of the warpgroup holds row 16 w + l / 4
  // + 8 ((j / 2) % 2), column 8 (j / 4) + 2 (l % 4) + j % 2).
  std::string wgRow = op("arith.muli", "%wg", "%c64");
  std::string warpRow = op("arith.muli", "%warp", "%c16");
  std::string laneRow = op("arith.divui", "%lane", "%c4");
  std::string row0 = op("arith.addi", op("arith.addi", wgRow, warpRow), laneRow);
  std::string row1 = op("arith.addi", row0, "%c8");
  std::string g0 = op("arith.addi", "%m0", row0), g1 = op("arith.addi", "%m0", row1);
  std::string mLast = op("arith.subi", "%m", "%c1");
  // Scale rows clamped into [0, M): rows past M compute garbage nobody stores.
  std::string sRow0 = op("arith.minui", g0, mLast), sRow1 = op("arith.minui", g1, mLast);
  std::string saRow0 = op("arith.muli", sRow0, "%cKB"), saRow1 = op("arith.muli", sRow1, "%cKB");
  std::string swRow = op("arith.muli", "%bx", "%cKB");

  // Main loop over K blocks; 64 f32 accumulators per thread.
  os << "    %res:64 = scf.for %kb = %c0 to %cKB step %c1 iter_args(";
  for (int j = 0; j < 64; ++j)
    os << (j ? ", " : "") << "%f" << j << " = %zero";
  os << ") -> (" << regs << ") {\n";
  // The block's scales first: their loads overlap the wait and the MMAs.
  std::string kbSw = op("arith.addi", swRow, "%kb");
  std::string scaleW = ue8m0("%sw", kbSw);
  std::string scaleA0 = ue8m0("%sa", op("arith.addi", saRow0, "%kb"));
  std::string scaleA1 = ue8m0("%sa", op("arith.addi", saRow1, "%kb"));
  std::string scale0 = op("arith.mulf", scaleA0, scaleW, "f32");
  std::string scale1 = op("arith.mulf", scaleA1, scaleW, "f32");
  std::string stage = op("arith.remui", "%kb", "%cStages");
  std::string round = op("arith.divui", "%kb", "%cStages");
  std::string parity = op("arith.remui", round, "%c2");
  std::string phase = v();
  os << "    " << phase << " = arith.cmpi ne, " << parity << ", %c0 : index\n";
  os << "    nvgpu.mbarrier.try_wait.parity %bar[" << stage << "], " << phase
     << ", %ticks : !bar\n";
  auto [a, w] = tiles(stage);
  std::string accV = v();
  os << "    " << accV << " = nvgpu.warpgroup.mma.init.accumulator -> " << acc << "\n";
  for (int k = 0; k < 4; ++k) {
    // K-major tiles: the k-th 32 columns of this warpgroup's 64 rows of a,
    // and of the 128 rows of w.
    std::string sa = v(), sb = v(), da = v(), db = v(), next = v();
    std::string subB = "memref<128x32xf8E4M3FN, strided<[128, 1], offset: " +
                       std::to_string(32 * k) + ">, #gpu.address_space<workgroup>>";
    os << "    " << sa << " = memref.subview " << a << "[" << wgRow << ", " << 32 * k
       << "] [64, 32] [1, 1] : " << kTile << " to " << subA << "\n";
    os << "    " << sb << " = memref.subview " << w << "[0, " << 32 * k
       << "] [128, 32] [1, 1] : " << kTile << " to " << subB << "\n";
    os << "    " << da << " = nvgpu.warpgroup.generate.descriptor " << sa
       << ", %amap : " << subA << ", !map -> " << dA << "\n";
    os << "    " << db << " = nvgpu.warpgroup.generate.descriptor " << sb
       << ", %wmap : " << subB << ", !map -> " << dB << "\n";
    os << "    " << next << " = nvgpu.warpgroup.mma " << da << ", " << db << ", "
       << accV << " : " << dA << ", " << dB << ", " << acc << " -> " << acc << "\n";
    accV = next;
  }
  os << "    nvvm.wgmma.wait.group.sync.aligned 0\n";
  // The tensor cores are done reading the buffer.
  std::string token = v();
  os << "    " << token << " = nvgpu.mbarrier.arrive %ebar[" << stage
     << "] : !bar -> !nvgpu.mbarrier.token\n";
  std::string regsV = v();
  os << "    " << regsV << " = builtin.unrealized_conversion_cast " << accV << " : "
     << acc << " to " << accStruct << "\n";
  std::vector<std::string> updated(64);
  for (int j = 0; j < 64; ++j) {
    std::string x = v();
    os << "    " << x << " = llvm.extractvalue " << regsV << "[0, " << j << "] : "
       << accStruct << "\n";
    std::string scaled = op("arith.mulf", x, (j / 2) % 2 ? scale1 : scale0, "f32");
    updated[j] = op("arith.addf", "%f" + std::to_string(j), scaled, "f32");
  }
  os << "    scf.yield ";
  for (int j = 0; j < 64; ++j)
    os << (j ? ", " : "") << updated[j];
  os << " : " << regs << "\n";
  os << "    }\n";

  // Epilogue: each thread stores its register pairs (two adjacent columns)
  // of the rows below M.
  std::string colLane = op("arith.muli", op("arith.remui", "%lane", "%c4"), "%c2");
  std::string colBase = op("arith.addi", "%n0", colLane);
  for (int half = 0; half < 2; ++half) {
    std::string g = half ? g1 : g0;
    std::string valid = v();
    os << "    " << valid << " = arith.cmpi ult, " << g << ", %m : index\n";
    os << "    scf.if " << valid << " {\n";
    std::string rowBase = op("arith.muli", g, "%cN");
    std::string base = op("arith.addi", rowBase, colBase);
    for (int j = 0; j < 64; j += 2) {
      if ((j / 2) % 2 != half)
        continue;
      // Columns past N (a last partial N tile read zero weights): the pair
      // is wholly in or out, N being even.
      bool masked = s.n % 128 != 0;
      if (masked) {
        std::string col = op("arith.addi", colBase, ci(8 * (j / 4)));
        std::string in = v();
        os << "    " << in << " = arith.cmpi ult, " << col << ", %cN : index\n";
        os << "    scf.if " << in << " {\n";
      }
      std::string idx = op("arith.addi", base, ci(8 * (j / 4)));
      std::string i = i64(idx);
      std::string p = v(), pair = v();
      os << "    " << pair << " = vector.from_elements %res#" << j << ", %res#"
         << j + 1 << " : vector<2xf32>\n";
      os << "    " << p << " = llvm.getelementptr %y[" << i
         << "] : (!llvm.ptr, i64) -> !llvm.ptr, f32\n";
      os << "    llvm.store " << pair << ", " << p
         << " {alignment = 8 : i64} : vector<2xf32>, !llvm.ptr\n";
      if (masked)
        os << "    }\n";
    }
    os << "    }\n";
  }
  os << "    }\n";
  os << "    }\n"; // %active
  os << "    gpu.return\n  }\n}\n}\n";
}

} // namespace

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
  if (shape.stages < 1 || shape.stages > 6) {
    error = llvm::formatv("stages must be 1..6 (shared memory), got {0}",
                          shape.stages);
    return "";
  }
  if (!chip.starts_with("sm_90a")) {
    error = "the wgmma GEMM needs sm_90a (wgmma), got '" + chip.str() + "'";
    return "";
  }
  std::string text;
  llvm::raw_string_ostream os(text);
  Writer(shape, os).module();
  return text;
}

std::string compressa::wgmmaModulePtx(MLIRContext &context, llvm::StringRef text,
                                     llvm::StringRef chip, std::string &error) {
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
    for (Attribute a : bin.getObjectsAttr())
      ptx = cast<gpu::ObjectAttr>(a).getObject().getValue().str();
  });
  if (ptx.empty())
    error = "gpu-module-to-binary produced no PTX";
  return ptx;
}

std::string compressa::wgmmaModulePtx(llvm::StringRef text, llvm::StringRef chip,
                                     std::string &error) {
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
  std::string text = wgmmaGemmModuleText(shape, chip, error);
  if (text.empty())
    return "";
  return wgmmaModulePtx(context, text, chip, error);
}

std::string compressa::wgmmaGemmPtx(const WgmmaGemmShape &shape, llvm::StringRef chip,
                                    std::string &error) {
  std::string text = wgmmaGemmModuleText(shape, chip, error);
  if (text.empty())
    return "";
  return wgmmaModulePtx(text, chip, error);
}
