//===- ProgramBuilder.cpp - DeepSeek-V4 config -> dsv4 programs --------===//
// SPDX-License-Identifier: Apache-2.0
//
// Layer by layer, the forward pass of spec §4 as dsv4 ops:
//
//   ids -> embed -> hc.expand -> [ block_0 ... block_{L-1} ] -> hc.head
//       -> rms_norm -> lm_head -> logits
//   block = hc.pre -> rms_norm -> attention -> hc.post
//         -> hc.pre -> rms_norm -> MoE (gate, experts, shared) -> hc.post
//
// Each op carries a NameLoc of the checkpoint component it computes
// ("layers.3.attn.compressor"), fused with the config file's location.
//
//===----------------------------------------------------------------------===//

#include "frontend/Builder/ProgramBuilder.h"
#include "dialects/DSV4/IR/DSV4Ops.h"
#include "frontend/Manifest/WeightManifest.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/StringMap.h"

#include <cmath>

using namespace mlir;
using namespace mlir::compressa;
using namespace mlir::dsv4;

namespace {

/// The decode state of one layer, as SSA values.
struct LayerState {
  Value ring;                  ///< !dsv4.window_kv
  Value compressor, entries;   ///< CSA/HCA main compressor
  Value indexerState, indexerKeys; ///< CSA indexer
};

class ProgramBuilder {
public:
  ProgramBuilder(MLIRContext &ctx, const ModelConfig &cfg, Type act)
      : ctx(ctx), cfg(cfg), b(&ctx), act(act),
        fileLoc(FileLineColLoc::get(&ctx, cfg.sourcePath, 1, 1)) {
    for (const TensorEntry &e : buildWeightManifest(cfg))
      manifest[e.name] = e;
  }

  /// Builds @prefill (tokens = kDynamic) or @decode (tokens = 1).
  LogicalResult buildMain(ModuleOp module, StringRef name, int64_t tokens);
  /// Builds @mtp for the first MTP layer.
  LogicalResult buildMtp(ModuleOp module);

private:
  Location loc(StringRef component) {
    return FusedLoc::get(&ctx, {NameLoc::get(b.getStringAttr(component)), fileLoc});
  }
  RankedTensorType tensor(ArrayRef<int64_t> shape, Type elt = {}) {
    return RankedTensorType::get(shape, elt ? elt : act);
  }

  /// The weight type of a manifest entry (FP4 entries are logical shapes).
  FailureOr<WeightType> weightType(StringRef name, int64_t stack = 0);
  /// `dsv4.param name`, or a stacked experts param when `stack` > 0.
  Value param(StringRef name, int64_t stack = 0);

  /// The state types of a layer.
  void stateTypes(const LayerSpec &layer, SmallVectorImpl<Type> &types);
  /// Binds block arguments to a layer's state.
  LayerState bindState(const LayerSpec &layer, Block::BlockArgListType args,
                       unsigned &next);
  void appendState(const LayerState &state, SmallVectorImpl<Value> &out);

  /// One decoder block (spec §4.2). Returns the new streams.
  Value block(StringRef prefix, const LayerSpec &layer, Value streams,
              Value tokens, Value pos, LayerState &state, int64_t s);
  Value attention(StringRef prefix, const LayerSpec &layer, Value x, Value pos,
                  LayerState &state, int64_t s);
  /// One compressor (`prefix` = "layers.i.attn.compressor" or the indexer's).
  CompressOp compress(const std::string &prefix, Value x, Value state,
                      Value entries, Value pos, RopeAttr rope);
  Value moe(StringRef prefix, const LayerSpec &layer, Value x, Value tokens,
            int64_t s);
  /// hc.head + final norm + lm_head.
  Value head(StringRef hcPrefix, StringRef normName, Value streams, int64_t s);

  RopeAttr rope(const LayerSpec &layer) {
    const RopeParams &p =
        layer.attention == AttentionKind::Sliding ? cfg.mainRope : cfg.compressRope;
    double factor = p.yarn ? p.factor : 1.0;
    return RopeAttr::get(&ctx, cfg.ropeHeadDim, p.theta, factor,
                         p.yarn ? p.originalMaxPositions : 0, p.betaFast,
                         p.betaSlow);
  }
  FloatAttr f64(double v) { return b.getF64FloatAttr(v); }

