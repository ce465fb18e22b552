//===- KernelTestHarness.h - Run one dsv4 op as a CPU kernel ----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// Test support for the CPU target: parses a function holding one dsv4 op,
// emits its kernel exactly as the artifact serializer does (argv slots 0..2 =
// tokens, start position, scratch; then one slot per operand from outside:
// tensors and decode state -> a pointer, weights -> data (+ scale) pointers,
// expert stacks -> a table of 2E pointers; then one slot per tensor result),
// compiles it with compileToSharedObject, loads the shared object and calls it
// on caller-owned buffers.
//
//   MLIR text ──parse──▶ op ──emitOp──▶ func @k(!llvm.ptr) ──▶ .so ──dlopen──▶ k(argv)
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_LOWERING_CPU_KERNELTESTHARNESS_H
#define COMPRESSA_LOWERING_CPU_KERNELTESTHARNESS_H

#include "dialects/DSV4/IR/DSV4Ops.h"
#include "lowering/Target/CPU/CpuCodegen.h"
#include "lowering/Target/CPU/CpuTarget.h"
#include "mlir/Pass/PassManager.h"
#include "lowering/DSV4ToKernels/KernelBuilder.h"
#include "lowering/DSV4ToKernels/OpEmitters.h"
#include "lowering/TensorCore/Numerics.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/raw_ostream.h"

#include <dlfcn.h>

#include <cstdint>
#include <cstring>
#include <utility>
#include <random>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace compressa::cpu_test {

/// Replaces every `$KEY$` of `text` (the kernel tests' MLIR templates).
inline std::string subst(std::string text,
                         std::initializer_list<std::pair<std::string, std::string>> vars) {
  for (const auto &[key, value] : vars) {
    std::string k = "$" + key + "$";
    for (size_t p = text.find(k); p != std::string::npos; p = text.find(k, p + value.size()))
      text.replace(p, k.size(), value);
  }
  return text;
}

/// Round-to-nearest-even bf16 bits of a (finite) float.
inline uint16_t toBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFF + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

/// f rounded to bf16 (nearest even), as a float.
inline float roundToBf16(float f) {
  uint32_t u = uint32_t(toBf16(f)) << 16;
  std::memcpy(&f, &u, 4);
  return f;
}

/// Seeded random test data.
class Rng {
public:
  explicit Rng(uint32_t seed) : gen(seed) {}
  double uniform(double lo, double hi) {
    return std::uniform_real_distribution<double>(lo, hi)(gen);
  }
  int64_t integer(int64_t lo, int64_t hi) { // inclusive
    return std::uniform_int_distribution<int64_t>(lo, hi)(gen);
  }

private:
  std::mt19937 gen;
};

/// Bytes of guard before and after every GuardedBuffer.
constexpr size_t kGuardBytes = 64;
constexpr uint8_t kGuardByte = 0xA5;

/// Memory for a kernel argument, 64-byte aligned, between two guard zones
/// that must survive the kernel (an out-of-bounds store would change them).
class GuardedBuffer {
public:
  GuardedBuffer() = default;
  explicit GuardedBuffer(size_t bytes) { resize(bytes); }

  void resize(size_t bytes) {
    size = bytes;
    storage.assign(bytes + 2 * kGuardBytes + 64, kGuardByte);
    uintptr_t base = reinterpret_cast<uintptr_t>(storage.data()) + kGuardBytes;
    offset = llvm::alignTo(base, 64) - reinterpret_cast<uintptr_t>(storage.data());
    std::memset(storage.data() + offset, 0, size);
  }
  void *data() { return storage.data() + offset; }
  template <class T> T *as() { return reinterpret_cast<T *>(data()); }
  size_t bytes() const { return size; }
  /// Whether the guard zones right before and after the data are intact.
  bool guardsIntact() const {
    for (size_t i = offset - kGuardBytes; i < offset; ++i)
      if (storage[i] != kGuardByte)
        return false;
    for (size_t i = offset + size; i < offset + size + kGuardBytes; ++i)
      if (storage[i] != kGuardByte)
        return false;
    return true;
  }

private:
  std::vector<uint8_t> storage;
  size_t offset = 0, size = 0;
};

/// What a kernel operand binds to: a tensor or state pointer (`data`), a
/// weight (`data` and, if quantized, `scale`), or an expert table (`data`).
/// Index operands (start_pos) take an empty Arg: they read slot 1.
struct Arg {
  void *data = nullptr;
  void *scale = nullptr;
};

/// One dsv4 op compiled into a CPU kernel and loaded.
class OpKernel {
public:
  OpKernel() = default;
  OpKernel(const OpKernel &) = delete;
  OpKernel &operator=(const OpKernel &) = delete;
  ~OpKernel() {
    if (handle)
      dlclose(handle);
  }

  /// Parses `mlirText` (a module with one func.func whose body holds
  /// dsv4.param ops and exactly one other op before the return), emits and
  /// loads its kernel. `maxContext` sizes compressed entries and rings like
  /// the artifact's maximum context. On failure returns false and sets
  /// `error`.
  bool compile(const std::string &mlirText, int64_t maxContext, std::string &error);

