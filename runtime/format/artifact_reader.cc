// SPDX-License-Identifier: Apache-2.0
// Artifact loading: read, identify, verify (FlatBuffers), check the version,
// then validate every index, size and offset that the runtime will use.
#include "runtime/format/artifact_reader.h"

#include "runtime/base/file.h"
#include "runtime/weights/dtype.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <string>

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

namespace compressa {

//===----------------------------------------------------------------------===//
// Digest
//===----------------------------------------------------------------------===//

ArtifactDigest sha256(const void *data, size_t size) {
  ArtifactDigest digest{};
  unsigned int length = 0;
  // EVP_Digest is one-shot; SHA-256 is always available in libcrypto. A
  // failure (out of memory) leaves an all-zero digest, which no file
  // matches, so the artifact is refused rather than trusted.
  if (!EVP_Digest(data, size, digest.data(), &length, EVP_sha256(), nullptr) ||
      length != digest.size())
    digest.fill(0);
  return digest;
}

std::string hexDigest(const ArtifactDigest &digest) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * digest.size());
  for (uint8_t byte : digest) {
    out += kHex[byte >> 4];
    out += kHex[byte & 15];
  }
  return out;
}

std::vector<uint8_t> sealArtifact(const uint8_t *data, size_t size) {
  std::vector<uint8_t> out(data, data + size);
  ArtifactDigest digest = sha256(data, size);
  out.insert(out.end(), digest.begin(), digest.end());
  out.insert(out.end(), kArtifactTrailerTag, kArtifactTrailerTag + 8);
  return out;
}

//===----------------------------------------------------------------------===//
// Artifact
//===----------------------------------------------------------------------===//

Artifact::~Artifact() { std::free(bytes); }

const char *Artifact::targetName() const {
  switch (target()) {
  case fb::Target::Cpu:
    return "cpu";
  case fb::Target::Cuda:
    return "cuda";
  }
  return "unknown";
}

const fb::Program *Artifact::findProgram(std::string_view name) const {
  auto it = programsByName.find(name);
  return it == programsByName.end() ? nullptr : it->second;
}

int64_t Artifact::findWeight(std::string_view name) const {
  auto it = weightsByName.find(name);
  return it == weightsByName.end() ? -1 : it->second;
}

std::string Artifact::expertWeightName(std::string_view pattern,
                                       uint32_t expert) {
  std::string number = std::to_string(expert);
  std::string out;
  out.reserve(pattern.size() + number.size());
  for (char c : pattern) {
    if (c == '*')
      out += number;
    else
      out += c;
  }
  return out;
}

bool stateRowsFor(const fb::State &state, uint64_t positions,
                  uint64_t &rows) {
  uint64_t ratio = state.context_ratio();
  return !__builtin_add_overflow(state.rows(),
                                 ratio ? positions / ratio : 0, &rows);
}

bool stateBytesFor(const fb::State &state, uint64_t maxContext,
                   uint64_t &bytes) {
  uint64_t rows;
  if (state.row_bytes() == 0 || (state.rows() == 0 && !state.context_ratio()) ||
      !stateRowsFor(state, maxContext, rows) ||
      __builtin_mul_overflow(rows, state.row_bytes(), &bytes))
    return false;
  // Entries of a ratio larger than the context never exist; the compiler
  // keeps 1 byte so that the allocation is valid.
  bytes = bytes ? bytes : 1;
  return true;
}

//===----------------------------------------------------------------------===//
// Reading
//===----------------------------------------------------------------------===//

StatusOr<std::unique_ptr<Artifact>>
ArtifactReader::readFile(const std::string &path) {
  const char *p = path.c_str();
  COMPRESSA_ASSIGN_OR_RETURN(ReadOnlyFile input, ReadOnlyFile::open(path));
  uint64_t size = input.size();
  if (size > kMaxArtifactBytes) {
    return COMPRESSA_ERROR(DataLoss,
                           "%s: file is %llu bytes, larger than the %llu-byte "
                           "FlatBuffers limit; not a Compressa artifact",
                           p, static_cast<unsigned long long>(size),
                           static_cast<unsigned long long>(kMaxArtifactBytes));
  }
  std::unique_ptr<Artifact> artifact(new Artifact());
  artifact->sourcePath = path;
  artifact->numBytes = static_cast<size_t>(size);
  artifact->bytes = static_cast<uint8_t *>(std::malloc(size ? size : 1));
  if (!artifact->bytes) {
    return COMPRESSA_ERROR(ResourceExhausted,
                           "%s: cannot allocate %llu bytes to read the file", p,
                           static_cast<unsigned long long>(size));
  }
  size_t done = 0;
  while (done < artifact->numBytes) {
    ssize_t got =
        ::read(input.fd(), artifact->bytes + done, artifact->numBytes - done);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0) {
      int err = got < 0 ? errno : 0;
        return COMPRESSA_ERROR(DataLoss, "%s: read %zu of %zu bytes: %s", p,
                             done, artifact->numBytes,
                             err ? std::strerror(err)
                                 : "unexpected end of file");
    }
    done += static_cast<size_t>(got);
  }
  input.close();
  return adopt(std::move(artifact));
}

