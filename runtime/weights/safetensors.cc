// SPDX-License-Identifier: Apache-2.0
// Safetensors loading: mmap, header validation and the sharded-directory
// WeightStore. Every size and offset read from a file is checked for overflow
// and range before use; every error names the file and the tensor.
#include "runtime/weights/safetensors.h"

#include "runtime/base/file.h"
#include "runtime/weights/json.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <unordered_set>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; big-endian hosts need "
              "byte swapping that this loader does not do");

namespace compressa {

int64_t TensorView::numElements() const {
  int64_t count = 1;
  for (int64_t dim : shape)
    count *= dim; // Cannot overflow: validated when the file was opened.
  return count;
}

std::string formatShape(const std::vector<int64_t> &shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i)
      out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

/// "a/b" from directory "a" (or "a/") and file name "b".
static std::string joinPath(const std::string &dir, const std::string &name) {
  if (dir.empty())
    return name;
  if (dir.back() == '/')
    return dir + name;
  return dir + "/" + name;
}

/// A JSON value described for "expected X, found Y" messages.
static std::string describeJson(const JsonValue &value) {
  if (value.isNumber()) {
    if (auto exact = value.intValue())
      return std::to_string(*exact);
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.17g", value.numberValue());
    return buf;
  }
  if (value.isString())
    return "the string \"" + printable(value.stringValue(), 60) + "\"";
  if (value.isArray())
    return "an array of " + std::to_string(value.size()) + " elements";
  if (value.isObject())
    return "an object";
  if (value.isBool())
    return value.boolValue() ? "true" : "false";
  return "null";
}

/// All dtype spellings, for "expected one of ..." messages.
static std::string dtypeList() {
  std::string out;
  for (DType dtype : kAllDTypes) {
    if (!out.empty())
      out += " ";
    out += dtypeName(dtype);
  }
  return out;
}

/// An array member that must be a non-negative integer; `field` names it
/// ("shape[1]") in the error.
static Status readNonNegative(const JsonValue &value, const std::string &where,
                              const std::string &field, int64_t &out) {
  std::optional<int64_t> exact = value.intValue();
  if (!exact || *exact < 0)
    return COMPRESSA_ERROR(
        DataLoss, "%s: %s is %s, expected a non-negative integer",
        where.c_str(), field.c_str(), describeJson(value).c_str());
  out = *exact;
  return okStatus();
}

//===----------------------------------------------------------------------===//
// SafetensorsFile
//===----------------------------------------------------------------------===//

StatusOr<std::unique_ptr<SafetensorsFile>>
SafetensorsFile::open(std::string path) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->filePath = std::move(path);
  const char *p = file->filePath.c_str();

  // Step 1. Open and size the file.
  COMPRESSA_ASSIGN_OR_RETURN(ReadOnlyFile opened, ReadOnlyFile::open(file->filePath));
  uint64_t size = opened.size();
  if (size < 8) {
    return COMPRESSA_ERROR(DataLoss,
                           "%s: file is %llu bytes, too short for the 8-byte "
                           "header length (truncated?)",
                           p, static_cast<unsigned long long>(size));
  }
  if (size > std::numeric_limits<size_t>::max()) {
    return COMPRESSA_ERROR(ResourceExhausted,
                           "%s: file of %llu bytes does not fit the address "
                           "space",
                           p, static_cast<unsigned long long>(size));
  }

