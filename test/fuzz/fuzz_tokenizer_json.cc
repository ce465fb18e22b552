// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the tokenizer.json loader (Tokenizer::fromJson,
// runtime/tokenizer/tokenizer.h) on arbitrary bytes. A tokenizer it accepts
// is then used on a few fixed texts: every id it produces must be inside its
// vocabulary and decode without error.
#include "test/fuzz/fuzz_util.h"

#include "runtime/tokenizer/tokenizer.h"

using namespace compressa;

namespace {

constexpr std::string_view kTexts[] = {
    "Hello, world! 123 456789",
    "  leading spaces\n\nand\ttabs ",
    "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜></think>ok",
    "Ünïcödé 日本語 🙂 \xd8\xb9\xd8\xb1\xd8\xa8\xd9\x8a",
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  StatusOr<std::unique_ptr<Tokenizer>> loaded = Tokenizer::fromJson(
      std::string_view(reinterpret_cast<const char *>(data), size),
      "fuzz-tokenizer.json");
  if (!loaded.ok()) {
    fuzz::checkError(loaded.status(), "Tokenizer::fromJson");
    return 0;
  }
  const Tokenizer &tok = **loaded;
  int64_t vocab = tok.vocabSize();
  FUZZ_CHECK(vocab >= 0, "vocabSize %lld", static_cast<long long>(vocab));
  for (std::string_view text : kTexts) {
    StatusOr<std::vector<int64_t>> ids = tok.encode(text);
    if (!ids.ok()) {
      fuzz::checkError(ids.status(), "encode");
      continue;
    }
    for (int64_t id : *ids)
      FUZZ_CHECK(id >= 0 && id < vocab, "encode gave id %lld, vocab %lld",
                 static_cast<long long>(id), static_cast<long long>(vocab));
    StatusOr<std::string> back = tok.decode(ids->data(), ids->size());
    FUZZ_CHECK(back.ok(), "decode of encoded ids failed: %s",
               back.status().toString().c_str());
    for (int64_t id : *ids) {
      StatusOr<std::string> bytes = tok.tokenBytes(id);
      FUZZ_CHECK(bytes.ok(), "tokenBytes(%lld) failed: %s",
                 static_cast<long long>(id),
                 bytes.status().toString().c_str());
    }
    StatusOr<std::vector<std::string>> pieces = tok.preTokenize(text);
    if (!pieces.ok())
      fuzz::checkError(pieces.status(), "preTokenize");
  }
  // Ids inside the vocabulary give bytes or (for a hole in the ids) an
  // error with a message; ids outside are errors.
  for (int64_t id = 0; id < vocab && id < 300; ++id) {
    StatusOr<std::string> bytes = tok.tokenBytes(id);
    if (!bytes.ok())
      fuzz::checkError(bytes.status(), "tokenBytes");
  }
  fuzz::checkError(tok.tokenBytes(vocab).status(), "tokenBytes(vocabSize)");
  fuzz::checkError(tok.tokenBytes(-1).status(), "tokenBytes(-1)");
  int64_t outside[] = {vocab, -1};
  fuzz::checkError(tok.decode(outside, 1).status(), "decode(vocabSize)");
  if (std::optional<int64_t> id = tok.tokenId("<｜User｜>"))
    FUZZ_CHECK(*id >= 0 && *id < vocab, "tokenId gave %lld",
               static_cast<long long>(*id));
  return 0;
}
