//===- Targets.cpp - The targets by name ---------------------------------===//
// SPDX-License-Identifier: Apache-2.0

#include "lowering/Target/CPU/CpuTarget.h"
#include "lowering/Target/CUDA/CudaTarget.h"
#include "lowering/Target/TargetInfo.h"

using namespace mlir;
using namespace mlir::compressa;

std::unique_ptr<TargetInfo> compressa::createTarget(StringRef spec,
                                                    std::string &error) {
  if (spec == "cpu")
    return std::make_unique<cpu::CpuTarget>();
  StringRef chip = spec;
  if (chip.consume_front("cuda:")) {
    int sm = cuda::smVersion(chip);
    if (sm < 80) {
      error = "unsupported CUDA chip '" + chip.str() +
              "' (expected sm_80 or newer, e.g. sm_90a)";
      return nullptr;
    }
    return std::make_unique<cuda::CudaTarget>(chip.str());
  }
  error = "unsupported target '" + spec.str() +
          "' (expected cpu or cuda:<chip>, e.g. cuda:sm_90a)";
  return nullptr;
}
