//===- compressa-serve.cpp - Serve a compiled artifact over HTTP ----------===//
// SPDX-License-Identifier: Apache-2.0
//
//   compressa-serve ART --weights DIR|random [--seed S] [--tokenizer FILE]
//                   [--host 127.0.0.1] [--port 8000] [--max-batch B]
//                   [--max-queue Q]
//
// An OpenAI-compatible server (runtime/serve/server.h) with continuous
// batching over the engine's sequence slots (runtime/serve/scheduler.h). A
// runtime tool: it links libcompressa_runtime, cpp-httplib and nlohmann-json,
// never MLIR or LLVM. When it is ready it prints exactly one line on stdout,
// `listening on http://HOST:PORT` (with --port 0 the port it picked); every
// failure before that prints one line starting with "compressa-serve:
// error: " and exits with status 1. SIGINT and SIGTERM stop it (status 0).
//
//===----------------------------------------------------------------------===//

#include "runtime/format/artifact_reader.h"
#include "runtime/serve/server.h"
#include "runtime/session/engine.h"
#include "runtime/tokenizer/tokenizer.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include <pthread.h>
#include <sys/stat.h>

using namespace compressa;

namespace {

struct Options {
  std::string artifact;
  std::string weights;
  uint64_t seed = 1;
  std::string tokenizer;
  std::string host = "127.0.0.1";
  int port = 8000;
  int64_t maxBatch = 0; // 0: the artifact's.
  int64_t maxQueue = 64;
};

bool fileExists(const std::string &path) {
  struct stat info;
  return ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

sigset_t stopSignalSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

int fail(const std::string &message) {
  std::fprintf(stderr, "compressa-serve: error: %s\n", message.c_str());
  return 1;
}

/// The file name of `path` without its directory and extension.
std::string stem(const std::string &path) {
  size_t slash = path.find_last_of('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  size_t dot = name.find_last_of('.');
  return dot == std::string::npos || dot == 0 ? name : name.substr(0, dot);
}

Status serve(const Options &options) {
  bool random = options.weights == "random";
  std::string tokenizerPath = options.tokenizer;
  if (tokenizerPath.empty()) {
    if (random)
      return COMPRESSA_ERROR(InvalidArgument,
                             "--weights random needs --tokenizer FILE");
    tokenizerPath = options.weights + "/tokenizer.json";
    if (!fileExists(tokenizerPath))
      return COMPRESSA_ERROR(NotFound,
                             "no tokenizer: %s does not exist (give "
                             "--tokenizer FILE)",
                             tokenizerPath.c_str());
  } else if (!fileExists(tokenizerPath)) {
    return COMPRESSA_ERROR(NotFound, "--tokenizer %s does not exist",
                           tokenizerPath.c_str());
  }
  COMPRESSA_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                             Tokenizer::fromFile(tokenizerPath));
  GenerationDefaults defaults;
  if (!random) {
    COMPRESSA_ASSIGN_OR_RETURN(defaults, readGenerationConfig(options.weights));
  }

  COMPRESSA_ASSIGN_OR_RETURN(std::unique_ptr<Artifact> artifact,
                             ArtifactReader::readFile(options.artifact));
  int64_t artifactBatch =
      std::max<int64_t>(1, artifact->model().max_batch());
  int64_t maxBatch = options.maxBatch ? options.maxBatch : artifactBatch;
  if (maxBatch > artifactBatch)
    return COMPRESSA_ERROR(InvalidArgument,
                           "--max-batch %lld exceeds the %lld sequences %s "
                           "was compiled for (recompile with "
                           "`compressa-compile ... --max-batch %lld`)",
                           static_cast<long long>(maxBatch),
                           static_cast<long long>(artifactBatch),
                           options.artifact.c_str(),
                           static_cast<long long>(maxBatch));
  std::string modelId = artifact->model().name()
                            ? artifact->model().name()->str()
                            : std::string();
  if (modelId.empty())
    modelId = stem(options.artifact);

  auto start = std::chrono::steady_clock::now();
  StatusOr<std::unique_ptr<Engine>> created =
      random ? Engine::createWithRandomWeights(std::move(artifact),
                                               options.seed)
             : Engine::create(std::move(artifact), options.weights);
  COMPRESSA_RETURN_IF_ERROR(created.status());
  Engine &engine = **created;
  if (tokenizer->vocabSize() > engine.vocabSize())
    return COMPRESSA_ERROR(InvalidArgument,
                           "tokenizer %s knows %lld tokens, more than the "
                           "artifact's vocabulary of %lld: they belong to "
                           "different models",
                           tokenizerPath.c_str(),
                           static_cast<long long>(tokenizer->vocabSize()),
                           static_cast<long long>(engine.vocabSize()));
  if (engine.rankCount() > 1 && maxBatch > 1) {
    // An expert-parallel engine runs one sequence (Engine::setSlotCount).
    if (options.maxBatch)
      return COMPRESSA_ERROR(InvalidArgument,
                             "--max-batch %lld: %s runs on %lld ranks, which "
                             "hold one sequence (--max-batch 1)",
                             static_cast<long long>(maxBatch),
                             options.artifact.c_str(),
                             static_cast<long long>(engine.rankCount()));
    maxBatch = 1;
  }
  COMPRESSA_RETURN_IF_ERROR(engine.setSlotCount(maxBatch));

  ServerOptions serverOptions;
  serverOptions.host = options.host;
  serverOptions.port = options.port;
  serverOptions.scheduler.maxBatch = maxBatch;
  serverOptions.scheduler.maxQueue = options.maxQueue;
  serverOptions.modelId = modelId;
  serverOptions.defaults = defaults;
  // Tests only: replies forced by the request (runtime/serve/server.h).
  const char *hooks = std::getenv("COMPRESSA_SERVE_TEST_HOOKS");
  serverOptions.testHooks = hooks && std::string(hooks) == "1";
  COMPRESSA_ASSIGN_OR_RETURN(std::unique_ptr<Server> server,
                             Server::create(engine, *tokenizer,
                                            std::move(serverOptions)));
  COMPRESSA_RETURN_IF_ERROR(server->bind());
  double seconds = std::chrono::duration<double>(
                       std::chrono::steady_clock::now() - start)
                       .count();
  int64_t batched = std::min(engine.batchedDecodeMax(), maxBatch);
  std::string decode =
      batched > 1 ? "a decode step runs up to " + std::to_string(batched) +
                        " sequences in one call"
                  : std::string("decode runs one sequence per call");
  std::fprintf(stderr,
               "compressa-serve: %s (%s, %s) ready in %.2f s: %lld sequence "
               "slots (%s), queue of %lld\n",
               modelId.c_str(), engine.backendDescription().c_str(),
               engine.weightsDescription().c_str(), seconds,
               static_cast<long long>(maxBatch), decode.c_str(),
               static_cast<long long>(options.maxQueue));

  // SIGINT and SIGTERM stop the server: waited for by a thread of their
  // own (main blocked them before any thread started, so every thread of
  // the server has them blocked).
  sigset_t stopSignals = stopSignalSet();
  std::atomic<bool> finished{false};
  std::thread waiter([&server, &finished, stopSignals] {
    int signal = 0;
    sigwait(&stopSignals, &signal);
    // A signal that comes before run() listens would find nothing to stop:
    // stop until run() has returned.
    while (!finished) {
      server->stop();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });

  std::printf("listening on http://%s:%d\n", options.host.c_str(),
              server->port());
  std::fflush(stdout);
  Status status = server->run();
  finished = true;
  server->stop();
  // Wake the waiter if the server stopped by itself.
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  return status;
}

} // namespace

int main(int argc, char **argv) {
  // A client that closes its connection must not kill the server.
  std::signal(SIGPIPE, SIG_IGN);
  sigset_t stopSignals = stopSignalSet();
  pthread_sigmask(SIG_BLOCK, &stopSignals, nullptr);
  Options options;
  CLI::App app{"compressa-serve: an OpenAI-compatible HTTP server for a "
               "compiled Compressa artifact (.cpa), with continuous batching."};
  app.add_option("artifact", options.artifact,
                 "The .cpa file written by compressa-compile")
      ->required();
  app.add_option("--weights", options.weights,
                 "The checkpoint directory (model.safetensors, or an index "
                 "and its shards), or `random` for generated weights")
      ->required();
  app.add_option("--seed", options.seed,
                 "The seed of --weights random (default 1)");
  app.add_option("--tokenizer", options.tokenizer,
                 "The tokenizer.json (default: DIR/tokenizer.json)");
  app.add_option("--host", options.host,
                 "The address to listen on (default 127.0.0.1)");
  app.add_option("--port", options.port,
                 "The port to listen on; 0 picks a free one (default 8000)")
      ->check(CLI::Range(0, 65535));
  app.add_option("--max-batch", options.maxBatch,
                 "Most sequences served at once (default and upper bound: "
                 "the artifact's compressa-compile --max-batch)")
      ->check(CLI::Range(int64_t(1), int64_t(kMaxBatchLimit)));
  app.add_option("--max-queue", options.maxQueue,
                 "Most requests waiting for a slot; more get HTTP 429 "
                 "(default 64)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp &e) {
    return app.exit(e);
  } catch (const CLI::ParseError &e) {
    return fail(e.what());
  }
  Status status = serve(options);
  if (!status.ok())
    return fail(status.message());
  return 0;
}
