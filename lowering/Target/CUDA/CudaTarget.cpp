//===- CudaTarget.cpp - The CUDA target of the kernel lowering -----------===//
// SPDX-License-Identifier: Apache-2.0

#include "lowering/Target/CUDA/CudaTarget.h"

#include "mlir/Conversion/GPUToNVVM/GPUToNVVMPass.h"
#include "mlir/Conversion/ReconcileUnrealizedCasts/ReconcileUnrealizedCasts.h"
#include "mlir/Conversion/SCFToControlFlow/SCFToControlFlow.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlow.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVM/NVVM/Target.h"
#include "mlir/Target/LLVMIR/Dialect/GPU/GPUToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/NVVM/NVVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Transforms/Passes.h"

#include <cstdlib>
#include <string>

using namespace mlir;
using namespace mlir::compressa;
using namespace mlir::compressa::cuda;

CudaTarget::CudaTarget(std::string chip) : chip(std::move(chip)) {}

std::string CudaTarget::features() const {
  // sm_89 needs PTX 8.1 for the e4m3x2 conversions (sm_90 has them in 8.0).
  int sm = smVersion(chip);
  return sm >= 100 ? "+ptx86" : sm < 90 ? "+ptx81" : "+ptx80";
}

Operation *CudaTarget::getOrCreateContainer(ModuleOp top) const {
  if (Operation *found = SymbolTable::lookupSymbolIn(top, kContainer))
    return found;
  MLIRContext *ctx = top.getContext();
  OpBuilder b(ctx);
  top->setAttr(gpu::GPUDialect::getContainerModuleAttrName(), b.getUnitAttr());
  b.setInsertionPointToEnd(top.getBody());
  auto target = NVVM::NVVMTargetAttr::get(ctx, /*optLevel=*/3, "nvptx64-nvidia-cuda",
                                          chip, features());
  return gpu::GPUModuleOp::create(b, top.getLoc(), kContainer,
                                  ArrayAttr::get(ctx, {target}));
}

Block *CudaTarget::createKernel(OpBuilder &b, Location loc, Operation *container,
                                StringRef symbol) const {
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToEnd(&container->getRegion(0).front());
  Type ptr = LLVM::LLVMPointerType::get(b.getContext());
  auto fn = gpu::GPUFuncOp::create(b, loc, symbol, b.getFunctionType({ptr}, {}));
  fn->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
  return &fn.getBody().front();
}

void CudaTarget::createReturn(OpBuilder &b, Location loc) const {
  gpu::ReturnOp::create(b, loc);
}

// Programmatic dependent launch (sm_90 on): a kernel launched with it may
// start while the grid before it runs; griddepcontrol.wait holds every
// thread until that grid has completed and its memory is visible, so nothing
// is read early. launch_dependents right after lets the next kernel's launch
// begin once every block of this one is resident (a block that is not yet
// resident has not signalled), so the next kernel's blocks only take slots
// this grid does not hold: its grid-wide barriers, which need all of its
// blocks resident, still complete. Without the launch attribute the wait
// returns at once.
void CudaTarget::kernelPrologue(OpBuilder &b, Location loc, Operation *kernel) const {
  if (smVersion(chip) < 90)
    return;
  NVVM::GriddepcontrolOp::create(b, loc, NVVM::GridDepActionKind::wait);
  NVVM::GriddepcontrolOp::create(b, loc, NVVM::GridDepActionKind::launch_dependents);
  kernel->setAttr(kProgrammaticAttr, b.getUnitAttr());
}

static Value c32(OpBuilder &b, Location loc, int64_t v) {
  return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(v));
}

static Value eq32(OpBuilder &b, Location loc, Value x, Value y) {
  return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, x, y);
}

static Value toI64(OpBuilder &b, Location loc, Value index) {
  return arith::IndexCastUIOp::create(b, loc, b.getI64Type(), index);
}

Value CudaTarget::threadId(OpBuilder &b, Location loc) const {
  Value tid = toI64(b, loc, gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x));
  Value block = toI64(b, loc, gpu::BlockIdOp::create(b, loc, gpu::Dimension::x));
  Value threads = arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(kThreads));
  return arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, block, threads),
                               tid);
}

