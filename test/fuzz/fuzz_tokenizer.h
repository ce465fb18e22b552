// SPDX-License-Identifier: Apache-2.0
// The tokenizer the chat and tokenizer fuzz targets drive: the repository's
// tiny one (models/tokenizers/tiny-768.json, COMPRESSA_TINY_TOKENIZER), loaded
// once per process.
#ifndef COMPRESSA_TEST_FUZZ_FUZZ_TOKENIZER_H
#define COMPRESSA_TEST_FUZZ_FUZZ_TOKENIZER_H

#include "runtime/tokenizer/tokenizer.h"

#include <cstdio>
#include <cstdlib>
#include <memory>

namespace compressa::fuzz {

inline const Tokenizer &tinyTokenizer() {
  static const Tokenizer *tok = [] {
    StatusOr<std::unique_ptr<Tokenizer>> loaded =
        Tokenizer::fromFile(COMPRESSA_TINY_TOKENIZER);
    if (!loaded.ok()) {
      std::fprintf(stderr, "fuzz: cannot load the tokenizer: %s\n",
                   loaded.status().toString().c_str());
      std::abort();
    }
    return std::move(loaded).value().release();
  }();
  return *tok;
}

} // namespace compressa::fuzz

#endif // COMPRESSA_TEST_FUZZ_FUZZ_TOKENIZER_H
