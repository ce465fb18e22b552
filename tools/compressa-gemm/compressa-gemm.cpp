//===- compressa-gemm.cpp - The tensor-core FP8 GEMM of one shape ---------===//
// SPDX-License-Identifier: Apache-2.0
//
//   compressa-gemm --n N --k K [--stages S] [--program] [--cluster 1|2]
//                  [--persistent [--group-m G]] [--groups G] [--chip sm_90a]
//                  --emit=mlir|ptx [-o OUT]
//   compressa-gemm --kernel=act-quant --k K [--target cpu|cuda:sm_90a]
//                  --emit=mlir|ptx [-o OUT]
//   compressa-gemm --kernel=experts-gate-up|experts-down --n N --k K
//                  --topk T --experts E [--limit L] --emit=mlir|ptx [-o OUT]
//   compressa-gemm --kernel=indexer-scores --k DI --heads H --ratio R
//                  --capacity C [--fp8] --emit=mlir|ptx [-o OUT]
//   compressa-gemm --kernel=attention-max|attention-sums --k D --heads H
//                  --window W --ratio R --capacity C --scale X [--selected K]
//                  --emit=mlir|ptx [-o OUT]
//   compressa-gemm --kernel=indexer-topk --capacity C --selected K --ratio R
//                  --emit=mlir|ptx [-o OUT]
//
// The routed experts' grouped GEMMs (lowering/TensorCore/WgmmaExperts.h):
// gate-up takes N = the expert width and K = the hidden size, down the
// reverse; the expert tables sit in argv slots 9 and 10 here (a program's
// kernel names its own). indexer-scores is the lightning indexer's scores
// (lowering/TensorCore/WgmmaIndexer.h): H heads of width DI (--k), keys of
// R positions each, C keys in the state (--fp8: e4m3 q, keys act_quant'ed
// in the kernel, --numerics=fast's default); gemm-bench --indexer runs it.
// attention-max and attention-sums are the two passes of the HCA
// attention (lowering/TensorCore/WgmmaAttention.h): H query heads of width
// D (--k), a window of W positions, entries of R positions, C entries in
// the state, the scores' scale X; with --selected K the K entries a top-k
// picks per token (CSA) instead of every visible one; gemm-bench
// --attention runs them. indexer-topk is the indexer's top-k selection
// after those scores (lowering/TensorCore/TopkSelect.h): K picks of C keys
// a token, keys of R positions; gemm-bench --topk runs it.
//
// The FP8 x FP8 block-scaled GEMM kernel (nvgpu.warpgroup.mma fed by
// nvgpu.tma.async.load, lowering/TensorCore/WgmmaGemm.h) that --numerics=fast
// uses for a weight of shape [N, K]; gemm-bench (tools/compressa-gemm) runs
// its PTX on a GPU against the CPU reference.
//
//===----------------------------------------------------------------------===//

#include "lowering/TensorCore/ActQuantKernel.h"
#include "lowering/TensorCore/WgmmaAttention.h"
#include "lowering/TensorCore/WgmmaExperts.h"
#include "lowering/TensorCore/TopkSelect.h"
#include "lowering/TensorCore/WgmmaGemm.h"
#include "lowering/TensorCore/WgmmaIndexer.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/ToolOutputFile.h"

#include <algorithm>
#include <cstdlib>

using namespace mlir;
namespace cl = llvm::cl;

static cl::OptionCategory category("compressa-gemm options");
enum class Kernel {
  Gemm,
  ActQuant,
  ExpertsGateUp,
  ExpertsDown,
  IndexerScores,
  AttentionMax,
  AttentionSums,
  IndexerTopk
};
static cl::opt<Kernel> kernel(
    "kernel", cl::desc("Which kernel"), cl::init(Kernel::Gemm),
    cl::values(clEnumValN(Kernel::Gemm, "gemm",
                          "the FP8 block-scaled GEMM (nvgpu.warpgroup.mma, TMA)"),
               clEnumValN(Kernel::ActQuant, "act-quant",
                          "act_quant (1x128, UE8M0) of rows of K floats, as "
                          "the artifact's kernels compute it"),
               clEnumValN(Kernel::ExpertsGateUp, "experts-gate-up",
                          "the routed experts' w1/w3 grouped GEMM and SwiGLU "
                          "(bf16 wgmma, FP4 decoded in shared memory)"),
               clEnumValN(Kernel::ExpertsDown, "experts-down",
                          "the routed experts' w2 grouped GEMM"),
               clEnumValN(Kernel::IndexerScores, "indexer-scores",
                          "the lightning indexer's scores (bf16 wgmma, relu, "
                          "head weights)"),
               clEnumValN(Kernel::AttentionMax, "attention-max",
                          "the HCA attention's row maxima (bf16 wgmma scores)"),
               clEnumValN(Kernel::AttentionSums, "attention-sums",
                          "the HCA attention's softmax-weighted sums (bf16 "
                          "wgmma, the maxima of attention-max)"),
               clEnumValN(Kernel::IndexerTopk, "indexer-topk",
                          "the indexer's top-k selection, a block a token "
                          "(--capacity, --selected picks, --ratio)")),
    cl::cat(category));
