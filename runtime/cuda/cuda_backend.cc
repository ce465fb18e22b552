// SPDX-License-Identifier: Apache-2.0
// CudaBackend: device memory, kernels from the artifact's cubin or PTX, the
// device argument vectors, and the launch loop with optional graph replay.
#include "runtime/cuda/cuda_backend.h"

#if COMPRESSA_HAVE_RUNTIME_PTX
#include "runtime/cuda/runtime_kernels_embedded.h"
#endif

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace compressa {

namespace {

std::string_view view(const flatbuffers::String *str) {
  return str ? std::string_view(str->c_str(), str->size()) : std::string_view();
}

/// Device memory as a BackendBuffer.
class CudaBuffer final : public BackendBuffer {
public:
  explicit CudaBuffer(CudaMemory allocation)
      : BackendBuffer(allocation.address(), allocation.size()),
        memory(std::move(allocation)) {}

private:
  CudaMemory memory;
};

/// One launch: the kernel and the device address of its argument vector.
struct CudaLaunch {
  uint32_t kernel = 0;
  CUdeviceptr argv = 0;
  /// A collective's input and output (device addresses).
  CUdeviceptr in = 0, out = 0;
};

struct CudaProgram final : public BackendProgram {
  std::string name;
  /// Collective steps: their counts depend on the token count.
  bool hasCollective = false;
  int64_t capturedTokens = 0;
  std::vector<CudaLaunch> launches;
  /// All argument vectors of the program, one after the other.
  CudaMemory argvs;
  /// The CUtensorMaps of its TensorMap arguments (64-byte aligned each).
  CudaMemory tensorMaps;
  /// Run as a graph (captured on the first run).
  bool graphEnabled = false;
  CudaGraph graph;
  /// Names for messages, built once.
  std::string scalarsWhat;
  std::string graphWhat;
};

bool envIsOne(const char *name) {
  const char *value = std::getenv(name);
  return value && std::strcmp(value, "1") == 0;
}

uint64_t alignUp(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

} // namespace

//===----------------------------------------------------------------------===//
// Creation and kernels
//===----------------------------------------------------------------------===//

StatusOr<std::unique_ptr<CudaBackend>>
CudaBackend::create(const std::string &artifactPath, int device) {
  const char *p = artifactPath.c_str();
  StatusOr<const CudaDriver *> driver = loadCudaDriver();
  if (!driver.ok())
    return driver.status().withContext(
        "%s: the artifact targets CUDA, but no CUDA GPU is available", p);
  std::unique_ptr<CudaBackend> backend(new CudaBackend());
  backend->path = artifactPath;
  StatusOr<std::unique_ptr<CudaDevice>> opened = CudaDevice::open(device);
  if (!opened.ok())
    return opened.status().withContext("%s: cannot open the CUDA device", p);
  backend->dev = std::move(*opened);
  backend->syncEachLaunch = envIsOne("COMPRESSA_CUDA_SYNC");
  COMPRESSA_ASSIGN_OR_RETURN(
      backend->scalars,
      backend->dev->allocate(24, artifactPath +
                                     ": the Tokens/StartPos/LogitRows triple"));
  COMPRESSA_RETURN_IF_ERROR(backend->dev->fill(
      backend->scalars.address(), 24, 0, "the Tokens/StartPos/LogitRows triple"));
  return backend;
}

CudaBackend::~CudaBackend() {
  // Let queued work finish before memory and module go away.
  if (dev)
    dev->synchronize("shutting down").ignoreError();
}

std::string CudaBackend::describe() const {
  std::string text = "cuda: " + dev->describe();
  if (mod)
    text += "; code: " + mod->description();
  return text;
}

Status CudaBackend::loadKernels(const Artifact &artifact) {
  const char *p = path.c_str();
  const fb::CudaCode *code = artifact.root().cuda();
  const flatbuffers::String *ptx = code ? code->ptx() : nullptr;
  const flatbuffers::Vector<uint8_t> *cubin = code ? code->cubin() : nullptr;
  size_t ptxBytes = ptx ? ptx->size() : 0;
  size_t cubinBytes = cubin ? cubin->size() : 0;
  if (ptxBytes == 0 && cubinBytes == 0)
    return COMPRESSA_ERROR(DataLoss,
                           "%s: the target is cuda, but the artifact has no "
                           "cuda.ptx and no cuda.cubin",
                           p);
  std::string chip(view(code->chip()));
  // FlatBuffers strings are NUL-terminated, as cuModuleLoadDataEx needs.
  COMPRESSA_ASSIGN_OR_RETURN(
      mod, dev->loadModule(chip, ptx ? ptx->c_str() : nullptr, ptxBytes,
                           cubin ? cubin->data() : nullptr, cubinBytes,
                           path + ": cuda code"));

  const CudaDriver &d = dev->driver();
  const auto *list = artifact.root().kernels();
  uint32_t count = list ? list->size() : 0;
  kernels.assign(count, Kernel());
  for (uint32_t k = 0; k < count; ++k) {
    const fb::Kernel &def = *list->Get(k);
    Kernel &kernel = kernels[k];
    kernel.name = printable(view(def.name()));
    kernel.symbol = printable(view(def.symbol()));
    kernel.grid = def.grid();
    kernel.block = def.block();
    kernel.sharedBytes = def.shared_bytes();
    // Programmatic dependent launch: an experiment until measured
    // (COMPRESSA_PDL=1 in the environment of the process that loads).
    static const bool pdl = [] {
      const char *v = std::getenv("COMPRESSA_PDL");
      return v && std::string(v) == "1";
    }();
    kernel.programmatic = pdl && def.programmatic();
    if (def.collective() != fb::Collective::None) {
      // Validated: Tokens, StartPos, Scratch, Buffer in, Buffer out.
      kernel.collective = true;
      kernel.floatsPerToken = def.params()->Get(3)->bytes_per_token() / 4;
      continue;
    }
    const char *n = kernel.name.c_str();
    const char *s = kernel.symbol.c_str();
    if (kernel.grid < 1 || kernel.grid > 0x7fffffffu)
      return COMPRESSA_ERROR(DataLoss,
                             "%s: kernels[%u] ('%s', %s): grid %u is outside "
                             "1..2147483647",
                             p, k, n, s, kernel.grid);
    if (kernel.block < 1 || kernel.block > 1024)
      return COMPRESSA_ERROR(DataLoss,
                             "%s: kernels[%u] ('%s', %s): block %u is outside "
                             "1..1024",
                             p, k, n, s, kernel.block);
    // Its message names the code, the kernel and the symbol.
    COMPRESSA_ASSIGN_OR_RETURN(
        kernel.fn, mod->function(std::string(view(def.symbol())), kernel.name));
    // Blocks that meet at grid-wide barriers must all be resident: as many
    // per multiprocessor as the occupancy calculator says fit (registers,
    // shared memory; at most 4), one where the driver cannot tell (a block
    // of up to 1024 threads always fits one).
    if (def.grid_sync()) {
      int perSM = 1;
      if (d.cuOccupancyMaxActiveBlocksPerMultiprocessor) {
        int fit = 0;
        if (d.cuOccupancyMaxActiveBlocksPerMultiprocessor(
                &fit, kernel.fn, static_cast<int>(kernel.block),
                kernel.sharedBytes) == CUDA_SUCCESS)
          perSM = std::clamp(fit, 1, 4);
      }
      if (const char *env = std::getenv("COMPRESSA_GRID_BLOCKS_PER_SM"))
        perSM = std::clamp(std::atoi(env), 1, perSM);
      kernel.grid = std::min<uint32_t>(
          kernel.grid,
          static_cast<uint32_t>(std::max(dev->multiprocessors(), 1) * perSM));
    }
    // A kernel of clusters (PTX .reqnctapercluster: the tensor-core GEMM's
    // pairs of blocks, WgmmaGemm.h) launches whole clusters: a capped grid
    // is rounded down to them, a fixed one must hold them.
    int clusterWidth = 0;
    if (d.cuFuncGetAttribute(&clusterWidth, CU_FUNC_ATTRIBUTE_REQUIRED_CLUSTER_WIDTH,
                             kernel.fn) == CUDA_SUCCESS &&
        clusterWidth > 1) {
      uint32_t width = static_cast<uint32_t>(clusterWidth);
      if (def.grid_sync())
        kernel.grid = std::max(width, kernel.grid / width * width);
      else if (kernel.grid % width)
        return COMPRESSA_ERROR(DataLoss,
                               "%s: kernels[%u] ('%s', %s): grid %u is not a "
                               "multiple of the kernel's clusters of %u blocks",
                               p, k, n, s, kernel.grid, width);
    }

    int maxThreads = 0, staticShared = 0;
    COMPRESSA_CUDA_RETURN_IF_ERROR(
        d.cuFuncGetAttribute(&maxThreads,
                             CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK,
                             kernel.fn),
        "kernel '%s' (%s)", n, s);
    COMPRESSA_CUDA_RETURN_IF_ERROR(
        d.cuFuncGetAttribute(&staticShared,
                             CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, kernel.fn),
        "kernel '%s' (%s)", n, s);
    if (kernel.block > static_cast<uint32_t>(maxThreads))
      return COMPRESSA_ERROR(Unavailable,
                             "%s: kernels[%u] ('%s', %s): block %u exceeds "
                             "the %d threads per block this kernel can have "
                             "on %s",
                             p, k, n, s, kernel.block, maxThreads,
                             dev->name().c_str());
    uint64_t shared = uint64_t(kernel.sharedBytes) + uint64_t(staticShared);
    if (shared > static_cast<uint64_t>(dev->maxSharedBytesPerBlock()))
      return COMPRESSA_ERROR(Unavailable,
                             "%s: kernels[%u] ('%s', %s): %u bytes of dynamic "
                             "+ %d of static shared memory exceed the %d "
                             "bytes a block may use on %s",
                             p, k, n, s, kernel.sharedBytes, staticShared,
                             dev->maxSharedBytesPerBlock(),
                             dev->name().c_str());
    if (kernel.sharedBytes > 0)
      // Opt in to more than the default 48 KiB where the kernel needs it.
      COMPRESSA_CUDA_RETURN_IF_ERROR(
          d.cuFuncSetAttribute(kernel.fn,
                               CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                               static_cast<int>(kernel.sharedBytes)),
          "kernel '%s' (%s)", n, s);
  }
  return okStatus();
}

//===----------------------------------------------------------------------===//
// Memory
//===----------------------------------------------------------------------===//

Status CudaBackend::reserve(uint64_t bytes, const std::string &what) {
  return dev->checkFree(bytes, what);
}

StatusOr<std::vector<uint64_t>>
CudaBackend::placeWeights(const std::vector<HostTensor> &tensors,
                          const std::string &what) {
  // Step 1. The layout: one pool, every tensor 256-byte aligned.
  std::vector<uint64_t> offsets(tensors.size(), 0);
  uint64_t total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (!tensors[i].data)
      continue;
    offsets[i] = total;
    uint64_t end;
    if (__builtin_add_overflow(total, tensors[i].bytes, &end) ||
        end > (uint64_t(1) << 62))
      return COMPRESSA_ERROR(ResourceExhausted,
                             "%s: the weights do not fit 64-bit sizes",
                             what.c_str());
    total = alignUp(end, kWeightAlignment);
  }
  // Step 2. Room for it, then the pool.
  COMPRESSA_RETURN_IF_ERROR(dev->checkFree(total, "the weights of " + what));
  COMPRESSA_ASSIGN_OR_RETURN(weightPool,
                             dev->allocate(total, "the weights of " + what));
  // Step 3. The bytes, as stored in the checkpoint.
  std::vector<uint64_t> addresses(tensors.size(), 0);
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (!tensors[i].data)
      continue;
    addresses[i] = weightPool.address() + offsets[i];
    COMPRESSA_RETURN_IF_ERROR(dev->copyToDevice(
        addresses[i], tensors[i].data, tensors[i].bytes,
        "uploading tensor '" + printable(tensors[i].name) + "' of " + what));
  }
  COMPRESSA_RETURN_IF_ERROR(
      dev->synchronize("uploading the weights of " + what));
  return addresses;
}

