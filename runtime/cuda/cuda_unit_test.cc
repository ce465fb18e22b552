// SPDX-License-Identifier: Apache-2.0
// CUDA layer tests that need no GPU: how driver errors read, chip names, and
// what loading the driver and running a CUDA artifact report on a machine
// without a usable GPU (on a machine with one, those cases check success
// instead).
#include "runtime/cuda/cuda_device.h"
#include "runtime/cuda/cuda_driver.h"
#include "runtime/session/engine.h"
#include "runtime/testing/gpu_test.h"
#include "runtime/testing/toy_cuda.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace compressa {
namespace {

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

/// Stands in for the driver table: its "driver calls" return a set result.
struct FakeDriver {
  CUresult result = CUDA_SUCCESS;
  CUresult cuLaunchKernel(int) const { return result; }
  CUresult cuMemAlloc(int) const { return result; }
};

/// Fails the way the runtime's users of the macro do.
Status launchThrough(const FakeDriver &driver) {
  COMPRESSA_CUDA_RETURN_IF_ERROR(driver.cuLaunchKernel(0), "kernel '%s' (%s)",
                                 "layers.3.attn", "compressa_kernel_12");
  return okStatus();
}

Status allocateThrough(const FakeDriver *driver) {
  COMPRESSA_CUDA_RETURN_IF_ERROR(driver->cuMemAlloc(0));
  return okStatus();
}

TEST(CudaDriverTest, CallNameIsTakenFromTheSource) {
  EXPECT_EQ(cudaCallName("driver->cuMemAlloc(&ptr, bytes)"), "cuMemAlloc");
  EXPECT_EQ(cudaCallName("d.cuLaunchKernel(fn, grid, 1, 1)"),
            "cuLaunchKernel");
  EXPECT_EQ(cudaCallName("drv->cuStreamBeginCapture (stream, mode)"),
            "cuStreamBeginCapture");
  EXPECT_EQ(cudaCallName("cuInit(0)"), "cuInit");
  EXPECT_EQ(cudaCallName("cuDeviceGetCount"), "cuDeviceGetCount");
  EXPECT_EQ(cudaCallName(""), "a CUDA driver call");
}

TEST(CudaDriverTest, MacroMessageNamesCallContextAndError) {
  // Error names come from libcuda when it is loaded: load it (where there
  // is one) before the message is made, not after.
  bool haveDriver = loadCudaDriver().ok();
  FakeDriver driver;
  EXPECT_TRUE(launchThrough(driver).ok());
  driver.result = CUDA_ERROR_LAUNCH_FAILED;
  Status status = launchThrough(driver);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), StatusCode::Unavailable);
  EXPECT_NE(status.file(), nullptr);
  EXPECT_GT(status.line(), 0);
  std::string prefix = "cuLaunchKernel failed for kernel 'layers.3.attn' "
                       "(compressa_kernel_12): ";
  EXPECT_EQ(status.message().rfind(prefix, 0), 0u) << status.message();
  // With libcuda loaded: "CUDA_ERROR_LAUNCH_FAILED: unspecified launch
  // failure"; without it there is nothing to ask for the name.
  std::string error = status.message().substr(prefix.size());
  if (haveDriver)
    EXPECT_EQ(error.rfind("CUDA_ERROR_LAUNCH_FAILED: ", 0), 0u) << error;
  else
    EXPECT_TRUE(error.rfind("CUDA_ERROR_LAUNCH_FAILED", 0) == 0 ||
                error == "CUresult " +
                             std::to_string(int(CUDA_ERROR_LAUNCH_FAILED)))
        << error;
}

TEST(CudaDriverTest, OutOfMemoryIsResourceExhausted) {
  FakeDriver driver;
  driver.result = CUDA_ERROR_OUT_OF_MEMORY;
  Status status = allocateThrough(&driver);
  EXPECT_EQ(status.code(), StatusCode::ResourceExhausted);
  EXPECT_EQ(status.message().rfind("cuMemAlloc failed: ", 0), 0u)
      << status.message();
  Status direct = cudaCallError(CUDA_ERROR_OUT_OF_MEMORY,
                                "driver.cuMemAlloc(&p, n)", "f.cc", 3,
                                "the weights of %s", "dir");
  EXPECT_EQ(direct.code(), StatusCode::ResourceExhausted);
  EXPECT_TRUE(contains(direct.message(),
                       "cuMemAlloc failed for the weights of dir: "))
      << direct.message();
  Status bare = cudaCallError(CUDA_ERROR_INVALID_VALUE, "cuInit(0)", "f.cc", 4);
  EXPECT_EQ(bare.code(), StatusCode::Unavailable);
  EXPECT_TRUE(contains(bare.message(), "cuInit failed: ")) << bare.message();
}

