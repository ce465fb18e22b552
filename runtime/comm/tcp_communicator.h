// SPDX-License-Identifier: Apache-2.0
// Collectives between ranks in several processes over TCP (the CPU target
// across processes or hosts; docs/parallel.md). Every rank holds one
// connection to a hub thread in the first process, which receives all
// ranks' inputs in rank order, reduces them (the sum in rank order, like
// the in-process communicator, so the bits match it) and sends the result
// back to every rank. Simple and slow: the point is the multi-process
// machinery; GPUs use NCCL.
#ifndef COMPRESSA_RUNTIME_COMM_TCP_COMMUNICATOR_H
#define COMPRESSA_RUNTIME_COMM_TCP_COMMUNICATOR_H

#include "runtime/comm/communicator.h"
#include "runtime/comm/tcp.h"

#include <memory>
#include <thread>
#include <vector>

namespace compressa {

class TcpHub {
public:
  /// Serves the ranks connected on `ranks` (element r: rank r).
  explicit TcpHub(std::vector<TcpSocket> ranks);
  /// Closes every connection and joins the thread.
  ~TcpHub();

private:
  void loop();
  std::vector<TcpSocket> sockets;
  std::thread thread;
};

/// Rank `rank` of `size`, talking to the hub through `hub`.
std::unique_ptr<Communicator> createTcpCommunicator(TcpSocket hub, int rank,
                                                    int size);

} // namespace compressa

#endif // COMPRESSA_RUNTIME_COMM_TCP_COMMUNICATOR_H