Value CudaTarget::blockId(OpBuilder &b, Location loc) const {
  return toI64(b, loc, gpu::BlockIdOp::create(b, loc, gpu::Dimension::x));
}

Value CudaTarget::blockCount(OpBuilder &b, Location loc) const {
  return toI64(b, loc, gpu::GridDimOp::create(b, loc, gpu::Dimension::x));
}

Value CudaTarget::threadCount(OpBuilder &b, Location loc) const {
  Value grid = toI64(b, loc, gpu::GridDimOp::create(b, loc, gpu::Dimension::x));
  Value threads = arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(kThreads));
  return arith::MulIOp::create(b, loc, grid, threads);
}

// PTX .maxnreg: ptxas keeps the kernel within `count` registers (spilling
// if it must), so that the runtime's occupancy query grants more blocks per
// multiprocessor (65536 registers: 2 blocks of 256 threads at 128, 4 at 64).
// Kernels that need fewer keep what they need (unlike launch bounds, which
// let ptxas take up to the bound).
void CudaTarget::limitRegisters(Operation *kernel, int64_t count) const {
  Builder b(kernel->getContext());
  kernel->setAttr(NVVM::NVVMDialect::getMaxnregAttrName(),
                  b.getI32IntegerAttr(int32_t(count)));
}

