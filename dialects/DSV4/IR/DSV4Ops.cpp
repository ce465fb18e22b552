//===- DSV4Ops.cpp - dsv4 op verifiers ---------------------------------===//
// SPDX-License-Identifier: Apache-2.0
//
// Every verifier error names the operand (by its ODS name) and gives the
// shape it has and the shape the op's semantics need, so a bad program built
// from a bad config points at the tensor that is wrong.
//
//===----------------------------------------------------------------------===//

#include "dialects/DSV4/IR/DSV4Ops.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/STLExtras.h"

using namespace mlir;
using namespace mlir::dsv4;

#define GET_OP_CLASSES
#include "dialects/DSV4/IR/DSV4Ops.cpp.inc"

//===----------------------------------------------------------------------===//
// Shape checking helpers
//===----------------------------------------------------------------------===//

namespace {
constexpr int64_t kAny = ShapedType::kDynamic;

/// The shape of a tensor or weight value.
ArrayRef<int64_t> shapeOf(Value v) {
  if (auto w = dyn_cast<WeightType>(v.getType()))
    return w.getShape();
  return cast<RankedTensorType>(v.getType()).getShape();
}

std::string shapeStr(ArrayRef<int64_t> shape) {
  std::string s = "[";
  llvm::raw_string_ostream os(s);
  llvm::interleaveComma(shape, os, [&](int64_t d) {
    if (ShapedType::isDynamic(d))
      os << "?";
    else
      os << d;
  });
  os << "]";
  return s;
}

bool dimsMatch(int64_t a, int64_t b) {
  return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) || a == b;
}

/// Checks that `value` (called `name` in messages) has shape `expected`,
/// where kAny matches anything; `meaning` names the expected sizes.
LogicalResult expectShape(Operation *op, StringRef name, Value value,
                          ArrayRef<int64_t> expected, StringRef meaning) {
  ArrayRef<int64_t> actual = shapeOf(value);
  bool ok = actual.size() == expected.size();
  for (size_t i = 0; ok && i < actual.size(); ++i)
    ok = dimsMatch(actual[i], expected[i]);
  if (ok)
    return success();
  return op->emitOpError() << "'" << name << "' has shape " << shapeStr(actual)
                           << ", expected " << shapeStr(expected) << " ("
                           << meaning << ")";
}

/// Returns the dimension `i` of `value`, which must have rank `rank`.
FailureOr<SmallVector<int64_t>> expectRank(Operation *op, StringRef name,
                                           Value value, int64_t rank,
                                           StringRef meaning) {
  ArrayRef<int64_t> shape = shapeOf(value);
  if (static_cast<int64_t>(shape.size()) != rank)
    return op->emitOpError() << "'" << name << "' must have rank " << rank
                             << " (" << meaning << "), got "
                             << shapeStr(shape);
  return SmallVector<int64_t>(shape);
}

/// The product of two sizes, or kAny if either is dynamic.
int64_t mul(int64_t a, int64_t b) {
  return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) ? kAny : a * b;
}

LogicalResult expectPositive(Operation *op, StringRef name, double v) {
  if (v > 0.0)
    return success();
  return op->emitOpError() << "'" << name << "' must be positive, got " << v;
}

LogicalResult expectStaticDim(Operation *op, StringRef name, int64_t d,
                              StringRef meaning) {
  if (!ShapedType::isDynamic(d) && d > 0)
    return success();
  return op->emitOpError() << "'" << name << "' needs a static " << meaning;
}
} // namespace

#define CHECK(expr)                                                            \
  if (failed(expr))                                                            \
    return failure();

//===----------------------------------------------------------------------===//
// Weights and embedding
//===----------------------------------------------------------------------===//