  MLIRContext &ctx;
  const ModelConfig &cfg;
  OpBuilder b;
  Type act;
  Location fileLoc;
  llvm::StringMap<TensorEntry> manifest;
  bool hadError = false;
};

} // namespace

//===----------------------------------------------------------------------===//
// Weights
//===----------------------------------------------------------------------===//

FailureOr<WeightType> ProgramBuilder::weightType(StringRef name, int64_t stack) {
  auto it = manifest.find(name);
  if (it == manifest.end()) {
    emitError(fileLoc) << "internal: tensor '" << name
                       << "' is not in the weight manifest";
    return failure();
  }
  const TensorEntry &e = it->second;
  SmallVector<int64_t> shape;
  if (stack > 0)
    shape.push_back(stack);
  llvm::append_range(shape, e.logicalShape);
  Type elt;
  BlockScaleAttr scale;
  Type e8m0 = Float8E8M0FNUType::get(&ctx);
  if (e.dtype == "F32")
    elt = b.getF32Type();
  else if (e.dtype == "BF16")
    elt = b.getBF16Type();
  else if (e.dtype == "I64")
    elt = b.getI64Type();
  else if (e.dtype == "F8_E4M3") {
    elt = Float8E4M3FNType::get(&ctx);
    scale = BlockScaleAttr::get(&ctx, e8m0, 128, 128);
  } else if (e.dtype == "I8" && !e.scaleName.empty()) {
    elt = Float4E2M1FNType::get(&ctx);
    scale = BlockScaleAttr::get(&ctx, e8m0, 1, 32);
  } else {
    emitError(fileLoc) << "internal: tensor '" << name << "' has dtype "
                       << e.dtype << " that no dsv4 weight format holds";
    return failure();
  }
  return WeightType::getChecked([&] { return emitError(loc(name)); }, &ctx,
                                RankedTensorType::get(shape, elt), scale);
}

Value ProgramBuilder::param(StringRef name, int64_t stack) {
  std::string manifestName = name.str();
  std::string paramName = name.str();
  if (stack > 0) {
    // "layers.3.ffn.experts.*.w1.weight": type from expert 0's entry.
    size_t star = paramName.find(".*.");
    manifestName = paramName.substr(0, star) + ".0." + paramName.substr(star + 3);
  }
  FailureOr<WeightType> type = weightType(manifestName, stack);
  if (failed(type)) {
    hadError = true;
    // Keep building with a well-formed placeholder type; the failure is
    // reported and the module is discarded.
    type = WeightType::get(&ctx, RankedTensorType::get({1}, b.getF32Type()), {});
  }
  return ParamOp::create(b, loc(paramName), *type, b.getStringAttr(paramName));
}

//===----------------------------------------------------------------------===//
// Decode state
//===----------------------------------------------------------------------===//

void ProgramBuilder::stateTypes(const LayerSpec &layer,
                                SmallVectorImpl<Type> &types) {
  int64_t d = cfg.headDim, m = layer.compressRatio;
  types.push_back(WindowKVType::get(&ctx, cfg.slidingWindow, d, act));
  if (layer.attention == AttentionKind::Sliding)
    return;
  bool overlap = layer.attention == AttentionKind::CSA;
  types.push_back(CompressorStateType::get(&ctx, m, d, overlap));
  types.push_back(CompressedKVType::get(&ctx, m, d, act));
  if (layer.attention == AttentionKind::CSA) {
    types.push_back(CompressorStateType::get(&ctx, m, cfg.indexHeadDim, true));
    types.push_back(IndexerKeysType::get(&ctx, m, cfg.indexHeadDim, act));
  }
}

LayerState ProgramBuilder::bindState(const LayerSpec &layer,
                                     Block::BlockArgListType args,
                                     unsigned &next) {
  LayerState st;
  st.ring = args[next++];
  if (layer.attention == AttentionKind::Sliding)
    return st;
  st.compressor = args[next++];
  st.entries = args[next++];
  if (layer.attention == AttentionKind::CSA) {
    st.indexerState = args[next++];
    st.indexerKeys = args[next++];
  }
  return st;
}

void ProgramBuilder::appendState(const LayerState &st,
                                 SmallVectorImpl<Value> &out) {
  for (Value v : {st.ring, st.compressor, st.entries, st.indexerState,
                  st.indexerKeys})
    if (v)
      out.push_back(v);
}