StatusOr<std::unique_ptr<BackendBuffer>>
CudaBackend::allocate(uint64_t bytes, const std::string &what) {
  COMPRESSA_ASSIGN_OR_RETURN(CudaMemory memory, dev->allocate(bytes, what));
  // Zeroed, like the CPU's fresh pages.
  COMPRESSA_RETURN_IF_ERROR(dev->fill(memory.address(), bytes, 0, what));
  return std::unique_ptr<BackendBuffer>(new CudaBuffer(std::move(memory)));
}


Status CudaBackend::write(BackendBuffer &dst, uint64_t offset, const void *src,
                          uint64_t bytes, const std::string &what) {
  COMPRESSA_RETURN_IF_ERROR(checkBufferRange(dst, offset, bytes, what));
  return dev->copyToDevice(dst.address() + offset, src, bytes, what);
}

Status CudaBackend::read(void *dst, const BackendBuffer &src, uint64_t offset,
                         uint64_t bytes, const std::string &what) {
  COMPRESSA_RETURN_IF_ERROR(checkBufferRange(src, offset, bytes, what));
  Status status = dev->copyToHost(dst, src.address() + offset, bytes, what);
  if (status.ok() || syncEachLaunch ||
      status.code() == StatusCode::ResourceExhausted)
    return status;
  // Kernels run asynchronously: a fault in any of them surfaces here.
  return Status(status.code(),
                status.message() +
                    " (a kernel launched before may have failed; run with "
                    "COMPRESSA_CUDA_SYNC=1 to check after every launch and "
                    "name the kernel)",
                status.file(), status.line());
}

