// SPDX-License-Identifier: Apache-2.0
// Artifacts compiled by a test, shared by the test processes of one ctest run.
//
// gtest_discover_tests runs every test case in a process of its own, so a
// per-process cache compiled tiny-a once per case (about 80 s on a CI core).
// With COMPRESSA_TEST_ARTIFACT_CACHE=DIR (set by ctest, see
// test/CMakeLists.txt: the fixture test_artifact_cache empties DIR before the
// first test that uses it and removes it after the last, so an artifact
// never outlives the compiler that made it) the first process to ask for a
// key compiles it into DIR while holding DIR/KEY.lock, the others wait on the
// lock and reuse the file. Without it (a test binary run by hand) each
// process compiles into its own directory, as before.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>

namespace compressa::testing {

/// The artifact of `key` (a file name: letters, digits, '-', '_'; it must
/// name every compile flag that differs between callers): DIR/KEY.cpa of the
/// shared cache, compiled by `compile(path)` (true on success) the first time
/// any process asks; "" when compiling failed. `ownDir` is this process's
/// directory, used without a shared cache.
inline std::string cachedArtifact(const std::string &key, const std::string &ownDir,
                                  const std::function<bool(const std::string &)> &compile) {
  auto alone = [&] { // this process's own artifact
    std::string out = ownDir + "/" + key + ".cpa";
    return compile(out) ? out : "";
  };
  const char *shared = std::getenv("COMPRESSA_TEST_ARTIFACT_CACHE");
  if (!shared || !*shared)
    return alone();
  std::filesystem::path dir(shared);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  std::string out = (dir / (key + ".cpa")).string();
  std::string lockPath = (dir / (key + ".lock")).string();
  int lock = ::open(lockPath.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (lock < 0)
    return alone();
  if (::flock(lock, LOCK_EX) != 0) {
    ::close(lock);
    return alone();
  }
  std::string result;
  if (std::filesystem::exists(out)) {
    result = out;
  } else {
    // Written under another name and renamed: a process that dies while
    // compiling leaves no half-written artifact under the key's name.
    std::string tmp = out + ".tmp" + std::to_string(::getpid());
    if (compile(tmp)) {
      std::filesystem::rename(tmp, out, ec);
      result = ec ? "" : out;
    }
    std::filesystem::remove(tmp, ec);
  }
  ::flock(lock, LOCK_UN);
  ::close(lock);
  return result;
}

} // namespace compressa::testing
