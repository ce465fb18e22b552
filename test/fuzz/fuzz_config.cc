// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the config.json parser (parseModelConfigText,
// frontend/Config/ConfigParser.cpp) on arbitrary bytes. Every rejection is
// an error whose message starts with the path; an accepted config is
// internally consistent.
#include "frontend/Config/ModelConfig.h"
#include "test/fuzz/fuzz_check.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace mlir::compressa;


extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  llvm::StringRef text(reinterpret_cast<const char *>(data), size);
  llvm::Expected<ModelConfig> config =
      parseModelConfigText(text, "fuzz/config.json");
  if (!config) {
    std::string message = llvm::toString(config.takeError());
    FUZZ_CHECK(llvm::StringRef(message).starts_with("fuzz/config.json: "),
               "the message does not start with the path: %s",
               message.c_str());
    return 0;
  }
  FUZZ_CHECK(static_cast<int64_t>(config->layers.size()) == config->numLayers,
             "%zu layers, numLayers %lld", config->layers.size(),
             static_cast<long long>(config->numLayers));
  FUZZ_CHECK(static_cast<int64_t>(config->mtpLayers.size()) ==
                 config->numMtpLayers,
             "%zu MTP layers, numMtpLayers %lld", config->mtpLayers.size(),
             static_cast<long long>(config->numMtpLayers));
  FUZZ_CHECK(config->numHashLayers() <= config->numLayers,
             "%lld hash layers of %lld",
             static_cast<long long>(config->numHashLayers()),
             static_cast<long long>(config->numLayers));
  int64_t kinds = config->countAttention(AttentionKind::Sliding) +
                  config->countAttention(AttentionKind::CSA) +
                  config->countAttention(AttentionKind::HCA);
  FUZZ_CHECK(kinds == config->numLayers, "attention kinds of %lld layers",
             static_cast<long long>(kinds));
  return 0;
}
