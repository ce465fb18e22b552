// SPDX-License-Identifier: Apache-2.0
// Writing safetensors files (layout: runtime/weights/safetensors.h): whole
// files from tensors in memory, or streamed, header first and then the data
// of each tensor in order, for outputs too large to hold twice (logits dumps).
#ifndef COMPRESSA_RUNTIME_WEIGHTS_SAFETENSORS_WRITER_H
#define COMPRESSA_RUNTIME_WEIGHTS_SAFETENSORS_WRITER_H

#include "runtime/base/status.h"
#include "runtime/weights/dtype.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace compressa {

/// One tensor to write. `data` points at numElements * dtypeSize(dtype)
/// bytes (row-major, little-endian); the streaming writer ignores it.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void *data = nullptr;
};

/// String key/value pairs for the "__metadata__" object.
using SafetensorsMetadata = std::vector<std::pair<std::string, std::string>>;

/// The 8-byte length and the JSON header for `tensors` laid out back to back
/// in order, padded with spaces so that the data section starts at a multiple
/// of 8. Errors (InvalidArgument) for an empty or repeated name, the name
/// "__metadata__", a negative dimension or a byte size that overflows.
StatusOr<std::string> encodeSafetensorsHeader(
    const std::vector<TensorToWrite> &tensors,
    const SafetensorsMetadata &metadata = {});

/// Writes `path` holding `tensors` (with their `data`).
Status writeSafetensors(const std::string &path,
                        const std::vector<TensorToWrite> &tensors,
                        const SafetensorsMetadata &metadata = {});

/// A safetensors file written in pieces: create() writes the header, append()
/// the data bytes in tensor order, finish() checks that exactly the declared
/// bytes came and closes the file. A writer destroyed before a successful
/// finish() removes its partial file.
class SafetensorsWriter {
public:
  static StatusOr<std::unique_ptr<SafetensorsWriter>>
  create(const std::string &path, const std::vector<TensorToWrite> &tensors,
         const SafetensorsMetadata &metadata = {});
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter &) = delete;
  SafetensorsWriter &operator=(const SafetensorsWriter &) = delete;

  /// Appends `size` data bytes; an error if they exceed the declared total.
  Status append(const void *data, size_t size);
  /// Closes the file; an error if fewer bytes than declared were appended.
  Status finish();

  /// Data bytes declared by the header, and appended so far.
  uint64_t totalDataBytes() const { return expectedBytes; }
  uint64_t writtenDataBytes() const { return writtenBytes; }

private:
  SafetensorsWriter() = default;
  Status writeRaw(const void *data, size_t size);

  std::string filePath;
  int fd = -1;
  uint64_t expectedBytes = 0;
  uint64_t writtenBytes = 0;
  bool finished = false;
};

} // namespace compressa

#endif // COMPRESSA_RUNTIME_WEIGHTS_SAFETENSORS_WRITER_H
