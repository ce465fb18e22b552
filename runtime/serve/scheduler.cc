// SPDX-License-Identifier: Apache-2.0
#include "runtime/serve/scheduler.h"

#include <algorithm>
#include <limits>

namespace compressa {

namespace {

double secondsBetween(std::chrono::steady_clock::time_point from,
                      std::chrono::steady_clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

} // namespace

//===----------------------------------------------------------------------===//
// ServeRequest
//===----------------------------------------------------------------------===//

bool ServeRequest::next(RequestEvent &event,
                        std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex);
  if (!ready.wait_for(lock, timeout, [this] { return !events.empty(); }))
    return false;
  event = std::move(events.front());
  events.pop_front();
  return true;
}

void ServeRequest::push(RequestEvent event) {
  {
    std::lock_guard<std::mutex> lock(mutex);
    events.push_back(std::move(event));
  }
  ready.notify_all();
}

//===----------------------------------------------------------------------===//
// Scheduler
//===----------------------------------------------------------------------===//

Scheduler::Scheduler(Engine &engine, const Tokenizer &tokenizer,
                     Metrics &metrics, SchedulerOptions options)
    : engine(engine), tokenizer(tokenizer), metrics(metrics),
      options(options), eos(engine.eosTokenId()) {
  this->options.maxBatch =
      std::max<int64_t>(1, std::min(options.maxBatch, engine.slotCount()));
  int64_t programChunk = engine.hasProgram("prefill")
                             ? engine.maxTokens("prefill")
                             : 1;
  chunk = options.prefillChunk > 0
              ? std::min(options.prefillChunk, programChunk)
              : programChunk;
  slots.resize(static_cast<size_t>(this->options.maxBatch));
  updateGauges();
  if (options.startThread)
    start();
}

void Scheduler::start() {
  std::lock_guard<std::mutex> lock(mutex);
  if (!thread.joinable() && !stopping)
    thread = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() { stop(); }

void Scheduler::stop() {
  // Two threads may stop at once (a signal's and the one leaving run()):
  // the second waits for the first, then finds nothing to do.
  std::lock_guard<std::mutex> stopLock(stopMutex);
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (stopping && !thread.joinable())
      return;
    stopping = true;
  }
  wake.notify_all();
  if (thread.joinable())
    thread.join();
  Status gone = COMPRESSA_ERROR(Unavailable, "the server is shutting down");
  for (int64_t s = 0; s < static_cast<int64_t>(slots.size()); ++s)
    if (slots[s].request)
      fail(s, gone);
  std::lock_guard<std::mutex> lock(mutex);
  for (auto &request : queue) {
    RequestEvent event;
    event.kind = RequestEvent::Kind::Error;
    event.error = gone;
    request->push(std::move(event));
  }
  queue.clear();
}

StatusOr<std::shared_ptr<ServeRequest>>
Scheduler::submit(std::vector<int64_t> prompt, GenerationParams params) {
  if (prompt.empty())
    return COMPRESSA_ERROR(InvalidArgument, "the prompt has no tokens");
  int64_t vocab = engine.vocabSize();
  for (size_t i = 0; i < prompt.size(); ++i)
    if (prompt[i] < 0 || prompt[i] >= vocab)
      return COMPRESSA_ERROR(InvalidArgument,
                             "prompt token %zu is %lld, outside the "
                             "vocabulary [0, %lld)",
                             i, static_cast<long long>(prompt[i]),
                             static_cast<long long>(vocab));
  int64_t context = engine.maxContext();
  if (static_cast<int64_t>(prompt.size()) >= context)
    return COMPRESSA_ERROR(OutOfRange,
                           "the prompt has %zu tokens; the model's maximum "
                           "context is %lld tokens, which leaves no room to "
                           "generate",
                           prompt.size(), static_cast<long long>(context));
  if (params.maxTokens < 1)
    return COMPRESSA_ERROR(InvalidArgument, "max_tokens must be at least 1");
  COMPRESSA_RETURN_IF_ERROR(validateSamplingOptions(params.sampling));
  auto request =
      std::make_shared<ServeRequest>(std::move(prompt), std::move(params));
  request->sampler = std::make_unique<Sampler>(request->params.sampling);
  request->submitted = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (stopping)
      return COMPRESSA_ERROR(Unavailable, "the server is shutting down");
    if (inSystem >= options.maxBatch + options.maxQueue)
      return COMPRESSA_ERROR(ResourceExhausted,
                             "the server is busy: %lld requests are being "
                             "served and %lld may wait (--max-batch %lld, "
                             "--max-queue %lld); retry later",
                             static_cast<long long>(options.maxBatch),
                             static_cast<long long>(options.maxQueue),
                             static_cast<long long>(options.maxBatch),
                             static_cast<long long>(options.maxQueue));
    ++inSystem;
    queue.push_back(request);
  }
  wake.notify_all();
  return request;
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(mutex);
  SchedulerStats out;
  out.slots = static_cast<int64_t>(slots.size());
  out.queued = static_cast<int64_t>(queue.size());
  for (const Slot &slot : slots)
    out.active += slot.request != nullptr;
  // Slot tokens change on the scheduler's thread without the mutex; it
  // counts the cached slots for us in updateGauges.
  out.cachedSlots = cachedSlots;
  return out;
}