Status CudaBackend::fill(BackendBuffer &dst, uint64_t offset, uint64_t bytes,
                         uint32_t pattern, const std::string &what) {
  COMPRESSA_RETURN_IF_ERROR(checkBufferRange(dst, offset, bytes, what));
  return dev->fill(dst.address() + offset, bytes, pattern, what);
}

//===----------------------------------------------------------------------===//
// Programs
//===----------------------------------------------------------------------===//

StatusOr<std::unique_ptr<BackendProgram>>
CudaBackend::prepareProgram(const std::string &name,
                            std::vector<LaunchPlan> plans, bool graph) {
  auto program = std::make_unique<CudaProgram>();
  program->name = name;
  program->graphEnabled = graph && !syncEachLaunch;
  program->scalarsWhat = path + ": the Tokens/StartPos/LogitRows triple of program '" +
                         printable(name) + "'";
  program->graphWhat =
      path + ": the CUDA graph of program '" + printable(name) + "'";
  std::string what =
      path + ": the argument vectors of program '" + printable(name) + "'";

  // Step 1. Every argument vector, one after the other, in one host array:
  // device addresses, with Tokens/StartPos/LogitRows pointing into the
  // scalar triple.
  std::vector<uint64_t> words;
  std::vector<size_t> firstWord(plans.size(), 0);
  // Tensor maps: encoded here, once (the weights and the scratch area stay
  // where they are), uploaded below; mapWords[i] is the argv word of maps[i].
  std::vector<CUtensorMap> maps;
  std::vector<size_t> mapWords;
  for (size_t l = 0; l < plans.size(); ++l) {
    firstWord[l] = words.size();
    for (const LaunchArg &arg : plans[l].args) {
      switch (arg.kind) {
      case LaunchArg::Kind::TensorMap: {
        const CudaDriver &d = dev->driver();
        if (!d.cuTensorMapEncodeTiled)
          return COMPRESSA_ERROR(Unavailable,
                                 "%s: launch %zu needs a tensor map, but the "
                                 "CUDA driver has no cuTensorMapEncodeTiled "
                                 "(CUDA 12 or newer)",
                                 what.c_str(), l);
        // e4m3 bytes [rows, cols] in 128-byte x boxRows boxes, 128-byte
        // swizzle, out-of-bounds elements read as zero (artifact.fbs,
        // TensorMap).
        CUtensorMap map;
        cuuint64_t dims[2] = {cuuint64_t(arg.cols), cuuint64_t(arg.rows)};
        cuuint64_t strides[1] = {cuuint64_t(arg.cols)};
        cuuint32_t box[2] = {128, arg.boxRows}, elementStrides[2] = {1, 1};
        COMPRESSA_CUDA_RETURN_IF_ERROR(
            d.cuTensorMapEncodeTiled(
                &map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2,
                reinterpret_cast<void *>(static_cast<uintptr_t>(arg.address)),
                dims, strides, box, elementStrides,
                CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE),
            "%s: the tensor map of launch %zu (%llu x %llu bytes at 0x%llx)",
            what.c_str(), l, static_cast<unsigned long long>(arg.rows),
            static_cast<unsigned long long>(arg.cols),
            static_cast<unsigned long long>(arg.address));
        mapWords.push_back(words.size());
        maps.push_back(map);
        words.push_back(0);
        break;
      }
      case LaunchArg::Kind::Address:
        words.push_back(arg.address);
        break;
      case LaunchArg::Kind::Tokens:
        words.push_back(scalars.address());
        break;
      case LaunchArg::Kind::StartPos:
        words.push_back(scalars.address() + 8);
        break;
      case LaunchArg::Kind::LogitRows:
        words.push_back(scalars.address() + 16);
        break;
      }
    }
  }

  if (!maps.empty()) {
    uint64_t mapBytes = uint64_t(maps.size()) * sizeof(CUtensorMap);
    std::string mapsWhat =
        path + ": the tensor maps of program '" + printable(name) + "'";
    COMPRESSA_ASSIGN_OR_RETURN(program->tensorMaps,
                               dev->allocate(mapBytes, mapsWhat));
    COMPRESSA_RETURN_IF_ERROR(dev->copyToDevice(
        program->tensorMaps.address(), maps.data(), mapBytes, mapsWhat));
    for (size_t i = 0; i < maps.size(); ++i)
      words[mapWords[i]] =
          program->tensorMaps.address() + uint64_t(i) * sizeof(CUtensorMap);
  }

  // Step 2. Upload them once; they never change.
  uint64_t bytes = uint64_t(words.size()) * 8;
  COMPRESSA_ASSIGN_OR_RETURN(program->argvs, dev->allocate(bytes, what));
  COMPRESSA_RETURN_IF_ERROR(
      dev->copyToDevice(program->argvs.address(), words.data(), bytes, what));
  COMPRESSA_RETURN_IF_ERROR(dev->synchronize(what));

  program->launches.resize(plans.size());
  for (size_t l = 0; l < plans.size(); ++l) {
    if (plans[l].kernel >= kernels.size())
      return COMPRESSA_ERROR(Internal,
                             "%s: launch %zu names kernel %u of %zu",
                             what.c_str(), l, plans[l].kernel, kernels.size());
    program->launches[l].kernel = plans[l].kernel;
    program->launches[l].argv =
        program->argvs.address() + uint64_t(firstWord[l]) * 8;
    if (kernels[plans[l].kernel].collective) {
      program->launches[l].in = plans[l].args.at(3).address;
      program->launches[l].out = plans[l].args.at(4).address;
      program->hasCollective = true;
    }
  }
  return std::unique_ptr<BackendProgram>(std::move(program));
}

