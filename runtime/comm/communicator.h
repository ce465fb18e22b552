// SPDX-License-Identifier: Apache-2.0
// Collectives between the ranks of an expert-parallel artifact
// (docs/parallel.md). A backend calls its rank's Communicator for each
// collective step of a program (artifact.fbs, Collective), with addresses
// of its own memory: host pointers on the CPU, device pointers on CUDA,
// where `stream` is the backend's CUstream (the call is queued on it, so a
// CUDA graph captures it like a kernel).
//
// Every rank must make the same calls in the same order. A rank that fails
// calls abort(), so the others, waiting in a collective, return an error
// instead of hanging.
#ifndef COMPRESSA_RUNTIME_COMM_COMMUNICATOR_H
#define COMPRESSA_RUNTIME_COMM_COMMUNICATOR_H

#include "runtime/base/status.h"

#include <cstdint>
#include <memory>
#include <vector>

namespace compressa {

class Communicator {
public:
  virtual ~Communicator() = default;

  /// This rank, in [0, size()).
  virtual int rank() const = 0;
  /// The number of ranks.
  virtual int size() const = 0;
  /// "in-process" or "nccl".
  virtual const char *name() const = 0;

  /// out[i] = sum over the ranks of in[i], for `count` f32 values; every
  /// rank gets the same bits. `out` may equal `in`.
  virtual Status allReduceSum(uint64_t in, uint64_t out, uint64_t count,
                              void *stream) = 0;
  /// out holds size() blocks of `bytes`: block r is rank r's `in`.
  virtual Status allGather(uint64_t in, uint64_t out, uint64_t bytes,
                           void *stream) = 0;
  /// Returns once every rank called it.
  virtual Status barrier() = 0;
  /// Makes every pending and later call of every rank fail with `why`.
  virtual void abort(const Status &why) = 0;
};

/// `ranks` communicators over threads of one process (the CPU target):
/// element i is rank i. The ranks must call from distinct threads. Sums
/// are taken in rank order, so every rank gets the same bits, and the same
/// bits in every run.
std::vector<std::unique_ptr<Communicator>> createInProcessGroup(int ranks);

} // namespace compressa

#endif // COMPRESSA_RUNTIME_COMM_COMMUNICATOR_H
