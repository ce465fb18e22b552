// SPDX-License-Identifier: Apache-2.0
// The device interface under the Engine, in the spirit of ggml-backend: a
// handful of calls (place weights, allocate, write, read, fill, prepare and
// run a program) that the CPU (runtime/cpu/cpu_backend.h) and CUDA
// (runtime/cuda/cuda_backend.h) implement. The Engine resolves the artifact
// (weights, expert tables, states, arenas, argument vectors) once, in terms of
// the addresses a backend hands out; the backend owns the memory and knows
// how its kernels are called (artifact.fbs, "Execution model").
#ifndef COMPRESSA_RUNTIME_SESSION_BACKEND_H
#define COMPRESSA_RUNTIME_SESSION_BACKEND_H

#include "runtime/base/status.h"
#include "runtime/comm/communicator.h"
#include "runtime/cuda/random_weights.h"
#include "runtime/format/artifact_reader.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace compressa {

/// Memory that a backend's kernels address, freed when destroyed. A buffer
/// must not outlive the backend that allocated it.
class BackendBuffer {
public:
  virtual ~BackendBuffer() = default;
  BackendBuffer(const BackendBuffer &) = delete;
  BackendBuffer &operator=(const BackendBuffer &) = delete;

  /// The address kernels see: a host pointer on the CPU, a device pointer on
  /// CUDA. Never 0, and at least 64-byte aligned.
  uint64_t address() const { return addr; }
  uint64_t size() const { return bytes; }
  /// The bytes, when the host may read and write them directly (CPU);
  /// nullptr for device memory.
  virtual uint8_t *hostData() const { return nullptr; }

protected:
  BackendBuffer(uint64_t address, uint64_t size)
      : addr(address), bytes(size) {}

private:
  uint64_t addr;
  uint64_t bytes;
};

/// A tensor of the checkpoint (mapped, read-only host memory) that kernels
/// read: a weight or a scale, in its stored format.
struct HostTensor {
  const uint8_t *data = nullptr;
  uint64_t bytes = 0;
  /// The checkpoint name, for messages.
  std::string name;
};

/// One argument of a launch, resolved by the Engine.
struct LaunchArg {
  enum class Kind {
    /// A fixed address (a buffer, weight, scale, expert table, state,
    /// scratch); 0 for a missing optional weight.
    Address,
    /// The token count S of the call.
    Tokens,
    /// The absolute position of the first token.
    StartPos,
    /// The logit rows L of the call (artifact.fbs, LogitRows).
    LogitRows,
    /// (CUDA) a tensor map the backend encodes: the e4m3 matrix [rows,
    /// cols] at `address` (artifact.fbs, TensorMap).
    TensorMap,
  };
  Kind kind = Kind::Address;
  uint64_t address = 0;
  uint64_t rows = 0, cols = 0;
  /// A tensor map's box: 128 bytes x boxRows rows.
  uint32_t boxRows = 128;
};

/// One launch of a program: artifact kernel index and resolved arguments.
struct LaunchPlan {
  uint32_t kernel = 0;
  std::vector<LaunchArg> args;
};

/// A program as a backend prepared it (argument vectors built, and on CUDA
/// possibly a graph); opaque to the Engine.
class BackendProgram {
public:
  virtual ~BackendProgram() = default;
};

/// What a backend handed to its device so far, for tests and reports.
struct LaunchCounters {
  /// Kernel launches that ran (CPU calls, cuLaunchKernel outside a capture).
  int64_t kernelLaunches = 0;
  /// Launches recorded into CUDA graphs (run later, by graph launches).
  int64_t capturedLaunches = 0;
  /// cuGraphLaunch calls.
  int64_t graphLaunches = 0;
};

/// A device that runs the programs of one artifact. Calls are ordered: a
/// write, then run, then read see each other's effects (on CUDA they are
/// queued on one stream; read waits for it).
class Backend {
public:
  virtual ~Backend() = default;

  /// "cpu" or "cuda".
  virtual const char *name() const = 0;
  /// What runs the kernels, for logs: "cpu", or the GPU and how its code was
  /// loaded.
  virtual std::string describe() const = 0;

  /// Loads the artifact's device code and resolves every kernel. `artifact`
  /// must outlive the backend.
  virtual Status loadKernels(const Artifact &artifact) = 0;
  /// Fails (ResourceExhausted) if `bytes` of memory, needed for `what`,
  /// cannot be had; a no-op where memory is not accounted up front (CPU).
  virtual Status reserve(uint64_t bytes, const std::string &what) = 0;
  /// Makes `tensors` available to the kernels and returns their addresses,
  /// in order (0 for a tensor with null data). The CPU uses the mapped bytes
  /// in place; CUDA uploads them, as stored, into device memory, each
  /// 256-byte aligned. `what` names the checkpoint in messages.
  virtual StatusOr<std::vector<uint64_t>>
  placeWeights(const std::vector<HostTensor> &tensors,
               const std::string &what) = 0;
  /// `bytes` of zeroed memory.
  virtual StatusOr<std::unique_ptr<BackendBuffer>>
  allocate(uint64_t bytes, const std::string &what) = 0;
  /// Copies `bytes` host bytes into `dst` at `offset`.
  virtual Status write(BackendBuffer &dst, uint64_t offset, const void *src,
                       uint64_t bytes, const std::string &what) = 0;
  /// Copies `bytes` at `offset` of `src` to the host, after all queued work.
  virtual Status read(void *dst, const BackendBuffer &src, uint64_t offset,
                      uint64_t bytes, const std::string &what) = 0;
  /// Fills `bytes` at `offset` with the 32-bit `pattern` (offset and size
  /// multiples of 4 unless the pattern is 0).
  virtual Status fill(BackendBuffer &dst, uint64_t offset, uint64_t bytes,
                      uint32_t pattern, const std::string &what) = 0;