  // Step 2. Map it read-only; the descriptor is not needed afterwards.
  void *addr =
      ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_PRIVATE, opened.fd(), 0);
  int mmapErr = errno;
  opened.close();
  if (addr == MAP_FAILED)
    return COMPRESSA_ERROR(ResourceExhausted, "%s: mmap of %llu bytes: %s", p,
                           static_cast<unsigned long long>(size),
                           std::strerror(mmapErr));
  file->mapped = static_cast<const uint8_t *>(addr);
  file->mappedSize = size;

  // Step 3. Bound the header length before looking at the header.
  uint64_t headerSize = readUnaligned<uint64_t>(file->mapped);
  if (headerSize > kMaxSafetensorsHeaderBytes)
    return COMPRESSA_ERROR(
        DataLoss,
        "%s: header length %llu bytes exceeds the format's limit of "
        "%llu bytes (MAX_HEADER_SIZE); not a safetensors file?",
        p, static_cast<unsigned long long>(headerSize),
        static_cast<unsigned long long>(kMaxSafetensorsHeaderBytes));
  if (headerSize > size - 8)
    return COMPRESSA_ERROR(DataLoss,
                           "%s: header length %llu bytes is larger than the "
                           "%llu bytes that follow it (truncated file?)",
                           p, static_cast<unsigned long long>(headerSize),
                           static_cast<unsigned long long>(size - 8));

  // Step 4. Parse and validate the header.
  std::string_view header(reinterpret_cast<const char *>(file->mapped) + 8,
                          static_cast<size_t>(headerSize));
  COMPRESSA_RETURN_IF_ERROR(file->parseHeader(header, 8 + headerSize));
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapped)
    ::munmap(const_cast<uint8_t *>(mapped), static_cast<size_t>(mappedSize));
}

const TensorView *SafetensorsFile::find(std::string_view name) const {
  auto it = byName.find(name);
  return it == byName.end() ? nullptr : &tensorList[it->second];
}

/// Checks __metadata__: absent, null (the reference reads it as an
/// Option<HashMap<String, String>>) or an object of string -> string.
static Status checkMetadata(const JsonValue &metadata, const char *p) {
  if (metadata.isNull())
    return okStatus();
  if (!metadata.isObject())
    return COMPRESSA_ERROR(DataLoss,
                           "%s: __metadata__ is %s, expected an object of "
                           "string -> string",
                           p, describeJson(metadata).c_str());
  for (size_t i = 0; i < metadata.size(); ++i)
    if (!metadata.memberValue(i).isString())
      return COMPRESSA_ERROR(
          DataLoss,
          "%s: __metadata__ entry '%s' is %s, expected a string "
          "(__metadata__ maps strings to strings)",
          p, printable(metadata.memberKey(i)).c_str(),
          describeJson(metadata.memberValue(i)).c_str());
  return okStatus();
}

