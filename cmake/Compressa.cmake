# SPDX-License-Identifier: Apache-2.0
# The ways Compressa declares targets. Runtime targets must never link MLIR or
# LLVM (ARCHITECTURE.md decision 1): compressa_runtime_library refuses it.

# Sanitizers and libFuzzer instrumentation for every target (the options are
# declared in the top-level CMakeLists.txt; scripts/ci-sanitize.sh uses them).
if(COMPRESSA_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "COMPRESSA_FUZZ needs clang for libFuzzer, found "
      "${CMAKE_CXX_COMPILER_ID} (${CMAKE_CXX_COMPILER}); configure with "
      "-DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22")
  endif()
  if(NOT COMPRESSA_SANITIZE MATCHES "address")
    message(FATAL_ERROR "COMPRESSA_FUZZ needs COMPRESSA_SANITIZE to include "
      "address (e.g. address,undefined), found '${COMPRESSA_SANITIZE}'")
  endif()
endif()
if(COMPRESSA_SANITIZE)
  add_compile_options(-fsanitize=${COMPRESSA_SANITIZE} -fno-omit-frame-pointer
                      -fno-sanitize-recover=all -g)
  add_link_options(-fsanitize=${COMPRESSA_SANITIZE})
  # Sanitized shared libraries leave the sanitizer runtime's symbols to the
  # executable; HandleLLVMOptions' -z defs would refuse them.
  string(REPLACE "-Wl,-z,defs" "" CMAKE_SHARED_LINKER_FLAGS
         "${CMAKE_SHARED_LINKER_FLAGS}")
  message(STATUS "Sanitizers: ${COMPRESSA_SANITIZE}")
endif()
if(COMPRESSA_FUZZ)
  # Coverage for libFuzzer in every library; the fuzz targets themselves add
  # -fsanitize=fuzzer (compressa_fuzz_target in test/fuzz).
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()

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

# compressa_cc_test(NAME SRCS ... DEPS ... [LABELS ...] [PROPERTIES NAME VALUE ...])
# PROPERTIES: more test properties of every discovered test case.
function(compressa_cc_test name)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS;LABELS;PROPERTIES" ${ARGN})
  add_executable(${name} ${ARG_SRCS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/unittests)
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST
                       PROPERTIES LABELS "${ARG_LABELS}" ${ARG_PROPERTIES})
endfunction()

# compressa_flatbuffer(NAME SCHEMA)
# Runs the packaged flatc (--cpp --scoped-enums) on SCHEMA (a path relative to
# the current source directory, or absolute) and defines the INTERFACE target
# NAME that exposes the generated header and links flatbuffers::flatbuffers.
# The header lands beside the schema's path in the build tree, so
# runtime/format/artifact.fbs gives
#   #include "runtime/format/artifact_generated.h"
# (TOOLCHAIN.md §5: Debian ships no flatbuffers_generate_headers helper.)
function(compressa_flatbuffer name schema)
  get_filename_component(schema_abs "${schema}" ABSOLUTE
                         BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  get_filename_component(schema_dir "${schema_abs}" DIRECTORY)
  get_filename_component(schema_stem "${schema_abs}" NAME_WE)
  file(RELATIVE_PATH rel_dir "${PROJECT_SOURCE_DIR}" "${schema_dir}")
  if(rel_dir MATCHES "^\\.\\.")
    message(FATAL_ERROR "compressa_flatbuffer(${name}): schema ${schema_abs} is outside the source tree")
  endif()
  set(out_dir "${PROJECT_BINARY_DIR}/${rel_dir}")
  set(out_header "${out_dir}/${schema_stem}_generated.h")
  add_custom_command(OUTPUT "${out_header}"
    COMMAND ${CMAKE_COMMAND} -E make_directory "${out_dir}"
    COMMAND flatbuffers::flatc --cpp --scoped-enums -o "${out_dir}" "${schema_abs}"
    DEPENDS "${schema_abs}" flatbuffers::flatc
    COMMENT "Generating ${rel_dir}/${schema_stem}_generated.h with flatc"
    VERBATIM)
  add_custom_target(${name}_gen DEPENDS "${out_header}")
  add_library(${name} INTERFACE)
  add_dependencies(${name} ${name}_gen)
  target_include_directories(${name} INTERFACE "${PROJECT_BINARY_DIR}")
  target_link_libraries(${name} INTERFACE flatbuffers::flatbuffers)
endfunction()

# compressa_fuzz_target(NAME SRCS ... DEPS ...)
# A libFuzzer target (COMPRESSA_FUZZ): SRCS define LLVMFuzzerTestOneInput;
# compiled and linked with -fsanitize=fuzzer on top of the sanitizers, into
# build/fuzz/. Its name is recorded in the global property
# COMPRESSA_FUZZ_TARGETS.
function(compressa_fuzz_target name)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SRCS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  set_target_properties(${name} PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
  set_property(GLOBAL APPEND PROPERTY COMPRESSA_FUZZ_TARGETS ${name})
endfunction()
