// SPDX-License-Identifier: Apache-2.0
// Picking the next token from a row of logits (spec §6): greedy argmax, or a
// draw from softmax(logits / temperature) restricted to the top-k tokens and
// then to the nucleus of probability top-p. Deterministic for a given seed:
// the random stream is std::mt19937_64 and the uniform draw is computed here,
// not by a standard-library distribution whose algorithm may vary.
#ifndef COMPRESSA_RUNTIME_SESSION_SAMPLER_H
#define COMPRESSA_RUNTIME_SESSION_SAMPLER_H

#include "runtime/base/status.h"

#include <cstdint>
#include <random>
#include <vector>

namespace compressa {

/// How the next token is chosen.
struct SamplingOptions {
  /// Always take the most likely token (ties: the lowest id).
  bool greedy = false;
  /// Softmax temperature; 0 means greedy. Must be finite and >= 0.
  double temperature = 1.0;
  /// Keep only the k most likely tokens; 0 keeps all.
  int64_t topK = 0;
  /// Keep the smallest set of most likely tokens whose probability reaches
  /// topP; in (0, 1], 1 keeps all.
  double topP = 1.0;
  /// Seed of the random stream.
  uint64_t seed = 0;
};

/// InvalidArgument naming the field when `options` is out of range.
Status validateSamplingOptions(const SamplingOptions &options);

/// The index of the largest of `count` logits; ties and NaNs resolve to the
/// lowest index (a NaN never wins over a number). 0 when count is 0.
int64_t argmaxToken(const float *logits, int64_t count);

/// A token chooser with its own random stream.
class Sampler {
public:
  /// `options` must have passed validateSamplingOptions.
  explicit Sampler(const SamplingOptions &options);

  /// True when sample() is argmaxToken().
  bool isGreedy() const;
  /// The next token from `vocab` logits.
  int64_t sample(const float *logits, int64_t vocab);

private:
  SamplingOptions options;
  std::mt19937_64 rng;
  std::vector<int64_t> order;
  std::vector<double> weights;
};

} // namespace compressa

#endif // COMPRESSA_RUNTIME_SESSION_SAMPLER_H