// A barrier of the whole grid (the blocks are all resident: the runtime
// launches at most one per multiprocessor, artifact.fbs). Each block meets
// at a block barrier; then its thread 0 publishes the block's writes
// (fence), arrives on the sync word and waits until the word's top bit
// flips: block 0 adds 2^31 - (blocks - 1), every other block 1, so the bit
// flips exactly when the last block arrives and the low 31 bits return to
// 0 (the word starts at 0; a launch may leave the top bit either way, as
// its number of barriers is odd or even, which the next one's barriers
// read from their own arrival). A fence after
// the wait makes the other blocks' writes visible, and a block barrier
// holds the block's threads until then. The fences are acq_rel at GPU scope
// (fence.acq_rel.gpu): with the relaxed atomic and the volatile load they
// form PTX's release and acquire patterns among the blocks of one device;
// the system-scope sequentially consistent fence they replace
// (fence.sc.sys) also ordered against the host and peers, which no barrier
// needs, at a higher cost. One block: the block barrier only.
// Without a sync word (a kernel built outside convert-dsv4-to-kernels, which
// always sets one) the kernel is one block: the block barrier only. A part
// of the launch's blocks (`block` of `blocks`) meets the same way on its own
// word.
void CudaTarget::barrier(OpBuilder &b, Location loc, Value syncWord, Value partBlock,
                         Value partBlocks) const {
  gpu::BarrierOp::create(b, loc);
  if (!syncWord)
    return;
  Type i32 = b.getI32Type();
  Value blocks = partBlocks ? Value(arith::TruncIOp::create(b, loc, i32, partBlocks))
                            : Value(arith::IndexCastUIOp::create(
                                  b, loc, i32, gpu::GridDimOp::create(b, loc, gpu::Dimension::x)));
  Value several = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ugt, blocks,
                                        c32(b, loc, 1));
  auto grid = scf::IfOp::create(b, loc, several, /*withElseRegion=*/false);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(grid.thenBlock()->getTerminator());
  Value tid = arith::IndexCastUIOp::create(
      b, loc, i32, gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x));
  auto leader = scf::IfOp::create(b, loc, eq32(b, loc, tid, c32(b, loc, 0)),
                                  /*withElseRegion=*/false);
  // Thread 0 of each block arrives with one release atomic
  // (atom.release.gpu) and waits with acquire loads (ld.acquire.gpu): the
  // same ordering in the PTX memory model as a device-scope fence, a
  // relaxed atomic, volatile polling and a second fence, without the
  // fences' cost. On an H100 this took V4-Flash 2:6's decode step from
  // 1401-1402 to 1357-1359 us and V4-Pro 0:3's from 2012-2013 to
  // 1986-1992 us, with byte-identical logits (docs/perf.md, twenty-first
  // session). COMPRESSA_GRID_BARRIER=fence at compile time emits the
  // fenced form, for A/B runs.
  static const bool releaseAcquire = [] {
    const char *v = std::getenv("COMPRESSA_GRID_BARRIER");
    return !(v && std::string(v) == "fence");
  }();
  {
    OpBuilder::InsertionGuard inner(b);
    b.setInsertionPoint(leader.thenBlock()->getTerminator());
    if (!releaseAcquire)
      LLVM::FenceOp::create(b, loc, LLVM::AtomicOrdering::acq_rel, "device");
    Value block = partBlock ? Value(arith::TruncIOp::create(b, loc, i32, partBlock))
                            : Value(arith::IndexCastUIOp::create(
                                  b, loc, i32, gpu::BlockIdOp::create(b, loc, gpu::Dimension::x)));
    Value master = arith::SubIOp::create(
        b, loc, c32(b, loc, int64_t(0x80000000u)),
        arith::SubIOp::create(b, loc, blocks, c32(b, loc, 1)));
    Value add = arith::SelectOp::create(b, loc, eq32(b, loc, block, c32(b, loc, 0)),
                                        master, c32(b, loc, 1));
    // (LLVM's NVPTX backend prints an atomicrmw of release ordering as a
    // plain relaxed atom, so the release one is inline PTX.)
    Value old =
        releaseAcquire
            ? LLVM::InlineAsmOp::create(
                  b, loc, i32, ValueRange{syncWord, add},
                  b.getStringAttr("atom.release.gpu.global.add.u32 $0, [$1], $2;"),
                  b.getStringAttr("=r,l,r,~{memory}"), /*has_side_effects=*/b.getUnitAttr(),
                  /*is_align_stack=*/UnitAttr(),
                  LLVM::TailCallKindAttr::get(b.getContext(),
                                              LLVM::tailcallkind::TailCallKind::None),
                  /*asm_dialect=*/LLVM::AsmDialectAttr(), /*operand_attrs=*/ArrayAttr())
                  .getResult(0)
            : LLVM::AtomicRMWOp::create(b, loc, LLVM::AtomicBinOp::add, syncWord, add,
                                        LLVM::AtomicOrdering::monotonic)
                  .getResult();
    Value topBit = c32(b, loc, int64_t(0x80000000u));
    auto wait = scf::WhileOp::create(b, loc, TypeRange{}, ValueRange{});
    {
      Block *before = b.createBlock(&wait.getBefore());
      b.setInsertionPointToEnd(before);
      Value now =
          releaseAcquire
              ? LLVM::LoadOp::create(b, loc, i32, syncWord, /*alignment=*/4,
                                     /*isVolatile=*/false, /*isNonTemporal=*/false,
                                     /*isInvariant=*/false, /*isInvariantGroup=*/false,
                                     LLVM::AtomicOrdering::acquire, "device")
              : LLVM::LoadOp::create(b, loc, i32, syncWord, /*alignment=*/4,
                                     /*isVolatile=*/true);
      Value flipped = arith::AndIOp::create(
          b, loc, arith::XOrIOp::create(b, loc, old, now), topBit);
      Value waiting = eq32(b, loc, flipped, c32(b, loc, 0));
      scf::ConditionOp::create(b, loc, waiting, ValueRange{});
      Block *after = b.createBlock(&wait.getAfter());
      b.setInsertionPointToEnd(after);
      scf::YieldOp::create(b, loc, ValueRange{});
    }
    b.setInsertionPointAfter(wait);
    if (!releaseAcquire)
      LLVM::FenceOp::create(b, loc, LLVM::AtomicOrdering::acq_rel, "device");
  }
  gpu::BarrierOp::create(b, loc);
}

Value CudaTarget::shuffleXor(OpBuilder &b, Location loc, Value v, int64_t offset,
                             int64_t width) const {
  auto shuffle = gpu::ShuffleOp::create(
      b, loc, v, arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(offset)),
      arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(width)),
      gpu::ShuffleMode::XOR);
  return shuffle.getShuffleResult();
}

Value CudaTarget::shuffleIdx(OpBuilder &b, Location loc, Value v, Value srcLane,
                             int64_t width) const {
  auto shuffle = gpu::ShuffleOp::create(
      b, loc, v, srcLane, arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(width)),
      gpu::ShuffleMode::IDX);
  return shuffle.getShuffleResult();
}

