// SPDX-License-Identifier: Apache-2.0
// CpuBackend: host memory, the kernels' shared object, and the launch loop.
#include "runtime/cpu/cpu_backend.h"

#include "runtime/base/aligned_buffer.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

namespace compressa {

namespace {

std::string_view view(const flatbuffers::String *str) {
  return str ? std::string_view(str->c_str(), str->size()) : std::string_view();
}

/// Host memory: the address kernels see is the pointer itself.
class CpuBuffer final : public BackendBuffer {
public:
  explicit CpuBuffer(AlignedBuffer buffer)
      : BackendBuffer(reinterpret_cast<uintptr_t>(buffer.data()),
                      buffer.size()),
        memory(std::move(buffer)) {}
  uint8_t *hostData() const override { return memory.data(); }

private:
  AlignedBuffer memory;
};

/// One launch with its argument vector resolved; only the Tokens, StartPos
/// and LogitRows slots change from call to call.
struct CpuLaunch {
  /// Null for a collective step (argv: Tokens, StartPos, Scratch, in, out).
  CpuModule::KernelFn fn = nullptr;
  uint64_t floatsPerToken = 0;
  uint32_t kernel = 0;
  std::vector<void *> argv;
  std::vector<uint32_t> tokenSlots;
  std::vector<uint32_t> startSlots;
  std::vector<uint32_t> rowSlots;
};

struct CpuProgram final : public BackendProgram {
  std::vector<CpuLaunch> launches;
};

} // namespace

std::string CpuBackend::describe() const { return "cpu"; }

Status CpuBackend::loadKernels(const Artifact &artifact) {
  const fb::CpuCode &cpu = *artifact.root().cpu(); // Validated for CPU.
  COMPRESSA_ASSIGN_OR_RETURN(
      module, CpuModule::load(cpu.shared_object()->data(),
                              cpu.shared_object()->size(),
                              artifact.path() + ": cpu.shared_object"));
  const auto *list = artifact.root().kernels();
  uint32_t count = list ? list->size() : 0;
  kernels.assign(count, nullptr);
  collectiveFloatsPerToken.assign(count, 0);
  for (uint32_t k = 0; k < count; ++k)
    if (list->Get(k)->collective() != fb::Collective::None)
      collectiveFloatsPerToken[k] =
          list->Get(k)->params()->Get(3)->bytes_per_token() / 4;
  for (uint32_t k = 0; k < count; ++k) {
    const fb::Kernel &kernel = *list->Get(k);
    if (kernel.collective() != fb::Collective::None)
      continue; // Run through the communicator (validated signature).
    StatusOr<CpuModule::KernelFn> fn =
        module->lookup(std::string(view(kernel.symbol())));
    if (!fn.ok())
      return fn.status().withContext(
          "kernels[%u] ('%s')", k, printable(view(kernel.name())).c_str());
    kernels[k] = *fn;
  }
  return okStatus();
}

Status CpuBackend::reserve(uint64_t bytes, const std::string &what) {
  // Host memory is committed page by page as kernels touch it, so an
  // oversized plan (a long --max-context) would not fail at allocation but
  // when the kernels reach it: check it against what the host has free
  // (MemAvailable + SwapFree of /proc/meminfo) before anything is allocated.
  uint64_t available = 0;
  bool known = false;
  if (FILE *f = std::fopen("/proc/meminfo", "r")) {
    char key[64];
    unsigned long long kib = 0;
    while (std::fscanf(f, "%63s %llu kB\n", key, &kib) == 2)
      if (!std::strcmp(key, "MemAvailable:") || !std::strcmp(key, "SwapFree:")) {
        available += uint64_t(kib) * 1024;
        known = true;
      }
    std::fclose(f);
  }
  if (!known || bytes <= available)
    return okStatus();
  return COMPRESSA_ERROR(
      ResourceExhausted,
      "%s needs %llu bytes (%.2f GiB) of host memory; the host has %llu bytes "
      "(%.2f GiB) available (MemAvailable + SwapFree)",
      what.c_str(), static_cast<unsigned long long>(bytes),
      double(bytes) / double(uint64_t(1) << 30),
      static_cast<unsigned long long>(available),
      double(available) / double(uint64_t(1) << 30));
}

StatusOr<std::vector<uint64_t>>
CpuBackend::placeWeights(const std::vector<HostTensor> &tensors,
                         const std::string &) {
  // Kernels read the mapped checkpoint in place (read-only mappings).
  std::vector<uint64_t> addresses;
  addresses.reserve(tensors.size());
  for (const HostTensor &tensor : tensors)
    addresses.push_back(reinterpret_cast<uintptr_t>(tensor.data));
  return addresses;
}

StatusOr<std::unique_ptr<BackendBuffer>>
CpuBackend::allocate(uint64_t bytes, const std::string &what) {
  COMPRESSA_ASSIGN_OR_RETURN(AlignedBuffer memory,
                             AlignedBuffer::allocate(bytes, what));
  return std::unique_ptr<BackendBuffer>(new CpuBuffer(std::move(memory)));
}


Status CpuBackend::write(BackendBuffer &dst, uint64_t offset, const void *src,
                         uint64_t bytes, const std::string &what) {
  COMPRESSA_RETURN_IF_ERROR(checkBufferRange(dst, offset, bytes, what));
  if (bytes)
    std::memcpy(dst.hostData() + offset, src, static_cast<size_t>(bytes));
  return okStatus();
}

Status CpuBackend::read(void *dst, const BackendBuffer &src, uint64_t offset,
                        uint64_t bytes, const std::string &what) {
  COMPRESSA_RETURN_IF_ERROR(checkBufferRange(src, offset, bytes, what));
  if (bytes)
    std::memcpy(dst, src.hostData() + offset, static_cast<size_t>(bytes));
  return okStatus();
}

Status CpuBackend::fill(BackendBuffer &dst, uint64_t offset, uint64_t bytes,
                        uint32_t pattern, const std::string &what) {
  COMPRESSA_RETURN_IF_ERROR(checkBufferRange(dst, offset, bytes, what));
  uint8_t *data = dst.hostData() + offset;
  if (pattern == 0) {
    std::memset(data, 0, static_cast<size_t>(bytes));
    return okStatus();
  }
  for (uint64_t at = 0; at + 4 <= bytes; at += 4)
    std::memcpy(data + at, &pattern, 4);
  return okStatus();
}

Status CpuBackend::generate(BackendBuffer &dst, uint64_t offset,
                            RandomSpec spec, const std::string &what) {
  uint64_t size = randomElementBytes(spec.kind);
  COMPRESSA_RETURN_IF_ERROR(
      checkBufferRange(dst, offset, spec.count * size, what));
  uint8_t *data = dst.hostData() + offset;
  spec.dst = reinterpret_cast<uintptr_t>(data);
  for (uint64_t i = 0; i < spec.count; ++i)
    randomElement(spec, spec.first + i, data + i * size);
  return okStatus();
}

StatusOr<double> CpuBackend::measureCopyBandwidth(uint64_t bytes,
                                                  int repeats) {
  COMPRESSA_ASSIGN_OR_RETURN(AlignedBuffer src,
                             AlignedBuffer::allocate(bytes, "copy source"));
  COMPRESSA_ASSIGN_OR_RETURN(AlignedBuffer dst,
                             AlignedBuffer::allocate(bytes, "copy target"));
  std::memset(src.data(), 1, static_cast<size_t>(bytes));
  std::memcpy(dst.data(), src.data(), static_cast<size_t>(bytes)); // warm-up
  double best = 0;
  for (int r = 0; r < std::max(repeats, 1); ++r) {
    auto t0 = std::chrono::steady_clock::now();
    std::memcpy(dst.data(), src.data(), static_cast<size_t>(bytes));
    double seconds = std::chrono::duration<double>(
                         std::chrono::steady_clock::now() - t0)
                         .count();
    if (seconds > 0)
      best = std::max(best, 2.0 * double(bytes) / seconds / 1e9);
  }
  // The copies are observed, so none can be elided.
  volatile uint8_t last = dst.data()[bytes ? bytes - 1 : 0];
  (void)last;
  return best;
}

StatusOr<std::unique_ptr<BackendProgram>>
CpuBackend::prepareProgram(const std::string &, std::vector<LaunchPlan> plans,
                           bool) {
  auto program = std::make_unique<CpuProgram>();
  program->launches.resize(plans.size());
  for (size_t l = 0; l < plans.size(); ++l) {
    const LaunchPlan &plan = plans[l];
    CpuLaunch &launch = program->launches[l];
    launch.fn = kernels.at(plan.kernel); // Range-checked by the reader.
    launch.kernel = plan.kernel;
    if (!launch.fn)
      launch.floatsPerToken = collectiveFloatsPerToken.at(plan.kernel);
    launch.argv.assign(plan.args.size(), nullptr);
    for (size_t a = 0; a < plan.args.size(); ++a) {
      const LaunchArg &arg = plan.args[a];
      switch (arg.kind) {
      case LaunchArg::Kind::Address:
        launch.argv[a] =
            reinterpret_cast<void *>(static_cast<uintptr_t>(arg.address));
        break;
      case LaunchArg::Kind::Tokens:
        launch.tokenSlots.push_back(static_cast<uint32_t>(a));
        break;
      case LaunchArg::Kind::StartPos:
        launch.startSlots.push_back(static_cast<uint32_t>(a));
        break;
      case LaunchArg::Kind::LogitRows:
        launch.rowSlots.push_back(static_cast<uint32_t>(a));
        break;
      case LaunchArg::Kind::TensorMap:
        // The reader refuses them outside CUDA artifacts.
        return COMPRESSA_ERROR(Internal,
                               "launch %zu: a tensor map on the CPU", l);
      }
    }
  }
  return std::unique_ptr<BackendProgram>(std::move(program));
}

Status CpuBackend::run(BackendProgram &base, int64_t tokens,
                       int64_t startPos, int64_t logitRows) {
  CpuProgram &program = static_cast<CpuProgram &>(base);
  // Integer scalars travel in the pointer slot itself (artifact.fbs).
  void *count = reinterpret_cast<void *>(static_cast<intptr_t>(tokens));
  void *start = reinterpret_cast<void *>(static_cast<intptr_t>(startPos));
  void *rows = reinterpret_cast<void *>(static_cast<intptr_t>(logitRows));
  for (CpuLaunch &launch : program.launches) {
    for (uint32_t slot : launch.tokenSlots)
      launch.argv[slot] = count;
    for (uint32_t slot : launch.startSlots)
      launch.argv[slot] = start;
    for (uint32_t slot : launch.rowSlots)
      launch.argv[slot] = rows;
    if (!launch.fn) {
      if (!communicator)
        return COMPRESSA_ERROR(FailedPrecondition,
                               "a collective step, but the engine has no "
                               "communicator");
      COMPRESSA_RETURN_IF_ERROR(communicator->allReduceSum(
          reinterpret_cast<uint64_t>(launch.argv[3]),
          reinterpret_cast<uint64_t>(launch.argv[4]),
          uint64_t(tokens) * launch.floatsPerToken, nullptr));
      continue;
    }
    if (!timing) {
      launch.fn(launch.argv.data());
      continue;
    }
    auto t0 = std::chrono::steady_clock::now();
    launch.fn(launch.argv.data());
    KernelTime &time = times[launch.kernel];
    ++time.launches;
    time.milliseconds += std::chrono::duration<double, std::milli>(
                             std::chrono::steady_clock::now() - t0)
                             .count();
  }
  launchCounters.kernelLaunches +=
      static_cast<int64_t>(program.launches.size());
  return okStatus();
}

Status CpuBackend::setKernelTiming(bool on) {
  timing = on;
  times.assign(kernels.size(), KernelTime());
  return okStatus();
}

int64_t CpuBackend::launchesPerRun(const BackendProgram &base) const {
  return static_cast<int64_t>(
      static_cast<const CpuProgram &>(base).launches.size());
}

} // namespace compressa
