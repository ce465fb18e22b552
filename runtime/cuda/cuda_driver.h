// SPDX-License-Identifier: Apache-2.0
// The CUDA driver API, opened at run time: dlopen("libcuda.so.1") and a table
// of the entry points the runtime uses. Nothing links libcuda or its stub
// (TOOLCHAIN.md §6, pitfall P15), so every runtime binary starts on a machine
// without a GPU and reports the absence as an ordinary error. cuda.h is used
// for its types only.
#ifndef COMPRESSA_RUNTIME_CUDA_CUDA_DRIVER_H
#define COMPRESSA_RUNTIME_CUDA_CUDA_DRIVER_H

#include "runtime/base/status.h"

#include <cuda.h>

/// Every driver function the runtime calls, as X(name). The names go through
/// cuda.h's macros, so `cuMemAlloc` is looked up as the versioned symbol
/// `cuMemAlloc_v2` with the matching prototype (pitfall P15): the table's
/// member and the looked-up symbol are both the expanded name.
#define COMPRESSA_CUDA_DRIVER_FUNCTIONS(X)                                     \
  X(cuGetErrorName)                                                            \
  X(cuGetErrorString)                                                          \
  X(cuInit)                                                                    \
  X(cuDriverGetVersion)                                                        \
  X(cuDeviceGetCount)                                                          \
  X(cuDeviceGet)                                                               \
  X(cuDeviceGetName)                                                           \
  X(cuDeviceGetAttribute)                                                      \
  X(cuDeviceTotalMem)                                                          \
  X(cuDevicePrimaryCtxRetain)                                                  \
  X(cuDevicePrimaryCtxRelease)                                                 \
  X(cuCtxSetCurrent)                                                           \
  X(cuStreamCreate)                                                            \
  X(cuStreamDestroy)                                                           \
  X(cuStreamSynchronize)                                                       \
  X(cuMemGetInfo)                                                              \
  X(cuMemAlloc)                                                                \
  X(cuMemFree)                                                                 \
  X(cuMemAllocHost)                                                            \
  X(cuMemFreeHost)                                                             \
  X(cuMemcpyHtoDAsync)                                                         \
  X(cuMemcpyDtoHAsync)                                                         \
  X(cuMemsetD8Async)                                                           \
  X(cuMemsetD32Async)                                                          \
  X(cuModuleLoadData)                                                          \
  X(cuModuleLoadDataEx)                                                        \
  X(cuModuleUnload)                                                            \
  X(cuModuleGetFunction)                                                       \
  X(cuFuncGetAttribute)                                                        \
  X(cuFuncSetAttribute)                                                        \
  X(cuLaunchKernel)                                                            \
  X(cuStreamBeginCapture)                                                      \
  X(cuStreamEndCapture)                                                        \
  X(cuGraphInstantiate)                                                        \
  X(cuGraphLaunch)                                                             \
  X(cuGraphDestroy)                                                            \
  X(cuGraphExecDestroy)                                                        \
  X(cuEventCreate)                                                             \
  X(cuEventDestroy)                                                            \
  X(cuEventRecord)                                                             \
  X(cuEventElapsedTime)

namespace compressa {

/// The loaded driver: one pointer per function of
/// COMPRESSA_CUDA_DRIVER_FUNCTIONS, called as `driver.cuMemAlloc(...)`.
/// Process-wide and immutable once loadCudaDriver() returned it.
struct CudaDriver {
#define COMPRESSA_CUDA_DRIVER_MEMBER_(fn) decltype(&::fn) fn = nullptr;
  COMPRESSA_CUDA_DRIVER_FUNCTIONS(COMPRESSA_CUDA_DRIVER_MEMBER_)
#undef COMPRESSA_CUDA_DRIVER_MEMBER_