Status CudaBackend::makeCurrent() { return dev->makeCurrent(); }

Status CudaBackend::run(BackendProgram &base, int64_t tokens,
                        int64_t startPos, int64_t logitRows) {
  CudaProgram &program = static_cast<CudaProgram &>(base);
  COMPRESSA_RETURN_IF_ERROR(dev->makeCurrent());
  // The scalars, queued before the launches that read them.
  int64_t triple[3] = {tokens, startPos, logitRows};
  COMPRESSA_RETURN_IF_ERROR(dev->copyToDevice(scalars.address(), triple,
                                              sizeof(triple),
                                              program.scalarsWhat));

  size_t count = program.launches.size();
  if (timing) {
    while (launchEvents.size() < count + 1) {
      COMPRESSA_ASSIGN_OR_RETURN(CudaEvent event,
                                 dev->createEvent("kernel timing"));
      launchEvents.push_back(std::move(event));
    }
  }
  auto launchAll = [&]() -> Status {
    for (size_t l = 0; l < count; ++l) {
      const CudaLaunch &launch = program.launches[l];
      const Kernel &kernel = kernels[launch.kernel];
      if (timing)
        COMPRESSA_RETURN_IF_ERROR(dev->recordEvent(launchEvents[l], "kernel timing"));
      // A collective is queued on the stream by the communicator (NCCL),
      // so it orders with the kernels and a graph captures it.
      Status launched =
          kernel.collective
              ? (communicator
                     ? communicator->allReduceSum(
                           launch.in, launch.out,
                           uint64_t(tokens) * kernel.floatsPerToken,
                           reinterpret_cast<void *>(dev->stream()))
                     : COMPRESSA_ERROR(FailedPrecondition,
                                       "a collective step, but the engine "
                                       "has no communicator"))
              : dev->launch(kernel.fn, kernel.grid, kernel.block,
                            kernel.sharedBytes, launch.argv, kernel.name,
                            kernel.symbol, kernel.programmatic);
      if (!launched.ok())
        return launched.withContext("%s: program '%s', launch %zu",
                                    path.c_str(),
                                    printable(program.name).c_str(), l);
      if (syncEachLaunch)
        COMPRESSA_RETURN_IF_ERROR(dev->synchronize(
            "kernel '" + kernel.name + "' (" + kernel.symbol +
            ") of program '" + printable(program.name) + "', launch " +
            std::to_string(l)));
    }
    return okStatus();
  };

  if (timing) {
    // Each launch between its own events; no graph, so each is visible.
    COMPRESSA_RETURN_IF_ERROR(launchAll());
    COMPRESSA_RETURN_IF_ERROR(dev->recordEvent(launchEvents[count], "kernel timing"));
    COMPRESSA_RETURN_IF_ERROR(dev->synchronize("kernel timing"));
    for (size_t l = 0; l < count; ++l) {
      COMPRESSA_ASSIGN_OR_RETURN(
          double ms, dev->elapsedMs(launchEvents[l], launchEvents[l + 1],
                                    "kernel timing"));
      KernelTime &time = times[program.launches[l].kernel];
      ++time.launches;
      time.milliseconds += ms;
    }
    return okStatus();
  }
  if (!program.graphEnabled)
    return launchAll();
  // A graph records the collectives' element counts: replay it only for
  // the token count it was captured with.
  if (program.graph.valid() && program.hasCollective &&
      tokens != program.capturedTokens)
    return launchAll();
  if (!program.graph.valid()) {
    program.capturedTokens = tokens;
    // The first run records the launches; every run replays them. The
    // argument vectors are fixed and the scalars live in device memory, so
    // the recorded graph stays valid for every call.
    COMPRESSA_ASSIGN_OR_RETURN(program.graph,
                               dev->capture(launchAll, program.graphWhat));
  }
  return dev->launchGraph(program.graph, program.graphWhat);
}