LogicalResult ParamOp::verify() {
  StringRef name = getName();
  if (name.empty())
    return emitOpError() << "'name' must not be empty";
  SmallVector<StringRef> parts;
  name.split(parts, '.');
  int64_t stars = llvm::count_if(parts, [](StringRef p) { return p == "*"; });
  if (name.count('*') != static_cast<size_t>(stars) || stars > 1)
    return emitOpError() << "'name' \"" << name
                         << "\" may hold at most one '*', as a whole path "
                            "component";
  int64_t rank = getType().getRank();
  if (stars == 1 && rank != 3)
    return emitOpError() << "'name' \"" << name
                         << "\" stands for a stack of experts, so the weight "
                            "must have rank 3, got rank "
                         << rank;
  if (stars == 0 && rank == 3)
    return emitOpError() << "rank-3 weight \"" << name
                         << "\" is a stack of experts; its name needs a '*' "
                            "component for the expert index";
  return success();
}

LogicalResult EmbedOp::verify() {
  auto table = expectRank(*this, "table", getTable(), 2, "[vocab, hidden]");
  CHECK(table);
  int64_t s = shapeOf(getIds())[0];
  return expectShape(*this, "result", getResult(), {s, (*table)[1]},
                     "[tokens of 'ids', hidden of 'table']");
}

LogicalResult RmsNormOp::verify() {
  CHECK(expectPositive(*this, "eps", getEps().convertToDouble()));
  ArrayRef<int64_t> x = shapeOf(getX());
  if (x.empty())
    return emitOpError() << "'x' must have rank >= 1";
  if (getWeight())
    return expectShape(*this, "weight", getWeight(), {x.back()},
                       "the last dimension of 'x'");
  return success();
}

//===----------------------------------------------------------------------===//
// mHC
//===----------------------------------------------------------------------===//

LogicalResult HcExpandOp::verify() {
  auto x = expectRank(*this, "x", getX(), 2, "[S, D]");
  CHECK(x);
  auto r = expectRank(*this, "result", getResult(), 3, "[S, N, D]");
  CHECK(r);
  CHECK(expectStaticDim(*this, "result", (*r)[1], "number of streams"));
  return expectShape(*this, "result", getResult(), {(*x)[0], (*r)[1], (*x)[1]},
                     "[S, N, D] with S and D of 'x'");
}

/// Shared checks of hc.pre and hc.head: returns [S, N, D] of the streams.
static FailureOr<SmallVector<int64_t>>
verifyHcParams(Operation *op, Value streams, Value fn, Value base, Value scale,
               int64_t mixWidthPerStream, int64_t mixConst, int64_t scales,
               double normEps) {
  auto x = expectRank(op, "streams", streams, 3, "[S, N, D]");
  CHECK(x);
  int64_t n = (*x)[1], d = (*x)[2];
  CHECK(expectStaticDim(op, "streams", n, "number of streams N"));
  CHECK(expectStaticDim(op, "streams", d, "hidden size D"));
  CHECK(expectPositive(op, "norm_eps", normEps));
  int64_t mix = (mixWidthPerStream + mixConst) * n;
  CHECK(expectShape(op, "fn", fn, {mix, n * d},
                    mixConst ? "[(2 + N) N, N D]" : "[N, N D]"));
  CHECK(expectShape(op, "base", base, {mix},
                    mixConst ? "[(2 + N) N]" : "[N]"));
  CHECK(expectShape(op, "scale", scale, {scales}, "one scale per mix part"));
  return *x;
}

LogicalResult HcPreOp::verify() {
  auto x = verifyHcParams(*this, getStreams(), getFn(), getBase(), getScale(),
                          shapeOf(getStreams()).size() == 3
                              ? shapeOf(getStreams())[1]
                              : 0,
                          2, 3, getNormEps().convertToDouble());
  CHECK(x);
  int64_t s = (*x)[0], n = (*x)[1], d = (*x)[2];
  CHECK(expectShape(*this, "x", getX(), {s, d}, "[S, D]"));
  CHECK(expectShape(*this, "post", getPost(), {s, n}, "[S, N]"));
  return expectShape(*this, "comb", getComb(), {s, n, n}, "[S, N, N]");
}

LogicalResult HcPostOp::verify() {
  auto x = expectRank(*this, "streams", getStreams(), 3, "[S, N, D]");
  CHECK(x);
  int64_t s = (*x)[0], n = (*x)[1], d = (*x)[2];
  CHECK(expectShape(*this, "a", getA(), {s, d}, "[S, D] of 'streams'"));
  CHECK(expectShape(*this, "post", getPost(), {s, n}, "[S, N]"));
  return expectShape(*this, "comb", getComb(), {s, n, n}, "[S, N, N]");
}

