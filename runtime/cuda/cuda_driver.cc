// SPDX-License-Identifier: Apache-2.0
// Opening the CUDA driver with dlopen/dlsym, and turning CUresults into
// Status messages that name the call.
#include "runtime/cuda/cuda_driver.h"

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string>

#include <dlfcn.h>

namespace compressa {

namespace {

/// The name a macro expands to, as a string: COMPRESSA_CUDA_SYMBOL(cuMemAlloc)
/// is "cuMemAlloc_v2" (the versioned symbol; pitfall P15).
#define COMPRESSA_CUDA_STRINGIZE_(x) #x
#define COMPRESSA_CUDA_SYMBOL(x) COMPRESSA_CUDA_STRINGIZE_(x)

/// The driver table being (or having been) filled; cudaErrorText reads its
/// error functions, which are looked up first.
CudaDriver gDriver;

/// The outcome of the one load attempt.
struct LoadResult {
  Status status;
  const CudaDriver *driver = nullptr;
};

LoadResult load() {
  LoadResult result;
  // Step 1. The library. RTLD_LOCAL: nothing else in the process should
  // bind to it through us.
  const char *library = "libcuda.so.1";
  void *handle = ::dlopen(library, RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char *why = ::dlerror();
    result.status = COMPRESSA_ERROR(
        Unavailable, "no NVIDIA driver: dlopen(%s) failed: %s", library,
        why ? why : "unknown error");
    return result;
  }
  gDriver.library = library;

  // Step 2. The entry points, by their versioned names. The handle is never
  // closed: the driver stays loaded for the life of the process.
#define COMPRESSA_CUDA_LOOKUP_(fn)                                             \
  {                                                                            \
    void *symbol = ::dlsym(handle, COMPRESSA_CUDA_SYMBOL(fn));                 \
    if (!symbol) {                                                             \
      result.status = COMPRESSA_ERROR(                                         \
          Unavailable,                                                         \
          "the NVIDIA driver in %s lacks %s (the driver is older than this "   \
          "runtime needs; CUDA %d or newer)",                                  \
          library, COMPRESSA_CUDA_SYMBOL(fn), CUDA_VERSION / 1000);            \
      return result;                                                           \
    }                                                                          \
    gDriver.fn = reinterpret_cast<decltype(gDriver.fn)>(symbol);               \
  }
  COMPRESSA_CUDA_DRIVER_FUNCTIONS(COMPRESSA_CUDA_LOOKUP_)
#undef COMPRESSA_CUDA_LOOKUP_
  // Optional entry points (cuda_driver.h): null where the driver lacks them.
  gDriver.cuOccupancyMaxActiveBlocksPerMultiprocessor =
      reinterpret_cast<decltype(gDriver.cuOccupancyMaxActiveBlocksPerMultiprocessor)>(
          ::dlsym(handle, COMPRESSA_CUDA_SYMBOL(cuOccupancyMaxActiveBlocksPerMultiprocessor)));
  gDriver.cuTensorMapEncodeTiled =
      reinterpret_cast<decltype(gDriver.cuTensorMapEncodeTiled)>(
          ::dlsym(handle, COMPRESSA_CUDA_SYMBOL(cuTensorMapEncodeTiled)));
  gDriver.cuLaunchKernelEx = reinterpret_cast<decltype(gDriver.cuLaunchKernelEx)>(
      ::dlsym(handle, COMPRESSA_CUDA_SYMBOL(cuLaunchKernelEx)));

  // Step 3. Initialization: this is where a machine without a usable GPU
  // (CUDA_ERROR_NO_DEVICE, CUDA_ERROR_STUB_LIBRARY, an old driver) says so.
  CUresult status = gDriver.cuInit(0);
  if (status != CUDA_SUCCESS) {
    result.status = cudaCallError(status, "cuInit(0)", __FILE__, __LINE__);
    return result;
  }
  status = gDriver.cuDriverGetVersion(&gDriver.version);
  if (status != CUDA_SUCCESS) {
    result.status =
        cudaCallError(status, "cuDriverGetVersion", __FILE__, __LINE__);
    return result;
  }
  status = gDriver.cuDeviceGetCount(&gDriver.deviceCount);
  if (status != CUDA_SUCCESS) {
    result.status =
        cudaCallError(status, "cuDeviceGetCount", __FILE__, __LINE__);
    return result;
  }
  if (gDriver.deviceCount < 1) {
    result.status = COMPRESSA_ERROR(
        Unavailable, "no CUDA device: cuDeviceGetCount found 0 devices");
    return result;
  }
  result.driver = &gDriver;
  return result;
}

} // namespace

StatusOr<const CudaDriver *> loadCudaDriver() {
  // A function-local static: loaded once, thread-safe, result kept.
  static const LoadResult result = load();
  if (!result.driver)
    return result.status;
  return result.driver;
}

std::string cudaErrorText(CUresult result) {
  const char *name = nullptr;
  const char *description = nullptr;
  if (gDriver.cuGetErrorName &&
      gDriver.cuGetErrorName(result, &name) != CUDA_SUCCESS)
    name = nullptr;
  if (gDriver.cuGetErrorString &&
      gDriver.cuGetErrorString(result, &description) != CUDA_SUCCESS)
    description = nullptr;
  std::string text =
      name ? std::string(name) : "CUresult " + std::to_string(int(result));
  if (description)
    text += std::string(": ") + description;
  return text;
}

std::string cudaCallName(const char *callText) {
  std::string text(callText ? callText : "");
  size_t paren = text.find('(');
  if (paren != std::string::npos)
    text.resize(paren);
  // Drop "driver->" / "driver." / "d_->" prefixes and any spaces.
  size_t arrow = text.rfind("->");
  size_t dot = text.rfind('.');
  size_t start = 0;
  if (arrow != std::string::npos)
    start = arrow + 2;
  if (dot != std::string::npos && dot + 1 > start)
    start = dot + 1;
  text = text.substr(start);
  size_t first = text.find_first_not_of(" \t\n");
  size_t last = text.find_last_not_of(" \t\n");
  if (first == std::string::npos)
    return "a CUDA driver call";
  return text.substr(first, last - first + 1);
}

static Status makeCallError(CUresult result, const char *callText,
                            const char *file, int line,
                            const std::string &context) {
  std::string message = cudaCallName(callText) + " failed";
  if (!context.empty())
    message += " for " + context;
  message += ": " + cudaErrorText(result);
  return Status(result == CUDA_ERROR_OUT_OF_MEMORY
                    ? StatusCode::ResourceExhausted
                    : StatusCode::Unavailable,
                std::move(message), file, line);
}

Status cudaCallError(CUresult result, const char *callText, const char *file,
                     int line) {
  return makeCallError(result, callText, file, line, std::string());
}

Status cudaCallError(CUresult result, const char *callText, const char *file,
                     int line, const char *fmt, ...) {
  std::string context;
  va_list args;
  va_start(args, fmt);
  va_list copy;
  va_copy(copy, args);
  int length = std::vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  if (length > 0) {
    context.resize(static_cast<size_t>(length) + 1);
    std::vsnprintf(context.data(), context.size(), fmt, args);
    context.resize(static_cast<size_t>(length));
  }
  va_end(args);
  return makeCallError(result, callText, file, line, context);
}

} // namespace compressa
