# SPDX-License-Identifier: Apache-2.0
# The ways Compressa declares targets. Runtime targets must never link MLIR or
# LLVM (ARCHITECTURE.md decision 1): compressa_runtime_library refuses it.

set(COMPRESSA_MODELS_DIR "${PROJECT_SOURCE_DIR}/models" CACHE PATH
    "Directory that compressa-compile searches for model names")

# compressa_cc_library(NAME SRCS ... DEPS ... MLIR_DEPS ...)
# A compiler-side library; MLIR libraries go through mlir_target_link_libraries
# so that MLIR_LINK_MLIR_DYLIB switches all of them to libMLIR.so at once.
function(compressa_cc_library name)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS;MLIR_DEPS;TBLGEN" ${ARGN})
  add_library(${name} STATIC ${ARG_SRCS})
  if(ARG_TBLGEN)
    add_dependencies(${name} ${ARG_TBLGEN})
  endif()
  if(ARG_MLIR_DEPS)
    mlir_target_link_libraries(${name} PUBLIC ${ARG_MLIR_DEPS})
  endif()
  if(ARG_DEPS)
    target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  endif()
endfunction()

# compressa_runtime_library(NAME SRCS ... DEPS ... [SHARED])
# A runtime library. Fails the configure step if any dependency names MLIR/LLVM.
function(compressa_runtime_library name)
  cmake_parse_arguments(ARG "SHARED" "" "SRCS;DEPS" ${ARGN})
  foreach(dep IN LISTS ARG_DEPS)
    if(dep MATCHES "MLIR|LLVM")
      message(FATAL_ERROR "runtime target ${name} must not link ${dep} (runtime has no MLIR/LLVM)")
    endif()
  endforeach()
  if(ARG_SHARED)
    add_library(${name} SHARED ${ARG_SRCS})
  else()
    add_library(${name} STATIC ${ARG_SRCS})
  endif()
  set_target_properties(${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
endfunction()

# compressa_cc_test(NAME SRCS ... DEPS ... [LABELS ...])
function(compressa_cc_test name)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SRCS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/unittests)
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST PROPERTIES LABELS "${ARG_LABELS}")
endfunction()
