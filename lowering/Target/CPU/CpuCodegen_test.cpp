// SPDX-License-Identifier: Apache-2.0
// compileToSharedObject: a module a kernel (each part compiled on its own,
// in parallel, memoised by its bitcode) links into one shared object whose
// kernels run; modules it cannot split (a function calling another, a
// mutable global) are compiled whole.
#include "lowering/Target/CPU/CpuCodegen.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <dlfcn.h>
#include <string>

using namespace mlir;

namespace {

// Two kernels reading one constant table, a third writing its argument.
constexpr const char *kSplittable = R"mlir(
module {
  llvm.mlir.global internal constant @tab(dense<[1.5, 2.5, 3.5, 4.5]> : tensor<4xf32>) : !llvm.array<4 x f32>
  llvm.func @k0(%p: !llvm.ptr) {
    %t = llvm.mlir.addressof @tab : !llvm.ptr
    %q = llvm.getelementptr %t[0, 1] : (!llvm.ptr) -> !llvm.ptr, !llvm.array<4 x f32>
    %v = llvm.load %q : !llvm.ptr -> f32
    llvm.store %v, %p : f32, !llvm.ptr
    llvm.return
  }
  llvm.func @k1(%p: !llvm.ptr) {
    %t = llvm.mlir.addressof @tab : !llvm.ptr
    %q = llvm.getelementptr %t[0, 3] : (!llvm.ptr) -> !llvm.ptr, !llvm.array<4 x f32>
    %v = llvm.load %q : !llvm.ptr -> f32
    %x = llvm.load %p : !llvm.ptr -> f32
    %s = llvm.fadd %x, %v : f32
    llvm.store %s, %p : f32, !llvm.ptr
    llvm.return
  }
  llvm.func @k2(%p: !llvm.ptr) {
    %c = llvm.mlir.constant(7.0 : f32) : f32
    llvm.store %c, %p : f32, !llvm.ptr
    llvm.return
  }
}
)mlir";

// A kernel calling a helper, and a mutable global two kernels share.
constexpr const char *kWhole = R"mlir(
module {
  llvm.mlir.global internal @count(0 : i32) : i32
  llvm.func internal @twice(%x: f32) -> f32 {
    %r = llvm.fadd %x, %x : f32
    llvm.return %r : f32
  }
  llvm.func @bump(%p: !llvm.ptr) {
    %g = llvm.mlir.addressof @count : !llvm.ptr
    %n = llvm.load %g : !llvm.ptr -> i32
    %one = llvm.mlir.constant(1 : i32) : i32
    %m = llvm.add %n, %one : i32
    llvm.store %m, %g : i32, !llvm.ptr
    %x = llvm.load %p : !llvm.ptr -> f32
    %y = llvm.call @twice(%x) : (f32) -> f32
    llvm.store %y, %p : f32, !llvm.ptr
    llvm.return
  }
  llvm.func @count_of(%p: !llvm.ptr) {
    %g = llvm.mlir.addressof @count : !llvm.ptr
    %n = llvm.load %g : !llvm.ptr -> i32
    llvm.store %n, %p : i32, !llvm.ptr
    llvm.return
  }
}
)mlir";

using Kernel = void (*)(void *);

class CpuCodegenTest : public ::testing::Test {
protected:
  void SetUp() override {
    DialectRegistry registry;
    compressa::cpu::registerCpuCodegenDialects(registry);
    ctx.appendDialectRegistry(registry);
    ctx.loadAllAvailableDialects();
  }
  /// The shared object of `source`, or "" with a test failure.
  std::string compile(const char *source) {
    OwningOpRef<ModuleOp> mod = parseSourceString<ModuleOp>(source, &ctx);
    if (!mod) {
      ADD_FAILURE() << "the test module does not parse";
      return "";
    }
    compressa::cpu::CpuCodegenOptions options;
    std::string triple;
    FailureOr<std::string> so = compressa::cpu::compileToSharedObject(*mod, options, triple);
    if (failed(so)) {
      ADD_FAILURE() << "compileToSharedObject failed";
      return "";
    }
    return *so;
  }
  /// dlopen of `so` (written to a temporary file), or null.
  void *load(const std::string &so) {
    llvm::SmallString<128> path;
    int fd = -1;
    if (llvm::sys::fs::createTemporaryFile("cpu_codegen_test", "so", fd, path))
      return nullptr;
    {
      llvm::raw_fd_ostream os(fd, /*shouldClose=*/true);
      os.write(so.data(), so.size());
    }
    void *handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    llvm::sys::fs::remove(path);
    return handle;
  }
  /// Kernel `name` of the loaded object `h` (a test failure if missing).
  static Kernel kernel(void *h, const char *name) {
    auto k = reinterpret_cast<Kernel>(dlsym(h, name));
    if (!k)
      ADD_FAILURE() << "no kernel " << name;
    return k;
  }
  MLIRContext ctx;
};

TEST_F(CpuCodegenTest, KernelsCompiledApartRunFromOneObject) {
  std::string so = compile(kSplittable);
  ASSERT_FALSE(so.empty());
  void *h = load(so);
  ASSERT_NE(h, nullptr) << dlerror();
  Kernel k0 = kernel(h, "k0");
  Kernel k1 = kernel(h, "k1");
  Kernel k2 = kernel(h, "k2");
  ASSERT_TRUE(k0 && k1 && k2);
  float v = 0;
  k0(&v);
  EXPECT_EQ(v, 2.5f);
  k1(&v);
  EXPECT_EQ(v, 7.0f); // 2.5 + 4.5
  k2(&v);
  EXPECT_EQ(v, 7.0f);
  dlclose(h);
}

TEST_F(CpuCodegenTest, HelpersAndMutableGlobalsKeepTheModuleWhole) {
  std::string so = compile(kWhole);
  ASSERT_FALSE(so.empty());
  void *h = load(so);
  ASSERT_NE(h, nullptr) << dlerror();
  Kernel bump = kernel(h, "bump");
  Kernel countOf = kernel(h, "count_of");
  ASSERT_TRUE(bump && countOf);
  float v = 1.25f;
  bump(&v);
  bump(&v);
  EXPECT_EQ(v, 5.0f);
  int n = -1;
  countOf(&n);
  EXPECT_EQ(n, 2); // one counter, seen by both kernels
  dlclose(h);
}

TEST_F(CpuCodegenTest, OneThreadAndTheMemoGiveWorkingObjects) {
  std::string first = compile(kSplittable);
  std::string again = compile(kSplittable); // every part from the memo
  ASSERT_FALSE(first.empty());
  EXPECT_EQ(first, again);
  // One kernel changed (k2 stores 9): its part is compiled anew, on one
  // thread, the others come from the memo.
  std::string other(kSplittable);
  other.replace(other.find("7.0 : f32"), 9, "9.0 : f32");
  setenv("COMPRESSA_CODEGEN_THREADS", "1", 1);
  std::string changed = compile(other.c_str());
  unsetenv("COMPRESSA_CODEGEN_THREADS");
  ASSERT_FALSE(changed.empty());
  EXPECT_NE(changed, first);
  void *h = load(changed);
  ASSERT_NE(h, nullptr) << dlerror();
  Kernel k1 = kernel(h, "k1");
  Kernel k2 = kernel(h, "k2");
  ASSERT_TRUE(k1 && k2);
  float v = 0;
  k2(&v);
  EXPECT_EQ(v, 9.0f);
  k1(&v);
  EXPECT_EQ(v, 13.5f);
  dlclose(h);
}

} // namespace
