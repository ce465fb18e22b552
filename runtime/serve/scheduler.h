// SPDX-License-Identifier: Apache-2.0
// Continuous batching over the Engine's sequence slots.
//
// One thread (the scheduler's) owns the Engine. Requests are submitted from
// any thread as token ids with their sampling parameters and wait in a
// queue; between steps the scheduler admits them into free slots, and each
// step then runs at most one prompt chunk of one request being prefilled
// and one decode step of every request that is generating
// (Engine::decodeStep), so new prompts are interleaved with the decode steps
// of running ones instead of stalling them. Finished and cancelled requests
// leave their slot between steps.
//
// Prefix reuse: a slot remembers the tokens its state holds after its
// request is done. A request whose prompt extends them (the next turn of a
// chat: the earlier prompt, the reply, then the new message) takes that slot
// and prefills only the new tokens. A free slot is otherwise taken empty
// first, then least recently used, and reset.
//
// A request receives events: the text of each generated token as soon as it
// is whole UTF-8 (held back while it could be the start of a stop string),
// then one Done event with the finish reason and the token counts.
#ifndef COMPRESSA_RUNTIME_SERVE_SCHEDULER_H
#define COMPRESSA_RUNTIME_SERVE_SCHEDULER_H

#include "runtime/base/status.h"
#include "runtime/serve/metrics.h"
#include "runtime/session/engine.h"
#include "runtime/session/sampler.h"
#include "runtime/tokenizer/tokenizer.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace compressa {

/// What one request asks the generator for.
struct GenerationParams {
  /// Most tokens to generate (>= 1); the context may end the reply sooner.
  int64_t maxTokens = 16;
  /// Must have passed validateSamplingOptions.
  SamplingOptions sampling;
  /// The reply ends before the first of these texts (not included).
  std::vector<std::string> stop;
  /// Keep generating after the end of sentence (vLLM's ignore_eos; for
  /// benchmarks and tests that need a reply of a known length).
  bool ignoreEos = false;
  /// A test hook (compressa-serve with COMPRESSA_SERVE_TEST_HOOKS=1): when
  /// non-empty, these tokens are generated in turn instead of sampled ones,
  /// then the end of sentence; the model still runs every step. Lets the
  /// tests check reply parsing (reasoning, tool calls) on a tiny model
  /// with random weights, whose own replies are gibberish.
  std::vector<int64_t> forcedReply;
};

/// Why a reply ended, as OpenAI names it: "stop" (end of sentence or a
/// stop text) or "length" (max_tokens or the context).
struct FinishInfo {
  std::string reason;
  int64_t promptTokens = 0;
  int64_t completionTokens = 0;
  /// Prompt tokens whose state was reused from an earlier request.
  int64_t cachedTokens = 0;
};

/// One event of a request, in order: text pieces, then Done or Error.
struct RequestEvent {
  enum class Kind { Text, Done, Error };
  Kind kind = Kind::Text;
  std::string text;
  FinishInfo finish;
  Status error;
};

/// A submitted request: the scheduler pushes events, the HTTP handler pops
/// them. cancel() (the client went away) frees its slot at the next step.
class ServeRequest {
public:
  ServeRequest(std::vector<int64_t> prompt, GenerationParams params)
      : prompt(std::move(prompt)), params(std::move(params)) {}

  /// Waits up to `timeout` for the next event; false when none came.
  bool next(RequestEvent &event, std::chrono::milliseconds timeout);
  void cancel() { cancelled = true; }
  bool isCancelled() const { return cancelled; }

  const std::vector<int64_t> prompt;
  const GenerationParams params;

private:
  friend class Scheduler;
  void push(RequestEvent event);

  std::mutex mutex;
  std::condition_variable ready;
  std::deque<RequestEvent> events;
  std::atomic<bool> cancelled{false};

