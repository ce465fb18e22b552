// SPDX-License-Identifier: Apache-2.0
#include "runtime/serve/server.h"

#include "runtime/base/file.h"
#include "runtime/chat/chat_request.h"
#include "runtime/chat/reply_parser.h"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include <dirent.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace compressa {

using Json = nlohmann::ordered_json;

namespace {

//===----------------------------------------------------------------------===//
// Errors in OpenAI's shape
//===----------------------------------------------------------------------===//

/// An error answer: HTTP status and the fields of the error object.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param; // Empty: null.
  std::string code;  // Empty: null.
};

Json errorBody(const ApiError &error) {
  Json inner;
  inner["message"] = error.message;
  inner["type"] = error.type;
  inner["param"] = error.param.empty() ? Json(nullptr) : Json(error.param);
  inner["code"] = error.code.empty() ? Json(nullptr) : Json(error.code);
  Json body;
  body["error"] = std::move(inner);
  return body;
}

ApiError badRequest(std::string message, std::string param = "",
                    std::string code = "") {
  ApiError error;
  error.message = std::move(message);
  error.param = std::move(param);
  error.code = std::move(code);
  return error;
}

/// The field a chat_request.h message starts with ("messages[2].content:
/// ..." names "messages").
std::string leadingField(const std::string &message) {
  size_t end = message.find_first_of(".[: ");
  std::string field = message.substr(0, end);
  for (const char *known : {"messages", "tools", "chat_template_kwargs"})
    if (field == known)
      return field;
  return "";
}

const char *typeName(const Json &value) {
  switch (value.type()) {
  case Json::value_t::null:
    return "null";
  case Json::value_t::boolean:
    return "a boolean";
  case Json::value_t::string:
    return "a string";
  case Json::value_t::array:
    return "an array";
  case Json::value_t::object:
    return "an object";
  case Json::value_t::number_integer:
  case Json::value_t::number_unsigned:
    return "an integer";
  case Json::value_t::number_float:
    return "a number";
  default:
    return "an unknown value";
  }
}

ApiError wrongType(const std::string &field, const char *expected,
                   const Json &found) {
  return badRequest(field + ": expected " + expected + ", found " +
                        typeName(found),
                    field, "invalid_type");
}

//===----------------------------------------------------------------------===//
// Request fields
//===----------------------------------------------------------------------===//

/// What a completion request asks for, read and checked.
struct Parsed {
  bool stream = false;
  GenerationParams params;
  bool seeded = false;
};

/// Reads an optional integer field (null counts as absent).
std::optional<ApiError> readInt(const Json &body, const char *key,
                                std::optional<int64_t> &out, int64_t min,
                                int64_t max) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null())
    return std::nullopt;
  if (!it->is_number_integer() && !it->is_number_unsigned())
    return wrongType(key, "an integer", *it);
  if (it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(INT64_MAX))
    return badRequest(std::string(key) + ": out of range", key,
                      "invalid_value");
  int64_t value = it->get<int64_t>();
  if (value < min || value > max)
    return badRequest(std::string(key) + ": " + std::to_string(value) +
                          " is out of range [" + std::to_string(min) + ", " +
                          std::to_string(max) + "]",
                      key, "invalid_value");
  out = value;
  return std::nullopt;
}

std::optional<ApiError> readNumber(const Json &body, const char *key,
                                   std::optional<double> &out, double min,
                                   double max) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null())
    return std::nullopt;
  if (!it->is_number())
    return wrongType(key, "a number", *it);
  double value = it->get<double>();
  if (!std::isfinite(value) || value < min || value > max) {
    char text[160];
    std::snprintf(text, sizeof text, "%s: %g is out of range [%g, %g]", key,
                  value, min, max);
    return badRequest(text, key, "invalid_value");
  }
  out = value;
  return std::nullopt;
}

