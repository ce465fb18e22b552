// SPDX-License-Identifier: Apache-2.0
// NCCL communicators for the ranks of an artifact on CUDA GPUs. NCCL is
// loaded with dlopen, like the CUDA driver (runtime/cuda/cuda_driver.cc):
// the runtime links no NCCL, so a machine without it (or without a GPU)
// still runs the CPU target, and only a multi-rank CUDA artifact needs
// libnccl.so.2 (the CUDA toolkit's or Debian's libnccl2).
#ifndef COMPRESSA_RUNTIME_COMM_NCCL_COMMUNICATOR_H
#define COMPRESSA_RUNTIME_COMM_NCCL_COMMUNICATOR_H

#include "runtime/comm/communicator.h"

#include <array>
#include <functional>
#include <string>
#include <vector>

namespace compressa {

/// Loads libnccl.so.2 (COMPRESSA_NCCL_LIBRARY overrides the name) and its
/// symbols once; Unavailable, naming the library, when it cannot. Returns
/// the NCCL version ("2.28.3").
StatusOr<std::string> loadNccl();

/// One communicator per entry of `devices` (CUDA ordinals), all in this
/// process (ncclCommInitAll): element r is rank r on devices[r]. Each rank
/// calls from its own thread with the CUstream of its device. barrier()
/// meets on the host.
StatusOr<std::vector<std::unique_ptr<Communicator>>>
createNcclGroup(const std::vector<int> &devices);

/// NCCL's bootstrap handle (ncclUniqueId, 128 bytes): made by one process,
/// handed to every other (over the control connection of several nodes).
using NcclId = std::array<char, 128>;
StatusOr<NcclId> createNcclId();

/// Communicators for ranks `ranks` of `size` in all, some of which run in
/// other processes or hosts, joined through `id` (ncclCommInitRank in one
/// group). Before rank ranks[i] is set up, makeCurrent(i) must make its
/// device current on the calling thread. barrier() meets on the host, so
/// it covers this process's ranks only.
StatusOr<std::vector<std::unique_ptr<Communicator>>>
createNcclRanks(const NcclId &id, int size, const std::vector<int> &ranks,
                const std::function<Status(size_t)> &makeCurrent);

} // namespace compressa

#endif // COMPRESSA_RUNTIME_COMM_NCCL_COMMUNICATOR_H