//===----------------------------------------------------------------------===//
// The runtime's own kernels: random weights, the copy
//===----------------------------------------------------------------------===//

bool CudaBackend::hasRuntimeKernels() { return COMPRESSA_HAVE_RUNTIME_PTX; }

Status CudaBackend::loadRuntimeKernels() {
  if (runtimeMod)
    return okStatus();
#if COMPRESSA_HAVE_RUNTIME_PTX
  const char *ptx = reinterpret_cast<const char *>(embedded::kRuntimePtx);
  std::string what = path + ": the runtime's kernels (random_weights.cu)";
  COMPRESSA_RETURN_IF_ERROR(dev->makeCurrent());
  COMPRESSA_ASSIGN_OR_RETURN(
      runtimeMod,
      dev->loadModule("sm_90", ptx, std::strlen(ptx), nullptr, 0, what));
  COMPRESSA_ASSIGN_OR_RETURN(
      randomFillFn,
      runtimeMod->function("compressa_random_fill", "the weight generator"));
  COMPRESSA_ASSIGN_OR_RETURN(
      copyFn, runtimeMod->function("compressa_copy", "the copy"));
  COMPRESSA_ASSIGN_OR_RETURN(runtimeArgs,
                             dev->allocate(sizeof(RandomSpec), what));
  return okStatus();
#else
  return COMPRESSA_ERROR(FailedPrecondition,
                         "%s: generating weights and timing the device copy "
                         "need the runtime's own CUDA kernels "
                         "(runtime/cuda/random_weights.cu), which this build "
                         "lacks: nvcc was not found when the runtime was "
                         "built (install the CUDA toolkit's nvcc and rebuild)",
                         path.c_str());
#endif
}