/// The fields both endpoints share: sampling, limits, stop, stream.
std::optional<ApiError> readCommon(const Json &body,
                                   const GenerationDefaults &defaults,
                                   int64_t contextLeft, Parsed &out) {
  if (auto it = body.find("stream"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean())
      return wrongType("stream", "a boolean", *it);
    out.stream = it->get<bool>();
  }
  if (auto it = body.find("ignore_eos"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean())
      return wrongType("ignore_eos", "a boolean", *it);
    out.params.ignoreEos = it->get<bool>();
  }
  if (auto it = body.find("n"); it != body.end() && !it->is_null()) {
    if (!it->is_number_integer())
      return wrongType("n", "an integer", *it);
    if (it->get<int64_t>() != 1)
      return badRequest("n: only 1 choice per request is supported", "n",
                        "invalid_value");
  }
  std::optional<int64_t> maxTokens, topK, seed;
  std::optional<double> temperature, topP;
  if (auto e = readInt(body, "max_tokens", maxTokens, 1, INT64_MAX))
    return e;
  if (!maxTokens)
    if (auto e = readInt(body, "max_completion_tokens", maxTokens, 1,
                         INT64_MAX))
      return e;
  if (auto e = readNumber(body, "temperature", temperature, 0, 1e6))
    return e;
  if (auto e = readNumber(body, "top_p", topP, 0, 1))
    return e;
  // -1 (vLLM's "all tokens") and 0 both keep every token.
  if (auto e = readInt(body, "top_k", topK, -1, INT64_MAX))
    return e;
  if (auto e = readInt(body, "seed", seed, INT64_MIN, INT64_MAX))
    return e;
  if (topP && *topP <= 0)
    return badRequest("top_p: must be greater than 0", "top_p",
                      "invalid_value");

  GenerationParams &params = out.params;
  params.maxTokens =
      maxTokens ? *maxTokens
                : std::min(contextLeft,
                           defaults.maxNewTokens.value_or(contextLeft));
  SamplingOptions &sampling = params.sampling;
  sampling.temperature = temperature ? *temperature
                                     : defaults.temperature.value_or(1.0);
  sampling.topP = topP ? *topP : defaults.topP.value_or(1.0);
  int64_t k = topK ? *topK : defaults.topK.value_or(0);
  sampling.topK = k < 0 ? 0 : k;
  // do_sample false: greedy, unless the request sets a temperature.
  sampling.greedy = sampling.temperature == 0 ||
                    (!temperature && defaults.doSample == false);
  if (seed) {
    sampling.seed = static_cast<uint64_t>(*seed);
    out.seeded = true;
  } else {
    static std::random_device device;
    static std::mutex deviceMutex;
    std::lock_guard<std::mutex> lock(deviceMutex);
    sampling.seed = (uint64_t(device()) << 32) ^ device();
  }

  if (auto it = body.find("stop"); it != body.end() && !it->is_null()) {
    if (it->is_string()) {
      params.stop.push_back(it->get<std::string>());
    } else if (it->is_array()) {
      if (it->size() > 4)
        return badRequest("stop: at most 4 texts", "stop", "invalid_value");
      for (size_t i = 0; i < it->size(); ++i) {
        if (!(*it)[i].is_string())
          return wrongType("stop[" + std::to_string(i) + "]", "a string",
                           (*it)[i]);
        params.stop.push_back((*it)[i].get<std::string>());
      }
    } else {
      return wrongType("stop", "a string or an array of strings", *it);
    }
    for (const std::string &stop : params.stop) {
      if (stop.empty())
        return badRequest("stop: a stop text is empty", "stop",
                          "invalid_value");
      if (findInvalidUtf8(stop))
        return badRequest("stop: not valid UTF-8", "stop", "invalid_value");
    }
  }
  return std::nullopt;
}

/// The status a scheduler refusal maps to.
ApiError fromStatus(const Status &status) {
  ApiError error = badRequest(status.message());
  switch (status.code()) {
  case StatusCode::ResourceExhausted:
    error.status = 429;
    error.type = "rate_limit_exceeded";
    error.code = "rate_limit_exceeded";
    break;
  case StatusCode::OutOfRange:
    error.param = "messages";
    error.code = "context_length_exceeded";
    break;
  case StatusCode::InvalidArgument:
    break;
  case StatusCode::Unavailable:
    error.status = 503;
    error.type = "server_error";
    break;
  default:
    error.status = 500;
    error.type = "server_error";
    break;
  }
  return error;
}

