//===- CompressorChunks_test.cpp - Prefill chunks vs the token loop -------===//
// SPDX-License-Identifier: Apache-2.0
//
// dsv4.kv.compress of a call with several tokens (a prefill chunk) pools
// every window that closes in it at once, and takes its kv/score rows in
// token tiles from 16 tokens on; a call of one token (a decode step) goes
// through the state token by token. Both must give the same bits: the
// state and the entries after any chunking of a sequence equal, byte for
// byte, those after feeding it one token at a time. The chunkings split
// windows at every offset (chunks of 2, 3, 5, 7, ...), end right after a
// window closes, close none or several windows, and include tile-sized
// chunks (16, 17, 33 tokens) and the whole sequence.
//
//===----------------------------------------------------------------------===//

#include "lowering/DSV4ToKernels/KernelTestHarness.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

using ::compressa::cpu_test::Arg;
using ::compressa::cpu_test::GuardedBuffer;
using ::compressa::cpu_test::OpKernel;
using ::compressa::cpu_test::subst;

/// An f32 or bf16 [rows, cols] (or [cols] with rows = 0) weight of random
/// values in [lo, hi).
struct Weight {
  std::string type;
  std::vector<uint8_t> data;
  Arg arg() { return Arg{data.data(), nullptr}; }
};

Weight randomWeight(int64_t rows, int64_t cols, bool bf16, std::mt19937 &gen, double lo,
                    double hi) {
  Weight w;
  int64_t n = (rows ? rows : 1) * cols;
  w.type = "!dsv4.weight<tensor<" + (rows ? std::to_string(rows) + "x" : std::string()) +
           std::to_string(cols) + "x" + (bf16 ? "bf16" : "f32") + ">>";
  w.data.resize(n * (bf16 ? 2 : 4));
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < n; ++i) {
    float v = dist(gen);
    if (bf16) {
      uint32_t u;
      std::memcpy(&u, &v, 4);
      auto bits = static_cast<uint16_t>(u >> 16); // truncated: any bf16 value will do
      std::memcpy(&w.data[2 * i], &bits, 2);
    } else {
      std::memcpy(&w.data[4 * i], &v, 4);
    }
  }
  return w;
}

struct Case {
  const char *name;
  int64_t m, dim, D;
  bool overlap, indexerKeys, bf16Entries;
};

