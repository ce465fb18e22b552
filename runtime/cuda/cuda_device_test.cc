// SPDX-License-Identifier: Apache-2.0
// Tests of the CUDA device layer on a real GPU (label gpu; each test skips
// without one, or fails under COMPRESSA_REQUIRE_GPU=1): device information,
// module loading from PTX and cubin with the fallbacks, launches in the
// artifact's ABI with checked results, graph capture and replay, memory
// checks, and error messages that name the call and the kernel.
#include "runtime/cuda/cuda_device.h"

#include "runtime/testing/gpu_test.h"
#include "runtime/testing/toy_cuda.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace compressa {
namespace {

/// Test kernels in the artifact ABI (`.entry k(.param .u64 argv)`), for any
/// GPU the driver can JIT sm_70 PTX for.
const char kDevicePtx[] = R"ptx(.version 7.0
.target sm_70
.address_size 64

// argv: [0] x (f32 [n]), [1] -> int64 n, [2] y (f32 [n]); y[i] = 2 x[i] + i.
.visible .entry axpb(.param .u64 argv)
{
	.reg .pred 	%p;
	.reg .b32 	%r<4>;
	.reg .b64 	%rd<11>;
	.reg .f32 	%f<3>;

	ld.param.u64 	%rd1, [argv];
	ld.u64  	%rd2, [%rd1];
	ld.u64  	%rd3, [%rd1+8];
	ld.u64  	%rd4, [%rd1+16];
	ld.s64  	%rd5, [%rd3];
	mov.u32 	%r1, %ctaid.x;
	mov.u32 	%r2, %ntid.x;
	mov.u32 	%r3, %tid.x;
	mul.wide.u32 	%rd6, %r1, %r2;
	cvt.u64.u32 	%rd7, %r3;
	add.s64 	%rd6, %rd6, %rd7;
	setp.ge.s64 	%p, %rd6, %rd5;
	@%p bra 	AXPB_DONE;
	shl.b64 	%rd8, %rd6, 2;
	add.s64 	%rd9, %rd2, %rd8;
	ld.f32  	%f1, [%rd9];
	cvt.rn.f32.s64 	%f2, %rd6;
	mul.rn.f32 	%f1, %f1, 0f40000000;
	add.rn.f32 	%f1, %f1, %f2;
	add.s64 	%rd10, %rd4, %rd8;
	st.f32  	[%rd10], %f1;
AXPB_DONE:
	ret;
}

// argv: [0] counter (int64); counter += 1 per thread.
.visible .entry bump(.param .u64 argv)
{
	.reg .b64 	%rd<4>;

	ld.param.u64 	%rd1, [argv];
	ld.u64  	%rd2, [%rd1];
	atom.add.u64 	%rd3, [%rd2], 1;
	ret;
}

// argv: [0] counter (int64); counter *= 2 (launch 1 x 1).
.visible .entry twice(.param .u64 argv)
{
	.reg .b64 	%rd<4>;

	ld.param.u64 	%rd1, [argv];
	ld.u64  	%rd2, [%rd1];
	ld.u64  	%rd3, [%rd2];
	shl.b64 	%rd3, %rd3, 1;
	st.u64  	[%rd2], %rd3;
	ret;
}
)ptx";

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

class CudaDeviceTest : public ::testing::Test {
protected:
  void SetUp() override {
    COMPRESSA_SKIP_WITHOUT_GPU();
    auto opened = CudaDevice::open();
    ASSERT_TRUE(opened.ok()) << opened.status().toString();
    device = std::move(*opened);
  }

  std::unique_ptr<CudaModule> loadTestKernels() {
    auto module = device->loadModule("sm_70", kDevicePtx, sizeof(kDevicePtx) - 1,
                                     nullptr, 0, "test kernels");
    EXPECT_TRUE(module.ok()) << module.status().toString();
    return module.ok() ? std::move(*module) : nullptr;
  }

  /// A device array holding `words` (an argument vector).
  CudaMemory argv(const std::vector<uint64_t> &words) {
    auto memory = device->allocate(words.size() * 8, "argv");
    EXPECT_TRUE(memory.ok()) << memory.status().toString();
    if (!memory.ok())
      return CudaMemory();
    Status status = device->copyToDevice(memory->address(), words.data(),
                                         words.size() * 8, "argv");
    EXPECT_TRUE(status.ok()) << status.toString();
    return std::move(*memory);
  }