std::string randomId(const char *prefix) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t start = static_cast<uint64_t>(
      std::chrono::system_clock::now().time_since_epoch().count());
  char text[64];
  std::snprintf(text, sizeof text, "%s%012llx%04llx", prefix,
                static_cast<unsigned long long>(start & 0xffffffffffffULL),
                static_cast<unsigned long long>(counter++ & 0xffff));
  return text;
}

int64_t unixTime() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Json usageOf(const FinishInfo &finish) {
  Json usage;
  usage["prompt_tokens"] = finish.promptTokens;
  usage["completion_tokens"] = finish.completionTokens;
  usage["total_tokens"] = finish.promptTokens + finish.completionTokens;
  usage["prompt_tokens_details"] = {{"cached_tokens", finish.cachedTokens}};
  return usage;
}

Json toolCallJson(const ToolCall &call, bool withIndex) {
  Json out;
  if (withIndex)
    out["index"] = call.index;
  out["id"] = call.id;
  out["type"] = "function";
  out["function"] = {{"name", call.name}, {"arguments", call.arguments}};
  return out;
}

//===----------------------------------------------------------------------===//
// The client's connection
//===----------------------------------------------------------------------===//

/// The numeric address and port of a socket's own end or its peer's, the
/// way cpp-httplib fills Request::local_addr/remote_addr (getnameinfo,
/// NI_NUMERICHOST).
bool socketAddress(int fd, bool peer, std::string &host, int &port) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  int rc = peer ? ::getpeername(fd, reinterpret_cast<sockaddr *>(&address),
                                &length)
                : ::getsockname(fd, reinterpret_cast<sockaddr *>(&address),
                                &length);
  if (rc != 0)
    return false;
  if (address.ss_family == AF_INET)
    port = ntohs(reinterpret_cast<sockaddr_in *>(&address)->sin_port);
  else if (address.ss_family == AF_INET6)
    port = ntohs(reinterpret_cast<sockaddr_in6 *>(&address)->sin6_port);
  else
    return false;
  char text[NI_MAXHOST];
  if (::getnameinfo(reinterpret_cast<sockaddr *>(&address), length, text,
                    sizeof text, nullptr, 0, NI_NUMERICHOST) != 0)
    return false;
  host = text;
  return true;
}

/// The socket `req` came in on, or -1 when none is found. cpp-httplib 0.11
/// (Debian 12's) gives a handler neither its socket nor a way to ask
/// whether the client is still there (later versions' Request::
/// is_connection_closed), but the request names both ends of its TCP connection, and those
/// four values name one socket of this process. The socket stays open (and
/// its number this connection's) until the handler has returned.
int connectionSocket(const httplib::Request &req) {
  if (req.remote_port <= 0 || req.local_port <= 0)
    return -1;
  DIR *dir = ::opendir("/proc/self/fd");
  if (!dir)
    return -1;
  int found = -1;
  while (dirent *entry = ::readdir(dir)) {
    char *end = nullptr;
    long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == ::dirfd(dir))
      continue;
    struct stat info;
    if (::fstat(static_cast<int>(fd), &info) != 0 || !S_ISSOCK(info.st_mode))
      continue;
    std::string host;
    int port = -1;
    if (!socketAddress(static_cast<int>(fd), true, host, port) ||
        port != req.remote_port || host != req.remote_addr)
      continue;
    if (!socketAddress(static_cast<int>(fd), false, host, port) ||
        port != req.local_port || host != req.local_addr)
      continue;
    found = static_cast<int>(fd);
    break;
  }
  ::closedir(dir);
  return found;
}

/// Whether the client has closed its end of `fd` (or the connection
/// failed): the end of its data (a read would return 0, as nginx counts a
/// client abort) or an error. Data the client sent ahead (a pipelined
/// request) is not an end. Never blocks.
bool peerClosed(int fd) {
  pollfd poller{};
  poller.fd = fd;
  poller.events = POLLIN | POLLRDHUP;
  if (::poll(&poller, 1, 0) <= 0)
    return false;
  if (poller.revents & (POLLERR | POLLHUP | POLLNVAL | POLLRDHUP))
    return true;
  if (poller.revents & POLLIN) {
    char byte;
    ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                      errno != EINTR);
  }
  return false;
}

} // namespace

//===----------------------------------------------------------------------===//
// generation_config.json
//===----------------------------------------------------------------------===//

