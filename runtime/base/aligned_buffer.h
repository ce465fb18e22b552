// SPDX-License-Identifier: Apache-2.0
// AlignedBuffer: zero-filled, page-aligned host memory that reports failure
// instead of aborting. The CPU backend's states, arenas and scratch.
#ifndef COMPRESSA_RUNTIME_BASE_ALIGNED_BUFFER_H
#define COMPRESSA_RUNTIME_BASE_ALIGNED_BUFFER_H

#include "runtime/base/status.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace compressa {

/// A zero-filled allocation, page-aligned (so 64-byte aligned), that reports
/// failure instead of aborting. Backed by anonymous pages: memory is only
/// committed when touched.
class AlignedBuffer {
public:
  AlignedBuffer() = default;
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer &&other) noexcept;
  AlignedBuffer &operator=(AlignedBuffer &&other) noexcept;
  AlignedBuffer(const AlignedBuffer &) = delete;
  AlignedBuffer &operator=(const AlignedBuffer &) = delete;

  /// `bytes` zeroed bytes (at least one is allocated, so data() is never
  /// null); ResourceExhausted naming `what` when memory runs out.
  static StatusOr<AlignedBuffer> allocate(uint64_t bytes,
                                          const std::string &what);

  uint8_t *data() const { return ptr; }
  uint64_t size() const { return bytes; }

private:
  static size_t mappedBytes(uint64_t bytes);

  uint8_t *ptr = nullptr;
  uint64_t bytes = 0;
};

} // namespace compressa

#endif // COMPRESSA_RUNTIME_BASE_ALIGNED_BUFFER_H
