// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the tokenizer on arbitrary bytes. A fixed, good
// tokenizer (models/tokenizers/tiny-768.json) encodes the input; what must
// hold:
//  * encode fails exactly when the input is not valid UTF-8, and then names
//    a byte offset;
//  * every id is inside the vocabulary;
//  * the ids give the input back: decode(ids) == input, the concatenated
//    tokenBytes == input, and Utf8Stream reassembles it from those bytes.
#include "test/fuzz/fuzz_tokenizer.h"
#include "test/fuzz/fuzz_util.h"

#include "runtime/chat/chat_encoding.h"
#include "runtime/tokenizer/tokenizer.h"

using namespace compressa;


extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const Tokenizer &tok = fuzz::tinyTokenizer();
  std::string_view text(reinterpret_cast<const char *>(data), size);
  std::optional<size_t> invalid = findInvalidUtf8(text);
  StatusOr<std::vector<int64_t>> ids = tok.encode(text);
  if (invalid) {
    FUZZ_CHECK(!ids.ok(), "invalid UTF-8 at byte %zu was encoded", *invalid);
    fuzz::checkError(ids.status(), "encode");
    FUZZ_CHECK(ids.status().message().find(std::to_string(*invalid)) !=
                   std::string::npos,
               "the message does not name byte offset %zu: %s", *invalid,
               ids.status().message().c_str());
    return 0;
  }
  FUZZ_CHECK(ids.ok(), "valid UTF-8 of %zu bytes not encoded: %s", size,
             ids.status().toString().c_str());
  FUZZ_CHECK(size == 0 || !ids->empty(), "%zu bytes gave no ids", size);
  int64_t vocab = tok.vocabSize();
  std::string joined;
  Utf8Stream stream;
  std::string streamed;
  for (int64_t id : *ids) {
    FUZZ_CHECK(id >= 0 && id < vocab, "id %lld outside the vocabulary of %lld",
               static_cast<long long>(id), static_cast<long long>(vocab));
    StatusOr<std::string> bytes = tok.tokenBytes(id);
    FUZZ_CHECK(bytes.ok(), "tokenBytes(%lld): %s", static_cast<long long>(id),
               bytes.status().toString().c_str());
    joined += *bytes;
    streamed += stream.push(*bytes);
  }
  streamed += stream.finish();
  FUZZ_CHECK(joined == text, "the token bytes of %zu ids differ from the "
                             "input (%zu bytes, %zu joined)",
             ids->size(), size, joined.size());
  FUZZ_CHECK(streamed == text, "Utf8Stream gave %zu bytes for %zu",
             streamed.size(), size);
  StatusOr<std::string> decoded = tok.decode(ids->data(), ids->size());
  FUZZ_CHECK(decoded.ok(), "decode: %s", decoded.status().toString().c_str());
  FUZZ_CHECK(*decoded == text, "decode(encode(x)) != x (%zu bytes, %zu back)",
             size, decoded->size());
  return 0;
}
