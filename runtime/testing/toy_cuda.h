// SPDX-License-Identifier: Apache-2.0
// Test support (not part of libcompressa_runtime): the toy model of
// toy_artifact.h for the CUDA target. Its kernels are hand-written PTX
// (runtime/testing/toy_kernels.ptx) with the semantics of test_kernels.c, so
// a CUDA toy artifact must reproduce toyReferenceLogits() exactly.
#ifndef COMPRESSA_RUNTIME_TESTING_TOY_CUDA_H
#define COMPRESSA_RUNTIME_TESTING_TOY_CUDA_H

#include "runtime/testing/toy_artifact.h"

#include <cstdint>
#include <string>
#include <vector>

namespace compressa {
namespace toy {

/// The toy kernels' PTX text (without the terminating NUL; .c_str() adds it).
std::string toyKernelsPtx();
/// The same assembled for sm_90 by ptxas at build time; empty when the build
/// found no ptxas.
std::vector<uint8_t> toyKernelsCubin();

/// toy.head's launch geometry: 3 blocks of 256 threads, one per vocab entry.
inline constexpr uint32_t kHeadGrid = 3;
inline constexpr uint32_t kHeadBlock = 256;

/// toyArtifactSpec(prefillMaxTokens) retargeted to CUDA: no CPU code;
/// toy.embed runs 1 x 1, toy.head kHeadGrid x kHeadBlock; cuda code for chip
/// "sm_90" with the PTX, and with the cubin only when `withCubin` (without
/// it, the runtime must take the PTX JIT path).
ArtifactSpec toyCudaArtifactSpec(uint32_t prefillMaxTokens = 16,
                                 bool withCubin = false);

} // namespace toy
} // namespace compressa

#endif // COMPRESSA_RUNTIME_TESTING_TOY_CUDA_H
