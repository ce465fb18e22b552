//===- compressa-compile.cpp - Compile a DeepSeek-V4 model ----------------===//
// SPDX-License-Identifier: Apache-2.0
//
//   compressa-compile MODEL --summary
//   compressa-compile MODEL --emit=dsv4 [-o OUT]
//   compressa-compile MODEL --emit=manifest [-o OUT]
//   compressa-compile MODEL --target=cpu -o MODEL.cpa
//   compressa-compile MODEL --target=cpu --emit=dispatch|kernels|llvm [-o OUT]
//   compressa-compile FILE.mlir --target=cpu -o MODEL.cpa   (as --emit=dsv4 prints it)
//   compressa-compile MODEL --target=cuda:sm_90a -o MODEL.cpa
//   compressa-compile MODEL --target=cuda:sm_90a --emit=ptx -o MODEL.ptx
//   compressa-compile MODEL --weights DIR --target=cpu -o MODEL.cpa
//   compressa-compile MODEL --layers A:B ... (layers A..B-1 only)
//   compressa-compile MODEL --numerics=exact|fast|fast-decode ... (see --help)
//
// MODEL is a config.json, a directory holding one, or a model name under
// the models directory (`deepseek-v4-flash`, `deepseek-v4-pro`, `tiny-a`, ...).
// The weight formats come from the checkpoint when there is one (--weights,
// or a MODEL directory that holds safetensors itself), else from the config;
// --weight-format overrides both.
//
//===----------------------------------------------------------------------===//

#include "frontend/Builder/ProgramBuilder.h"
#include "frontend/Config/ModelConfig.h"
#include "frontend/Manifest/WeightManifest.h"
#include "dialects/DSV4/IR/DSV4Ops.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "lowering/KernelsToArtifact/SerializeArtifact.h"
#include "lowering/Target/CUDA/CudaCodegen.h"
#include "lowering/Target/TargetInfo.h"
#include "lowering/TensorCore/Numerics.h"
#include "passes/Model/Passes.h"
#include "passes/Pipelines.h"
#include "passes/RegisterAll.h"
#include "runtime/format/artifact_reader.h"
#include "runtime/weights/safetensors.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/Timing.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"

#include <cstdlib>
#include <cstring>

using namespace mlir;
using namespace mlir::compressa;
namespace cl = llvm::cl;

static cl::OptionCategory category("compressa-compile options");

static cl::opt<std::string> modelArg(cl::Positional, cl::Required,
                                     cl::desc("<MODEL: config.json, a directory "
                                              "holding one, a model name, or a "
                                              "dsv4 module (.mlir)>"),
                                     cl::cat(category));
static cl::opt<std::string> outputFile("o", cl::desc("Output file ('-' = stdout)"),
                                       cl::value_desc("file"), cl::init("-"),
                                       cl::cat(category));
static cl::opt<bool> summary("summary",
                             cl::desc("Print the model summary as one JSON "
                                      "object and exit"),
                             cl::cat(category));
enum class Emit { Default, DSV4, Dispatch, Kernels, LLVM, Manifest, Artifact, PTX };
static cl::opt<Emit> emit(
    "emit",
    cl::desc("What to write (default: the artifact with --target, else dsv4)"),
    cl::init(Emit::Default),
    cl::values(clEnumValN(Emit::DSV4, "dsv4", "the dsv4 programs (MLIR)"),
               clEnumValN(Emit::Dispatch, "dispatch",
                          "the programs after shape specialisation, dispatch "
                          "formation and memory planning (MLIR)"),
               clEnumValN(Emit::Kernels, "kernels",
                          "the programs as launches of the target's kernels, "
                          "after outlining, deduplication and conversion "
                          "(MLIR); needs --target"),
               clEnumValN(Emit::LLVM, "llvm",
                          "the same with the kernels in the LLVM dialect "
                          "(MLIR); needs --target"),
               clEnumValN(Emit::Manifest, "manifest",
                          "the weight manifest (JSON)"),
               clEnumValN(Emit::Artifact, "artifact",
                          "the compiled artifact (.cpa); needs --target"),
               clEnumValN(Emit::PTX, "ptx",
                          "the PTX of the kernels; needs --target=cuda:...")),
    cl::cat(category));
