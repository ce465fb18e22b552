//===- SerializeArtifact.cpp - Programs and kernels -> .cpa artifact -----===//
// SPDX-License-Identifier: Apache-2.0

#include "lowering/KernelsToArtifact/SerializeArtifact.h"
#include "dialects/DSV4/IR/DSV4Ops.h"
#include "lowering/DSV4ToKernels/KernelABI.h"
#include "lowering/DSV4ToKernels/TensorCoreGemm.h"
#include "lowering/TensorCore/TopkSelect.h"
#include "lowering/TensorCore/WgmmaExperts.h"
#include "lowering/TensorCore/WgmmaGemm.h"
#include "lowering/TensorCore/WgmmaAttention.h"
#include "lowering/TensorCore/WgmmaIndexer.h"
#include "lowering/Target/CPU/CpuCodegen.h"
#include "lowering/Target/CUDA/CudaCodegen.h"
#include "lowering/Target/CUDA/CudaTarget.h"
#include "runtime/format/artifact_generated.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/SymbolTable.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/SHA256.h"

#include <cstdlib>
#include <functional>
#include <map>

using namespace mlir;
using namespace mlir::compressa;
using namespace mlir::dsv4;

namespace {

/// The artifact version written; the runtime reads exactly this one
/// (kArtifactVersion in runtime/format/artifact_reader.h).
constexpr uint32_t kArtifactVersion = 2;
/// The trailer after the FlatBuffer: its SHA-256, then this tag
/// (runtime/format/artifact.fbs).
constexpr char kTrailerTag[9] = "CPASHA2";

struct LaunchArg {
  fb::ArgKind kind;
  uint32_t index;
};

class Serializer {
public:
  Serializer(ModuleOp module, const TargetInfo &target, const ArtifactOptions &opts)
      : module(module), target(target), opts(opts) {}

  FailureOr<std::string> run(ArtifactStats &stats);

private:
  struct ProgramOut {
    std::string name;
    int64_t maxTokens, arena;
    std::vector<std::tuple<std::string, int64_t, int64_t>> buffers;
    uint32_t inputIds = 0, logits = 0;
    std::vector<std::pair<uint32_t, std::vector<LaunchArg>>> launches;
    /// Tensor maps: source kind, index, offset, rows, cols, box rows.
    std::vector<std::tuple<fb::ArgKind, uint32_t, uint64_t, uint64_t, uint64_t, uint32_t>>
        maps;
  };
  struct StateOut {
    std::string name;
    StateGeometry geometry;
  };
  struct WeightOut {
    std::string name, dtype, scale;
    SmallVector<int64_t> shape, scaleShape;
    uint64_t valuesBelow = 0;
  };
  struct KernelOut {
    std::string name, symbol;
    int64_t scratchPerToken, scratch, block, grid = 1;
    SmallVector<AbiParam> params;
    /// A collective of the ranks (no symbol, no code), or None.
    fb::Collective collective = fb::Collective::None;
    /// Dynamic shared memory; a tensor-core GEMM's blocks never meet.
    int64_t shared = 0;
    bool gridSync = true;
    /// Its code waits for the grid before it (TargetInfo::kernelPrologue).
    bool programmatic = false;
    /// A kernel split around tensor-core GEMMs (TensorCoreGemm.h).
    ArrayAttr steps;
  };

  LogicalResult kernels();
  LogicalResult program(func::FuncOp func);
  /// The state argument a state value is (through launch updates).
  FailureOr<uint32_t> stateOf(func::FuncOp func, Value v);
  uint32_t weightOf(ParamOp param);
  uint32_t expertTableOf(ParamOp param);
  /// The pseudo-kernel of a dsv4.all_reduce of `bytesPerToken` per token.
  uint32_t allReduceKernel(int64_t bytesPerToken);
  /// The tensor-core GEMM kernel of an [n, k] FP8 weight in a program of
  /// `maxTokens` tokens (WgmmaGemm.h, `program`).
  uint32_t tensorCoreGemmKernel(int64_t n, int64_t k, int64_t groups, int64_t maxTokens);
  /// The shape of that kernel (the compile-time options included).
  static WgmmaGemmShape tensorCoreGemmShape(int64_t n, int64_t k, int64_t groups);
  /// The indexer's tensor-core scores (WgmmaIndexer.h) for a program of
  /// `maxTokens`.
  uint32_t indexerKernel(const WgmmaIndexerShape &shape, int64_t maxTokens);
  /// The HCA attention's tensor-core kernels (WgmmaAttention.h).
  uint32_t attentionKernel(const WgmmaAttentionShape &shape);
  /// The indexer's top-k selection (TopkSelect.h).
  uint32_t topkKernel(const TopkSelectShape &shape);
  /// A persistent tensor-core kernel of its own (the indexer's scores, the
  /// attention's passes): one block per multiprocessor (grid_sync: the
  /// runtime launches min(grid, the blocks that fit at once); the blocks
  /// never meet), arguments S, the first position, the scratch and `maps`
  /// tensor maps; appended to the kernel list, its index returned.
  uint32_t persistentKernel(std::string name, std::string symbol, int64_t block,
                            int64_t shared, int64_t scratchPerToken, int64_t scratch,
                            int maps);
  /// The grouped experts GEMM launched between two parts of `part`.
  uint32_t expertsKernel(const WgmmaExpertsShape &shape, const KernelOut &part,
                         int64_t maxTokens);
  /// The launches of a kernel split around tensor-core GEMMs.
  LogicalResult tensorCoreSteps(LaunchOp launch, const KernelOut &kernel,
                                const std::vector<LaunchArg> &args, ProgramOut &prog);
  /// The launch of a collective (a step of its own, never inside a kernel).
  LogicalResult collective(AllReduceOp op, ProgramOut &prog,
                           const std::function<void(Value, ArrayRef<int64_t>,
                                                    std::string)> &addBuffer);