// Every device buffer is aligned (weights 256 B in the device pool, arena
// buffers 64 B) and accesses are natural: byte-wise accesses would be slow,
// and ptxas converts (instead of truncating) an f32 register stored with
// st.b8, which corrupted the low byte of every f32.
unsigned CudaTarget::alignmentOf(Type elt) const {
  if (isa<LLVM::LLVMPointerType>(elt))
    return 8;
  return std::max(1u, elt.getIntOrFloatBitWidth() / 8);
}

// An invariant load: the host writes the scalar between launches, no thread
// of a launch does (KernelBuilder's barriers rely on it).
Value CudaTarget::loadScalarArg(OpBuilder &b, Location loc, Value entry) const {
  auto load = LLVM::LoadOp::create(b, loc, b.getI64Type(), entry, /*alignment=*/8);
  load.setInvariant(true);
  return load;
}

// The f32 libdevice functions are up to 2 ULP off (__nv_expf is built on
// ex2.approx) and __nv_sqrtf becomes sqrt.approx, which LLVM then folds with
// 1/x into rsqrt.approx, so the two targets would differ by ULPs that the
// model's mixes amplify. So exp/log/sin/cos are evaluated in f64 (libdevice's
// f64 functions are within 1 ULP of f64, so the rounded f32 result is the
// correctly rounded one but for double-rounding ties) and sqrt as
// sqrt.rn.f64 (the f32 rounding of the f64 square root is exact-rounded).
Value CudaTarget::math(OpBuilder &b, Location loc, MathFn fn, Value x) const {
  Value wide = arith::ExtFOp::create(b, loc, b.getF64Type(), x);
  Value y = createMath(b, loc, fn, wide);
  return arith::TruncFOp::create(b, loc, x.getType(), y);
}

Value CudaTarget::decodeE4M3(OpBuilder &b, Location loc, Value byte) const {
  // cvt.rn.f16x2.e4m3x2 on the byte in both halves; e4m3 is exact in f16.
  Type i16 = b.getI16Type();
  Value wide = arith::ExtUIOp::create(b, loc, i16, byte);
  Value both = arith::OrIOp::create(
      b, loc, wide,
      arith::ShLIOp::create(b, loc, wide,
                            arith::ConstantOp::create(b, loc, b.getI16IntegerAttr(8))));
  Value pair = LLVM::BitcastOp::create(b, loc, VectorType::get({2}, b.getI8Type()), both);
  Value halves = NVVM::ConvertF8x2ToF16x2Op::create(
      b, loc, VectorType::get({2}, b.getF16Type()), pair, /*relu=*/false,
      Float8E4M3FNType::get(b.getContext()));
  Value h = LLVM::ExtractElementOp::create(
      b, loc, halves, arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(0)));
  return arith::ExtFOp::create(b, loc, b.getF32Type(), h);
}

Value CudaTarget::decodeE8M0(OpBuilder &b, Location loc, Value byte) const {
  // 2^(s-127) is the f32 with exponent field s; s = 0 is the subnormal
  // 2^-127 (0x00400000); s = 255 is NaN (exponent 255, non-zero mantissa).
  Type i32 = b.getI32Type();
  Value s = arith::ExtUIOp::create(b, loc, i32, byte);
  Value bits = arith::ShLIOp::create(b, loc, s, c32(b, loc, 23));
  bits = arith::SelectOp::create(b, loc, eq32(b, loc, s, c32(b, loc, 0)),
                                 c32(b, loc, 0x00400000), bits);
  bits = arith::SelectOp::create(b, loc, eq32(b, loc, s, c32(b, loc, 255)),
                                 c32(b, loc, 0x7FC00000), bits);
  return arith::BitcastOp::create(b, loc, b.getF32Type(), bits);
}

