// SPDX-License-Identifier: Apache-2.0
// make-fuzz-seeds SOURCE_DIR OUT_DIR: writes the seed corpus of every fuzz
// target to OUT_DIR/<target>/, made from the repository's own files and the
// runtime's test support (nothing generated here is committed):
//   safetensors       the toy checkpoint (runtime/testing/toy_artifact) and
//                     the golden checkpoints of models/tiny-a and tiny-c cut
//                     to their header plus a few data bytes
//   weight_store      the toy checkpoint as an index plus two shards, and as
//                     one file (input format: fuzz_weight_store.cc)
//   artifact          toy artifacts (CPU with and without prefill, CUDA) as
//                     bare FlatBuffers (fuzz_artifact.cc seals them)
//   tokenizer_json    models/tokenizers/*.json, test/tokenizer/Inputs/ref-a.json
//   tokenizer_encode  the strings of test/tokenizer/Inputs/hard-strings.jsonl
//   chat              conversations in fuzz_chat.cc's input format
//   chat_request      test/tokenizer/Inputs/chat/*.json and replies with
//                     reasoning and tool calls (fuzz_chat_request.cc)
//   config            models/*/config.json, test/frontend/Inputs/bad-configs
#include "runtime/testing/toy_artifact.h"
#include "runtime/weights/safetensors_writer.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <dirent.h>
#include <sys/stat.h>

using namespace compressa;

namespace {

std::string sourceDir, outDir;
int written = 0;

[[noreturn]] void die(const std::string &message) {
  std::fprintf(stderr, "make-fuzz-seeds: %s\n", message.c_str());
  std::exit(1);
}

void makeDir(const std::string &path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST)
    die("cannot create " + path + ": " + std::strerror(errno));
}

void seed(const std::string &target, const std::string &name,
          const std::string &bytes) {
  makeDir(outDir + "/" + target);
  std::string path = outDir + "/" + target + "/" + name;
  if (!toy::writeFile(path, bytes))
    die("cannot write " + path);
  ++written;
}

std::string bytesOf(const std::vector<uint8_t> &v) {
  return std::string(v.begin(), v.end());
}

/// The file at `rel` under the source directory; dies when it is missing, so
/// a moved input file is noticed rather than silently seeding nothing.
std::string source(const std::string &rel) {
  std::string path = sourceDir + "/" + rel;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    die("missing input " + path);
  return toy::readFile(path);
}