  int64_t readCounter(const CudaMemory &counter) {
    int64_t value = -1;
    Status status =
        device->copyToHost(&value, counter.address(), 8, "the counter");
    EXPECT_TRUE(status.ok()) << status.toString();
    return value;
  }

  std::unique_ptr<CudaDevice> device;
};

TEST_F(CudaDeviceTest, DeviceInfo) {
  std::printf("device: %s\n", device->describe().c_str());
  EXPECT_FALSE(device->name().empty());
  EXPECT_GE(device->computeMajor(), 7);
  EXPECT_GT(device->totalMemory(), 0u);
  EXPECT_GT(device->multiprocessors(), 0);
  EXPECT_GE(device->maxSharedBytesPerBlock(), 48 * 1024);
  EXPECT_EQ(device->chip(), "sm_" + std::to_string(device->computeMajor()) +
                                std::to_string(device->computeMinor()));
  uint64_t freeBytes = 0, total = 0;
  ASSERT_TRUE(device->memoryInfo(freeBytes, total).ok());
  EXPECT_GT(freeBytes, 0u);
  EXPECT_LE(freeBytes, total);
  EXPECT_GE(device->driver().version, 12000);
}

TEST_F(CudaDeviceTest, DeviceSelection) {
  ASSERT_EQ(::setenv("COMPRESSA_CUDA_DEVICE", "seven", 1), 0);
  auto bad = CudaDevice::open();
  ASSERT_EQ(::setenv("COMPRESSA_CUDA_DEVICE", "999", 1), 0);
  auto missing = CudaDevice::open();
  ASSERT_EQ(::setenv("COMPRESSA_CUDA_DEVICE", "0", 1), 0);
  auto zero = CudaDevice::open();
  ::unsetenv("COMPRESSA_CUDA_DEVICE");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::InvalidArgument);
  EXPECT_TRUE(contains(bad.status().message(),
                       "COMPRESSA_CUDA_DEVICE='seven' is not a device "
                       "number"))
      << bad.status().message();
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(contains(missing.status().message(),
                       "CUDA device 999 does not exist"))
      << missing.status().message();
  ASSERT_TRUE(zero.ok()) << zero.status().toString();
  EXPECT_EQ((*zero)->ordinal(), 0);
}

TEST_F(CudaDeviceTest, PtxKernelRunsWithCorrectResults) {
  auto module = loadTestKernels();
  ASSERT_TRUE(module);
  EXPECT_EQ(module->source(), CudaModule::Source::PtxJit);
  EXPECT_TRUE(contains(module->description(), "PTX JIT for " + device->chip()))
      << module->description();
  EXPECT_TRUE(contains(module->description(), "the artifact has no cubin"))
      << module->description();
  auto fn = module->function("axpb", "test.axpb");
  ASSERT_TRUE(fn.ok()) << fn.status().toString();

  const int64_t n = 100003; // Not a multiple of the block.
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i)
    x[i] = static_cast<float>(i % 1000) * 0.25f - 7.0f;
  auto xs = device->allocate(n * 4, "x");
  auto ys = device->allocate(n * 4, "y");
  auto count = device->allocate(8, "n");
  ASSERT_TRUE(xs.ok() && ys.ok() && count.ok());
  ASSERT_TRUE(device->copyToDevice(xs->address(), x.data(), n * 4, "x").ok());
  ASSERT_TRUE(device->copyToDevice(count->address(), &n, 8, "n").ok());
  ASSERT_TRUE(device->fill(ys->address(), n * 4, 0x7fc00000u, "y").ok());
  CudaMemory args = argv({xs->address(), count->address(), ys->address()});
  uint32_t block = 128;
  uint32_t grid = static_cast<uint32_t>((n + block - 1) / block);
  CudaLaunchCounters before = device->counters();
  ASSERT_TRUE(device->makeCurrent().ok());
  Status launched =
      device->launch(*fn, grid, block, 0, args.address(), "test.axpb", "axpb");
  ASSERT_TRUE(launched.ok()) << launched.toString();
  EXPECT_EQ(device->counters().kernelLaunches, before.kernelLaunches + 1);
  std::vector<float> y(n, -1.0f);
  Status copied = device->copyToHost(y.data(), ys->address(), n * 4, "y");
  ASSERT_TRUE(copied.ok()) << copied.toString();
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(y[i], x[i] * 2.0f + static_cast<float>(i)) << "i " << i;
}