/// Names of a layer's state values, for the `dsv4.state` argument attribute.
static void stateNames(StringRef prefix, const LayerSpec &layer,
                       SmallVectorImpl<std::string> &names) {
  names.push_back((prefix + ".attn.window").str());
  if (layer.attention == AttentionKind::Sliding)
    return;
  names.push_back((prefix + ".attn.compressor.state").str());
  names.push_back((prefix + ".attn.compressor.entries").str());
  if (layer.attention == AttentionKind::CSA) {
    names.push_back((prefix + ".attn.indexer.compressor.state").str());
    names.push_back((prefix + ".attn.indexer.keys").str());
  }
}

//===----------------------------------------------------------------------===//
// Blocks
//===----------------------------------------------------------------------===//

CompressOp ProgramBuilder::compress(const std::string &prefix, Value x,
                                    Value state, Value entries, Value pos,
                                    RopeAttr rope) {
  Value wkv = param(prefix + ".wkv.weight");
  Value wgate = param(prefix + ".wgate.weight");
  Value ape = param(prefix + ".ape");
  Value norm = param(prefix + ".norm.weight");
  return CompressOp::create(b, loc(prefix), state.getType(), entries.getType(),
                            x, wkv, wgate, ape, norm, state, entries, pos, rope,
                            f64(cfg.rmsNormEps));
}

Value ProgramBuilder::attention(StringRef prefix, const LayerSpec &layer,
                                Value x, Value pos, LayerState &st,
                                int64_t s) {
  std::string p = (prefix + ".attn").str();
  int64_t h = cfg.numHeads, d = cfg.headDim;
  RopeAttr ropeAttr = rope(layer);
  FloatAttr eps = f64(cfg.rmsNormEps);

  // Query path and the shared K=V path (spec §4.4).
  Value wqA = param(p + ".wq_a.weight");
  Value qNorm = param(p + ".q_norm.weight");
  Value wqB = param(p + ".wq_b.weight");
  auto qProj = QProjOp::create(b, loc(p), tensor({s, h, d}),
                               tensor({s, cfg.qLoraRank}), x, wqA, qNorm, wqB,
                               eps);
  Value q = RopeOp::create(b, loc(p), qProj.getQ().getType(), qProj.getQ(),
                           pos, ropeAttr, false);
  Value wkv = param(p + ".wkv.weight");
  Value kvNorm = param(p + ".kv_norm.weight");
  Value kv = KVProjOp::create(b, loc(p), tensor({s, d}), x, wkv, kvNorm, eps);
  kv = RopeOp::create(b, loc(p), kv.getType(), kv, pos, ropeAttr, false);

  // Compressed entries: the compressors run before attention, so an entry
  // completed by this chunk is visible to it (spec §4.5.4).
  Value entries, topk;
  if (layer.attention == AttentionKind::CSA) {
    std::string ip = p + ".indexer";
    auto idx = compress(ip + ".compressor", x, st.indexerState,
                        st.indexerKeys, pos, ropeAttr);
    st.indexerState = idx.getNewState();
    st.indexerKeys = idx.getNewEntries();
    Value wqBI = param(ip + ".wq_b.weight");
    Value weightsProj = param(ip + ".weights_proj.weight");
    topk = IndexerTopkOp::create(
        b, loc(ip), tensor({s, cfg.indexTopk}, b.getI32Type()), qProj.getQr(),
        x, wqBI, weightsProj, st.indexerKeys, pos, cfg.indexNumHeads,
        cfg.indexTopk, ropeAttr);
  }
  if (layer.attention != AttentionKind::Sliding) {
    auto cmp = compress(p + ".compressor", x, st.compressor, st.entries, pos,
                        ropeAttr);
    st.compressor = cmp.getNewState();
    st.entries = cmp.getNewEntries();
    entries = st.entries;
  }

  // Attention with sink over the window (the ring as before this chunk, plus
  // the chunk) and the compressed entries; then the ring takes the chunk.
  Value sink = param(p + ".attn_sink");
  Value o = SparseAttentionOp::create(
      b, loc(p), tensor({s, h, d}), q, kv, st.ring, pos, sink, entries, topk,
      f64(1.0 / std::sqrt(static_cast<double>(d))));
  st.ring = WindowUpdateOp::create(b, loc(p), st.ring.getType(), st.ring, kv,
                                   pos);
  o = RopeOp::create(b, loc(p), o.getType(), o, pos, ropeAttr, /*inverse=*/true);
  Value woA = param(p + ".wo_a.weight");
  Value woB = param(p + ".wo_b.weight");
  return OutProjOp::create(b, loc(p), tensor({s, cfg.hiddenSize}), o, woA, woB,
                           cfg.oGroups);
}