StatusOr<std::unique_ptr<Artifact>>
ArtifactReader::readBuffer(const void *data, size_t size,
                           const std::string &name) {
  if (size > kMaxArtifactBytes)
    return COMPRESSA_ERROR(DataLoss,
                           "%s: buffer is %zu bytes, larger than the %llu-byte "
                           "FlatBuffers limit",
                           name.c_str(), size,
                           static_cast<unsigned long long>(kMaxArtifactBytes));
  std::unique_ptr<Artifact> artifact(new Artifact());
  artifact->sourcePath = name;
  artifact->numBytes = size;
  artifact->bytes = static_cast<uint8_t *>(std::malloc(size ? size : 1));
  if (!artifact->bytes)
    return COMPRESSA_ERROR(ResourceExhausted, "%s: cannot allocate %zu bytes",
                           name.c_str(), size);
  if (size)
    std::memcpy(artifact->bytes, data, size);
  return adopt(std::move(artifact));
}

StatusOr<std::unique_ptr<Artifact>>
ArtifactReader::adopt(std::unique_ptr<Artifact> artifact) {
  const char *p = artifact->sourcePath.c_str();
  const uint8_t *buf = artifact->bytes;
  size_t size = artifact->numBytes;

  // Step 1. The identifier, at bytes [4, 8) after the root offset.
  if (size < 8)
    return COMPRESSA_ERROR(DataLoss,
                           "%s: corrupt or truncated artifact (%zu bytes, "
                           "shorter than a FlatBuffers header)",
                           p, size);
  if (!fb::ArtifactBufferHasIdentifier(buf))
    return COMPRESSA_ERROR(
        InvalidArgument,
        "%s: not a Compressa artifact (file identifier '%s', expected '%s')", p,
        printable(std::string_view(reinterpret_cast<const char *>(buf) + 4, 4))
            .c_str(),
        fb::ArtifactIdentifier());

  flatbuffers::Verifier::Options options;
  options.max_depth = 64;
  options.max_tables = 1u << 26;
  auto verified = [&](size_t bytes) {
    flatbuffers::Verifier verifier(buf, bytes, options);
    return fb::VerifyArtifactBuffer(verifier);
  };
  auto versionError = [&](uint32_t version) {
    return COMPRESSA_ERROR(Unimplemented,
                           "%s: artifact version %u is not supported; this "
                           "runtime reads version %u only (recompile the model "
                           "with a matching compressa-compile)",
                           p, version, kArtifactVersion);
  };

  // Step 2. The digest trailer, checked before any byte of the FlatBuffer
  // is interpreted (nothing is mapped or loaded before this either).
  bool hasTrailer =
      size >= 8 + kArtifactTrailerBytes &&
      std::memcmp(buf + size - 8, kArtifactTrailerTag, 8) == 0;
  if (!hasTrailer) {
    // Versions before 2 have no trailer: say which version it is when the
    // whole file is a FlatBuffer, else that it is corrupt or truncated.
    if (!verified(size))
      return COMPRESSA_ERROR(DataLoss,
                             "%s: corrupt or truncated artifact (FlatBuffers "
                             "verification failed)",
                             p);
    uint32_t version = fb::GetArtifact(buf)->version();
    if (version != kArtifactVersion)
      return versionError(version);
    return COMPRESSA_ERROR(DataLoss,
                           "%s: corrupt or truncated artifact (the %zu-byte "
                           "digest trailer ending in '%s' is missing)",
                           p, kArtifactTrailerBytes, kArtifactTrailerTag);
  }
  size_t body = size - kArtifactTrailerBytes;
  std::memcpy(artifact->fileDigest.data(), buf + body, kArtifactDigestBytes);
  ArtifactDigest found = sha256(buf, body);
  if (found != artifact->fileDigest)
    return COMPRESSA_ERROR(DataLoss,
                           "%s: artifact is corrupt or was modified: digest "
                           "(SHA-256 of bytes 0..%zu) expected %s, found %s",
                           p, body, hexDigest(artifact->fileDigest).c_str(),
                           hexDigest(found).c_str());

  // Step 3. Structural verification: every offset, vector and string lies
  // inside the FlatBuffer. Nothing is read from the tables before this passes.
  if (!verified(body))
    return COMPRESSA_ERROR(DataLoss,
                           "%s: corrupt or truncated artifact (FlatBuffers "
                           "verification failed)",
                           p);
  artifact->rootTable = fb::GetArtifact(buf);

  // Step 4. The version, before any field whose meaning it governs.
  uint32_t version = artifact->rootTable->version();
  if (version != kArtifactVersion)
    return versionError(version);

  // Step 5. Semantic validation.
  COMPRESSA_RETURN_IF_ERROR(validate(*artifact));
  return artifact;
}

//===----------------------------------------------------------------------===//
// Semantic validation
//===----------------------------------------------------------------------===//

