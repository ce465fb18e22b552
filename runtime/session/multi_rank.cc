// SPDX-License-Identifier: Apache-2.0
#include "runtime/session/multi_rank.h"

#include "runtime/comm/nccl_communicator.h"
#include "runtime/session/engine.h"

namespace compressa {
namespace {
/// Set while RankGroup::join creates a peer: Engine::create on a rank
/// other than 0 is refused otherwise.
thread_local bool creatingPeer = false;
} // namespace

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
  workers.clear(); // Joins the threads before the engines go.
  peers.clear();   // Before the communicators they use.
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
  const auto *list = root.peers(); // Validated: ranks - 1 of them, in order.
  std::vector<StatusOr<std::unique_ptr<Engine>>> made;
  made.reserve(ranks - 1);
  for (uint32_t i = 0; i + 1 < ranks; ++i)
    made.emplace_back(Status(StatusCode::Internal, "not created"));
  std::vector<std::thread> loaders;
  for (uint32_t i = 0; i + 1 < ranks; ++i)
    loaders.emplace_back([&, i] {
      const fb::RankArtifact &peer = *list->Get(i);
      std::string name = art.path() + " (rank " + std::to_string(peer.rank()) +
                         " of " + std::to_string(ranks) + ")";
      StatusOr<std::unique_ptr<Artifact>> read = ArtifactReader::readBuffer(
          peer.artifact()->data(), peer.artifact()->size(), name);
      if (!read.ok()) {
        made[i] = read.status();
        return;
      }
      const fb::Artifact &proot = (*read)->root();
      if (proot.ranks() != ranks || proot.rank() != peer.rank() ||
          proot.target() != root.target()) {
        made[i] = COMPRESSA_ERROR(DataLoss,
                                  "%s: is rank %u of %u for %s, expected "
                                  "rank %u of %u for %s",
                                  name.c_str(), proot.rank(), proot.ranks(),
                                  (*read)->targetName(), peer.rank(), ranks,
                                  art.targetName());
        return;
      }
      creatingPeer = true;
      made[i] = random ? Engine::createWithRandomWeights(std::move(*read), seed)
                       : Engine::create(std::move(*read), weightsDir);
      creatingPeer = false;
    });
  for (std::thread &t : loaders)
    t.join();
  for (uint32_t i = 0; i + 1 < ranks; ++i) {
    if (!made[i].ok())
      return made[i].status();
    group->peers.push_back(std::move(*made[i]));
  }
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
  return onAll(
      [&](size_t, Engine &peer) {
        return peer.forward(program, ids, count, startPos).status();
      },
      [&] {
        leaderRunning = true;
        Status s = leaderRun();
        leaderRunning = false;
        return s;
      });
}

void RankGroup::resetPeers() {
  for (std::unique_ptr<Engine> &peer : peers)
    peer->reset();
}

Status RankGroup::fillPeers(int64_t from, int64_t to, uint64_t seed) {
  for (std::unique_ptr<Engine> &peer : peers)
    COMPRESSA_RETURN_IF_ERROR(peer->fillSyntheticContext(from, to, seed));
  return okStatus();
}

} // namespace compressa
