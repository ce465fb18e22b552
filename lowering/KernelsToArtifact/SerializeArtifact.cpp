//===- SerializeArtifact.cpp - dsv4 programs -> .cpa artifact -----------===//
// SPDX-License-Identifier: Apache-2.0

#include "lowering/KernelsToArtifact/SerializeArtifact.h"
#include "dialects/DSV4/IR/DSV4Ops.h"
#include "frontend/Manifest/WeightManifest.h"
#include "lowering/DSV4ToKernels/KernelBuilder.h"
#include "lowering/DSV4ToKernels/OpEmitters.h"
#include "passes/Model/Passes.h"
#include "runtime/format/artifact_generated.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/SHA256.h"

using namespace mlir;
using namespace mlir::compressa;
using namespace mlir::dsv4;
namespace fb = ::compressa::fb;

namespace {

/// The artifact version written; the runtime reads exactly this one
/// (kArtifactVersion in runtime/format/artifact_reader.h).
constexpr uint32_t kArtifactVersion = 2;
/// The trailer after the FlatBuffer: its SHA-256, then this tag
/// (runtime/format/artifact.fbs).
constexpr char kTrailerTag[9] = "CPASHA2";

/// One launch argument, before serialization.
struct LaunchArg {
  fb::ArgKind kind;
  uint32_t index;
};

/// What a kernel's code expects in one argument slot (schema: Param).
struct ParamOut {
  fb::ArgKind kind;
  uint64_t bytesPerToken = 0;
  uint64_t bytes = 0;
};

/// Argument slots 0..2 of every kernel hold these.
enum : int64_t { kTokensSlot = 0, kStartPosSlot = 1, kScratchSlot = 2 };

/// A readable name for the component an op computes.
std::string componentName(Operation *op) {
  Location loc = op->getLoc();
  if (auto fused = dyn_cast<FusedLoc>(loc))
    for (Location l : fused.getLocations())
      if (auto name = dyn_cast<NameLoc>(l))
        return name.getName().str();
  if (auto name = dyn_cast<NameLoc>(loc))
    return name.getName().str();
  return op->getName().getStringRef().str();
}

/// Makes the kernel dialects and their LLVM IR translations available.
MLIRContext *loadDialects(MLIRContext *ctx) {
  DialectRegistry registry;
  cpu::registerCpuCodegenDialects(registry);
  registry.insert<gpu::GPUDialect, NVVM::NVVMDialect>();
  ctx->appendDialectRegistry(registry);
  ctx->loadAllAvailableDialects();
  return ctx;
}

class Serializer {
public:
  Serializer(ModuleOp module, const ModelConfig &cfg, const ArtifactOptions &opts)
      : module(module), cfg(cfg), opts(opts), ctx(loadDialects(module.getContext())),
        kernels(ModuleOp::create(UnknownLoc::get(ctx))) {
    if (opts.target == ArtifactOptions::Target::Cuda) {
      OpBuilder b(ctx);
      b.setInsertionPointToEnd(kernels->getBody());
      (*kernels)->setAttr(gpu::GPUDialect::getContainerModuleAttrName(), b.getUnitAttr());
      gpuKernels = gpu::GPUModuleOp::create(b, kernels->getLoc(), "compressa_kernels");
    }
    // The artifact lists weights without their `.scale` companions (each
    // weight names its scale); launch arguments index that list.
    for (TensorEntry &e : buildWeightManifest(cfg)) {
      manifestIndex[e.name] = manifest.size();
      if (!e.isScale)
        weightIndex[e.name] = weightIndex.size();
      manifest.push_back(std::move(e));
    }
  }

  FailureOr<std::string> run(ArtifactStats &stats);

private:
  struct ProgramOut {
    std::string name;
    int64_t maxTokens, arena;
    std::vector<std::tuple<std::string, int64_t, int64_t>> buffers;
    uint32_t inputIds = 0, logits = 0;
    std::vector<std::pair<uint32_t, std::vector<LaunchArg>>> launches;
  };
  struct StateOut {
    std::string name;
    int64_t bytes;
    fb::StateInit init;
    /// Geometry: rowBytes * (rows + maxContext / contextRatio) bytes.
    int64_t rowBytes, rows;
    uint32_t contextRatio;
  };