namespace {

/// `str` as a string_view; empty for an absent string.
std::string_view view(const flatbuffers::String *str) {
  return str ? std::string_view(str->c_str(), str->size()) : std::string_view();
}

/// `str` quoted for messages.
std::string quoted(const flatbuffers::String *str) {
  return "'" + printable(view(str), 80) + "'";
}

template <class T> uint32_t sizeOf(const flatbuffers::Vector<T> *vec) {
  return vec ? vec->size() : 0;
}

/// True when the elements of `vec` (absent or empty counts as aligned) sit
/// at an 8-byte aligned address; the buffer itself is malloc-aligned.
bool aligned8(const flatbuffers::Vector<int64_t> *vec) {
  return !vec || vec->size() == 0 ||
         reinterpret_cast<uintptr_t>(vec->data()) % 8 == 0;
}

/// `a * b + c`, or false on overflow.
bool mulAdd(uint64_t a, uint64_t b, uint64_t c, uint64_t &out) {
  uint64_t product;
  if (__builtin_mul_overflow(a, b, &product))
    return false;
  return !__builtin_add_overflow(product, c, &out);
}

const char *argKindName(fb::ArgKind kind) {
  if (kind > fb::ArgKind::MAX)
    return "unknown";
  return fb::EnumNameArgKind(kind);
}

bool isIntegerDType(DType type) {
  return type == DType::I64 || type == DType::I32 || type == DType::I16 ||
         type == DType::I8 || type == DType::U8;
}

/// The on-disk bytes of a tensor of `dtype` and `shape`; false on overflow
/// or a dtype that is not a safetensors dtype.
bool tensorBytes(uint64_t elementBytes,
                 const flatbuffers::Vector<int64_t> *shape, uint64_t &out) {
  uint64_t bytes = elementBytes;
  for (uint32_t d = 0; d < sizeOf(shape); ++d)
    if (shape->Get(d) < 0 ||
        __builtin_mul_overflow(bytes, uint64_t(shape->Get(d)), &bytes))
      return false;
  out = bytes;
  return true;
}

bool tensorBytes(const flatbuffers::String *dtype,
                 const flatbuffers::Vector<int64_t> *shape, uint64_t &out) {
  std::optional<DType> type = parseDType(view(dtype));
  return type && tensorBytes(dtypeSize(*type), shape, out);
}

/// Checks argument `arg` of a launch against parameter `param` of its
/// kernel's signature; `x` names the argument.
Status checkArgAgainstParam(const Artifact &artifact,
                            const fb::Program &program, const fb::Kernel &kernel,
                            const fb::Arg &arg, const fb::Param &param,
                            uint32_t slot, const char *x) {
  const fb::Artifact &root = artifact.root();
  std::string k = quoted(kernel.name());
  if (arg.kind() != param.kind())
    return COMPRESSA_ERROR(DataLoss,
                           "%s: argument kind %s, but kernel %s expects %s in "
                           "slot %u",
                           x, argKindName(arg.kind()), k.c_str(),
                           argKindName(param.kind()), slot);
  uint32_t index = arg.index();
  auto mismatch = [&](const char *what, const std::string &name,
                      unsigned long long found,
                      unsigned long long expected) -> Status {
    return COMPRESSA_ERROR(DataLoss,
                           "%s: %s %s has %llu %s, but kernel %s expects %llu "
                           "in slot %u",
                           x, argKindName(arg.kind()), name.c_str(), found,
                           what, k.c_str(), expected, slot);
  };
  switch (arg.kind()) {
  case fb::ArgKind::Buffer: {
    const fb::Buffer &buffer = *program.buffers()->Get(index);
    uint64_t need;
    if (!mulAdd(param.bytes_per_token(), program.max_tokens(), param.bytes(),
                need))
      return COMPRESSA_ERROR(DataLoss,
                             "%s: kernel %s slot %u needs %llu bytes per token "
                             "* %u tokens + %llu bytes, which overflows 64 bits",
                             x, k.c_str(), slot,
                             static_cast<unsigned long long>(
                                 param.bytes_per_token()),
                             program.max_tokens(),
                             static_cast<unsigned long long>(param.bytes()));
    if (buffer.bytes() < need)
      return COMPRESSA_ERROR(
          DataLoss,
          "%s: Buffer %u (%s) has %llu bytes, but kernel %s needs %llu in slot "
          "%u (%llu bytes per token * max_tokens %u + %llu)",
          x, index, quoted(buffer.name()).c_str(),
          static_cast<unsigned long long>(buffer.bytes()), k.c_str(),
          static_cast<unsigned long long>(need), slot,
          static_cast<unsigned long long>(param.bytes_per_token()),
          program.max_tokens(), static_cast<unsigned long long>(param.bytes()));
    return okStatus();
  }
  case fb::ArgKind::Weight:
  case fb::ArgKind::WeightScale: {
    const fb::Weight &weight = *root.weights()->Get(index);
    bool scale = arg.kind() == fb::ArgKind::WeightScale;
    // A scale is F8_E8M0: one byte per element.
    uint64_t bytes = 0;
    bool ok = scale ? tensorBytes(1, weight.scale_shape(), bytes)
                    : tensorBytes(weight.dtype(), weight.shape(), bytes);
    if (!ok || bytes != param.bytes())
      return mismatch("bytes", "weights[" + std::to_string(index) + "] (" +
                                   quoted(weight.name()) + ")",
                      ok ? bytes : ~0ull, param.bytes());
    return okStatus();
  }
  case fb::ArgKind::ExpertTable: {
    const fb::ExpertTable &table = *root.expert_tables()->Get(index);
    if (table.count() != param.bytes())
      return mismatch("experts",
                      "expert_tables[" + std::to_string(index) + "] (" +
                          quoted(table.pattern()) + ")",
                      table.count(), param.bytes());
    return okStatus();
  }
  case fb::ArgKind::State:
  case fb::ArgKind::StateTable: {
    const fb::State &state = *root.states()->Get(index);
    if (state.bytes() != param.bytes())
      return mismatch("bytes",
                      "states[" + std::to_string(index) + "] (" +
                          quoted(state.name()) + ")",
                      state.bytes(), param.bytes());
    return okStatus();
  }
  default:
    return okStatus();
  }
}

/// A TensorMap argument needs the CUDA target (the maps are CUtensorMaps).
Status validateTensorMap(const Artifact &artifact, const fb::Program &,
                         const fb::Kernel &kernel, const char *x) {
  if (artifact.root().target() != fb::Target::Cuda)
    return COMPRESSA_ERROR(DataLoss,
                           "%s: a TensorMap argument (kernel %s), but the "
                           "artifact's target is not cuda",
                           x, quoted(kernel.name()).c_str());
  return okStatus();
}

/// program.tensor_maps[index] as a TensorMap argument of `kernel` uses it:
/// an e4m3 matrix inside the weight or inside the kernel's scratch area.
Status validateTensorMapEntry(const Artifact &artifact,
                              const fb::Program &program,
                              const fb::Kernel &kernel, const fb::TensorMap &map,
                              uint32_t index, const char *x) {
  const fb::Artifact &root = artifact.root();
  std::string at = std::string(x) + ": tensor_maps[" + std::to_string(index) + "]";
  const char *w = at.c_str();
  uint64_t bytes;
  if (map.rows() < 1 || map.cols() < 16 || map.cols() % 16 != 0 ||
      __builtin_mul_overflow(map.rows(), map.cols(), &bytes))
    return COMPRESSA_ERROR(DataLoss,
                           "%s: %llu rows x %llu columns, expected rows >= 1 "
                           "and columns a positive multiple of 16",
                           w, static_cast<unsigned long long>(map.rows()),
                           static_cast<unsigned long long>(map.cols()));
  if (map.box_rows() != 0 && map.box_rows() != 64 && map.box_rows() != 128)
    return COMPRESSA_ERROR(DataLoss, "%s: box_rows %u, expected 64 or 128 (0 for 128)", w,
                           map.box_rows());
  switch (map.source()) {
  case fb::ArgKind::Weight: {
    if (map.index() >= sizeOf(root.weights()))
      return COMPRESSA_ERROR(OutOfRange,
                             "%s: weight index %u is out of range (the "
                             "artifact has %u weights)",
                             w, map.index(), sizeOf(root.weights()));
    const fb::Weight &weight = *root.weights()->Get(map.index());
    uint64_t weightBytes = 0;
    bool ok = tensorBytes(weight.dtype(), weight.shape(), weightBytes);
    if (view(weight.dtype()) != "F8_E4M3" || !ok || map.offset() != 0 ||
        bytes != weightBytes)
      return COMPRESSA_ERROR(DataLoss,
                             "%s: %llu x %llu e4m3 bytes at offset %llu of "
                             "weights[%u] (%s, %s), expected the whole F8_E4M3 "
                             "weight",
                             w, static_cast<unsigned long long>(map.rows()),
                             static_cast<unsigned long long>(map.cols()),
                             static_cast<unsigned long long>(map.offset()),
                             map.index(), quoted(weight.name()).c_str(),
                             std::string(view(weight.dtype())).c_str());
    return okStatus();
  }
  case fb::ArgKind::Scratch: {
    uint64_t area = 0, end;
    if (!mulAdd(kernel.scratch_bytes_per_token(), program.max_tokens(),
                kernel.scratch_bytes(), area) ||
        __builtin_add_overflow(map.offset(), bytes, &end) || end > area)
      return COMPRESSA_ERROR(DataLoss,
                             "%s: %llu bytes at offset %llu exceed the scratch "
                             "area of kernel %s (%llu bytes)",
                             w, static_cast<unsigned long long>(bytes),
                             static_cast<unsigned long long>(map.offset()),
                             quoted(kernel.name()).c_str(),
                             static_cast<unsigned long long>(area));
    return okStatus();
  }
  default:
    return COMPRESSA_ERROR(DataLoss,
                           "%s: source %s, expected Weight or Scratch", w,
                           argKindName(map.source()));
  }
}

/// Validates one launch of a program; `where` names it.
Status validateLaunch(const Artifact &artifact, const fb::Program &program,
                      const fb::Launch &launch, const std::string &where) {
  const fb::Artifact &root = artifact.root();
  const char *w = where.c_str();
  uint32_t numKernels = sizeOf(root.kernels());
  if (launch.kernel() >= numKernels)
    return COMPRESSA_ERROR(OutOfRange,
                           "%s: kernel index %u is out of range (the artifact "
                           "has %u kernels)",
                           w, launch.kernel(), numKernels);
  const fb::Kernel &kernel = *root.kernels()->Get(launch.kernel());
  const flatbuffers::Vector<flatbuffers::Offset<fb::Arg>> *args = launch.args();
  const auto *params = kernel.params(); // Present: checked before programs.
  if (sizeOf(args) != sizeOf(params))
    return COMPRESSA_ERROR(DataLoss,
                           "%s: %u arguments, but kernel %s (kernels[%u]) "
                           "takes %u",
                           w, sizeOf(args), quoted(kernel.name()).c_str(),
                           launch.kernel(), sizeOf(params));
  for (uint32_t a = 0; a < sizeOf(args); ++a) {
    const fb::Arg &arg = *args->Get(a);
    std::string at = where + ".args[" + std::to_string(a) + "]";
    const char *x = at.c_str();
    uint32_t index = arg.index();
    auto inRange = [&](uint32_t count, const char *owner,
                       const char *what) -> Status {
      if (index < count)
        return okStatus();
      return COMPRESSA_ERROR(OutOfRange,
                             "%s: %s index %u is out of range (%s has %u %s)",
                             x, argKindName(arg.kind()), index, owner, count,
                             what);
    };
    switch (arg.kind()) {
    case fb::ArgKind::Buffer:
      COMPRESSA_RETURN_IF_ERROR(
          inRange(sizeOf(program.buffers()), "the program", "buffers"));
      break;
    case fb::ArgKind::Weight:
      COMPRESSA_RETURN_IF_ERROR(
          inRange(sizeOf(root.weights()), "the artifact", "weights"));
      break;
    case fb::ArgKind::WeightScale: {
      COMPRESSA_RETURN_IF_ERROR(
          inRange(sizeOf(root.weights()), "the artifact", "weights"));
      const fb::Weight &weight = *root.weights()->Get(index);
      if (view(weight.scale()).empty())
        return COMPRESSA_ERROR(DataLoss,
                               "%s: WeightScale of weights[%u] (%s), which has "
                               "no scale",
                               x, index, quoted(weight.name()).c_str());
      break;
    }
    case fb::ArgKind::ExpertTable:
      COMPRESSA_RETURN_IF_ERROR(
          inRange(sizeOf(root.expert_tables()), "the artifact",
                  "expert_tables"));
      break;
    case fb::ArgKind::State:
    case fb::ArgKind::StateTable:
      COMPRESSA_RETURN_IF_ERROR(
          inRange(sizeOf(root.states()), "the artifact", "states"));
      break;
    case fb::ArgKind::Tokens:
    case fb::ArgKind::StartPos:
    case fb::ArgKind::Positions:
    case fb::ArgKind::SlotIds:
      break;
    case fb::ArgKind::LogitRows:
      // The batched decode program computes every row (its tokens are
      // sequences, each needs its logits).
      if (view(program.name()) == "decode_batch")
        return COMPRESSA_ERROR(DataLoss,
                               "%s: a LogitRows argument (kernel %s) in the "
                               "batched decode program, which computes every "
                               "row",
                               x, quoted(kernel.name()).c_str());
      break;
    case fb::ArgKind::Scratch: {
      uint64_t bytes;
      if (!mulAdd(kernel.scratch_bytes_per_token(), program.max_tokens(),
                  kernel.scratch_bytes(), bytes))
        return COMPRESSA_ERROR(
            DataLoss,
            "%s: scratch of kernel %s (%llu bytes per token * %u tokens + "
            "%llu bytes) overflows 64 bits",
            x, quoted(kernel.name()).c_str(),
            static_cast<unsigned long long>(kernel.scratch_bytes_per_token()),
            program.max_tokens(),
            static_cast<unsigned long long>(kernel.scratch_bytes()));
      break;
    }
    case fb::ArgKind::TensorMap:
      COMPRESSA_RETURN_IF_ERROR(validateTensorMap(artifact, program, kernel, x));
      COMPRESSA_RETURN_IF_ERROR(
          inRange(sizeOf(program.tensor_maps()), "the program", "tensor_maps"));
      COMPRESSA_RETURN_IF_ERROR(validateTensorMapEntry(
          artifact, program, kernel, *program.tensor_maps()->Get(index), index, x));
      break;
    default:
      return COMPRESSA_ERROR(DataLoss, "%s: argument kind %u is unknown", x,
                             static_cast<unsigned>(arg.kind()));
    }
    COMPRESSA_RETURN_IF_ERROR(checkArgAgainstParam(
        artifact, program, kernel, arg, *params->Get(a), a, x));
  }
  return okStatus();
}

/// Validates one program; `where` names it.
Status validateProgram(const Artifact &artifact, const fb::Program &program,
                       const std::string &where) {
  const char *w = where.c_str();
  uint64_t vocab = artifact.model().vocab_size();
  if (program.max_tokens() < 1)
    return COMPRESSA_ERROR(DataLoss, "%s: max_tokens is 0, expected >= 1", w);
  uint64_t arena = program.arena_bytes();
  const auto *buffers = program.buffers();
  uint32_t numBuffers = sizeOf(buffers);
  for (uint32_t b = 0; b < numBuffers; ++b) {
    const fb::Buffer &buffer = *buffers->Get(b);
    uint64_t end;
    if (__builtin_add_overflow(buffer.offset(), buffer.bytes(), &end) ||
        end > arena)
      return COMPRESSA_ERROR(
          DataLoss,
          "%s: buffers[%u] (%s): offset %llu + bytes %llu exceeds the arena "
          "of %llu bytes",
          w, b, quoted(buffer.name()).c_str(),
          static_cast<unsigned long long>(buffer.offset()),
          static_cast<unsigned long long>(buffer.bytes()),
          static_cast<unsigned long long>(arena));
  }

  if (program.input_ids() >= numBuffers)
    return COMPRESSA_ERROR(OutOfRange,
                           "%s: input_ids buffer index %u is out of range (the "
                           "program has %u buffers)",
                           w, program.input_ids(), numBuffers);
  uint64_t idBytes = uint64_t(program.max_tokens()) * 8;
  const fb::Buffer &ids = *buffers->Get(program.input_ids());
  if (ids.bytes() < idBytes)
    return COMPRESSA_ERROR(DataLoss,
                           "%s: input_ids buffer %u (%s) has %llu bytes, fewer "
                           "than max_tokens %u * 8",
                           w, program.input_ids(), quoted(ids.name()).c_str(),
                           static_cast<unsigned long long>(ids.bytes()),
                           program.max_tokens());

  if (program.logits() >= numBuffers)
    return COMPRESSA_ERROR(OutOfRange,
                           "%s: logits buffer index %u is out of range (the "
                           "program has %u buffers)",
                           w, program.logits(), numBuffers);
  uint64_t logitBytes;
  if (!mulAdd(uint64_t(program.max_tokens()) * vocab, 4, 0, logitBytes))
    return COMPRESSA_ERROR(DataLoss,
                           "%s: max_tokens %u * vocab_size %llu * 4 overflows "
                           "64 bits",
                           w, program.max_tokens(),
                           static_cast<unsigned long long>(vocab));
  const fb::Buffer &logits = *buffers->Get(program.logits());
  if (logits.bytes() < logitBytes)
    return COMPRESSA_ERROR(DataLoss,
                           "%s: logits buffer %u (%s) has %llu bytes, fewer "
                           "than max_tokens %u * vocab_size %llu * 4 = %llu",
                           w, program.logits(), quoted(logits.name()).c_str(),
                           static_cast<unsigned long long>(logits.bytes()),
                           program.max_tokens(),
                           static_cast<unsigned long long>(vocab),
                           static_cast<unsigned long long>(logitBytes));

  const auto *launches = program.launches();
  for (uint32_t l = 0; l < sizeOf(launches); ++l)
    COMPRESSA_RETURN_IF_ERROR(validateLaunch(
        artifact, program, *launches->Get(l),
        where + ".launches[" + std::to_string(l) + "]"));
  return okStatus();
}

} // namespace

