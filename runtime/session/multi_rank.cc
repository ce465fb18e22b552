// SPDX-License-Identifier: Apache-2.0
#include "runtime/session/multi_rank.h"

#include "runtime/comm/nccl_communicator.h"
#include "runtime/session/engine.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <poll.h>

namespace compressa {
namespace {
/// Set while RankGroup::join creates a peer: Engine::create on a rank
/// other than 0 is refused otherwise.
thread_local bool creatingPeer = false;

std::mutex nodeMutex;
NodeOptions nodeSettings;

// Several nodes: what a connection to node 0's port says first, and the
// commands node 0 sends the others.
constexpr uint64_t kHelloData = 1, kHelloControl = 2;
enum Command : uint64_t { kForward = 1, kReset = 2, kFill = 3, kStop = 4 };
constexpr uint64_t kMaxIds = uint64_t(1) << 24;

Status sendHello(TcpSocket &s, uint64_t kind, uint64_t id,
                 const ArtifactDigest &digest) {
  COMPRESSA_RETURN_IF_ERROR(s.sendU64(kind, "node 0"));
  COMPRESSA_RETURN_IF_ERROR(s.sendU64(id, "node 0"));
  return s.send(digest.data(), digest.size(), "node 0");
}

Status sendStatus(TcpSocket &s, const Status &status) {
  const std::string &m = status.message();
  COMPRESSA_RETURN_IF_ERROR(s.sendU64(uint64_t(status.code()), "node 0"));
  COMPRESSA_RETURN_IF_ERROR(s.sendU64(m.size(), "node 0"));
  return s.send(m.data(), m.size(), "node 0");
}

/// The status a node sent back, or the error of receiving it.
Status recvStatus(TcpSocket &s, const char *what) {
  StatusOr<uint64_t> code = s.recvU64(what);
  COMPRESSA_RETURN_IF_ERROR(code.status());
  StatusOr<uint64_t> length = s.recvU64(what);
  COMPRESSA_RETURN_IF_ERROR(length.status());
  if (*length > (1u << 20))
    return COMPRESSA_ERROR(DataLoss, "%s sent a %llu-byte message", what,
                           (unsigned long long)*length);
  std::string message(*length, '\0');
  COMPRESSA_RETURN_IF_ERROR(s.recv(message.data(), message.size(), what));
  if (*code == 0)
    return okStatus();
  return Status(static_cast<StatusCode>(*code), message);
}

/// Whether `s` is only the echo of another rank's failure.
bool abandoned(const Status &s) {
  return s.message().find("another rank failed") != std::string::npos;
}

/// The first error of `all`, preferring a cause over an echo.
Status firstCause(const std::vector<Status> &all) {
  for (const Status &s : all)
    if (!s.ok() && !abandoned(s))
      return s;
  for (const Status &s : all)
    if (!s.ok())
      return s;
  return okStatus();
}
} // namespace

void setNodeOptions(NodeOptions options) {
  std::lock_guard<std::mutex> lock(nodeMutex);
  nodeSettings = std::move(options);
}

NodeOptions nodeOptions() {
  std::lock_guard<std::mutex> lock(nodeMutex);
  return nodeSettings;
}

Status withRank(const Artifact &artifact, Status status) {
  if (status.ok() || artifact.root().ranks() < 2)
    return status;
  return status.withContext("rank %u of %u", artifact.root().rank(),
                            artifact.root().ranks());
}

/// One peer's thread: runs one job at a time.
struct RankGroup::Worker {
  std::mutex mu;
  std::condition_variable cv;
  std::function<Status()> job;
  bool busy = false, stop = false;
  Status result;
  std::thread thread;

  Worker() : thread([this] { loop(); }) {}
  ~Worker() {
    {
      std::lock_guard<std::mutex> lock(mu);
      stop = true;
    }
    cv.notify_all();
    thread.join();
  }
  void loop() {
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      cv.wait(lock, [&] { return stop || (busy && job); });
      if (stop)
        return;
      std::function<Status()> run = std::move(job);
      job = nullptr;
      lock.unlock();
      Status s = run();
      lock.lock();
      result = std::move(s);
      busy = false;
      cv.notify_all();
    }
  }
  void start(std::function<Status()> fn) {
    std::lock_guard<std::mutex> lock(mu);
    job = std::move(fn);
    busy = true;
    cv.notify_all();
  }
  Status wait() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return !busy; });
    return result;
  }
};