static cl::opt<std::string> target(
    "target", cl::desc("Target: cpu, or cuda:<chip> (e.g. cuda:sm_90a)"),
    cl::cat(category));
static cl::opt<std::string> cudaToolkit(
    "cuda-toolkit",
    cl::desc("CUDA toolkit (libdevice, ptxas) for cuda targets (default: "
             "$CUDA_HOME, else /usr/local/cuda)"),
    cl::cat(category));
static cl::opt<int64_t> prefillMaxTokens(
    "prefill-max-tokens", cl::desc("Most tokens one prefill call takes"),
    cl::init(64), cl::cat(category));
static cl::opt<int64_t> ranks(
    "ranks",
    cl::desc("Ranks (GPUs) the model is spread over: one artifact holding "
             "every rank's programs (docs/parallel.md); must divide "
             "n_routed_experts"),
    cl::init(1), cl::cat(category));
static cl::opt<std::string> parallel(
    "parallel",
    cl::desc("How --ranks share the model: ep (routed experts spread over "
             "the ranks, everything else replicated; the only scheme yet)"),
    cl::init("ep"), cl::cat(category));
static cl::opt<int64_t> maxContext(
    "max-context",
    cl::desc("Longest context (prompt + generation) the artifact's decode "
             "state holds"),
    cl::init(4096), cl::cat(category));
static cl::opt<int64_t> maxBatch(
    "max-batch",
    cl::desc("Most sequences served at once, each with its own decode state "
             "slot (stored in the artifact; compressa-serve --max-batch may "
             "lower it)"),
    cl::init(8), cl::cat(category));
static cl::opt<std::string> numerics(
    "numerics",
    cl::desc("exact (f32 activations; the default) or fast (the prefill "
             "program's FP8 linear layers quantise activations 1x128 with "
             "UE8M0 scales and multiply FP8 x FP8 with the weights' block "
             "scales; decode stays exact) or fast-decode (fast, and the decode "
             "programs' routed and shared experts on tensor cores in the FP8 "
             "GEMM semantics: "
             "act_quant of x and of the hiddens, FP4 weights cast to e4m3)"),
    cl::init("exact"), cl::cat(category));
static cl::opt<std::string> weightFormat(
    "weight-format",
    cl::desc("Formats of the checkpoint the artifact will load: checkpoint "
             "(read from --weights or MODEL's safetensors; as the config says "
             "when there are none), config (as the config says), f32 or bf16 "
             "(every float tensor in that dtype), official (FP8 dense, FP4 "
             "experts, bf16 rest)"),
    cl::init("checkpoint"), cl::cat(category));
static cl::opt<std::string> weightsDir(
    "weights",
    cl::desc("Checkpoint directory (model.safetensors or an index with "
             "shards) whose tensor dtypes decide the weight formats (default: "
             "MODEL itself when it is a directory holding safetensors)"),
    cl::value_desc("dir"), cl::cat(category));
static cl::opt<int64_t> gridWeightBytes(
    "grid-weight-bytes",
    cl::desc("CUDA: a kernel reading at least this many bytes of weights "
             "and decode state per call spreads over every multiprocessor, "
             "its blocks meeting at grid-wide barriers (0: every kernel)"),
    cl::init(int64_t(256) << 10), cl::cat(category));
static cl::opt<int64_t> l2PrefetchBytes(
    "l2-prefetch-bytes",
    cl::desc("CUDA: a grid-wide kernel first asks the L2 cache to prefetch "
             "its weight matrices of 256 KiB or more, in the order its ops "
             "read them, up to this many bytes (default 0: none; 8-32 MiB "
             "made V4-Flash decode no faster on an H100, see docs/perf.md)"),
    cl::init(0), cl::cat(category));
static cl::opt<int64_t> maxRegisters(
    "max-registers",
    cl::desc("CUDA: the most registers per thread of a grid-wide kernel "
             "(PTX .maxnreg; fewer registers let more blocks share a "
             "multiprocessor; default 128: two blocks of 256 threads; 0: "
             "ptxas chooses)"),
    cl::init(128), cl::cat(category));