/// A collective pseudo-kernel (artifact.fbs, Collective): no symbol, the
/// signature Tokens, StartPos, Scratch, Buffer in, Buffer out of f32 rows,
/// only in an artifact of several ranks.
static Status validateCollective(const fb::Artifact &root,
                                 const fb::Kernel &kernel, uint32_t k,
                                 const char *p) {
  std::string name = quoted(kernel.name());
  if (root.ranks() < 2)
    return COMPRESSA_ERROR(DataLoss,
                           "%s: kernels[%u] (%s) is a collective, but the "
                           "artifact has one rank",
                           p, k, name.c_str());
  if (!view(kernel.symbol()).empty())
    return COMPRESSA_ERROR(DataLoss,
                           "%s: kernels[%u] (%s) is a collective, but has "
                           "symbol %s",
                           p, k, name.c_str(), quoted(kernel.symbol()).c_str());
  const auto *params = kernel.params();
  const fb::ArgKind expected[] = {fb::ArgKind::Tokens, fb::ArgKind::StartPos,
                                  fb::ArgKind::Scratch, fb::ArgKind::Buffer,
                                  fb::ArgKind::Buffer};
  bool ok = params && params->size() == 5;
  for (uint32_t a = 0; ok && a < 5; ++a)
    ok = params->Get(a)->kind() == expected[a];
  if (ok) {
    uint64_t in = params->Get(3)->bytes_per_token();
    ok = in > 0 && in % 4 == 0 && params->Get(4)->bytes_per_token() == in &&
         params->Get(3)->bytes() == 0 && params->Get(4)->bytes() == 0;
  }
  if (!ok)
    return COMPRESSA_ERROR(DataLoss,
                           "%s: kernels[%u] (%s): a collective takes Tokens, "
                           "StartPos, Scratch and two Buffers of the same "
                           "f32 rows",
                           p, k, name.c_str());
  return okStatus();
}

