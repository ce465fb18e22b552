//===- TensorCore_test.cpp - --numerics=fast kernels vs the spec ----------===//
// SPDX-License-Identifier: Apache-2.0
//
// The act_quant and FP8 linear-layer kernels of --numerics=fast, built and
// compiled for the CPU target exactly as the artifact's kernels are, against
// ActQuantReference.h (float64, from the spec): act_quant's bytes must be
// identical, the GEMM within f32 accumulation of the float64 result. The
// tensor-core GEMM's PTX must hold the wgmma and TMA instructions.

#include "lowering/TensorCore/ActQuantKernel.h"
#include "lowering/TensorCore/ActQuantReference.h"
#include "lowering/TensorCore/TopkSelect.h"
#include "lowering/TensorCore/WgmmaAttention.h"
#include "lowering/TensorCore/WgmmaExperts.h"
#include "lowering/TensorCore/WgmmaGemm.h"
#include "lowering/Target/CPU/CpuCodegen.h"
#include "lowering/Target/TargetInfo.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>

#include <dlfcn.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <tuple>
#include <vector>

using namespace mlir;
namespace ref = ::compressa::reference;

namespace {

/// A CPU kernel from a module of buildActQuantKernel / buildFastLinearKernel.
class CpuKernel {
public:
  ~CpuKernel() {
    if (handle)
      dlclose(handle);
  }
  bool load(ModuleOp top, const std::string &symbol, std::string &error) {
    auto kernels = dyn_cast_or_null<ModuleOp>(
        SymbolTable::lookupSymbolIn(top, mlir::compressa::TargetInfo::kContainer));
    if (!kernels) {
      error = "no kernel container";
      return false;
    }
    mlir::compressa::cpu::CpuCodegenOptions options;
    std::string triple;
    FailureOr<std::string> so = mlir::compressa::cpu::compileToSharedObject(kernels, options, triple);
    if (failed(so)) {
      error = "compileToSharedObject failed";
      return false;
    }
    llvm::SmallString<128> path;
    int fd = -1;
    if (llvm::sys::fs::createTemporaryFile("tensor_core_test", "so", fd, path)) {
      error = "no temporary file";
      return false;
    }
    {
      llvm::raw_fd_ostream os(fd, /*shouldClose=*/true);
      os.write(so->data(), so->size());
    }
    handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    llvm::sys::fs::remove(path);
    if (!handle) {
      error = dlerror();
      return false;
    }
    entry = reinterpret_cast<void (*)(void **)>(dlsym(handle, symbol.c_str()));
    if (!entry)
      error = "no symbol " + symbol;
    return entry != nullptr;
  }
  void run(std::vector<void *> argv) { entry(argv.data()); }

private:
  void *handle = nullptr;
  void (*entry)(void **) = nullptr;
};

std::unique_ptr<MLIRContext> makeContext() {
  DialectRegistry registry;
  registerAllDialects(registry);
  registerAllExtensions(registry);
  registerAllToLLVMIRTranslations(registry);
  mlir::compressa::cpu::registerCpuCodegenDialects(registry);
  return std::make_unique<MLIRContext>(registry);
}

/// Rows of k floats that exercise act_quant: per 128-block magnitudes over
/// 2^-30 .. 2^20, blocks of zeros (the 1e-4 floor), blocks of exact ties
/// between neighbouring e4m3 values, values in e4m3's subnormal range and
/// below it, negative zeros, amax exactly 448 2^e and just above it.
std::vector<float> testRows(int64_t rows, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<float> x(size_t(rows) * k);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b * 128 < k; ++b) {
      int mode = int(rng() % 8);
      int e = int(rng() % 51) - 30;
      for (int64_t j = b * 128; j < std::min<int64_t>(k, b * 128 + 128); ++j) {
        double v = u(rng) * std::ldexp(1.0, e);
        switch (mode) {
        case 0: v = 0; break;
        case 1: { // a tie between codes c and c + 1 at scale 2^e
          int c = int(rng() % 0x7D);
          v = (ref::e4m3Value(c) + ref::e4m3Value(c + 1)) / 2 * std::ldexp(1.0, e);
          if (rng() & 1)
            v = -v;
          break;
        }
        case 2: v = u(rng) * std::ldexp(1.0, e - 14); break; // subnormal range
        case 3: v = (j % 3 == 0) ? -0.0 : v; break;
        default: break;
        }
        x[size_t(r) * k + j] = float(v);
      }
      // The block's scale: amax = 448 2^e exactly, or one ulp above it.
      if (mode == 1 || mode == 4) {
        float top = float(448.0 * std::ldexp(1.0, e));
        if (mode == 4)
          top = std::nextafter(top, 1e30f);
        x[size_t(r) * k + b * 128] = top;
      }
    }
  return x;
}