Value ProgramBuilder::moe(StringRef prefix, const LayerSpec &layer, Value x,
                          Value tokens, int64_t s) {
  std::string p = (prefix + ".ffn").str();
  int64_t k = cfg.numExpertsPerTok, dm = cfg.hiddenSize;
  FloatAttr scale = f64(cfg.routedScalingFactor);
  FloatAttr limit = f64(cfg.swigluLimit);
  Type wts = tensor({s, k}), ids = tensor({s, k}, b.getI32Type());
  Operation *gate;
  Value gateW = param(p + ".gate.weight");
  if (layer.moe == MoeKind::Hash) {
    Value tid2eid = param(p + ".gate.tid2eid");
    gate = MoeHashGateOp::create(b, loc(p + ".gate"), wts, ids, x, gateW,
                                 tid2eid, tokens, scale);
  } else {
    Value bias = param(p + ".gate.bias");
    gate = MoeGateOp::create(b, loc(p + ".gate"), wts, ids, x, gateW, bias,
                             b.getI64IntegerAttr(k), scale);
  }
  int64_t e = cfg.numRoutedExperts;
  Value w1 = param(p + ".experts.*.w1.weight", e);
  Value w3 = param(p + ".experts.*.w3.weight", e);
  Value w2 = param(p + ".experts.*.w2.weight", e);
  Value routed = MoeExpertsOp::create(b, loc(p + ".experts"), tensor({s, dm}),
                                      x, gate->getResult(0), gate->getResult(1),
                                      w1, w3, w2, limit,
                                      /*first_expert=*/IntegerAttr());
  std::string sp = p + ".shared_experts";
  Value s1 = param(sp + ".w1.weight");
  Value s3 = param(sp + ".w3.weight");
  Value s2 = param(sp + ".w2.weight");
  Value shared = SharedExpertOp::create(b, loc(sp), tensor({s, dm}), x, s1, s3,
                                        s2, limit);
  return arith::AddFOp::create(b, loc(p), routed, shared);
}

Value ProgramBuilder::block(StringRef prefix, const LayerSpec &layer,
                            Value streams, Value tokens, Value pos,
                            LayerState &st, int64_t s) {
  int64_t n = cfg.hcMult, dm = cfg.hiddenSize;
  auto hcPre = [&](StringRef which) {
    std::string p = (prefix + ".hc_" + which).str();
    Value fn = param(p + "_fn");
    Value base = param(p + "_base");
    Value scale = param(p + "_scale");
    return HcPreOp::create(b, loc(p), tensor({s, dm}), tensor({s, n}),
                           tensor({s, n, n}), streams, fn, base, scale,
                           b.getI64IntegerAttr(cfg.hcSinkhornIters), f64(cfg.hcEps),
                           f64(cfg.rmsNormEps));
  };
  auto norm = [&](Value x, StringRef name) {
    Value w = param((prefix + "." + name + ".weight").str());
    return RmsNormOp::create(b, loc((prefix + "." + name).str()), x.getType(),
                             x, w, f64(cfg.rmsNormEps));
  };

  auto pre = hcPre("attn");
  Value a = attention(prefix, layer, norm(pre.getX(), "attn_norm"), pos, st, s);
  streams = HcPostOp::create(b, loc(prefix), streams.getType(), a, streams,
                             pre.getPost(), pre.getComb());
  pre = hcPre("ffn");
  Value f = moe(prefix, layer, norm(pre.getX(), "ffn_norm"), tokens, s);
  return HcPostOp::create(b, loc(prefix), streams.getType(), f, streams,
                          pre.getPost(), pre.getComb());
}