RankGroup::~RankGroup() {
  for (TcpSocket &remote : remotes) // The other nodes are done.
    (void)remote.sendU64(kStop, "a node");
  workers.clear(); // Joins the threads before the engines go.
  peers.clear();   // Before the communicators they use.
}

/// Engines of ranks [first, last) of rank 0's artifact `art`, each from its
/// own verified peer artifact, loaded in parallel.
static StatusOr<std::vector<std::unique_ptr<Engine>>>
loadRanks(const Artifact &art, uint32_t first, uint32_t last,
          const std::string &weightsDir, bool random, uint64_t seed) {
  const fb::Artifact &root = art.root();
  uint32_t ranks = root.ranks();
  const auto *list = root.peers(); // Validated: ranks - 1 of them, in order.
  std::vector<StatusOr<std::unique_ptr<Engine>>> made;
  for (uint32_t r = first; r < last; ++r)
    made.emplace_back(Status(StatusCode::Internal, "not created"));
  std::vector<std::thread> loaders;
  for (uint32_t r = first; r < last; ++r)
    loaders.emplace_back([&, r] {
      StatusOr<std::unique_ptr<Engine>> &out = made[r - first];
      const fb::RankArtifact &peer = *list->Get(r - 1);
      std::string name = art.path() + " (rank " + std::to_string(peer.rank()) +
                         " of " + std::to_string(ranks) + ")";
      StatusOr<std::unique_ptr<Artifact>> read = ArtifactReader::readBuffer(
          peer.artifact()->data(), peer.artifact()->size(), name);
      if (!read.ok()) {
        out = read.status();
        return;
      }
      const fb::Artifact &proot = (*read)->root();
      if (proot.ranks() != ranks || proot.rank() != peer.rank() ||
          proot.target() != root.target()) {
        out = COMPRESSA_ERROR(DataLoss,
                              "%s: is rank %u of %u for %s, expected "
                              "rank %u of %u for %s",
                              name.c_str(), proot.rank(), proot.ranks(),
                              (*read)->targetName(), peer.rank(), ranks,
                              art.targetName());
        return;
      }
      creatingPeer = true;
      out = random ? Engine::createWithRandomWeights(std::move(*read), seed)
                   : Engine::create(std::move(*read), weightsDir);
      creatingPeer = false;
    });
  for (std::thread &t : loaders)
    t.join();
  std::vector<std::unique_ptr<Engine>> engines;
  for (StatusOr<std::unique_ptr<Engine>> &e : made) {
    if (!e.ok())
      return e.status();
    engines.push_back(std::move(*e));
  }
  return engines;
}

Status RankGroup::join(Engine &leader, const std::string &weightsDir,
                       bool random, uint64_t seed) {
  const Artifact &art = leader.artifact();
  const fb::Artifact &root = art.root();
  uint32_t ranks = root.ranks();
  if (ranks < 2)
    return okStatus();
  if (root.rank() != 0) {
    if (creatingPeer)
      return okStatus();
    return COMPRESSA_ERROR(InvalidArgument,
                           "%s is rank %u of %u, carried inside rank 0's "
                           "artifact: open rank 0's",
                           art.path().c_str(), root.rank(), ranks);
  }
  std::unique_ptr<RankGroup> group(new RankGroup());
  group->ranksInAll = static_cast<int>(ranks);
  NodeOptions nodes = nodeOptions();
  if (nodes.nodes > 1) {
    COMPRESSA_RETURN_IF_ERROR(
        group->joinNodes(leader, nodes, weightsDir, random, seed));
    leader.rankGroup = std::move(group);
    return okStatus();
  }
  // The communicators first: NCCL missing fails before any weight loads.
  if (art.target() == fb::Target::Cuda) {
    std::vector<int> chosen = rankDevices();
    if (!chosen.empty() && chosen.size() != ranks)
      return COMPRESSA_ERROR(InvalidArgument,
                             "%s has %u ranks, but --devices names %zu "
                             "devices (one per rank)",
                             art.path().c_str(), ranks, chosen.size());
    std::vector<int> devices;
    for (uint32_t r = 0; r < ranks; ++r)
      devices.push_back(rankDevice(r, ranks));
    StatusOr<std::vector<std::unique_ptr<Communicator>>> comms =
        createNcclGroup(devices);
    if (!comms.ok())
      return comms.status().withContext("%s: %u ranks", art.path().c_str(),
                                        ranks);
    group->comms = std::move(*comms);
  } else {
    group->comms = createInProcessGroup(static_cast<int>(ranks));
  }

  // The peers, each from its own verified artifact, loaded in parallel.
  COMPRESSA_ASSIGN_OR_RETURN(group->peers,
                             loadRanks(art, 1, ranks, weightsDir, random, seed));
  if (leader.art->model().vocab_size() !=
      group->peers[0]->artifact().model().vocab_size())
    return COMPRESSA_ERROR(DataLoss, "%s: the ranks' vocabularies differ",
                           art.path().c_str());

  leader.backend->setCommunicator(group->comms[0].get());
  for (size_t i = 0; i < group->peers.size(); ++i) {
    group->peers[i]->backend->setCommunicator(group->comms[i + 1].get());
    group->workers.push_back(std::make_unique<Worker>());
  }
  leader.rankGroup = std::move(group);
  return okStatus();
}