class TensorCoreTest : public ::testing::TestWithParam<int64_t> {};

TEST_P(TensorCoreTest, ActQuantBytesEqualTheReference) {
  const int64_t k = GetParam(), rows = 41, blocks = (k + 127) / 128;
  auto ctx = makeContext();
  std::string error;
  OwningOpRef<ModuleOp> module = mlir::compressa::buildActQuantKernel(*ctx, k, "cpu", error);
  ASSERT_TRUE(module) << error;
  CpuKernel kernel;
  ASSERT_TRUE(kernel.load(*module, "compressa_act_quant_k" + std::to_string(k), error))
      << error;
  for (uint32_t seed : {1u, 2u, 3u}) {
    std::vector<float> x = testRows(rows, k, seed);
    std::vector<uint8_t> q(size_t(rows) * k, 0xEE), s(size_t(rows) * blocks, 0xEE);
    kernel.run({reinterpret_cast<void *>(intptr_t(rows)), x.data(), q.data(), s.data()});
    std::vector<uint8_t> rq(q.size()), rs(s.size());
    for (int64_t r = 0; r < rows; ++r)
      ref::actQuantRow(&x[size_t(r) * k], k, &rq[size_t(r) * k], &rs[size_t(r) * blocks]);
    int64_t differing = 0;
    for (size_t i = 0; i < q.size(); ++i)
      if (q[i] != rq[i] && differing++ < 5)
        ADD_FAILURE() << "code " << i << " (row " << i / k << "): kernel 0x" << std::hex
                      << int(q[i]) << ", reference 0x" << int(rq[i]) << std::dec
                      << " for x = " << x[i] << " (scale byte " << int(rs[i / k * blocks + (i % k) / 128]) << ")";
    for (size_t i = 0; i < s.size(); ++i)
      if (s[i] != rs[i] && differing++ < 10)
        ADD_FAILURE() << "scale " << i << ": kernel " << int(s[i]) << ", reference "
                      << int(rs[i]);
    EXPECT_EQ(differing, 0) << "seed " << seed;
  }
}

