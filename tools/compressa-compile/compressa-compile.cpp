//===- compressa-compile.cpp - Compile a DeepSeek-V4 model ----------------===//
// SPDX-License-Identifier: Apache-2.0
//
//   compressa-compile MODEL --summary
//   compressa-compile MODEL --emit=dsv4 [-o OUT]
//   compressa-compile MODEL --emit=manifest [-o OUT]
//
// MODEL is a config.json, a directory holding one, or a model name under
// the models directory (`deepseek-v4-flash`, `deepseek-v4-pro`, `tiny-a`, ...).
//
//===----------------------------------------------------------------------===//

#include "frontend/Builder/ProgramBuilder.h"
#include "frontend/Config/ModelConfig.h"
#include "frontend/Manifest/WeightManifest.h"
#include "passes/RegisterAll.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/ToolOutputFile.h"

#include <cstdlib>

using namespace mlir;
using namespace mlir::compressa;
namespace cl = llvm::cl;

static cl::OptionCategory category("compressa-compile options");

static cl::opt<std::string> modelArg(cl::Positional, cl::Required,
                                     cl::desc("<MODEL: config.json, a directory "
                                              "holding one, or a model name>"),
                                     cl::cat(category));
static cl::opt<std::string> outputFile("o", cl::desc("Output file ('-' = stdout)"),
                                       cl::value_desc("file"), cl::init("-"),
                                       cl::cat(category));
static cl::opt<bool> summary("summary",
                             cl::desc("Print the model summary as one JSON "
                                      "object and exit"),
                             cl::cat(category));
enum class Emit { DSV4, Manifest };
static cl::opt<Emit> emit(
    "emit", cl::desc("What to write"), cl::init(Emit::DSV4),
    cl::values(clEnumValN(Emit::DSV4, "dsv4", "the dsv4 programs (MLIR)"),
               clEnumValN(Emit::Manifest, "manifest",
                          "the weight manifest (JSON)")),
    cl::cat(category));
static cl::opt<std::string> modelsDir(
    "models-dir",
    cl::desc("Where model names are looked up (default: $COMPRESSA_MODELS_DIR, "
             "else the source tree's models/)"),
    cl::cat(category));
static cl::opt<std::string> actType("act-type",
                                    cl::desc("Activation type: f32 or bf16"),
                                    cl::init("f32"), cl::cat(category));
static cl::list<std::string>
    programs("programs", cl::desc("Programs to build (default: all): prefill, "
                                  "decode, mtp"),
             cl::CommaSeparated, cl::cat(category));

/// Resolves MODEL to the path of a config.json.
static llvm::Expected<std::string> resolveModel(StringRef model) {
  auto isFile = [](const Twine &p) { return llvm::sys::fs::is_regular_file(p); };
  if (isFile(model))
    return model.str();
  if (llvm::sys::fs::is_directory(model)) {
    llvm::SmallString<256> p(model);
    llvm::sys::path::append(p, "config.json");
    if (isFile(p))
      return std::string(p);
    return llvm::createStringError("model directory '%s' holds no config.json",
                                   model.str().c_str());
  }
  std::string dir = modelsDir;
  if (dir.empty())
    if (const char *env = std::getenv("COMPRESSA_MODELS_DIR"))
      dir = env;
  if (dir.empty())
    dir = COMPRESSA_MODELS_DIR;
  llvm::SmallString<256> p(dir);
  llvm::sys::path::append(p, model, "config.json");
  if (isFile(p))
    return std::string(p);
  std::vector<std::string> names;
  std::error_code ec;
  for (llvm::sys::fs::directory_iterator it(dir, ec), end; it != end && !ec;
       it.increment(ec)) {
    llvm::SmallString<256> c(it->path());
    llvm::sys::path::append(c, "config.json");
    if (isFile(c))
      names.push_back(llvm::sys::path::filename(it->path()).str());
  }
  llvm::sort(names);
  std::string known;
  for (const std::string &n : names)
    known += " " + n;
  return llvm::createStringError(
      "'%s' is neither a config.json, a directory holding one, nor a model "
      "in %s (known:%s)",
      model.str().c_str(), dir.c_str(), known.empty() ? " none" : known.c_str());
}

