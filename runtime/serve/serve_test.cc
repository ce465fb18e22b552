// SPDX-License-Identifier: Apache-2.0
// The scheduler and the HTTP server on the toy artifact (3 sequence slots)
// with the tiny-768 tokenizer (its 768 ids are the toy vocabulary): greedy
// replies equal the toy model's reference run alone or among others,
// prefix reuse, stop texts, refusals, cancellation; and the HTTP layer end
// to end with cpp-httplib's client, including a client that goes away in
// the middle of a stream. Runs under ASan+UBSan in scripts/ci-sanitize.sh.
#include "runtime/serve/scheduler.h"
#include "runtime/serve/server.h"
#include "runtime/testing/toy_artifact.h"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

namespace compressa {
namespace {

using namespace std::chrono_literals;

class ServeTest : public ::testing::Test {
protected:
  void SetUp() override {
    dir = toy::makeTempDir("compressa_serve_");
    ASSERT_FALSE(dir.empty());
    std::string weights = dir + "/weights";
    std::filesystem::create_directory(weights);
    ASSERT_TRUE(toy::writeToyWeights(weights).ok());
    std::string path = dir + "/toy.cpa";
    ASSERT_TRUE(
        toy::writeFile(path, toy::buildArtifact(toy::toyArtifactSpec(4))));
    auto created = Engine::create(path, weights);
    ASSERT_TRUE(created.ok()) << created.status().toString();
    engine = std::move(*created);
    ASSERT_TRUE(engine->setSlotCount(3).ok());
    auto loaded = Tokenizer::fromFile(COMPRESSA_TINY_TOKENIZER);
    ASSERT_TRUE(loaded.ok()) << loaded.status().toString();
    tokenizer = std::move(*loaded);
  }
  void TearDown() override {
    engine.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }

  /// The text the scheduler streams for `tokens` (the end of sentence
  /// excluded).
  std::string textOf(const std::vector<int64_t> &tokens) {
    Utf8Stream stream;
    std::string text;
    for (int64_t id : tokens)
      if (id != toy::kEos)
        text += stream.push(*tokenizer->tokenBytes(id));
    return text + stream.finish();
  }

  struct Reply {
    std::string text;
    FinishInfo finish;
    Status error;
    bool done = false;
  };

  static Reply collect(ServeRequest &request) {
    Reply reply;
    for (int i = 0; i < 1000 && !reply.done; ++i) {
      RequestEvent event;
      if (!request.next(event, 10ms))
        continue;
      if (event.kind == RequestEvent::Kind::Text) {
        reply.text += event.text;
        continue;
      }
      reply.done = true;
      reply.finish = event.finish;
      reply.error = event.error;
    }
    return reply;
  }

  static GenerationParams greedy(int64_t maxTokens) {
    GenerationParams params;
    params.maxTokens = maxTokens;
    params.sampling.greedy = true;
    return params;
  }