/// rank < ranks; rank 0 of several carries ranks - 1 peers numbered 1..,
/// each a non-empty file (verified when it is opened); no other does.
static Status validateRanks(const fb::Artifact &root, const char *p) {
  uint32_t ranks = root.ranks();
  if (ranks > kMaxRanks)
    return COMPRESSA_ERROR(DataLoss, "%s: ranks is %u, more than %u", p, ranks,
                           kMaxRanks);
  if (root.rank() >= std::max<uint32_t>(ranks, 1))
    return COMPRESSA_ERROR(DataLoss, "%s: rank %u, but ranks is %u", p,
                           root.rank(), ranks);
  const auto *peers = root.peers();
  uint32_t expected = ranks > 1 && root.rank() == 0 ? ranks - 1 : 0;
  if (sizeOf(peers) != expected)
    return COMPRESSA_ERROR(DataLoss,
                           "%s: rank %u of %u carries %u peer artifacts, "
                           "expected %u",
                           p, root.rank(), ranks, sizeOf(peers), expected);
  for (uint32_t i = 0; i < sizeOf(peers); ++i) {
    const fb::RankArtifact &peer = *peers->Get(i);
    if (peer.rank() != i + 1 || sizeOf(peer.artifact()) == 0)
      return COMPRESSA_ERROR(DataLoss,
                             "%s: peers[%u] is rank %u with %u bytes, "
                             "expected rank %u and an artifact",
                             p, i, peer.rank(), sizeOf(peer.artifact()), i + 1);
  }
  return okStatus();
}