TEST_F(CudaDeviceTest, LaunchErrorNamesTheKernel) {
  auto module = loadTestKernels();
  ASSERT_TRUE(module);
  auto fn = module->function("bump", "test.bump");
  ASSERT_TRUE(fn.ok());
  auto counter = device->allocate(8, "counter");
  ASSERT_TRUE(counter.ok());
  CudaMemory args = argv({counter->address()});
  ASSERT_TRUE(device->makeCurrent().ok());
  // 4096 threads per block is more than any GPU allows.
  Status status = device->launch(*fn, 1, 4096, 0, args.address(),
                                 "layers.3.attn", "bump");
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.message().rfind("cuLaunchKernel failed for kernel "
                                   "'layers.3.attn' (bump): CUDA_ERROR_",
                                   0),
            0u)
      << status.message();
  // The stream is still usable.
  EXPECT_TRUE(device->synchronize("after a refused launch").ok());
}

TEST_F(CudaDeviceTest, MissingSymbolIsNotFound) {
  auto module = loadTestKernels();
  ASSERT_TRUE(module);
  auto fn = module->function("nope", "layers.0.nope");
  ASSERT_FALSE(fn.ok());
  EXPECT_EQ(fn.status().code(), StatusCode::NotFound);
  EXPECT_TRUE(contains(fn.status().message(),
                       "test kernels: kernel 'layers.0.nope': no kernel "
                       "symbol 'nope'"))
      << fn.status().message();
}

TEST_F(CudaDeviceTest, BadPtxIsAnErrorWithTheJitLog) {
  const char ptx[] = ".version 7.0\n.target sm_70\n.address_size 64\n"
                     ".visible .entry broken(.param .u64 argv)\n{\n"
                     "  frobnicate.u64 %rd1, 3;\n  ret;\n}\n";
  auto module =
      device->loadModule("sm_70", ptx, sizeof(ptx) - 1, nullptr, 0, "bad.cpa");
  ASSERT_FALSE(module.ok());
  EXPECT_TRUE(contains(module.status().message(),
                       "cuModuleLoadDataEx failed for bad.cpa: the PTX JIT "
                       "for " + device->chip()))
      << module.status().message();
  EXPECT_TRUE(contains(module.status().message(), "JIT log: "))
      << module.status().message();
}

TEST_F(CudaDeviceTest, NoUsableCodeIsAnError) {
  auto module = device->loadModule("sm_90a", nullptr, 0, nullptr, 0, "x.cpa");
  ASSERT_FALSE(module.ok());
  EXPECT_TRUE(contains(module.status().message(),
                       "x.cpa: no code this GPU"))
      << module.status().message();
}

TEST_F(CudaDeviceTest, CubinIsUsedWhenTheChipMatches) {
  std::vector<uint8_t> cubin = toy::toyKernelsCubin();
  if (cubin.empty())
    FAIL() << "the build found no ptxas (CUDA toolkit), so there is no "
              "test cubin: install CUDA 13 at /usr/local/cuda";
  std::string ptx = toy::toyKernelsPtx();
  auto module = device->loadModule("sm_90", ptx.c_str(), ptx.size(),
                                   cubin.data(), cubin.size(), "toy.cpa");
  if (device->computeMajor() < 9) {
    // Neither the sm_90 cubin nor the sm_90 PTX can run here.
    EXPECT_FALSE(module.ok());
    return;
  }
  ASSERT_TRUE(module.ok()) << module.status().toString();
  if (device->computeMajor() == 9) {
    EXPECT_EQ((*module)->source(), CudaModule::Source::Cubin);
    EXPECT_EQ((*module)->description(), "cubin (sm_90)");
  } else {
    EXPECT_EQ((*module)->source(), CudaModule::Source::PtxJit);
    EXPECT_TRUE(contains((*module)->description(),
                         "the cubin is for sm_90, this GPU is " +
                             device->chip()))
        << (*module)->description();
  }
  EXPECT_TRUE((*module)->function("toy_head", "toy.head").ok());
}

