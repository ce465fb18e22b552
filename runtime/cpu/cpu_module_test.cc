// SPDX-License-Identifier: Apache-2.0
// Tests of CpuModule: loading the test kernels from memory, calling one,
// symbol errors, and refusing bytes that are not a loadable shared object.
#include "runtime/cpu/cpu_module.h"

#include "runtime/testing/toy_artifact.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace compressa {
namespace {

/// e_ident[EI_CLASS] (elf.h is not included here to keep the test plain).
constexpr size_t kElfClassOffset = 4;

class CpuModuleTest : public ::testing::Test {
protected:
  void SetUp() override {
    bytes = toy::testKernelsBytes();
    ASSERT_GT(bytes.size(), 64u) << "test kernels not found";
  }
  std::vector<uint8_t> bytes;
};

/// Runs toy_embed through `fn` on ids {5, 9} at start position 3 and checks
/// the hidden rows and the state it leaves.
void checkEmbed(CpuModule::KernelFn fn) {
  int64_t ids[2] = {5, 9};
  int64_t state[2] = {100, 3};
  int64_t hidden[8] = {};
  void *argv[5] = {ids, reinterpret_cast<void *>(intptr_t(2)),
                   reinterpret_cast<void *>(intptr_t(3)), state, hidden};
  fn(argv);
  EXPECT_EQ(state[0], 114);
  EXPECT_EQ(state[1], 5);
  int64_t expected[8] = {5, 3, 105, 4, 9, 4, 114, 5};
  for (int i = 0; i < 8; ++i)
    EXPECT_EQ(hidden[i], expected[i]) << i;
}

TEST_F(CpuModuleTest, LoadsAndCallsAKernel) {
  auto module = CpuModule::load(bytes.data(), bytes.size(), "kernels");
  ASSERT_TRUE(module.ok()) << module.status().toString();
  EXPECT_FALSE((*module)->loadedFrom().empty());
  auto fn = (*module)->lookup("toy_embed");
  ASSERT_TRUE(fn.ok()) << fn.status().toString();
  checkEmbed(*fn);
  EXPECT_TRUE((*module)->lookup("toy_head").ok());
}

TEST_F(CpuModuleTest, TemporaryFileFallback) {
  auto module = CpuModule::load(bytes.data(), bytes.size(), "kernels",
                                CpuModule::LoadMethod::TempFile);
  ASSERT_TRUE(module.ok()) << module.status().toString();
  EXPECT_NE((*module)->loadedFrom().find("compressa-kernels-"),
            std::string::npos);
  // The file is gone once loaded; the mapping stays usable.
  EXPECT_FALSE(std::filesystem::exists((*module)->loadedFrom()));
  auto fn = (*module)->lookup("toy_embed");
  ASSERT_TRUE(fn.ok()) << fn.status().toString();
  checkEmbed(*fn);
}

TEST_F(CpuModuleTest, ModulesAreIndependentAndReloadable) {
  // Two loads of the same bytes coexist; after one is destroyed a new load
  // (which may reuse its descriptor number) still yields a working module.
  auto first = CpuModule::load(bytes.data(), bytes.size(), "first");
  auto second = CpuModule::load(bytes.data(), bytes.size(), "second");
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_NE((*first)->loadedFrom(), (*second)->loadedFrom());
  auto fnFirst = (*first)->lookup("toy_embed");
  auto fnSecond = (*second)->lookup("toy_embed");
  ASSERT_TRUE(fnFirst.ok() && fnSecond.ok());
  EXPECT_NE(*fnFirst, *fnSecond);
  first = Status(StatusCode::Internal, "dropped");
  auto third = CpuModule::load(bytes.data(), bytes.size(), "third");
  ASSERT_TRUE(third.ok()) << third.status().toString();
  auto fnThird = (*third)->lookup("toy_embed");
  ASSERT_TRUE(fnThird.ok());
  checkEmbed(*fnThird);
  checkEmbed(*fnSecond);
}

TEST_F(CpuModuleTest, MissingSymbol) {
  auto module = CpuModule::load(bytes.data(), bytes.size(), "model.cpa: cpu");
  ASSERT_TRUE(module.ok());
  auto fn = (*module)->lookup("layers_0_attn");
  ASSERT_FALSE(fn.ok());
  EXPECT_EQ(fn.status().code(), StatusCode::NotFound);
  EXPECT_NE(fn.status().message().find("model.cpa: cpu"), std::string::npos);
  EXPECT_NE(fn.status().message().find("'layers_0_attn'"), std::string::npos)
      << fn.status().message();
}

TEST_F(CpuModuleTest, SymbolOfAnotherLibraryIsRefused) {
  auto module = CpuModule::load(bytes.data(), bytes.size(), "kernels");
  ASSERT_TRUE(module.ok());
  // `malloc` is libc's: dlsym may find it through the object's dependencies,
  // but it is not a kernel of the object.
  auto fn = (*module)->lookup("malloc");
  ASSERT_FALSE(fn.ok());
  EXPECT_NE(fn.status().message().find("'malloc'"), std::string::npos)
      << fn.status().message();
}

TEST_F(CpuModuleTest, NotAnElfFile) {
  std::string text = "#!/bin/sh\necho hi\n";
  auto module = CpuModule::load(reinterpret_cast<const uint8_t *>(text.data()),
                                text.size(), "x.cpa: cpu.shared_object");
  ASSERT_FALSE(module.ok());
  EXPECT_NE(module.status().message().find(
                "x.cpa: cpu.shared_object: not an ELF shared object"),
            std::string::npos)
      << module.status().message();
  uint8_t two[2] = {0x7f, 'E'};
  EXPECT_FALSE(CpuModule::load(two, 2, "short").ok());
}

TEST_F(CpuModuleTest, TruncatedElfFile) {
  for (size_t keep : {size_t(40), size_t(200), bytes.size() / 2,
                      bytes.size() - 1}) {
    auto module = CpuModule::load(bytes.data(), keep, "cut.cpa: cpu");
    ASSERT_FALSE(module.ok()) << keep;
    EXPECT_NE(module.status().message().find("cut.cpa: cpu: truncated ELF "
                                             "file"),
              std::string::npos)
        << module.status().message();
  }
}

TEST_F(CpuModuleTest, WrongElfKind) {
  std::vector<uint8_t> other = bytes;
  other[kElfClassOffset] = 1; // ELFCLASS32
  auto module = CpuModule::load(other.data(), other.size(), "k");
  ASSERT_FALSE(module.ok());
  EXPECT_NE(module.status().message().find("not a 64-bit little-endian ELF"),
            std::string::npos)
      << module.status().message();
  other = bytes;
  other[16] = 2; // e_type = ET_EXEC
  other[17] = 0;
  module = CpuModule::load(other.data(), other.size(), "k");
  ASSERT_FALSE(module.ok());
  EXPECT_NE(module.status().message().find("is not a shared object"),
            std::string::npos)
      << module.status().message();
  other = bytes;
  other[18] = 0x28; // e_machine = EM_ARM
  other[19] = 0;
  module = CpuModule::load(other.data(), other.size(), "k");
  ASSERT_FALSE(module.ok());
  EXPECT_NE(module.status().message().find("does not match this host"),
            std::string::npos)
      << module.status().message();
}

} // namespace
} // namespace compressa