  std::string dir;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<Tokenizer> tokenizer;
};

/// A POST whose response body goes to `receiver` as it arrives.
httplib::Result postStreaming(
    httplib::Client &client, const std::string &path, const std::string &body,
    std::function<bool(const char *, size_t)> receiver) {
  httplib::Request request;
  request.method = "POST";
  request.path = path;
  request.body = body;
  request.set_header("Content-Type", "application/json");
  request.content_receiver = [receiver](const char *data, size_t size,
                                        uint64_t, uint64_t) {
    return receiver(data, size);
  };
  return client.send(request);
}

std::vector<std::vector<int64_t>> prompts() {
  return {{0, 17, 766, 5}, {42, 767, 128}, {7, 7, 7, 7, 7, 7},
          {300, 2},        {9, 10, 11, 12, 13}, {500}};
}

TEST_F(ServeTest, GreedyRepliesAloneAndAmongOthersMatchTheReference) {
  Metrics metrics;
  Scheduler scheduler(*engine, *tokenizer, metrics, {3, 16, 2});
  // Alone, one after another.
  for (const auto &prompt : prompts()) {
    std::vector<int64_t> want = toy::toyGreedy(prompt, 12, toy::kEos);
    auto request = scheduler.submit(prompt, greedy(12));
    ASSERT_TRUE(request.ok()) << request.status().toString();
    Reply reply = collect(**request);
    ASSERT_TRUE(reply.done && reply.error.ok()) << reply.error.toString();
    EXPECT_EQ(reply.text, textOf(want));
    EXPECT_EQ(reply.finish.completionTokens, int64_t(want.size()));
    EXPECT_EQ(reply.finish.reason, want.back() == toy::kEos ? "stop"
                                                            : "length");
    EXPECT_EQ(reply.finish.promptTokens, int64_t(prompt.size()));
  }
  // All at once: 6 requests on 3 slots join and leave between steps.
  std::vector<std::shared_ptr<ServeRequest>> requests;
  for (const auto &prompt : prompts()) {
    auto request = scheduler.submit(prompt, greedy(12));
    ASSERT_TRUE(request.ok());
    requests.push_back(*request);
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    std::vector<int64_t> want = toy::toyGreedy(prompts()[i], 12, toy::kEos);
    Reply reply = collect(*requests[i]);
    ASSERT_TRUE(reply.done && reply.error.ok());
    EXPECT_EQ(reply.text, textOf(want)) << "prompt " << i;
    EXPECT_EQ(reply.finish.completionTokens, int64_t(want.size()));
  }
  SchedulerStats stats = scheduler.stats();
  EXPECT_EQ(stats.active, 0);
  EXPECT_EQ(stats.queued, 0);
  EXPECT_EQ(stats.slots, 3);
}

TEST_F(ServeTest, PromptChunksInterleaveWithDecodeSteps) {
  // Queued before the thread starts, so the first step sees both: A's
  // 1-token prompt is one chunk, then A decodes while B's 40-token prompt
  // goes in 1-token chunks, one per step, beside A's decode steps.
  Metrics metrics;
  SchedulerOptions options{2, 4, 1};
  options.startThread = false;
  Scheduler scheduler(*engine, *tokenizer, metrics, options);
  GenerationParams longReply = greedy(30);
  longReply.ignoreEos = true;
  auto a = scheduler.submit({3}, longReply);
  std::vector<int64_t> longPrompt(40);
  for (size_t i = 0; i < longPrompt.size(); ++i)
    longPrompt[i] = static_cast<int64_t>(100 + i);
  auto b = scheduler.submit(longPrompt, greedy(3));
  ASSERT_TRUE(a.ok() && b.ok());
  scheduler.start();
  Reply ra = collect(**a), rb = collect(**b);
  ASSERT_TRUE(ra.done && rb.done);
  EXPECT_EQ(ra.finish.completionTokens, 30);
  EXPECT_EQ(rb.text, textOf(toy::toyGreedy(longPrompt, 3, toy::kEos)));
  // 41 steps ran a prompt chunk (A's one, B's 40); A's 29 decode steps ran
  // beside the first 29 of them (step 1: A's chunk, then A's first decode).
  EXPECT_GE(metrics.steps("mixed"), 29u);
  EXPECT_EQ(metrics.steps("mixed") + metrics.steps("prefill"), 41u);
  std::string text = metrics.render();
  EXPECT_NE(text.find("compressa_scheduler_steps_total{kind=\"mixed\"}"),
            std::string::npos);
}

TEST_F(ServeTest, PrefixReuseContinuesAFinishedSlot) {
  Metrics metrics;
  Scheduler scheduler(*engine, *tokenizer, metrics, {3, 16, 0});
  std::vector<int64_t> first = {4, 8, 15, 16, 23};
  auto a = scheduler.submit(first, greedy(1));
  ASSERT_TRUE(a.ok());
  Reply ra = collect(**a);
  ASSERT_TRUE(ra.done);
  EXPECT_EQ(ra.finish.cachedTokens, 0);
  std::vector<int64_t> longer = first;
  longer.insert(longer.end(), {42, 99});
  auto b = scheduler.submit(longer, greedy(6));
  ASSERT_TRUE(b.ok());
  Reply rb = collect(**b);
  ASSERT_TRUE(rb.done && rb.error.ok());
  EXPECT_EQ(rb.finish.cachedTokens, int64_t(first.size()));
  EXPECT_EQ(rb.text, textOf(toy::toyGreedy(longer, 6, toy::kEos)));
}

TEST_F(ServeTest, StopTextsEndTheReply) {
  Metrics metrics;
  Scheduler scheduler(*engine, *tokenizer, metrics, {1, 4, 0});
  std::vector<int64_t> prompt = {0, 17, 766, 5};
  std::string full = textOf(toy::toyGreedy(prompt, 12, toy::kEos));
  ASSERT_GE(full.size(), 4u) << full;
  GenerationParams params = greedy(12);
  std::string stop = full.substr(2, 2);
  params.stop = {stop, "never in there \x01"};
  auto request = scheduler.submit(prompt, params);
  ASSERT_TRUE(request.ok());
  Reply reply = collect(**request);
  EXPECT_EQ(reply.text, full.substr(0, full.find(stop)));
  EXPECT_EQ(reply.finish.reason, "stop");
}

TEST_F(ServeTest, RefusedRequests) {
  Metrics metrics;
  Scheduler scheduler(*engine, *tokenizer, metrics, {2, 4, 0});
  auto empty = scheduler.submit({}, greedy(4));
  EXPECT_EQ(empty.status().code(), StatusCode::InvalidArgument);
  auto outside = scheduler.submit({1, 768}, greedy(4));
  EXPECT_EQ(outside.status().code(), StatusCode::InvalidArgument);
  EXPECT_NE(outside.status().message().find("outside the vocabulary"),
            std::string::npos);
  // The toy context holds 64 tokens: a 64-token prompt leaves no room.
  auto tooLong = scheduler.submit(std::vector<int64_t>(64, 3), greedy(4));
  EXPECT_EQ(tooLong.status().code(), StatusCode::OutOfRange);
  auto none = scheduler.submit({1, 2}, greedy(0));
  EXPECT_EQ(none.status().code(), StatusCode::InvalidArgument);
  // A reply ends with the context: prompt + reply = 64 tokens.
  GenerationParams params = greedy(100);
  params.ignoreEos = true;
  auto full = scheduler.submit(std::vector<int64_t>(60, 3), params);
  ASSERT_TRUE(full.ok());
  Reply reply = collect(**full);
  EXPECT_EQ(reply.finish.reason, "length");
  EXPECT_EQ(reply.finish.completionTokens, 4);
}

TEST_F(ServeTest, CancelledRequestsLeaveTheirSlots) {
  Metrics metrics;
  Scheduler scheduler(*engine, *tokenizer, metrics, {1, 8, 0});
  GenerationParams params = greedy(50);
  params.ignoreEos = true;
  std::vector<std::shared_ptr<ServeRequest>> requests;
  for (int i = 0; i < 6; ++i) {
    auto request = scheduler.submit({5, 6, int64_t(i)}, params);
    ASSERT_TRUE(request.ok());
    (*request)->cancel();
    requests.push_back(*request);
  }
  for (int i = 0; i < 500; ++i) {
    SchedulerStats stats = scheduler.stats();
    if (stats.active == 0 && stats.queued == 0)
      break;
    std::this_thread::sleep_for(10ms);
  }
  SchedulerStats stats = scheduler.stats();
  EXPECT_EQ(stats.active, 0);
  EXPECT_EQ(stats.queued, 0);
  // All of the system's places are free again.
  for (int i = 0; i < 9; ++i) {
    auto request = scheduler.submit({5, 6}, greedy(2));
    ASSERT_TRUE(request.ok()) << i << ": " << request.status().toString();
    collect(**request);
  }
}

//===----------------------------------------------------------------------===//
// Over HTTP
//===----------------------------------------------------------------------===//

TEST_F(ServeTest, HttpEndpointsEndToEnd) {
  ServerOptions options;
  options.port = 0;
  options.scheduler = {3, 4, 0};
  options.modelId = "toy";
  options.maxBodyBytes = 4096;
  auto created = Server::create(*engine, *tokenizer, options);
  ASSERT_TRUE(created.ok()) << created.status().toString();
  Server &server = **created;
  ASSERT_TRUE(server.bind().ok());
  std::thread runner([&server] { (void)server.run(); });

  httplib::Client client("127.0.0.1", server.port());
  client.set_read_timeout(30, 0);
  auto health = client.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto h = nlohmann::json::parse(health->body);
  EXPECT_EQ(h["slots"], 3);

  std::vector<int64_t> prompt = {0, 17, 766, 5};
  nlohmann::json body = {{"model", "toy"}, {"prompt", prompt},
                         {"max_tokens", 12}, {"temperature", 0}};
  auto completion =
      client.Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(completion);
  ASSERT_EQ(completion->status, 200) << completion->body;
  auto c = nlohmann::json::parse(completion->body);
  std::vector<int64_t> want = toy::toyGreedy(prompt, 12, toy::kEos);
  EXPECT_EQ(c["choices"][0]["text"], textOf(want));
  EXPECT_EQ(c["usage"]["completion_tokens"], want.size());

  // The same streamed: chunks whose texts join to the same text, usage in
  // the last one, then [DONE].
  body["stream"] = true;
  std::string streamed;
  auto stream = postStreaming(
      client, "/v1/completions", body.dump(),
      [&](const char *data, size_t size) {
        streamed.append(data, size);
        return true;
      });
  ASSERT_TRUE(stream);
  EXPECT_EQ(stream->status, 200);
  std::string text;
  size_t pos = 0, chunks = 0;
  bool sawUsage = false, sawDone = false;
  while ((pos = streamed.find("data: ", pos)) != std::string::npos) {
    size_t end = streamed.find("\n\n", pos);
    ASSERT_NE(end, std::string::npos);
    std::string data = streamed.substr(pos + 6, end - pos - 6);
    pos = end;
    if (data == "[DONE]") {
      sawDone = true;
      continue;
    }
    auto chunk = nlohmann::json::parse(data);
    ++chunks;
    text += chunk["choices"][0]["text"].get<std::string>();
    if (chunk.contains("usage"))
      sawUsage = chunk["usage"]["completion_tokens"] == want.size();
  }
  EXPECT_EQ(text, textOf(want));
  EXPECT_TRUE(sawUsage);
  EXPECT_TRUE(sawDone);
  EXPECT_GT(chunks, 1u);

  // Errors: OpenAI error objects.
  auto bad = client.Post("/v1/chat/completions", "{\"messages\": [",
                         "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(nlohmann::json::parse(bad->body)["error"]["code"],
            "invalid_json");
  auto large = client.Post("/v1/completions", std::string(8192, ' '),
                           "application/json");
  ASSERT_TRUE(large);
  EXPECT_EQ(large->status, 413);
  EXPECT_EQ(nlohmann::json::parse(large->body)["error"]["code"],
            "request_too_large");
  nlohmann::json other = {{"model", "other"}, {"prompt", "x"}};
  auto unknown = client.Post("/v1/completions", other.dump(),
                             "application/json");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);

  // A client that goes away at the first chunk of a stream: the server
  // stays healthy and the slot ends free (that the slot is freed before
  // the reply's end is test/serve/queue.test's, with a 60000-token reply).
  nlohmann::json longBody = {{"prompt", {3, 4}},     {"max_tokens", 60},
                             {"ignore_eos", true},  {"stream", true}};
  httplib::Client leaver("127.0.0.1", server.port());
  auto gone = postStreaming(leaver, "/v1/completions", longBody.dump(),
                            [](const char *, size_t) { return false; });
  EXPECT_FALSE(gone);
  int64_t active = -1;
  for (int i = 0; i < 500 && active != 0; ++i) {
    auto now = client.Get("/health");
    ASSERT_TRUE(now);
    active = nlohmann::json::parse(now->body)["active"];
    if (active)
      std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(active, 0);
  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("compressa_http_requests_total{path=\"/v1/"
                               "completions\",code=\"200\"}"),
            std::string::npos)
      << metrics->body;

  server.stop();
  runner.join();
}

} // namespace
} // namespace compressa