static cl::opt<int64_t> n("n", cl::desc("Output features N (multiple of 128)"),
                          cl::init(0), cl::cat(category));
static cl::opt<int64_t> k("k", cl::desc("Input features K (multiple of 128)"),
                          cl::init(0), cl::cat(category));
static cl::opt<int64_t> stages("stages",
                               cl::desc("Shared-memory buffers (1..7 for the GEMM, 1..6 for the experts)"),
                               cl::init(4), cl::cat(category));
static cl::opt<bool> program(
    "program",
    cl::desc("The kernel a prefill program launches (argument vector, 1-D "
             "grid, N and K multiples of 16; WgmmaGemm.h)"),
    cl::init(false), cl::cat(category));
static cl::opt<int64_t> cluster(
    "cluster",
    cl::desc("gemm: 2 = pairs of N tiles share a's tile by TMA multicast (a "
             "cluster of 2 blocks; WgmmaGemm.h)"),
    cl::init(1), cl::cat(category));
static cl::opt<bool> persistent(
    "persistent", cl::desc("gemm: a fixed grid walks the tiles (WgmmaGemm.h)"),
    cl::init(false), cl::cat(category));
static cl::opt<int64_t> groups(
    "groups",
    cl::desc("gemm: G GEMMs side by side (wo_a's groups): a [M, G K], N = G x "
             "the columns of one (WgmmaGemm.h)"),
    cl::init(1), cl::cat(category));
static cl::opt<int64_t> groupM(
    "group-m",
    cl::desc("gemm, with --persistent: the tiles in groups of G M tiles, M "
             "fastest within a group (0: N fastest; WgmmaGemm.h)"),
    cl::init(0), cl::cat(category));
static cl::opt<int64_t> topk("topk", cl::desc("experts: routed experts per token"),
                             cl::init(6), cl::cat(category));
static cl::opt<int64_t> experts("experts", cl::desc("experts: routed experts"),
                                cl::init(256), cl::cat(category));
static cl::opt<int64_t> heads("heads", cl::desc("indexer-scores: index heads"),
                             cl::init(64), cl::cat(category));
static cl::opt<int64_t> ratio("ratio",
                             cl::desc("indexer-scores: positions per compressed key"),
                             cl::init(4), cl::cat(category));
static cl::opt<int64_t> capacity("capacity",
                                cl::desc("indexer-scores: keys of the decode state"),
                                cl::init(1024), cl::cat(category));
static cl::opt<bool> fp8Indexer(
    "fp8", cl::desc("indexer-scores: e4m3 q codes and keys act_quant'ed by the kernel "
                    "(--numerics=fast's indexer; WgmmaIndexer.h); otherwise bf16"),
    cl::init(false), cl::cat(category));
static cl::opt<int64_t> window("window", cl::desc("attention: sliding-window positions"),
                              cl::init(128), cl::cat(category));
static cl::opt<int64_t> selected(
    "selected", cl::desc("attention: the entries a top-k selects per token (0: every "
                         "visible one, HCA)"),
    cl::init(0), cl::cat(category));
static cl::opt<double> scale("scale", cl::desc("attention: the scores' scale"),
                             cl::init(0.0), cl::cat(category));
static cl::opt<double> limit("limit", cl::desc("experts-gate-up: the SwiGLU clamp"),
                             cl::init(10.0), cl::cat(category));
static cl::opt<std::string> chip("chip", cl::desc("CUDA chip (sm_90a)"),
                                 cl::init("sm_90a"), cl::cat(category));
static cl::opt<std::string> actTarget(
    "target", cl::desc("act-quant: cpu or cuda:<chip> (--emit=mlir only for cpu)"),
    cl::init("cuda:sm_90a"), cl::cat(category));
static cl::opt<std::string> cudaToolkit(
    "cuda-toolkit", cl::desc("CUDA toolkit (libdevice, ptxas); default "
                             "$CUDA_HOME, else /usr/local/cuda"),
    cl::cat(category));
enum class Emit { MLIR, PTX };
static cl::opt<Emit> emit(
    "emit", cl::desc("What to write"), cl::init(Emit::PTX),
    cl::values(clEnumValN(Emit::MLIR, "mlir", "the kernel in NVGPU/NVVM (MLIR)"),
               clEnumValN(Emit::PTX, "ptx", "the kernel's PTX")),
    cl::cat(category));
static cl::opt<std::string> outputFile("o", cl::desc("Output file ('-' = stdout)"),
                                       cl::init("-"), cl::cat(category));