  ModuleOp module;
  const TargetInfo &target;
  const ArtifactOptions &opts;
  int64_t maxContext = 0;
  int64_t maxBatch = 1;
  int64_t routedExperts = 0;
  std::vector<KernelOut> kernelList;
  llvm::StringMap<uint32_t> kernelBySymbol;
  std::vector<ProgramOut> programs;
  std::vector<StateOut> states;
  llvm::StringMap<uint32_t> stateByName;
  std::vector<WeightOut> weights;
  llvm::StringMap<uint32_t> weightByName;
  std::vector<std::pair<std::string, uint32_t>> expertTables;
  std::vector<uint32_t> expertFirst;
  llvm::DenseMap<int64_t, uint32_t> allReduceKernels;
  /// (n, k, groups, max_tokens) -> kernel index.
  std::map<std::tuple<int64_t, int64_t, int64_t, int64_t>, uint32_t> tensorCoreGemms;
  /// The routed experts' grouped GEMMs (WgmmaExperts.h): kernels by
  /// (symbol, max tokens), and each symbol's shape once for its code.
  std::map<std::pair<std::string, int64_t>, uint32_t> expertsGemms;
  std::vector<WgmmaExpertsShape> expertsShapes;
  /// The indexer's scores kernels by (symbol, max tokens), and each
  /// symbol's shape once for its code.
  std::map<std::pair<std::string, int64_t>, uint32_t> indexerKernels;
  std::vector<WgmmaIndexerShape> indexerShapes;
  /// The attention's kernels by symbol, and their shapes.
  llvm::StringMap<uint32_t> attentionKernels;
  std::vector<WgmmaAttentionShape> attentionShapes;
  llvm::StringMap<uint32_t> topkKernels;
  std::vector<TopkSelectShape> topkShapes;
  llvm::StringMap<uint32_t> expertTableByName;
  int64_t launches = 0;
  llvm::DenseMap<Value, uint32_t> bufferOf;
};

} // namespace

LogicalResult Serializer::kernels() {
  Operation *container = SymbolTable::lookupSymbolIn(module, TargetInfo::kContainer);
  if (!container)
    return module.emitError() << "no @" << TargetInfo::kContainer
                              << " (run convert-dsv4-to-kernels)";
  for (Operation &op : container->getRegion(0).front()) {
    auto abi = op.getAttrOfType<DictionaryAttr>(kAbiAttr);
    if (!abi)
      continue;
    KernelOut k;
    k.symbol = SymbolTable::getSymbolName(&op).str();
    if (auto name = op.getAttrOfType<StringAttr>(kKernelAttr))
      k.name = name.str();
    auto scratch = abi.getAs<DenseI64ArrayAttr>("scratch");
    k.scratchPerToken = scratch[0];
    k.scratch = scratch[1];
    k.block = abi.getAs<IntegerAttr>("block").getInt();
    if (auto grid = abi.getAs<IntegerAttr>("grid"))
      k.grid = grid.getInt();
    k.steps = op.getAttrOfType<ArrayAttr>(kTensorCoreStepsAttr);
    k.programmatic = op.hasAttr(TargetInfo::kProgrammaticAttr);
    ArrayRef<int64_t> params = abi.getAs<DenseI64ArrayAttr>("params").asArrayRef();
    for (size_t i = 0; i + 2 < params.size(); i += 3)
      k.params.push_back({static_cast<fb::ArgKind>(params[i]), uint64_t(params[i + 1]),
                          uint64_t(params[i + 2])});
    kernelBySymbol[k.symbol] = kernelList.size();
    kernelList.push_back(std::move(k));
  }
  if (kernelList.empty())
    return container->emitError() << "holds no kernel with a " << kAbiAttr;
  return success();
}

FailureOr<uint32_t> Serializer::stateOf(func::FuncOp func, Value v) {
  // Through launches: result i updates operand updates[i].
  while (auto launch = v.getDefiningOp<LaunchOp>()) {
    int64_t u = launch.getUpdates()[cast<OpResult>(v).getResultNumber()];
    if (u < 0)
      break;
    v = launch.getArgs()[u];
  }
  auto arg = dyn_cast<BlockArgument>(v);
  auto name = arg ? func.getArgAttrOfType<StringAttr>(arg.getArgNumber(), kStateAttr)
                  : nullptr;
  if (!name)
    return func.emitError() << "a launch reads decode state that is not a "
                               "dsv4.state argument of @"
                            << func.getName();
  auto it = stateByName.find(name.getValue());
  if (it != stateByName.end())
    return it->second;
  FailureOr<StateGeometry> g = stateGeometry(arg.getType());
  if (failed(g))
    return func.emitError() << "unsupported decode-state type " << arg.getType();
  uint32_t index = states.size();
  states.push_back({name.str(), *g});
  stateByName[name.getValue()] = index;
  return index;
}

uint32_t Serializer::weightOf(ParamOp param) {
  auto it = weightByName.find(param.getName());
  if (it != weightByName.end())
    return it->second;
  WeightType type = param.getType();
  WeightOut w;
  w.name = param.getName().str();
  w.dtype = weightDtype(type);
  w.shape = weightDiskShape(type);
  if (type.isQuantized()) {
    w.scale = scaleName(w.name);
    w.scaleShape = scaleShape(type);
  }
  // tid2eid picks routed experts: the runtime checks every value is in
  // [0, n_routed_experts) when it binds the checkpoint.
  if (StringRef(w.name).ends_with(".gate.tid2eid"))
    w.valuesBelow = routedExperts;
  uint32_t index = weights.size();
  weights.push_back(std::move(w));
  weightByName[param.getName()] = index;
  return index;
}

uint32_t Serializer::expertTableOf(ParamOp param) {
  StringRef pattern = param.getName();
  auto it = expertTableByName.find(pattern);
  if (it != expertTableByName.end())
    return it->second;
  // Each expert is a weight of its own; the table names them by pattern.
  // Rank r of an expert-parallel artifact holds experts r*count.. (the
  // stacks of dsv4-shard-experts): its manifest names only those.
  WeightType type = param.getType();
  uint32_t count = type.getShape()[0];
  uint32_t first = uint32_t(opts.rank) * count;
  for (uint32_t e = first; e < first + count; ++e) {
    std::string name;
    for (char ch : pattern)
      name += ch == '*' ? std::to_string(e) : std::string(1, ch);
    if (weightByName.count(name))
      continue;
    WeightOut w;
    w.name = name;
    w.dtype = weightDtype(type);
    w.shape = weightDiskShape(type);
    if (type.isQuantized()) {
      w.scale = scaleName(name);
      w.scaleShape = scaleShape(type);
    }
    weightByName[name] = weights.size();
    weights.push_back(std::move(w));
  }
  uint32_t index = expertTables.size();
  expertTables.push_back({pattern.str(), count});
  expertFirst.push_back(first);
  expertTableByName[pattern] = index;
  return index;
}