Status RankGroup::onAll(const std::function<Status(size_t, Engine &)> &job,
                        const std::function<Status()> &leader) {
  // The first failure aborts every communicator, so a rank waiting in a
  // collective returns instead of hanging; it is the error reported.
  std::mutex mu;
  Status first;
  auto failed = [&](size_t rank, Status s) {
    if (s.ok())
      return;
    std::lock_guard<std::mutex> lock(mu);
    if (first.ok()) {
      first = s;
      comms[rank]->abort(s);
    }
  };
  for (size_t i = 0; i < peers.size(); ++i)
    workers[i]->start([&, i] {
      Status s = job(i, *peers[i]);
      failed(i + 1, s);
      return s;
    });
  failed(0, leader());
  for (size_t i = 0; i < peers.size(); ++i)
    workers[i]->wait();
  return first;
}

Status RankGroup::runAll(const std::string &program, const int64_t *ids,
                         int64_t count, int64_t startPos,
                         const std::function<Status()> &leaderRun) {
  for (TcpSocket &remote : remotes) {
    Status sent = remote.sendU64(kForward, "a node");
    if (sent.ok())
      sent = remote.sendU64(program.size(), "a node");
    if (sent.ok())
      sent = remote.send(program.data(), program.size(), "a node");
    if (sent.ok())
      sent = remote.sendU64(uint64_t(count), "a node");
    if (sent.ok())
      sent = remote.sendU64(uint64_t(startPos), "a node");
    if (sent.ok())
      sent = remote.send(ids, uint64_t(count) * 8, "a node");
    COMPRESSA_RETURN_IF_ERROR(sent);
  }
  Status local = onAll(
      [&](size_t, Engine &peer) {
        return peer.forward(program, ids, count, startPos).status();
      },
      [&] {
        leaderRunning = true;
        Status s = leaderRun();
        leaderRunning = false;
        return s;
      });
  return remoteResults(local);
}

Status RankGroup::remoteResults(const Status &local) {
  std::vector<Status> all = {local};
  for (size_t k = 0; k < remotes.size(); ++k) {
    std::string what = "node " + std::to_string(k + 1);
    all.push_back(recvStatus(remotes[k], what.c_str())
                      .withContext("node %zu", k + 1));
  }
  return firstCause(all);
}

void RankGroup::resetPeers() {
  // A node that cannot be told fails the next run.
  for (TcpSocket &remote : remotes)
    (void)remote.sendU64(kReset, "a node");
  for (std::unique_ptr<Engine> &peer : peers)
    peer->reset();
}

Status RankGroup::fillPeers(int64_t from, int64_t to, uint64_t seed) {
  for (TcpSocket &remote : remotes) {
    Status sent = remote.sendU64(kFill, "a node");
    for (uint64_t v : {uint64_t(from), uint64_t(to), seed})
      if (sent.ok())
        sent = remote.sendU64(v, "a node");
    COMPRESSA_RETURN_IF_ERROR(sent);
  }
  Status local;
  for (std::unique_ptr<Engine> &peer : peers)
    if (local.ok())
      local = peer->fillSyntheticContext(from, to, seed);
  return remoteResults(local);
}