  LogicalResult program(func::FuncOp func);
  /// Emits the kernel of one dispatch; returns its index (deduplicated).
  FailureOr<uint32_t> kernel(ArrayRef<Operation *> members,
                             std::vector<LaunchArg> &args);
  /// The root state argument a state value aliases.
  BlockArgument stateRoot(Value v);
  FailureOr<uint32_t> stateIndex(func::FuncOp func, BlockArgument arg);
  FailureOr<uint32_t> weightOf(ParamOp param);
  FailureOr<uint32_t> expertTableOf(ParamOp param);

  ModuleOp module;
  const ModelConfig &cfg;
  const ArtifactOptions &opts;
  MLIRContext *ctx;
  OwningOpRef<ModuleOp> kernels;
  /// CUDA: the gpu.module inside `kernels` that holds the kernels.
  gpu::GPUModuleOp gpuKernels;
  std::vector<TensorEntry> manifest;
  llvm::StringMap<uint32_t> manifestIndex; ///< into `manifest`
  llvm::StringMap<uint32_t> weightIndex;   ///< into the artifact's weights
  std::vector<StateOut> states;
  llvm::StringMap<uint32_t> stateByName;
  std::vector<std::pair<std::string, uint32_t>> expertTables;
  llvm::StringMap<uint32_t> expertTableByName;
  struct KernelOut {
    std::string name, symbol;
    int64_t scratchPerToken, scratch;
    int64_t block;
    std::vector<ParamOut> params;
  };
  std::vector<KernelOut> kernelList;
  llvm::StringMap<uint32_t> kernelByCode;
  std::vector<ProgramOut> programs;
  int64_t launches = 0;
  int64_t totalDispatches = 0;
  /// Buffer index of planned values in the current program.
  llvm::DenseMap<Value, uint32_t> bufferOf;
};

} // namespace

BlockArgument Serializer::stateRoot(Value v) {
  while (true) {
    if (auto arg = dyn_cast<BlockArgument>(v))
      return arg;
    Operation *def = v.getDefiningOp();
    if (auto up = dyn_cast<WindowUpdateOp>(def))
      v = up.getRing();
    else if (auto cmp = dyn_cast<CompressOp>(def))
      v = cast<OpResult>(v).getResultNumber() == 0 ? cmp.getState() : cmp.getEntries();
    else
      return nullptr;
  }
}

FailureOr<uint32_t> Serializer::stateIndex(func::FuncOp func, BlockArgument arg) {
  auto name = func.getArgAttrOfType<StringAttr>(arg.getArgNumber(), "dsv4.state");
  if (!name)
    return func.emitError() << "state argument #" << arg.getArgNumber()
                            << " has no dsv4.state name";
  auto it = stateByName.find(name.getValue());
  if (it != stateByName.end())
    return it->second;
  Type t = arg.getType();
  // The geometry the runtime recomputes the size from: fixed rows (a
  // window, compressor slots) or one row per `ratio` positions.
  int64_t rowBytes = 0, rows = 0;
  uint32_t ratio = 0;
  fb::StateInit init = fb::StateInit::Zero;
  auto eltBytes = [](Type e) { return int64_t(e.getIntOrFloatBitWidth() / 8); };
  if (auto w = dyn_cast<WindowKVType>(t)) {
    rowBytes = w.getDim() * eltBytes(w.getElementType());
    rows = w.getWindow();
  } else if (auto c = dyn_cast<CompressorStateType>(t)) {
    // kv and score halves of slots x width f32 each.
    rowBytes = 2 * c.getWidth() * 4;
    rows = c.getSlots();
    init = fb::StateInit::CompressorState;
  } else if (auto e = dyn_cast<CompressedKVType>(t)) {
    rowBytes = e.getDim() * eltBytes(e.getElementType());
    ratio = e.getRatio();
  } else if (auto k = dyn_cast<IndexerKeysType>(t)) {
    rowBytes = k.getDim() * eltBytes(k.getElementType());
    ratio = k.getRatio();
  } else {
    return func.emitError() << "unsupported decode-state type " << t;
  }
  int64_t bytes = rowBytes * (rows + (ratio ? opts.maxContext / ratio : 0));
  // Entries of a ratio larger than the context never exist; keep 1 byte so
  // the allocation is valid.
  bytes = std::max<int64_t>(bytes, 1);
  uint32_t index = states.size();
  states.push_back({name.getValue().str(), bytes, init, rowBytes, rows, ratio});
  stateByName[name.getValue()] = index;
  return index;
}