TEST_F(CudaDeviceTest, ForeignOrBrokenCubinFallsBackToPtx) {
  // A cubin labelled for another major version is not even tried.
  std::string other = "sm_" + std::to_string(device->computeMajor() + 1) + "0a";
  // An ELF header's worth of bytes with nothing behind the identification.
  uint8_t junk[64] = {0x7f, 'E', 'L', 'F', 2, 1, 1};
  auto foreign = device->loadModule(other, kDevicePtx, sizeof(kDevicePtx) - 1,
                                    junk, sizeof(junk), "foreign.cpa");
  ASSERT_TRUE(foreign.ok()) << foreign.status().toString();
  EXPECT_EQ((*foreign)->source(), CudaModule::Source::PtxJit);
  EXPECT_TRUE(contains((*foreign)->description(),
                       "the cubin is for " + other + ", this GPU is " +
                           device->chip()))
      << (*foreign)->description();
  // A cubin for this very chip that the driver refuses: the PTX is used,
  // and the description says why.
  auto broken =
      device->loadModule(device->chip(), kDevicePtx, sizeof(kDevicePtx) - 1,
                         junk, sizeof(junk), "broken.cpa");
  ASSERT_TRUE(broken.ok()) << broken.status().toString();
  EXPECT_EQ((*broken)->source(), CudaModule::Source::PtxJit);
  EXPECT_TRUE(contains((*broken)->description(),
                       "cuModuleLoadData refused the " + device->chip() +
                           " cubin: CUDA_ERROR_"))
      << (*broken)->description();
  EXPECT_TRUE((*broken)->function("bump", "test.bump").ok());
}

TEST_F(CudaDeviceTest, GraphCaptureAndReplay) {
  auto module = loadTestKernels();
  ASSERT_TRUE(module);
  auto bump = module->function("bump", "test.bump");
  auto twice = module->function("twice", "test.twice");
  ASSERT_TRUE(bump.ok() && twice.ok());
  auto counter = device->allocate(8, "counter");
  ASSERT_TRUE(counter.ok());
  ASSERT_TRUE(device->fill(counter->address(), 8, 0, "counter").ok());
  CudaMemory args = argv({counter->address()});
  CUdeviceptr a = args.address();
  CudaLaunchCounters before = device->counters();
  // counter = (counter + 1) * 2 + 1 per replay: the order is kept.
  auto graph = device->capture(
      [&]() -> Status {
        COMPRESSA_RETURN_IF_ERROR(
            device->launch(*bump, 1, 1, 0, a, "test.bump", "bump"));
        COMPRESSA_RETURN_IF_ERROR(
            device->launch(*twice, 1, 1, 0, a, "test.twice", "twice"));
        return device->launch(*bump, 1, 1, 0, a, "test.bump", "bump");
      },
      "the test graph");
  ASSERT_TRUE(graph.ok()) << graph.status().toString();
  EXPECT_TRUE(graph->valid());
  EXPECT_EQ(graph->launches(), 3);
  // Capturing runs nothing.
  EXPECT_EQ(readCounter(*counter), 0);
  ASSERT_TRUE(device->launchGraph(*graph, "replay 1").ok());
  EXPECT_EQ(readCounter(*counter), 3);
  ASSERT_TRUE(device->launchGraph(*graph, "replay 2").ok());
  EXPECT_EQ(readCounter(*counter), 9);
  CudaLaunchCounters after = device->counters();
  EXPECT_EQ(after.capturedLaunches - before.capturedLaunches, 3);
  EXPECT_EQ(after.graphLaunches - before.graphLaunches, 2);
  EXPECT_EQ(after.kernelLaunches, before.kernelLaunches);
}

