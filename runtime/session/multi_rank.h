// SPDX-License-Identifier: Apache-2.0
// Running all ranks of an expert-parallel artifact (docs/parallel.md).
//
// Engine::create on rank 0's artifact (the file compressa-compile --ranks N
// writes) builds rank 0's engine as usual, then joins the others: each peer
// artifact carried by rank 0's is read and verified on its own and gets an
// Engine of its own, bound to the same checkpoint directory (each reads
// only the tensors of its manifest), on its own device (rankDevice). The
// ranks talk through one communicator each: in-process over threads on the
// CPU, NCCL on CUDA. Rank 0's Engine is then the whole model to its
// callers: forward/prefill/decode, reset and fillSyntheticContext run on
// every rank at once (the peers on one worker thread each), and the
// logits returned are rank 0's (every rank computes the same ones).
#ifndef COMPRESSA_RUNTIME_SESSION_MULTI_RANK_H
#define COMPRESSA_RUNTIME_SESSION_MULTI_RANK_H

#include "runtime/base/status.h"
#include "runtime/comm/communicator.h"
#include "runtime/comm/tcp.h"
#include "runtime/comm/tcp_communicator.h"
#include "runtime/format/artifact_reader.h"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace compressa {

class Engine;

/// Several processes, possibly on several hosts (compressa-run --nnodes
/// --node-rank --master-addr --master-port): the ranks are spread evenly
/// over the nodes, node k running ranks [k*N/nodes, (k+1)*N/nodes); node 0
/// (which runs rank 0 and drives the others) listens on masterPort. CPU
/// artifacts only for now (collectives over TCP, tcp_communicator.h).
struct NodeOptions {
  int nodes = 1;
  int nodeRank = 0;
  std::string masterAddr = "127.0.0.1";
  int masterPort = 29500;
  /// How long node 0 waits for the others to connect (they load their
  /// weights first), and the others for node 0.
  int timeoutSeconds = 1800;
};
/// Set before Engine::create (tools, from their flags).
void setNodeOptions(NodeOptions options);
NodeOptions nodeOptions();

/// `status` with "rank R of N" in front when `artifact` is one rank of
/// several (bad-input messages then name the rank).
Status withRank(const Artifact &artifact, Status status);

/// Rank 0's view of the other ranks. Owned by rank 0's Engine.
class RankGroup {
public:
  /// For an engine of a one-rank artifact: nothing. For rank 0 of several:
  /// creates the communicators and the peers' engines (with the checkpoint
  /// `weightsDir`, or random weights of `seed` when `random`) and attaches
  /// them to `leader`. Opening a rank other than 0 directly is an error.
  static Status join(Engine &leader, const std::string &weightsDir,
                     bool random, uint64_t seed);

  ~RankGroup();
  RankGroup(const RankGroup &) = delete;
  RankGroup &operator=(const RankGroup &) = delete;

  /// Ranks, rank 0 included.
  int size() const { return ranksInAll; }
  /// "in-process" or "nccl".
  const char *communicatorName() const { return comms[0]->name(); }

  /// Runs program `program` on every peer (forward, same inputs) and
  /// `leaderRun` on this thread, at once; the first failure aborts the
  /// communicators (no rank stays waiting) and is returned.
  Status runAll(const std::string &program, const int64_t *ids, int64_t count,
                int64_t startPos, const std::function<Status()> &leaderRun);
  /// True inside runAll's leaderRun.
  bool inLeaderRun() const { return leaderRunning; }
  /// Engine::reset on every peer (errors surface at their next run).
  void resetPeers();
  /// Engine::fillSyntheticContext on every peer.
  Status fillPeers(int64_t from, int64_t to, uint64_t seed);

  /// Node k > 0 of several (nodeOptions()): loads its ranks of rank 0's
  /// artifact `artifactPath` (with the checkpoint `weightsDir`, or random
  /// weights), connects to node 0 and runs what node 0's engine runs until
  /// node 0 is done (Ok) or something fails.
  static Status serveNode(const std::string &artifactPath,
                          const std::string &weightsDir, bool random,
                          uint64_t seed);

private:
  struct Worker;
  RankGroup() = default;
  /// Runs job(rank, peer) for every peer on its worker, `leader` here.
  Status onAll(const std::function<Status(size_t, Engine &)> &job,
               const std::function<Status()> &leader);

  /// Node 0 of several: its ranks join the others through a TCP hub, and
  /// each other node gets its commands through a control connection.
  Status joinNodes(Engine &leader, const NodeOptions &nodes,
                   const std::string &weightsDir, bool random, uint64_t seed);
  /// Collects the other nodes' answers to the command sent last.
  Status remoteResults(const Status &local);

  std::vector<std::unique_ptr<Communicator>> comms;
  std::vector<std::unique_ptr<Engine>> peers;
  std::vector<std::unique_ptr<Worker>> workers;
  std::unique_ptr<TcpHub> hub;
  std::vector<TcpSocket> remotes; // node 1.. (control)
  int ranksInAll = 0;
  bool leaderRunning = false;
};

} // namespace compressa

#endif // COMPRESSA_RUNTIME_SESSION_MULTI_RANK_H
