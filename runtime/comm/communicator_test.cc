// SPDX-License-Identifier: Apache-2.0
// The in-process communicator (the CPU target's ranks) and NCCL's loading.
#include "runtime/comm/communicator.h"
#include "runtime/comm/nccl_communicator.h"
#include "runtime/session/backend.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <thread>
#include <vector>

namespace compressa {
namespace {

/// Runs body(rank) on one thread per rank and returns their statuses.
std::vector<Status> onRanks(int ranks, const std::function<Status(int)> &body) {
  std::vector<Status> out(ranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] { out[r] = body(r); });
  for (std::thread &t : threads)
    t.join();
  return out;
}

uint64_t addr(const void *p) { return reinterpret_cast<uint64_t>(p); }

TEST(InProcessCommunicator, AllReduceSumsInRankOrderOnEveryRank) {
  const int ranks = 4, n = 1000;
  auto comms = createInProcessGroup(ranks);
  ASSERT_EQ(comms.size(), 4u);
  std::vector<std::vector<float>> in(ranks, std::vector<float>(n));
  std::vector<std::vector<float>> out(ranks, std::vector<float>(n, -1));
  for (int r = 0; r < ranks; ++r)
    for (int i = 0; i < n; ++i)
      in[r][i] = float(r + 1) * 0.1f + float(i);
  // Twice: the second call reuses the group, the first result in place.
  for (int round = 0; round < 2; ++round) {
    std::vector<Status> s = onRanks(ranks, [&](int r) {
      EXPECT_EQ(comms[r]->rank(), r);
      EXPECT_EQ(comms[r]->size(), ranks);
      return round == 0 ? comms[r]->allReduceSum(addr(in[r].data()),
                                                 addr(out[r].data()), n, nullptr)
                        : comms[r]->allReduceSum(addr(out[r].data()),
                                                 addr(out[r].data()), n, nullptr);
    });
    for (const Status &st : s)
      ASSERT_TRUE(st.ok()) << st.message();
  }
  for (int i = 0; i < n; ++i) {
    float once = 0;
    for (int r = 0; r < ranks; ++r)
      once += in[r][i];
    float twice = 0;
    for (int r = 0; r < ranks; ++r)
      twice += once;
    for (int r = 0; r < ranks; ++r)
      ASSERT_EQ(out[r][i], twice) << "rank " << r << " element " << i;
  }
}

TEST(InProcessCommunicator, AllGatherAndBarrier) {
  const int ranks = 3;
  auto comms = createInProcessGroup(ranks);
  std::vector<std::vector<uint8_t>> out(ranks, std::vector<uint8_t>(6));
  std::vector<Status> s = onRanks(ranks, [&](int r) {
    uint8_t mine[2] = {uint8_t(10 * r), uint8_t(10 * r + 1)};
    Status st = comms[r]->allGather(addr(mine), addr(out[r].data()), 2, nullptr);
    if (!st.ok())
      return st;
    return comms[r]->barrier();
  });
  for (const Status &st : s)
    ASSERT_TRUE(st.ok()) << st.message();
  for (int r = 0; r < ranks; ++r)
    EXPECT_EQ(out[r], (std::vector<uint8_t>{0, 1, 10, 11, 20, 21}));
}

TEST(InProcessCommunicator, AbortReleasesRanksWaitingInACollective) {
  // Rank 2 fails before the all-reduce: ranks 0 and 1 must not hang.
  const int ranks = 3;
  auto comms = createInProcessGroup(ranks);
  float x = 1, y = 0;
  std::vector<Status> s = onRanks(ranks, [&](int r) {
    if (r == 2) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      Status why(StatusCode::NotFound, "tensor 'x' is missing");
      comms[r]->abort(why);
      return why;
    }
    float in = x, out = y;
    return comms[r]->allReduceSum(addr(&in), addr(&out), 1, nullptr);
  });
  for (int r = 0; r < 2; ++r) {
    ASSERT_FALSE(s[r].ok());
    EXPECT_NE(s[r].message().find("another rank failed: tensor 'x' is missing"),
              std::string::npos)
        << s[r].message();
  }
  // And every later call fails at once.
  EXPECT_FALSE(comms[0]->barrier().ok());
}

TEST(DeviceList, ParsesOrdinalsAndRefusesBadOnes) {
  StatusOr<std::vector<int>> ok = parseDeviceList("0,1,7");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, (std::vector<int>{0, 1, 7}));
  for (const char *bad : {"", "0,", "a", "0,0", "-1", "1,,2", "99999"}) {
    StatusOr<std::vector<int>> s = parseDeviceList(bad);
    EXPECT_FALSE(s.ok()) << bad;
  }
  EXPECT_NE(parseDeviceList("0,0").status().message().find("names device 0 twice"),
            std::string::npos);
}

TEST(Nccl, AMissingLibraryIsAnErrorNamingIt) {
  // The first load in this process decides; point it at nothing.
  setenv("COMPRESSA_NCCL_LIBRARY", "/nonexistent/libnccl.so.2", 1);
  StatusOr<std::string> version = loadNccl();
  ASSERT_FALSE(version.ok());
  EXPECT_EQ(version.status().code(), StatusCode::Unavailable);
  EXPECT_NE(version.status().message().find(
                "no NCCL: dlopen(/nonexistent/libnccl.so.2) failed"),
            std::string::npos)
      << version.status().message();
  StatusOr<std::vector<std::unique_ptr<Communicator>>> group =
      createNcclGroup({0, 1});
  EXPECT_FALSE(group.ok());
}

} // namespace
} // namespace compressa