LogicalResult HcHeadOp::verify() {
  auto x = verifyHcParams(*this, getStreams(), getFn(), getBase(), getScale(),
                          1, 0, 1, getNormEps().convertToDouble());
  CHECK(x);
  return expectShape(*this, "result", getResult(), {(*x)[0], (*x)[2]},
                     "[S, D]");
}

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

LogicalResult QProjOp::verify() {
  CHECK(expectPositive(*this, "eps", getEps().convertToDouble()));
  auto x = expectRank(*this, "x", getX(), 2, "[S, D]");
  CHECK(x);
  auto q = expectRank(*this, "q", getQ(), 3, "[S, H, d]");
  CHECK(q);
  auto wqa = expectRank(*this, "wq_a", getWqA(), 2, "[q_lora_rank, D]");
  CHECK(wqa);
  int64_t s = (*x)[0], rank = (*wqa)[0], h = (*q)[1], d = (*q)[2];
  CHECK(expectShape(*this, "wq_a", getWqA(), {rank, (*x)[1]},
                    "[q_lora_rank, D of 'x']"));
  CHECK(expectShape(*this, "q_norm", getQNorm(), {rank}, "[q_lora_rank]"));
  CHECK(expectShape(*this, "wq_b", getWqB(), {mul(h, d), rank},
                    "[H d of 'q', q_lora_rank]"));
  CHECK(expectShape(*this, "q", getQ(), {s, h, d}, "[S, H, d]"));
  return expectShape(*this, "qr", getQr(), {s, rank}, "[S, q_lora_rank]");
}

LogicalResult KVProjOp::verify() {
  CHECK(expectPositive(*this, "eps", getEps().convertToDouble()));
  auto x = expectRank(*this, "x", getX(), 2, "[S, D]");
  CHECK(x);
  auto kv = expectRank(*this, "kv", getKv(), 2, "[S, d]");
  CHECK(kv);
  CHECK(expectShape(*this, "wkv", getWkv(), {(*kv)[1], (*x)[1]},
                    "[d of 'kv', D of 'x']"));
  CHECK(expectShape(*this, "kv_norm", getKvNorm(), {(*kv)[1]}, "[d]"));
  return expectShape(*this, "kv", getKv(), {(*x)[0], (*kv)[1]}, "[S, d]");
}

LogicalResult RopeOp::verify() {
  ArrayRef<int64_t> x = shapeOf(getX());
  if (x.size() < 2)
    return emitOpError() << "'x' must have rank >= 2 (tokens first), got "
                         << shapeStr(x);
  int64_t dim = getRope().getDim();
  if (!ShapedType::isDynamic(x.back()) && dim > x.back())
    return emitOpError() << "rope dim " << dim
                         << " exceeds the last dimension of 'x' ("
                         << x.back() << ")";
  return success();
}

LogicalResult WindowUpdateOp::verify() {
  WindowKVType ring = getRing().getType();
  return expectShape(*this, "kv", getKv(), {kAny, ring.getDim()},
                     "[S, dim of 'ring']");
}

LogicalResult CompressOp::verify() {
  CompressorStateType state = getState().getType();
  Type entries = getEntries().getType();
  int64_t ratio, dim;
  if (auto e = dyn_cast<CompressedKVType>(entries)) {
    ratio = e.getRatio();
    dim = e.getDim();
  } else {
    auto k = cast<IndexerKeysType>(entries);
    ratio = k.getRatio();
    dim = k.getDim();
    if (!state.getOverlap())
      return emitOpError() << "indexer keys come from an overlapping (CSA) "
                              "compressor, but 'state' is "
                           << state;
  }
  if (state.getRatio() != ratio || state.getDim() != dim)
    return emitOpError() << "'state' " << state << " does not match 'entries' "
                         << entries << " (ratio and dim must agree)";
  CHECK(expectPositive(*this, "eps", getEps().convertToDouble()));
  if (getRope().getDim() > dim)
    return emitOpError() << "rope dim " << getRope().getDim()
                         << " exceeds the entry dim " << dim;
  auto x = expectRank(*this, "x", getX(), 2, "[S, D]");
  CHECK(x);
  int64_t width = state.getWidth();
  StringRef meaning = state.getOverlap()
                          ? "[2 dim, D]: an overlapping compressor projects "
                            "both halves"
                          : "[dim, D]";
  CHECK(expectShape(*this, "wkv", getWkv(), {width, (*x)[1]}, meaning));
  CHECK(expectShape(*this, "wgate", getWgate(), {width, (*x)[1]}, meaning));
  CHECK(expectShape(*this, "ape", getApe(), {ratio, width},
                    "[ratio, projection width]"));
  return expectShape(*this, "norm", getNorm(), {dim}, "[dim]");
}

