// SPDX-License-Identifier: Apache-2.0
// Device code of the runtime itself (not of an artifact), compiled to PTX
// for sm_90 by nvcc at build time and embedded in libcompressa_runtime
// (runtime/CMakeLists.txt): the random weight generator of
// runtime/cuda/random_weights.h and the device-to-device copy that
// compressa-bench times as the bandwidth reference. Both take the artifact
// kernels' ABI: one .u64 parameter, the device address of their arguments.
#include "runtime/cuda/random_weights.h"

using namespace compressa;

/// argv: a RandomSpec. Grid-stride over its elements.
extern "C" __global__ void compressa_random_fill(const RandomSpec *spec) {
  RandomSpec s = *spec;
  uint8_t *dst = reinterpret_cast<uint8_t *>(s.dst);
  uint32_t size = randomElementBytes(s.kind);
  uint64_t stride = uint64_t(gridDim.x) * blockDim.x;
  for (uint64_t i = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
       i < s.count; i += stride)
    randomElement(s, s.first + i, dst + i * size);
}

/// The arguments of compressa_copy.
struct CopyArgs {
  uint64_t dst;
  uint64_t src;
  /// 16-byte words to copy.
  uint64_t words;
};

/// argv: a CopyArgs. 16-byte loads and stores, grid-stride.
extern "C" __global__ void compressa_copy(const CopyArgs *args) {
  CopyArgs a = *args;
  uint4 *dst = reinterpret_cast<uint4 *>(a.dst);
  const uint4 *src = reinterpret_cast<const uint4 *>(a.src);
  uint64_t stride = uint64_t(gridDim.x) * blockDim.x;
  for (uint64_t i = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
       i < a.words; i += stride)
    dst[i] = __ldg(src + i);
}