  // The scheduler's own state of the request (its thread only).
  std::chrono::steady_clock::time_point submitted;
  std::chrono::steady_clock::time_point lastToken;
  std::unique_ptr<Sampler> sampler;
  int64_t prefilled = 0;  ///< Prompt tokens in the slot's state.
  int64_t cached = 0;     ///< Of those, reused from an earlier request.
  int64_t generated = 0;  ///< Tokens sampled.
  int64_t nextToken = -1; ///< Sampled, not yet run (decode phase).
  Utf8Stream utf8;
  std::string text;      ///< Decoded, not yet sent (stop-string window).
  size_t sentBytes = 0;  ///< Of the reply's text.
  std::string replyText; ///< Everything decoded so far.
};

struct SchedulerOptions {
  /// Slots, i.e. sequences generating at once (<= the engine's slots).
  int64_t maxBatch = 1;
  /// Requests that may wait for a slot; more are refused.
  int64_t maxQueue = 64;
  /// Tokens per prompt chunk (<= 0: the prefill program's max_tokens).
  int64_t prefillChunk = 0;
  /// Start the scheduler's thread in the constructor; false leaves it to
  /// start() (tests queue requests first, to fix what one step sees).
  bool startThread = true;
};

/// Counts for /health and the tests.
struct SchedulerStats {
  int64_t slots = 0;
  int64_t active = 0;
  int64_t queued = 0;
  /// Free slots holding a finished request's tokens (prefix reuse).
  int64_t cachedSlots = 0;
};

class Scheduler {
public:
  /// `engine` must hold options.maxBatch slots; engine, tokenizer and
  /// metrics must outlive the scheduler. Starts the scheduler's thread
  /// unless options.startThread is false.
  Scheduler(Engine &engine, const Tokenizer &tokenizer, Metrics &metrics,
            SchedulerOptions options);
  /// Starts the thread (once; with startThread false).
  void start();
  ~Scheduler();
  Scheduler(const Scheduler &) = delete;
  Scheduler &operator=(const Scheduler &) = delete;

  /// Queues a request. ResourceExhausted when maxBatch + maxQueue requests
  /// are in the system; OutOfRange when the prompt leaves no room to
  /// generate in the context; InvalidArgument for an empty prompt or ids
  /// outside the vocabulary.
  StatusOr<std::shared_ptr<ServeRequest>> submit(std::vector<int64_t> prompt,
                                                 GenerationParams params);
  SchedulerStats stats() const;
  /// Stops the thread; requests still in flight get an Unavailable error.
  void stop();

private:
  struct Slot {
    std::shared_ptr<ServeRequest> request;
    /// Tokens whose state the slot holds, in order from position 0.
    std::vector<int64_t> tokens;
    uint64_t lastUse = 0;
  };

  void loop();
  /// Moves queued requests into free slots (mutex held).
  void admit();
  /// A free slot for `prompt` and the count of its tokens to keep.
  int64_t pickSlot(const std::vector<int64_t> &prompt, int64_t &keep);
  void retireCancelled();
  /// One prompt chunk of the longest-waiting request being prefilled;
  /// false when there was none.
  bool prefillStep();
  /// One decode step of every generating request; false when none.
  bool decodeStep();
  /// Samples from `logits` for the request in `slot`; emits text, finishes.
  void accept(int64_t slot, const float *logits);
  /// Emits what may be sent of the text; true when a stop text was found.
  bool flushText(ServeRequest &request, bool final);
  void finish(int64_t slot, const std::string &reason);
  void fail(int64_t slot, const Status &status);
  void release(int64_t slot);
  void updateGauges();

  Engine &engine;
  const Tokenizer &tokenizer;
  Metrics &metrics;
  SchedulerOptions options;
  int64_t eos;
  int64_t chunk;

  mutable std::mutex mutex;
  /// Held by stop() throughout.
  std::mutex stopMutex;
  std::condition_variable wake;
  std::deque<std::shared_ptr<ServeRequest>> queue;
  std::vector<Slot> slots;
  int64_t inSystem = 0;
  /// Free slots holding tokens, as of the last updateGauges.
  int64_t cachedSlots = 0;
  bool stopping = false;
  uint64_t useClock = 0;
  std::thread thread;
};

} // namespace compressa

#endif // COMPRESSA_RUNTIME_SERVE_SCHEDULER_H
