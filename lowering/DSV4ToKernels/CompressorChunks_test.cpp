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
// Marked dsv4.numerics = "fast" (the prefill program of --numerics=fast),
// the kv and score rows are warp matrix tiles' products of bf16-rounded x
// and the bf16 weights summed in f32 (mma.sync on CUDA; the CPU target sums
// the same products in k order, per row whatever the tile): the chunkings
// still equal the token loop, and the rows in the state match a reference of
// those semantics (and, unmarked, one of the f32 x).
//
//===----------------------------------------------------------------------===//

#include "lowering/DSV4ToKernels/KernelTestHarness.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
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
using ::compressa::cpu_test::roundToBf16;
using ::compressa::cpu_test::subst;

/// An f32 or bf16 [rows, cols] (or [cols] with rows = 0) weight of random
/// values in [lo, hi), and its values as floats.
struct Weight {
  std::string type;
  std::vector<uint8_t> data;
  std::vector<float> values;
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
      u = uint32_t(bits) << 16;
      std::memcpy(&v, &u, 4);
    } else {
      std::memcpy(&w.data[4 * i], &v, 4);
    }
    w.values.push_back(v);
  }
  return w;
}

struct Case {
  const char *name;
  int64_t m, dim, D;
  bool overlap, indexerKeys, bf16Entries;
  /// dsv4.numerics = "fast" on the op.
  bool fast = false;
  /// wgate bf16 in an exact CSA case (as in the checkpoints).
  bool bf16Gate = false;
};

/// The kernel of `cs`'s compress op with random weights: wgate f32 for an
/// exact CSA case (the token tiles' other weight type) unless bf16Gate, bf16 otherwise (as
/// the fast MMA tiles need).
struct Compressor {
  Compressor(const Case &cs, int64_t maxContext, std::mt19937 &gen)
      : cs(cs), slots(cs.overlap ? 2 * cs.m : cs.m), width(cs.overlap ? 2 * cs.dim : cs.dim),
        entryBytes(cs.bf16Entries ? 2 : 4), stateBytes(2 * slots * width * 4),
        entriesBytes(maxContext / cs.m * cs.dim * entryBytes),
        wkv(randomWeight(width, cs.D, true, gen, -0.3f, 0.3f)),
        wgate(randomWeight(width, cs.D, !cs.overlap || cs.fast || cs.bf16Gate, gen, -0.3f, 0.3f)),
        ape(randomWeight(cs.m, width, false, gen, -1.0f, 1.0f)),
        norm(randomWeight(0, cs.dim, true, gen, 0.5f, 1.5f)) {
    const int64_t ropeDim = 8;
    std::string stateType = "!dsv4.compressor_state<" + std::to_string(cs.m) + ", " +
                            std::to_string(cs.dim) + (cs.overlap ? ", overlap>" : ">");
    std::string entriesType =
        std::string(cs.indexerKeys ? "!dsv4.indexer_keys<" : "!dsv4.compressed_kv<") +
        std::to_string(cs.m) + ", " + std::to_string(cs.dim) +
        (cs.bf16Entries ? ", bf16>" : ", f32>");
    std::string text = subst(R"(
    func.func @t(%x: tensor<?x$D$xf32>, %st: $ST$, %e: $ET$, %pos: index) {
      %wkv = dsv4.param "attn.compressor.wkv.weight" : $WKV$
      %wg = dsv4.param "attn.compressor.wgate.weight" : $WG$
      %ape = dsv4.param "attn.compressor.ape" : $APE$
      %n = dsv4.param "attn.compressor.norm.weight" : $N$
      %st2, %e2 = dsv4.kv.compress %x, %wkv, %wg, %ape, %n, %st, %e, %pos
          {$FAST$eps = 1.0e-06 : f64, rope = $ROPE$}
          : (tensor<?x$D$xf32>, $WKV$, $WG$, $APE$, $N$, $ST$, $ET$, index) -> ($ST$, $ET$)
      return
    })",
                             {{"D", std::to_string(cs.D)},
                              {"ST", stateType},
                              {"ET", entriesType},
                              {"WKV", wkv.type},
                              {"WG", wgate.type},
                              {"APE", ape.type},
                              {"N", norm.type},
                              {"FAST", cs.fast ? "dsv4.numerics = \"fast\", " : ""},
                              {"ROPE", "#dsv4.rope<dim = " + std::to_string(ropeDim) +
                                           ", theta = 160000.0, yarn = [16.0, 65536, 32.0, "
                                           "1.0]>"}});
    std::string error;
    compiled = k.compile(text, maxContext, error);
    EXPECT_TRUE(compiled) << error << "\n" << text;
  }

  /// A fresh state as the runtime resets it (kv 0, score -inf); entries 0.
  void fresh(GuardedBuffer &state, GuardedBuffer &entries) {
    state.resize(stateBytes);
    entries.resize(entriesBytes);
    float *f = state.as<float>();
    std::fill(f, f + slots * width, 0.0f);
    std::fill(f + slots * width, f + 2 * slots * width,
              -std::numeric_limits<float>::infinity());
  }

  /// The call of tokens start .. start + len - 1 of x ([T, D]).
  void run(GuardedBuffer &state, GuardedBuffer &entries, const std::vector<float> &x,
           int64_t start, int64_t len) {
    GuardedBuffer xs(len * cs.D * 4);
    std::memcpy(xs.data(), x.data() + start * cs.D, len * cs.D * 4);
    ASSERT_TRUE(k.run(len, start,
                      {{xs.data()}, wkv.arg(), wgate.arg(), ape.arg(), norm.arg(),
                       {state.data()}, {entries.data()}, {}},
                      {}));
    ASSERT_TRUE(xs.guardsIntact() && state.guardsIntact() && entries.guardsIntact());
  }

  const Case &cs;
  const int64_t slots, width, entryBytes;
  const size_t stateBytes, entriesBytes;
  Weight wkv, wgate, ape, norm;
  OpKernel k;
  bool compiled = false;
};