int main(int argc, char **argv) {
  llvm::InitLLVM initLLVM(argc, argv);
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(argc, argv,
                              "Compressa: the tensor-core FP8 GEMM of one shape\n");
  compressa::WgmmaGemmShape shape;
  shape.n = n;
  shape.k = k;
  shape.stages = stages;
  shape.program = program;
  shape.cluster = cluster;
  shape.persistent = persistent;
  shape.groups = groups;
  shape.groupM = groupM;
  std::string error;
  std::string out;
  if (kernel == Kernel::ActQuant) {
    DialectRegistry registry;
    registerAllDialects(registry);
    registerAllExtensions(registry);
    registerAllGPUToLLVMIRTranslations(registry);
    MLIRContext context(registry);
    std::string toolkit = cudaToolkit;
    if (toolkit.empty())
      toolkit = std::getenv("CUDA_HOME") ? std::getenv("CUDA_HOME") : "/usr/local/cuda";
    llvm::StringRef spec = actTarget;
    if (emit == Emit::MLIR) {
      OwningOpRef<ModuleOp> module = compressa::buildActQuantKernel(context, k, spec, error);
      if (module) {
        llvm::raw_string_ostream os(out);
        (*module)->print(os);
      }
    } else if (!spec.consume_front("cuda:")) {
      error = "--emit=ptx needs --target=cuda:<chip>";
    } else {
      out = compressa::actQuantPtx(context, k, spec, toolkit, error);
    }
  } else if (kernel == Kernel::ExpertsGateUp || kernel == Kernel::ExpertsDown) {
    compressa::WgmmaExpertsShape e;
    e.gateUp = kernel == Kernel::ExpertsGateUp;
    e.n = n;
    e.k = k;
    e.topk = topk;
    e.experts = experts;
    e.tableSlot = 9;
    e.tableSlot3 = e.gateUp ? 10 : -1;
    e.limit = limit;
    e.stages = stages;
    out = emit == Emit::MLIR ? compressa::wgmmaExpertsModuleText(e, chip, error)
                             : compressa::wgmmaExpertsPtx(e, chip, error);
  } else if (kernel == Kernel::IndexerScores) {
    compressa::WgmmaIndexerShape ix;
    ix.heads = heads;
    ix.dim = k;
    ix.ratio = ratio;
    ix.capacity = capacity;
    ix.stages = std::min<int64_t>(stages, 4);
    ix.fp8 = fp8Indexer;
    out = emit == Emit::MLIR ? compressa::wgmmaIndexerModuleText(ix, chip, error)
                             : compressa::wgmmaIndexerPtx(ix, chip, error);
  } else if (kernel == Kernel::IndexerTopk) {
    compressa::TopkSelectShape sel;
    sel.capacity = capacity;
    sel.topk = selected;
    sel.ratio = ratio;
    out = emit == Emit::MLIR ? compressa::topkSelectModuleText(sel, chip, error)
                             : compressa::topkSelectPtx(sel, chip, error);
  } else if (kernel == Kernel::AttentionMax || kernel == Kernel::AttentionSums) {
    compressa::WgmmaAttentionShape at;
    at.heads = heads;
    at.dim = k;
    at.window = window;
    at.ratio = ratio;
    at.capacity = capacity;
    at.scale = scale;
    at.topk = selected;
    at.pass = kernel == Kernel::AttentionMax ? compressa::WgmmaAttentionShape::Pass::Max
                                             : compressa::WgmmaAttentionShape::Pass::Sums;
    at.stages = std::min<int64_t>(stages, 2);
    std::string toolkit = cudaToolkit;
    if (toolkit.empty())
      toolkit = std::getenv("CUDA_HOME") ? std::getenv("CUDA_HOME") : "/usr/local/cuda";
    out = emit == Emit::MLIR ? compressa::wgmmaAttentionModuleText(at, chip, toolkit, error)
                             : compressa::wgmmaAttentionPtx(at, chip, toolkit, error);
  } else if (emit == Emit::MLIR) {
    out = compressa::wgmmaGemmModuleText(shape, chip, error);
  } else {
    DialectRegistry registry;
    // NVGPU/NVVM/GPU and the interfaces and translations the lowering to
    // PTX goes through.
    registerAllDialects(registry);
    registerAllExtensions(registry);
    registerAllGPUToLLVMIRTranslations(registry);
    MLIRContext context(registry);
    context.loadAllAvailableDialects();
    out = compressa::wgmmaGemmPtx(context, shape, chip, error);
  }
  if (out.empty()) {
    llvm::errs() << "compressa-gemm: error: " << error << "\n";
    return 1;
  }
  auto file = openOutputFile(outputFile, &error);
  if (!file) {
    llvm::errs() << "compressa-gemm: error: cannot open '" << outputFile
                 << "': " << error << "\n";
    return 1;
  }
  file->os() << out;
  file->keep();
  return 0;
}
