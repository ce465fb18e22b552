// SPDX-License-Identifier: Apache-2.0
// FUZZ_CHECK, for the properties a libFuzzer target asserts about what a
// loader accepted; no dependency beyond the C library, so targets that do
// not link the runtime (the config parser) use it too.
#ifndef COMPRESSA_TEST_FUZZ_FUZZ_CHECK_H
#define COMPRESSA_TEST_FUZZ_FUZZ_CHECK_H

#include <cstdio>
#include <cstdlib>

/// A property that every accepted (or rejected) input must have does not
/// hold: print why and abort, which libFuzzer reports as a crash and saves
/// the input.
#define FUZZ_CHECK(cond, ...)                                                  \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: ", __FILE__,         \
                   __LINE__, #cond);                                           \
      std::fprintf(stderr, __VA_ARGS__);                                       \
      std::fprintf(stderr, "\n");                                              \
      std::abort();                                                            \
    }                                                                          \
  } while (false)

#endif // COMPRESSA_TEST_FUZZ_FUZZ_CHECK_H
