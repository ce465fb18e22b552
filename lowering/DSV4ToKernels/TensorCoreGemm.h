//===- TensorCoreGemm.h - act_quant and FP8 block-scaled GEMMs ---*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// The kernel code of --numerics=fast (lowering/TensorCore/Numerics.h) in the
// loop-nest language of KernelBuilder, so the CPU target and the CUDA target
// compute the same function (the CPU's is the reference of the tensor-core
// GEMM in lowering/TensorCore/WgmmaGemm.h):
//
//   act_quant (spec section 3, b = 128): per row and 128-column block
//     amax = max(|x_blk|, 1e-4)
//     s    = 2^ceil(log2(amax / 448))       (the UE8M0 byte is log2(s) + 127)
//     q    = e4m3fn_rne(clamp(x / s, -448, 448))
//   FP8 GEMM (spec section 3, weights [N, K] e4m3 with 128x128 UE8M0 scales):
//     y[m, n] = sum_kb (sum_{k in kb} q[m, k] * w[n, k]) * s_a[m, kb] * s_w[n/128, kb]
//     each block sum in f32 (products of two e4m3 values are exact in f32),
//     the block sums added into an f32 accumulator in block order.
//
// Every step is integer bit arithmetic or exact f32 arithmetic (divisions
// by powers of two are multiplications by their inverses; ceil(log2(amax /
// 448)) is read off amax's exponent and mantissa: amax = m 2^e, m in [1, 2),
// gives e - 8 when m <= 1.75 and e - 7 above), so every target produces
// the same bytes: no division, logarithm or conversion instruction whose
// rounding a target could choose.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_DSV4TOKERNELS_TENSORCOREGEMM_H
#define COMPRESSA_LOWERING_DSV4TOKERNELS_TENSORCOREGEMM_H

#include "lowering/DSV4ToKernels/KernelBuilder.h"
#include "lowering/DSV4ToKernels/OpEmitters.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

#include <memory>

namespace mlir::compressa {

/// The steps of a kernel whose FP8 linear layers run on tensor cores
/// (TensorCoreSplit): an ArrayAttr of dictionaries on the kernel's first
/// part, in launch order: {part = "symbol"} launches that part of the
/// kernel with the kernel's arguments; {gemm_n = N, gemm_k = K, weight_slot
/// = i} launches the wgmma GEMM (lowering/TensorCore/WgmmaGemm.h, `program`)
/// on the FP8 weight in the kernel's argument slot i (its Weight; its
/// WeightScale is slot i + 1).
inline constexpr llvm::StringLiteral kTensorCoreStepsAttr = "compressa.tc_steps";
/// Pipeline stages of the GEMM kernels a program launches.
inline constexpr int64_t kTensorCoreStages = 4;
/// Bytes before the staging area's codes (the GEMM's output address).
inline constexpr int64_t kStagingHeader = 64;

/// Whether --numerics=fast's lightning indexer act_quant's its q and keys
/// (1 x 128 blocks, UE8M0: FP8 q . key products, DeepSeek-V3.2's indexer;
/// Emitter::indexer): the default. COMPRESSA_INDEXER_FP8=0 at compile time
/// keeps bf16 q and keys (for A/B runs).
bool fastIndexerFp8();

} // namespace mlir::compressa