LogicalResult IndexerTopkOp::verify() {
  IndexerKeysType keys = getKeys().getType();
  int64_t heads = getHeads(), dimI = keys.getDim();
  if (getRope().getDim() > dimI)
    return emitOpError() << "rope dim " << getRope().getDim()
                         << " exceeds the indexer head dim " << dimI;
  auto qr = expectRank(*this, "qr", getQr(), 2, "[S, q_lora_rank]");
  CHECK(qr);
  auto x = expectRank(*this, "x", getX(), 2, "[S, D]");
  CHECK(x);
  CHECK(expectShape(*this, "wq_b", getWqB(), {heads * dimI, (*qr)[1]},
                    "[heads x index_head_dim, q_lora_rank]"));
  CHECK(expectShape(*this, "weights_proj", getWeightsProj(),
                    {heads, (*x)[1]}, "[heads, D]"));
  return expectShape(*this, "indices", getIndices(),
                     {(*qr)[0], static_cast<int64_t>(getTopk())},
                     "[S, topk]");
}

LogicalResult SparseAttentionOp::verify() {
  CHECK(expectPositive(*this, "scale", getScale().convertToDouble()));
  auto q = expectRank(*this, "q", getQ(), 3, "[S, H, d]");
  CHECK(q);
  int64_t s = (*q)[0], h = (*q)[1], d = (*q)[2];
  CHECK(expectShape(*this, "kv", getKv(), {s, d}, "[S, d of 'q']"));
  if (getRing().getType().getDim() != d && !ShapedType::isDynamic(d))
    return emitOpError() << "'ring' " << getRing().getType()
                         << " holds vectors of " << getRing().getType().getDim()
                         << " channels, but 'q' has head dim " << d;
  CHECK(expectShape(*this, "sink", getSink(), {h}, "one logit per head"));
  if (getEntries()) {
    int64_t ed = getEntries().getType().getDim();
    if (!ShapedType::isDynamic(d) && ed != d)
      return emitOpError() << "'entries' " << getEntries().getType()
                           << " hold " << ed << " channels, but 'q' has head dim "
                           << d;
  }
  if (getTopk()) {
    if (!getEntries())
      return emitOpError() << "'topk' selects compressed entries, so "
                              "'entries' must be given";
    CHECK(expectShape(*this, "topk", getTopk(), {s, kAny}, "[S, k]"));
  }
  return expectShape(*this, "result", getResult(), {s, h, d}, "[S, H, d]");
}

LogicalResult OutProjOp::verify() {
  auto o = expectRank(*this, "o", getO(), 3, "[S, H, d]");
  CHECK(o);
  int64_t s = (*o)[0], h = (*o)[1], d = (*o)[2], g = getGroups();
  CHECK(expectStaticDim(*this, "o", h, "number of heads"));
  if (h % g != 0)
    return emitOpError() << "'groups' (" << g << ") must divide the " << h
                         << " heads of 'o'";
  auto woa = expectRank(*this, "wo_a", getWoA(), 2, "[G R_o, (H/G) d]");
  CHECK(woa);
  int64_t rows = (*woa)[0];
  if (rows % g != 0)
    return emitOpError() << "'wo_a' has " << rows
                         << " rows, not a multiple of 'groups' (" << g << ")";
  CHECK(expectShape(*this, "wo_a", getWoA(), {rows, mul(h / g, d)},
                    "[G R_o, (H/G) d]"));
  auto wob = expectRank(*this, "wo_b", getWoB(), 2, "[D, G R_o]");
  CHECK(wob);
  CHECK(expectShape(*this, "wo_b", getWoB(), {(*wob)[0], rows},
                    "[D, rows of 'wo_a']"));
  return expectShape(*this, "result", getResult(), {s, (*wob)[0]},
                     "[S, D]");
}

