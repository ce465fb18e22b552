// SPDX-License-Identifier: Apache-2.0
// The server's metrics in Prometheus' text exposition format (GET /metrics):
// counters, gauges and histograms with fixed buckets, all behind one mutex
// (updated a few times per token; contention is not a concern at that rate).
#ifndef COMPRESSA_RUNTIME_SERVE_METRICS_H
#define COMPRESSA_RUNTIME_SERVE_METRICS_H

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace compressa {

class Metrics {
public:
  Metrics();

  /// HTTP requests answered, by path and status code.
  void countHttp(const std::string &path, int status);
  /// Generations that ended, by finish reason ("stop", "length",
  /// "cancelled", "error").
  void countFinished(const std::string &reason);
  void addPromptTokens(int64_t n, int64_t cached);
  void addGeneratedTokens(int64_t n);
  void observeTimeToFirstToken(double seconds);
  void observeInterTokenLatency(double seconds);
  /// Sequences in one decode step.
  void observeBatch(int64_t sequences);
  /// A scheduler step: "prefill" (a prompt chunk only), "decode" (decode
  /// steps only) or "mixed" (a prompt chunk interleaved with decode steps).
  void countStep(const char *kind);
  /// Steps counted so far of `kind`.
  uint64_t steps(const std::string &kind) const;
  void setGauges(int64_t queued, int64_t active, int64_t slots);

  /// The exposition text; also reports the process' resident memory.
  std::string render() const;

  /// Resident memory of this process in bytes (/proc/self/statm), 0 when
  /// it cannot be read.
  static int64_t residentBytes();

private:
  struct Histogram {
    std::vector<double> bounds;
    std::vector<uint64_t> counts; // Per bucket, not cumulative.
    double sum = 0;
    uint64_t count = 0;
    void observe(double value);
  };

  mutable std::mutex mutex;
  std::map<std::pair<std::string, int>, uint64_t> http;
  std::map<std::string, uint64_t> finished;
  std::map<std::string, uint64_t> stepKinds;
  uint64_t promptTokens = 0, cachedTokens = 0, generatedTokens = 0;
  int64_t queued = 0, active = 0, slots = 0;
  Histogram ttft, itl, batch;
};

} // namespace compressa

#endif // COMPRESSA_RUNTIME_SERVE_METRICS_H