void Scheduler::updateGauges() {
  int64_t active = 0, cached = 0;
  std::lock_guard<std::mutex> lock(mutex);
  for (const Slot &slot : slots) {
    active += slot.request != nullptr;
    cached += !slot.request && !slot.tokens.empty();
  }
  cachedSlots = cached;
  metrics.setGauges(static_cast<int64_t>(queue.size()), active,
                    static_cast<int64_t>(slots.size()));
}

void Scheduler::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex);
      wake.wait(lock, [this] {
        if (stopping || !queue.empty())
          return true;
        for (const Slot &slot : slots)
          if (slot.request)
            return true;
        return false;
      });
      if (stopping)
        return;
      admit();
    }
    updateGauges();
    retireCancelled();
    bool prefilled = prefillStep();
    bool decoded = decodeStep();
    if (prefilled || decoded)
      metrics.countStep(prefilled && decoded ? "mixed"
                        : prefilled          ? "prefill"
                                             : "decode");
    updateGauges();
  }
}

int64_t Scheduler::pickSlot(const std::vector<int64_t> &prompt,
                            int64_t &keep) {
  int64_t reuse = -1, empty = -1, oldest = -1;
  keep = 0;
  for (int64_t s = 0; s < static_cast<int64_t>(slots.size()); ++s) {
    const Slot &slot = slots[s];
    if (slot.request)
      continue;
    size_t n = slot.tokens.size();
    if (n == 0) {
      if (empty < 0)
        empty = s;
      continue;
    }
    // The state holds exactly `tokens`: usable when the prompt continues
    // them with at least one token (whose logits start the reply).
    if (n < prompt.size() &&
        std::equal(slot.tokens.begin(), slot.tokens.end(), prompt.begin()) &&
        static_cast<int64_t>(n) > keep) {
      reuse = s;
      keep = static_cast<int64_t>(n);
    }
    if (oldest < 0 || slot.lastUse < slots[oldest].lastUse)
      oldest = s;
  }
  if (reuse >= 0)
    return reuse;
  keep = 0;
  return empty >= 0 ? empty : oldest;
}

void Scheduler::admit() {
  // Cancelled requests leave the queue wherever they wait, so that they
  // neither hold a queue place (429s) nor count as queued.
  for (auto it = queue.begin(); it != queue.end();) {
    if (!(*it)->isCancelled()) {
      ++it;
      continue;
    }
    it = queue.erase(it);
    --inSystem;
    metrics.countFinished("cancelled");
  }
  while (!queue.empty()) {
    std::shared_ptr<ServeRequest> request = queue.front();
    int64_t keep = 0;
    int64_t s = pickSlot(request->prompt, keep);
    if (s < 0)
      return;
    queue.pop_front();
    Slot &slot = slots[s];
    // A new sequence: its state starts over (prefillStep resets it).
    if (keep == 0)
      slot.tokens.clear();
    slot.request = request;
    request->prefilled = keep;
    request->cached = keep;
    metrics.addPromptTokens(static_cast<int64_t>(request->prompt.size()),
                            keep);
  }
}

void Scheduler::retireCancelled() {
  for (int64_t s = 0; s < static_cast<int64_t>(slots.size()); ++s) {
    if (!slots[s].request || !slots[s].request->isCancelled())
      continue;
    // The state still holds exactly slot.tokens: kept for prefix reuse.
    metrics.countFinished("cancelled");
    release(s);
  }
}

bool Scheduler::prefillStep() {
  int64_t pick = -1;
  for (int64_t s = 0; s < static_cast<int64_t>(slots.size()); ++s) {
    const auto &request = slots[s].request;
    if (!request ||
        request->prefilled >= static_cast<int64_t>(request->prompt.size()))
      continue;
    if (pick < 0 || request->submitted < slots[pick].request->submitted)
      pick = s;
  }
  if (pick < 0)
    return false;
  Slot &slot = slots[pick];
  ServeRequest &request = *slot.request;
  int64_t total = static_cast<int64_t>(request.prompt.size());
  int64_t n = std::min(chunk, total - request.prefilled);
  Status status = engine.selectSlot(pick);
  if (!status.ok()) {
    fail(pick, status);
    return true;
  }
  if (request.prefilled == 0)
    engine.reset();
  // Only the prompt's last token's logits are sampled from: a chunk before
  // the last computes none, the last one its last row (LogitRows).
  bool last = request.prefilled + n == total;
  StatusOr<std::vector<float>> logits = engine.prefillLast(
      request.prompt.data() + request.prefilled, n, request.prefilled, n, last);
  if (!logits.ok()) {
    fail(pick, logits.status());
    return true;
  }
  slot.tokens.insert(slot.tokens.end(),
                     request.prompt.begin() + request.prefilled,
                     request.prompt.begin() + request.prefilled + n);
  request.prefilled += n;
  if (last)
    accept(pick, logits->data());
  return true;
}

