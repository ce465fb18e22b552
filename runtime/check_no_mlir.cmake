# SPDX-License-Identifier: Apache-2.0
# cmake -DLIB=<libcompressa_runtime.so> [-DREADELF=readelf] [-DSRC_DIR=<runtime/>]
#   -P check_no_mlir.cmake
# Fails unless the library's dynamic section lists libc.so and no libMLIR* or
# libLLVM*, and (with SRC_DIR) no runtime source includes an mlir/ or llvm/
# header. An empty readelf output fails too, so the check cannot pass vacuously.

if(NOT LIB OR NOT EXISTS "${LIB}")
  message(FATAL_ERROR "check_no_mlir: library '${LIB}' does not exist (pass -DLIB=)")
endif()
if(NOT READELF)
  set(READELF readelf)
endif()

execute_process(COMMAND "${READELF}" -d "${LIB}"
  OUTPUT_VARIABLE dynamic ERROR_VARIABLE errors RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "check_no_mlir: '${READELF} -d ${LIB}' failed (${rc}): ${errors}")
endif()
string(STRIP "${dynamic}" dynamic)
if(dynamic STREQUAL "")
  message(FATAL_ERROR "check_no_mlir: '${READELF} -d ${LIB}' printed nothing")
endif()

# Lines look like: 0x0000000000000001 (NEEDED)  Shared library: [libc.so.6]
string(REGEX MATCHALL "\\(NEEDED\\)[^\n]*\\[[^]\n]+\\]" needed_lines "${dynamic}")
set(needed "")
foreach(line IN LISTS needed_lines)
  string(REGEX REPLACE ".*\\[([^]]+)\\]" "\\1" lib "${line}")
  list(APPEND needed "${lib}")
endforeach()
message(STATUS "NEEDED by ${LIB}: ${needed}")

set(found_libc FALSE)
foreach(lib IN LISTS needed)
  if(lib MATCHES "^lib(MLIR|LLVM)")
    message(FATAL_ERROR "check_no_mlir: ${LIB} links ${lib}; the runtime must not link MLIR/LLVM")
  endif()
  if(lib MATCHES "^libc\\.so")
    set(found_libc TRUE)
  endif()
endforeach()
if(NOT found_libc)
  message(FATAL_ERROR "check_no_mlir: no NEEDED libc.so in '${READELF} -d ${LIB}'; "
                      "cannot trust this check. Output was:\n${dynamic}")
endif()

if(SRC_DIR)
  file(GLOB_RECURSE sources "${SRC_DIR}/*.h" "${SRC_DIR}/*.cc"
                            "${SRC_DIR}/*.cu" "${SRC_DIR}/*.cuh")
  if(NOT sources)
    message(FATAL_ERROR "check_no_mlir: no sources found under ${SRC_DIR}")
  endif()
  foreach(source IN LISTS sources)
    file(STRINGS "${source}" includes REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"](mlir|llvm)[-/]")
    if(includes)
      message(FATAL_ERROR "check_no_mlir: ${source} includes an MLIR/LLVM header: ${includes}")
    endif()
  endforeach()
  list(LENGTH sources count)
  message(STATUS "${count} runtime sources include no mlir/ or llvm/ header")
endif()