// emitActQuantKeeping (the decode rms_norm that quantises for the FP8
// experts): y = x times a per-row factor stored once, and act_quant of y as
// stored, the reference's bytes; also in place (y at x).
TEST(TensorCoreKeeping, ActQuantKeepingStoresAndQuantisesTheValues) {
  for (int64_t k : {128, 512, 4096}) {
    const int64_t rows = 7, blocks = k / 128;
    auto ctx = makeContext();
    std::string error;
    OwningOpRef<ModuleOp> module =
        mlir::compressa::buildActQuantKeepingKernel(*ctx, k, "cpu", error);
    ASSERT_TRUE(module) << error;
    CpuKernel kernel;
    ASSERT_TRUE(kernel.load(*module, "compressa_act_quant_keeping_k" + std::to_string(k), error))
        << error;
    for (bool inPlace : {false, true}) {
      std::vector<float> x = testRows(rows, k, uint32_t(k) + inPlace), x0 = x;
      std::vector<float> f = {1.0f, 0.75f, -3.0f, 1e-3f, 2.5f, 1.0f / 3.0f, 65536.0f};
      std::vector<float> yOwn(size_t(rows) * k, std::nanf(""));
      float *y = inPlace ? x.data() : yOwn.data();
      std::vector<uint8_t> q(size_t(rows) * k, 0xEE), s(size_t(rows) * blocks, 0xEE);
      kernel.run({reinterpret_cast<void *>(intptr_t(rows)), x.data(), f.data(), y, q.data(),
                  s.data()});
      std::vector<uint8_t> rq(q.size()), rs(s.size());
      int64_t differing = 0;
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < k; ++c) {
          float want = x0[size_t(r) * k + c] * f[r];
          if (std::memcmp(&want, &y[size_t(r) * k + c], 4) != 0 && differing++ < 5)
            ADD_FAILURE() << "y[" << r << ", " << c << "] = " << y[size_t(r) * k + c]
                          << ", want " << want;
        }
        ref::actQuantRow(&y[size_t(r) * k], k, &rq[size_t(r) * k], &rs[size_t(r) * blocks]);
      }
      for (size_t i = 0; i < q.size(); ++i)
        if (q[i] != rq[i] && differing++ < 10)
          ADD_FAILURE() << "code " << i << ": kernel 0x" << std::hex << int(q[i])
                        << ", reference 0x" << int(rq[i]) << std::dec;
      for (size_t i = 0; i < s.size(); ++i)
        if (s[i] != rs[i] && differing++ < 15)
          ADD_FAILURE() << "scale " << i << ": kernel " << int(s[i]) << ", reference "
                        << int(rs[i]);
      EXPECT_EQ(differing, 0) << "K = " << k << (inPlace ? ", in place" : "");
    }
  }
}

TEST_P(TensorCoreTest, FastLinearWithinF32AccumulationOfFloat64) {
  const int64_t k = GetParam(), n = 256 + 64, rows = 23, blocks = (k + 127) / 128;
  auto ctx = makeContext();
  std::string error;
  OwningOpRef<ModuleOp> module = mlir::compressa::buildFastLinearKernel(*ctx, n, k, "cpu", error);
  ASSERT_TRUE(module) << error;
  CpuKernel kernel;
  ASSERT_TRUE(kernel.load(*module,
                          "compressa_fast_linear_n" + std::to_string(n) + "_k" +
                              std::to_string(k),
                          error))
      << error;
  std::mt19937 rng(7);
  std::vector<float> x = testRows(rows, k, 11);
  std::vector<uint8_t> w(size_t(n) * k), sw(size_t((n + 127) / 128) * blocks);
  for (auto &c : w) {
    c = uint8_t(rng());
    if ((c & 0x7F) == 0x7F)
      c ^= 1; // no NaN codes
  }
  for (auto &b : sw)
    b = uint8_t(118 + rng() % 18);
  std::vector<uint8_t> q(size_t(rows) * k), s(size_t(rows) * blocks);
  std::vector<float> y(size_t(rows) * n, std::nanf(""));
  kernel.run({reinterpret_cast<void *>(intptr_t(rows)), x.data(), w.data(), sw.data(),
              q.data(), s.data(), y.data()});
  std::vector<uint8_t> rq(k), rs(blocks);
  double worst = 0;
  for (int64_t r = 0; r < rows; ++r) {
    ref::actQuantRow(&x[size_t(r) * k], k, rq.data(), rs.data());
    for (int64_t c = 0; c < n; ++c) {
      double mag = 0;
      double want = ref::fp8GemmOutput(rq.data(), rs.data(), &w[size_t(c) * k],
                                       &sw[size_t(c / 128) * blocks], k, &mag);
      double got = y[size_t(r) * n + c];
      ASSERT_TRUE(std::isfinite(got)) << "y[" << r << ", " << c << "] not written";
      // f32 accumulation: at most (128 + blocks) roundings of 2^-24 of the
      // magnitudes summed.
      double bound = (128 + blocks) * std::ldexp(1.0, -24) * mag + 1e-30;
      double err = std::fabs(got - want);
      ASSERT_LE(err, bound) << "y[" << r << ", " << c << "] = " << got << ", want " << want;
      worst = std::max(worst, err / bound);
    }
  }
  RecordProperty("worst_error_over_bound", std::to_string(worst));
}

INSTANTIATE_TEST_SUITE_P(Widths, TensorCoreTest, ::testing::Values(128, 320, 1024));

