// SPDX-License-Identifier: Apache-2.0
// The CUDA generator (runtime/cuda/random_weights.cu, embedded PTX) makes
// the same bytes as its host twin for every kind, at any offset and element
// range; the device copy reports a bandwidth. Needs a CUDA GPU; skips without
// one (COMPRESSA_REQUIRE_GPU=1: fails instead).
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/random_weights.h"
#include "runtime/testing/gpu_test.h"

#include <gtest/gtest.h>

#include <vector>

namespace compressa {
namespace {

std::vector<uint8_t> hostTwin(const RandomSpec &spec) {
  uint32_t size = randomElementBytes(spec.kind);
  std::vector<uint8_t> out(spec.count * size);
  for (uint64_t i = 0; i < spec.count; ++i)
    randomElement(spec, spec.first + i, out.data() + i * size);
  return out;
}

TEST(RandomWeightsGpuTest, DeviceBytesEqualTheHostTwin) {
  COMPRESSA_SKIP_WITHOUT_GPU();
  ASSERT_TRUE(CudaBackend::hasRuntimeKernels())
      << "built without nvcc: no runtime kernels";
  auto backend = CudaBackend::create("random_weights_gpu_test");
  ASSERT_TRUE(backend.ok()) << backend.status().toString();
  CudaBackend &b = **backend;
  auto buffer = b.allocate(uint64_t(8) << 20, "test buffer");
  ASSERT_TRUE(buffer.ok()) << buffer.status().toString();
  struct Case {
    uint32_t kind;
    float center, amplitude;
  };
  const Case cases[] = {{kRandomF32, 0.0f, 0.0541f},
                        {kRandomBF16, 1.0f, 0.05f},
                        {kRandomE4M3, 0, 0},
                        {kRandomE2M1, 0, 0},
                        {kRandomConst8, 0, 0},
                        {kRandomI64Index, 0, 0},
                        {kRandomStatePairs, 0, 0}};
  uint32_t tensor = 0;
  for (const Case &c : cases) {
    for (uint64_t first : {uint64_t(0), uint64_t(12345)}) {
      RandomSpec spec;
      spec.kind = c.kind;
      spec.center = c.center;
      spec.amplitude = c.amplitude;
      spec.key = randomStreamKey(11, tensor++);
      spec.first = first;
      spec.count = 100003; // not a multiple of the block
      spec.byteValue = 113;
      spec.rowLength = 6;
      spec.below = 256;
      uint64_t offset = 4096 + 256 * tensor;
      ASSERT_TRUE(b.generate(**buffer, offset, spec, "kind").ok());
      std::vector<uint8_t> want = hostTwin(spec), got(want.size());
      ASSERT_TRUE(b.read(got.data(), **buffer, offset, got.size(), "read").ok());
      EXPECT_EQ(got, want) << "kind " << c.kind << " first " << first;
    }
  }
  // Out of range: an error, not a write past the buffer.
  RandomSpec big;
  big.kind = kRandomF32;
  big.count = uint64_t(4) << 20;
  EXPECT_FALSE(b.generate(**buffer, 0, big, "too big").ok());
}

TEST(RandomWeightsGpuTest, DeviceCopyBandwidthIsMeasured) {
  COMPRESSA_SKIP_WITHOUT_GPU();
  auto backend = CudaBackend::create("random_weights_gpu_test");
  ASSERT_TRUE(backend.ok()) << backend.status().toString();
  auto gbps = (*backend)->measureCopyBandwidth(uint64_t(256) << 20, 3);
  ASSERT_TRUE(gbps.ok()) << gbps.status().toString();
  EXPECT_GT(*gbps, 50.0);
  std::printf("device copy: %.1f GB/s\n", *gbps);
}

} // namespace
} // namespace compressa
