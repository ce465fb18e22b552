/* SPDX-License-Identifier: Apache-2.0
 *
 * A fake libcuda.so.1 for tests on machines without a GPU (never installed,
 * never linked: a test opts in with LD_LIBRARY_PATH pointing at the folder
 * holding it). It implements the driver entry points the runtime dlsyms
 * (runtime/cuda/cuda_driver.h) on the host: one "Fake GPU" of compute
 * capability 9.0, device memory is host memory, the stream runs everything at
 * once in order, and graphs record launches and replay them. It cannot run
 * PTX: a module's kernels are looked up by symbol name in a table of host
 * implementations that follow the artifact's CUDA ABI (the toy model's
 * toy_embed and toy_head, via the reference C kernels in test_kernels.c, and
 * the device test's axpb, bump and twice). So it checks the runtime's host
 * side (argument vectors, the Tokens/StartPos pair, uploads, fills, copies,
 * graph capture and replay, launch counts, errors), and the real GPU runs
 * check the PTX.
 *
 * Rules it enforces like the real driver: calls need cuInit first; a
 * current context for memory and module calls; no synchronous call or copy
 * while the stream is capturing (CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED); launch
 * geometry within 1..1024 threads and the shared memory limit.
 */
#include <cuda.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FAKE_TOTAL_MEMORY (80ull << 30)
#define FAKE_MAX_SHARED_OPTIN 232448
#define FAKE_MAX_LAUNCHES 4096

/* The reference toy kernels (test_kernels.c): `void k(void **argv)` with
 * Tokens/StartPos in their pointer slots. */
void toy_embed(void **argv);
void toy_head(void **argv);

struct CUctx_st {
  int unused;
};
struct CUstream_st {
  int unused;
};

typedef void (*FakeKernel)(uint64_t argv);

struct CUfunc_st {
  const char *name;
  FakeKernel run;
};

struct CUmod_st {
  struct CUfunc_st *functions;
  int count;
};

typedef struct {
  FakeKernel run;
  uint64_t argv;
} FakeLaunch;

/* Events keep the host time they were recorded at: fake launches run
   synchronously, so that is when the queued work before them finished. */
struct CUevent_st {
  double ms;
  int recorded;
};

struct CUgraph_st {
  FakeLaunch launches[FAKE_MAX_LAUNCHES];
  int count;
};
struct CUgraphExec_st {
  FakeLaunch launches[FAKE_MAX_LAUNCHES];
  int count;
};

static int initialized = 0;
static struct CUctx_st primaryContext;
static int primaryRetained = 0;
static CUcontext current = NULL;
static unsigned long long allocated = 0;
static struct CUgraph_st *capture = NULL;
static CUstream captureStream = NULL;

/*===------------------------------------------------------------------===*/
/* Kernels in the CUDA ABI                                                 */
/*===------------------------------------------------------------------===*/

static void *at(uint64_t argv, int index) {
  return (void *)(uintptr_t)((const uint64_t *)(uintptr_t)argv)[index];
}

static void *scalar(uint64_t argv, int index) {
  return (void *)(intptr_t)(*(const int64_t *)at(argv, index));
}

/* toy_embed: [0] ids, [1] -> S, [2] -> start, [3] state, [4] hidden. */
static void fake_toy_embed(uint64_t argv) {
  void *args[5] = {at(argv, 0), scalar(argv, 1), scalar(argv, 2), at(argv, 3),
                   at(argv, 4)};
  toy_embed(args);
}

/* toy_head: [1] -> S; the expert table is a device array of pointers, which
 * here are host pointers already. */
static void fake_toy_head(uint64_t argv) {
  void *args[8];
  int i;
  for (i = 0; i < 8; ++i)
    args[i] = at(argv, i);
  args[1] = scalar(argv, 1);
  toy_head(args);
}