Status ArtifactReader::validate(Artifact &artifact) {
  const fb::Artifact &root = artifact.root();
  const std::string &path = artifact.path();
  const char *p = path.c_str();

  // The model.
  const fb::ModelInfo *model = root.model();
  if (!model)
    return COMPRESSA_ERROR(DataLoss, "%s: model is missing", p);
  if (model->vocab_size() == 0)
    return COMPRESSA_ERROR(DataLoss, "%s: model.vocab_size is 0", p);
  if (model->max_context() == 0)
    return COMPRESSA_ERROR(DataLoss, "%s: model.max_context is 0", p);
  if (model->max_batch() > kMaxBatchLimit)
    return COMPRESSA_ERROR(DataLoss,
                           "%s: model.max_batch is %u, more than the %u "
                           "sequences a runtime holds",
                           p, model->max_batch(), kMaxBatchLimit);

  if (const flatbuffers::String *n = root.numerics())
    if (n->string_view() != "exact" && n->string_view() != "fast" &&
        n->string_view() != "fast-decode")
      return COMPRESSA_ERROR(DataLoss,
                             "%s: numerics is '%s', expected exact, fast or fast-decode", p,
                             n->c_str());

  // The target and its code.
  if (root.target() > fb::Target::MAX)
    return COMPRESSA_ERROR(DataLoss, "%s: target %u is unknown", p,
                           static_cast<unsigned>(root.target()));
  if (root.target() == fb::Target::Cpu) {
    const fb::CpuCode *cpu = root.cpu();
    if (!cpu || sizeOf(cpu->shared_object()) == 0)
      return COMPRESSA_ERROR(DataLoss,
                             "%s: cpu.shared_object is empty, but the target "
                             "is cpu",
                             p);
  }

  // Kernels.
  const auto *kernels = root.kernels();
  for (uint32_t k = 0; k < sizeOf(kernels); ++k) {
    const fb::Kernel &kernel = *kernels->Get(k);
    if (kernel.collective() > fb::Collective::MAX)
      return COMPRESSA_ERROR(DataLoss,
                             "%s: kernels[%u] (%s): collective %u is unknown",
                             p, k, quoted(kernel.name()).c_str(),
                             static_cast<unsigned>(kernel.collective()));
    if (kernel.collective() != fb::Collective::None) {
      COMPRESSA_RETURN_IF_ERROR(validateCollective(root, kernel, k, p));
      continue;
    }
    if (view(kernel.symbol()).empty())
      return COMPRESSA_ERROR(DataLoss, "%s: kernels[%u] (%s): symbol is empty",
                             p, k, quoted(kernel.name()).c_str());
    // The signature every launch is checked against.
    if (!kernel.params())
      return COMPRESSA_ERROR(DataLoss,
                             "%s: kernels[%u] (%s): params (the kernel's "
                             "signature) is missing",
                             p, k, quoted(kernel.name()).c_str());
    for (uint32_t a = 0; a < kernel.params()->size(); ++a)
      if (kernel.params()->Get(a)->kind() > fb::ArgKind::MAX)
        return COMPRESSA_ERROR(DataLoss,
                               "%s: kernels[%u] (%s): params[%u] has unknown "
                               "kind %u",
                               p, k, quoted(kernel.name()).c_str(), a,
                               static_cast<unsigned>(
                                   kernel.params()->Get(a)->kind()));
  }

  // Weights: unique names, known dtypes, non-negative dimensions.
  const auto *weights = root.weights();
  for (uint32_t i = 0; i < sizeOf(weights); ++i) {
    const fb::Weight &weight = *weights->Get(i);
    std::string_view name = view(weight.name());
    if (name.empty())
      return COMPRESSA_ERROR(DataLoss, "%s: weights[%u].name is empty", p, i);
    if (!artifact.weightsByName.emplace(name, i).second)
      return COMPRESSA_ERROR(DataLoss,
                             "%s: weights[%u]: name %s is used by weights[%lld] "
                             "too",
                             p, i, quoted(weight.name()).c_str(),
                             static_cast<long long>(
                                 artifact.weightsByName[name]));
    if (!parseDType(view(weight.dtype())))
      return COMPRESSA_ERROR(DataLoss,
                             "%s: weights[%u] (%s): dtype %s is not a "
                             "safetensors dtype",
                             p, i, quoted(weight.name()).c_str(),
                             quoted(weight.dtype()).c_str());
    // The verifier checks a vector's length field alignment only; a
    // crafted file could misalign the 8-byte elements.
    if (!aligned8(weight.shape()) || !aligned8(weight.scale_shape()))
      return COMPRESSA_ERROR(DataLoss,
                             "%s: weights[%u] (%s): shape or scale_shape is "
                             "not 8-byte aligned",
                             p, i, quoted(weight.name()).c_str());
    for (uint32_t d = 0; d < sizeOf(weight.shape()); ++d)
      if (weight.shape()->Get(d) < 0)
        return COMPRESSA_ERROR(DataLoss,
                               "%s: weights[%u] (%s): shape[%u] is %lld, "
                               "expected >= 0",
                               p, i, quoted(weight.name()).c_str(), d,
                               static_cast<long long>(weight.shape()->Get(d)));
    for (uint32_t d = 0; d < sizeOf(weight.scale_shape()); ++d)
      if (weight.scale_shape()->Get(d) < 0)
        return COMPRESSA_ERROR(
            DataLoss,
            "%s: weights[%u] (%s): scale_shape[%u] is %lld, expected >= 0", p,
            i, quoted(weight.name()).c_str(), d,
            static_cast<long long>(weight.scale_shape()->Get(d)));
    if (weight.values_below() > 0 &&
        !isIntegerDType(*parseDType(view(weight.dtype()))))
      return COMPRESSA_ERROR(DataLoss,
                             "%s: weights[%u] (%s): values_below %llu on a "
                             "tensor of dtype %s, expected an integer dtype",
                             p, i, quoted(weight.name()).c_str(),
                             static_cast<unsigned long long>(
                                 weight.values_below()),
                             quoted(weight.dtype()).c_str());
  }

  // Ranks (expert parallelism): rank 0 carries the others' artifacts.
  COMPRESSA_RETURN_IF_ERROR(validateRanks(root, p));
  uint32_t ranks = std::max<uint32_t>(root.ranks(), 1);

  // Expert tables: every expert is a weight of the manifest.
  const auto *tables = root.expert_tables();
  for (uint32_t t = 0; t < sizeOf(tables); ++t) {
    const fb::ExpertTable &table = *tables->Get(t);
    // One rank of several holds n_routed_experts / ranks of them, from
    // rank * that on (the routing kernels still pick among all).
    if (ranks > 1 &&
        (uint64_t(table.count()) * ranks != model->n_routed_experts() ||
         table.first() != root.rank() * table.count()))
      return COMPRESSA_ERROR(DataLoss,
                             "%s: expert_tables[%u] (%s): experts %u..%u, but "
                             "rank %u of %u holds n_routed_experts (%u) / "
                             "ranks from rank * that",
                             p, t, quoted(table.pattern()).c_str(),
                             table.first(), table.first() + table.count(),
                             root.rank(), ranks, model->n_routed_experts());
    if (ranks == 1 && table.first() != 0)
      return COMPRESSA_ERROR(DataLoss,
                             "%s: expert_tables[%u] (%s): first is %u, but "
                             "the artifact has one rank",
                             p, t, quoted(table.pattern()).c_str(),
                             table.first());
    std::string_view pattern = view(table.pattern());
    if (pattern.find('*') == std::string_view::npos)
      return COMPRESSA_ERROR(DataLoss,
                             "%s: expert_tables[%u].pattern %s has no '*'", p,
                             t, quoted(table.pattern()).c_str());
    if (table.count() == 0)
      return COMPRESSA_ERROR(DataLoss, "%s: expert_tables[%u] (%s): count is 0",
                             p, t, quoted(table.pattern()).c_str());
    if (table.count() > sizeOf(weights))
      return COMPRESSA_ERROR(DataLoss,
                             "%s: expert_tables[%u] (%s): count %u exceeds the "
                             "%u weights of the manifest",
                             p, t, quoted(table.pattern()).c_str(),
                             table.count(), sizeOf(weights));
    // The routing kernels pick experts in [0, n_routed_experts).
    if (ranks == 1 && table.count() != model->n_routed_experts())
      return COMPRESSA_ERROR(DataLoss,
                             "%s: expert_tables[%u] (%s): count %u, but "
                             "model.n_routed_experts is %u",
                             p, t, quoted(table.pattern()).c_str(),
                             table.count(), model->n_routed_experts());
    for (uint32_t e = table.first(); e < table.first() + table.count(); ++e) {
      std::string name = Artifact::expertWeightName(pattern, e);
      if (artifact.findWeight(name) < 0)
        return COMPRESSA_ERROR(DataLoss,
                               "%s: expert_tables[%u] (%s): expert %u, weight "
                               "'%s', is not in the weights manifest",
                               p, t, quoted(table.pattern()).c_str(), e,
                               printable(name).c_str());
    }
  }

  // States.
  const auto *states = root.states();
  for (uint32_t s = 0; s < sizeOf(states); ++s) {
    const fb::State &state = *states->Get(s);
    if (state.init() > fb::StateInit::MAX)
      return COMPRESSA_ERROR(DataLoss, "%s: states[%u] (%s): init %u is unknown",
                             p, s, quoted(state.name()).c_str(),
                             static_cast<unsigned>(state.init()));
    if (state.init() == fb::StateInit::CompressorState && state.bytes() % 8)
      return COMPRESSA_ERROR(DataLoss,
                             "%s: states[%u] (%s): a CompressorState of %llu "
                             "bytes does not split into two f32 halves",
                             p, s, quoted(state.name()).c_str(),
                             static_cast<unsigned long long>(state.bytes()));
    // The size the kernels index, recomputed from the geometry and the
    // model's max_context: a state sized for a shorter context than the
    // artifact claims would be written past its end.
    uint64_t expected;
    if (!stateBytesFor(state, model->max_context(), expected))
      return COMPRESSA_ERROR(DataLoss,
                             "%s: states[%u] (%s): geometry row_bytes %llu, "
                             "rows %llu, context_ratio %u is empty or "
                             "overflows 64 bits (expected row_bytes > 0 and "
                             "rows > 0 or context_ratio > 0)",
                             p, s, quoted(state.name()).c_str(),
                             static_cast<unsigned long long>(state.row_bytes()),
                             static_cast<unsigned long long>(state.rows()),
                             state.context_ratio());
    if (state.bytes() != expected)
      return COMPRESSA_ERROR(
          DataLoss,
          "%s: states[%u] (%s) has %llu bytes, expected %llu (row_bytes %llu * "
          "(rows %llu + max_context %u / context_ratio %u))",
          p, s, quoted(state.name()).c_str(),
          static_cast<unsigned long long>(state.bytes()),
          static_cast<unsigned long long>(expected),
          static_cast<unsigned long long>(state.row_bytes()),
          static_cast<unsigned long long>(state.rows()), model->max_context(),
          state.context_ratio());
  }

  // Programs.
  const auto *programs = root.programs();
  for (uint32_t i = 0; i < sizeOf(programs); ++i) {
    const fb::Program &program = *programs->Get(i);
    std::string_view name = view(program.name());
    if (name.empty())
      return COMPRESSA_ERROR(DataLoss, "%s: programs[%u].name is empty", p, i);
    if (!artifact.programsByName.emplace(name, &program).second)
      return COMPRESSA_ERROR(DataLoss,
                             "%s: programs[%u]: the name %s is used twice", p,
                             i, quoted(program.name()).c_str());
    COMPRESSA_RETURN_IF_ERROR(validateProgram(
        artifact, program,
        path + ": programs[" + std::to_string(i) + "] (" +
            quoted(program.name()) + ")"));
  }
  if (!artifact.findProgram("decode"))
    return COMPRESSA_ERROR(DataLoss, "%s: no program is named 'decode'", p);
  // The batched decode program runs one token of each of up to max_batch
  // slots per call.
  if (const fb::Program *batch = artifact.findProgram("decode_batch")) {
    uint32_t maxBatch = std::max<uint32_t>(1, artifact.model().max_batch());
    if (batch->max_tokens() > maxBatch)
      return COMPRESSA_ERROR(DataLoss,
                             "%s: program 'decode_batch' runs %u sequences "
                             "per call, more than the model's max_batch %u",
                             p, batch->max_tokens(), maxBatch);
  }
  return okStatus();
}

} // namespace compressa