StatusOr<GenerationDefaults> readGenerationConfig(const std::string &dir) {
  GenerationDefaults defaults;
  std::string path = dir + "/generation_config.json";
  std::ifstream file(path, std::ios::binary);
  if (!file)
    return defaults;
  std::stringstream text;
  text << file.rdbuf();
  Json config = Json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object())
    return COMPRESSA_ERROR(InvalidArgument, "%s: not a JSON object",
                           path.c_str());
  auto number = [&](const char *key,
                    std::optional<double> &out) -> Status {
    auto it = config.find(key);
    if (it == config.end() || it->is_null())
      return okStatus();
    if (!it->is_number() || !std::isfinite(it->get<double>()))
      return COMPRESSA_ERROR(InvalidArgument, "%s: %s: expected a number",
                             path.c_str(), key);
    out = it->get<double>();
    return okStatus();
  };
  auto integer = [&](const char *key,
                     std::optional<int64_t> &out) -> Status {
    auto it = config.find(key);
    if (it == config.end() || it->is_null())
      return okStatus();
    if (!it->is_number_integer())
      return COMPRESSA_ERROR(InvalidArgument, "%s: %s: expected an integer",
                             path.c_str(), key);
    out = it->get<int64_t>();
    return okStatus();
  };
  COMPRESSA_RETURN_IF_ERROR(number("temperature", defaults.temperature));
  COMPRESSA_RETURN_IF_ERROR(number("top_p", defaults.topP));
  COMPRESSA_RETURN_IF_ERROR(integer("top_k", defaults.topK));
  COMPRESSA_RETURN_IF_ERROR(integer("max_new_tokens", defaults.maxNewTokens));
  if (auto it = config.find("do_sample");
      it != config.end() && !it->is_null()) {
    if (!it->is_boolean())
      return COMPRESSA_ERROR(InvalidArgument,
                             "%s: do_sample: expected a boolean",
                             path.c_str());
    defaults.doSample = it->get<bool>();
  }
  if (defaults.temperature && *defaults.temperature < 0)
    return COMPRESSA_ERROR(InvalidArgument,
                           "%s: temperature: must be >= 0", path.c_str());
  if (defaults.topP && (*defaults.topP <= 0 || *defaults.topP > 1))
    return COMPRESSA_ERROR(InvalidArgument, "%s: top_p: must be in (0, 1]",
                           path.c_str());
  if (defaults.maxNewTokens && *defaults.maxNewTokens < 1)
    return COMPRESSA_ERROR(InvalidArgument,
                           "%s: max_new_tokens: must be >= 1", path.c_str());
  return defaults;
}

//===----------------------------------------------------------------------===//
// Server
//===----------------------------------------------------------------------===//

StatusOr<std::unique_ptr<Server>> Server::create(Engine &engine,
                                                 const Tokenizer &tokenizer,
                                                 ServerOptions options) {
  COMPRESSA_ASSIGN_OR_RETURN(ChatEncoder encoder,
                             ChatEncoder::create(tokenizer));
  if (engine.slotCount() < options.scheduler.maxBatch)
    return COMPRESSA_ERROR(FailedPrecondition,
                           "the engine holds %lld slots, fewer than "
                           "--max-batch %lld",
                           static_cast<long long>(engine.slotCount()),
                           static_cast<long long>(options.scheduler.maxBatch));
  // A write to a client that has gone away must fail with EPIPE, not kill
  // the process (cpp-httplib sends without MSG_NOSIGNAL).
  std::signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<Server> server(
      new Server(engine, tokenizer, std::move(encoder), std::move(options)));
  server->routes();
  return server;
}

Server::Server(Engine &engine, const Tokenizer &tokenizer, ChatEncoder encoder,
               ServerOptions options)
    : engine(engine), tokenizer(tokenizer), encoder(std::move(encoder)),
      options(std::move(options)) {
  scheduler = std::make_unique<Scheduler>(engine, tokenizer, metrics,
                                          this->options.scheduler);
  http = std::make_unique<httplib::Server>();
}

Server::~Server() {
  stop();
}