Value CudaTarget::decodeE2M1(OpBuilder &b, Location loc, Value nibble) const {
  // e2m1: bit 3 sign, bits 2..1 exponent (bias 1), bit 0 mantissa:
  // e = 0: m * 0.5; else (1 + m/2) * 2^(e-1). Integer ops only (the e2m1
  // cvt needs sm_100a).
  Type i32 = b.getI32Type();
  Value n = arith::ExtUIOp::create(b, loc, i32, nibble);
  Value e = arith::AndIOp::create(
      b, loc, arith::ShRUIOp::create(b, loc, n, c32(b, loc, 1)), c32(b, loc, 3));
  Value m = arith::AndIOp::create(b, loc, n, c32(b, loc, 1));
  // Value in halves: e = 0 -> m; e >= 1 -> (2 + m) << (e - 1).
  Value normal = arith::ShLIOp::create(
      b, loc, arith::AddIOp::create(b, loc, m, c32(b, loc, 2)),
      arith::SubIOp::create(b, loc, e, c32(b, loc, 1)));
  Value halves = arith::SelectOp::create(b, loc, eq32(b, loc, e, c32(b, loc, 0)), m, normal);
  Value asF32 = arith::SIToFPOp::create(b, loc, b.getF32Type(), halves);
  Value mag = arith::MulFOp::create(
      b, loc, asF32,
      arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0.5f)));
  Value negative = eq32(b, loc, arith::AndIOp::create(b, loc, n, c32(b, loc, 8)),
                        c32(b, loc, 8));
  return arith::SelectOp::create(b, loc, negative,
                                 arith::NegFOp::create(b, loc, mag), mag);
}

// One ld.v4.f32 of PTX. A vector load in LLVM IR whose only users are its
// element extracts is split into scalar loads by LLVM's optimiser (which
// made a warp's x reads in dotRows 32 separate 4-byte accesses per segment,
// the L1 cache's wavefronts the bound of the FFN kernels); inline PTX keeps
// it whole. Not volatile, no side effects: it may be moved or dropped like
// any load.
void CudaTarget::loadF32x4(OpBuilder &b, Location loc, Value ptr, Value out[4]) const {
  MLIRContext *ctx = b.getContext();
  Type f32 = b.getF32Type();
  auto four = LLVM::LLVMStructType::getLiteral(ctx, {f32, f32, f32, f32});
  auto asmOp = LLVM::InlineAsmOp::create(
      b, loc, four, ValueRange{ptr}, b.getStringAttr("ld.v4.f32 {$0, $1, $2, $3}, [$4];"),
      b.getStringAttr("=f,=f,=f,=f,l"), /*has_side_effects=*/UnitAttr(),
      /*is_align_stack=*/UnitAttr(), LLVM::TailCallKindAttr::get(ctx, LLVM::tailcallkind::TailCallKind::None),
      /*asm_dialect=*/LLVM::AsmDialectAttr(), /*operand_attrs=*/ArrayAttr());
  for (int64_t i = 0; i < 4; ++i)
    out[i] = LLVM::ExtractValueOp::create(b, loc, asmOp.getResult(0), i);
}

// ld.global.nc (the read-only path) with L1::no_allocate, so that a
// weight stream, each byte read once, does not evict the x vector the
// warps read again and again from L1, and L2::256B, whole 256-byte lines
// from memory. (Generic pointers of global memory are global addresses.)
bool CudaTarget::loadStreamed(OpBuilder &b, Location loc, Value ptr, int64_t words,
                              SmallVectorImpl<Value> &out) const {
  if (words != 1 && words != 4)
    return false;
  MLIRContext *ctx = b.getContext();
  Type i32 = b.getI32Type();
  std::string text, constraints;
  Type result = i32;
  if (words == 1) {
    text = "ld.global.nc.L1::no_allocate.L2::256B.b32 $0, [$1];";
    constraints = "=r,l";
  } else {
    text = "ld.global.nc.L1::no_allocate.L2::256B.v4.b32 {$0, $1, $2, $3}, [$4];";
    constraints = "=r,=r,=r,=r,l";
    result = LLVM::LLVMStructType::getLiteral(ctx, {i32, i32, i32, i32});
  }
  auto asmOp = LLVM::InlineAsmOp::create(
      b, loc, result, ValueRange{ptr}, b.getStringAttr(text), b.getStringAttr(constraints),
      /*has_side_effects=*/UnitAttr(), /*is_align_stack=*/UnitAttr(),
      LLVM::TailCallKindAttr::get(ctx, LLVM::tailcallkind::TailCallKind::None),
      /*asm_dialect=*/LLVM::AsmDialectAttr(), /*operand_attrs=*/ArrayAttr());
  out.clear();
  if (words == 1) {
    out.push_back(asmOp.getResult(0));
    return true;
  }
  for (int64_t i = 0; i < 4; ++i)
    out.push_back(LLVM::ExtractValueOp::create(b, loc, asmOp.getResult(0), i));
  return true;
}