uint32_t Serializer::allReduceKernel(int64_t bytesPerToken) {
  auto it = allReduceKernels.find(bytesPerToken);
  if (it != allReduceKernels.end())
    return it->second;
  KernelOut k;
  k.name = "all_reduce";
  k.scratchPerToken = k.scratch = 0;
  k.block = 1;
  k.collective = fb::Collective::AllReduceSum;
  k.params = {{fb::ArgKind::Tokens, 0, 0},
              {fb::ArgKind::StartPos, 0, 0},
              {fb::ArgKind::Scratch, 0, 0},
              {fb::ArgKind::Buffer, uint64_t(bytesPerToken), 0},
              {fb::ArgKind::Buffer, uint64_t(bytesPerToken), 0}};
  uint32_t index = kernelList.size();
  kernelList.push_back(std::move(k));
  allReduceKernels[bytesPerToken] = index;
  return index;
}

static bool envIs(const char *name, llvm::StringRef value) {
  const char *v = std::getenv(name);
  return v && value == v;
}

WgmmaGemmShape Serializer::tensorCoreGemmShape(int64_t n, int64_t k, int64_t groups) {
  // A persistent grid (WgmmaGemm.h; 2-9 % faster on an H100, docs/perf.md);
  // COMPRESSA_GEMM_PERSISTENT=0 at compile time keeps a block a tile and
  // COMPRESSA_GEMM_CLUSTER=2 gives pairs of N tiles sharing a's tile (for
  // A/B runs).
  static const int64_t cluster =
      envIs("COMPRESSA_GEMM_CLUSTER", "2") ? 2 : 1;
  static const bool persistent =
      !envIs("COMPRESSA_GEMM_PERSISTENT", "0");
  WgmmaGemmShape shape;
  shape.n = n;
  shape.k = k;
  shape.stages = kTensorCoreStages;
  shape.program = true;
  shape.cluster = cluster;
  shape.persistent = persistent;
  shape.groups = groups;
  // The tile order per shape (tuneWgmmaGemm, WgmmaGemm.h);
  // COMPRESSA_GEMM_TUNE=0 at compile time keeps N fastest everywhere (for
  // A/B runs).
  static const bool tune = !envIs("COMPRESSA_GEMM_TUNE", "0");
  if (tune)
    tuneWgmmaGemm(shape);
  return shape;
}

uint32_t Serializer::tensorCoreGemmKernel(int64_t n, int64_t k, int64_t groups,
                                          int64_t maxTokens) {
  auto key = std::make_tuple(n, k, groups, maxTokens);
  auto it = tensorCoreGemms.find(key);
  if (it != tensorCoreGemms.end())
    return it->second;
  WgmmaGemmShape shape = tensorCoreGemmShape(n, k, groups);
  KernelOut out;
  out.name = "tensor_core_gemm_n" + std::to_string(n) + "_k" + std::to_string(k) +
             (groups > 1 ? "_g" + std::to_string(groups) : "");
  out.symbol = shape.name();
  // The staging area it reads (TensorCoreGemm.h): codes and scales of
  // max_tokens rows after the 64-byte header.
  out.scratchPerToken = (k + shape.kBlocks()) * groups;
  out.scratch = kStagingHeader;
  out.block = WgmmaGemmShape::kThreads;
  // A persistent kernel: as many blocks as fit the GPU at once (the
  // runtime caps the grid, Kernel.grid_sync), whole clusters.
  out.grid = shape.persistent ? 1024
                              : shape.nUnits() * shape.cluster *
                                    ((maxTokens + WgmmaGemmShape::kTile - 1) /
                                     WgmmaGemmShape::kTile);
  out.shared = shape.sharedBytes();
  out.gridSync = shape.persistent;
  out.params = {{fb::ArgKind::Tokens, 0, 0},
                {fb::ArgKind::StartPos, 0, 0},
                {fb::ArgKind::Scratch, 0, 0},
                {fb::ArgKind::TensorMap, 0, 0},
                {fb::ArgKind::TensorMap, 0, 0},
                {fb::ArgKind::WeightScale, 0, uint64_t(shape.nTiles() * shape.kBlocks())}};
  uint32_t index = kernelList.size();
  kernelList.push_back(std::move(out));
  tensorCoreGemms[key] = index;
  return index;
}

uint32_t Serializer::indexerKernel(const WgmmaIndexerShape &shape, int64_t maxTokens) {
  std::string symbol = shape.name();
  auto key = std::make_pair(symbol, maxTokens);
  auto it = indexerKernels.find(key);
  if (it != indexerKernels.end())
    return it->second;
  // The staging area it reads: the header, then q in bf16 or e4m3 [S
  // heads, di].
  uint32_t index = persistentKernel(
      "tensor_core_indexer_h" + std::to_string(shape.heads) + "_d" +
          std::to_string(shape.dim) + (shape.fp8 ? "_f8" : ""),
      symbol, WgmmaIndexerShape::kThreads, shape.sharedBytes(),
      shape.heads * shape.rowBytes(), kStagingHeader, 1);
  indexerKernels[key] = index;
  if (!llvm::any_of(indexerShapes,
                    [&](const WgmmaIndexerShape &s) { return s.name() == symbol; }))
    indexerShapes.push_back(shape);
  return index;
}

uint32_t Serializer::topkKernel(const TopkSelectShape &shape) {
  std::string symbol = shape.name();
  auto it = topkKernels.find(symbol);
  if (it != topkKernels.end())
    return it->second;
  // No staging of its own: the header the scores' part wrote.
  uint32_t index = persistentKernel("indexer_topk_k" + std::to_string(shape.topk), symbol,
                                    TopkSelectShape::kThreads, 0, 0, 0, 0);
  topkKernels[symbol] = index;
  topkShapes.push_back(shape);
  return index;
}

