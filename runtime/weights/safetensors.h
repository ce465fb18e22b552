// SPDX-License-Identifier: Apache-2.0
// Read-only, validated access to safetensors checkpoints: SafetensorsFile maps
// one file, WeightStore opens a checkpoint directory (one file or an index plus
// shards) and looks tensors up by name. Files are treated as hostile input.
//
// File layout (owner: the safetensors format; spec/deepseek-v4.md §2):
//   bytes [0, 8)        N, the header length, unsigned 64-bit little-endian
//   bytes [8, 8+N)      the header: a UTF-8 JSON object, maybe padded with
//                       trailing spaces. Each key is a tensor name mapping to
//                         {"dtype": "F32"|"BF16"|"F8_E4M3"|...,
//                          "shape": [d0, d1, ...],        non-negative ints
//                          "data_offsets": [begin, end]}  relative to 8+N
//                       except "__metadata__", an object of string -> string.
//                       N is at most 100,000,000 and the header starts with
//                       '{'.
//   bytes [8+N, EOF)    the data section; tensor bytes are row-major, little-
//                       endian, with no alignment guarantee. Sorted by
//                       data_offsets, the tensors tile it exactly: no gap
//                       before, between or after them, no overlap.
// A sharded checkpoint adds model.safetensors.index.json:
//   {"metadata": {...}, "weight_map": {"<tensor name>": "<shard file>", ...}}
#ifndef COMPRESSA_RUNTIME_WEIGHTS_SAFETENSORS_H
#define COMPRESSA_RUNTIME_WEIGHTS_SAFETENSORS_H

#include "runtime/base/status.h"
#include "runtime/weights/dtype.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace compressa {

/// One tensor of a mapped file. The bytes stay valid while the owning
/// SafetensorsFile (or WeightStore) lives.
struct TensorView {
  /// The tensor's name in the checkpoint.
  std::string name;
  DType dtype = DType::F32;
  /// Dimensions, outermost first; empty for a scalar.
  std::vector<int64_t> shape;
  /// First byte of the tensor; unaligned in general (use readUnaligned).
  const uint8_t *data = nullptr;
  /// Byte size, always numElements() * dtypeSize(dtype).
  size_t nbytes = 0;
  /// Path of the file the bytes live in.
  std::string_view file;

  /// Product of the shape (1 for a scalar).
  int64_t numElements() const;
};

/// "[24, 64]" for messages.
std::string formatShape(const std::vector<int64_t> &shape);

/// Largest header accepted, in bytes: the format's own limit (MAX_HEADER_SIZE
/// of the reference implementation); real checkpoints use a few MiB. Also
/// the largest model.safetensors.index.json read.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100000000;

/// A validated, memory-mapped (read-only) .safetensors file.
class SafetensorsFile {
public:
  /// Maps `path` and validates its header and every tensor entry as the
  /// reference loader does: header within the format's limit and starting
  /// with '{', __metadata__ a string -> string map, known dtype, non-negative
  /// shape without overflow, data_offsets matching the shape's byte size, the
  /// tensors tiling the data section exactly (sorted by offsets: each begins
  /// where the previous ends, the first at 0, the last ending at the end of
  /// the file). Errors name the path and the tensor, with the expected and
  /// the found values.
  static StatusOr<std::unique_ptr<SafetensorsFile>> open(std::string path);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile &) = delete;
  SafetensorsFile &operator=(const SafetensorsFile &) = delete;

  /// The path given to open().
  const std::string &path() const { return filePath; }
  /// Total file size in bytes.
  uint64_t fileSize() const { return mappedSize; }
  /// Number of tensors (excluding __metadata__).
  size_t numTensors() const { return tensorList.size(); }
  /// All tensors, in header order.
  const std::vector<TensorView> &tensors() const { return tensorList; }
  /// The tensor called `name`, or nullptr.
  const TensorView *find(std::string_view name) const;

private:
  SafetensorsFile() = default;
  Status parseHeader(std::string_view header, uint64_t dataStart);

  std::string filePath;
  const uint8_t *mapped = nullptr;
  uint64_t mappedSize = 0;
  std::vector<TensorView> tensorList;
  std::unordered_map<std::string_view, size_t> byName;
};

/// The weights of one checkpoint directory, looked up by tensor name.
class WeightStore {
public:
  /// File names looked for in the directory.
  static constexpr const char *kSingleFileName = "model.safetensors";
  static constexpr const char *kIndexFileName = "model.safetensors.index.json";

  /// Opens `directory`. If it holds model.safetensors.index.json, the shards
  /// that its "weight_map" names are opened and cross-checked: every shard
  /// exists, every mapped tensor is in its shard, every shard tensor is mapped
  /// to that shard, no tensor is in two shards. Otherwise the directory must
  /// hold model.safetensors.
  static StatusOr<std::unique_ptr<WeightStore>> open(std::string directory);

  /// The directory given to open().
  const std::string &directory() const { return dirPath; }
  /// Number of tensors over all files.
  size_t numTensors() const { return byName.size(); }
  /// All tensor names, sorted.
  std::vector<std::string> names() const;
  /// The tensor called `name`, or nullptr.
  const TensorView *find(std::string_view name) const;
  /// The tensor called `name`, or a NotFound error naming the directory.
  StatusOr<const TensorView *> lookup(std::string_view name) const;
  /// The opened files (one, or the shards in index order of first mention).
  const std::vector<std::unique_ptr<SafetensorsFile>> &files() const {
    return fileList;
  }

private:
  WeightStore() = default;
  Status openIndexed(const std::string &indexPath);

  std::string dirPath;
  std::vector<std::unique_ptr<SafetensorsFile>> fileList;
  std::unordered_map<std::string_view, const TensorView *> byName;
};

} // namespace compressa

#endif // COMPRESSA_RUNTIME_WEIGHTS_SAFETENSORS_H