  /// Calls the kernel for `tokens` tokens at `startPos`. `operands[i]` binds
  /// operand i of the op, `results[j]` result j (ignored for results that
  /// are decode state: they alias their operand). The scratch is filled with
  /// NaN bytes first, so a kernel that reads scratch it did not write fails.
  /// Returns false if the scratch guard zones were overwritten.
  bool run(int64_t tokens, int64_t startPos, const std::vector<Arg> &operands,
           const std::vector<void *> &results);

  int64_t numOperands() const { return static_cast<int64_t>(operandSlot.size()); }
  int64_t numResults() const { return static_cast<int64_t>(resultSlot.size()); }

private:
  std::vector<int> operandSlot, operandScaleSlot, resultSlot;
  int numSlots = 3;
  int64_t scratchPerToken = 0, scratchFixed = 0;
  void *handle = nullptr;
  void (*entry)(void **) = nullptr;
};

inline bool OpKernel::compile(const std::string &mlirText, int64_t maxContext,
                              std::string &error) {
  using namespace mlir;
  using namespace mlir::compressa::cpu;
  DialectRegistry registry;
  registerCpuCodegenDialects(registry);
  registry.insert<dsv4::DSV4Dialect>();
  MLIRContext ctx(registry, MLIRContext::Threading::DISABLED);
  ctx.loadAllAvailableDialects();
  std::string diagnostics;
  llvm::raw_string_ostream diagOs(diagnostics);
  ScopedDiagnosticHandler handler(&ctx, [&](Diagnostic &d) {
    diagOs << d.getLocation() << ": " << d << "\n";
    return success();
  });

  OwningOpRef<ModuleOp> source = parseSourceString<ModuleOp>(mlirText, &ctx);
  if (!source) {
    error = "cannot parse the test module:\n" + diagnostics;
    return false;
  }
  Operation *op = nullptr;
  int others = 0;
  source->walk([&](Operation *o) {
    if (isa<ModuleOp, func::FuncOp, func::ReturnOp, dsv4::ParamOp>(o))
      return;
    op = o;
    ++others;
  });
  if (others != 1) {
    error = "the test function must hold exactly one op besides dsv4.param";
    return false;
  }

  // The kernel, bound like SerializeArtifact.cpp's Serializer::kernel.
  OwningOpRef<ModuleOp> kernels = ModuleOp::create(UnknownLoc::get(&ctx));
  Location loc = op->getLoc();
  OpBuilder b(&ctx);
  b.setInsertionPointToEnd(kernels->getBody());
  Type ptr = LLVM::LLVMPointerType::get(&ctx);
  auto fn = func::FuncOp::create(b, loc, "k", b.getFunctionType({ptr}, {}));
  Block *block = fn.addEntryBlock();
  b.setInsertionPointToStart(block);
  CpuTarget target;
  KernelBuilder kb(b, loc, *kernels, target);
  Value argv = block->getArgument(0);
  auto slotPtr = [&](int64_t slot) { return kb.loadPtr(argv, kb.c(slot)); };

  EmitContext ec;
  ec.maxContext = maxContext;
  ec.tokens = LLVM::PtrToIntOp::create(b, loc, kb.i64(), slotPtr(0));
  ec.startPos = LLVM::PtrToIntOp::create(b, loc, kb.i64(), slotPtr(1));
  Value scratchBase = slotPtr(2);
  useScratchArea(kb, ec, scratchBase, scratchPerToken, scratchFixed);

  numSlots = 3;
  operandSlot.assign(op->getNumOperands(), -1);
  operandScaleSlot.assign(op->getNumOperands(), -1);
  resultSlot.assign(op->getNumResults(), -1);
  auto addSlot = [&]() -> std::pair<int, Value> {
    int slot = numSlots++;
    return {slot, slotPtr(slot)};
  };
  auto eltOf = [](Value v) { return cast<RankedTensorType>(v.getType()).getElementType(); };

  for (auto [i, operand] : llvm::enumerate(op->getOperands())) {
    if (ec.tensors.count(operand) || ec.weights.count(operand) ||
        ec.experts.count(operand) || ec.states.count(operand)) {
      error = "operand #" + std::to_string(i) + " repeats an earlier operand";
      return false;
    }
    if (auto param = dyn_cast_or_null<dsv4::ParamOp>(operand.getDefiningOp())) {
      dsv4::WeightType wt = param.getType();
      ArrayRef<int64_t> shape = wt.getShape();
      auto [slot, value] = addSlot();
      operandSlot[i] = slot;
      if (wt.getRank() == 3) {
        ec.experts[operand] =
            ExpertView{value, shape[0], wt.getElementType(), shape[1], shape[2]};
        continue;
      }
      WeightView view;
      view.data = value;
      if (wt.isQuantized()) {
        auto [scaleSlot, scaleValue] = addSlot();
        operandScaleSlot[i] = scaleSlot;
        view.scale = scaleValue;
      }
      view.elt = wt.getElementType();
      view.rows = wt.getRank() == 2 ? shape[0] : 1;
      view.cols = shape.back();
      ec.weights[operand] = view;
      continue;
    }
    if (isa<IndexType>(operand.getType()))
      continue; // start_pos: slot 1.
    auto [slot, value] = addSlot();
    operandSlot[i] = slot;
    if (isa<RankedTensorType>(operand.getType()))
      ec.tensors[operand] = View{value, eltOf(operand)};
    else
      ec.states[operand] = value;
  }
  for (auto [j, r] : llvm::enumerate(op->getResults())) {
    if (isa<RankedTensorType>(r.getType())) {
      auto [slot, value] = addSlot();
      resultSlot[j] = slot;
      ec.tensors[r] = View{value, eltOf(r)};
      continue;
    }
    Value base;
    if (auto up = dyn_cast<dsv4::WindowUpdateOp>(op))
      base = up.getRing();
    else if (auto cmp = dyn_cast<dsv4::CompressOp>(op))
      base = j == 0 ? cmp.getState() : cmp.getEntries();
    if (!base || !ec.states.count(base)) {
      error = "result #" + std::to_string(j) + " cannot be placed";
      return false;
    }
    ec.states[r] = ec.states[base];
  }
  // dsv4.numerics = "fast" on the op: its --numerics=fast code.
  ec.fastLinear = mlir::compressa::usesFastLinear(op);
  ec.fp8Decode = mlir::compressa::usesFp8Experts(op);
  // dsv4.exact_mma on the op (tests only): the exact experts' tensor-core
  // program (Emitter::expertsExactMma), on the CPU its twin.
  ec.exactMma = op->hasAttr(mlir::dsv4::kExactMmaAttr);
  if (failed(emitOp(kb, op, ec))) {
    error = "emitOp failed:\n" + diagnostics;
    return false;
  }
  // The work-sharing discipline CUDA relies on, checked on the CPU too.
  if (kb.storedOutsideRegion()) {
    error = "the kernel stores outside a parallel or single region";
    return false;
  }
  func::ReturnOp::create(b, loc);
  if (failed(verify(*kernels))) {
    error = "the emitted kernel does not verify:\n" + diagnostics;
    return false;
  }

  CpuCodegenOptions options;
  std::string triple;
  {
    // The `llvm` stage of the CPU target, on this one-kernel module.
    PassManager pm(&ctx);
    CpuTarget::addLowerToLLVMPasses(pm);
    if (failed(pm.run(*kernels))) {
      error = "lowering the kernel to the LLVM dialect failed:\n" + diagnostics;
      return false;
    }
  }
  FailureOr<std::string> so = compileToSharedObject(*kernels, options, triple);
  if (failed(so)) {
    error = "compileToSharedObject failed:\n" + diagnostics;
    return false;
  }

  llvm::SmallString<128> path;
  int fd = -1;
  if (llvm::sys::fs::createTemporaryFile("cpu_kernels_test", "so", fd, path)) {
    error = "cannot create a temporary file";
    return false;
  }
  {
    llvm::raw_fd_ostream os(fd, /*shouldClose=*/true);
    os.write(so->data(), so->size());
  }
  handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  llvm::sys::fs::remove(path);
  if (!handle) {
    error = std::string("dlopen failed: ") + dlerror();
    return false;
  }
  entry = reinterpret_cast<void (*)(void **)>(dlsym(handle, "k"));
  if (!entry) {
    error = "the shared object has no symbol 'k'";
    return false;
  }
  return true;
}