uint32_t Serializer::attentionKernel(const WgmmaAttentionShape &shape) {
  std::string symbol = shape.name();
  auto it = attentionKernels.find(symbol);
  if (it != attentionKernels.end())
    return it->second;
  // The staging area it reads: the header, the entries' copy, the window's;
  // with a top-k the header and each token's rows.
  int64_t perToken = shape.topk ? shape.keysPerToken() * shape.dim * 2 : shape.dim * 2;
  int64_t fixed = kStagingHeader + (shape.topk ? 0
                                               : cpu::TensorCoreSplit::attentionFixedBytes(
                                                     shape.dim, shape.window, shape.capacity));
  uint32_t index = persistentKernel(
      "tensor_core_attention_" +
          std::string(shape.pass == WgmmaAttentionShape::Pass::Max ? "max" : "sums") + "_h" +
          std::to_string(shape.heads) + "_d" + std::to_string(shape.dim),
      symbol, WgmmaAttentionShape::kThreads, shape.sharedBytes(), perToken, fixed, 2);
  attentionKernels[symbol] = index;
  attentionShapes.push_back(shape);
  return index;
}

uint32_t Serializer::persistentKernel(std::string name, std::string symbol, int64_t block,
                                      int64_t shared, int64_t scratchPerToken, int64_t scratch,
                                      int maps) {
  KernelOut out;
  out.name = std::move(name);
  out.symbol = std::move(symbol);
  out.scratchPerToken = scratchPerToken;
  out.scratch = scratch;
  out.block = block;
  out.grid = 1024;
  out.shared = shared;
  out.gridSync = true;
  out.params = {{fb::ArgKind::Tokens, 0, 0},
                {fb::ArgKind::StartPos, 0, 0},
                {fb::ArgKind::Scratch, 0, 0}};
  for (int m = 0; m < maps; ++m)
    out.params.push_back({fb::ArgKind::TensorMap, 0, 0});
  uint32_t index = kernelList.size();
  kernelList.push_back(std::move(out));
  return index;
}

uint32_t Serializer::expertsKernel(const WgmmaExpertsShape &shape, const KernelOut &part,
                                   int64_t maxTokens) {
  std::string symbol = shape.name();
  auto key = std::make_pair(symbol, maxTokens);
  auto it = expertsGemms.find(key);
  if (it != expertsGemms.end())
    return it->second;
  KernelOut out;
  out.name = "tensor_core_" + std::string(shape.gateUp ? "experts_gate_up" : "experts_down") +
             "_n" + std::to_string(shape.n) + "_k" + std::to_string(shape.k);
  out.symbol = symbol;
  // The part's arguments and scratch (its staging header and tiles).
  out.scratchPerToken = part.scratchPerToken;
  out.scratch = part.scratch;
  out.params = part.params;
  out.block = WgmmaExpertsShape::kThreads;
  out.grid = shape.nTiles() * shape.maxSlotTiles(maxTokens);
  out.shared = shape.sharedBytes();
  out.gridSync = false;
  uint32_t index = kernelList.size();
  kernelList.push_back(std::move(out));
  expertsGemms[key] = index;
  if (!llvm::any_of(expertsShapes,
                    [&](const WgmmaExpertsShape &s) { return s.name() == symbol; }))
    expertsShapes.push_back(shape);
  return index;
}

