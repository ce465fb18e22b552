# SPDX-License-Identifier: Apache-2.0
# What `cmake --install` puts under the prefix, in every build mode (the
# runtime-only build, COMPRESSA_RUNTIME_ONLY=ON, is the one for deploy hosts:
# no LLVM/MLIR; README "Deploying precompiled binaries"):
#   bin/      compressa-run, compressa-bench, compressa-tokenize,
#             compressa-serve (when it is built)
#   lib/      libcompressa_runtime.so (the tools find it through their
#             RUNPATH $ORIGIN/../lib, so the prefix can be moved or copied)
#   include/compressa/runtime/...  the runtime's headers, included as
#             "runtime/..." with -I<prefix>/include/compressa, and the
#             artifact schema's generated header.
# The compiler tools (compressa-compile, compressa-opt) are not installed:
# artifacts are compiled on the build host and shipped.
include(GNUInstallDirs)

set(compressa_installed_tools)
foreach(tool compressa-run compressa-bench compressa-tokenize compressa-serve)
  if(TARGET ${tool})
    list(APPEND compressa_installed_tools ${tool})
    set_target_properties(${tool} PROPERTIES
      INSTALL_RPATH "$ORIGIN/../${CMAKE_INSTALL_LIBDIR}")
  endif()
endforeach()
install(TARGETS ${compressa_installed_tools}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS compressa_runtime
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/runtime/
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/compressa/runtime
  FILES_MATCHING PATTERN "*.h"
  PATTERN "testing" EXCLUDE)
install(FILES ${PROJECT_BINARY_DIR}/runtime/format/artifact_generated.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/compressa/runtime/format)