/// wo_a's groups (Emitter::groupedWoA, the CPU twin of WgmmaGemm.h's
/// groups): act_quant of the whole row, then output column c takes its
/// group's K columns of the row, codes and scales.
TEST(FastLinear, GroupsTakeTheirOwnColumns) {
  const int64_t groups = 3, k = 256, n = groups * 128, rows = 9, blocks = k / 128;
  auto ctx = makeContext();
  std::string error;
  OwningOpRef<ModuleOp> module =
      mlir::compressa::buildFastLinearKernel(*ctx, n, k, "cpu", error, groups);
  ASSERT_TRUE(module) << error;
  CpuKernel kernel;
  ASSERT_TRUE(kernel.load(*module, "compressa_fast_linear_n384_k256_g3", error)) << error;
  std::mt19937 rng(5);
  std::vector<float> x = testRows(rows, groups * k, 13);
  std::vector<uint8_t> w(size_t(n) * k), sw(size_t(n / 128) * blocks);
  for (auto &c : w) {
    c = uint8_t(rng());
    if ((c & 0x7F) == 0x7F)
      c ^= 1;
  }
  for (auto &b : sw)
    b = uint8_t(118 + rng() % 18);
  std::vector<uint8_t> q(size_t(rows) * groups * k), s(size_t(rows) * groups * blocks);
  std::vector<float> y(size_t(rows) * n, std::nanf(""));
  kernel.run({reinterpret_cast<void *>(intptr_t(rows)), x.data(), w.data(), sw.data(),
              q.data(), s.data(), y.data()});
  std::vector<uint8_t> rq(groups * k), rs(groups * blocks);
  for (int64_t r = 0; r < rows; ++r) {
    ref::actQuantRow(&x[size_t(r) * groups * k], groups * k, rq.data(), rs.data());
    for (int64_t c = 0; c < n; ++c) {
      int64_t g = c / (n / groups);
      double mag = 0;
      double want = ref::fp8GemmOutput(&rq[g * k], &rs[g * blocks], &w[size_t(c) * k],
                                       &sw[size_t(c / 128) * blocks], k, &mag);
      double got = y[size_t(r) * n + c];
      ASSERT_TRUE(std::isfinite(got)) << "y[" << r << ", " << c << "] not written";
      double bound = (128 + blocks) * std::ldexp(1.0, -24) * mag + 1e-30;
      ASSERT_LE(std::fabs(got - want), bound)
          << "y[" << r << ", " << c << "] = " << got << ", want " << want;
    }
  }
  // A group's columns differ from another group's inputs (the test sees the
  // offset): column 0 against group 1's codes.
  ref::actQuantRow(&x[0], groups * k, rq.data(), rs.data());
  double other = ref::fp8GemmOutput(&rq[k], &rs[blocks], &w[0], &sw[0], k);
  EXPECT_NE(float(other), y[0]);
}

/// WgmmaGemm.h's groups: the name, the a columns of the group.
TEST(WgmmaGemm, GroupsHaveTheirOwnKernel) {
  mlir::compressa::WgmmaGemmShape shape;
  shape.n = 8192;
  shape.k = 4096;
  shape.program = true;
  shape.persistent = true;
  shape.groups = 8;
  EXPECT_EQ(shape.name(), "compressa_tc_gemm_n8192_k4096_s4_p_g8");
  EXPECT_EQ(shape.groupTiles(), 8);
  std::string error;
  std::string text = mlir::compressa::wgmmaGemmModuleText(shape, "sm_90a", error);
  ASSERT_FALSE(text.empty()) << error;
  EXPECT_NE(text.find("%cK64 = arith.constant 32768 : i64"), std::string::npos);
  shape.groups = 3;
  EXPECT_TRUE(mlir::compressa::wgmmaGemmModuleText(shape, "sm_90a", error).empty());
  EXPECT_NE(error.find("groups of the FP8 GEMM"), std::string::npos) << error;
}