TEST_F(CudaDeviceTest, FailedCaptureLeavesTheStreamUsable) {
  auto module = loadTestKernels();
  ASSERT_TRUE(module);
  auto bump = module->function("bump", "test.bump");
  ASSERT_TRUE(bump.ok());
  auto counter = device->allocate(8, "counter");
  ASSERT_TRUE(counter.ok());
  CudaMemory args = argv({counter->address()});
  CUdeviceptr a = args.address();
  auto graph = device->capture(
      [&]() -> Status {
        COMPRESSA_RETURN_IF_ERROR(
            device->launch(*bump, 1, 1, 0, a, "test.bump", "bump"));
        return COMPRESSA_ERROR(Internal, "stop here");
      },
      "a failing capture");
  ASSERT_FALSE(graph.ok());
  EXPECT_TRUE(contains(graph.status().message(),
                       "capturing a failing capture: stop here"))
      << graph.status().message();
  // Back to normal: a plain launch runs.
  ASSERT_TRUE(device->fill(counter->address(), 8, 0, "counter").ok());
  ASSERT_TRUE(device->launch(*bump, 1, 1, 0, a, "test.bump", "bump").ok());
  EXPECT_EQ(readCounter(*counter), 1);
}

TEST_F(CudaDeviceTest, FillsAndCopies) {
  auto memory = device->allocate(64, "fill");
  ASSERT_TRUE(memory.ok());
  EXPECT_EQ(memory->size(), 64u);
  EXPECT_EQ(memory->address() % 256, 0u);
  ASSERT_TRUE(device->fill(memory->address(), 64, 0xFF800000u, "fill").ok());
  ASSERT_TRUE(device->fill(memory->address(), 32, 0, "fill").ok());
  uint32_t words[16];
  ASSERT_TRUE(device->copyToHost(words, memory->address(), 64, "fill").ok());
  for (int i = 0; i < 8; ++i)
    EXPECT_EQ(words[i], 0u) << i;
  for (int i = 8; i < 16; ++i)
    EXPECT_EQ(words[i], 0xFF800000u) << i;
  Status misaligned = device->fill(memory->address() + 2, 8, 1, "odd fill");
  EXPECT_EQ(misaligned.code(), StatusCode::Internal);
}

// Reads go through a page-locked staging buffer that grows on demand (up
// to 64 MiB; larger reads and COMPRESSA_PINNED_READS=0 copy directly):
// reads of every size, growing, shrinking and past the limit, arrive whole
// and in place, each after the writes before it.
TEST_F(CudaDeviceTest, ReadsOfEverySizeArriveWhole) {
  const uint64_t sizes[] = {16, uint64_t(3) << 19, 700 << 10, uint64_t(5) << 20, 24,
                            (uint64_t(64) << 20) + 4096};
  for (uint64_t bytes : sizes) {
    auto memory = device->allocate(bytes, "a read");
    ASSERT_TRUE(memory.ok()) << memory.status().message();
    std::vector<uint32_t> words(bytes / 4), back(bytes / 4 + 2, 0xDEADBEEFu);
    for (size_t i = 0; i < words.size(); ++i)
      words[i] = uint32_t(i * 2654435761u) ^ uint32_t(bytes);
    ASSERT_TRUE(device->copyToDevice(memory->address(), words.data(), bytes, "a read").ok());
    ASSERT_TRUE(device->copyToHost(back.data() + 1, memory->address(), bytes, "a read").ok());
    EXPECT_EQ(back.front(), 0xDEADBEEFu) << bytes;
    EXPECT_EQ(back.back(), 0xDEADBEEFu) << bytes;
    EXPECT_TRUE(std::equal(words.begin(), words.end(), back.begin() + 1)) << bytes;
  }
}

TEST_F(CudaDeviceTest, MemoryChecksNameBytesNeededAndFree) {
  uint64_t huge = device->totalMemory() * 4;
  Status check = device->checkFree(huge, "model.cpa (weights)");
  ASSERT_FALSE(check.ok());
  EXPECT_EQ(check.code(), StatusCode::ResourceExhausted);
  EXPECT_TRUE(contains(check.message(),
                       "model.cpa (weights) needs " + std::to_string(huge) +
                           " bytes"))
      << check.message();
  EXPECT_TRUE(contains(check.message(), "free of")) << check.message();
  auto memory = device->allocate(huge, "a huge arena");
  ASSERT_FALSE(memory.ok());
  EXPECT_EQ(memory.status().code(), StatusCode::ResourceExhausted);
  EXPECT_TRUE(contains(memory.status().message(),
                       "cuMemAlloc failed for a huge arena"))
      << memory.status().message();
}

} // namespace
} // namespace compressa