/// Runs `chunks` (lengths, consecutive from position 0) of one random
/// sequence through a fresh state and compares the state and the entries
/// after each chunk with those after the same positions one token at a time.
void checkChunkings(const Case &cs, const std::vector<std::vector<int64_t>> &chunkings) {
  const int64_t m = cs.m, dim = cs.dim, D = cs.D, maxContext = 128, ropeDim = 8;
  const int64_t slots = cs.overlap ? 2 * m : m, width = cs.overlap ? 2 * dim : dim;
  const int64_t capacity = maxContext / m, entryBytes = cs.bf16Entries ? 2 : 4;
  const int64_t T = 75;
  std::mt19937 gen(1234 + m + dim);
  Weight wkv = randomWeight(width, D, true, gen, -0.3f, 0.3f);
  Weight wgate = randomWeight(width, D, !cs.overlap, gen, -0.3f, 0.3f);
  Weight ape = randomWeight(m, width, false, gen, -1.0f, 1.0f);
  Weight norm = randomWeight(0, dim, true, gen, 0.5f, 1.5f);
  std::string stateType = "!dsv4.compressor_state<" + std::to_string(m) + ", " +
                          std::to_string(dim) + (cs.overlap ? ", overlap>" : ">");
  std::string entriesType =
      std::string(cs.indexerKeys ? "!dsv4.indexer_keys<" : "!dsv4.compressed_kv<") +
      std::to_string(m) + ", " + std::to_string(dim) + (cs.bf16Entries ? ", bf16>" : ", f32>");
  std::string text = subst(R"(
    func.func @t(%x: tensor<?x$D$xf32>, %st: $ST$, %e: $ET$, %pos: index) {
      %wkv = dsv4.param "attn.compressor.wkv.weight" : $WKV$
      %wg = dsv4.param "attn.compressor.wgate.weight" : $WG$
      %ape = dsv4.param "attn.compressor.ape" : $APE$
      %n = dsv4.param "attn.compressor.norm.weight" : $N$
      %st2, %e2 = dsv4.kv.compress %x, %wkv, %wg, %ape, %n, %st, %e, %pos
          {eps = 1.0e-06 : f64, rope = $ROPE$}
          : (tensor<?x$D$xf32>, $WKV$, $WG$, $APE$, $N$, $ST$, $ET$, index) -> ($ST$, $ET$)
      return
    })",
                           {{"D", std::to_string(D)},
                            {"ST", stateType},
                            {"ET", entriesType},
                            {"WKV", wkv.type},
                            {"WG", wgate.type},
                            {"APE", ape.type},
                            {"N", norm.type},
                            {"ROPE", "#dsv4.rope<dim = " + std::to_string(ropeDim) +
                                         ", theta = 160000.0, yarn = [16.0, 65536, 32.0, 1.0]>"}});
  OpKernel k;
  std::string error;
  ASSERT_TRUE(k.compile(text, maxContext, error)) << error << "\n" << text;

  std::vector<float> x(T * D);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (float &v : x)
    v = dist(gen);
  const size_t stateBytes = 2 * slots * width * 4, entriesBytes = capacity * dim * entryBytes;
  // A fresh state as the runtime resets it (kv 0, score -inf); entries 0.
  auto fresh = [&](GuardedBuffer &state, GuardedBuffer &entries) {
    state.resize(stateBytes);
    entries.resize(entriesBytes);
    float *f = state.as<float>();
    std::fill(f, f + slots * width, 0.0f);
    std::fill(f + slots * width, f + 2 * slots * width,
              -std::numeric_limits<float>::infinity());
  };
  auto run = [&](GuardedBuffer &state, GuardedBuffer &entries, int64_t start, int64_t len) {
    GuardedBuffer xs(len * D * 4);
    std::memcpy(xs.data(), x.data() + start * D, len * D * 4);
    ASSERT_TRUE(k.run(len, start,
                      {{xs.data()}, wkv.arg(), wgate.arg(), ape.arg(), norm.arg(),
                       {state.data()}, {entries.data()}, {}},
                      {}));
    ASSERT_TRUE(xs.guardsIntact() && state.guardsIntact() && entries.guardsIntact());
  };

  // The token loop: the state and the entries after each position.
  std::vector<std::vector<uint8_t>> wantState(T + 1), wantEntries(T + 1);
  {
    GuardedBuffer state, entries;
    fresh(state, entries);
    for (int64_t p = 0; p < T; ++p) {
      run(state, entries, p, 1);
      auto *s = state.as<uint8_t>(), *e = entries.as<uint8_t>();
      wantState[p + 1].assign(s, s + stateBytes);
      wantEntries[p + 1].assign(e, e + entriesBytes);
    }
  }
  // The token loop wrote every complete window's entry (not all zero).
  for (int64_t w = 0; w < T / m; ++w) {
    const uint8_t *row = wantEntries[T].data() + w * dim * entryBytes;
    ASSERT_TRUE(std::any_of(row, row + dim * entryBytes, [](uint8_t b) { return b != 0; }))
        << cs.name << ": entry " << w << " was not written";
  }
  for (const std::vector<int64_t> &chunks : chunkings) {
    GuardedBuffer state, entries;
    fresh(state, entries);
    int64_t start = 0;
    std::string seen;
    for (int64_t len : chunks) {
      if (start + len > T)
        len = T - start;
      if (len <= 0)
        break;
      run(state, entries, start, len);
      start += len;
      seen += (seen.empty() ? "" : " ") + std::to_string(len);
      std::string where = std::string(cs.name) + ", chunks " + seen + ": after position " +
                          std::to_string(start - 1);
      EXPECT_EQ(0, std::memcmp(state.data(), wantState[start].data(), stateBytes))
          << where << ": the state differs from the token loop's";
      EXPECT_EQ(0, std::memcmp(entries.data(), wantEntries[start].data(), entriesBytes))
          << where << ": the entries differ from the token loop's";
      if (::testing::Test::HasFailure())
        return;
    }
    EXPECT_EQ(start, T);
  }
}

/// Chunkings of the 75 tokens: repeated sizes (the last chunk shorter) and
/// mixes.
std::vector<std::vector<int64_t>> chunkings() {
  std::vector<std::vector<int64_t>> all;
  for (int64_t size : {2, 3, 5, 7, 16, 17, 33, 75}) {
    std::vector<int64_t> c;
    for (int64_t n = 0; n < 75; n += size)
      c.push_back(size);
    all.push_back(c);
  }
  all.push_back({1, 2, 1, 4, 8, 3, 20, 1, 1, 2, 16, 16});
  all.push_back({6, 1, 18, 2, 5, 9, 34});
  all.push_back({4, 4, 16, 32, 19});
  return all;
}

TEST(CompressorChunks, HcaEqualsTheTokenLoop) {
  checkChunkings({"HCA m=4", 4, 32, 64, false, false, false}, chunkings());
  checkChunkings({"HCA m=16, bf16 entries", 16, 32, 64, false, false, true}, chunkings());
}

TEST(CompressorChunks, CsaEqualsTheTokenLoop) {
  checkChunkings({"CSA m=4", 4, 32, 64, true, false, false}, chunkings());
  checkChunkings({"CSA m=4, bf16 entries", 4, 16, 64, true, false, true}, chunkings());
  checkChunkings({"CSA indexer keys m=4", 4, 16, 64, true, true, false}, chunkings());
}

} // namespace