static llvm::json::Value summaryJson(const ModelConfig &cfg) {
  std::vector<TensorEntry> manifest = buildWeightManifest(cfg);
  uint64_t bytes = 0;
  for (const TensorEntry &e : manifest)
    bytes += tensorBytes(e);
  ParamCounts params = countParams(cfg);
  int64_t hash = cfg.numHashLayers();
  return llvm::json::Object{
      {"model", cfg.name},
      {"config", cfg.sourcePath},
      {"config_style", cfg.officialStyle ? "official" : "transformers"},
      {"layers", cfg.numLayers},
      {"attention",
       llvm::json::Object{
           {"sliding", cfg.countAttention(AttentionKind::Sliding)},
           {"csa", cfg.countAttention(AttentionKind::CSA)},
           {"hca", cfg.countAttention(AttentionKind::HCA)}}},
      {"moe", llvm::json::Object{{"hash", hash}, {"score", cfg.numLayers - hash}}},
      {"mtp_layers", cfg.numMtpLayers},
      {"params_total", params.total},
      {"params_main_stack", params.mainStack},
      // Parameters a token touches: one embedding row, the LM head, the
      // attention and shared expert of every layer, K routed experts per layer.
      {"params_active_per_token", params.activePerTokenEmbedRow},
      // The same with the whole embedding matrix counted (spec §1.2's 13.80 B).
      {"params_active_per_token_incl_embedding", params.activePerToken},
      {"checkpoint_tensors", static_cast<int64_t>(manifest.size())},
      {"checkpoint_bytes", bytes},
  };
}

static int fail(const Twine &message) {
  llvm::errs() << "compressa-compile: error: " << message << "\n";
  return 1;
}

int main(int argc, char **argv) {
  llvm::InitLLVM initLLVM(argc, argv);
  registerAsmPrinterCLOptions();
  registerMLIRContextCLOptions();
  registerPassManagerCLOptions();
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(argc, argv,
                              "Compressa: compile a DeepSeek-V4 model\n");

  llvm::Expected<std::string> configPath = resolveModel(modelArg);
  if (!configPath)
    return fail(llvm::toString(configPath.takeError()));
  llvm::Expected<ModelConfig> config = parseModelConfig(*configPath);
  if (!config)
    return fail(llvm::toString(config.takeError()));

  std::string error;
  auto output = openOutputFile(outputFile, &error);
  if (!output)
    return fail("cannot open '" + outputFile + "': " + error);

  if (summary) {
    output->os() << llvm::formatv("{0:2}", summaryJson(*config)) << "\n";
    output->keep();
    return 0;
  }
  if (emit == Emit::Manifest) {
    llvm::json::Array entries;
    for (const TensorEntry &e : buildWeightManifest(*config)) {
      llvm::json::Object o{{"name", e.name},
                           {"dtype", e.dtype},
                           {"shape", llvm::json::Array(e.shape)},
                           {"bytes", tensorBytes(e)}};
      if (!e.scaleName.empty())
        o["scale"] = e.scaleName;
      if (e.optional)
        o["optional"] = true;
      entries.push_back(std::move(o));
    }
    output->os() << llvm::formatv("{0:1}", llvm::json::Value(std::move(entries)))
                 << "\n";
    output->keep();
    return 0;
  }

  DialectRegistry registry;
  registerAllDSV4Dialects(registry);
  MLIRContext context(registry);
  ProgramOptions options;
  options.activationType = actType;
  if (!programs.empty()) {
    options.prefill = options.decode = options.mtp = false;
    for (const std::string &p : programs) {
      if (p == "prefill")
        options.prefill = true;
      else if (p == "decode")
        options.decode = true;
      else if (p == "mtp")
        options.mtp = true;
      else
        return fail("unknown program '" + p +
                    "' in --programs (expected prefill, decode, mtp)");
    }
  }
  FailureOr<OwningOpRef<ModuleOp>> module =
      buildDSV4Module(context, *config, options);
  if (failed(module))
    return fail("could not build the dsv4 programs of '" + *configPath + "'");
  (*module)->print(output->os());
  output->os() << "\n";
  output->keep();
  return 0;
}