Status CudaBackend::generate(BackendBuffer &dst, uint64_t offset,
                             RandomSpec spec, const std::string &what) {
  uint64_t bytes = spec.count * randomElementBytes(spec.kind);
  COMPRESSA_RETURN_IF_ERROR(checkBufferRange(dst, offset, bytes, what));
  if (spec.count == 0)
    return okStatus();
  COMPRESSA_RETURN_IF_ERROR(loadRuntimeKernels());
  spec.dst = dst.address() + offset;
  // Stream-ordered: the previous generate's kernel has read the block
  // before this copy overwrites it.
  COMPRESSA_RETURN_IF_ERROR(dev->copyToDevice(runtimeArgs.address(), &spec,
                                              sizeof(spec), what));
  uint64_t blocks = (spec.count + 255) / 256;
  uint32_t grid = static_cast<uint32_t>(std::min<uint64_t>(
      blocks, uint64_t(std::max(dev->multiprocessors(), 1)) * 32));
  COMPRESSA_RETURN_IF_ERROR(dev->launch(randomFillFn, grid, 256, 0,
                                        runtimeArgs.address(), what,
                                        "compressa_random_fill"));
  if (syncEachLaunch)
    COMPRESSA_RETURN_IF_ERROR(dev->synchronize(what));
  return okStatus();
}