namespace mlir::compressa::cpu {

/// act_quant of `rows` rows of `k` values (row r at x + r * xStride): the
/// e4m3fn codes to the bytes `q` [rows, k] and the UE8M0 scale bytes to
/// `scales` [rows, ceil(k / 128)].
void emitActQuant(KernelBuilder &kb, const View &x, int64_t xStride, Value rows,
                  int64_t k, Value q, Value scales);
/// The value of row r, column first + j of what emitActQuantOf quantises.
using ActQuantValues = function_ref<Value(Value r, Value first, Value j)>;
/// emitActQuant of values computed where they are used (a lane's values
/// are asked for twice: for the block's amax, then for its codes).
void emitActQuantOf(KernelBuilder &kb, ActQuantValues valueAt, Value rows, int64_t k,
                    Value q, Value scales);
/// y[r, col] = valueAt(r, rowInit(r), col) for `rows` rows of k values (k
/// a multiple of 128; each value computed once, rowInit once per 128-column
/// block), and act_quant of y in the same step: the codes of the values as
/// stored, the same bytes as emitActQuant of y after it.
void emitActQuantKeeping(KernelBuilder &kb, function_ref<Value(Value r)> rowInit,
                         function_ref<Value(Value r, Value init, Value col)> valueAt,
                         const View &y, Value rows, int64_t k, Value q, Value scales);

/// The f32 value of the e4m3fn code `byte` (an i8), by integer arithmetic
/// (the same on every target).
Value decodeE4M3Code(KernelBuilder &kb, Value byte);
/// 2^(byte - 127) for a UE8M0 scale byte (an i8).
Value decodeUE8M0Byte(KernelBuilder &kb, Value byte);
/// y[r, :] = the values act_quant makes of x's row r (rows of k values,
/// 1 x 128 blocks, a shorter last one): codes times scales, exact in f32.
/// The codes go through `q` [rows, k] and the scale bytes through `scales`
/// [rows, ceil(k / 128)]; y may be x.
void emitActQuantDequant(KernelBuilder &kb, const View &x, int64_t k, Value rows, Value q,
                         Value scales, const View &y);

/// out[r, n] for r < rows and n < w.rows: the FP8 GEMM of the quantised rows
/// (`q`, `scales` as emitActQuant writes them) and the FP8 weight `w`. With
/// `groups` G (wo_a's groups): q holds rows of G w.cols codes (the groups'
/// inputs side by side; scales likewise) and output column n takes group
/// n / (w.rows / G)'s part of its row.
void emitFp8BlockGemm(KernelBuilder &kb, Value q, Value scales, Value rows,
                      const WeightView &w, const View &out, int64_t groups = 1);

/// --numerics=fast on sm_90a: the kernel of a dispatch ends after each FP8
/// linear layer's act_quant, the tensor-core GEMM runs as a launch of its
/// own, and the kernel goes on in a new part (a kernel with the same
/// argument vector). The quantised activations go to a staging area at the
/// start of the kernel's scratch, at the same address on every call (its
/// tensor map is built once, when the program is bound): byte 0 holds the
/// output's address for the GEMM (it may lie in the scratch, at an offset
/// that depends on the token count), byte 64 on the e4m3 codes [S, K], then
/// their UE8M0 scales [S, ceil(K/128)]. Values a part uses from an earlier
/// part (argument pointers, the token count, offsets computed from them)
/// are computed again at the part's start.
class TensorCoreSplit {
public:
  /// Null where the target has no tensor-core GEMM or no op of `func`
  /// takes the fast path; otherwise reserves the staging area (call right
  /// after useScratchArea, before anything else takes scratch).
  static std::unique_ptr<TensorCoreSplit>
  create(func::FuncOp func, KernelBuilder &kb, EmitContext &ec,
         const TargetInfo &target, Operation *container, StringRef symbol);

  /// Whether this linear layer (with `groups`, wo_a's) goes through the
  /// tensor-core GEMM.
  bool handles(const WeightView &w, const View &out, int64_t groups = 1) const;
  /// act_quant of x into the staging area, the output's address, the end
  /// of the current part, the GEMM step, the start of the next part. With
  /// `groups` G (wo_a): x's rows hold G w.cols values, the GEMM's groups
  /// (WgmmaGemm.h; staging for them reserved by create()).
  void linear(View x, int64_t xStride, const WeightView &w, View out, int64_t groups = 1);