bool Scheduler::decodeStep() {
  std::vector<int64_t> slotIds, ids, positions;
  for (int64_t s = 0; s < static_cast<int64_t>(slots.size()); ++s) {
    const auto &request = slots[s].request;
    if (!request || request->nextToken < 0)
      continue;
    slotIds.push_back(s);
    ids.push_back(request->nextToken);
    positions.push_back(static_cast<int64_t>(slots[s].tokens.size()));
  }
  if (slotIds.empty())
    return false;
  int64_t count = static_cast<int64_t>(slotIds.size());
  metrics.observeBatch(count);
  StatusOr<std::vector<float>> logits =
      engine.decodeStep(slotIds.data(), ids.data(), positions.data(), count);
  if (!logits.ok()) {
    for (int64_t s : slotIds)
      fail(s, logits.status());
    return true;
  }
  size_t vocab = static_cast<size_t>(engine.vocabSize());
  for (int64_t i = 0; i < count; ++i) {
    Slot &slot = slots[slotIds[i]];
    slot.tokens.push_back(ids[i]);
    slot.request->nextToken = -1;
    accept(slotIds[i], logits->data() + static_cast<size_t>(i) * vocab);
  }
  return true;
}

void Scheduler::accept(int64_t s, const float *logits) {
  Slot &slot = slots[s];
  ServeRequest &request = *slot.request;
  int64_t token = request.sampler->sample(logits, engine.vocabSize());
  const std::vector<int64_t> &forced = request.params.forcedReply;
  if (!forced.empty())
    token = request.generated < static_cast<int64_t>(forced.size())
                ? forced[static_cast<size_t>(request.generated)]
                : eos;
  ++request.generated;
  metrics.addGeneratedTokens(1);
  auto now = std::chrono::steady_clock::now();
  if (request.generated == 1)
    metrics.observeTimeToFirstToken(secondsBetween(request.submitted, now));
  else
    metrics.observeInterTokenLatency(secondsBetween(request.lastToken, now));
  request.lastToken = now;
  if (token == eos && !request.params.ignoreEos)
    return finish(s, "stop");
  StatusOr<std::string> bytes = tokenizer.tokenBytes(token);
  if (!bytes.ok())
    return fail(s, bytes.status());
  request.replyText += request.utf8.push(*bytes);
  if (flushText(request, false))
    return finish(s, "stop");
  if (request.generated >= request.params.maxTokens)
    return finish(s, "length");
  // Prompt and reply fit the context: tokens holds all but this token, so
  // prompt + reply = tokens.size() + 1.
  if (static_cast<int64_t>(slot.tokens.size()) + 1 >= engine.maxContext())
    return finish(s, "length");
  request.nextToken = token;
}

bool Scheduler::flushText(ServeRequest &request, bool final) {
  if (final)
    request.replyText += request.utf8.finish();
  const std::string &text = request.replyText;
  size_t longest = 0;
  for (const std::string &stop : request.params.stop)
    longest = std::max(longest, stop.size());
  // Everything before sentBytes - longest was searched already.
  size_t from = request.sentBytes > longest ? request.sentBytes - longest : 0;
  size_t found = std::string::npos;
  for (const std::string &stop : request.params.stop)
    if (!stop.empty())
      found = std::min(found, text.find(stop, from));
  size_t end = text.size();
  if (found != std::string::npos) {
    end = found;
  } else if (!final) {
    // Hold back a tail that may be the start of a stop text.
    for (const std::string &stop : request.params.stop)
      for (size_t k = std::min(stop.size() - 1, text.size()); k > 0; --k)
        if (text.size() - k >= request.sentBytes &&
            text.compare(text.size() - k, k, stop, 0, k) == 0) {
          end = std::min(end, text.size() - k);
          break;
        }
  }
  if (end > request.sentBytes) {
    RequestEvent event;
    event.text = text.substr(request.sentBytes, end - request.sentBytes);
    request.sentBytes = end;
    request.push(std::move(event));
  }
  return found != std::string::npos;
}

void Scheduler::finish(int64_t s, const std::string &reason) {
  ServeRequest &request = *slots[s].request;
  std::string why = reason;
  if (flushText(request, true))
    why = "stop";
  RequestEvent event;
  event.kind = RequestEvent::Kind::Done;
  event.finish.reason = why;
  event.finish.promptTokens = static_cast<int64_t>(request.prompt.size());
  event.finish.completionTokens = request.generated;
  event.finish.cachedTokens = request.cached;
  request.push(std::move(event));
  metrics.countFinished(why);
  release(s);
}

void Scheduler::fail(int64_t s, const Status &status) {
  RequestEvent event;
  event.kind = RequestEvent::Kind::Error;
  event.error = status;
  slots[s].request->push(std::move(event));
  metrics.countFinished("error");
  // What the failed call left in the state is unknown: start over.
  slots[s].tokens.clear();
  if (engine.selectSlot(s).ok())
    engine.reset();
  release(s);
}

void Scheduler::release(int64_t s) {
  std::lock_guard<std::mutex> lock(mutex);
  slots[s].request.reset();
  slots[s].lastUse = ++useClock;
  --inSystem;
}

} // namespace compressa
