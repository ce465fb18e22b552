// SPDX-License-Identifier: Apache-2.0
// compressa-serve's HTTP side: the OpenAI-compatible endpoints on top of the
// Scheduler (runtime/serve/scheduler.h), with cpp-httplib for HTTP and
// server-sent events and nlohmann-json for the bodies.
//
//   POST /v1/chat/completions  messages (+ tools, chat_template_kwargs; the
//                              prompt as runtime/chat/chat_request.h builds
//                              it), the reply split by ReplyParser into
//                              content, reasoning_content and tool_calls
//   POST /v1/completions       prompt: a string, [string] or token ids
//   GET  /v1/models            the one served model
//   GET  /health               {"status":"ok", slots, active, queued, ...}
//   GET  /metrics              Prometheus text (runtime/serve/metrics.h)
//
// Both POST endpoints take max_tokens (max_completion_tokens), temperature,
// top_p, top_k, seed, stop (a string or up to 4), stream, and vLLM's
// ignore_eos; defaults for the
// sampling fields come from the checkpoint's generation_config.json. With
// "stream": true the reply is a stream of chunks (text/event-stream) ending
// with one that carries finish_reason and usage, then "data: [DONE]".
//
// Every failure is an OpenAI error object {"error": {"message", "type",
// "param", "code"}}: 400 for malformed JSON, wrong types or values and
// prompts longer than the context, 404 for an unknown model or path, 413
// for a body over the limit, 429 when the queue is full. A client that
// disconnects is noticed and its request cancelled, which frees its slot or
// queue place: while its reply streams at the next write (an SSE comment
// when there is nothing to send), while it waits for a whole body by
// looking at its socket every 200 ms.
#ifndef COMPRESSA_RUNTIME_SERVE_SERVER_H
#define COMPRESSA_RUNTIME_SERVE_SERVER_H

#include "runtime/base/status.h"
#include "runtime/chat/chat_encoding.h"
#include "runtime/serve/metrics.h"
#include "runtime/serve/scheduler.h"
#include "runtime/session/engine.h"
#include "runtime/tokenizer/tokenizer.h"

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace httplib {
class Server;
}

namespace compressa {

/// Sampling defaults of a checkpoint (generation_config.json): fields it
/// does not have stay unset.
struct GenerationDefaults {
  std::optional<double> temperature;
  std::optional<double> topP;
  std::optional<int64_t> topK;
  std::optional<int64_t> maxNewTokens;
  /// do_sample: false means greedy unless a request asks for a temperature.
  std::optional<bool> doSample;
};

/// Reads DIR/generation_config.json; a missing file gives no defaults. A
/// file that is not JSON, or a field of the wrong type, is an error naming
/// the file and the field.
StatusOr<GenerationDefaults> readGenerationConfig(const std::string &dir);

struct ServerOptions {
  std::string host = "127.0.0.1";
  /// 0: any free port (port() says which).
  int port = 8000;
  SchedulerOptions scheduler;
  /// Bodies above this many bytes get a 413.
  size_t maxBodyBytes = size_t(8) << 20;
  /// The id /v1/models lists and requests name in `model`.
  std::string modelId;
  GenerationDefaults defaults;
  /// Accept the test-only request field "x_forced_reply" (a text whose
  /// tokens replace the sampled ones; GenerationParams::forcedReply).
  bool testHooks = false;
};

class Server {
public:
  /// `engine` must hold options.scheduler.maxBatch slots; engine and
  /// tokenizer must outlive the server. Ignores SIGPIPE process-wide (a
  /// client that disconnects must not end the server).
  static StatusOr<std::unique_ptr<Server>>
  create(Engine &engine, const Tokenizer &tokenizer, ServerOptions options);
  ~Server();

  /// Binds the listening socket; Unavailable naming host and port when it
  /// cannot.
  Status bind();
  /// The bound port (after bind).
  int port() const { return boundPort; }
  /// Serves until stop() (blocks).
  Status run();
  /// Stops listening and the scheduler; run() returns. Thread-safe; a
  /// stop() before run() has started listening does not stop it (call
  /// again until run() returns).
  void stop();

  const Metrics &metricsRef() const { return metrics; }

private:
  Server(Engine &engine, const Tokenizer &tokenizer, ChatEncoder encoder,
         ServerOptions options);
  void routes();

  struct Handlers;
  Engine &engine;
  const Tokenizer &tokenizer;
  ChatEncoder encoder;
  ServerOptions options;
  Metrics metrics;
  std::unique_ptr<Scheduler> scheduler;
  std::unique_ptr<httplib::Server> http;
  int boundPort = -1;
  /// stop() may be called from several threads.
  std::mutex stopMutex;
};

} // namespace compressa

#endif // COMPRESSA_RUNTIME_SERVE_SERVER_H
