// SPDX-License-Identifier: Apache-2.0
// The kernels of a CPU artifact: an ELF shared object carried inside the
// artifact (cpu.shared_object), loaded straight from memory and searched for
// the kernel entry points. Loading runs the object's initializers: an artifact
// is code, and must come from a compiler the user trusts.
#ifndef COMPRESSA_RUNTIME_CPU_CPU_MODULE_H
#define COMPRESSA_RUNTIME_CPU_CPU_MODULE_H

#include "runtime/base/status.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace compressa {

/// A loaded shared object of kernels. dlclose()d when destroyed: kernel
/// pointers obtained from it must not outlive it.
class CpuModule {
public:
  /// A CPU kernel: `void symbol(void **argv)` (artifact.fbs).
  using KernelFn = void (*)(void **);

  /// Where the bytes go before dlopen().
  enum class LoadMethod {
    /// A memory file, falling back to a temporary file where memfd_create
    /// or /proc is unavailable.
    Auto,
    /// Always a temporary file (the fallback; selectable for tests).
    TempFile,
  };

  /// Loads the `size` bytes at `data` as a shared object, after checking
  /// that they are a complete ELF shared object for this machine. They are
  /// written to an anonymous memory file (memfd_create) and dlopen()ed
  /// through /proc/self/fd with RTLD_NOW | RTLD_LOCAL; where that is
  /// unavailable, to a mkstemp file under $TMPDIR (or /tmp), unlinked once
  /// loaded. `name` (e.g. "model.cpa: cpu.shared_object") starts every error
  /// message.
  static StatusOr<std::unique_ptr<CpuModule>>
  load(const uint8_t *data, size_t size, const std::string &name,
       LoadMethod method = LoadMethod::Auto);

  ~CpuModule();
  CpuModule(const CpuModule &) = delete;
  CpuModule &operator=(const CpuModule &) = delete;

  /// The entry point called `symbol`, defined by this object itself (not by
  /// a library it links); a NotFound error naming the symbol otherwise.
  StatusOr<KernelFn> lookup(const std::string &symbol) const;

  /// The path the object was loaded from ("/proc/self/fd/N" or the name of
  /// the removed temporary file).
  const std::string &loadedFrom() const { return loadPath; }

private:
  CpuModule() = default;

  std::string name;
  std::string loadPath;
  void *handle = nullptr;
  /// The memory file, kept open while loaded so that its /proc/self/fd name
  /// cannot be reused (glibc matches already-loaded objects by name).
  int fd = -1;
};

} // namespace compressa

#endif // COMPRESSA_RUNTIME_CPU_CPU_MODULE_H