static cl::opt<bool> bufferReuse(
    "buffer-reuse",
    cl::desc("Reuse arena slots of dead values (--buffer-reuse=false gives "
             "every intermediate its own slot, for arena dumps)"),
    cl::init(true), cl::cat(category));
static cl::opt<std::string> cpuName(
    "cpu", cl::desc("CPU the host code targets: x86-64 (any) or native"),
    cl::init("x86-64"), cl::cat(category));
static cl::opt<std::string> dumpDir(
    "dump-intermediates-to",
    cl::desc("Write the dispatch IR, kernel LLVM IR and object code here"),
    cl::cat(category));
static cl::opt<std::string> modelsDir(
    "models-dir",
    cl::desc("Where model names are looked up (default: $COMPRESSA_MODELS_DIR, "
             "else the source tree's models/)"),
    cl::cat(category));
static cl::opt<std::string> actType("act-type",
                                    cl::desc("Activation type: f32 or bf16"),
                                    cl::init("f32"), cl::cat(category));
static cl::opt<std::string> layerRange(
    "layers",
    cl::desc("Keep only layers A..B-1 of the main stack (each with its "
             "attention and routing kind; embedding, final norm and head "
             "kept, MTP dropped; checkpoint names unchanged)"),
    cl::value_desc("A:B"), cl::cat(category));
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

/// The checkpoint directory whose formats the artifact takes: --weights, else
/// MODEL when it is a directory holding safetensors; empty when neither.
static std::string checkpointDir() {
  if (!weightsDir.empty())
    return weightsDir;
  if (!llvm::sys::fs::is_directory(modelArg))
    return "";
  for (const char *name : {::compressa::WeightStore::kIndexFileName,
                           ::compressa::WeightStore::kSingleFileName}) {
    llvm::SmallString<256> p(modelArg);
    llvm::sys::path::append(p, name);
    if (llvm::sys::fs::exists(p))
      return modelArg;
  }
  return "";
}

/// Specialises `config`'s weight formats to the headers of the checkpoint in
/// `dir` (no tensor data is read).
static llvm::Error readCheckpointFormats(ModelConfig &config,
                                         const std::string &dir) {
  ::compressa::StatusOr<std::unique_ptr<::compressa::WeightStore>> store =
      ::compressa::WeightStore::open(dir);
  if (!store.ok())
    return llvm::createStringError("--weights: %s",
                                   store.status().message().c_str());
  return inferWeightFormats(
      config,
      [&](StringRef name) -> std::optional<std::string> {
        const ::compressa::TensorView *view =
            (*store)->find(std::string_view(name.data(), name.size()));
        if (!view)
          return std::nullopt;
        return std::string(::compressa::dtypeName(view->dtype));
      },
      dir);
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
      {"first_layer", cfg.firstLayer},
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
      // What an artifact compiled with these flags computes (--numerics).
      {"numerics", numerics.getValue()},
  };
}

static int fail(const Twine &message) {
  llvm::errs() << "compressa-compile: error: " << message << "\n";
  return 1;
}

/// The weight formats the options ask for, applied to `config`.
static llvm::Error applyWeightFormat(ModelConfig &config) {
  if (weightFormat == "f32" || weightFormat == "bf16") {
    WeightFormat f = weightFormat == "f32" ? WeightFormat::F32 : WeightFormat::BF16;
    config.quantized = false;
    config.denseFormat = config.expertFormat = config.floatFormat = f;
  } else if (weightFormat == "official") {
    config.quantized = true;
    config.denseFormat = WeightFormat::FP8E4M3Block128;
    config.expertFormat = WeightFormat::FP4E2M1Block32;
    config.floatFormat = WeightFormat::BF16;
  } else if (weightFormat == "checkpoint") {
    std::string dir = checkpointDir();
    if (!dir.empty())
      return readCheckpointFormats(config, dir);
  } else if (weightFormat != "config") {
    return llvm::createStringError(
        "unknown --weight-format '%s' (expected checkpoint, config, f32, bf16 "
        "or official)",
        weightFormat.c_str());
  }
  return llvm::Error::success();
}