inline bool OpKernel::run(int64_t tokens, int64_t startPos,
                          const std::vector<Arg> &operands,
                          const std::vector<void *> &results) {
  std::vector<void *> argv(numSlots, nullptr);
  GuardedBuffer scratch(static_cast<size_t>(scratchPerToken * tokens + scratchFixed));
  std::memset(scratch.data(), 0xFF, scratch.bytes()); // NaN floats
  argv[0] = reinterpret_cast<void *>(static_cast<intptr_t>(tokens));
  argv[1] = reinterpret_cast<void *>(static_cast<intptr_t>(startPos));
  argv[2] = scratch.data();
  for (size_t i = 0; i < operandSlot.size(); ++i) {
    if (operandSlot[i] >= 0)
      argv[operandSlot[i]] = i < operands.size() ? operands[i].data : nullptr;
    if (operandScaleSlot[i] >= 0)
      argv[operandScaleSlot[i]] = i < operands.size() ? operands[i].scale : nullptr;
  }
  for (size_t j = 0; j < resultSlot.size(); ++j)
    if (resultSlot[j] >= 0)
      argv[resultSlot[j]] = j < results.size() ? results[j] : nullptr;
  entry(argv.data());
  return scratch.guardsIntact();
}

} // namespace compressa::cpu_test

#endif // COMPRESSA_LOWERING_CPU_KERNELTESTHARNESS_H
