// SPDX-License-Identifier: Apache-2.0
// Greedy and top-k / top-p sampling.
#include "runtime/session/sampler.h"

#include <algorithm>
#include <cmath>

namespace compressa {

Status validateSamplingOptions(const SamplingOptions &options) {
  if (!std::isfinite(options.temperature) || options.temperature < 0)
    return COMPRESSA_ERROR(InvalidArgument,
                           "temperature %g is invalid: expected a finite "
                           "value >= 0",
                           options.temperature);
  if (options.topK < 0)
    return COMPRESSA_ERROR(InvalidArgument,
                           "top-k %lld is invalid: expected >= 0 (0 keeps all "
                           "tokens)",
                           static_cast<long long>(options.topK));
  if (!(options.topP > 0 && options.topP <= 1))
    return COMPRESSA_ERROR(InvalidArgument,
                           "top-p %g is invalid: expected a value in (0, 1]",
                           options.topP);
  return okStatus();
}

int64_t argmaxToken(const float *logits, int64_t count) {
  int64_t best = 0;
  bool found = false;
  for (int64_t i = 0; i < count; ++i) {
    if (std::isnan(logits[i]))
      continue;
    if (!found || logits[i] > logits[best]) {
      best = i;
      found = true;
    }
  }
  return best;
}

Sampler::Sampler(const SamplingOptions &options)
    : options(options), rng(options.seed) {}

bool Sampler::isGreedy() const {
  return options.greedy || options.temperature == 0 || options.topK == 1;
}

int64_t Sampler::sample(const float *logits, int64_t vocab) {
  if (vocab <= 0)
    return 0;
  if (isGreedy())
    return argmaxToken(logits, vocab);

  // Candidates, most likely first (ties: lowest id); NaN never a candidate.
  order.clear();
  for (int64_t i = 0; i < vocab; ++i)
    if (!std::isnan(logits[i]))
      order.push_back(i);
  if (order.empty())
    return 0;
  auto before = [logits](int64_t a, int64_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  size_t keep = order.size();
  if (options.topK > 0 && static_cast<uint64_t>(options.topK) < keep) {
    keep = static_cast<size_t>(options.topK);
    std::partial_sort(order.begin(), order.begin() + keep, order.end(),
                      before);
    order.resize(keep);
  } else {
    std::sort(order.begin(), order.end(), before);
  }
  float top = logits[order[0]];
  if (std::isinf(top))
    return order[0]; // +inf wins outright; all -inf leaves nothing to weigh.

  // softmax(logits / T) over the candidates, in double; the largest weighs 1.
  weights.resize(keep);
  double total = 0;
  for (size_t i = 0; i < keep; ++i) {
    weights[i] = std::exp((double(logits[order[i]]) - double(top)) /
                          options.temperature);
    total += weights[i];
  }
  // Nucleus: the shortest prefix whose probability reaches topP.
  if (options.topP < 1) {
    double target = options.topP * total;
    double running = 0;
    for (size_t i = 0; i < keep; ++i) {
      running += weights[i];
      if (running >= target) {
        keep = i + 1;
        break;
      }
    }
    total = 0;
    for (size_t i = 0; i < keep; ++i)
      total += weights[i];
  }
  // One uniform draw in [0, 1) from 53 random bits.
  double u = double(rng() >> 11) * (1.0 / 9007199254740992.0);
  double threshold = u * total;
  double running = 0;
  for (size_t i = 0; i < keep; ++i) {
    running += weights[i];
    if (threshold < running)
      return order[i];
  }
  return order[keep - 1];
}

} // namespace compressa