Status RankGroup::joinNodes(Engine &leader, const NodeOptions &nodes,
                            const std::string &weightsDir, bool random,
                            uint64_t seed) {
  const Artifact &art = leader.artifact();
  uint32_t ranks = art.root().ranks();
  const char *p = art.path().c_str();
  bool cuda = art.target() == fb::Target::Cuda;
  if (nodes.nodeRank != 0 || ranks % uint32_t(nodes.nodes) != 0)
    return COMPRESSA_ERROR(InvalidArgument,
                           "%s: %u ranks cannot be spread evenly over %d "
                           "nodes (--nnodes must divide the ranks), or this "
                           "is not node 0",
                           p, ranks, nodes.nodes);
  uint32_t local = ranks / uint32_t(nodes.nodes);
  std::vector<int> chosen = rankDevices();
  if (cuda && !chosen.empty() && chosen.size() != local)
    return COMPRESSA_ERROR(InvalidArgument,
                           "%s: node 0 runs %u ranks, but --devices names %zu "
                           "devices (one per rank of this node)",
                           p, local, chosen.size());
  // This node's other ranks first (the other nodes load theirs meanwhile).
  COMPRESSA_ASSIGN_OR_RETURN(peers,
                             loadRanks(art, 1, local, weightsDir, random, seed));

  // Every rank (this node's too) connects to the hub on masterPort, every
  // other node once more for its commands.
  COMPRESSA_ASSIGN_OR_RETURN(TcpSocket listener,
                             tcpListen("", nodes.masterPort));
  std::vector<TcpSocket> data(ranks);
  remotes.resize(size_t(nodes.nodes - 1));
  Status accepted;
  int timeoutMs = nodes.timeoutSeconds * 1000;
  std::vector<bool> ready(remotes.size(), false);
  std::thread acceptor([&] {
    // Connections in any order; meanwhile each other node reports on its
    // control connection whether it loaded its ranks (a failure there
    // stops everything at once instead of after the timeout).
    // CPU: every rank's hub connection too (CUDA ranks talk through NCCL).
    uint32_t expected = (cuda ? 0 : ranks) + uint32_t(nodes.nodes) - 1,
             got = 0;
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::milliseconds(timeoutMs);
    while (got < expected ||
           std::find(ready.begin(), ready.end(), false) != ready.end()) {
      std::vector<pollfd> fds = {{listener.descriptor(), POLLIN, 0}};
      std::vector<size_t> which = {SIZE_MAX};
      for (size_t k = 0; k < remotes.size(); ++k)
        if (remotes[k].valid() && !ready[k]) {
          fds.push_back({remotes[k].descriptor(), POLLIN, 0});
          which.push_back(k);
        }
      int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(
                         deadline - std::chrono::steady_clock::now())
                         .count());
      int rc = left > 0 ? ::poll(fds.data(), fds.size(), left) : 0;
      if (rc < 0 && errno == EINTR)
        continue;
      if (rc <= 0) {
        accepted = COMPRESSA_ERROR(Unavailable,
                                   "not every node connected and loaded its "
                                   "ranks within %d s (%u of %u connections)",
                                   nodes.timeoutSeconds, got, expected);
        return;
      }
      for (size_t f = 1; f < fds.size(); ++f)
        if (fds[f].revents) {
          size_t k = which[f];
          std::string what = "node " + std::to_string(k + 1);
          Status loaded = recvStatus(remotes[k], what.c_str());
          if (!loaded.ok()) {
            accepted = loaded.withContext("node %zu", k + 1);
            return;
          }
          ready[k] = true;
        }
      if (!fds[0].revents)
        continue;
      StatusOr<TcpSocket> s =
          tcpAccept(listener, 1000, "rank or node of the artifact");
      if (!s.ok()) {
        accepted = s.status();
        return;
      }
      ++got;
      uint64_t kind = 0, id = 0;
      ArtifactDigest digest{};
      Status hello = s->recv(&kind, 8, "a connecting node");
      if (hello.ok())
        hello = s->recv(&id, 8, "a connecting node");
      if (hello.ok())
        hello = s->recv(digest.data(), digest.size(), "a connecting node");
      if (hello.ok() && digest != art.digest())
        hello = COMPRESSA_ERROR(InvalidArgument,
                                "a node connected with another artifact "
                                "(SHA-256 %s, expected %s)",
                                hexDigest(digest).c_str(),
                                hexDigest(art.digest()).c_str());
      TcpSocket *slot = nullptr;
      if (hello.ok() && kind == kHelloData && id < ranks)
        slot = &data[id];
      else if (hello.ok() && kind == kHelloControl && id >= 1 &&
               id < uint64_t(nodes.nodes))
        slot = &remotes[id - 1];
      else if (hello.ok())
        hello = COMPRESSA_ERROR(InvalidArgument,
                                "a node introduced itself as kind %llu, id "
                                "%llu (expected a rank < %u or a node < %d)",
                                (unsigned long long)kind,
                                (unsigned long long)id, ranks, nodes.nodes);
      if (hello.ok() && slot->valid())
        hello = COMPRESSA_ERROR(InvalidArgument,
                                "rank or node %llu connected twice",
                                (unsigned long long)id);
      if (!hello.ok()) {
        accepted = hello;
        return;
      }
      *slot = std::move(*s);
    }
  });
  std::vector<TcpSocket> mine;
  Status connected;
  for (uint32_t r = 0; r < local && !cuda && connected.ok(); ++r) {
    StatusOr<TcpSocket> s = tcpConnect("127.0.0.1", nodes.masterPort, timeoutMs);
    connected = s.status();
    if (connected.ok())
      connected = sendHello(*s, kHelloData, r, art.digest());
    if (connected.ok())
      mine.push_back(std::move(*s));
  }
  acceptor.join();
  COMPRESSA_RETURN_IF_ERROR(connected.withContext("node 0"));
  COMPRESSA_RETURN_IF_ERROR(
      accepted.withContext("node 0 (port %d)", nodes.masterPort));

  if (cuda) {
    // NCCL's bootstrap: one id from here, handed to every other node; all
    // ranks of all nodes then join through it.
    COMPRESSA_ASSIGN_OR_RETURN(NcclId id, createNcclId());
    for (size_t k = 0; k < remotes.size(); ++k)
      COMPRESSA_RETURN_IF_ERROR(
          remotes[k].send(id.data(), id.size(), "a node"));
    std::vector<int> mineRanks;
    for (uint32_t r = 0; r < local; ++r)
      mineRanks.push_back(int(r));
    COMPRESSA_ASSIGN_OR_RETURN(
        comms, createNcclRanks(id, int(ranks), mineRanks, [&](size_t i) {
          return i == 0 ? leader.backend->makeCurrent()
                        : peers[i - 1]->backend->makeCurrent();
        }));
  } else {
    hub = std::make_unique<TcpHub>(std::move(data));
    for (uint32_t r = 0; r < local; ++r)
      comms.push_back(
          createTcpCommunicator(std::move(mine[r]), int(r), int(ranks)));
  }
  leader.backend->setCommunicator(comms[0].get());
  for (size_t i = 0; i < peers.size(); ++i) {
    peers[i]->backend->setCommunicator(comms[i + 1].get());
    workers.push_back(std::make_unique<Worker>());
  }
  return okStatus();
}