/* axpb: [0] x (f32), [1] -> n, [2] y; y[i] = 2 x[i] + i. */
static void fake_axpb(uint64_t argv) {
  const float *x = (const float *)at(argv, 0);
  int64_t n = *(const int64_t *)at(argv, 1);
  float *y = (float *)at(argv, 2);
  int64_t i;
  for (i = 0; i < n; ++i) {
    volatile float twice = x[i] * 2.0f; /* no contraction */
    y[i] = twice + (float)i;
  }
}

static void fake_bump(uint64_t argv) { *(int64_t *)at(argv, 0) += 1; }

static void fake_twice(uint64_t argv) { *(int64_t *)at(argv, 0) *= 2; }

static const struct {
  const char *name;
  FakeKernel run;
} kKernels[] = {
    {"toy_embed", fake_toy_embed}, {"toy_head", fake_toy_head},
    {"axpb", fake_axpb},           {"bump", fake_bump},
    {"twice", fake_twice},
};

/*===------------------------------------------------------------------===*/
/* Errors, initialization, devices, contexts                               */
/*===------------------------------------------------------------------===*/

static const struct {
  CUresult code;
  const char *name;
  const char *text;
} kErrors[] = {
    {CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED",
     "initialization error"},
    {CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE",
     "no CUDA-capable device is detected"},
    {CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE",
     "invalid device ordinal"},
    {CUDA_ERROR_INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE",
     "device kernel image is invalid"},
    {CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT",
     "invalid device context"},
    {CUDA_ERROR_INVALID_PTX, "CUDA_ERROR_INVALID_PTX",
     "a PTX JIT compilation failed"},
    {CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE",
     "invalid resource handle"},
    {CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {CUDA_ERROR_LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED",
     "unspecified launch failure"},
    {CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED",
     "operation not supported"},
    {CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED,
     "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
     "operation not permitted when stream is capturing"},
    {CUDA_ERROR_ILLEGAL_STATE, "CUDA_ERROR_ILLEGAL_STATE",
     "the operation cannot be performed in the present state"},
};

CUresult CUDAAPI cuGetErrorName(CUresult error, const char **pStr) {
  size_t i;
  for (i = 0; i < sizeof(kErrors) / sizeof(kErrors[0]); ++i)
    if (kErrors[i].code == error) {
      *pStr = kErrors[i].name;
      return CUDA_SUCCESS;
    }
  *pStr = NULL;
  return CUDA_ERROR_INVALID_VALUE;
}

CUresult CUDAAPI cuGetErrorString(CUresult error, const char **pStr) {
  size_t i;
  for (i = 0; i < sizeof(kErrors) / sizeof(kErrors[0]); ++i)
    if (kErrors[i].code == error) {
      *pStr = kErrors[i].text;
      return CUDA_SUCCESS;
    }
  *pStr = NULL;
  return CUDA_ERROR_INVALID_VALUE;
}

CUresult CUDAAPI cuInit(unsigned int flags) {
  if (flags != 0)
    return CUDA_ERROR_INVALID_VALUE;
  initialized = 1;
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDriverGetVersion(int *version) {
  *version = CUDA_VERSION;
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGetCount(int *count) {
  if (!initialized)
    return CUDA_ERROR_NOT_INITIALIZED;
  *count = 1;
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGet(CUdevice *device, int ordinal) {
  if (!initialized)
    return CUDA_ERROR_NOT_INITIALIZED;
  if (ordinal != 0)
    return CUDA_ERROR_INVALID_DEVICE;
  *device = 0;
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGetName(char *name, int len, CUdevice device) {
  if (device != 0 || len < 1)
    return CUDA_ERROR_INVALID_VALUE;
  snprintf(name, (size_t)len, "Fake GPU (compressa test driver)");
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGetAttribute(int *value, CUdevice_attribute attribute,
                                      CUdevice device) {
  if (device != 0)
    return CUDA_ERROR_INVALID_DEVICE;
  switch (attribute) {
  case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR:
    *value = 9;
    return CUDA_SUCCESS;
  case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR:
    *value = 0;
    return CUDA_SUCCESS;
  case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN:
    *value = FAKE_MAX_SHARED_OPTIN;
    return CUDA_SUCCESS;
  case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT:
    *value = 132;
    return CUDA_SUCCESS;
  default:
    return CUDA_ERROR_INVALID_VALUE;
  }
}

CUresult CUDAAPI cuDeviceTotalMem(size_t *bytes, CUdevice device) {
  if (device != 0)
    return CUDA_ERROR_INVALID_DEVICE;
  *bytes = (size_t)FAKE_TOTAL_MEMORY;
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDevicePrimaryCtxRetain(CUcontext *context, CUdevice device) {
  if (!initialized)
    return CUDA_ERROR_NOT_INITIALIZED;
  if (device != 0)
    return CUDA_ERROR_INVALID_DEVICE;
  ++primaryRetained;
  *context = &primaryContext;
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDevicePrimaryCtxRelease(CUdevice device) {
  if (device != 0 || primaryRetained < 1)
    return CUDA_ERROR_INVALID_VALUE;
  --primaryRetained;
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuCtxSetCurrent(CUcontext context) {
  if (context && context != &primaryContext)
    return CUDA_ERROR_INVALID_CONTEXT;
  current = context;
  return CUDA_SUCCESS;
}

static CUresult needContext(void) {
  if (!initialized)
    return CUDA_ERROR_NOT_INITIALIZED;
  if (current != &primaryContext || primaryRetained < 1)
    return CUDA_ERROR_INVALID_CONTEXT;
  return CUDA_SUCCESS;
}

/* Synchronous work is refused while capturing, as the real driver does. */
static CUresult needNoCapture(void) {
  CUresult result = needContext();
  if (result != CUDA_SUCCESS)
    return result;
  return capture ? CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED : CUDA_SUCCESS;
}

/*===------------------------------------------------------------------===*/
/* Streams and memory                                                      */
/*===------------------------------------------------------------------===*/

CUresult CUDAAPI cuStreamCreate(CUstream *stream, unsigned int flags) {
  CUresult result = needContext();
  (void)flags;
  if (result != CUDA_SUCCESS)
    return result;
  *stream = (CUstream)calloc(1, sizeof(struct CUstream_st));
  return *stream ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

CUresult CUDAAPI cuStreamDestroy(CUstream stream) {
  if (capture && captureStream == stream)
    return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  free(stream);
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuStreamSynchronize(CUstream stream) {
  (void)stream;
  return needNoCapture();
}

CUresult CUDAAPI cuMemGetInfo(size_t *freeBytes, size_t *totalBytes) {
  CUresult result = needContext();
  if (result != CUDA_SUCCESS)
    return result;
  *freeBytes = (size_t)(FAKE_TOTAL_MEMORY - allocated);
  *totalBytes = (size_t)FAKE_TOTAL_MEMORY;
  return CUDA_SUCCESS;
}

/* Each allocation carries its size in front, 256-byte aligned. */
CUresult CUDAAPI cuMemAlloc(CUdeviceptr *ptr, size_t bytes) {
  CUresult result = needNoCapture();
  unsigned char *block;
  if (result != CUDA_SUCCESS)
    return result;
  if (bytes == 0)
    return CUDA_ERROR_INVALID_VALUE;
  if (bytes > FAKE_TOTAL_MEMORY - allocated)
    return CUDA_ERROR_OUT_OF_MEMORY;
  block = (unsigned char *)aligned_alloc(256, 256 + ((bytes + 255) / 256) * 256);
  if (!block)
    return CUDA_ERROR_OUT_OF_MEMORY;
  /* Fresh device memory holds garbage; so does this. */
  memset(block + 256, 0xA5, bytes);
  memcpy(block, &bytes, sizeof(bytes));
  allocated += bytes;
  *ptr = (CUdeviceptr)(uintptr_t)(block + 256);
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemFree(CUdeviceptr ptr) {
  CUresult result = needNoCapture();
  unsigned char *block;
  size_t bytes;
  if (result != CUDA_SUCCESS)
    return result;
  if (!ptr)
    return CUDA_SUCCESS;
  block = (unsigned char *)(uintptr_t)ptr - 256;
  memcpy(&bytes, block, sizeof(bytes));
  allocated -= bytes;
  free(block);
  return CUDA_SUCCESS;
}

/* Page-locked host memory: plain host memory here (not device memory). */
CUresult CUDAAPI cuMemAllocHost(void **ptr, size_t bytes) {
  CUresult result = needContext();
  if (result != CUDA_SUCCESS)
    return result;
  if (bytes == 0)
    return CUDA_ERROR_INVALID_VALUE;
  *ptr = malloc(bytes);
  return *ptr ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

CUresult CUDAAPI cuMemFreeHost(void *ptr) {
  free(ptr);
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemcpyHtoDAsync(CUdeviceptr dst, const void *src,
                                   size_t bytes, CUstream stream) {
  CUresult result = needNoCapture();
  (void)stream;
  if (result != CUDA_SUCCESS)
    return result;
  memcpy((void *)(uintptr_t)dst, src, bytes);
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemcpyDtoHAsync(void *dst, CUdeviceptr src, size_t bytes,
                                   CUstream stream) {
  CUresult result = needNoCapture();
  (void)stream;
  if (result != CUDA_SUCCESS)
    return result;
  memcpy(dst, (const void *)(uintptr_t)src, bytes);
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemsetD8Async(CUdeviceptr dst, unsigned char value,
                                 size_t count, CUstream stream) {
  CUresult result = needNoCapture();
  (void)stream;
  if (result != CUDA_SUCCESS)
    return result;
  memset((void *)(uintptr_t)dst, value, count);
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemsetD32Async(CUdeviceptr dst, unsigned int value,
                                  size_t count, CUstream stream) {
  CUresult result = needNoCapture();
  size_t i;
  (void)stream;
  if (result != CUDA_SUCCESS)
    return result;
  if (dst % 4)
    return CUDA_ERROR_INVALID_VALUE;
  for (i = 0; i < count; ++i)
    memcpy((unsigned char *)(uintptr_t)dst + 4 * i, &value, 4);
  return CUDA_SUCCESS;
}

/*===------------------------------------------------------------------===*/
/* Modules                                                                 */
/*===------------------------------------------------------------------===*/

/* A module holding every known kernel whose name `contains` finds. */
static CUresult makeModule(CUmodule *module, const unsigned char *image,
                           size_t size) {
  struct CUmod_st *made = (struct CUmod_st *)calloc(1, sizeof(*made));
  size_t k;
  if (!made)
    return CUDA_ERROR_OUT_OF_MEMORY;
  made->functions = (struct CUfunc_st *)calloc(
      sizeof(kKernels) / sizeof(kKernels[0]), sizeof(struct CUfunc_st));
  for (k = 0; k < sizeof(kKernels) / sizeof(kKernels[0]); ++k) {
    /* The name followed by '(' (PTX .entry) or NUL (an ELF string table). */
    size_t length = strlen(kKernels[k].name);
    size_t i;
    for (i = 0; i + length < size; ++i)
      if (memcmp(image + i, kKernels[k].name, length) == 0 &&
          (image[i + length] == '(' || image[i + length] == '\0') &&
          (i == 0 || image[i - 1] == ' ' || image[i - 1] == '\0' ||
           image[i - 1] == '\t')) {
        made->functions[made->count].name = kKernels[k].name;
        made->functions[made->count].run = kKernels[k].run;
        ++made->count;
        break;
      }
  }
  *module = made;
  return CUDA_SUCCESS;
}

/* cuModuleLoadData: an ELF image (a cubin); its size from the header. */
CUresult CUDAAPI cuModuleLoadData(CUmodule *module, const void *image) {
  const unsigned char *bytes = (const unsigned char *)image;
  uint64_t sectionHeaders;
  uint16_t entrySize, entries;
  CUresult result = needNoCapture();
  if (result != CUDA_SUCCESS)
    return result;
  if (memcmp(bytes, "\177ELF", 4) != 0 || bytes[4] != 2)
    return CUDA_ERROR_INVALID_IMAGE;
  memcpy(&sectionHeaders, bytes + 0x28, 8);
  memcpy(&entrySize, bytes + 0x3A, 2);
  memcpy(&entries, bytes + 0x3C, 2);
  /* A plausible header only (the test's junk cubin is 12 bytes long, so
   * these fields read zeros and garbage). */
  if (entrySize != 64 || entries == 0 || sectionHeaders < 64 ||
      sectionHeaders > (64u << 20))
    return CUDA_ERROR_INVALID_IMAGE;
  return makeModule(module, bytes, sectionHeaders + (uint64_t)entrySize * entries);
}

/* cuModuleLoadDataEx: PTX text. Refuses text without a .version directive,
 * writing the reason to the error log if one was given. */
CUresult CUDAAPI cuModuleLoadDataEx(CUmodule *module, const void *image,
                                    unsigned int numOptions,
                                    CUjit_option *options,
                                    void **optionValues) {
  const char *text = (const char *)image;
  CUresult result = needNoCapture();
  unsigned int i;
  if (result != CUDA_SUCCESS)
    return result;
  if (!strstr(text, ".version") || !strstr(text, ".entry")) {
    char *log = NULL;
    size_t size = 0;
    for (i = 0; i < numOptions; ++i) {
      if (options[i] == CU_JIT_ERROR_LOG_BUFFER)
        log = (char *)optionValues[i];
      if (options[i] == CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES)
        size = (size_t)(uintptr_t)optionValues[i];
    }
    if (log && size)
      snprintf(log, size, "fake ptxas: no .version or .entry in the PTX");
    return CUDA_ERROR_INVALID_PTX;
  }
  return makeModule(module, (const unsigned char *)text, strlen(text) + 1);
}

CUresult CUDAAPI cuModuleUnload(CUmodule module) {
  if (!module)
    return CUDA_ERROR_INVALID_HANDLE;
  free(module->functions);
  free(module);
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuModuleGetFunction(CUfunction *function, CUmodule module,
                                     const char *name) {
  int i;
  CUresult result = needContext();
  if (result != CUDA_SUCCESS)
    return result;
  for (i = 0; i < module->count; ++i)
    if (strcmp(module->functions[i].name, name) == 0) {
      *function = &module->functions[i];
      return CUDA_SUCCESS;
    }
  return CUDA_ERROR_NOT_FOUND;
}

CUresult CUDAAPI cuFuncGetAttribute(int *value, CUfunction_attribute attribute,
                                    CUfunction function) {
  (void)function;
  switch (attribute) {
  case CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK:
    *value = 1024;
    return CUDA_SUCCESS;
  case CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES:
    *value = 0;
    return CUDA_SUCCESS;
  default:
    return CUDA_ERROR_INVALID_VALUE;
  }
}

CUresult CUDAAPI cuFuncSetAttribute(CUfunction function,
                                    CUfunction_attribute attribute, int value) {
  (void)function;
  if (attribute != CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES ||
      value < 0 || value > FAKE_MAX_SHARED_OPTIN)
    return CUDA_ERROR_INVALID_VALUE;
  return CUDA_SUCCESS;
}

/*===------------------------------------------------------------------===*/
/* Launches and graphs                                                     */
/*===------------------------------------------------------------------===*/

CUresult CUDAAPI cuLaunchKernel(CUfunction f, unsigned int gridDimX,
                                unsigned int gridDimY, unsigned int gridDimZ,
                                unsigned int blockDimX, unsigned int blockDimY,
                                unsigned int blockDimZ,
                                unsigned int sharedMemBytes, CUstream stream,
                                void **kernelParams, void **extra) {
  CUresult result = needContext();
  uint64_t argv;
  if (result != CUDA_SUCCESS)
    return result;
  if (!f || !kernelParams || extra)
    return CUDA_ERROR_INVALID_VALUE;
  if (gridDimX < 1 || gridDimY != 1 || gridDimZ != 1 || blockDimX < 1 ||
      blockDimX > 1024 || blockDimY != 1 || blockDimZ != 1 ||
      sharedMemBytes > FAKE_MAX_SHARED_OPTIN)
    return CUDA_ERROR_INVALID_VALUE;
  memcpy(&argv, kernelParams[0], sizeof(argv));
  if (capture) {
    if (stream != captureStream)
      return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    if (capture->count == FAKE_MAX_LAUNCHES)
      return CUDA_ERROR_OUT_OF_MEMORY;
    capture->launches[capture->count].run = f->run;
    capture->launches[capture->count].argv = argv;
    ++capture->count;
    return CUDA_SUCCESS;
  }
  f->run(argv);
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuStreamBeginCapture(CUstream stream,
                                      CUstreamCaptureMode mode) {
  CUresult result = needNoCapture();
  (void)mode;
  if (result != CUDA_SUCCESS)
    return result;
  capture = (struct CUgraph_st *)calloc(1, sizeof(struct CUgraph_st));
  if (!capture)
    return CUDA_ERROR_OUT_OF_MEMORY;
  captureStream = stream;
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuStreamEndCapture(CUstream stream, CUgraph *graph) {
  if (!capture || stream != captureStream)
    return CUDA_ERROR_ILLEGAL_STATE;
  *graph = capture;
  capture = NULL;
  captureStream = NULL;
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuGraphInstantiate(CUgraphExec *exec, CUgraph graph,
                                    unsigned long long flags) {
  struct CUgraphExec_st *made;
  if (!graph || flags)
    return CUDA_ERROR_INVALID_VALUE;
  made = (struct CUgraphExec_st *)malloc(sizeof(*made));
  if (!made)
    return CUDA_ERROR_OUT_OF_MEMORY;
  memcpy(made->launches, graph->launches, sizeof(made->launches));
  made->count = graph->count;
  *exec = made;
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuGraphLaunch(CUgraphExec exec, CUstream stream) {
  int i;
  CUresult result = needNoCapture();
  (void)stream;
  if (result != CUDA_SUCCESS)
    return result;
  if (!exec)
    return CUDA_ERROR_INVALID_VALUE;
  for (i = 0; i < exec->count; ++i)
    exec->launches[i].run(exec->launches[i].argv);
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuGraphDestroy(CUgraph graph) {
  free(graph);
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuGraphExecDestroy(CUgraphExec exec) {
  free(exec);
  return CUDA_SUCCESS;
}

/*===------------------------------------------------------------------===*/
/* Events                                                                  */
/*===------------------------------------------------------------------===*/

CUresult CUDAAPI cuEventCreate(CUevent *event, unsigned int flags) {
  CUresult result = needContext();
  (void)flags;
  if (result != CUDA_SUCCESS)
    return result;
  *event = (CUevent)calloc(1, sizeof(struct CUevent_st));
  return *event ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

CUresult CUDAAPI cuEventDestroy(CUevent event) {
  free(event);
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuEventRecord(CUevent event, CUstream stream) {
  struct timespec now;
  CUresult result = needNoCapture();
  (void)stream;
  if (result != CUDA_SUCCESS)
    return result;
  if (!event)
    return CUDA_ERROR_INVALID_HANDLE;
  clock_gettime(CLOCK_MONOTONIC, &now);
  event->ms = now.tv_sec * 1e3 + now.tv_nsec / 1e6;
  event->recorded = 1;
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuEventElapsedTime(float *ms, CUevent start, CUevent end) {
  if (!start || !end)
    return CUDA_ERROR_INVALID_HANDLE;
  if (!start->recorded || !end->recorded)
    return CUDA_ERROR_NOT_READY;
  *ms = (float)(end->ms - start->ms);
  return CUDA_SUCCESS;
}