//===----------------------------------------------------------------------===//
// MoE
//===----------------------------------------------------------------------===//

LogicalResult MoeGateOp::verify() {
  auto x = expectRank(*this, "x", getX(), 2, "[S, D]");
  CHECK(x);
  auto w = expectRank(*this, "w", getW(), 2, "[E, D]");
  CHECK(w);
  int64_t e = (*w)[0], k = getTopk();
  CHECK(expectShape(*this, "w", getW(), {e, (*x)[1]}, "[E, D of 'x']"));
  CHECK(expectShape(*this, "bias", getBias(), {e}, "[E]"));
  if (k > e)
    return emitOpError() << "'topk' (" << k << ") exceeds the " << e
                         << " experts of 'w'";
  CHECK(expectShape(*this, "weights", getWeights(), {(*x)[0], k}, "[S, topk]"));
  return expectShape(*this, "ids", getIds(), {(*x)[0], k}, "[S, topk]");
}

LogicalResult MoeHashGateOp::verify() {
  auto x = expectRank(*this, "x", getX(), 2, "[S, D]");
  CHECK(x);
  auto w = expectRank(*this, "w", getW(), 2, "[E, D]");
  CHECK(w);
  CHECK(expectShape(*this, "w", getW(), {(*w)[0], (*x)[1]}, "[E, D of 'x']"));
  auto t = expectRank(*this, "tid2eid", getTid2eid(), 2, "[vocab, K]");
  CHECK(t);
  if (!getTid2eid().getType().getElementType().isSignlessInteger(64))
    return emitOpError() << "'tid2eid' must hold i64 expert ids, got "
                         << getTid2eid().getType();
  int64_t s = (*x)[0], k = (*t)[1];
  CHECK(expectShape(*this, "token_ids", getTokenIds(), {s}, "[S]"));
  CHECK(expectShape(*this, "weights", getWeights(), {s, k}, "[S, K of 'tid2eid']"));
  return expectShape(*this, "ids", getIds(), {s, k}, "[S, K of 'tid2eid']");
}

LogicalResult MoeExpertsOp::verify() {
  CHECK(expectPositive(*this, "swiglu_limit",
                       getSwigluLimit().convertToDouble()));
  auto x = expectRank(*this, "x", getX(), 2, "[S, D]");
  CHECK(x);
  auto w1 = expectRank(*this, "w1", getW1(), 3, "[E, I, D]");
  CHECK(w1);
  int64_t s = (*x)[0], dm = (*x)[1], e = (*w1)[0], i = (*w1)[1];
  CHECK(expectShape(*this, "w1", getW1(), {e, i, dm}, "[E, I, D of 'x']"));
  CHECK(expectShape(*this, "w3", getW3(), {e, i, dm}, "[E, I, D] like 'w1'"));
  CHECK(expectShape(*this, "w2", getW2(), {e, dm, i}, "[E, D, I]"));
  auto k = expectRank(*this, "ids", getIds(), 2, "[S, K]");
  CHECK(k);
  CHECK(expectShape(*this, "ids", getIds(), {s, (*k)[1]}, "[S, K]"));
  CHECK(expectShape(*this, "weights", getWeights(), {s, (*k)[1]},
                    "[S, K] like 'ids'"));
  return expectShape(*this, "result", getResult(), {s, dm}, "[S, D]");
}