Status RankGroup::serveNode(const std::string &artifactPath,
                            const std::string &weightsDir, bool random,
                            uint64_t seed) {
  NodeOptions nodes = nodeOptions();
  COMPRESSA_ASSIGN_OR_RETURN(std::unique_ptr<Artifact> art,
                             ArtifactReader::readFile(artifactPath));
  const char *p = art->path().c_str();
  uint32_t ranks = art->root().ranks();
  if (ranks < 2 || art->root().rank() != 0)
    return COMPRESSA_ERROR(InvalidArgument,
                           "%s: --node-rank %d needs rank 0's artifact of "
                           "several ranks (compressa-compile --ranks N)",
                           p, nodes.nodeRank);
  bool cuda = art->target() == fb::Target::Cuda;
  if (nodes.nodes < 2 || nodes.nodeRank < 1 || nodes.nodeRank >= nodes.nodes ||
      ranks % uint32_t(nodes.nodes) != 0)
    return COMPRESSA_ERROR(InvalidArgument,
                           "%s: node %d of %d cannot run an even share of %u "
                           "ranks (--nnodes must divide the ranks)",
                           p, nodes.nodeRank, nodes.nodes, ranks);
  uint32_t local = ranks / uint32_t(nodes.nodes);
  uint32_t first = uint32_t(nodes.nodeRank) * local;
  std::vector<int> chosen = rankDevices();
  if (cuda && !chosen.empty() && chosen.size() != local)
    return COMPRESSA_ERROR(InvalidArgument,
                           "%s: node %d runs %u ranks, but --devices names %zu "
                           "devices (one per rank of this node)",
                           p, nodes.nodeRank, local, chosen.size());
  // This node's ranks count GPUs from 0 (or --devices) on its own host.
  setFirstLocalRank(first);
  // Node 0 hears of this node first, then whether its ranks loaded.
  int timeoutMs = nodes.timeoutSeconds * 1000;
  COMPRESSA_ASSIGN_OR_RETURN(
      TcpSocket control,
      tcpConnect(nodes.masterAddr, nodes.masterPort, timeoutMs));
  COMPRESSA_RETURN_IF_ERROR(
      sendHello(control, kHelloControl, uint64_t(nodes.nodeRank), art->digest()));
  StatusOr<std::vector<std::unique_ptr<Engine>>> loaded =
      loadRanks(*art, first, first + local, weightsDir, random, seed);
  COMPRESSA_RETURN_IF_ERROR(sendStatus(control, loaded.status()));
  COMPRESSA_RETURN_IF_ERROR(loaded.status());
  std::vector<std::unique_ptr<Engine>> engines = std::move(*loaded);
  std::vector<std::unique_ptr<Communicator>> comms;
  if (cuda) {
    NcclId id{};
    COMPRESSA_RETURN_IF_ERROR(control.recv(id.data(), id.size(), "node 0"));
    std::vector<int> mineRanks;
    for (uint32_t i = 0; i < local; ++i)
      mineRanks.push_back(int(first + i));
    COMPRESSA_ASSIGN_OR_RETURN(
        comms, createNcclRanks(id, int(ranks), mineRanks, [&](size_t i) {
          return engines[i]->backend->makeCurrent();
        }));
    for (uint32_t i = 0; i < local; ++i)
      engines[i]->backend->setCommunicator(comms[i].get());
  }
  for (uint32_t i = 0; i < local && !cuda; ++i) {
    COMPRESSA_ASSIGN_OR_RETURN(
        TcpSocket s, tcpConnect(nodes.masterAddr, nodes.masterPort, timeoutMs));
    COMPRESSA_RETURN_IF_ERROR(
        sendHello(s, kHelloData, first + i, art->digest()));
    comms.push_back(createTcpCommunicator(std::move(s), int(first + i), int(ranks)));
    engines[i]->backend->setCommunicator(comms.back().get());
  }

  // Each local rank's part of a command on a thread of its own; a failing
  // rank aborts its communicator so no rank of any node waits forever.
  auto onLocal = [&](const std::function<Status(Engine &)> &job) {
    std::vector<Status> results(local);
    std::vector<std::thread> threads;
    for (uint32_t i = 0; i < local; ++i)
      threads.emplace_back([&, i] {
        results[i] = job(*engines[i]);
        if (!results[i].ok())
          comms[i]->abort(results[i]);
      });
    for (std::thread &t : threads)
      t.join();
    return firstCause(results);
  };
  for (;;) {
    StatusOr<uint64_t> command = control.recvU64("node 0");
    if (!command.ok())
      return command.status().withContext(
          "node %d: node 0 left without saying so", nodes.nodeRank);
    if (*command == kStop)
      return okStatus();
    if (*command == kReset) {
      for (std::unique_ptr<Engine> &e : engines)
        e->reset();
      continue;
    }
    if (*command == kFill) {
      uint64_t v[3];
      for (uint64_t &x : v) {
        COMPRESSA_ASSIGN_OR_RETURN(x, control.recvU64("node 0"));
      }
      Status s = onLocal([&](Engine &e) {
        return e.fillSyntheticContext(int64_t(v[0]), int64_t(v[1]), v[2]);
      });
      COMPRESSA_RETURN_IF_ERROR(sendStatus(control, s));
      continue;
    }
    if (*command != kForward)
      return COMPRESSA_ERROR(DataLoss, "node %d: node 0 sent command %llu",
                             nodes.nodeRank, (unsigned long long)*command);
    COMPRESSA_ASSIGN_OR_RETURN(uint64_t nameBytes, control.recvU64("node 0"));
    if (nameBytes > 256)
      return COMPRESSA_ERROR(DataLoss, "node 0 sent a %llu-byte program name",
                             (unsigned long long)nameBytes);
    std::string program(nameBytes, '\0');
    COMPRESSA_RETURN_IF_ERROR(control.recv(program.data(), nameBytes, "node 0"));
    COMPRESSA_ASSIGN_OR_RETURN(uint64_t count, control.recvU64("node 0"));
    COMPRESSA_ASSIGN_OR_RETURN(uint64_t start, control.recvU64("node 0"));
    if (count > kMaxIds)
      return COMPRESSA_ERROR(DataLoss, "node 0 sent %llu token ids",
                             (unsigned long long)count);
    std::vector<int64_t> ids(count);
    COMPRESSA_RETURN_IF_ERROR(control.recv(ids.data(), count * 8, "node 0"));
    Status s = onLocal([&](Engine &e) {
      return e.forward(program, ids.data(), int64_t(count), int64_t(start))
          .status();
    });
    COMPRESSA_RETURN_IF_ERROR(sendStatus(control, s));
  }
}

} // namespace compressa