Status Server::bind() {
  int port = options.port == 0
                 ? http->bind_to_any_port(options.host)
                 : (http->bind_to_port(options.host, options.port)
                        ? options.port
                        : -1);
  if (port < 0)
    return COMPRESSA_ERROR(Unavailable,
                           "cannot listen on %s:%d (address in use, or not "
                           "an address of this host)",
                           options.host.c_str(), options.port);
  boundPort = port;
  return okStatus();
}

Status Server::run() {
  if (!http->listen_after_bind())
    return COMPRESSA_ERROR(Unavailable, "the server on %s:%d stopped with "
                           "an error", options.host.c_str(), boundPort);
  return okStatus();
}

void Server::stop() {
  std::lock_guard<std::mutex> lock(stopMutex);
  if (http)
    http->stop();
  if (scheduler)
    scheduler->stop();
}

/// The endpoint bodies; friends of nothing, they use the server's parts.
struct Server::Handlers {
  Server &server;

  void send(httplib::Response &res, int status, const Json &body) const {
    res.status = status;
    res.set_content(body.dump(), "application/json");
  }
  void sendError(httplib::Response &res, const ApiError &error) const {
    send(res, error.status, errorBody(error));
  }

  /// Parses the body as a JSON object, and checks `model`.
  std::optional<ApiError> parseBody(const httplib::Request &req,
                                    Json &body) const {
    StatusOr<Json> parsed = parseRequestJson(req.body);
    if (!parsed.ok())
      return badRequest(parsed.status().message(), "", "invalid_json");
    body = std::move(*parsed);
    if (!body.is_object())
      return badRequest(std::string("the request body: expected a JSON "
                                    "object, found ") +
                            typeName(body),
                        "", "invalid_type");
    auto model = body.find("model");
    if (model != body.end() && !model->is_null()) {
      if (!model->is_string())
        return wrongType("model", "a string", *model);
      if (model->get<std::string>() != server.options.modelId) {
        ApiError error = badRequest(
            "The model '" + model->get<std::string>() +
                "' does not exist; this server serves '" +
                server.options.modelId + "'",
            "model", "model_not_found");
        error.status = 404;
        return error;
      }
    }
    return std::nullopt;
  }

  /// The test hook's "x_forced_reply" (ignored unless enabled).
  std::optional<ApiError> readForcedReply(const Json &body,
                                          Parsed &parsed) const {
    auto it = body.find("x_forced_reply");
    if (!server.options.testHooks || it == body.end() || it->is_null())
      return std::nullopt;
    if (!it->is_string())
      return wrongType("x_forced_reply", "a string", *it);
    StatusOr<std::vector<int64_t>> ids =
        server.tokenizer.encode(it->get<std::string>());
    if (!ids.ok())
      return badRequest("x_forced_reply: " + ids.status().message(),
                        "x_forced_reply", "invalid_value");
    parsed.params.forcedReply = std::move(*ids);
    return std::nullopt;
  }

  int64_t contextLeft(size_t promptTokens) const {
    return std::max<int64_t>(
        1, server.engine.maxContext() - static_cast<int64_t>(promptTokens));
  }

  void models(const httplib::Request &, httplib::Response &res) const {
    Json model;
    model["id"] = server.options.modelId;
    model["object"] = "model";
    model["created"] = 0;
    model["owned_by"] = "compressa";
    model["max_model_len"] = server.engine.maxContext();
    Json body;
    body["object"] = "list";
    body["data"] = Json::array({model});
    send(res, 200, body);
  }

  void health(const httplib::Request &, httplib::Response &res) const {
    SchedulerStats stats = server.scheduler->stats();
    Json body;
    body["status"] = "ok";
    body["model"] = server.options.modelId;
    body["slots"] = stats.slots;
    body["active"] = stats.active;
    body["queued"] = stats.queued;
    body["cached_slots"] = stats.cachedSlots;
    body["resident_memory_bytes"] = Metrics::residentBytes();
    send(res, 200, body);
  }