TEST(WgmmaGemm, PtxHoldsWgmmaAndBulkTensorCopies) {
  auto ctx = makeContext();
  mlir::compressa::WgmmaGemmShape shape;
  shape.n = 256;
  shape.k = 1024;
  std::string error;
  std::string ptx = mlir::compressa::wgmmaGemmPtx(*ctx, shape, "sm_90a", error);
  ASSERT_FALSE(ptx.empty()) << error;
  EXPECT_NE(ptx.find("wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3"),
            std::string::npos);
  EXPECT_NE(ptx.find("cp.async.bulk.tensor.2d"), std::string::npos);
  EXPECT_NE(ptx.find("mbarrier.try_wait.parity"), std::string::npos);
  EXPECT_NE(ptx.find(".entry compressa_fp8_gemm_n256_k1024"), std::string::npos);
}

/// The options of WgmmaGemm.h: pairs of N tiles sharing a's tile by
/// multicast copies (a cluster of 2), a persistent grid; the names and the
/// a map's box follow them, the default kernel is unchanged.
TEST(WgmmaGemm, PairsAndPersistentGridsHaveTheirOwnKernels) {
  auto ctx = makeContext();
  mlir::compressa::WgmmaGemmShape shape;
  shape.n = 640; // 5 N tiles: the last pair's second is past N
  shape.k = 1024;
  EXPECT_EQ(shape.name(), "compressa_fp8_gemm_n640_k1024");
  EXPECT_EQ(shape.aBoxRows(), 128);
  EXPECT_EQ(shape.nUnits(), 5);
  std::string error;
  std::string plain = mlir::compressa::wgmmaGemmPtx(*ctx, shape, "sm_90a", error);
  ASSERT_FALSE(plain.empty()) << error;
  EXPECT_EQ(plain.find("multicast"), std::string::npos);
  EXPECT_EQ(plain.find(".reqnctapercluster"), std::string::npos);
  shape.cluster = 2;
  shape.persistent = true;
  EXPECT_EQ(shape.name(), "compressa_fp8_gemm_n640_k1024_c2_p");
  EXPECT_EQ(shape.aBoxRows(), 64);
  EXPECT_EQ(shape.nUnits(), 3);
  std::string text = mlir::compressa::wgmmaGemmModuleText(shape, "sm_90a", error);
  EXPECT_NE(text.find("nvvm.cluster_dim = array<i32: 2, 1, 1>"), std::string::npos);
  EXPECT_NE(text.find("multicast_mask = %mask"), std::string::npos);
  EXPECT_NE(text.find("%myUnits"), std::string::npos);
  std::string ptx = mlir::compressa::wgmmaGemmPtx(*ctx, shape, "sm_90a", error);
  ASSERT_FALSE(ptx.empty()) << error;
  EXPECT_NE(ptx.find(".reqnctapercluster 2, 1, 1"), std::string::npos);
  EXPECT_NE(ptx.find(".multicast::cluster"), std::string::npos);
  EXPECT_NE(ptx.find("mapa.shared::cluster.u32"), std::string::npos);
  shape.program = true;
  EXPECT_EQ(shape.name(), "compressa_tc_gemm_n640_k1024_s4_c2_p");
  shape.cluster = 3;
  EXPECT_TRUE(mlir::compressa::wgmmaGemmModuleText(shape, "sm_90a", error).empty());
  EXPECT_NE(error.find("cluster must be 1 or 2"), std::string::npos) << error;
}