// One cvt.rn.bf16x2.f32 (F2FP.BF16.F32.PACK_AB) for both values: two
// cvt.rn.bf16.f32 (F2F, a quarter-rate conversion each) and the shift and
// or that join them were a fifth of the fast prefill experts' instructions
// and 41 % of their stall samples. The same rounding (nearest even).
Value CudaTarget::packBf16x2(OpBuilder &b, Location loc, Value lo, Value hi) const {
  MLIRContext *ctx = b.getContext();
  auto asmOp = LLVM::InlineAsmOp::create(
      b, loc, b.getI32Type(), ValueRange{hi, lo},
      b.getStringAttr("cvt.rn.bf16x2.f32 $0, $1, $2;"), b.getStringAttr("=r,f,f"),
      /*has_side_effects=*/UnitAttr(), /*is_align_stack=*/UnitAttr(),
      LLVM::TailCallKindAttr::get(ctx, LLVM::tailcallkind::TailCallKind::None),
      /*asm_dialect=*/LLVM::AsmDialectAttr(), /*operand_attrs=*/ArrayAttr());
  return asmOp.getResult(0);
}

void CudaTarget::mmaBf16(OpBuilder &b, Location loc, ArrayRef<Value> a, ArrayRef<Value> bFrag,
                         ArrayRef<Value> c, Value d[4]) const {
  Type f32 = b.getF32Type();
  auto four = LLVM::LLVMStructType::getLiteral(b.getContext(), {f32, f32, f32, f32});
  auto mma = NVVM::MmaOp::create(
      b, loc, four, a, bFrag, c, /*shape=*/{16, 8, 16}, /*b1Op=*/std::nullopt,
      /*intOverflow=*/std::nullopt,
      std::array<NVVM::MMATypes, 2>{NVVM::MMATypes::bf16, NVVM::MMATypes::bf16},
      std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row, NVVM::MMALayout::col});
  for (int64_t i = 0; i < 4; ++i)
    d[i] = LLVM::ExtractValueOp::create(b, loc, mma.getResult(), i);
}

void CudaTarget::mmaF16(OpBuilder &b, Location loc, ArrayRef<Value> a, ArrayRef<Value> bFrag,
                        ArrayRef<Value> c, Value d[4]) const {
  // The f16 operands are vector<2xf16> registers: the i32 words as they are.
  Type f32 = b.getF32Type(), h2 = VectorType::get({2}, b.getF16Type());
  auto halves = [&](ArrayRef<Value> words) {
    SmallVector<Value> v;
    for (Value w : words)
      v.push_back(LLVM::BitcastOp::create(b, loc, h2, w));
    return v;
  };
  auto four = LLVM::LLVMStructType::getLiteral(b.getContext(), {f32, f32, f32, f32});
  auto mma = NVVM::MmaOp::create(
      b, loc, four, halves(a), halves(bFrag), c, /*shape=*/{16, 8, 16}, /*b1Op=*/std::nullopt,
      /*intOverflow=*/std::nullopt,
      std::array<NVVM::MMATypes, 2>{NVVM::MMATypes::f16, NVVM::MMATypes::f16},
      std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row, NVVM::MMALayout::col});
  for (int64_t i = 0; i < 4; ++i)
    d[i] = LLVM::ExtractValueOp::create(b, loc, mma.getResult(), i);
}

Value CudaTarget::selectBytes(OpBuilder &b, Location loc, Value lo, Value hi,
                              uint32_t selector) const {
  MLIRContext *ctx = b.getContext();
  std::string text = "prmt.b32 $0, $1, $2, " + std::to_string(selector & 0x7777) + ";";
  auto asmOp = LLVM::InlineAsmOp::create(
      b, loc, b.getI32Type(), ValueRange{lo, hi}, b.getStringAttr(text),
      b.getStringAttr("=r,r,r"), /*has_side_effects=*/UnitAttr(),
      /*is_align_stack=*/UnitAttr(),
      LLVM::TailCallKindAttr::get(ctx, LLVM::tailcallkind::TailCallKind::None),
      /*asm_dialect=*/LLVM::AsmDialectAttr(), /*operand_attrs=*/ArrayAttr());
  return asmOp.getResult(0);
}