  /// Submits and answers: the whole body, or a stream of chunks.
  /// `chat`: the chat protocol (ReplyParser, message/delta); else
  /// text_completion.
  void generate(const httplib::Request &req, httplib::Response &res,
                std::vector<int64_t> prompt, Parsed parsed, bool chat,
                bool thinking) const {
    StatusOr<std::shared_ptr<ServeRequest>> submitted =
        server.scheduler->submit(std::move(prompt), parsed.params);
    if (!submitted.ok())
      return sendError(res, fromStatus(submitted.status()));
    std::shared_ptr<ServeRequest> request = *submitted;
    std::string id = randomId(chat ? "chatcmpl-" : "cmpl-");
    int64_t created = unixTime();
    const std::string &model = server.options.modelId;
    auto parser = std::make_shared<ReplyParser>(
        ReplyParserOptions{thinking, "call_" + id.substr(id.find('-') + 1) +
                                         "_"});

    if (!parsed.stream) {
      // Nothing is written until the reply is whole, so a client that goes
      // away is noticed on its socket: every 200 ms the handler looks
      // whether it was closed, and if so cancels the request, which frees
      // its slot (or its queue place) at the scheduler's next step.
      int socket = connectionSocket(req);
      auto checked = std::chrono::steady_clock::now();
      const auto every = std::chrono::milliseconds(200);
      std::string text;
      FinishInfo finish;
      for (;;) {
        RequestEvent event;
        bool got = request->next(event, every);
        if (socket >= 0 && std::chrono::steady_clock::now() - checked >= every) {
          checked = std::chrono::steady_clock::now();
          if (peerClosed(socket)) {
            request->cancel();
            // nginx's "client closed request", for the logger's metrics;
            // nothing reaches the client.
            res.status = 499;
            return;
          }
        }
        if (!got)
          continue;
        if (event.kind == RequestEvent::Kind::Text) {
          text += event.text;
          continue;
        }
        if (event.kind == RequestEvent::Kind::Error)
          return sendError(res, fromStatus(event.error));
        finish = event.finish;
        break;
      }
      Json choice;
      choice["index"] = 0;
      std::string reason = finish.reason;
      if (chat) {
        parser->feed(text);
        parser->finish();
        Json message;
        message["role"] = "assistant";
        message["content"] = parser->content();
        if (thinking)
          message["reasoning_content"] = parser->reasoning();
        if (!parser->toolCalls().empty()) {
          Json calls = Json::array();
          for (const ToolCall &call : parser->toolCalls())
            calls.push_back(toolCallJson(call, false));
          message["tool_calls"] = std::move(calls);
          reason = "tool_calls";
        }
        if (!parser->error().ok()) {
          reason = "error";
          choice["error"] = parser->error().message();
        }
        choice["message"] = std::move(message);
        choice["logprobs"] = nullptr;
      } else {
        choice["text"] = text;
        choice["logprobs"] = nullptr;
      }
      choice["finish_reason"] = reason;
      Json body;
      body["id"] = id;
      body["object"] = chat ? "chat.completion" : "text_completion";
      body["created"] = created;
      body["model"] = model;
      body["choices"] = Json::array({std::move(choice)});
      body["usage"] = usageOf(finish);
      return send(res, 200, body);
    }

    // Streaming: one chunk per event, written as it comes. A failed write
    // means the client is gone: the request is cancelled, which frees its
    // slot at the scheduler's next step.
    auto chunk = [=](Json delta, const Json &reason) {
      Json choice;
      choice["index"] = 0;
      if (chat)
        choice["delta"] = std::move(delta);
      else
        choice["text"] = delta.is_string() ? delta : Json("");
      choice["logprobs"] = nullptr;
      choice["finish_reason"] = reason;
      Json body;
      body["id"] = id;
      body["object"] = chat ? "chat.completion.chunk" : "text_completion";
      body["created"] = created;
      body["model"] = model;
      body["choices"] = Json::array({std::move(choice)});
      return body;
    };
    auto started = std::make_shared<bool>(false);
    auto done = std::make_shared<bool>(false);
    // When the stream last wrote to the client: a client that went away is
    // only noticed by a write, so at most every 250 ms there is one.
    using Clock = std::chrono::steady_clock;
    auto written = std::make_shared<Clock::time_point>(Clock::now());
    const auto every = std::chrono::milliseconds(250);
    bool isChat = chat;
    bool reasoning = thinking;
    res.status = 200;
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [=](size_t, httplib::DataSink &sink) -> bool {
          auto write = [&sink, written](const Json &body) {
            std::string line = "data: " + body.dump() + "\n\n";
            *written = Clock::now();
            return sink.write(line.data(), line.size());
          };
          // An SSE comment, which clients skip: it checks that the client is
          // still there while nothing else is written (the request waits in
          // the queue, or the reply parser holds text back, e.g. a tool
          // call being generated).
          auto ping = [&sink, written] {
            static const char text[] = ": ping\n\n";
            *written = Clock::now();
            return sink.is_writable() && sink.write(text, sizeof text - 1);
          };
          if (*done) {
            sink.done();
            return true;
          }
          if (isChat && !*started) {
            *started = true;
            Json delta;
            delta["role"] = "assistant";
            delta["content"] = "";
            if (!write(chunk(std::move(delta), nullptr))) {
              request->cancel();
              return false;
            }
          }
          RequestEvent event;
          if (!request->next(event, every)) {
            if (!ping()) {
              request->cancel();
              return false;
            }
            return true;
          }
          std::vector<Json> out;
          Json reason = nullptr;
          Json usage;
          auto deltas = [&](const ReplyDelta &d) {
            if (!d.reasoning.empty())
              out.push_back(chunk({{"reasoning_content", d.reasoning}},
                                  nullptr));
            if (!d.content.empty())
              out.push_back(chunk({{"content", d.content}}, nullptr));
            for (const ToolCall &call : d.toolCalls)
              out.push_back(chunk(
                  {{"tool_calls", Json::array({toolCallJson(call, true)})}},
                  nullptr));
          };
          if (event.kind == RequestEvent::Kind::Text) {
            if (isChat)
              deltas(parser->feed(event.text));
            else
              out.push_back(chunk(Json(event.text), nullptr));
          } else if (event.kind == RequestEvent::Kind::Error) {
            ApiError error = fromStatus(event.error);
            std::string line = "data: " + errorBody(error).dump() + "\n\n";
            sink.write(line.data(), line.size());
            *done = true;
            sink.done();
            return true;
          } else {
            std::string why = event.finish.reason;
            if (isChat) {
              deltas(parser->finish());
              if (!parser->toolCalls().empty())
                why = "tool_calls";
              if (!parser->error().ok())
                why = "error";
            }
            Json last = chunk(isChat ? Json::object() : Json(""), why);
            last["usage"] = usageOf(event.finish);
            out.push_back(std::move(last));
            *done = true;
          }
          (void)reasoning;
          for (const Json &body : out)
            if (!write(body)) {
              request->cancel();
              return false;
            }
          if (out.empty() && Clock::now() - *written >= every && !ping()) {
            request->cancel();
            return false;
          }
          if (*done) {
            static const char end[] = "data: [DONE]\n\n";
            if (!sink.write(end, sizeof end - 1))
              return false;
            sink.done();
          }
          return true;
        },
        [request](bool) {
          // The stream ended, completely or not: nothing more is wanted.
          request->cancel();
        });
  }

  void chatCompletions(const httplib::Request &req,
                       httplib::Response &res) const {
    Json body;
    if (auto error = parseBody(req, body))
      return sendError(res, *error);
    StatusOr<ChatPrompt> prompt = buildChatPrompt(server.encoder, body);
    if (!prompt.ok()) {
      ApiError error = badRequest(prompt.status().message(),
                                  leadingField(prompt.status().message()));
      return sendError(res, error);
    }
    Parsed parsed;
    if (auto error = readCommon(body, server.options.defaults,
                                contextLeft(prompt->ids.size()), parsed))
      return sendError(res, *error);
    if (auto error = readForcedReply(body, parsed))
      return sendError(res, *error);
    generate(req, res, std::move(prompt->ids), std::move(parsed), true,
             prompt->thinking);
  }

  void completions(const httplib::Request &req,
                   httplib::Response &res) const {
    Json body;
    if (auto error = parseBody(req, body))
      return sendError(res, *error);
    auto it = body.find("prompt");
    if (it == body.end() || it->is_null())
      return sendError(res, badRequest("prompt: missing (a string, or an "
                                       "array of token ids)",
                                       "prompt", "missing_field"));
    std::vector<int64_t> ids;
    const Json *text = nullptr;
    if (it->is_string()) {
      text = &*it;
    } else if (it->is_array() && it->size() == 1 && (*it)[0].is_string()) {
      text = &(*it)[0];
    } else if (it->is_array() && !it->empty()) {
      for (size_t i = 0; i < it->size(); ++i) {
        const Json &id = (*it)[i];
        if (!id.is_number_integer() && !id.is_number_unsigned())
          return sendError(res, wrongType("prompt[" + std::to_string(i) + "]",
                                          "a token id (integer)", id));
        ids.push_back(id.get<int64_t>());
      }
    } else {
      return sendError(res,
                       wrongType("prompt",
                                 "a string, one string in an array, or a "
                                 "non-empty array of token ids",
                                 *it));
    }
    if (text) {
      StatusOr<std::vector<int64_t>> encoded =
          encodeCompletion(server.tokenizer, text->get<std::string>());
      if (!encoded.ok())
        return sendError(res, badRequest("prompt: " +
                                             encoded.status().message(),
                                         "prompt", "invalid_value"));
      ids = std::move(*encoded);
    }
    Parsed parsed;
    if (auto error = readCommon(body, server.options.defaults,
                                contextLeft(ids.size()), parsed))
      return sendError(res, *error);
    if (auto error = readForcedReply(body, parsed))
      return sendError(res, *error);
    generate(req, res, std::move(ids), std::move(parsed), false, false);
  }
};