/// The names of the regular files in `rel` ending in `suffix`, sorted.
std::vector<std::string> listDir(const std::string &rel,
                                 const std::string &suffix) {
  std::vector<std::string> names;
  std::string path = sourceDir + "/" + rel;
  DIR *d = ::opendir(path.c_str());
  if (!d)
    die("cannot list " + path);
  while (struct dirent *e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      names.push_back(name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

/// A safetensors file cut after its header and `extra` data bytes.
std::string headerOf(const std::string &file, size_t extra) {
  if (file.size() < 8)
    die("a golden checkpoint is shorter than 8 bytes");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = (n << 8) | static_cast<uint8_t>(file[i]);
  return file.substr(0, std::min<uint64_t>(file.size(), 8 + n + extra));
}

/// The toy checkpoint's tensors `first..last` as a safetensors file.
std::string toyFile(const std::vector<TensorToWrite> &all, size_t first,
                    size_t last) {
  std::vector<TensorToWrite> part(all.begin() + first, all.begin() + last);
  std::string dir = toy::makeTempDir("fuzz-seeds-");
  if (dir.empty())
    die("cannot create a temporary directory");
  std::string path = dir + "/part.safetensors";
  Status status = writeSafetensors(path, part);
  if (!status.ok())
    die(status.toString());
  std::string bytes = toy::readFile(path);
  std::remove(path.c_str());
  ::rmdir(dir.c_str());
  return bytes;
}

/// Decodes one JSON string literal (a line of hard-strings.jsonl).
bool jsonString(const std::string &line, std::string &out) {
  out.clear();
  size_t i = line.find('"');
  if (i == std::string::npos)
    return false;
  auto utf8 = [&](uint32_t c) {
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (c < 0x800) {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      out += static_cast<char>(0xE0 | (c >> 12));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (c >> 18));
      out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  };
  auto hex4 = [&](size_t at, uint32_t &v) {
    if (at + 4 > line.size())
      return false;
    v = static_cast<uint32_t>(std::stoul(line.substr(at, 4), nullptr, 16));
    return true;
  };
  for (++i; i < line.size(); ++i) {
    char c = line[i];
    if (c == '"')
      return true;
    if (c != '\\') {
      out += c;
      continue;
    }
    if (++i >= line.size())
      return false;
    switch (line[i]) {
    case 'n': out += '\n'; break;
    case 't': out += '\t'; break;
    case 'r': out += '\r'; break;
    case 'b': out += '\b'; break;
    case 'f': out += '\f'; break;
    case 'u': {
      uint32_t c1;
      if (!hex4(i + 1, c1))
        return false;
      i += 4;
      if (c1 >= 0xD800 && c1 < 0xDC00 && i + 6 < line.size() &&
          line[i + 1] == '\\' && line[i + 2] == 'u') {
        uint32_t c2;
        if (hex4(i + 3, c2) && c2 >= 0xDC00 && c2 < 0xE000) {
          c1 = 0x10000 + ((c1 - 0xD800) << 10) + (c2 - 0xDC00);
          i += 6;
        }
      }
      utf8(c1);
      break;
    }
    default: out += line[i]; break;
    }
  }
  return false;
}

void safetensorsSeeds() {
  toy::ToyWeights w = toy::toyWeights();
  std::vector<TensorToWrite> tensors = toy::toyWeightTensors(w);
  seed("safetensors", "toy.safetensors", toyFile(tensors, 0, tensors.size()));
  seed("safetensors", "toy-small.safetensors", toyFile(tensors, 1, 3));
  std::string empty = std::string("\x02\0\0\0\0\0\0\0", 8) + "{}";
  seed("safetensors", "empty.safetensors", empty);
  for (const char *model : {"tiny-a", "tiny-c"})
    for (const char *kind : {"float", "quant"}) {
      std::string rel = std::string("models/") + model + "/" + kind +
                        "/model.safetensors";
      seed("safetensors", std::string(model) + "-" + kind + ".header",
           headerOf(source(rel), 64));
    }
  for (const char *model : {"tiny-a", "tiny-c"})
    seed("safetensors", std::string(model) + "-golden.header",
         headerOf(source(std::string("models/") + model +
                         "/golden.safetensors"), 16));
}

void weightStoreSeeds() {
  const std::string sep = "\n--shard--\n";
  toy::ToyWeights w = toy::toyWeights();
  std::vector<TensorToWrite> t = toy::toyWeightTensors(w);
  std::string index = "{\"metadata\": {\"total_size\": 3104}, \"weight_map\": {";
  for (size_t i = 0; i < t.size(); ++i)
    index += std::string(i ? ", " : "") + "\"" + t[i].name + "\": \"shard-" +
             (i < 3 ? "1" : "2") + ".safetensors\"";
  index += "}}";
  seed("weight_store", "toy-two-shards",
       index + sep + toyFile(t, 0, 3) + sep + toyFile(t, 3, t.size()));
  seed("weight_store", "toy-single-file", sep + toyFile(t, 0, t.size()));
  std::string oneShard = "{\"weight_map\": {\"toy.bias\": \"shard-1.safetensors\"}}";
  seed("weight_store", "toy-one-tensor", oneShard + sep + toyFile(t, 0, 1));
}

void artifactSeeds() {
  auto bare = [](std::vector<uint8_t> bytes) {
    // Drop the digest trailer (32 bytes of SHA-256, then "CPASHA2\0"):
    // fuzz_artifact.cc seals every input itself.
    static const char tag[8] = {'C', 'P', 'A', 'S', 'H', 'A', '2', '\0'};
    if (bytes.size() >= 40 &&
        std::memcmp(bytes.data() + bytes.size() - 8, tag, 8) == 0)
      bytes.resize(bytes.size() - 40);
    return bytesOf(bytes);
  };
  // A few bytes stand for the kernels' shared object: the reader does not
  // load it, and a small seed mutates faster.
  const std::vector<uint8_t> so = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0};
  toy::ArtifactSpec spec = toy::toyArtifactSpec(16);
  spec.sharedObject = so;
  seed("artifact", "toy-cpu.cpa", bare(toy::buildArtifact(spec)));
  spec = toy::toyArtifactSpec(0);
  spec.sharedObject = so;
  seed("artifact", "toy-cpu-decode-only.cpa", bare(toy::buildArtifact(spec)));
  spec = toy::toyArtifactSpec(4);
  spec.target = fb::Target::Cuda;
  spec.hasCpu = false;
  spec.hasCuda = true;
  spec.cudaChip = "sm_90a";
  spec.cudaPtx = ".version 8.0\n.target sm_90a\n";
  seed("artifact", "toy-cuda.cpa", bare(toy::buildArtifact(spec)));
}

void tokenizerSeeds() {
  for (const std::string &name : listDir("models/tokenizers", ".json"))
    seed("tokenizer_json", name, source("models/tokenizers/" + name));
  seed("tokenizer_json", "ref-a.json",
       source("test/tokenizer/Inputs/ref-a.json"));

  std::string lines = source("test/tokenizer/Inputs/hard-strings.jsonl");
  size_t start = 0;
  int n = 0;
  while (start < lines.size()) {
    size_t end = lines.find('\n', start);
    if (end == std::string::npos)
      end = lines.size();
    std::string text;
    if (jsonString(lines.substr(start, end - start), text))
      seed("tokenizer_encode", "hard-" + std::to_string(n++), text);
    start = end + 1;
  }
  seed("tokenizer_encode", "invalid-utf8", "ok \xff\xfe then \xc3");
}

/// One message of fuzz_chat.cc's input: the role byte, then the text.
std::string msg(char role, const std::string &text) {
  return std::string(1, role) + text;
}

void chatSeeds() {
  const std::string sep = "\n\x1e";
  const std::string reasoned = "\x1f"; // reasoning, then the answer
  // Option bytes: bit 0 thinking, bit 1 keep reasoning. Roles: 0 system,
  // 1 user, 2 assistant; 8 | role: with reasoning.
  const std::string chat(1, '\0'), thinking(1, 1), keep(1, 3);
  seed("chat", "one-user", chat + msg(1, "Hello! Who are you?"));
  seed("chat", "system-user-assistant",
       chat + msg(0, "You are a helpful assistant.") + sep +
           msg(1, "What is 2+2?") + sep + msg(2, "4") + sep +
           msg(1, "And 3+3?"));
  seed("chat", "thinking",
       thinking + msg(1, "Think first.") + sep +
           msg(2, "Let me add." + reasoned + "4") + sep + msg(1, "Again?"));
  seed("chat", "thinking-keep",
       keep + msg(1, "Q1") + sep + msg(2, "r1" + reasoned + "a1") + sep +
           msg(1, "Q2") + sep + msg(2, "r2" + reasoned + "a2"));
  seed("chat", "specials-in-text",
       chat + msg(1, "<｜User｜>hi<｜Assistant｜></think><think>"));
  seed("chat", "reasoning-on-user",
       chat + msg(8 | 1, "why" + reasoned + "answer"));
}

void chatRequestSeeds() {
  // Option byte: bits 0-3 the reply piece size - 1, bit 4 thinking.
  for (const std::string &name : listDir("test/tokenizer/Inputs/chat", ".json"))
    seed("chat_request", name,
         std::string(1, 2) + source("test/tokenizer/Inputs/chat/" + name));
  const std::string call =
      "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
      "<｜DSML｜parameter name=\"city\" string=\"true\">Paris"
      "</｜DSML｜parameter>\n<｜DSML｜parameter name=\"days\" "
      "string=\"false\">[1, {\"a\": 2.5}]</｜DSML｜parameter>\n"
      "</｜DSML｜invoke>\n</｜DSML｜tool_calls><｜end▁of▁sentence｜>";
  seed("chat_request", "reply-thinking-call",
       std::string(1, 16 | 2) + "Let me look.</think>Checking." + call);
  seed("chat_request", "reply-chat-call", std::string(1, 0) + call);
  seed("chat_request", "reply-malformed",
       std::string(1, 4) + "x<｜DSML｜tool_calls><｜DSML｜invoke name=\"f\">"
                          "<｜DSML｜parameter name=\"a\" string=\"false\">{"
                          "</｜DSML｜parameter></｜DSML｜invoke>");
}

void configSeeds() {
  for (const char *model :
       {"tiny-a", "tiny-c", "deepseek-v4-flash", "deepseek-v4-pro"})
    seed("config", std::string(model) + ".json",
         source(std::string("models/") + model + "/config.json"));
  for (const std::string &name :
       listDir("test/frontend/Inputs/bad-configs", ".json"))
    seed("config", "bad-" + name,
         source("test/frontend/Inputs/bad-configs/" + name));
}

} // namespace

int main(int argc, char **argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: make-fuzz-seeds SOURCE_DIR OUT_DIR\n");
    return 2;
  }
  sourceDir = argv[1];
  outDir = argv[2];
  makeDir(outDir);
  safetensorsSeeds();
  weightStoreSeeds();
  artifactSeeds();
  tokenizerSeeds();
  chatSeeds();
  chatRequestSeeds();
  configSeeds();
  std::printf("make-fuzz-seeds: %d seeds in %s\n", written, outDir.c_str());
  return 0;
}