// Two prmt.b32 pick bytes (i, i + 4) of the eight into 16-bit pairs, and
// one cvt.rn.f16x2.e4m3x2 a pair converts them (e4m3 is exact in f16).
bool CudaTarget::decodeE4M3x8F16x2(OpBuilder &b, Location loc, Value w0, Value w1,
                                   Value out[4]) const {
  MLIRContext *ctx = b.getContext();
  Type i32 = b.getI32Type();
  auto four = LLVM::LLVMStructType::getLiteral(ctx, {i32, i32, i32, i32});
  auto asmOp = LLVM::InlineAsmOp::create(
      b, loc, four, ValueRange{w0, w1},
      b.getStringAttr("{\n"
                      ".reg .b32 t;\n"
                      ".reg .b16 lo, hi;\n"
                      "prmt.b32 t, $4, $5, 0x5140;\n"
                      "mov.b32 {lo, hi}, t;\n"
                      "cvt.rn.f16x2.e4m3x2 $0, lo;\n"
                      "cvt.rn.f16x2.e4m3x2 $1, hi;\n"
                      "prmt.b32 t, $4, $5, 0x7362;\n"
                      "mov.b32 {lo, hi}, t;\n"
                      "cvt.rn.f16x2.e4m3x2 $2, lo;\n"
                      "cvt.rn.f16x2.e4m3x2 $3, hi;\n"
                      "}"),
      b.getStringAttr("=r,=r,=r,=r,r,r"), /*has_side_effects=*/UnitAttr(),
      /*is_align_stack=*/UnitAttr(),
      LLVM::TailCallKindAttr::get(ctx, LLVM::tailcallkind::TailCallKind::None),
      /*asm_dialect=*/LLVM::AsmDialectAttr(), /*operand_attrs=*/ArrayAttr());
  for (int64_t i = 0; i < 4; ++i)
    out[i] = LLVM::ExtractValueOp::create(b, loc, asmOp.getResult(0), i);
  return true;
}

bool CudaTarget::decodeE4M3Pair(OpBuilder &b, Location loc, Value pair,
                                Value out[2]) const {
  // One cvt.rn.f16x2.e4m3x2 for both codes (the low byte to the low half);
  // e4m3 is exact in f16, and f16 -> f32 is exact.
  Value bytes = LLVM::BitcastOp::create(b, loc, VectorType::get({2}, b.getI8Type()), pair);
  Value halves = NVVM::ConvertF8x2ToF16x2Op::create(
      b, loc, VectorType::get({2}, b.getF16Type()), bytes, /*relu=*/false,
      Float8E4M3FNType::get(b.getContext()));
  for (int i = 0; i < 2; ++i)
    out[i] = arith::ExtFOp::create(
        b, loc, b.getF32Type(),
        Value(LLVM::ExtractElementOp::create(b, loc, halves, c32(b, loc, i))));
  return true;
}