/// The indexer's top-k selection (TopkSelect.h): vector loads where a
/// row's length is a multiple of 4, the warps' votes and shared-memory
/// histograms, the block's scans; bad shapes refused.
TEST(TopkSelect, PtxHoldsTheHistogramsAndScans) {
  mlir::compressa::TopkSelectShape shape;
  shape.capacity = 262176;
  shape.topk = 512;
  shape.ratio = 4;
  EXPECT_EQ(shape.name(), "compressa_tc_topk_c262176_k512_r4");
  std::string error;
  std::string ptx = mlir::compressa::topkSelectPtx(shape, "sm_90a", error);
  ASSERT_FALSE(ptx.empty()) << error;
  for (const char *want : {".entry compressa_tc_topk_c262176_k512_r4", "ld.global.v4.b32",
                           "match.any.sync.b32", "atom.shared.add.u32", "shfl.sync.up.b32",
                           "bar.sync"})
    EXPECT_NE(ptx.find(want), std::string::npos) << want;
  shape.capacity = 1001; // rows of odd length: scalar loads
  ptx = mlir::compressa::topkSelectPtx(shape, "sm_90a", error);
  ASSERT_FALSE(ptx.empty()) << error;
  EXPECT_EQ(ptx.find("ld.global.v4"), std::string::npos);
  shape.topk = 0;
  EXPECT_TRUE(mlir::compressa::topkSelectModuleText(shape, "sm_90a", error).empty());
  EXPECT_NE(error.find("positive capacity"), std::string::npos) << error;
  shape.topk = 16;
  EXPECT_TRUE(mlir::compressa::topkSelectModuleText(shape, "sm_80", error).empty());
  EXPECT_NE(error.find("sm_90a"), std::string::npos) << error;
}

/// tuneWgmmaGemm (WgmmaGemm.h): groups of 8 M tiles for the wide short
/// GEMMs of a persistent grid; the other shapes keep N fastest, and every
/// shape its buffers. The tile order's groups show in the name
/// and in the kernel's tile arithmetic.
TEST(WgmmaGemm, ProgramGemmsTunedByShape) {
  using mlir::compressa::WgmmaGemmShape;
  auto tuned = [](int64_t n, int64_t k, int64_t groups, bool persistent) {
    WgmmaGemmShape shape;
    shape.n = n;
    shape.k = k;
    shape.groups = groups;
    shape.persistent = persistent;
    shape.program = true;
    mlir::compressa::tuneWgmmaGemm(shape);
    return shape;
  };
  WgmmaGemmShape wob = tuned(4096, 8192, 1, true);
  EXPECT_EQ(wob.stages, 4);
  EXPECT_EQ(wob.groupM, 0);
  EXPECT_EQ(wob.name(), "compressa_tc_gemm_n4096_k8192_s4_p");
  WgmmaGemmShape wqb = tuned(32768, 1024, 1, true);
  EXPECT_EQ(wqb.stages, 4);
  EXPECT_EQ(wqb.groupM, 8);
  EXPECT_EQ(wqb.name(), "compressa_tc_gemm_n32768_k1024_s4_p_m8");
  for (auto [n, k, g, p] : {std::tuple<int64_t, int64_t, int64_t, bool>{8192, 1024, 1, true},
                            {1024, 4096, 1, true},
                            {2048, 4096, 1, true},
                            {32768, 1024, 1, false},
                            {8192, 4096, 8, true}}) {
    WgmmaGemmShape shape = tuned(n, k, g, p);
    EXPECT_EQ(shape.stages, 4) << n << " x " << k;
    EXPECT_EQ(shape.groupM, 0) << n << " x " << k;
  }
  std::string error;
  std::string text = mlir::compressa::wgmmaGemmModuleText(wqb, "sm_90a", error);
  ASSERT_FALSE(text.empty()) << error;
  EXPECT_NE(text.find("gpu.func @compressa_tc_gemm_n32768_k1024_s4_p_m8("), std::string::npos);
  // The group's size in units (8 M tiles x 256 N tiles).
  EXPECT_NE(text.find("arith.constant 2048 : index"), std::string::npos);
  wqb.groupM = 65;
  EXPECT_TRUE(mlir::compressa::wgmmaGemmModuleText(wqb, "sm_90a", error).empty());
  EXPECT_NE(error.find("0..64"), std::string::npos) << error;
  wob.stages = 7; // 7 x 32 KiB of tiles: the most that fits
  EXPECT_EQ(wob.sharedBytes(), 7 * 32768 + 1024);
  EXPECT_FALSE(mlir::compressa::wgmmaGemmModuleText(wob, "sm_90a", error).empty()) << error;
  wob.stages = 8;
  EXPECT_TRUE(mlir::compressa::wgmmaGemmModuleText(wob, "sm_90a", error).empty());
  EXPECT_NE(error.find("1..7"), std::string::npos) << error;
}