Status SafetensorsFile::parseHeader(std::string_view header,
                                    uint64_t dataStart) {
  const char *p = filePath.c_str();
  uint64_t dataSize = mappedSize - dataStart;

  // The reference loader's first check (InvalidHeaderStart).
  if (header.empty() || header[0] != '{')
    return COMPRESSA_ERROR(
        DataLoss, "%s: header starts with %s, expected '{' (a JSON object)", p,
        header.empty() ? "nothing (it is empty)"
                       : ("'" + printable(header.substr(0, 1)) + "'").c_str());
  StatusOr<JsonDocument> parsed = parseJson(header);
  if (!parsed.ok())
    return COMPRESSA_ERROR(DataLoss, "%s: header is not valid JSON: %s", p,
                           parsed.status().message().c_str());
  const JsonValue &root = *parsed;
  if (!root.isObject())
    return COMPRESSA_ERROR(DataLoss, "%s: header is %s, expected a JSON object",
                           p, describeJson(root).c_str());

  // Byte ranges parallel to tensorList, for the tiling check below.
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  tensorList.reserve(root.size());
  ranges.reserve(root.size());
  for (size_t m = 0; m < root.size(); ++m) {
    std::string_view name = root.memberKey(m);
    const JsonValue &entry = root.memberValue(m);
    if (name == "__metadata__") {
      COMPRESSA_RETURN_IF_ERROR(checkMetadata(entry, p));
      continue;
    }
    std::string where = std::string(p) + ": tensor '" + printable(name) + "'";
    const char *w = where.c_str();

    if (!entry.isObject())
      return COMPRESSA_ERROR(DataLoss,
                             "%s: entry is %s, expected an object with dtype, "
                             "shape and data_offsets",
                             w, describeJson(entry).c_str());
    for (size_t f = 0; f < entry.size(); ++f) {
      std::string_view field = entry.memberKey(f);
      if (field != "dtype" && field != "shape" && field != "data_offsets")
        return COMPRESSA_ERROR(DataLoss,
                               "%s: unexpected field '%s', expected only "
                               "dtype, shape and data_offsets",
                               w, printable(field).c_str());
    }

    // dtype
    const JsonValue *dtypeJson = entry.find("dtype");
    if (!dtypeJson)
      return COMPRESSA_ERROR(DataLoss, "%s: missing field 'dtype'", w);
    if (!dtypeJson->isString())
      return COMPRESSA_ERROR(DataLoss, "%s: dtype is %s, expected a string", w,
                             describeJson(*dtypeJson).c_str());
    std::optional<DType> dtype = parseDType(dtypeJson->stringValue());
    if (!dtype)
      return COMPRESSA_ERROR(
          DataLoss, "%s: unknown dtype '%s', expected one of %s", w,
          printable(dtypeJson->stringValue()).c_str(), dtypeList().c_str());

    // shape, with the element count and byte size checked for overflow.
    const JsonValue *shapeJson = entry.find("shape");
    if (!shapeJson)
      return COMPRESSA_ERROR(DataLoss, "%s: missing field 'shape'", w);
    if (!shapeJson->isArray())
      return COMPRESSA_ERROR(DataLoss, "%s: shape is %s, expected an array", w,
                             describeJson(*shapeJson).c_str());
    std::vector<int64_t> shape(shapeJson->size());
    uint64_t numElements = 1;
    bool overflow = false;
    for (size_t d = 0; d < shape.size(); ++d) {
      COMPRESSA_RETURN_IF_ERROR(
          readNonNegative(shapeJson->elements()[d], where,
                          "shape[" + std::to_string(d) + "]", shape[d]));
      overflow |= __builtin_mul_overflow(
          numElements, static_cast<uint64_t>(shape[d]), &numElements);
    }
    uint64_t needed = 0;
    overflow |= numElements >
                static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    overflow |= __builtin_mul_overflow(numElements, dtypeSize(*dtype), &needed);
    if (overflow)
      return COMPRESSA_ERROR(DataLoss,
                             "%s: shape %s of %s has a byte size that "
                             "overflows 64 bits",
                             w, formatShape(shape).c_str(), dtypeName(*dtype));

    // data_offsets, relative to the start of the data section.
    const JsonValue *offsetsJson = entry.find("data_offsets");
    if (!offsetsJson)
      return COMPRESSA_ERROR(DataLoss, "%s: missing field 'data_offsets'", w);
    if (!offsetsJson->isArray() || offsetsJson->size() != 2)
      return COMPRESSA_ERROR(DataLoss,
                             "%s: data_offsets is %s, expected an array "
                             "[begin, end]",
                             w, describeJson(*offsetsJson).c_str());
    int64_t begin = 0, end = 0;
    COMPRESSA_RETURN_IF_ERROR(readNonNegative(offsetsJson->elements()[0], where,
                                              "data_offsets[0]", begin));
    COMPRESSA_RETURN_IF_ERROR(readNonNegative(offsetsJson->elements()[1], where,
                                              "data_offsets[1]", end));
    uint64_t ubegin = static_cast<uint64_t>(begin);
    uint64_t uend = static_cast<uint64_t>(end);
    if (ubegin > uend)
      return COMPRESSA_ERROR(
          DataLoss, "%s: data_offsets [%lld, %lld] has begin > end", w,
          static_cast<long long>(begin), static_cast<long long>(end));
    if (uend > dataSize)
      return COMPRESSA_ERROR(
          DataLoss,
          "%s: data_offsets [%lld, %lld] end past the data section, which has "
          "%llu bytes (file truncated?)",
          w, static_cast<long long>(begin), static_cast<long long>(end),
          static_cast<unsigned long long>(dataSize));
    if (uend - ubegin != needed)
      return COMPRESSA_ERROR(
          DataLoss,
          "%s: data_offsets [%lld, %lld] hold %llu bytes but "
          "shape %s of %s needs %llu",
          w, static_cast<long long>(begin), static_cast<long long>(end),
          static_cast<unsigned long long>(uend - ubegin),
          formatShape(shape).c_str(), dtypeName(*dtype),
          static_cast<unsigned long long>(needed));

    TensorView view;
    view.name = name;
    view.dtype = *dtype;
    view.shape = std::move(shape);
    view.data = mapped + dataStart + ubegin;
    view.nbytes = static_cast<size_t>(needed);
    view.file = filePath;
    tensorList.push_back(std::move(view));
    ranges.emplace_back(ubegin, uend);
  }

  // The tensors must tile the data section, as the reference loader demands
  // (Metadata::validate, then MetadataIncompleteBuffer): sorted by
  // data_offsets, the first begins at 0, each begins where the one before it
  // ends, and the last ends at the end of the data section. No gap, no
  // overlap (a zero-size tensor inside another's bytes included), no bytes
  // after the last tensor.
  std::vector<size_t> order(tensorList.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
  const size_t none = std::numeric_limits<size_t>::max();
  size_t previous = none;
  uint64_t expectedBegin = 0;
  for (size_t i : order) {
    uint64_t begin = ranges[i].first;
    if (begin != expectedBegin) {
      std::string where =
          previous == none
              ? std::string("0, the start of the data section")
              : std::to_string(expectedBegin) + ", where tensor '" +
                    printable(tensorList[previous].name) +
                    "' (data_offsets [" +
                    std::to_string(ranges[previous].first) + ", " +
                    std::to_string(ranges[previous].second) + "]) ends";
      std::string problem =
          begin > expectedBegin
              ? "a gap of " + std::to_string(begin - expectedBegin) +
                    " bytes that no tensor covers"
              : std::string("the two tensors overlap");
      return COMPRESSA_ERROR(
          DataLoss,
          "%s: tensor '%s' has data_offsets [%llu, %llu], expected it to "
          "begin at %s: %s (tensors must cover the data section "
          "contiguously)",
          p, printable(tensorList[i].name).c_str(),
          static_cast<unsigned long long>(begin),
          static_cast<unsigned long long>(ranges[i].second), where.c_str(),
          problem.c_str());
    }
    expectedBegin = ranges[i].second;
    previous = i;
  }
  if (expectedBegin != dataSize) {
    if (previous == none)
      return COMPRESSA_ERROR(DataLoss,
                             "%s: no tensors, but the data section has %llu "
                             "bytes, expected 0 (bytes after the last tensor)",
                             p, static_cast<unsigned long long>(dataSize));
    return COMPRESSA_ERROR(
        DataLoss,
        "%s: the last tensor '%s' (data_offsets [%llu, %llu]) ends at %llu, "
        "expected the end of the data section at %llu: %llu bytes after the "
        "last tensor",
        p, printable(tensorList[previous].name).c_str(),
        static_cast<unsigned long long>(ranges[previous].first),
        static_cast<unsigned long long>(ranges[previous].second),
        static_cast<unsigned long long>(expectedBegin),
        static_cast<unsigned long long>(dataSize),
        static_cast<unsigned long long>(dataSize - expectedBegin));
  }

  // The JSON parser rejects duplicate keys, so names are unique here.
  byName.reserve(tensorList.size());
  for (size_t i = 0; i < tensorList.size(); ++i)
    byName.emplace(tensorList[i].name, i);
  return okStatus();
}

//===----------------------------------------------------------------------===//
// WeightStore
//===----------------------------------------------------------------------===//

/// True when something exists at `path`. Whether it is a regular file is
/// for the opener to say (a named pipe gets "not a regular file (a named
/// pipe)" rather than "no model.safetensors").
static bool pathExists(const std::string &path) {
  struct stat info;
  return ::stat(path.c_str(), &info) == 0;
}

StatusOr<std::unique_ptr<WeightStore>>
WeightStore::open(std::string directory) {
  std::unique_ptr<WeightStore> store(new WeightStore());
  store->dirPath = std::move(directory);
  const char *d = store->dirPath.c_str();

  struct stat info;
  if (::stat(d, &info) != 0) {
    int err = errno;
    return Status::errorAt(
        __FILE__, __LINE__,
        err == ENOENT ? StatusCode::NotFound : StatusCode::Unavailable,
        "%s: cannot open checkpoint directory: %s", d, std::strerror(err));
  }
  if (!S_ISDIR(info.st_mode))
    return COMPRESSA_ERROR(InvalidArgument,
                           "%s: not a directory; expected a checkpoint "
                           "directory holding %s or %s",
                           d, kSingleFileName, kIndexFileName);

  // An index wins over a single file when both are present: it is what
  // sharded writers produce, and a stray model.safetensors would be ignored by
  // them too.
  std::string indexPath = joinPath(store->dirPath, kIndexFileName);
  std::string singlePath = joinPath(store->dirPath, kSingleFileName);
  if (pathExists(indexPath)) {
    COMPRESSA_RETURN_IF_ERROR(store->openIndexed(indexPath));
  } else if (pathExists(singlePath)) {
    COMPRESSA_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open(singlePath));
    for (const TensorView &view : file->tensors())
      store->byName.emplace(view.name, &view);
    store->fileList.push_back(std::move(file));
  } else {
    return COMPRESSA_ERROR(NotFound, "%s: no %s or %s in this directory", d,
                           kSingleFileName, kIndexFileName);
  }
  return store;
}