LogicalResult SharedExpertOp::verify() {
  CHECK(expectPositive(*this, "swiglu_limit",
                       getSwigluLimit().convertToDouble()));
  auto x = expectRank(*this, "x", getX(), 2, "[S, D]");
  CHECK(x);
  auto w1 = expectRank(*this, "w1", getW1(), 2, "[I, D]");
  CHECK(w1);
  int64_t dm = (*x)[1], i = (*w1)[0];
  CHECK(expectShape(*this, "w1", getW1(), {i, dm}, "[I, D of 'x']"));
  CHECK(expectShape(*this, "w3", getW3(), {i, dm}, "[I, D] like 'w1'"));
  CHECK(expectShape(*this, "w2", getW2(), {dm, i}, "[D, I]"));
  return expectShape(*this, "result", getResult(), {(*x)[0], dm}, "[S, D]");
}

//===----------------------------------------------------------------------===//
// Head and MTP
//===----------------------------------------------------------------------===//

LogicalResult LmHeadOp::verify() {
  auto y = expectRank(*this, "y", getY(), 2, "[S, D]");
  CHECK(y);
  auto head = expectRank(*this, "head", getHead(), 2, "[V, D]");
  CHECK(head);
  CHECK(expectShape(*this, "head", getHead(), {(*head)[0], (*y)[1]},
                    "[V, D of 'y']"));
  return expectShape(*this, "logits", getLogits(), {(*y)[0], (*head)[0]},
                     "[S, V]");
}

LogicalResult MtpProjectOp::verify() {
  CHECK(expectPositive(*this, "eps", getEps().convertToDouble()));
  auto e = expectRank(*this, "e", getE(), 2, "[S, D]");
  CHECK(e);
  int64_t s = (*e)[0], d = (*e)[1];
  auto x = expectRank(*this, "streams", getStreams(), 3, "[S, N, D]");
  CHECK(x);
  CHECK(expectShape(*this, "streams", getStreams(), {s, (*x)[1], d},
                    "[S, N, D] with S and D of 'e'"));
  CHECK(expectShape(*this, "enorm", getEnorm(), {d}, "[D]"));
  CHECK(expectShape(*this, "hnorm", getHnorm(), {d}, "[D]"));
  CHECK(expectShape(*this, "e_proj", getEProj(), {d, d}, "[D, D]"));
  CHECK(expectShape(*this, "h_proj", getHProj(), {d, d}, "[D, D]"));
  return expectShape(*this, "result", getResult(), shapeOf(getStreams()),
                     "the shape of 'streams'");
}

//===----------------------------------------------------------------------===//
// LaunchOp
//===----------------------------------------------------------------------===//

LogicalResult LaunchOp::verify() {
  ArrayRef<int64_t> updates = getUpdates();
  if (updates.size() != getNumResults())
    return emitOpError() << "has " << updates.size()
                         << " updates entries, expected one per result ("
                         << getNumResults() << ")";
  for (auto [i, u] : llvm::enumerate(updates)) {
    Type type = getResult(i).getType();
    if (u == -1) {
      if (!isa<RankedTensorType>(type))
        return emitOpError() << "result #" << i << " (" << type
                             << ") updates no operand, so it must be a tensor";
      continue;
    }
    if (u < 0 || u >= int64_t(getArgs().size()))
      return emitOpError() << "result #" << i << " updates operand #" << u
                           << ", which does not exist";
    if (getArgs()[u].getType() != type)
      return emitOpError() << "result #" << i << " (" << type
                           << ") updates operand #" << u << " of another type ("
                           << getArgs()[u].getType() << ")";
  }
  return success();
}

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

std::string mlir::dsv4::componentName(Operation *op) {
  Location loc = op->getLoc();
  if (auto fused = dyn_cast<FusedLoc>(loc))
    for (Location l : fused.getLocations())
      if (auto name = dyn_cast<NameLoc>(l))
        return name.getName().str();
  if (auto name = dyn_cast<NameLoc>(loc))
    return name.getName().str();
  return op->getName().getStringRef().str();
}

Value mlir::dsv4::updatedState(Value v) {
  Operation *def = v.getDefiningOp();
  if (auto up = dyn_cast_or_null<WindowUpdateOp>(def))
    return up.getRing();
  if (auto cmp = dyn_cast_or_null<CompressOp>(def))
    return cast<OpResult>(v).getResultNumber() == 0 ? cmp.getState()
                                                    : cmp.getEntries();
  return nullptr;
}
