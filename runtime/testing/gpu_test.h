// SPDX-License-Identifier: Apache-2.0
// Skipping GPU tests cleanly on machines without one (TOOLCHAIN.md §6): a
// test that needs a CUDA GPU starts with COMPRESSA_SKIP_WITHOUT_GPU(). It
// skips when libcuda.so.1 cannot be opened, cuInit fails or there is no
// device (loadCudaDriver's error is the reason shown), and fails instead when
// the environment sets COMPRESSA_REQUIRE_GPU=1 (GPU CI).
#ifndef COMPRESSA_RUNTIME_TESTING_GPU_TEST_H
#define COMPRESSA_RUNTIME_TESTING_GPU_TEST_H

#include "runtime/cuda/cuda_driver.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace compressa {
namespace toy {

/// Empty when a CUDA GPU is usable, else why not.
inline std::string gpuUnavailableReason() {
  StatusOr<const CudaDriver *> driver = loadCudaDriver();
  return driver.ok() ? std::string() : driver.status().message();
}

/// True when COMPRESSA_REQUIRE_GPU=1: a missing GPU is a failure.
inline bool gpuRequired() {
  const char *value = std::getenv("COMPRESSA_REQUIRE_GPU");
  return value && std::strcmp(value, "1") == 0;
}

} // namespace toy
} // namespace compressa

/// Skips the current test (or fails it under COMPRESSA_REQUIRE_GPU=1) when
/// no CUDA GPU is usable.
#define COMPRESSA_SKIP_WITHOUT_GPU()                                           \
  do {                                                                         \
    std::string compressaNoGpu_ = ::compressa::toy::gpuUnavailableReason();    \
    if (!compressaNoGpu_.empty()) {                                            \
      if (::compressa::toy::gpuRequired())                                     \
        FAIL() << "COMPRESSA_REQUIRE_GPU=1, but no GPU: " << compressaNoGpu_;  \
      GTEST_SKIP() << "no CUDA GPU: " << compressaNoGpu_;                      \
    }                                                                          \
  } while (false)

#endif // COMPRESSA_RUNTIME_TESTING_GPU_TEST_H