void Server::routes() {
  auto handlers = std::make_shared<Handlers>(Handlers{*this});
  httplib::Server &svr = *http;
  // Streams hold a thread each, and so does an idle keep-alive connection
  // (up to its 5 s timeout): enough for every slot and queued request, and
  // more to answer the rest (429, /health) at once.
  size_t threads = static_cast<size_t>(options.scheduler.maxBatch +
                                       options.scheduler.maxQueue + 32);
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  svr.set_payload_max_length(options.maxBodyBytes);
  // SO_REUSEADDR (a restart need not wait for TIME_WAIT) but not
  // cpp-httplib's default SO_REUSEPORT, with which a second server on the
  // same port would silently share it instead of failing.
  svr.set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  svr.set_keep_alive_max_count(1000);

  svr.Post("/v1/chat/completions",
           [handlers](const httplib::Request &req, httplib::Response &res) {
             handlers->chatCompletions(req, res);
           });
  svr.Post("/v1/completions",
           [handlers](const httplib::Request &req, httplib::Response &res) {
             handlers->completions(req, res);
           });
  svr.Get("/v1/models",
          [handlers](const httplib::Request &req, httplib::Response &res) {
            handlers->models(req, res);
          });
  svr.Get("/health",
          [handlers](const httplib::Request &req, httplib::Response &res) {
            handlers->health(req, res);
          });
  svr.Get("/metrics", [this](const httplib::Request &,
                             httplib::Response &res) {
    res.set_content(metrics.render(), "text/plain; version=0.0.4");
  });
  // Errors httplib answers itself (no route, body too large, bad request
  // line) get an error object too.
  svr.set_error_handler([handlers](const httplib::Request &req,
                                   httplib::Response &res) {
    if (!res.body.empty())
      return;
    ApiError error;
    error.status = res.status;
    switch (res.status) {
    case 404:
      error.message = "no endpoint " + req.method + " " + req.path;
      error.code = "not_found";
      break;
    case 499:
      error.message = "the client closed the connection";
      error.code = "client_closed_request";
      break;
    case 413:
      error.message = "the request body is larger than the limit of " +
                      std::to_string(handlers->server.options.maxBodyBytes) +
                      " bytes";
      error.code = "request_too_large";
      break;
    default:
      error.message = "HTTP error " + std::to_string(res.status);
      break;
    }
    handlers->sendError(res, error);
  });
  svr.set_logger([this](const httplib::Request &req,
                        const httplib::Response &res) {
    // Paths outside the routes count as one label value: a client must not
    // grow the metrics without bound.
    static const char *const known[] = {"/v1/chat/completions",
                                        "/v1/completions", "/v1/models",
                                        "/health", "/metrics"};
    std::string path = "other";
    for (const char *route : known)
      if (req.path == route)
        path = route;
    metrics.countHttp(path, res.status);
  });
}

} // namespace compressa