LogicalResult Serializer::tensorCoreSteps(LaunchOp launch, const KernelOut &kernel,
                                          const std::vector<LaunchArg> &args,
                                          ProgramOut &prog) {
  auto mapOf = [&](fb::ArgKind source, uint32_t index, uint64_t offset, uint64_t rows,
                   uint64_t cols, uint32_t boxRows = 128) -> uint32_t {
    auto map = std::make_tuple(source, index, offset, rows, cols, boxRows);
    auto found = llvm::find(prog.maps, map);
    if (found != prog.maps.end())
      return uint32_t(found - prog.maps.begin());
    prog.maps.push_back(map);
    return uint32_t(prog.maps.size() - 1);
  };
  for (Attribute a : kernel.steps) {
    auto step = cast<DictionaryAttr>(a);
    if (auto part = step.getAs<StringAttr>("part")) {
      auto it = kernelBySymbol.find(part.getValue());
      if (it == kernelBySymbol.end())
        return launch.emitOpError() << "internal error: no kernel part " << part;
      prog.launches.push_back({it->second, args});
      ++launches;
      continue;
    }
    if (auto which = step.getAs<StringAttr>("experts")) {
      // The routed experts' grouped GEMMs read the part's argument vector.
      WgmmaExpertsShape shape;
      shape.gateUp = which.getValue() == "gate_up";
      shape.n = step.getAs<IntegerAttr>("n").getInt();
      shape.k = step.getAs<IntegerAttr>("k").getInt();
      shape.topk = step.getAs<IntegerAttr>("topk").getInt();
      shape.experts = step.getAs<IntegerAttr>("count").getInt();
      shape.tableSlot = step.getAs<IntegerAttr>("table").getInt();
      shape.tableSlot3 = step.getAs<IntegerAttr>("table3").getInt();
      shape.limit = step.getAs<FloatAttr>("limit").getValueAsDouble();
      shape.stages = kTensorCoreStages;
      for (int64_t slot : {shape.tableSlot, shape.tableSlot3})
        if (slot >= int64_t(args.size()) ||
            (slot >= 0 && args[slot].kind != fb::ArgKind::ExpertTable))
          return launch.emitOpError() << "internal error: the grouped experts "
                                         "GEMM's table slot "
                                      << slot << " holds no expert table";
      prog.launches.push_back({expertsKernel(shape, kernel, prog.maxTokens), args});
      ++launches;
      continue;
    }
    if (auto which = step.getAs<StringAttr>("indexer"); which && which.getValue() == "topk") {
      // The selection after the scores: their addresses in the header.
      TopkSelectShape shape;
      shape.capacity = step.getAs<IntegerAttr>("capacity").getInt();
      shape.topk = step.getAs<IntegerAttr>("topk").getInt();
      shape.ratio = step.getAs<IntegerAttr>("ratio").getInt();
      prog.launches.push_back({topkKernel(shape),
                               {{fb::ArgKind::Tokens, 0},
                                {fb::ArgKind::StartPos, 0},
                                {fb::ArgKind::Scratch, 0}}});
      ++launches;
      continue;
    }
    if (step.getAs<StringAttr>("indexer")) {
      // The indexer's scores: q's rows from the staging area through a map.
      WgmmaIndexerShape shape;
      shape.heads = step.getAs<IntegerAttr>("heads").getInt();
      shape.dim = step.getAs<IntegerAttr>("dim").getInt();
      shape.ratio = step.getAs<IntegerAttr>("ratio").getInt();
      shape.capacity = step.getAs<IntegerAttr>("capacity").getInt();
      shape.stages = kTensorCoreStages;
      auto fp8 = step.getAs<BoolAttr>("fp8");
      shape.fp8 = fp8 && fp8.getValue();
      uint32_t qmap = mapOf(fb::ArgKind::Scratch, 0, kStagingHeader,
                            uint64_t(prog.maxTokens) * shape.heads, shape.rowBytes());
      prog.launches.push_back({indexerKernel(shape, prog.maxTokens),
                               {{fb::ArgKind::Tokens, 0},
                                {fb::ArgKind::StartPos, 0},
                                {fb::ArgKind::Scratch, 0},
                                {fb::ArgKind::TensorMap, qmap}}});
      ++launches;
      continue;
    }
    if (auto pass = step.getAs<StringAttr>("attention")) {
      // The HCA attention: the window's and the entries' bf16 copies in the
      // staging area through two maps of 64-row boxes.
      WgmmaAttentionShape shape;
      shape.pass = pass.getValue() == "max" ? WgmmaAttentionShape::Pass::Max
                                            : WgmmaAttentionShape::Pass::Sums;
      shape.heads = step.getAs<IntegerAttr>("heads").getInt();
      shape.dim = step.getAs<IntegerAttr>("dim").getInt();
      shape.window = step.getAs<IntegerAttr>("window").getInt();
      shape.ratio = step.getAs<IntegerAttr>("ratio").getInt();
      shape.capacity = step.getAs<IntegerAttr>("capacity").getInt();
      shape.scale = step.getAs<FloatAttr>("scale").getValueAsDouble();
      shape.topk = step.getAs<IntegerAttr>("topk").getInt();
      uint64_t rowBytes = shape.dim * 2;
      uint64_t entryRows = cpu::TensorCoreSplit::attentionEntryRows(shape.capacity);
      uint32_t wmap, emap;
      if (shape.topk) {
        // Each token's own rows, [max_tokens (window + k), dim], both maps.
        wmap = emap = mapOf(fb::ArgKind::Scratch, 0, kStagingHeader,
                            uint64_t(prog.maxTokens) * shape.keysPerToken(), rowBytes, 64);
      } else {
        wmap = mapOf(fb::ArgKind::Scratch, 0, kStagingHeader + entryRows * rowBytes,
                     uint64_t(prog.maxTokens) + shape.window + 128, rowBytes, 64);
        emap = mapOf(fb::ArgKind::Scratch, 0, kStagingHeader, entryRows, rowBytes, 64);
      }
      prog.launches.push_back({attentionKernel(shape),
                               {{fb::ArgKind::Tokens, 0},
                                {fb::ArgKind::StartPos, 0},
                                {fb::ArgKind::Scratch, 0},
                                {fb::ArgKind::TensorMap, wmap},
                                {fb::ArgKind::TensorMap, emap}}});
      ++launches;
      continue;
    }
    int64_t n = step.getAs<IntegerAttr>("gemm_n").getInt();
    int64_t k = step.getAs<IntegerAttr>("gemm_k").getInt();
    size_t slot = step.getAs<IntegerAttr>("weight_slot").getInt();
    // wo_a's groups side by side (WgmmaGemm.h); absent: one.
    auto groupsAttr = step.getAs<IntegerAttr>("gemm_groups");
    int64_t groups = groupsAttr ? groupsAttr.getInt() : 1;
    if (slot >= args.size() || args[slot].kind != fb::ArgKind::Weight)
      return launch.emitOpError() << "internal error: the tensor-core GEMM's "
                                     "weight slot "
                                  << slot << " holds no weight";
    uint32_t w = args[slot].index;
    uint32_t gemm = tensorCoreGemmKernel(n, k, groups, prog.maxTokens);
    uint32_t amap = mapOf(fb::ArgKind::Scratch, 0, kStagingHeader, prog.maxTokens, k * groups,
                          uint32_t(tensorCoreGemmShape(n, k, groups).aBoxRows()));
    uint32_t wmap = mapOf(fb::ArgKind::Weight, w, 0, n, k);
    prog.launches.push_back({gemm,
                             {{fb::ArgKind::Tokens, 0},
                              {fb::ArgKind::StartPos, 0},
                              {fb::ArgKind::Scratch, 0},
                              {fb::ArgKind::TensorMap, amap},
                              {fb::ArgKind::TensorMap, wmap},
                              {fb::ArgKind::WeightScale, w}}});
    ++launches;
  }
  return success();
}

LogicalResult Serializer::collective(
    AllReduceOp op, ProgramOut &prog,
    const std::function<void(Value, ArrayRef<int64_t>, std::string)> &addBuffer) {
  if (opts.ranks < 2)
    return op.emitOpError() << "needs an artifact of several ranks (ranks = "
                            << opts.ranks << ")";
  if (op.getRanks() != opts.ranks)
    return op.emitOpError() << "sums over " << op.getRanks()
                            << " ranks, but the artifact has " << opts.ranks;
  auto slots = op->getAttrOfType<ArrayAttr>(kBuffersAttr);
  auto in = bufferOf.find(op.getX());
  if (!slots || in == bufferOf.end())
    return op.emitOpError() << "has no arena slots (run dsv4-plan-memory)";
  addBuffer(op.getResult(), cast<DenseI64ArrayAttr>(slots[0]).asArrayRef(),
            componentName(op) + "#all_reduce");
  auto type = cast<RankedTensorType>(op.getX().getType());
  int64_t bytesPerToken = type.getShape()[1] * 4;
  std::vector<LaunchArg> args = {{fb::ArgKind::Tokens, 0},
                                 {fb::ArgKind::StartPos, 0},
                                 {fb::ArgKind::Scratch, 0},
                                 {fb::ArgKind::Buffer, in->second},
                                 {fb::ArgKind::Buffer, bufferOf[op.getResult()]}};
  prog.launches.push_back({allReduceKernel(bytesPerToken), std::move(args)});
  ++launches;
  return success();
}