/// Whether `module` holds FP8 e4m3 weights (cvt.e4m3x2 needs sm_89+).
static bool hasFp8Weights(ModuleOp module) {
  bool fp8 = false;
  module.walk([&](dsv4::ParamOp param) {
    fp8 |= isa<Float8E4M3FNType>(param.getType().getElementType());
  });
  return fp8;
}

int main(int argc, char **argv) {
  llvm::InitLLVM initLLVM(argc, argv);
  registerAsmPrinterCLOptions();
  registerMLIRContextCLOptions();
  registerPassManagerCLOptions();
  registerDefaultTimingManagerCLOptions();
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(argc, argv,
                              "Compressa: compile a DeepSeek-V4 model\n");

  // Step 1. What to produce, for which target.
  std::unique_ptr<TargetInfo> targetInfo;
  if (!target.empty()) {
    StringRef chip = target;
    if (chip.consume_front("cuda:") && cuda::smVersion(chip) < 80)
      return fail("unsupported CUDA chip '" + chip.str() +
                  "' in --target (expected sm_80 or newer, e.g. sm_90a)");
    std::string error;
    targetInfo = createTarget(target, error);
    if (!targetInfo)
      return fail("unsupported --target '" + target +
                  "' (expected cpu or cuda:<chip>, e.g. cuda:sm_90a)");
  }
  if (emit == Emit::Default)
    emit = target.empty() ? Emit::DSV4 : Emit::Artifact;
  bool device = emit == Emit::Artifact || emit == Emit::PTX;
  bool lowered = device || emit == Emit::Dispatch || emit == Emit::Kernels ||
                 emit == Emit::LLVM;
  if (device && target.empty())
    return fail("--emit=artifact and --emit=ptx need a --target");
  if ((emit == Emit::Kernels || emit == Emit::LLVM) && target.empty())
    return fail("--emit=kernels and --emit=llvm need a --target");
  if (emit == Emit::PTX && !targetInfo->isCuda())
    return fail("--emit=ptx needs --target=cuda:<chip>");
  if (emit == Emit::Artifact && outputFile == "-")
    return fail("an artifact is binary: give its file with -o");
  if (prefillMaxTokens < 1)
    return fail("--prefill-max-tokens must be >= 1");
  if (maxContext < 1)
    return fail("--max-context must be >= 1");
  if (ranks < 1 || ranks > 64)
    return fail("--ranks must be in [1, 64], got " + std::to_string(ranks));
  if (parallel != "ep")
    return fail("unknown --parallel '" + parallel + "' (expected ep)");
  if (!parseNumerics(numerics))
    return fail("unknown --numerics '" + numerics +
                "' (expected exact, fast or fast-decode)");
  if (maxBatch < 1 || maxBatch > ::compressa::kMaxBatchLimit)
    return fail("--max-batch must be in [1, " +
                std::to_string(::compressa::kMaxBatchLimit) + "]");

  // Step 2. The dsv4 module: built from a config, or read from a .mlir file
  // as --emit=dsv4 prints it.
  DialectRegistry registry;
  registerAllDSV4Dialects(registry);
  MLIRContext context(registry);
  OwningOpRef<ModuleOp> module;
  std::string source = modelArg;
  bool fromMlir = StringRef(modelArg).ends_with(".mlir");
  std::string error;
  auto output = openOutputFile(outputFile, &error);
  if (!output)
    return fail("cannot open '" + outputFile + "': " + error);
  if (fromMlir) {
    if (summary || emit == Emit::Manifest)
      return fail("--summary and --emit=manifest read a config.json, not a "
                  ".mlir file");
    context.loadAllAvailableDialects();
    llvm::SourceMgr sourceMgr;
    SourceMgrDiagnosticHandler handler(sourceMgr, &context);
    module = parseSourceFile<ModuleOp>(modelArg, sourceMgr, &context);
    if (!module)
      return fail("cannot read the dsv4 module '" + modelArg + "'");
    // Targets run the token programs; the MTP block is not executed yet.
    if (lowered)
      if (auto mtp = module->lookupSymbol<func::FuncOp>("mtp"))
        mtp.erase();
  } else {
    llvm::Expected<std::string> configPath = resolveModel(modelArg);
    if (!configPath)
      return fail(llvm::toString(configPath.takeError()));
    source = *configPath;
    llvm::Expected<ModelConfig> config = parseModelConfig(*configPath);
    if (!config)
      return fail(llvm::toString(config.takeError()));
    if (llvm::Error err = applyWeightFormat(*config))
      return fail(llvm::toString(std::move(err)));
    if (ranks > 1 && config->numRoutedExperts % ranks != 0)
      return fail("--ranks " + std::to_string(ranks) + " does not divide the " +
                  std::to_string(config->numRoutedExperts) +
                  " routed experts of '" + *configPath +
                  "' (field n_routed_experts): each rank must hold as many");
    if (!layerRange.empty())
      if (llvm::Error err = sliceLayers(*config, layerRange))
        return fail(llvm::toString(std::move(err)));
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
    ProgramOptions options;
    options.activationType = actType;
    // --max-batch B > 1: also the batched decode program @decode_batch. For
    // an artifact always (the runtime decodes its slots with it), for the IR
    // that --emit prints only when asked, so it stays what it was.
    if (emit == Emit::Artifact || maxBatch.getNumOccurrences() > 0)
      options.maxBatch = maxBatch;
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
    // Targets run the token programs; the MTP block is not executed yet.
    if (lowered)
      options.mtp = false;
    if (auto text = llvm::MemoryBuffer::getFile(*configPath))
      options.configJson = (*text)->getBuffer().str();
    FailureOr<OwningOpRef<ModuleOp>> built = buildDSV4Module(context, *config, options);
    if (failed(built))
      return fail("could not build the dsv4 programs of '" + *configPath + "'");
    module = std::move(*built);
  }
  if (!lowered) {
    (*module)->print(output->os());
    output->os() << "\n";
    output->keep();
    return 0;
  }
  // The kernels decode FP8 weights with cvt.rn.f16x2.e4m3x2 (sm_89+); FP4
  // and UE8M0 are decoded with integer ops on every chip.
  if (targetInfo && targetInfo->isCuda()) {
    StringRef chip = StringRef(target).drop_front(strlen("cuda:"));
    if (hasFp8Weights(*module) && cuda::smVersion(chip) < 89)
      return fail("'" + chip.str() + "' cannot decode the model's FP8 "
                  "e4m3 weights (cvt.e4m3x2 needs sm_89 or newer)");
  }

  // Step 3. The pipeline (passes/Pipelines.h), up to the stage asked for;
  // --mlir-timing reports each pass and the device code generation.
  DefaultTimingManager timing;
  applyDefaultTimingManagerCLOptions(timing);
  TimingScope rootTiming = timing.getRootScope();
  PassManager pm(&context);
  if (failed(applyPassManagerCLOptions(pm)))
    return fail("bad pass manager options");
  pm.enableTiming(rootTiming);
  PipelineOptions popts;
  popts.target = target.empty() ? "cpu" : target.getValue();
  popts.stopAfter = emit == Emit::Dispatch  ? "dispatch"
                    : emit == Emit::Kernels ? "kernels"
                                            : "llvm";
  // A .mlir file may be past a stage already (an edited dispatch plan, for
  // a fusion experiment): the pipeline continues from there.
  bool planned = false, outlined = false, converted = false;
  for (auto func : module->getOps<func::FuncOp>())
    planned |= func->hasAttr(dsv4::kArenaBytesAttr);
  module->walk([&](dsv4::LaunchOp) { outlined = true; });
  converted = outlined && SymbolTable::lookupSymbolIn(*module, TargetInfo::kContainer);
  popts.startAfter = converted ? "kernels" : outlined ? "outline" : planned ? "dispatch" : "none";
  popts.prefillMaxTokens = prefillMaxTokens;
  popts.numerics = numerics.getValue();
  // Read by the serializer into ModelInfo.max_batch; only for an artifact,
  // so the IR that --emit prints stays what compressa-opt gives.
  if (emit == Emit::Artifact)
    (*module)->setAttr("compressa.max_batch",
                       Builder(&context).getI64IntegerAttr(maxBatch));
  popts.maxContext = maxContext;
  popts.bufferReuse = bufferReuse;
  popts.gridWeightBytes = gridWeightBytes;
  popts.l2PrefetchBytes = l2PrefetchBytes;
  popts.maxRegisters = maxRegisters;
  // --ranks N: this module becomes rank 0's programs; the other ranks are
  // compiled from a copy of it below and travel inside rank 0's artifact.
  OwningOpRef<ModuleOp> unsharded;
  if (ranks > 1) {
    if (popts.startAfter.getValue() != "none")
      return fail("--ranks needs the dsv4 programs before the dispatch stage "
                  "(a config, or a module as --emit=dsv4 prints it)");
    unsharded = module->clone();
    pm.addPass(dsv4::createDSV4ShardExpertsPass({/*rank=*/0, ranks}));
  }
  if (failed(buildCompressaPipeline(pm, popts, error)))
    return fail(error);
  if (failed(pm.run(*module)))
    return fail("the " + std::string(popts.stopAfter) + " pipeline failed on '" +
                source + "'");
  if (!dumpDir.empty()) {
    llvm::sys::fs::create_directories(dumpDir);
    llvm::SmallString<256> p(dumpDir);
    llvm::sys::path::append(p, popts.stopAfter.getValue() + ".mlir");
    std::error_code ec;
    llvm::raw_fd_ostream os(p, ec);
    if (!ec)
      (*module)->print(os);
  }
  if (!device) {
    (*module)->print(output->os());
    output->os() << "\n";
    output->keep();
    return 0;
  }

  // Step 4. Device code and the artifact.
  int64_t launches = 0, kernels = 0;
  (*module)->walk([&](dsv4::LaunchOp) { ++launches; });
  if (Operation *container =
          SymbolTable::lookupSymbolIn(*module, TargetInfo::kContainer))
    for (Operation &op : container->getRegion(0).front())
      kernels += op.hasAttr(dsv4::kAbiAttr);
  llvm::errs() << "compressa-compile: " << launches << " launches of " << kernels
               << " kernels; generating device code\n";
  ArtifactOptions aopts;
  aopts.cpu = cpuName;
  aopts.dumpDir = dumpDir;
  if (!cudaToolkit.empty())
    aopts.cudaToolkit = cudaToolkit;
  else if (const char *home = std::getenv("CUDA_HOME"))
    aopts.cudaToolkit = home;
  if (ranks > 1) {
    if (emit != Emit::Artifact)
      return fail("--ranks > 1 writes an artifact; print one rank's IR with "
                  "compressa-opt --dsv4-shard-experts instead");
    aopts.ranks = ranks;
    for (int64_t r = 1; r < ranks; ++r) {
      OwningOpRef<ModuleOp> copy = unsharded->clone();
      PassManager rankPm(&context);
      rankPm.addPass(dsv4::createDSV4ShardExpertsPass({r, ranks}));
      if (failed(buildCompressaPipeline(rankPm, popts, error)))
        return fail(error);
      if (failed(rankPm.run(*copy)))
        return fail("the pipeline failed on rank " + std::to_string(r) +
                    " of '" + source + "'");
      ArtifactOptions rankOpts = aopts;
      rankOpts.rank = r;
      rankOpts.peers.clear(); // Only rank 0 carries the others.
      ArtifactStats rankStats;
      FailureOr<std::string> peer =
          serializeArtifact(*copy, *targetInfo, rankOpts, rankStats);
      if (failed(peer))
        return fail("could not compile rank " + std::to_string(r) + " of '" +
                    source + "' for " + target);
      aopts.peers.push_back(std::move(*peer));
    }
  }
  ArtifactStats stats;
  FailureOr<std::string> bytes;
  {
    TimingScope codegen = rootTiming.nest("device code and artifact");
    bytes = serializeArtifact(*module, *targetInfo, aopts, stats);
  }
  if (failed(bytes))
    return fail("could not compile '" + source + "' for " + target);
  if (emit == Emit::PTX) {
    output->os() << stats.ptx;
    output->keep();
    return 0;
  }
  output->os() << *bytes;
  output->keep();
  llvm::errs() << "compressa-compile: wrote " << outputFile << " ("
               << stats.kernels << " kernels, " << stats.launches
               << " launches, " << stats.codeBytes / 1024
               << " KiB of code)\n";
  return 0;
}