TEST(CudaChipTest, Parses) {
  int major = 0, minor = 0;
  bool specific = false;
  ASSERT_TRUE(parseCudaChip("sm_90a", major, minor, specific));
  EXPECT_EQ(major, 9);
  EXPECT_EQ(minor, 0);
  EXPECT_TRUE(specific);
  ASSERT_TRUE(parseCudaChip("sm_90", major, minor, specific));
  EXPECT_EQ(major, 9);
  EXPECT_FALSE(specific);
  ASSERT_TRUE(parseCudaChip("sm_89", major, minor, specific));
  EXPECT_EQ(major, 8);
  EXPECT_EQ(minor, 9);
  ASSERT_TRUE(parseCudaChip("sm_100a", major, minor, specific));
  EXPECT_EQ(major, 10);
  EXPECT_EQ(minor, 0);
  EXPECT_TRUE(specific);
  ASSERT_TRUE(parseCudaChip("sm_120f", major, minor, specific));
  EXPECT_EQ(major, 12);
  EXPECT_FALSE(specific);
  for (const char *bad : {"", "sm_", "sm_9", "compute_90", "sm_9x", "sm_a",
                          "sm_12345", "gfx90a"})
    EXPECT_FALSE(parseCudaChip(bad, major, minor, specific)) << bad;
}

TEST(CudaDriverTest, LoadingReportsWhyThereIsNoGpu) {
  StatusOr<const CudaDriver *> driver = loadCudaDriver();
  // Loaded once: a second call gives the same answer.
  StatusOr<const CudaDriver *> again = loadCudaDriver();
  EXPECT_EQ(driver.ok(), again.ok());
  if (driver.ok()) {
    EXPECT_GE((*driver)->deviceCount, 1);
    EXPECT_GT((*driver)->version, 0);
    EXPECT_EQ(*driver, *again);
    return;
  }
  EXPECT_EQ(driver.status().code(), StatusCode::Unavailable);
  const std::string &message = driver.status().message();
  EXPECT_TRUE(contains(message, "no NVIDIA driver: dlopen(libcuda.so.1) "
                                "failed: ") ||
              contains(message, "cuInit failed: ") ||
              contains(message, "no CUDA device: ") ||
              contains(message, "lacks "))
      << message;
  EXPECT_EQ(driver.status().message(), again.status().message());
  // Opening a device passes the same error on.
  auto device = CudaDevice::open();
  ASSERT_FALSE(device.ok());
  EXPECT_EQ(device.status().message(), message);
}

TEST(CudaEngineTest, CudaArtifactWithoutGpuIsAClearError) {
  if (toy::gpuUnavailableReason().empty())
    GTEST_SKIP() << "a GPU is present; runtime_cuda_engine_test covers it";
  std::string dir = toy::makeTempDir("compressa_cuda_unit_");
  ASSERT_FALSE(dir.empty());
  ASSERT_TRUE(toy::writeToyWeights(dir).ok());
  std::string path = dir + "/toy-cuda.cpa";
  ASSERT_TRUE(
      toy::writeFile(path, toy::buildArtifact(toy::toyCudaArtifactSpec())));
  auto engine = Engine::create(path, dir);
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().code(), StatusCode::Unavailable);
  EXPECT_TRUE(contains(engine.status().message(),
                       path + ": the artifact targets CUDA, but no CUDA GPU "
                              "is available: "))
      << engine.status().message();
  EXPECT_TRUE(contains(engine.status().message(),
                       toy::gpuUnavailableReason()))
      << engine.status().message();
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

TEST(ToyCudaTest, ArtifactCarriesPtxAndGeometry) {
  toy::ArtifactSpec spec = toy::toyCudaArtifactSpec(4, /*withCubin=*/true);
  std::vector<uint8_t> bytes = toy::buildArtifact(spec);
  auto artifact = ArtifactReader::readBuffer(bytes.data(), bytes.size(), "t");
  ASSERT_TRUE(artifact.ok()) << artifact.status().toString();
  const fb::Artifact &root = (*artifact)->root();
  EXPECT_EQ(root.target(), fb::Target::Cuda);
  ASSERT_NE(root.cuda(), nullptr);
  EXPECT_EQ(root.cuda()->chip()->str(), "sm_90");
  EXPECT_NE(root.cuda()->ptx()->str().find(".entry toy_head"),
            std::string::npos);
  EXPECT_EQ(root.cuda()->cubin()->size(), toy::toyKernelsCubin().size());
  EXPECT_EQ(root.kernels()->Get(1)->grid(), toy::kHeadGrid);
  EXPECT_EQ(root.kernels()->Get(1)->block(), toy::kHeadBlock);
  EXPECT_EQ(root.kernels()->Get(0)->grid(), 1u);
  EXPECT_EQ(root.kernels()->Get(0)->shared_bytes(), 0u);
  // A cubin starts with the ELF magic when the build had ptxas.
  std::vector<uint8_t> cubin = toy::toyKernelsCubin();
  if (!cubin.empty()) {
    ASSERT_GE(cubin.size(), 4u);
    EXPECT_EQ(cubin[0], 0x7f);
    EXPECT_EQ(cubin[1], 'E');
  }
}

} // namespace
} // namespace compressa