  /// Writes `spec.count` generated elements (runtime/cuda/random_weights.h)
  /// at `offset` of `dst`; the backend sets spec.dst. The CPU computes them
  /// on the host; CUDA runs the runtime's generator kernel on the stream
  /// (FailedPrecondition when the runtime was built without nvcc).
  virtual Status generate(BackendBuffer &dst, uint64_t offset, RandomSpec spec,
                          const std::string &what) = 0;
  /// The bandwidth of a copy of `bytes` between two buffers of this
  /// backend's memory, in GB/s (1e9 bytes per second, bytes read plus bytes
  /// written), best of `repeats` after a warm-up: memcpy on the CPU, a
  /// device-to-device copy kernel timed with CUDA events on a GPU.
  virtual StatusOr<double> measureCopyBandwidth(uint64_t bytes,
                                                int repeats) = 0;
  /// Device memory in use now and the device's total, in bytes (CUDA: total
  /// minus free, cuMemGetInfo, whatever holds it); Unimplemented where the
  /// backend's memory is the host's (CPU).
  virtual Status memoryInUse(uint64_t &used, uint64_t &total) const {
    (void)used;
    (void)total;
    return Status(StatusCode::Unimplemented, "no device memory to report");
  }

  /// Builds program `name` from its launches. With `graph`, a backend that
  /// can records the launches once (on the first run) and replays them.
  virtual StatusOr<std::unique_ptr<BackendProgram>>
  prepareProgram(const std::string &name, std::vector<LaunchPlan> launches,
                 bool graph) = 0;
  /// Runs every launch of `program` in order for a call of `tokens` tokens
  /// starting at `startPos` whose head computes `logitRows` rows of logits
  /// (0 <= logitRows <= tokens, checked by the Engine).
  virtual Status run(BackendProgram &program, int64_t tokens,
                     int64_t startPos, int64_t logitRows) = 0;
  /// The launch calls one run of `program` makes: 1 when it replays a
  /// graph, else one per launch.
  virtual int64_t launchesPerRun(const BackendProgram &program) const = 0;
  /// True when `program` runs as a graph.
  virtual bool usesGraph(const BackendProgram &program) const = 0;
  virtual LaunchCounters counters() const = 0;
  /// Makes this backend's device current on the calling thread (CUDA: its
  /// primary context, as NCCL's communicator setup needs); a no-op on the
  /// CPU.
  virtual Status makeCurrent() { return okStatus(); }

  /// Timing. startTimer() marks the point reached by the queued work;
  /// stopTimer() waits for everything queued since and returns its time in
  /// milliseconds: CUDA events on the stream for CUDA, the steady clock for
  /// the CPU (whose runs are synchronous).
  virtual Status startTimer();
  virtual StatusOr<double> stopTimer();
  /// "CUDA events" or "host steady clock".
  virtual const char *timerName() const { return "host steady clock"; }
  /// While on, every launch of run() is timed on its own and accumulated
  /// per kernel (on CUDA: events around each launch, graphs not used, and
  /// run() waits for its launches).
  virtual Status setKernelTiming(bool on) = 0;
  /// Per kernel index: launches timed and their total milliseconds.
  struct KernelTime {
    int64_t launches = 0;
    double milliseconds = 0;
  };
  virtual const std::vector<KernelTime> &kernelTimes() const = 0;

  /// The communicator of this rank, for an artifact of several ranks: the
  /// backend runs each collective step (artifact.fbs, Collective) through
  /// it. Must outlive the backend's runs; without one a collective fails.
  void setCommunicator(Communicator *comm) { communicator = comm; }

protected:
  Communicator *communicator = nullptr;

private:
  std::chrono::steady_clock::time_point timerStart;
};

/// The CUDA devices of the ranks of multi-rank artifacts (compressa-run
/// --devices): rank r opens devices[r]. Unset (empty), rank r of several
/// opens device r, and a one-rank artifact COMPRESSA_CUDA_DEVICE or 0.
void setRankDevices(std::vector<int> devices);
/// The device rank `rank` of an artifact of `ranks` opens: devices[rank]
/// when set, else rank for several ranks and -1 (CudaDevice::open's
/// default) for one.
int rankDevice(uint32_t rank, uint32_t ranks);
/// The first rank this process runs (several nodes: node k runs ranks from
/// k * N / nodes); rankDevice counts devices from it.
void setFirstLocalRank(uint32_t rank);
/// What setRankDevices set (empty: nothing).
std::vector<int> rankDevices();
/// Parses a --devices value: comma-separated CUDA ordinals ("0,1,2,3"),
/// each in [0, 1024), none twice.
StatusOr<std::vector<int>> parseDeviceList(const std::string &text);

/// The backend for the artifact's target: the CPU, or the CUDA GPU (a
/// machine without a usable driver or GPU gets an Unavailable error that
/// says so: "<artifact>: the artifact targets CUDA, but no CUDA GPU is
/// available: ...").
StatusOr<std::unique_ptr<Backend>> createBackend(const Artifact &artifact);

/// Internal error unless [offset, offset + bytes) lies inside `buffer`: the
/// range check every backend applies to its reads, writes and fills.
Status checkBufferRange(const BackendBuffer &buffer, uint64_t offset,
                        uint64_t bytes, const std::string &what);

} // namespace compressa

#endif // COMPRESSA_RUNTIME_SESSION_BACKEND_H
