// SPDX-License-Identifier: Apache-2.0
// Helpers shared by the libFuzzer targets of test/fuzz: a per-process scratch
// directory in memory (/dev/shm) for loaders that take paths, and FUZZ_CHECK
// for the properties a target asserts about what a loader accepted.
#ifndef COMPRESSA_TEST_FUZZ_FUZZ_UTIL_H
#define COMPRESSA_TEST_FUZZ_FUZZ_UTIL_H

#include "runtime/base/status.h"
#include "test/fuzz/fuzz_check.h"

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace compressa {
namespace fuzz {


/// Removes the files of `dir` (it holds no subdirectories) and `dir`.
inline void removeScratch(const std::string &dir) {
  if (DIR *d = ::opendir(dir.c_str())) {
    while (struct dirent *entry = ::readdir(d)) {
      std::string name = entry->d_name;
      if (name != "." && name != "..")
        ::unlink((dir + "/" + name).c_str());
    }
    ::closedir(d);
  }
  ::rmdir(dir.c_str());
}

/// A directory of this process in memory: under $COMPRESSA_FUZZ_SCRATCH when
/// set (scripts/ci-sanitize.sh removes it afterwards), else /dev/shm, else
/// $TMPDIR or /tmp. Created on first use, removed at a normal exit; the same
/// path for every input, so the loaders see stable names.
inline const std::string &scratchDir() {
  // Never destroyed: the atexit handler below runs after static destructors
  // registered later.
  static const std::string *dir = [] {
    std::string base;
    if (const char *env = std::getenv("COMPRESSA_FUZZ_SCRATCH"); env && *env)
      base = env;
    struct stat st;
    if (base.empty() &&
        ::stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode))
      base = "/dev/shm";
    if (base.empty()) {
      const char *tmp = std::getenv("TMPDIR");
      base = tmp && *tmp ? tmp : "/tmp";
    }
    std::string dir = base + "/compressa-fuzz-" +
                      std::to_string(static_cast<long>(::getpid()));
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      std::fprintf(stderr, "fuzz: cannot create %s: %s\n", dir.c_str(),
                   std::strerror(errno));
      std::abort();
    }
    std::atexit([] { removeScratch(scratchDir()); });
    return new std::string(dir);
  }();
  return *dir;
}

/// Replaces the file at `path` by `bytes`; aborts when the scratch directory
/// cannot be written (a broken harness, not a finding about the input).
inline void writeScratchFile(const std::string &path, std::string_view bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) {
      std::fprintf(stderr, "fuzz: short write to %s\n", path.c_str());
      std::abort();
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

/// Splits `data` at every occurrence of `separator`.
inline std::vector<std::string_view> split(std::string_view data,
                                           std::string_view separator) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t at = data.find(separator, start);
    if (at == std::string_view::npos) {
      parts.push_back(data.substr(start));
      return parts;
    }
    parts.push_back(data.substr(start, at - start));
    start = at + separator.size();
  }
}

/// Every error a loader returns must carry a message (the message is what
/// the user reads); an empty one is a finding.
inline void checkError(const Status &status, const char *what) {
  FUZZ_CHECK(!status.ok(), "%s: error expected", what);
  FUZZ_CHECK(!status.message().empty(), "%s: error %s has no message", what,
             statusCodeName(status.code()));
}

/// Reads every byte of [data, data + size) so that a view outside its
/// buffer faults (ASan reports heap overflows; mappings fault past EOF).
inline uint64_t touch(const uint8_t *data, size_t size) {
  uint64_t sum = 0;
  for (size_t i = 0; i < size; ++i)
    sum += data[i];
  return sum;
}

} // namespace fuzz
} // namespace compressa

#endif // COMPRESSA_TEST_FUZZ_FUZZ_UTIL_H
