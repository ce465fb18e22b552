// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: SafetensorsFile::open (runtime/weights/safetensors.h) on
// arbitrary bytes. The input is written to a file in memory and opened; an
// accepted file must describe tensors that lie inside it, with byte sizes
// that match their shapes, and be found by name.
#include "test/fuzz/fuzz_util.h"

#include "runtime/weights/dtype.h"
#include "runtime/weights/safetensors.h"

using namespace compressa;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string path = fuzz::scratchDir() + "/model.safetensors";
  fuzz::writeScratchFile(
      path, std::string_view(reinterpret_cast<const char *>(data), size));
  StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::open(path);
  if (!file.ok()) {
    fuzz::checkError(file.status(), "SafetensorsFile::open");
    return 0;
  }
  const SafetensorsFile &f = **file;
  FUZZ_CHECK(f.fileSize() == size, "fileSize %llu, input %zu bytes",
             static_cast<unsigned long long>(f.fileSize()), size);
  FUZZ_CHECK(f.numTensors() == f.tensors().size(), "numTensors");
  uint64_t dataBytes = 0;
  const uint8_t *lowest = nullptr, *highest = nullptr;
  volatile uint64_t sink = 0;
  for (const TensorView &t : f.tensors()) {
    int64_t elements = t.numElements();
    FUZZ_CHECK(elements >= 0, "tensor '%s': %lld elements",
               printable(t.name).c_str(), static_cast<long long>(elements));
    FUZZ_CHECK(t.nbytes == static_cast<uint64_t>(elements) * dtypeSize(t.dtype),
               "tensor '%s': nbytes %zu, shape %s of %s", printable(t.name).c_str(),
               t.nbytes, formatShape(t.shape).c_str(), dtypeName(t.dtype));
    FUZZ_CHECK(t.nbytes == 0 || t.data != nullptr, "tensor '%s': no data",
               printable(t.name).c_str());
    FUZZ_CHECK(f.find(t.name) == &t, "tensor '%s' not found by name",
               printable(t.name).c_str());
    dataBytes += t.nbytes;
    if (t.nbytes > 0) {
      if (!lowest || t.data < lowest)
        lowest = t.data;
      if (!highest || t.data + t.nbytes > highest)
        highest = t.data + t.nbytes;
    }
    sink = sink + fuzz::touch(t.data, t.nbytes);
  }
  // Tensors do not overlap and all lie in the data section, after the
  // 8-byte length and a header of at least "{}".
  FUZZ_CHECK(dataBytes == 0 || dataBytes + 10 <= size,
             "%llu tensor bytes in a file of %zu",
             static_cast<unsigned long long>(dataBytes), size);
  FUZZ_CHECK(!lowest || static_cast<size_t>(highest - lowest) + 10 <= size,
             "tensor data spans %zu bytes in a file of %zu",
             static_cast<size_t>(highest - lowest), size);
  return 0;
}