StatusOr<double> CudaBackend::measureCopyBandwidth(uint64_t bytes,
                                                   int repeats) {
  COMPRESSA_RETURN_IF_ERROR(loadRuntimeKernels());
  bytes = std::max<uint64_t>(bytes / 16 * 16, 16);
  std::string what = "the device copy (" + std::to_string(bytes) + " bytes)";
  COMPRESSA_ASSIGN_OR_RETURN(CudaMemory src, dev->allocate(bytes, what));
  COMPRESSA_ASSIGN_OR_RETURN(CudaMemory dst, dev->allocate(bytes, what));
  COMPRESSA_RETURN_IF_ERROR(dev->fill(src.address(), bytes, 0x3f803f80u, what));
  struct {
    uint64_t dst, src, words;
  } args = {dst.address(), src.address(), bytes / 16};
  COMPRESSA_ASSIGN_OR_RETURN(CudaMemory argv, dev->allocate(sizeof(args), what));
  COMPRESSA_RETURN_IF_ERROR(
      dev->copyToDevice(argv.address(), &args, sizeof(args), what));
  COMPRESSA_ASSIGN_OR_RETURN(CudaEvent begin, dev->createEvent(what));
  COMPRESSA_ASSIGN_OR_RETURN(CudaEvent end, dev->createEvent(what));
  uint32_t grid = static_cast<uint32_t>(std::max(dev->multiprocessors(), 1)) * 8;
  double best = 0;
  for (int r = 0; r <= std::max(repeats, 1); ++r) { // r == 0: warm-up
    COMPRESSA_RETURN_IF_ERROR(dev->recordEvent(begin, what));
    COMPRESSA_RETURN_IF_ERROR(dev->launch(copyFn, grid, 512, 0,
                                          argv.address(), what,
                                          "compressa_copy"));
    COMPRESSA_RETURN_IF_ERROR(dev->recordEvent(end, what));
    COMPRESSA_RETURN_IF_ERROR(dev->synchronize(what));
    COMPRESSA_ASSIGN_OR_RETURN(double ms, dev->elapsedMs(begin, end, what));
    if (r > 0 && ms > 0)
      best = std::max(best, 2.0 * double(bytes) / (ms * 1e6));
  }
  return best;
}

Status CudaBackend::startTimer() {
  if (!timerBegin.valid()) {
    COMPRESSA_ASSIGN_OR_RETURN(timerBegin, dev->createEvent("the timer"));
    COMPRESSA_ASSIGN_OR_RETURN(timerEnd, dev->createEvent("the timer"));
  }
  return dev->recordEvent(timerBegin, "starting the timer");
}

StatusOr<double> CudaBackend::stopTimer() {
  if (!timerBegin.valid())
    return COMPRESSA_ERROR(Internal, "stopTimer without startTimer");
  COMPRESSA_RETURN_IF_ERROR(dev->recordEvent(timerEnd, "stopping the timer"));
  COMPRESSA_RETURN_IF_ERROR(dev->synchronize("stopping the timer"));
  return dev->elapsedMs(timerBegin, timerEnd, "reading the timer");
}

Status CudaBackend::setKernelTiming(bool on) {
  timing = on;
  times.assign(kernels.size(), KernelTime());
  return okStatus();
}

int64_t CudaBackend::launchesPerRun(const BackendProgram &base) const {
  const CudaProgram &program = static_cast<const CudaProgram &>(base);
  return program.graphEnabled ? 1
                              : static_cast<int64_t>(program.launches.size());
}

bool CudaBackend::usesGraph(const BackendProgram &base) const {
  return static_cast<const CudaProgram &>(base).graphEnabled;
}

LaunchCounters CudaBackend::counters() const {
  const CudaLaunchCounters &c = dev->counters();
  LaunchCounters out;
  out.kernelLaunches = c.kernelLaunches;
  out.capturedLaunches = c.capturedLaunches;
  out.graphLaunches = c.graphLaunches;
  return out;
}

} // namespace compressa