Value ProgramBuilder::head(StringRef hcPrefix, StringRef normName,
                           Value streams, int64_t s) {
  std::string hp = hcPrefix.str();
  Value fn = param(hp + "hc_head_fn");
  Value base = param(hp + "hc_head_base");
  Value scale = param(hp + "hc_head_scale");
  Value y = HcHeadOp::create(b, loc(hp + "hc_head"), tensor({s, cfg.hiddenSize}),
                             streams, fn, base, scale, f64(cfg.hcEps),
                             f64(cfg.rmsNormEps));
  Value normW = param(normName);
  y = RmsNormOp::create(b, loc(normName), y.getType(), y, normW,
                        f64(cfg.rmsNormEps));
  Value headW = param("head.weight");
  return LmHeadOp::create(b, loc("head"),
                          tensor({s, cfg.vocabSize}, b.getF32Type()), y, headW);
}

//===----------------------------------------------------------------------===//
// Programs
//===----------------------------------------------------------------------===//

LogicalResult ProgramBuilder::buildMain(ModuleOp module, StringRef name,
                                        int64_t tokens) {
  int64_t s = tokens, n = cfg.hcMult, dm = cfg.hiddenSize;
  bool withStreams = cfg.numMtpLayers > 0;
  SmallVector<Type> args = {tensor({s}, b.getI64Type()), b.getIndexType()};
  SmallVector<Attribute> argNames = {b.getStringAttr("input_ids"),
                                     b.getStringAttr("start_pos")};
  SmallVector<Type> states;
  SmallVector<std::string> names;
  for (auto [i, layer] : llvm::enumerate(cfg.layers)) {
    stateTypes(layer, states);
    stateNames(("layers." + Twine(cfg.firstLayer + int64_t(i))).str(), layer,
               names);
  }
  llvm::append_range(args, states);
  for (const std::string &nm : names)
    argNames.push_back(b.getStringAttr(nm));

  SmallVector<Type> results = {tensor({s, cfg.vocabSize}, b.getF32Type())};
  if (withStreams)
    results.push_back(tensor({s, n, dm}));
  llvm::append_range(results, states);

  b.setInsertionPointToEnd(module.getBody());
  auto func = func::FuncOp::create(b, loc(name), name,
                                   b.getFunctionType(args, results));
  for (auto [i, nm] : llvm::enumerate(argNames))
    func.setArgAttr(i, i < 2 ? "dsv4.input" : "dsv4.state", nm);
  Block *body = func.addEntryBlock();
  b.setInsertionPointToStart(body);

  Value ids = body->getArgument(0), pos = body->getArgument(1);
  Value h = EmbedOp::create(b, loc("embed"), tensor({s, dm}),
                            param("embed.weight"), ids);
  Value streams = HcExpandOp::create(b, loc("embed"), tensor({s, n, dm}), h);
  unsigned next = 2;
  SmallVector<Value> newStates;
  for (auto [i, layer] : llvm::enumerate(cfg.layers)) {
    std::string prefix =
        ("layers." + Twine(cfg.firstLayer + int64_t(i))).str();
    LayerState st = bindState(layer, body->getArguments(), next);
    streams = block(prefix, layer, streams, ids, pos, st, s);
    appendState(st, newStates);
  }
  SmallVector<Value> rets = {head("", "norm.weight", streams, s)};
  if (withStreams)
    rets.push_back(streams);
  llvm::append_range(rets, newStates);
  func::ReturnOp::create(b, loc(name), rets);
  return success(!hadError);
}