Status WeightStore::openIndexed(const std::string &indexPath) {
  const char *ip = indexPath.c_str();

  // Step 1. Read and parse the index.
  COMPRESSA_ASSIGN_OR_RETURN(
      std::string text, ReadOnlyFile::readAll(indexPath, kMaxSafetensorsHeaderBytes));
  StatusOr<JsonDocument> parsed = parseJson(text);
  if (!parsed.ok())
    return COMPRESSA_ERROR(DataLoss, "%s: not valid JSON: %s", ip,
                           parsed.status().message().c_str());
  const JsonValue &root = *parsed;
  if (!root.isObject())
    return COMPRESSA_ERROR(DataLoss, "%s: index is %s, expected a JSON object",
                           ip, describeJson(root).c_str());
  const JsonValue *weightMap = root.find("weight_map");
  if (!weightMap)
    return COMPRESSA_ERROR(DataLoss, "%s: missing field 'weight_map'", ip);
  if (!weightMap->isObject())
    return COMPRESSA_ERROR(DataLoss,
                           "%s: weight_map is %s, expected an object of "
                           "tensor name -> shard file",
                           ip, describeJson(*weightMap).c_str());
  if (weightMap->size() == 0)
    return COMPRESSA_ERROR(DataLoss, "%s: weight_map is empty", ip);

  // Step 2. Validate shard names and collect them in order of first mention.
  std::vector<std::string> shardNames;
  std::unordered_map<std::string, size_t> shardIndex;
  std::vector<size_t> entryShard(weightMap->size());
  for (size_t m = 0; m < weightMap->size(); ++m) {
    std::string_view tensor = weightMap->memberKey(m);
    const JsonValue &shard = weightMap->memberValue(m);
    if (!shard.isString())
      return COMPRESSA_ERROR(DataLoss,
                             "%s: weight_map entry for tensor '%s' is %s, "
                             "expected a shard file name",
                             ip, printable(tensor).c_str(),
                             describeJson(shard).c_str());
    std::string_view shardName = shard.stringValue();
    if (shardName.empty() || shardName == "." || shardName == ".." ||
        shardName.find('/') != std::string::npos ||
        shardName.find('\0') != std::string::npos)
      return COMPRESSA_ERROR(DataLoss,
                             "%s: tensor '%s' is mapped to shard '%s', "
                             "expected a plain file name in the same directory",
                             ip, printable(tensor).c_str(),
                             printable(shardName).c_str());
    auto [it, inserted] =
        shardIndex.emplace(std::string(shardName), shardNames.size());
    if (inserted)
      shardNames.emplace_back(shardName);
    entryShard[m] = it->second;
  }

  // Step 3. Open every shard.
  for (size_t s = 0; s < shardNames.size(); ++s) {
    std::string shardPath = joinPath(dirPath, shardNames[s]);
    StatusOr<std::unique_ptr<SafetensorsFile>> file =
        SafetensorsFile::open(shardPath);
    if (!file.ok()) {
      if (file.status().code() == StatusCode::NotFound)
        return COMPRESSA_ERROR(
            NotFound, "%s: names shard '%s', but %s does not exist", ip,
            printable(shardNames[s]).c_str(), shardPath.c_str());
      return file.status().withContext("shard '%s' named by %s",
                                       printable(shardNames[s]).c_str(), ip);
    }
    fileList.push_back(std::move(file).value());
  }

  // Step 4. Collect tensors; a name in two shards is ambiguous.
  for (const auto &file : fileList) {
    for (const TensorView &view : file->tensors()) {
      auto [it, inserted] = byName.emplace(view.name, &view);
      if (!inserted)
        return COMPRESSA_ERROR(
            DataLoss, "%s: tensor '%s' is in two shards: %s and %s", ip,
            printable(view.name).c_str(), std::string(it->second->file).c_str(),
            file->path().c_str());
    }
  }

  // Step 5. The index and the shards must agree both ways.
  for (size_t m = 0; m < weightMap->size(); ++m) {
    std::string_view tensor = weightMap->memberKey(m);
    const SafetensorsFile &shard = *fileList[entryShard[m]];
    if (shard.find(tensor))
      continue;
    const TensorView *elsewhere = find(tensor);
    return COMPRESSA_ERROR(
        DataLoss,
        "%s: tensor '%s' is mapped to shard '%s', but %s does not "
        "contain it%s%s",
        ip, printable(tensor).c_str(),
        printable(shardNames[entryShard[m]]).c_str(), shard.path().c_str(),
        elsewhere ? "; it is in " : "",
        elsewhere ? std::string(elsewhere->file).c_str() : "");
  }
  if (byName.size() != weightMap->size()) {
    std::unordered_set<std::string_view> listed;
    for (size_t m = 0; m < weightMap->size(); ++m)
      listed.insert(weightMap->memberKey(m));
    for (const auto &file : fileList)
      for (const TensorView &view : file->tensors())
        if (!listed.count(view.name))
          return COMPRESSA_ERROR(
              DataLoss, "%s: tensor '%s' is not listed in %s",
              file->path().c_str(), printable(view.name).c_str(), ip);
  }
  return okStatus();
}

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> out;
  out.reserve(byName.size());
  for (const auto &entry : byName)
    out.emplace_back(entry.first);
  std::sort(out.begin(), out.end());
  return out;
}

const TensorView *WeightStore::find(std::string_view name) const {
  auto it = byName.find(name);
  return it == byName.end() ? nullptr : it->second;
}

StatusOr<const TensorView *> WeightStore::lookup(std::string_view name) const {
  if (const TensorView *view = find(name))
    return view;
  return COMPRESSA_ERROR(NotFound, "%s: no tensor named '%s' (%zu tensors)",
                         dirPath.c_str(), printable(std::string(name)).c_str(),
                         byName.size());
}

} // namespace compressa