FailureOr<uint32_t> Serializer::weightOf(ParamOp param) {
  auto it = weightIndex.find(param.getName());
  if (it == weightIndex.end())
    return param.emitOpError() << "names a tensor that is not in the weight manifest";
  return it->second;
}

FailureOr<uint32_t> Serializer::expertTableOf(ParamOp param) {
  StringRef pattern = param.getName();
  auto it = expertTableByName.find(pattern);
  if (it != expertTableByName.end())
    return it->second;
  uint32_t index = expertTables.size();
  expertTables.push_back({pattern.str(), uint32_t(param.getType().getShape()[0])});
  expertTableByName[pattern] = index;
  return index;
}

FailureOr<uint32_t> Serializer::kernel(ArrayRef<Operation *> members,
                                       std::vector<LaunchArg> &args) {
  using namespace mlir::compressa::cpu;
  Location loc = members.front()->getLoc();
  func::FuncOp program = members.front()->getParentOfType<func::FuncOp>();
  OpBuilder b(ctx);
  Type ptr = LLVM::LLVMPointerType::get(ctx);
  std::string symbol = "compressa_kernel_" + std::to_string(kernelList.size());
  bool cuda = opts.target == ArtifactOptions::Target::Cuda;
  // CPU: func.func @k(argv) in the kernel module. CUDA: a kernel gpu.func
  // in gpu.module @compressa_kernels.
  Operation *fn;
  Block *entry;
  if (cuda) {
    b.setInsertionPointToEnd(gpuKernels.getBody());
    auto gfn = gpu::GPUFuncOp::create(b, loc, symbol, b.getFunctionType({ptr}, {}));
    gfn->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
    fn = gfn;
    entry = &gfn.getBody().front();
  } else {
    b.setInsertionPointToEnd(kernels->getBody());
    auto ffn = func::FuncOp::create(b, loc, symbol, b.getFunctionType({ptr}, {}));
    fn = ffn;
    entry = ffn.addEntryBlock();
  }
  b.setInsertionPointToStart(entry);
  KernelBuilder kb(b, loc, *kernels, cuda ? KernelTarget::Cuda : KernelTarget::Cpu);
  Value argv = entry->getArgument(0);

  auto slotPtr = [&](int64_t slot) { return kb.loadPtr(argv, kb.c(slot)); };
  EmitContext ec;
  ec.maxContext = opts.maxContext;
  // Scalars: in the slot itself on the CPU; behind a device pointer on CUDA
  // (so argument vectors and captured graphs stay valid across calls).
  auto scalar = [&](int64_t slot) -> Value {
    if (cuda)
      return kb.load(kb.i64(), slotPtr(slot), kb.c(0));
    return LLVM::PtrToIntOp::create(b, loc, kb.i64(), slotPtr(slot));
  };
  ec.tokens = scalar(kTokensSlot);
  ec.startPos = scalar(kStartPosSlot);
  Value scratchBase = slotPtr(kScratchSlot);
  int64_t scratchPerToken = 0, scratchFixed = 0;
  ec.scratch = [&](int64_t perToken, int64_t bytes) -> Value {
    // Offsets: all per-token parts first (scaled by S at run time), then the
    // fixed parts; every part 64-byte rounded.
    perToken = llvm::alignTo(perToken, 64);
    bytes = llvm::alignTo(bytes, 64);
    Value off = kb.add(kb.mul(kb.c(scratchPerToken), ec.tokens), kb.c(scratchFixed));
    // Fixed parts sit after the largest possible per-token area: the runtime
    // gives scratchPerToken * maxTokens + fixed bytes.
    scratchPerToken += perToken;
    scratchFixed += bytes;
    return kb.offset(b.getI8Type(), scratchBase, off);
  };

  llvm::SmallPtrSet<Operation *, 16> inGroup(members.begin(), members.end());
  // Slots 0..2 of every launch: tokens, start position, scratch.
  args = {{fb::ArgKind::Tokens, 0}, {fb::ArgKind::StartPos, 0},
          {fb::ArgKind::Scratch, 0}};
  // The kernel's signature, slot by slot: what the code indexes in each
  // argument (the runtime checks every launch against it).
  std::vector<ParamOut> params = {{fb::ArgKind::Tokens}, {fb::ArgKind::StartPos},
                                  {fb::ArgKind::Scratch}};
  auto addArg = [&](LaunchArg a, ParamOut p) -> Value {
    args.push_back(a);
    params.push_back(p);
    return slotPtr(args.size() - 1);
  };
  auto eltOf = [](Value v) { return cast<RankedTensorType>(v.getType()).getElementType(); };
  // A buffer of tensor `v`: [max_tokens, ...] is sized per token, anything
  // else as a whole.
  int64_t maxTokens = 0;
  if (auto bound = program->getAttrOfType<IntegerAttr>(kMaxTokensAttr))
    maxTokens = bound.getInt();
  auto bufferParam = [&](Value v) -> ParamOut {
    auto type = cast<RankedTensorType>(v.getType());
    int64_t elements = type.getNumElements();
    uint64_t bytes = uint64_t(elements) * type.getElementTypeBitWidth() / 8;
    if (type.getRank() >= 1 && maxTokens > 0 && type.getDimSize(0) == maxTokens)
      return {fb::ArgKind::Buffer, bytes / uint64_t(maxTokens), 0};
    return {fb::ArgKind::Buffer, 0, bytes};
  };
  auto weightParam = [&](StringRef name, bool scale) -> ParamOut {
    const TensorEntry &entry = manifest[manifestIndex.lookup(name)];
    if (!scale)
      return {fb::ArgKind::Weight, 0, tensorBytes(entry)};
    auto it = manifestIndex.find(entry.scaleName);
    uint64_t bytes = it == manifestIndex.end() ? 0 : tensorBytes(manifest[it->second]);
    return {fb::ArgKind::WeightScale, 0, bytes};
  };

  // Step 1. Bind the operands that come from outside the dispatch.
  for (Operation *op : members) {
    for (Value operand : op->getOperands()) {
      if (ec.tensors.count(operand) || ec.weights.count(operand) ||
          ec.experts.count(operand) || ec.states.count(operand))
        continue;
      Operation *def = operand.getDefiningOp();
      if (def && inGroup.contains(def))
        continue;
      if (auto param = dyn_cast_or_null<ParamOp>(def)) {
        WeightType wt = param.getType();
        ArrayRef<int64_t> shape = wt.getShape();
        if (wt.getRank() == 3) {
          FailureOr<uint32_t> t = expertTableOf(param);
          if (failed(t))
            return failure();
          Value table = addArg({fb::ArgKind::ExpertTable, *t},
                               {fb::ArgKind::ExpertTable, 0, uint64_t(shape[0])});
          ec.experts[operand] = ExpertView{table, shape[0], wt.getElementType(),
                                           shape[1], shape[2]};
          continue;
        }
        FailureOr<uint32_t> w = weightOf(param);
        if (failed(w))
          return failure();
        WeightView view;
        view.data = addArg({fb::ArgKind::Weight, *w}, weightParam(param.getName(), false));
        if (wt.isQuantized())
          view.scale = addArg({fb::ArgKind::WeightScale, *w}, weightParam(param.getName(), true));
        view.elt = wt.getElementType();
        view.rows = wt.getRank() == 2 ? shape[0] : 1;
        view.cols = shape.back();
        ec.weights[operand] = view;
        continue;
      }
      if (isa<IndexType>(operand.getType()))
        continue; // start_pos: slot 1.
      if (isa<RankedTensorType>(operand.getType())) {
        auto it = bufferOf.find(operand);
        if (it == bufferOf.end())
          return op->emitOpError() << "reads a value that has no buffer "
                                      "(run dsv4-plan-memory first)";
        ec.tensors[operand] =
            View{addArg({fb::ArgKind::Buffer, it->second}, bufferParam(operand)), eltOf(operand)};
        continue;
      }
      BlockArgument root = stateRoot(operand);
      if (!root)
        return op->emitOpError() << "reads decode state that is not a program argument";
      FailureOr<uint32_t> s = stateIndex(program, root);
      if (failed(s))
        return failure();
      ec.states[operand] = addArg({fb::ArgKind::State, *s},
                                  {fb::ArgKind::State, 0, uint64_t(states[*s].bytes)});
    }
    // Step 2. Results: program buffers, aliased state, or scratch.
    for (Value r : op->getResults()) {
      if (isa<RankedTensorType>(r.getType())) {
        auto it = bufferOf.find(r);
        if (it != bufferOf.end()) {
          ec.tensors[r] = View{addArg({fb::ArgKind::Buffer, it->second}, bufferParam(r)), eltOf(r)};
        } else {
          auto shape = cast<RankedTensorType>(r.getType()).getShape();
          int64_t per = 1;
          for (int64_t d : shape.drop_front())
            per *= d;
          int64_t bytes = per * eltOf(r).getIntOrFloatBitWidth() / 8;
          ec.tensors[r] = View{ec.scratch(bytes, 0), eltOf(r)};
        }
        continue;
      }
      // New state aliases the state it updates.
      Value base;
      if (auto up = dyn_cast<WindowUpdateOp>(op))
        base = up.getRing();
      else if (auto cmp = dyn_cast<CompressOp>(op))
        base = cast<OpResult>(r).getResultNumber() == 0 ? cmp.getState() : cmp.getEntries();
      if (!base || !ec.states.count(base))
        return op->emitOpError() << "produces a value the CPU target cannot place";
      ec.states[r] = ec.states[base];
    }
    // Step 3. The op's loop nest.
    if (failed(emitOp(kb, op, ec)))
      return failure();
    if (kb.storedOutsideRegion())
      return op->emitOpError()
             << "internal error: its kernel code stores outside a parallel or "
                "single region (a race on CUDA)";
  }
  if (cuda)
    gpu::ReturnOp::create(b, loc);
  else
    func::ReturnOp::create(b, loc);

  // Deduplicate: identical code (up to the symbol name) taking the same
  // argument kinds is one kernel.
  std::string code;
  {
    llvm::raw_string_ostream os(code);
    auto nameAttr = SymbolTable::getSymbolAttrName();
    fn->setAttr(nameAttr, b.getStringAttr("k"));
    fn->print(os, OpPrintingFlags().skipRegions(false));
    fn->setAttr(nameAttr, b.getStringAttr(symbol));
    for (const ParamOut &p : params)
      os << " " << static_cast<int>(p.kind);
  }
  auto it = kernelByCode.find(code);
  if (it != kernelByCode.end()) {
    fn->erase();
    // The same code serves launches of another program, whose max_tokens
    // may differ: keep what every use satisfies.
    std::vector<ParamOut> &known = kernelList[it->second].params;
    for (size_t i = 0; i < known.size(); ++i) {
      known[i].bytesPerToken = std::min(known[i].bytesPerToken, params[i].bytesPerToken);
      known[i].bytes = std::min(known[i].bytes, params[i].bytes);
    }
    return it->second;
  }
  uint32_t index = kernelList.size();
  kernelList.push_back({componentName(members.front()), symbol, scratchPerToken,
                        scratchFixed, kb.threads(), std::move(params)});
  kernelByCode[code] = index;
  return index;
}