LogicalResult ProgramBuilder::buildMtp(ModuleOp module) {
  // spec §4.8: the streams at position t and the embedding of token t+1
  // predict token t+2. The caller supplies `next_ids` already shifted.
  int64_t s = ShapedType::kDynamic, n = cfg.hcMult, dm = cfg.hiddenSize;
  const LayerSpec &layer = cfg.mtpLayers.front();
  SmallVector<Type> states;
  stateTypes(layer, states);
  SmallVector<Type> args = {tensor({s, n, dm}), tensor({s}, b.getI64Type()),
                            b.getIndexType()};
  llvm::append_range(args, states);
  SmallVector<Type> results = {tensor({s, cfg.vocabSize}, b.getF32Type())};
  llvm::append_range(results, states);

  b.setInsertionPointToEnd(module.getBody());
  auto func = func::FuncOp::create(b, loc("mtp"), "mtp",
                                   b.getFunctionType(args, results));
  func.setArgAttr(0, "dsv4.input", b.getStringAttr("streams"));
  func.setArgAttr(1, "dsv4.input", b.getStringAttr("next_ids"));
  func.setArgAttr(2, "dsv4.input", b.getStringAttr("start_pos"));
  SmallVector<std::string> names;
  stateNames("mtp.0", layer, names);
  for (auto [i, nm] : llvm::enumerate(names))
    func.setArgAttr(3 + i, "dsv4.state", b.getStringAttr(nm));
  Block *body = func.addEntryBlock();
  b.setInsertionPointToStart(body);

  Value ids = body->getArgument(1), pos = body->getArgument(2);
  Value e = EmbedOp::create(b, loc("embed"), tensor({s, dm}),
                            param("embed.weight"), ids);
  Value enorm = param("mtp.0.enorm.weight");
  Value hnorm = param("mtp.0.hnorm.weight");
  Value eProj = param("mtp.0.e_proj.weight");
  Value hProj = param("mtp.0.h_proj.weight");
  Value streams = MtpProjectOp::create(b, loc("mtp.0"), tensor({s, n, dm}), e,
                                       body->getArgument(0), enorm, hnorm,
                                       eProj, hProj, f64(cfg.rmsNormEps));
  unsigned next = 3;
  LayerState st = bindState(layer, body->getArguments(), next);
  streams = block("mtp.0", layer, streams, ids, pos, st, s);
  SmallVector<Value> rets = {head("mtp.0.", "mtp.0.norm.weight", streams, s)};
  appendState(st, rets);
  func::ReturnOp::create(b, loc("mtp"), rets);
  return success(!hadError);
}

FailureOr<OwningOpRef<ModuleOp>>
compressa::buildDSV4Module(MLIRContext &context, const ModelConfig &config,
                           const ProgramOptions &options) {
  context.loadDialect<DSV4Dialect, func::FuncDialect, arith::ArithDialect>();
  Type act;
  if (options.activationType == "f32")
    act = Float32Type::get(&context);
  else if (options.activationType == "bf16")
    act = BFloat16Type::get(&context);
  else
    return emitError(UnknownLoc::get(&context))
           << "unsupported activation type '" << options.activationType
           << "' (expected f32 or bf16)";

  ProgramBuilder builder(context, config, act);
  Location loc = FileLineColLoc::get(&context, config.sourcePath, 1, 1);
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc, StringRef(config.name));
  OpBuilder b(&context);
  (*module)->setAttr(dsv4::kModelAttr, b.getStringAttr(config.name));
  // What the runtime needs of the model, so that the serializer reads it
  // from the IR (a module printed here compiles without its config).
  (*module)->setAttr(
      dsv4::kModelInfoAttr,
      b.getDictionaryAttr({
          b.getNamedAttr("vocab_size", b.getI64IntegerAttr(config.vocabSize)),
          b.getNamedAttr("hidden_size", b.getI64IntegerAttr(config.hiddenSize)),
          b.getNamedAttr("bos_token_id", b.getI64IntegerAttr(config.bosTokenId)),
          b.getNamedAttr("eos_token_id", b.getI64IntegerAttr(config.eosTokenId)),
          b.getNamedAttr("n_routed_experts",
                         b.getI64IntegerAttr(config.numRoutedExperts)),
      }));
  if (!options.configJson.empty())
    (*module)->setAttr(dsv4::kConfigJsonAttr, b.getStringAttr(options.configJson));
  if (options.prefill &&
      failed(builder.buildMain(*module, "prefill", ShapedType::kDynamic)))
    return failure();
  if (options.decode && failed(builder.buildMain(*module, "decode", 1)))
    return failure();
  // The batched decode program: the same ops as @prefill's (their T-token
  // forms read each weight once for all tokens); dsv4.batched tells the
  // kernels that token s has its own position and state slot.
  if (options.decode && options.maxBatch > 1) {
    if (failed(builder.buildMain(*module, "decode_batch", ShapedType::kDynamic)))
      return failure();
    auto batch = module->lookupSymbol<func::FuncOp>("decode_batch");
    batch->setAttr(dsv4::kBatchedAttr, b.getI64IntegerAttr(options.maxBatch));
  }
  if (options.mtp && !config.mtpLayers.empty() &&
      failed(builder.buildMtp(*module)))
    return failure();
  if (failed(verify(*module)))
    return failure();
  return module;
}
