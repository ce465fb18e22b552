// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: WeightStore::open (runtime/weights/safetensors.h) on a
// sharded checkpoint directory built from the input.
//
// Input: sections separated by kSeparator. Section 0 is written as
// model.safetensors.index.json; sections 1..4 as shard-1.safetensors ..
// shard-4.safetensors (the names the seeds' weight_map uses). An empty
// section 0 writes no index and section 1 as model.safetensors instead, so
// the single-file path is reached too. An accepted store must find every
// tensor of its files by name, in exactly one file.
#include "test/fuzz/fuzz_util.h"

#include "runtime/weights/dtype.h"
#include "runtime/weights/safetensors.h"

#include <set>

using namespace compressa;

namespace {

constexpr std::string_view kSeparator = "\n--shard--\n";
constexpr int kMaxShards = 4;

std::string shardName(int i) {
  return "shard-" + std::to_string(i) + ".safetensors";
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string &dir = fuzz::scratchDir();
  // Last input's files go; the directory holds only what this input says.
  fuzz::removeScratch(dir);
  ::mkdir(dir.c_str(), 0700);
  std::vector<std::string_view> parts = fuzz::split(
      std::string_view(reinterpret_cast<const char *>(data), size), kSeparator);
  if (parts[0].empty()) {
    if (parts.size() > 1)
      fuzz::writeScratchFile(dir + "/" + WeightStore::kSingleFileName,
                             parts[1]);
  } else {
    fuzz::writeScratchFile(dir + "/" + WeightStore::kIndexFileName, parts[0]);
    for (size_t i = 1; i < parts.size() && i <= kMaxShards; ++i)
      fuzz::writeScratchFile(dir + "/" + shardName(static_cast<int>(i)),
                             parts[i]);
  }

  StatusOr<std::unique_ptr<WeightStore>> store = WeightStore::open(dir);
  if (!store.ok()) {
    fuzz::checkError(store.status(), "WeightStore::open");
    return 0;
  }
  const WeightStore &s = **store;
  size_t fileTensors = 0;
  volatile uint64_t sink = 0;
  std::set<std::string> seen;
  for (const auto &file : s.files()) {
    for (const TensorView &t : file->tensors()) {
      ++fileTensors;
      FUZZ_CHECK(seen.insert(t.name).second, "tensor '%s' in two files",
                 printable(t.name).c_str());
      FUZZ_CHECK(s.find(t.name) == &t,
                 "tensor '%s' of %s not found in the store",
                 printable(t.name).c_str(), file->path().c_str());
      StatusOr<const TensorView *> looked = s.lookup(t.name);
      FUZZ_CHECK(looked.ok() && *looked == &t, "lookup('%s')",
                 printable(t.name).c_str());
      FUZZ_CHECK(t.nbytes ==
                     static_cast<uint64_t>(t.numElements()) * dtypeSize(t.dtype),
                 "tensor '%s': nbytes %zu", printable(t.name).c_str(),
                 t.nbytes);
      sink = sink + fuzz::touch(t.data, t.nbytes);
    }
  }
  FUZZ_CHECK(s.numTensors() == fileTensors,
             "the store has %zu tensors, its files %zu", s.numTensors(),
             fileTensors);
  std::vector<std::string> names = s.names();
  FUZZ_CHECK(names.size() == fileTensors, "names() has %zu, expected %zu",
             names.size(), fileTensors);
  StatusOr<const TensorView *> missing = s.lookup("\x01no such tensor");
  if (!seen.count("\x01no such tensor"))
    fuzz::checkError(missing.status(), "lookup of a missing tensor");
  return 0;
}