LogicalResult Serializer::program(func::FuncOp func) {
  auto bound = func->getAttrOfType<IntegerAttr>(kMaxTokensAttr);
  auto arena = func->getAttrOfType<IntegerAttr>(kArenaBytesAttr);
  if (!arena)
    return func.emitError() << "program @" << func.getName()
                            << " has no memory plan (run dsv4-plan-memory)";
  ProgramOut prog;
  prog.name = func.getName().str();
  prog.maxTokens = bound.getInt();
  prog.arena = arena.getInt();
  bufferOf.clear();
  Block &body = func.getBody().front();
  auto addBuffer = [&](Value v, ArrayRef<int64_t> slot, std::string name) {
    bufferOf[v] = prog.buffers.size();
    prog.buffers.emplace_back(std::move(name), slot[0], slot[1]);
  };
  for (BlockArgument arg : body.getArguments())
    if (auto slot = func.getArgAttrOfType<DenseI64ArrayAttr>(arg.getArgNumber(), kBufferAttr))
      addBuffer(arg, slot.asArrayRef(), "input_ids");
  if (!bufferOf.count(body.getArgument(0)))
    return func.emitError() << "input_ids has no buffer";

  for (Operation &op : body) {
    if (isa<ParamOp, func::ReturnOp>(op))
      continue;
    if (auto sum = dyn_cast<AllReduceOp>(op)) {
      if (failed(collective(sum, prog, addBuffer)))
        return failure();
      continue;
    }
    auto launch = dyn_cast<LaunchOp>(op);
    if (!launch)
      return op.emitOpError() << "is not a launch: a program must be fully "
                                 "outlined (run dsv4-outline-dispatches)";
    auto callee = launch.getKernel();
    auto kit = kernelBySymbol.find(callee.getLeafReference().getValue());
    if (callee.getRootReference().getValue() != TargetInfo::kContainer ||
        kit == kernelBySymbol.end())
      return launch.emitOpError() << "calls " << callee
                                  << ", which is no converted kernel (run "
                                     "convert-dsv4-to-kernels)";
    std::string component = componentName(launch);
    auto slots = launch->getAttrOfType<ArrayAttr>(kBuffersAttr);
    if (slots)
      for (auto [i, s] : llvm::enumerate(slots)) {
        auto slot = cast<DenseI64ArrayAttr>(s).asArrayRef();
        if (slot[0] >= 0)
          addBuffer(launch.getResult(i), slot,
                    component + "#" + std::to_string(i));
      }
    // Slots 0..2 (and a batched kernel's 3..4), then the operands', then
    // the results' (KernelABI.h).
    std::vector<LaunchArg> args = {{fb::ArgKind::Tokens, 0},
                                   {fb::ArgKind::StartPos, 0},
                                   {fb::ArgKind::Scratch, 0}};
    const auto &params = kernelList[kit->second].params;
    bool batched = params.size() > size_t(kSlotIdsSlot) &&
                   params[kPositionsSlot].kind == fb::ArgKind::Positions;
    if (batched != func->hasAttr(kBatchedAttr))
      return launch.emitOpError() << "calls " << callee << ", a "
                                  << (batched ? "batched" : "one-sequence")
                                  << " kernel, from program @" << func.getName();
    if (batched) {
      args.push_back({fb::ArgKind::Positions, 0});
      args.push_back({fb::ArgKind::SlotIds, 0});
    }
    for (Value v : launch.getArgs()) {
      Type t = v.getType();
      if (isa<RankedTensorType>(t)) {
        auto it = bufferOf.find(v);
        if (it == bufferOf.end())
          return launch.emitOpError() << "reads a tensor that has no arena slot";
        args.push_back({fb::ArgKind::Buffer, it->second});
      } else if (auto wt = dyn_cast<WeightType>(t)) {
        auto param = v.getDefiningOp<ParamOp>();
        if (!param)
          return launch.emitOpError() << "reads a weight that no dsv4.param names";
        if (wt.getRank() == 3) {
          args.push_back({fb::ArgKind::ExpertTable, expertTableOf(param)});
          continue;
        }
        uint32_t w = weightOf(param);
        args.push_back({fb::ArgKind::Weight, w});
        if (wt.isQuantized())
          args.push_back({fb::ArgKind::WeightScale, w});
      } else if (succeeded(stateGeometry(t))) {
        FailureOr<uint32_t> s = stateOf(func, v);
        if (failed(s))
          return failure();
        args.push_back({batched ? fb::ArgKind::StateTable : fb::ArgKind::State, *s});
      }
    }
    for (Value r : launch.getResults())
      if (isa<RankedTensorType>(r.getType())) {
        auto it = bufferOf.find(r);
        if (it == bufferOf.end())
          return launch.emitOpError() << "hands out a tensor without an arena slot";
        args.push_back({fb::ArgKind::Buffer, it->second});
      }
    // The head's kernel: the call's logit rows, last (KernelABI.h).
    if (!params.empty() && params.back().kind == fb::ArgKind::LogitRows)
      args.push_back({fb::ArgKind::LogitRows, 0});
    if (args.size() != kernelList[kit->second].params.size())
      return launch.emitOpError() << "passes " << args.size() << " arguments, "
                                  << callee << " takes "
                                  << kernelList[kit->second].params.size();
    if (kernelList[kit->second].steps) {
      // A copy: the steps add kernels to kernelList.
      KernelOut part = kernelList[kit->second];
      if (failed(tensorCoreSteps(launch, part, args, prog)))
        return failure();
      continue;
    }
    prog.launches.push_back({kit->second, std::move(args)});
    ++launches;
  }
  auto ret = cast<func::ReturnOp>(body.getTerminator());
  if (!bufferOf.count(ret.getOperand(0)))
    return func.emitError() << "the logits have no buffer";
  prog.inputIds = bufferOf[body.getArgument(0)];
  prog.logits = bufferOf[ret.getOperand(0)];
  for (Value v : ret.getOperands())
    if (!isa<RankedTensorType>(v.getType()) && failed(stateOf(func, v)))
      return failure();
  programs.push_back(std::move(prog));
  return success();
}