LogicalResult Serializer::program(func::FuncOp func) {
  auto bound = func->getAttrOfType<IntegerAttr>(kMaxTokensAttr);
  auto arena = func->getAttrOfType<IntegerAttr>(kArenaBytesAttr);
  if (!bound || !arena)
    return func.emitError() << "program @" << func.getName()
                            << " has no memory plan (run dsv4-specialize-shapes "
                               "and dsv4-plan-memory)";
  ProgramOut prog;
  prog.name = func.getName().str();
  prog.maxTokens = bound.getInt();
  prog.arena = arena.getInt();
  bufferOf.clear();
  auto addBuffer = [&](Value v, ArrayRef<int64_t> slot, std::string name) {
    bufferOf[v] = prog.buffers.size();
    prog.buffers.emplace_back(std::move(name), slot[0], slot[1]);
  };
  Block &body = func.getBody().front();
  for (BlockArgument arg : body.getArguments())
    if (auto slot = func.getArgAttrOfType<DenseI64ArrayAttr>(arg.getArgNumber(), kBufferAttr))
      addBuffer(arg, slot.asArrayRef(), "input_ids");
  for (Operation &op : body)
    if (auto slots = op.getAttrOfType<ArrayAttr>(kBuffersAttr))
      for (auto [i, s] : llvm::enumerate(slots)) {
        auto slot = cast<DenseI64ArrayAttr>(s).asArrayRef();
        if (slot[0] >= 0)
          addBuffer(op.getResult(i), slot, componentName(&op) + "#" + std::to_string(i));
      }
  if (!bufferOf.count(body.getArgument(0)))
    return func.emitError() << "input_ids has no buffer";
  prog.inputIds = bufferOf[body.getArgument(0)];
  auto ret = cast<func::ReturnOp>(body.getTerminator());
  if (!bufferOf.count(ret.getOperand(0)))
    return func.emitError() << "the logits have no buffer";
  prog.logits = bufferOf[ret.getOperand(0)];
  // Results that are state must be the state arguments, updated in place.
  for (Value v : ret.getOperands())
    if (!isa<RankedTensorType>(v.getType()) && !stateRoot(v))
      return func.emitError() << "returns decode state that is not an update "
                                 "of its argument";

  // Dispatches in id order: ids were assigned in program order.
  std::map<int64_t, SmallVector<Operation *>> groups;
  for (Operation &op : body)
    if (auto id = op.getAttrOfType<IntegerAttr>(kDispatchAttr))
      groups[id.getInt()].push_back(&op);
  for (auto &[id, members] : groups) {
    std::vector<LaunchArg> args;
    if (opts.progress)
      opts.progress(launches, totalDispatches);
    FailureOr<uint32_t> k = kernel(members, args);
    if (failed(k))
      return failure();
    prog.launches.push_back({*k, std::move(args)});
    ++launches;
  }
  programs.push_back(std::move(prog));
  return success();
}