TEST(WgmmaGemm, BadShapesAreRefused) {
  std::string error;
  mlir::compressa::WgmmaGemmShape shape;
  shape.n = 200;
  shape.k = 1024;
  EXPECT_TRUE(mlir::compressa::wgmmaGemmModuleText(shape, "sm_90a", error).empty());
  EXPECT_NE(error.find("multiples of 128"), std::string::npos) << error;
  shape.n = 256;
  EXPECT_TRUE(mlir::compressa::wgmmaGemmModuleText(shape, "sm_80", error).empty());
  EXPECT_NE(error.find("sm_90a"), std::string::npos) << error;
}

/// The routed experts' grouped GEMMs (WgmmaExperts.h) at tiny-c's and
/// V4-Flash's widths: bf16 wgmma fed by the producer's stores, the FP4
/// block scale as one bf16x2 multiply per pair, the proxy fence before the
/// arrive, and the SwiGLU epilogue's packed bf16 stores (gate/up only).
TEST(WgmmaExperts, PtxHoldsBf16WgmmaAndTheProducersSteps) {
  for (auto [dm, inter] : {std::pair<int64_t, int64_t>{128, 64}, {4096, 2048}}) {
    for (bool gateUp : {true, false}) {
      mlir::compressa::WgmmaExpertsShape shape;
      shape.gateUp = gateUp;
      shape.n = gateUp ? inter : dm;
      shape.k = gateUp ? dm : inter;
      shape.topk = 6;
      shape.experts = 256;
      shape.tableSlot = 9;
      shape.tableSlot3 = gateUp ? 10 : -1;
      shape.limit = 10.0;
      std::string error;
      std::string ptx = mlir::compressa::wgmmaExpertsPtx(shape, "sm_90a", error);
      ASSERT_FALSE(ptx.empty()) << error;
      EXPECT_NE(ptx.find("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16"),
                std::string::npos);
      EXPECT_NE(ptx.find("mul.rn.bf16x2"), std::string::npos);
      EXPECT_NE(ptx.find("fence.proxy.async.shared::cta"), std::string::npos);
      EXPECT_NE(ptx.find("mbarrier.try_wait.parity"), std::string::npos);
      EXPECT_NE(ptx.find(".entry " + shape.name()), std::string::npos);
      EXPECT_EQ(ptx.find("cvt.rn.bf16x2.f32") != std::string::npos, gateUp);
      EXPECT_EQ(ptx.find("cp.async.bulk"), std::string::npos);
    }
  }
}

/// The grid's slot tiles: every tile holds a slot, so a call of S tokens
/// has at most S topk of them (a decode step of V4-Flash: 6, not 257), and
/// at most ceil(S topk / 128) + experts (an expert's tiles are full but its
/// last).
TEST(WgmmaExperts, SlotTilesOfACall) {
  mlir::compressa::WgmmaExpertsShape shape;
  shape.topk = 6;
  shape.experts = 256;
  EXPECT_EQ(shape.maxSlotTiles(1), 6);
  EXPECT_EQ(shape.maxSlotTiles(16), 96);
  EXPECT_EQ(shape.maxSlotTiles(64), 3 + 256);
  EXPECT_EQ(shape.maxSlotTiles(4096), 192 + 256);
}

