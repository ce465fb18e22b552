// SPDX-License-Identifier: Apache-2.0
// AlignedBuffer on anonymous mmap pages.
#include "runtime/base/aligned_buffer.h"

#include <cerrno>
#include <cstring>
#include <limits>

#include <sys/mman.h>

namespace compressa {

AlignedBuffer::~AlignedBuffer() {
  if (ptr)
    ::munmap(ptr, mappedBytes(bytes));
}

AlignedBuffer::AlignedBuffer(AlignedBuffer &&other) noexcept
    : ptr(other.ptr), bytes(other.bytes) {
  other.ptr = nullptr;
  other.bytes = 0;
}

AlignedBuffer &AlignedBuffer::operator=(AlignedBuffer &&other) noexcept {
  if (this != &other) {
    if (ptr)
      ::munmap(ptr, mappedBytes(bytes));
    ptr = other.ptr;
    bytes = other.bytes;
    other.ptr = nullptr;
    other.bytes = 0;
  }
  return *this;
}

size_t AlignedBuffer::mappedBytes(uint64_t bytes) {
  return bytes ? static_cast<size_t>(bytes) : 1;
}

StatusOr<AlignedBuffer> AlignedBuffer::allocate(uint64_t bytes,
                                                const std::string &what) {
  AlignedBuffer buffer;
  if (bytes > std::numeric_limits<size_t>::max() / 2)
    return COMPRESSA_ERROR(ResourceExhausted,
                           "%s: %llu bytes do not fit the address space",
                           what.c_str(), static_cast<unsigned long long>(bytes));
  // Anonymous pages: page-aligned, zero-filled, and committed only when
  // touched, so a large arena costs nothing until a kernel uses it.
  void *memory = ::mmap(nullptr, mappedBytes(bytes), PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED)
    return COMPRESSA_ERROR(ResourceExhausted,
                           "%s: cannot allocate %llu bytes: %s", what.c_str(),
                           static_cast<unsigned long long>(bytes),
                           std::strerror(errno));
  buffer.ptr = static_cast<uint8_t *>(memory);
  buffer.bytes = bytes;
  return buffer;
}

} // namespace compressa