FailureOr<std::string> Serializer::run(ArtifactStats &stats) {
  // The dispatches of all programs, for progress reports.
  for (auto func : module.getOps<func::FuncOp>())
    if (func.getName() == "prefill" || func.getName() == "decode") {
      llvm::DenseSet<int64_t> ids;
      func.walk([&](Operation *op) {
        if (auto id = op->getAttrOfType<IntegerAttr>(kDispatchAttr))
          ids.insert(id.getInt());
      });
      totalDispatches += ids.size();
    }
  for (auto func : module.getOps<func::FuncOp>())
    if (func.getName() == "prefill" || func.getName() == "decode")
      if (failed(program(func)))
        return failure();
  if (programs.empty())
    return module.emitError() << "no @prefill or @decode program to serialize";

  // Device code.
  if (opts.progress)
    opts.progress(totalDispatches, totalDispatches);
  bool cuda = opts.target == ArtifactOptions::Target::Cuda;
  std::string triple, so;
  cuda::CudaBinary gpuCode;
  if (cuda) {
    FailureOr<cuda::CudaBinary> bin = cuda::compileToCuda(*kernels, opts.cuda);
    if (failed(bin))
      return failure();
    gpuCode = std::move(*bin);
  } else {
    FailureOr<std::string> lib = cpu::compileToSharedObject(*kernels, opts.cpu, triple);
    if (failed(lib))
      return failure();
    so = std::move(*lib);
  }

  flatbuffers::FlatBufferBuilder fbb(1 << 20);
  std::vector<flatbuffers::Offset<fb::Program>> progs;
  for (const ProgramOut &p : programs) {
    std::vector<flatbuffers::Offset<fb::Buffer>> bufs;
    for (auto &[name, offset, bytes] : p.buffers)
      bufs.push_back(fb::CreateBufferDirect(fbb, name.c_str(), offset, bytes));
    std::vector<flatbuffers::Offset<fb::Launch>> ls;
    for (auto &[k, args] : p.launches) {
      std::vector<flatbuffers::Offset<fb::Arg>> as;
      for (const LaunchArg &a : args)
        as.push_back(fb::CreateArg(fbb, a.kind, a.index));
      ls.push_back(fb::CreateLaunchDirect(fbb, k, &as));
    }
    progs.push_back(fb::CreateProgramDirect(fbb, p.name.c_str(), p.maxTokens,
                                            p.arena, &bufs, p.inputIds,
                                            p.logits, &ls));
  }
  std::vector<flatbuffers::Offset<fb::Kernel>> ks;
  // Launch geometry: one block of KernelBuilder::threads() threads (1 on
  // the CPU) sharing the dispatch's loops; a tuned kernel per dispatch
  // replaces this later without changing the rest (the runtime reads the
  // geometry from here).
  for (const KernelOut &k : kernelList) {
    std::vector<flatbuffers::Offset<fb::Param>> params;
    for (const ParamOut &p : k.params)
      params.push_back(fb::CreateParam(fbb, p.kind, p.bytesPerToken, p.bytes));
    ks.push_back(fb::CreateKernelDirect(fbb, k.name.c_str(), k.symbol.c_str(),
                                        k.scratchPerToken, k.scratch,
                                        /*grid=*/1, k.block,
                                        /*shared_bytes=*/0, &params));
  }
  std::vector<flatbuffers::Offset<fb::State>> ss;
  for (const StateOut &s : states)
    ss.push_back(fb::CreateStateDirect(fbb, s.name.c_str(), s.bytes, s.init, s.rowBytes,
                                       s.rows, s.contextRatio));
  std::vector<flatbuffers::Offset<fb::Weight>> ws;
  for (const TensorEntry &e : manifest) {
    if (e.isScale)
      continue; // described by its weight's `scale`
    std::vector<int64_t> scaleShape;
    if (!e.scaleName.empty()) {
      auto it = manifestIndex.find(e.scaleName);
      if (it != manifestIndex.end())
        scaleShape = manifest[it->second].shape;
    }
    // tid2eid picks routed experts: the runtime checks every value is in
    // [0, n_routed_experts) when it binds the checkpoint.
    uint64_t valuesBelow = 0;
    if (StringRef(e.name).ends_with(".gate.tid2eid"))
      valuesBelow = cfg.numRoutedExperts;
    ws.push_back(fb::CreateWeightDirect(fbb, e.name.c_str(), e.dtype.c_str(),
                                        &e.shape, e.scaleName.c_str(),
                                        &scaleShape, e.optional, valuesBelow));
  }
  std::vector<flatbuffers::Offset<fb::ExpertTable>> ets;
  for (auto &[pattern, count] : expertTables)
    ets.push_back(fb::CreateExpertTableDirect(fbb, pattern.c_str(), count));
  auto model = fb::CreateModelInfoDirect(fbb, cfg.name.c_str(), cfg.vocabSize,
                                         cfg.hiddenSize, cfg.bosTokenId,
                                         cfg.eosTokenId, opts.maxContext,
                                         cfg.numRoutedExperts);
  flatbuffers::Offset<fb::CpuCode> cpuCode;
  flatbuffers::Offset<fb::CudaCode> cudaCode;
  if (cuda) {
    std::vector<uint8_t> cubin(gpuCode.cubin.begin(), gpuCode.cubin.end());
    cudaCode = fb::CreateCudaCodeDirect(fbb, opts.cuda.chip.c_str(),
                                        gpuCode.ptx.c_str(), &cubin);
  } else {
    std::vector<uint8_t> soBytes(so.begin(), so.end());
    cpuCode = fb::CreateCpuCodeDirect(fbb, triple.c_str(), &soBytes);
  }
  auto root = fb::CreateArtifactDirect(
      fbb, kArtifactVersion, model, opts.configJson.c_str(),
      cuda ? fb::Target::Cuda : fb::Target::Cpu, &progs, &ks, &ss, &ws, &ets,
      cpuCode, cudaCode);
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

FailureOr<std::string>
mlir::compressa::serializeArtifact(ModuleOp module, const ModelConfig &config,
                                   const ArtifactOptions &options,
                                   ArtifactStats &stats) {
  Serializer serializer(module, config, options);
  return serializer.run(stats);
}