  /// Whether these routed experts (FP4, --numerics=fast) run as the grouped
  /// GEMMs of lowering/TensorCore/WgmmaExperts.h.
  bool handlesExperts(const ExpertView &w1, const ExpertView &w3,
                      const ExpertView &w2) const;
  /// The addresses the grouped GEMMs read (WgmmaExperts.h's header).
  struct ExpertsOperands {
    Value x, h, ys, order, expert, first, count;
  };
  /// Writes the header, ends the current part, launches the gate/up and the
  /// down GEMMs (steps {experts = "gate_up" | "down", ...}) and starts the
  /// next part.
  void experts(const ExpertsOperands &in, const ExpertView &w1, const ExpertView &w3,
               const ExpertView &w2, int64_t topk, double limit);
  /// Whether the indexer's scores (--numerics=fast) of `heads` heads of
  /// width `di` over keys of element type `keyElt` run as the tensor-core
  /// kernel of lowering/TensorCore/WgmmaIndexer.h.
  bool handlesIndexer(int64_t heads, int64_t di, Type keyElt) const;
  /// Where the part before it writes q in bf16 [S heads, di] or (FP8) its
  /// e4m3 codes (the staging area after its header).
  Value indexerQ() const;
  /// Whether the top-k selection after those scores (`topk` picks of
  /// `capacity` keys a token) runs as the kernel of
  /// lowering/TensorCore/TopkSelect.h (for the radix selection's states:
  /// capacity > Emitter::kRankTopkMax).
  bool handlesTopk(int64_t capacity, int64_t topk, int64_t ratio) const;
  /// Writes the header (the keys, hw [S, heads] and scores [S, capacity]
  /// addresses; with `picks`, the picks' i32 [S, topk]), ends the current
  /// part, launches the scores (step {indexer = "scores", ...}) and with
  /// `picks` the selection (step {indexer = "topk", ...}), and starts the
  /// next part.
  void indexerScores(Value keys, Value hw, Value scores, int64_t heads, int64_t di,
                     int64_t ratio, int64_t capacity, bool fp8, Value picks = {},
                     int64_t topk = 0);
  /// Whether the sparse attention (--numerics=fast) of `heads` heads of
  /// width `dim`, a window of `window` positions and every visible entry of
  /// ratio `ratio` (topk 0) or the `topk` a top-k selects (f32 q, keys and
  /// sinks) runs as the tensor-core kernels of
  /// lowering/TensorCore/WgmmaAttention.h.
  bool handlesAttention(int64_t heads, int64_t dim, int64_t window, int64_t ratio,
                        int64_t topk) const;
  /// With a top-k: where the part before them writes each token's keys,
  /// [S (window + topk), dim] in bf16 (after the staging header).
  Value attentionOwnKeys() const { return attentionEntries(); }
  /// Where the part before them writes the entries' bf16 copy
  /// [attentionEntryRows(capacity), dim] (after the staging header) and the
  /// window's ([rows, dim] after it).
  Value attentionEntries() const;
  Value attentionWindow(int64_t capacity, int64_t dim) const;
  /// Writes the header (the sinks', maxima's, output's and q's addresses
  /// and the window copy's first position), ends the current part,
  /// launches the two kernels (steps {attention = "max" | "sums", ...}) and
  /// starts the next part.
  void attention(Value q, Value sink, Value maxima, Value out, Value windowBase, Value topkIds,
                 int64_t heads, int64_t dim, int64_t window, int64_t ratio, int64_t capacity,
                 int64_t topk, double scale);
  /// The rows of the entries' copy: the capacity rounded up to a tile of
  /// 64 (a tile never reads past the copy).
  static int64_t attentionEntryRows(int64_t capacity) { return (capacity + 63) / 64 * 64; }
  /// The staging bytes the attention's copies take before the per-token
  /// rows: the entries' [attentionEntryRows(capacity), dim] and (window +
  /// 128) rows of the window copy (its other rows are per token).
  static int64_t attentionFixedBytes(int64_t dim, int64_t window, int64_t capacity) {
    return (attentionEntryRows(capacity) + window + 128) * dim * 2;
  }
  /// Ends the current part here and starts the next (no GEMM between):
  /// what follows gets a launch of its own (Emitter::indexer's selection).
  void split() { nextPart({}); }
  /// After the emission (the last part returned): the values each part
  /// takes from earlier parts computed again in it, the first part's
  /// attributes (kernel name, ABI) on every part, the steps on the first.
  LogicalResult finish(Operation *firstKernel);

private:
  TensorCoreSplit(KernelBuilder &kb, EmitContext &ec, const TargetInfo &target,
                  Operation *container, StringRef symbol)
      : kb(kb), ec(ec), target(target), container(container), symbol(symbol) {}
  KernelBuilder &kb;
  EmitContext &ec;
  const TargetInfo &target;
  Operation *container;
  std::string symbol;
  Value staging;
  int64_t maxK = 0;
  /// The widest grouped input (wo_a: groups x its K) the staging holds.
  int64_t maxGroupedK = 0;
  /// The routed experts take the grouped GEMMs (handlesExperts).
  bool groupedExperts = false;
  /// The indexer's scores take the tensor-core kernel (handlesIndexer).
  bool indexerScoresOn = false;
  /// The attention takes the tensor-core kernels (handlesAttention): HCA's
  /// (every visible entry), CSA's (a top-k's).
  bool attentionOn = false, attentionTopkOn = false;
  /// Ends the current part with `launched` steps and starts the next.
  void nextPart(ArrayRef<Attribute> launched);
  /// The parts after the first.
  SmallVector<Operation *> parts;
  SmallVector<Attribute> steps;
};

} // namespace mlir::compressa::cpu

#endif // COMPRESSA_LOWERING_DSV4TOKERNELS_TENSORCOREGEMM_H
