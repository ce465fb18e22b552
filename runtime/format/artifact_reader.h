// SPDX-License-Identifier: Apache-2.0
// Reading Compressa artifacts (.cpa, schema runtime/format/artifact.fbs).
// A file is treated as hostile (STYLE.md C.7, C.10): it is read whole into
// memory, its identifier and SHA-256 digest are checked, its FlatBuffers
// structure is verified, then every index, size and offset the runtime will
// use, and every invariant between fields that the kernels rely on, is
// checked semantically. Only an Artifact that passed all of that is ever
// handed out, so its users may index its vectors without further checks.
#ifndef COMPRESSA_RUNTIME_FORMAT_ARTIFACT_READER_H
#define COMPRESSA_RUNTIME_FORMAT_ARTIFACT_READER_H

#include "runtime/base/status.h"
#include "runtime/format/artifact_generated.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace compressa {

/// The artifact version this runtime was built for; any other is refused.
inline constexpr uint32_t kArtifactVersion = 2;

/// The trailer that follows the FlatBuffer in a file (version 2): the
/// SHA-256 of every byte before it, then the tag "CPASHA2\0".
inline constexpr size_t kArtifactDigestBytes = 32;
/// The most sequences (ModelInfo.max_batch) an artifact may ask for.
inline constexpr uint32_t kMaxBatchLimit = 1024;
inline constexpr size_t kArtifactTrailerBytes = kArtifactDigestBytes + 8;
inline constexpr char kArtifactTrailerTag[9] = "CPASHA2";
using ArtifactDigest = std::array<uint8_t, kArtifactDigestBytes>;

/// SHA-256 of `size` bytes at `data` (OpenSSL libcrypto).
ArtifactDigest sha256(const void *data, size_t size);
/// Lower-case hex of `digest`.
std::string hexDigest(const ArtifactDigest &digest);
/// The file a writer stores for the FlatBuffer `data`: the bytes, then the
/// trailer with their digest.
std::vector<uint8_t> sealArtifact(const uint8_t *data, size_t size);

/// The most ranks (Artifact.ranks) an artifact may be spread over.
inline constexpr uint32_t kMaxRanks = 1024;

/// Largest artifact accepted: the FlatBuffers 2 GiB limit.
inline constexpr uint64_t kMaxArtifactBytes = FLATBUFFERS_MAX_BUFFER_SIZE - 1;

/// A verified artifact held in memory. Immutable; the flatbuffer views stay
/// valid while it lives.
class Artifact {
public:
  ~Artifact();
  Artifact(const Artifact &) = delete;
  Artifact &operator=(const Artifact &) = delete;

  /// The path (or name) the artifact was read from; errors start with it.
  const std::string &path() const { return sourcePath; }
  /// The verified root table.
  const fb::Artifact &root() const { return *rootTable; }
  /// The raw bytes of the file (the FlatBuffer, then the digest trailer).
  const uint8_t *data() const { return bytes; }
  size_t size() const { return numBytes; }
  /// The SHA-256 recorded in (and verified against) the trailer.
  const ArtifactDigest &digest() const { return fileDigest; }

  /// Shorthands for root() fields; model() is never null after validation.
  const fb::ModelInfo &model() const { return *rootTable->model(); }
  fb::Target target() const { return rootTable->target(); }
  /// "cpu" or "cuda".
  const char *targetName() const;

  /// The program called `name`, or nullptr.
  const fb::Program *findProgram(std::string_view name) const;
  /// The index in root().weights() of the weight called `name`, or -1.
  int64_t findWeight(std::string_view name) const;

  /// The weight name of expert `expert` of expert table `table`: its pattern
  /// with every '*' replaced by the decimal expert number.
  static std::string expertWeightName(std::string_view pattern,
                                      uint32_t expert);

private:
  friend class ArtifactReader;
  Artifact() = default;

  std::string sourcePath;
  uint8_t *bytes = nullptr; // malloc'ed; malloc's alignment suits FlatBuffers
  size_t numBytes = 0;
  ArtifactDigest fileDigest{};
  const fb::Artifact *rootTable = nullptr;
  std::unordered_map<std::string_view, const fb::Program *> programsByName;
  std::unordered_map<std::string_view, int64_t> weightsByName;
};

/// Rows of `state` (schema: State) that hold positions [0, positions): its
/// fixed rows plus positions / context_ratio; false on overflow.
bool stateRowsFor(const fb::State &state, uint64_t positions, uint64_t &rows);
/// The bytes `state` must have for a context of `maxContext` positions:
/// max(1, row_bytes * (rows + maxContext / context_ratio)). False when the
/// geometry is empty (row_bytes 0, or neither rows nor a ratio) or the size
/// overflows.
bool stateBytesFor(const fb::State &state, uint64_t maxContext,
                   uint64_t &bytes);

/// Loads artifacts: identifier, digest, FlatBuffers verification, version,
/// then semantic validation. Every error message starts with the path and names
/// the field and index at fault.
class ArtifactReader {
public:
  /// Reads and validates the file at `path`.
  static StatusOr<std::unique_ptr<Artifact>> readFile(const std::string &path);
  /// Validates `size` bytes at `data` (copied); `name` stands for the path in
  /// messages.
  static StatusOr<std::unique_ptr<Artifact>>
  readBuffer(const void *data, size_t size, const std::string &name);

private:
  static StatusOr<std::unique_ptr<Artifact>>
  adopt(std::unique_ptr<Artifact> artifact);
  static Status validate(Artifact &artifact);
};

} // namespace compressa

#endif // COMPRESSA_RUNTIME_FORMAT_ARTIFACT_READER_H
