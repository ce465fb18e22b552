// SPDX-License-Identifier: Apache-2.0
// The safetensors writer: header encoding (JSON with escaped names), then the
// data section streamed to the file.
#include "runtime/weights/safetensors_writer.h"

#include "runtime/weights/safetensors.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <unordered_set>

#include <fcntl.h>
#include <unistd.h>

namespace compressa {

/// `text` as a JSON string literal.
static std::string jsonString(const std::string &text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

/// The byte size of a tensor, or an error on a negative dimension/overflow.
static StatusOr<uint64_t> tensorBytes(const TensorToWrite &tensor) {
  uint64_t count = 1;
  for (size_t d = 0; d < tensor.shape.size(); ++d) {
    int64_t dim = tensor.shape[d];
    if (dim < 0)
      return COMPRESSA_ERROR(InvalidArgument,
                             "tensor '%s': shape[%zu] is %lld, expected >= 0",
                             printable(tensor.name).c_str(), d,
                             static_cast<long long>(dim));
    if (__builtin_mul_overflow(count, static_cast<uint64_t>(dim), &count))
      return COMPRESSA_ERROR(InvalidArgument,
                             "tensor '%s': shape %s overflows 64 bits",
                             printable(tensor.name).c_str(),
                             formatShape(tensor.shape).c_str());
  }
  uint64_t bytes;
  if (__builtin_mul_overflow(count, dtypeSize(tensor.dtype), &bytes))
    return COMPRESSA_ERROR(InvalidArgument,
                           "tensor '%s': byte size overflows 64 bits",
                           printable(tensor.name).c_str());
  return bytes;
}

/// The header and the total data size.
static StatusOr<std::pair<std::string, uint64_t>>
encodeHeader(const std::vector<TensorToWrite> &tensors,
             const SafetensorsMetadata &metadata) {
  std::string json = "{";
  if (!metadata.empty()) {
    json += "\"__metadata__\":{";
    for (size_t i = 0; i < metadata.size(); ++i) {
      if (i)
        json += ",";
      json += jsonString(metadata[i].first) + ":" +
              jsonString(metadata[i].second);
    }
    json += "}";
  }
  std::unordered_set<std::string> seen;
  uint64_t offset = 0;
  for (const TensorToWrite &tensor : tensors) {
    if (tensor.name.empty() || tensor.name == "__metadata__")
      return COMPRESSA_ERROR(InvalidArgument,
                             "tensor name '%s' cannot be written",
                             printable(tensor.name).c_str());
    if (!seen.insert(tensor.name).second)
      return COMPRESSA_ERROR(InvalidArgument, "tensor '%s' is given twice",
                             printable(tensor.name).c_str());
    COMPRESSA_ASSIGN_OR_RETURN(uint64_t bytes, tensorBytes(tensor));
    uint64_t end;
    if (__builtin_add_overflow(offset, bytes, &end))
      return COMPRESSA_ERROR(InvalidArgument,
                             "tensor '%s': data offsets overflow 64 bits",
                             printable(tensor.name).c_str());
    if (json.size() > 1)
      json += ",";
    json += jsonString(tensor.name) + ":{\"dtype\":\"" +
            dtypeName(tensor.dtype) + "\",\"shape\":[";
    for (size_t d = 0; d < tensor.shape.size(); ++d) {
      if (d)
        json += ",";
      json += std::to_string(tensor.shape[d]);
    }
    json += "],\"data_offsets\":[" + std::to_string(offset) + "," +
            std::to_string(end) + "]}";
    offset = end;
  }
  json += "}";
  // Pad so that the data section starts 8-byte aligned.
  while ((8 + json.size()) % 8)
    json += ' ';
  std::string out(8, '\0');
  uint64_t length = json.size();
  for (int i = 0; i < 8; ++i)
    out[i] = static_cast<char>((length >> (8 * i)) & 0xFF);
  out += json;
  return std::make_pair(std::move(out), offset);
}

StatusOr<std::string>
encodeSafetensorsHeader(const std::vector<TensorToWrite> &tensors,
                        const SafetensorsMetadata &metadata) {
  COMPRESSA_ASSIGN_OR_RETURN(auto encoded, encodeHeader(tensors, metadata));
  return std::move(encoded.first);
}

//===----------------------------------------------------------------------===//
// SafetensorsWriter
//===----------------------------------------------------------------------===//

StatusOr<std::unique_ptr<SafetensorsWriter>>
SafetensorsWriter::create(const std::string &path,
                          const std::vector<TensorToWrite> &tensors,
                          const SafetensorsMetadata &metadata) {
  StatusOr<std::pair<std::string, uint64_t>> encoded =
      encodeHeader(tensors, metadata);
  if (!encoded.ok())
    return encoded.status().withContext("%s", path.c_str());
  std::unique_ptr<SafetensorsWriter> writer(new SafetensorsWriter());
  writer->filePath = path;
  writer->expectedBytes = encoded->second;
  writer->fd =
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (writer->fd < 0)
    return COMPRESSA_ERROR(Unavailable, "%s: cannot create: %s", path.c_str(),
                           std::strerror(errno));
  COMPRESSA_RETURN_IF_ERROR(
      writer->writeRaw(encoded->first.data(), encoded->first.size()));
  return writer;
}

SafetensorsWriter::~SafetensorsWriter() {
  if (fd >= 0)
    ::close(fd);
  if (!finished && !filePath.empty())
    ::unlink(filePath.c_str());
}

Status SafetensorsWriter::writeRaw(const void *data, size_t size) {
  const char *bytes = static_cast<const char *>(data);
  size_t done = 0;
  while (done < size) {
    ssize_t wrote = ::write(fd, bytes + done, size - done);
    if (wrote < 0 && errno == EINTR)
      continue;
    if (wrote <= 0)
      return COMPRESSA_ERROR(Unavailable, "%s: write failed: %s",
                             filePath.c_str(),
                             wrote < 0 ? std::strerror(errno) : "no progress");
    done += static_cast<size_t>(wrote);
  }
  return okStatus();
}

Status SafetensorsWriter::append(const void *data, size_t size) {
  if (fd < 0 || finished)
    return COMPRESSA_ERROR(FailedPrecondition, "%s: the writer is closed",
                           filePath.c_str());
  if (size > expectedBytes - writtenBytes)
    return COMPRESSA_ERROR(OutOfRange,
                           "%s: appending %zu bytes after %llu exceeds the "
                           "%llu data bytes of the header",
                           filePath.c_str(), size,
                           static_cast<unsigned long long>(writtenBytes),
                           static_cast<unsigned long long>(expectedBytes));
  COMPRESSA_RETURN_IF_ERROR(writeRaw(data, size));
  writtenBytes += size;
  return okStatus();
}

Status SafetensorsWriter::finish() {
  if (fd < 0 || finished)
    return COMPRESSA_ERROR(FailedPrecondition, "%s: the writer is closed",
                           filePath.c_str());
  if (writtenBytes != expectedBytes)
    return COMPRESSA_ERROR(FailedPrecondition,
                           "%s: %llu data bytes written, the header declares "
                           "%llu",
                           filePath.c_str(),
                           static_cast<unsigned long long>(writtenBytes),
                           static_cast<unsigned long long>(expectedBytes));
  int rc = ::close(fd);
  fd = -1;
  if (rc != 0)
    return COMPRESSA_ERROR(Unavailable, "%s: close failed: %s",
                           filePath.c_str(), std::strerror(errno));
  finished = true;
  return okStatus();
}

Status writeSafetensors(const std::string &path,
                        const std::vector<TensorToWrite> &tensors,
                        const SafetensorsMetadata &metadata) {
  COMPRESSA_ASSIGN_OR_RETURN(auto writer,
                             SafetensorsWriter::create(path, tensors, metadata));
  for (const TensorToWrite &tensor : tensors) {
    COMPRESSA_ASSIGN_OR_RETURN(uint64_t bytes, tensorBytes(tensor));
    if (bytes && !tensor.data)
      return COMPRESSA_ERROR(InvalidArgument, "%s: tensor '%s' has no data",
                             path.c_str(), printable(tensor.name).c_str());
    COMPRESSA_RETURN_IF_ERROR(
        writer->append(tensor.data, static_cast<size_t>(bytes)));
  }
  return writer->finish();
}

} // namespace compressa