/// The HCA attention's two kernels (WgmmaAttention.h) at V4-Flash's and
/// V4-Pro's widths: the maxima pass runs only the scores' m64n32 steps, the
/// sums pass the weighted sums' m64n(dim / 2) too, libdevice's exp linked
/// (no call left), TMA for the keys, the named barrier of the consumers.
TEST(WgmmaAttention, PtxOfBothPasses) {
  const char *toolkit = std::getenv("CUDA_HOME") ? std::getenv("CUDA_HOME") : "/usr/local/cuda";
  for (int64_t heads : {64, 128}) {
    for (auto pass : {mlir::compressa::WgmmaAttentionShape::Pass::Max,
                      mlir::compressa::WgmmaAttentionShape::Pass::Sums}) {
      mlir::compressa::WgmmaAttentionShape shape;
      shape.heads = heads;
      shape.dim = 512;
      shape.window = 128;
      shape.ratio = 128;
      shape.capacity = 8192;
      shape.scale = 0.044194173824159216;
      shape.pass = pass;
      bool sums = pass == mlir::compressa::WgmmaAttentionShape::Pass::Sums;
      std::string error;
      std::string ptx = mlir::compressa::wgmmaAttentionPtx(shape, "sm_90a", toolkit, error);
      if (ptx.empty() && error.find("libdevice") != std::string::npos)
        GTEST_SKIP() << error;
      ASSERT_FALSE(ptx.empty()) << error;
      EXPECT_NE(ptx.find(".entry " + shape.name()), std::string::npos);
      EXPECT_NE(ptx.find("wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16"),
                std::string::npos);
      EXPECT_EQ(ptx.find("wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16") !=
                    std::string::npos,
                sums);
      EXPECT_NE(ptx.find("cp.async.bulk.tensor.2d"), std::string::npos);
      EXPECT_NE(ptx.find("bar.sync 1, 256;"), std::string::npos);
      EXPECT_EQ(ptx.find("__nv_exp"), std::string::npos);
      EXPECT_LE(shape.sharedBytes(), 227 * 1024);
    }
  }
}

TEST(WgmmaAttention, BadShapesAreRefused) {
  std::string error;
  mlir::compressa::WgmmaAttentionShape shape;
  shape.heads = 8; // a tile is 64 heads
  shape.dim = 512;
  shape.window = 128;
  shape.ratio = 128;
  shape.capacity = 8192;
  shape.scale = 0.0625;
  EXPECT_TRUE(
      mlir::compressa::wgmmaAttentionModuleText(shape, "sm_90a", "/usr/local/cuda", error).empty());
  EXPECT_NE(error.find("multiple of 64 heads"), std::string::npos) << error;
  shape.heads = 64;
  shape.dim = 576;
  EXPECT_TRUE(
      mlir::compressa::wgmmaAttentionModuleText(shape, "sm_90a", "/usr/local/cuda", error).empty());
  EXPECT_NE(error.find("key width of 128, 256 or 512"), std::string::npos) << error;
  shape.dim = 512;
  shape.scale = 0;
  EXPECT_TRUE(
      mlir::compressa::wgmmaAttentionModuleText(shape, "sm_90a", "/usr/local/cuda", error).empty());
  EXPECT_NE(error.find("scale"), std::string::npos) << error;
  shape.scale = 0.0625;
  EXPECT_TRUE(
      mlir::compressa::wgmmaAttentionModuleText(shape, "sm_90a", "/nonexistent", error).empty());
  EXPECT_NE(error.find("libdevice, not found at /nonexistent/nvvm/libdevice/libdevice.10.bc"),
            std::string::npos)
      << error;
  EXPECT_TRUE(
      mlir::compressa::wgmmaAttentionModuleText(shape, "sm_80", "/usr/local/cuda", error).empty());
  EXPECT_NE(error.find("sm_90a"), std::string::npos) << error;
}

TEST(WgmmaExperts, BadShapesAreRefused) {
  std::string error;
  mlir::compressa::WgmmaExpertsShape shape;
  shape.n = 96; // inter not a multiple of 64
  shape.k = 4096;
  shape.topk = 6;
  shape.experts = 256;
  shape.tableSlot = 9;
  shape.tableSlot3 = 10;
  shape.limit = 10.0;
  EXPECT_TRUE(mlir::compressa::wgmmaExpertsModuleText(shape, "sm_90a", error).empty());
  EXPECT_NE(error.find("multiple of 64"), std::string::npos) << error;
  shape.n = 2048;
  EXPECT_TRUE(mlir::compressa::wgmmaExpertsModuleText(shape, "sm_80", error).empty());
  EXPECT_NE(error.find("sm_90a"), std::string::npos) << error;
  shape.limit = 0;
  EXPECT_TRUE(mlir::compressa::wgmmaExpertsModuleText(shape, "sm_90a", error).empty());
  EXPECT_NE(error.find("SwiGLU limit"), std::string::npos) << error;
}

} // namespace
