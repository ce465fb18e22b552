// SPDX-License-Identifier: Apache-2.0
// The toy model on the CUDA target: the artifact spec and the embedded code.
#include "runtime/testing/toy_cuda.h"

#include "runtime/testing/toy_kernels_embedded.h"

namespace compressa {
namespace toy {

std::string toyKernelsPtx() {
  // The embedded array ends with the NUL the generator appended.
  return std::string(reinterpret_cast<const char *>(embedded::kPtx),
                     sizeof(embedded::kPtx) - 1);
}

std::vector<uint8_t> toyKernelsCubin() {
  if (!embedded::kHaveCubin)
    return {};
  return std::vector<uint8_t>(embedded::kCubin,
                              embedded::kCubin + sizeof(embedded::kCubin) - 1);
}

ArtifactSpec toyCudaArtifactSpec(uint32_t prefillMaxTokens, bool withCubin) {
  ArtifactSpec spec = toyArtifactSpec(prefillMaxTokens);
  spec.target = fb::Target::Cuda;
  spec.hasCpu = false;
  spec.sharedObject.clear();
  spec.kernels[0].grid = 1;
  spec.kernels[0].block = 1;
  spec.kernels[1].grid = kHeadGrid;
  spec.kernels[1].block = kHeadBlock;
  spec.hasCuda = true;
  spec.cudaChip = "sm_90";
  spec.cudaPtx = toyKernelsPtx();
  if (withCubin)
    spec.cudaCubin = toyKernelsCubin();
  return spec;
}

} // namespace toy
} // namespace compressa
