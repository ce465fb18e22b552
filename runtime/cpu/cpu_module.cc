// SPDX-License-Identifier: Apache-2.0
// Loading a CPU artifact's shared object from memory: memfd_create + dlopen
// through /proc/self/fd, or a temporary file where that is unavailable.
#include "runtime/cpu/cpu_module.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

namespace compressa {

/// Writes all `size` bytes to `fd`.
static Status writeAll(int fd, const uint8_t *data, size_t size,
                       const std::string &name, const std::string &path) {
  size_t done = 0;
  while (done < size) {
    ssize_t wrote = ::write(fd, data + done, size - done);
    if (wrote < 0 && errno == EINTR)
      continue;
    if (wrote <= 0)
      return COMPRESSA_ERROR(Unavailable,
                             "%s: writing %zu bytes to %s: %s", name.c_str(),
                             size, path.c_str(),
                             wrote < 0 ? std::strerror(errno) : "no progress");
    done += static_cast<size_t>(wrote);
  }
  return okStatus();
}

#if defined(__x86_64__)
static constexpr uint16_t kHostMachine = EM_X86_64;
#elif defined(__aarch64__)
static constexpr uint16_t kHostMachine = EM_AARCH64;
#else
#error "CpuModule: unknown host machine"
#endif

/// Checks that `data` is a complete 64-bit little-endian ELF shared object
/// for this machine before dlopen() maps it: a truncated file would map
/// without complaint and fault later, when a kernel is looked up or run.
static Status checkElf(const uint8_t *data, size_t size,
                       const std::string &name) {
  const char *n = name.c_str();
  if (size < 4 || std::memcmp(data, ELFMAG, SELFMAG) != 0)
    return COMPRESSA_ERROR(DataLoss,
                           "%s: not an ELF shared object (%zu bytes starting "
                           "'%s')",
                           n, size,
                           printable(std::string_view(
                                         reinterpret_cast<const char *>(data),
                                         size < 4 ? size : 4))
                               .c_str());
  Elf64_Ehdr header;
  if (size < sizeof(header))
    return COMPRESSA_ERROR(DataLoss,
                           "%s: truncated ELF file (%zu bytes, shorter than "
                           "its header)",
                           n, size);
  std::memcpy(&header, data, sizeof(header));
  if (header.e_ident[EI_CLASS] != ELFCLASS64 ||
      header.e_ident[EI_DATA] != ELFDATA2LSB)
    return COMPRESSA_ERROR(DataLoss,
                           "%s: not a 64-bit little-endian ELF file", n);
  if (header.e_type != ET_DYN)
    return COMPRESSA_ERROR(DataLoss,
                           "%s: ELF type %u is not a shared object (ET_DYN)",
                           n, static_cast<unsigned>(header.e_type));
  if (header.e_machine != kHostMachine)
    return COMPRESSA_ERROR(DataLoss,
                           "%s: ELF machine %u does not match this host (%u)",
                           n, static_cast<unsigned>(header.e_machine),
                           static_cast<unsigned>(kHostMachine));
  if (header.e_phentsize != sizeof(Elf64_Phdr) ||
      header.e_phoff > size ||
      uint64_t(header.e_phnum) * sizeof(Elf64_Phdr) > size - header.e_phoff)
    return COMPRESSA_ERROR(DataLoss,
                           "%s: truncated ELF file (%zu bytes): the program "
                           "headers do not fit",
                           n, size);
  for (uint16_t i = 0; i < header.e_phnum; ++i) {
    Elf64_Phdr segment;
    std::memcpy(&segment, data + header.e_phoff + i * sizeof(Elf64_Phdr),
                sizeof(segment));
    if (segment.p_type != PT_LOAD && segment.p_type != PT_DYNAMIC)
      continue;
    if (segment.p_offset > size || segment.p_filesz > size - segment.p_offset)
      return COMPRESSA_ERROR(
          DataLoss,
          "%s: truncated ELF file (%zu bytes): segment %u needs bytes up to "
          "%llu",
          n, size, static_cast<unsigned>(i),
          static_cast<unsigned long long>(segment.p_offset +
                                          segment.p_filesz));
  }
  if (header.e_shoff != 0 &&
      (header.e_shoff > size ||
       uint64_t(header.e_shnum) * header.e_shentsize > size - header.e_shoff))
    return COMPRESSA_ERROR(DataLoss,
                           "%s: truncated ELF file (%zu bytes): the section "
                           "headers do not fit",
                           n, size);
  return okStatus();
}

/// The last dlerror() text, or `fallback`.
static std::string lastDlError(const char *fallback) {
  const char *text = ::dlerror();
  return text ? text : fallback;
}

StatusOr<std::unique_ptr<CpuModule>>
CpuModule::load(const uint8_t *data, size_t size, const std::string &name,
                LoadMethod method) {
  const char *n = name.c_str();
  COMPRESSA_RETURN_IF_ERROR(checkElf(data, size, name));
  std::unique_ptr<CpuModule> module(new CpuModule());
  module->name = name;

  // Preferred: an anonymous memory file, loaded by its /proc/self/fd name.
  int memfd = method == LoadMethod::Auto
                  ? ::memfd_create("compressa-kernels", MFD_CLOEXEC)
                  : -1;
  if (memfd >= 0) {
    module->fd = memfd;
    module->loadPath = "/proc/self/fd/" + std::to_string(memfd);
    COMPRESSA_RETURN_IF_ERROR(
        writeAll(memfd, data, size, name, "a memory file"));
    module->handle =
        ::dlopen(module->loadPath.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (module->handle)
      return module;
    std::string error = lastDlError("dlopen failed");
    // Without /proc the path does not exist: fall back to a temporary file.
    if (::access(module->loadPath.c_str(), F_OK) == 0)
      return COMPRESSA_ERROR(DataLoss, "%s: cannot load the shared object: %s",
                             n, error.c_str());
    ::close(memfd);
    module->fd = -1;
  }

  // Fallback: a temporary file, removed as soon as it is loaded.
  const char *tmp = std::getenv("TMPDIR");
  std::string dir = tmp && *tmp ? tmp : "/tmp";
  std::string pattern = dir + "/compressa-kernels-XXXXXX";
  int fd = ::mkstemp(pattern.data());
  if (fd < 0)
    return COMPRESSA_ERROR(Unavailable,
                           "%s: cannot create a temporary file in %s to load "
                           "the kernels: %s",
                           n, dir.c_str(), std::strerror(errno));
  module->fd = fd;
  module->loadPath = pattern;
  Status written = writeAll(fd, data, size, name, pattern);
  if (!written.ok()) {
    ::unlink(pattern.c_str());
    return written;
  }
  module->handle = ::dlopen(pattern.c_str(), RTLD_NOW | RTLD_LOCAL);
  std::string error = module->handle ? "" : lastDlError("dlopen failed");
  ::unlink(pattern.c_str());
  if (!module->handle)
    return COMPRESSA_ERROR(DataLoss, "%s: cannot load the shared object: %s",
                           n, error.c_str());
  return module;
}

CpuModule::~CpuModule() {
  if (handle)
    ::dlclose(handle);
  if (fd >= 0)
    ::close(fd);
}

StatusOr<CpuModule::KernelFn>
CpuModule::lookup(const std::string &symbol) const {
  const char *n = name.c_str();
  ::dlerror(); // Clear any earlier error.
  void *address = ::dlsym(handle, symbol.c_str());
  if (!address)
    return COMPRESSA_ERROR(NotFound,
                           "%s: kernel symbol '%s' is not exported by the "
                           "shared object",
                           n, printable(symbol).c_str());
  // dlsym also searches the object's dependencies (libc, ...); a kernel must
  // be defined by the object itself.
  Dl_info info{};
  struct link_map *map = nullptr;
  if (::dladdr(address, &info) == 0 ||
      ::dlinfo(handle, RTLD_DI_LINKMAP, &map) != 0 || !map ||
      !info.dli_fname || !map->l_name ||
      std::strcmp(info.dli_fname, map->l_name) != 0)
    return COMPRESSA_ERROR(NotFound,
                           "%s: kernel symbol '%s' is not defined by the "
                           "shared object (it resolves into %s)",
                           n, printable(symbol).c_str(),
                           info.dli_fname ? info.dli_fname : "another object");
  // POSIX guarantees that a dlsym result converts to a function pointer.
  KernelFn fn;
  static_assert(sizeof(fn) == sizeof(address), "function pointer size");
  std::memcpy(&fn, &address, sizeof(fn));
  return fn;
}

} // namespace compressa