FailureOr<std::string> Serializer::run(ArtifactStats &stats) {
  auto info = module->getAttrOfType<DictionaryAttr>(kModelInfoAttr);
  auto name = module->getAttrOfType<StringAttr>(kModelAttr);
  auto context = module->getAttrOfType<IntegerAttr>(kMaxContextAttr);
  if (!info || !name || !context)
    return module.emitError() << "the module needs " << kModelAttr << ", "
                              << kModelInfoAttr << " and " << kMaxContextAttr
                              << " (set by the frontend and dsv4-specialize-shapes)";
  auto infoInt = [&](StringRef key) { return info.getAs<IntegerAttr>(key).getInt(); };
  maxContext = context.getInt();
  // compressa-compile --max-batch (absent: 1 sequence).
  if (auto batch = module->getAttrOfType<IntegerAttr>("compressa.max_batch"))
    maxBatch = batch.getInt();
  routedExperts = infoInt("n_routed_experts");

  if (failed(kernels()))
    return failure();
  for (auto func : module.getOps<func::FuncOp>())
    if (func->hasAttr(kMaxTokensAttr) &&
        (func.getName() == "prefill" || func.getName() == "decode" ||
         func.getName() == "decode_batch"))
      if (failed(program(func)))
        return failure();
  if (programs.empty())
    return module.emitError() << "no @prefill or @decode program to serialize";

  // Device code.
  Operation *container = SymbolTable::lookupSymbolIn(module, TargetInfo::kContainer);
  std::string triple, so;
  cuda::CudaBinary gpuCode;
  std::string chip;
  if (auto *cudaTarget = dynamic_cast<const cuda::CudaTarget *>(&target)) {
    cuda::CudaCodegenOptions copts;
    copts.chip = chip = cudaTarget->getChip();
    copts.features = cudaTarget->features();
    copts.toolkitPath = opts.cudaToolkit;
    copts.dumpDir = opts.dumpDir;
    // The tensor-core GEMMs the programs launch, generated apart.
    for (auto &[key, index] : tensorCoreGemms) {
      WgmmaGemmShape shape =
          tensorCoreGemmShape(std::get<0>(key), std::get<1>(key), std::get<2>(key));
      if (llvm::any_of(tensorCoreGemms, [&](auto &other) {
            return other.second < index && std::get<0>(other.first) == shape.n &&
                   std::get<1>(other.first) == shape.k &&
                   std::get<2>(other.first) == shape.groups;
          }))
        continue; // The same kernel for another program's max_tokens.
      std::string error;
      std::string ptx = wgmmaGemmPtx(shape, chip, error);
      if (ptx.empty())
        return module.emitError() << "the tensor-core GEMM " << shape.name() << ": "
                                  << error;
      copts.extraPtx.push_back(std::move(ptx));
    }
    for (const WgmmaExpertsShape &shape : expertsShapes) {
      std::string error;
      std::string ptx = wgmmaExpertsPtx(shape, chip, error);
      if (ptx.empty())
        return module.emitError() << "the grouped experts GEMM " << shape.name() << ": "
                                  << error;
      copts.extraPtx.push_back(std::move(ptx));
    }
    for (const WgmmaIndexerShape &shape : indexerShapes) {
      std::string error;
      std::string ptx = wgmmaIndexerPtx(shape, chip, error);
      if (ptx.empty())
        return module.emitError() << "the indexer's tensor-core scores " << shape.name()
                                  << ": " << error;
      copts.extraPtx.push_back(std::move(ptx));
    }
    for (const WgmmaAttentionShape &shape : attentionShapes) {
      std::string error;
      std::string ptx = wgmmaAttentionPtx(shape, chip, opts.cudaToolkit, error);
      if (ptx.empty())
        return module.emitError() << "the attention's tensor-core kernel " << shape.name()
                                  << ": " << error;
      copts.extraPtx.push_back(std::move(ptx));
    }
    for (const TopkSelectShape &shape : topkShapes) {
      std::string error;
      std::string ptx = topkSelectPtx(shape, chip, error);
      if (ptx.empty())
        return module.emitError() << "the indexer's top-k selection " << shape.name() << ": "
                                  << error;
      copts.extraPtx.push_back(std::move(ptx));
    }
    FailureOr<cuda::CudaBinary> bin = cuda::compileToCuda(module, copts);
    if (failed(bin))
      return failure();
    gpuCode = std::move(*bin);
  } else {
    cpu::CpuCodegenOptions copts;
    copts.cpu = opts.cpu;
    copts.dumpDir = opts.dumpDir;
    FailureOr<std::string> lib =
        cpu::compileToSharedObject(cast<ModuleOp>(container), copts, triple);
    if (failed(lib))
      return failure();
    so = std::move(*lib);
  }
  bool cuda = target.isCuda();

  flatbuffers::FlatBufferBuilder fbb(1 << 20);
  std::vector<flatbuffers::Offset<fb::Program>> progs;
  for (const ProgramOut &p : programs) {
    std::vector<flatbuffers::Offset<fb::Buffer>> bufs;
    for (auto &[bufName, offset, bytes] : p.buffers)
      bufs.push_back(fb::CreateBufferDirect(fbb, bufName.c_str(), offset, bytes));
    std::vector<flatbuffers::Offset<fb::Launch>> ls;
    for (auto &[k, args] : p.launches) {
      std::vector<flatbuffers::Offset<fb::Arg>> as;
      for (const LaunchArg &a : args)
        as.push_back(fb::CreateArg(fbb, a.kind, a.index));
      ls.push_back(fb::CreateLaunchDirect(fbb, k, &as));
    }
    std::vector<flatbuffers::Offset<fb::TensorMap>> maps;
    for (auto &[source, index, offset, rows, cols, boxRows] : p.maps)
      maps.push_back(fb::CreateTensorMap(fbb, source, index, offset, rows, cols,
                                         boxRows == 128 ? 0 : boxRows));
    progs.push_back(fb::CreateProgramDirect(fbb, p.name.c_str(), p.maxTokens,
                                            p.arena, &bufs, p.inputIds,
                                            p.logits, &ls,
                                            maps.empty() ? nullptr : &maps));
  }
  // Launch geometry: `grid` blocks of the kernel's threads (1 on the CPU)
  // sharing the dispatch's loops; several blocks meet at grid barriers.
  std::vector<flatbuffers::Offset<fb::Kernel>> ks;
  for (const KernelOut &k : kernelList) {
    std::vector<flatbuffers::Offset<fb::Param>> params;
    for (const AbiParam &p : k.params)
      params.push_back(fb::CreateParam(fbb, p.kind, p.bytesPerToken, p.bytes));
    ks.push_back(fb::CreateKernelDirect(fbb, k.name.c_str(), k.symbol.c_str(),
                                        k.scratchPerToken, k.scratch, k.grid,
                                        k.block, k.shared, &params,
                                        /*grid_sync=*/k.grid > 1 && k.gridSync,
                                        k.collective, k.programmatic));
  }
  std::vector<flatbuffers::Offset<fb::State>> ss;
  for (const StateOut &s : states)
    ss.push_back(fb::CreateStateDirect(
        fbb, s.name.c_str(), s.geometry.bytes(maxContext),
        s.geometry.compressor ? fb::StateInit::CompressorState : fb::StateInit::Zero,
        s.geometry.rowBytes, s.geometry.rows, s.geometry.ratio));
  std::vector<flatbuffers::Offset<fb::Weight>> ws;
  for (const WeightOut &w : weights) {
    std::vector<int64_t> shape(w.shape.begin(), w.shape.end());
    std::vector<int64_t> scaleShapeV(w.scaleShape.begin(), w.scaleShape.end());
    ws.push_back(fb::CreateWeightDirect(fbb, w.name.c_str(), w.dtype.c_str(),
                                        &shape, w.scale.c_str(), &scaleShapeV,
                                        /*optional=*/false, w.valuesBelow));
  }
  std::vector<flatbuffers::Offset<fb::ExpertTable>> ets;
  for (auto [i, table] : llvm::enumerate(expertTables))
    ets.push_back(fb::CreateExpertTableDirect(fbb, table.first.c_str(), table.second,
                                              expertFirst[i]));
  if (opts.ranks > 1)
    for (auto &[pattern, count] : expertTables)
      if (int64_t(count) * opts.ranks != routedExperts)
        return module.emitError()
               << "rank " << opts.rank << " of " << opts.ranks << ": expert table '"
               << pattern << "' holds " << count << " experts, expected n_routed_experts / ranks = "
               << routedExperts << " / " << opts.ranks << " (run dsv4-shard-experts)";
  // Rank 0 carries the other ranks' artifacts (artifact.fbs, RankArtifact).
  std::vector<flatbuffers::Offset<fb::RankArtifact>> peers;
  for (auto [i, bytes] : llvm::enumerate(opts.peers)) {
    std::vector<uint8_t> data(bytes.begin(), bytes.end());
    peers.push_back(fb::CreateRankArtifactDirect(fbb, uint32_t(i + 1), &data));
  }
  auto model = fb::CreateModelInfoDirect(
      fbb, name.str().c_str(), infoInt("vocab_size"), infoInt("hidden_size"),
      infoInt("bos_token_id"), infoInt("eos_token_id"), maxContext, routedExperts,
      maxBatch);
  flatbuffers::Offset<fb::CpuCode> cpuCode;
  flatbuffers::Offset<fb::CudaCode> cudaCode;
  if (cuda) {
    std::vector<uint8_t> cubin(gpuCode.cubin.begin(), gpuCode.cubin.end());
    cudaCode = fb::CreateCudaCodeDirect(fbb, chip.c_str(), gpuCode.ptx.c_str(), &cubin);
  } else {
    std::vector<uint8_t> soBytes(so.begin(), so.end());
    cpuCode = fb::CreateCpuCodeDirect(fbb, triple.c_str(), &soBytes);
  }
  std::string configJson;
  if (auto text = module->getAttrOfType<StringAttr>(kConfigJsonAttr))
    configJson = text.str();
  // dsv4-select-numerics records `fast` only: absent means exact.
  auto numericsAttr = module->getAttrOfType<StringAttr>(kNumericsAttr);
  std::string numerics = numericsAttr ? numericsAttr.str() : "exact";
  auto root = fb::CreateArtifactDirect(
      fbb, kArtifactVersion, model, configJson.c_str(),
      cuda ? fb::Target::Cuda : fb::Target::Cpu, &progs, &ks, &ss, &ws, &ets,
      cpuCode, cudaCode, uint32_t(opts.rank), uint32_t(opts.ranks),
      peers.empty() ? nullptr : &peers, numerics.c_str());
  fb::FinishArtifactBuffer(fbb, root);
  stats.kernels = kernelList.size();
  stats.launches = launches;
  stats.codeBytes = cuda ? gpuCode.cubin.size() : so.size();
  stats.ptx = gpuCode.ptx;
  // The file: the FlatBuffer, then its SHA-256 and the trailer tag.
  std::string file(reinterpret_cast<const char *>(fbb.GetBufferPointer()), fbb.GetSize());
  std::array<uint8_t, 32> digest =
      llvm::SHA256::hash(llvm::ArrayRef<uint8_t>(fbb.GetBufferPointer(), fbb.GetSize()));
  file.append(reinterpret_cast<const char *>(digest.data()), digest.size());
  file.append(kTrailerTag, 8);
  return file;
}

FailureOr<std::string> mlir::compressa::serializeArtifact(ModuleOp module,
                                                          const TargetInfo &target,
                                                          const ArtifactOptions &options,
                                                          ArtifactStats &stats) {
  Serializer serializer(module, target, options);
  return serializer.run(stats);
}
