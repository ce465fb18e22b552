// SPDX-License-Identifier: Apache-2.0
#include "runtime/serve/metrics.h"

#include <cinttypes>
#include <cstdio>

#include <unistd.h>

namespace compressa {

void Metrics::Histogram::observe(double value) {
  size_t i = 0;
  while (i < bounds.size() && value > bounds[i])
    ++i;
  ++counts[i];
  sum += value;
  ++count;
}

Metrics::Metrics() {
  // Latencies from 1 ms (a tiny CPU model) to a minute (a large prompt
  // behind a queue); batch sizes as powers of two.
  std::vector<double> seconds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,   0.25,   0.5,   1,    2.5,   5,
                                 10,    30,     60};
  ttft.bounds = seconds;
  itl.bounds = seconds;
  batch.bounds = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
  for (Histogram *h : {&ttft, &itl, &batch})
    h->counts.assign(h->bounds.size() + 1, 0);
}

void Metrics::countHttp(const std::string &path, int status) {
  std::lock_guard<std::mutex> lock(mutex);
  ++http[{path, status}];
}

void Metrics::countFinished(const std::string &reason) {
  std::lock_guard<std::mutex> lock(mutex);
  ++finished[reason];
}

void Metrics::addPromptTokens(int64_t n, int64_t cached) {
  std::lock_guard<std::mutex> lock(mutex);
  promptTokens += static_cast<uint64_t>(n);
  cachedTokens += static_cast<uint64_t>(cached);
}

void Metrics::addGeneratedTokens(int64_t n) {
  std::lock_guard<std::mutex> lock(mutex);
  generatedTokens += static_cast<uint64_t>(n);
}

void Metrics::observeTimeToFirstToken(double seconds) {
  std::lock_guard<std::mutex> lock(mutex);
  ttft.observe(seconds);
}

void Metrics::observeInterTokenLatency(double seconds) {
  std::lock_guard<std::mutex> lock(mutex);
  itl.observe(seconds);
}

void Metrics::observeBatch(int64_t sequences) {
  std::lock_guard<std::mutex> lock(mutex);
  batch.observe(static_cast<double>(sequences));
}

void Metrics::countStep(const char *kind) {
  std::lock_guard<std::mutex> lock(mutex);
  ++stepKinds[kind];
}

uint64_t Metrics::steps(const std::string &kind) const {
  std::lock_guard<std::mutex> lock(mutex);
  auto it = stepKinds.find(kind);
  return it == stepKinds.end() ? 0 : it->second;
}

void Metrics::setGauges(int64_t q, int64_t a, int64_t s) {
  std::lock_guard<std::mutex> lock(mutex);
  queued = q;
  active = a;
  slots = s;
}

int64_t Metrics::residentBytes() {
  FILE *file = std::fopen("/proc/self/statm", "r");
  if (!file)
    return 0;
  long long size = 0, resident = 0;
  int read = std::fscanf(file, "%lld %lld", &size, &resident);
  std::fclose(file);
  if (read != 2)
    return 0;
  return static_cast<int64_t>(resident) * sysconf(_SC_PAGESIZE);
}

namespace {

void header(std::string &out, const char *name, const char *type,
            const char *help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

std::string number(double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.17g", value);
  return buffer;
}

/// A label value with \, " and newlines escaped.
std::string label(const std::string &value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"')
      out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

} // namespace

std::string Metrics::render() const {
  std::lock_guard<std::mutex> lock(mutex);
  std::string out;
  header(out, "compressa_http_requests_total", "counter",
         "HTTP requests answered, by path and status code.");
  for (const auto &[key, count] : http)
    out += "compressa_http_requests_total{path=\"" + label(key.first) +
           "\",code=\"" + std::to_string(key.second) + "\"} " +
           std::to_string(count) + "\n";
  header(out, "compressa_requests_finished_total", "counter",
         "Generations that ended, by finish reason.");
  for (const auto &[reason, count] : finished)
    out += "compressa_requests_finished_total{reason=\"" + label(reason) +
           "\"} " + std::to_string(count) + "\n";
  header(out, "compressa_scheduler_steps_total", "counter",
         "Scheduler steps: a prompt chunk only (prefill), decode steps only "
         "(decode), or a prompt chunk interleaved with decode steps (mixed).");
  for (const auto &[kind, count] : stepKinds)
    out += "compressa_scheduler_steps_total{kind=\"" + label(kind) + "\"} " +
           std::to_string(count) + "\n";
  header(out, "compressa_prompt_tokens_total", "counter",
         "Prompt tokens of admitted requests.");
  out += "compressa_prompt_tokens_total " + std::to_string(promptTokens) + "\n";
  header(out, "compressa_prompt_tokens_cached_total", "counter",
         "Prompt tokens whose decode state was reused (prefix reuse).");
  out += "compressa_prompt_tokens_cached_total " +
         std::to_string(cachedTokens) + "\n";
  header(out, "compressa_generation_tokens_total", "counter",
         "Tokens generated.");
  out += "compressa_generation_tokens_total " +
         std::to_string(generatedTokens) + "\n";
  header(out, "compressa_queue_requests", "gauge",
         "Requests waiting for a slot.");
  out += "compressa_queue_requests " + std::to_string(queued) + "\n";
  header(out, "compressa_active_slots", "gauge",
         "Slots holding a request being prefilled or generated.");
  out += "compressa_active_slots " + std::to_string(active) + "\n";
  header(out, "compressa_slots", "gauge", "Sequence slots of the engine.");
  out += "compressa_slots " + std::to_string(slots) + "\n";
  header(out, "compressa_resident_memory_bytes", "gauge",
         "Resident memory of the server process.");
  out += "compressa_resident_memory_bytes " + std::to_string(residentBytes()) +
         "\n";
  auto histogram = [&out](const char *name, const char *help,
                          const Histogram &h) {
    header(out, name, "histogram", help);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < h.bounds.size(); ++i) {
      cumulative += h.counts[i];
      out += std::string(name) + "_bucket{le=\"" + number(h.bounds[i]) +
             "\"} " + std::to_string(cumulative) + "\n";
    }
    out += std::string(name) + "_bucket{le=\"+Inf\"} " +
           std::to_string(h.count) + "\n";
    out += std::string(name) + "_sum " + number(h.sum) + "\n";
    out += std::string(name) + "_count " + std::to_string(h.count) + "\n";
  };
  histogram("compressa_time_to_first_token_seconds",
            "From submission to the first generated token.", ttft);
  histogram("compressa_inter_token_latency_seconds",
            "Between consecutive generated tokens of a request.", itl);
  histogram("compressa_batch_occupancy",
            "Sequences in one decode step.", batch);
  return out;
}

} // namespace compressa