  /// Optional entry points: null where the driver lacks them (checked by
  /// their users, not by loadCudaDriver). cuTensorMapEncodeTiled describes
  /// a tile of a global tensor for the sm_90 bulk tensor copies (the
  /// tensor-core GEMM of --numerics=fast, lowering/TensorCore/WgmmaGemm.h).
  decltype(&::cuTensorMapEncodeTiled) cuTensorMapEncodeTiled = nullptr;
  /// How many blocks of a kernel fit one multiprocessor at once (kernels
  /// with grid-wide barriers launch at most that many per multiprocessor;
  /// one where the driver lacks it).
  decltype(&::cuOccupancyMaxActiveBlocksPerMultiprocessor)
      cuOccupancyMaxActiveBlocksPerMultiprocessor = nullptr;
  /// Launches with attributes: programmatic dependent launch of the kernels
  /// that wait for the grid before them (artifact.fbs, Kernel.programmatic).
  decltype(&::cuLaunchKernelEx) cuLaunchKernelEx = nullptr;

  /// The library that was opened ("libcuda.so.1").
  const char *library = nullptr;
  /// cuDriverGetVersion: 1000 * major + 10 * minor (13000 for CUDA 13.0).
  int version = 0;
  /// cuDeviceGetCount after cuInit; at least 1.
  int deviceCount = 0;
};

/// Opens the driver once per process (later calls return the same result,
/// success or error): dlopen("libcuda.so.1"), dlsym of every entry point,
/// cuInit(0), and at least one device. Errors (code Unavailable) say why:
///   "no NVIDIA driver: dlopen(libcuda.so.1) failed: <dlerror>"
///   "cuInit failed: CUDA_ERROR_NO_DEVICE: no CUDA-capable device is detected"
///   "no CUDA device: cuDeviceGetCount found 0 devices"
///   "the NVIDIA driver in libcuda.so.1 lacks cuMemAlloc_v2 (...)"
StatusOr<const CudaDriver *> loadCudaDriver();

/// "CUDA_ERROR_OUT_OF_MEMORY: out of memory" for `result`, from the driver's
/// cuGetErrorName/cuGetErrorString when it is loaded ("CUresult 2" if not).
std::string cudaErrorText(CUresult result);

/// The Status for a failed driver call. `callText` is the call as written in
/// the source (the macro's #call): the function name is taken from it, up to
/// the '(' and after any `driver.`/`driver->` prefix. `fmt`, when given, says
/// what the call was for. The message reads
///   "<function> failed[ for <context>]: <NAME>: <description>"
/// e.g. "cuLaunchKernel failed for kernel 'layers.3.attn'
/// (compressa_kernel_12): CUDA_ERROR_LAUNCH_FAILED: unspecified launch
/// failure". CUDA_ERROR_OUT_OF_MEMORY maps to ResourceExhausted, everything
/// else to Unavailable.
Status cudaCallError(CUresult result, const char *callText, const char *file,
                     int line);
Status cudaCallError(CUresult result, const char *callText, const char *file,
                     int line, const char *fmt, ...)
    COMPRESSA_PRINTF_FORMAT(5, 6);

/// The function name in `callText` ("driver->cuMemAlloc(&p, n)" gives
/// "cuMemAlloc"); the whole text if it has no '('.
std::string cudaCallName(const char *callText);

} // namespace compressa

/// Evaluates the driver call `call` (a CUresult) and returns the error Status
/// from the enclosing function unless it is CUDA_SUCCESS. An optional
/// printf-style context names what the call was for:
///   COMPRESSA_CUDA_RETURN_IF_ERROR(
///       driver.cuLaunchKernel(fn, ...), "kernel '%s' (%s)", name, symbol);
/// gives "cuLaunchKernel failed for kernel 'layers.3.attn'
/// (compressa_kernel_12): CUDA_ERROR_...: <description>" with this file:line.
#define COMPRESSA_CUDA_RETURN_IF_ERROR(call, ...)                              \
  do {                                                                         \
    CUresult compressaCudaResult_ = (call);                                    \
    if (compressaCudaResult_ != CUDA_SUCCESS)                                  \
      return ::compressa::cudaCallError(compressaCudaResult_, #call, __FILE__, \
                                        __LINE__, ##__VA_ARGS__);              \
  } while (false)

#endif // COMPRESSA_RUNTIME_CUDA_CUDA_DRIVER_H