int CudaTarget::decodeE2M1Word(OpBuilder &b, Location loc, Value word,
                               SmallVectorImpl<Value> &out) const {
  // Code c as the f16 with bits (c & 8) << 12 | (c & 7) << 9: the sign, and
  // the exponent and mantissa bits where f16 keeps its own, so the f16 is
  // the e2m1 value times 2^-14 for every code (e = 0 lands on f16's
  // subnormals, 0.5 * 2^-14 = 2^-15 = 1 << 9 subnormal units); f16 -> f32
  // is exact. Each code's high byte is made in place (`even`: the codes of
  // the low nibbles, `odd`: of the high ones, five integer instructions for
  // all eight), then one prmt a word puts codes j and j + 4 into the high
  // bytes of its halves (the placement of the fast path's MMA decode).
  auto c32v = [&](uint32_t v) { return c32(b, loc, int64_t(int32_t(v))); };
  auto shl = [&](Value v, int64_t by) -> Value {
    return arith::ShLIOp::create(b, loc, v, c32(b, loc, by));
  };
  auto band = [&](Value v, uint32_t m) -> Value {
    return arith::AndIOp::create(b, loc, v, c32v(m));
  };
  auto bor = [&](Value x, Value y) -> Value { return arith::OrIOp::create(b, loc, x, y); };
  Value even = bor(band(shl(word, 4), 0x80808080u), band(shl(word, 1), 0x0E0E0E0Eu));
  Value odd = bor(band(word, 0x80808080u),
                  band(arith::ShRUIOp::create(b, loc, word, c32(b, loc, 3)), 0x0E0E0E0Eu));
  Value zero = c32(b, loc, 0);
  // Word j: codes j (low half) and j + 4; codes 2i and 2i + 4 are bytes
  // i and i + 2 of `even`, codes 2i + 1 and 2i + 5 those of `odd`.
  std::array<Value, 4> words = {selectBytes(b, loc, zero, even, 0x6040),
                                selectBytes(b, loc, zero, odd, 0x6040),
                                selectBytes(b, loc, zero, even, 0x7050),
                                selectBytes(b, loc, zero, odd, 0x7050)};
  out.assign(8, Value());
  for (int64_t j = 0; j < 4; ++j) {
    Value halves =
        LLVM::BitcastOp::create(b, loc, VectorType::get({2}, b.getF16Type()), words[j]);
    for (int i = 0; i < 2; ++i)
      out[j + 4 * i] = arith::ExtFOp::create(
          b, loc, b.getF32Type(),
          Value(LLVM::ExtractElementOp::create(b, loc, halves, c32(b, loc, i))));
  }
  return 14;
}

void CudaTarget::prefetchL2(OpBuilder &b, Location loc, Value ptr, Value bytes) const {
  if (smVersion(chip) < 90) // the bulk prefetch is sm_90's
    return;
  // cp.async.bulk.prefetch.L2.global: one instruction per chunk, the copy
  // engine fetches it while the kernel goes on.
  Value global = LLVM::AddrSpaceCastOp::create(
      b, loc, LLVM::LLVMPointerType::get(b.getContext(), 1), ptr);
  Value size = arith::TruncIOp::create(b, loc, b.getI32Type(), bytes);
  NVVM::CpAsyncBulkPrefetchOp::create(b, loc, global, size, /*l2CacheHint=*/Value());
}

void CudaTarget::buildLowerToLLVM(OpPassManager &pm) const {
  // Kernels to NVVM: structured control flow first, then the GPU, arith,
  // math and LLVM-pointer code through the ConvertToLLVM interfaces.
  OpPassManager &gpm = pm.nest<gpu::GPUModuleOp>();
  gpm.addPass(createSCFToControlFlowPass());
  gpm.addPass(createConvertGpuOpsToNVVMOps());
  gpm.addPass(createCanonicalizerPass());
  gpm.addPass(createCSEPass());
  gpm.addPass(createReconcileUnrealizedCastsPass());
}

void CudaTarget::registerDialects(DialectRegistry &registry) const {
  registry.insert<arith::ArithDialect, cf::ControlFlowDialect, gpu::GPUDialect,
                  LLVM::LLVMDialect, math::MathDialect, NVVM::NVVMDialect,
                  scf::SCFDialect>();
  NVVM::registerNVVMTargetInterfaceExternalModels(registry);
  registerBuiltinDialectTranslation(registry);
  registerGPUDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  registerNVVMDialectTranslation(registry);
}

// activemask, then match.any.sync over those lanes, in one asm statement
// (with side effects: it must stay where the lanes that run it are the
// active ones).
Value CudaTarget::matchActiveLanes(OpBuilder &b, Location loc, Value v) const {
  MLIRContext *ctx = b.getContext();
  auto asmOp = LLVM::InlineAsmOp::create(
      b, loc, b.getI32Type(), ValueRange{v},
      b.getStringAttr("{\n.reg .b32 m;\nactivemask.b32 m;\nmatch.any.sync.b32 $0, $1, m;\n}"),
      b.getStringAttr("=r,r"), /*has_side_effects=*/b.getUnitAttr(),
      /*is_align_stack=*/UnitAttr(),
      LLVM::TailCallKindAttr::get(ctx, LLVM::tailcallkind::TailCallKind::None),
      /*asm_dialect=*/LLVM::AsmDialectAttr(), /*operand_attrs=*/ArrayAttr());
  return asmOp.getResult(0);
}