std::vector<float> randomX(int64_t T, int64_t D, std::mt19937 &gen) {
  std::vector<float> x(T * D);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (float &v : x)
    v = dist(gen);
  return x;
}

/// Runs `chunks` (lengths, consecutive from position 0) of one random
/// sequence through a fresh state and compares the state and the entries
/// after each chunk with those after the same positions one token at a time.
void checkChunkings(const Case &cs, const std::vector<std::vector<int64_t>> &chunkings) {
  const int64_t m = cs.m, dim = cs.dim, maxContext = 128, T = 75;
  std::mt19937 gen(1234 + m + dim);
  Compressor cp(cs, maxContext, gen);
  ASSERT_TRUE(cp.compiled);
  std::vector<float> x = randomX(T, cs.D, gen);
  const size_t stateBytes = cp.stateBytes, entriesBytes = cp.entriesBytes;

  // The token loop: the state and the entries after each position.
  std::vector<std::vector<uint8_t>> wantState(T + 1), wantEntries(T + 1);
  {
    GuardedBuffer state, entries;
    cp.fresh(state, entries);
    for (int64_t p = 0; p < T; ++p) {
      cp.run(state, entries, x, p, 1);
      auto *s = state.as<uint8_t>(), *e = entries.as<uint8_t>();
      wantState[p + 1].assign(s, s + stateBytes);
      wantEntries[p + 1].assign(e, e + entriesBytes);
    }
  }
  // The token loop wrote every complete window's entry (not all zero).
  for (int64_t w = 0; w < T / m; ++w) {
    const uint8_t *row = wantEntries[T].data() + w * dim * cp.entryBytes;
    ASSERT_TRUE(std::any_of(row, row + dim * cp.entryBytes, [](uint8_t b) { return b != 0; }))
        << cs.name << ": entry " << w << " was not written";
  }
  for (const std::vector<int64_t> &chunks : chunkings) {
    GuardedBuffer state, entries;
    cp.fresh(state, entries);
    int64_t start = 0;
    std::string seen;
    for (int64_t len : chunks) {
      if (start + len > T)
        len = T - start;
      if (len <= 0)
        break;
      cp.run(state, entries, x, start, len);
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

/// The kv and score rows in the state after a chunk of T tokens from
/// position 0 (the current window's slot j: the row of the last position q
/// = j mod m), marked fast and not (the same x): fast, sums of
/// bf16(x) * w; exact, of x * w (both + ape for the score), each within f32
/// accumulation tolerance of a double reference; and most fast rows beyond
/// that tolerance of the exact reference (the test sees the fast code).
void checkRows(Case cs) {
  const int64_t maxContext = 128, T = 40, m = cs.m;
  int64_t offExact = 0, rows = 0;
  for (bool fast : {false, true}) {
    cs.fast = fast;
    std::mt19937 gen(4321);
    Compressor cp(cs, maxContext, gen);
    ASSERT_TRUE(cp.compiled);
    std::vector<float> x = randomX(T, cs.D, gen);
    GuardedBuffer state, entries;
    cp.fresh(state, entries);
    cp.run(state, entries, x, 0, T);
    const float *kvState = state.as<float>(), *scoreState = kvState + cp.slots * cp.width;
    const int64_t cur = cs.overlap ? m : 0;
    for (int64_t j = 0; j < m; ++j) {
      const int64_t q = j + (T - 1 - j) / m * m;
      for (int64_t i = 0; i < cp.width; ++i) {
        // w's dot with token q's x rounded to bf16 (fast) or not, and the
        // sum of the products' magnitudes.
        auto dot = [&](const Weight &w, bool bf16, double &mag) {
          double sum = 0;
          mag = 0;
          for (int64_t k = 0; k < cs.D; ++k) {
            float xk = x[q * cs.D + k];
            double p = double(bf16 ? roundToBf16(xk) : xk) * w.values[i * cs.D + k];
            sum += p;
            mag += std::fabs(p);
          }
          return sum;
        };
        const double ape = cp.ape.values[(q % m) * cp.width + i];
        double kvMag, scoreMag, exactKvMag, exactScoreMag;
        const double kv = dot(cp.wkv, fast, kvMag), score = dot(cp.wgate, fast, scoreMag) + ape;
        const double exactKv = dot(cp.wkv, false, exactKvMag);
        const double exactScore = dot(cp.wgate, false, exactScoreMag) + ape;
        const double kvTol = 1e-5 * kvMag, scoreTol = 1e-5 * (scoreMag + std::fabs(ape));
        const int64_t at = (cur + j) * cp.width + i;
        std::string where = std::string(cs.name) + (fast ? " fast" : " exact") +
                            ": position " + std::to_string(q) + ", row " + std::to_string(i);
        EXPECT_NEAR(kvState[at], kv, kvTol) << where << ": kv";
        EXPECT_NEAR(scoreState[at], score, scoreTol) << where << ": score";
        if (fast) {
          offExact += std::fabs(kvState[at] - exactKv) > 1e-5 * exactKvMag;
          offExact += std::fabs(scoreState[at] - exactScore) >
                      1e-5 * (exactScoreMag + std::fabs(ape));
          rows += 2;
        }
        if (::testing::Test::HasFailure())
          return;
      }
    }
  }
  EXPECT_GT(2 * offExact, rows) << cs.name << ": the fast rows are near the exact ones";
}

TEST(CompressorChunks, HcaEqualsTheTokenLoop) {
  checkChunkings({"HCA m=4", 4, 32, 64, false, false, false}, chunkings());
  checkChunkings({"HCA m=16, bf16 entries", 16, 32, 64, false, false, true}, chunkings());
  // Rows of 64 bf16 segments: the dots split in 2 parts (token tiles and
  // the decode warps alike).
  checkChunkings({"HCA m=4, D=512", 4, 32, 512, false, false, false}, chunkings());
}

TEST(CompressorChunks, CsaEqualsTheTokenLoop) {
  checkChunkings({"CSA m=4", 4, 32, 64, true, false, false}, chunkings());
  checkChunkings({"CSA m=4, bf16 entries", 4, 16, 64, true, false, true}, chunkings());
  checkChunkings({"CSA indexer keys m=4", 4, 16, 64, true, true, false}, chunkings());
  checkChunkings({"CSA indexer keys m=4, D=512, bf16 wgate", 4, 16, 512, true, true, false,
                  false, true},
                 chunkings());
}

TEST(CompressorChunks, FastEqualsTheTokenLoop) {
  checkChunkings({"fast HCA m=4", 4, 32, 64, false, false, false, true}, chunkings());
  checkChunkings({"fast CSA m=4, bf16 entries", 4, 16, 64, true, false, true, true},
                 chunkings());
}

TEST(CompressorChunks, FastRowsAreBf16Products) {
  checkRows({"HCA m=32", 32, 32, 64, false, false, false});
  checkRows({"CSA m=4", 4, 32, 64, true, false, false});
}

} // namespace
