#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Links a copy of build/bin/make-random-model to DEST that loads no LLVM/MLIR
# shared library (the GPU hosts lack them): make-random-model links LLVM's
# Support library (the config parser's llvm::Expected) through libLLVM.so;
# the copy takes the static libLLVMSupport.a instead (the same objects, from
# the build's own link command). Used by real-dims-check.sh and fd-check.sh.
#
#   scripts/make-random-model-static.sh DEST
set -euo pipefail
dest=$(realpath -m "$1")
root=$(cd "$(dirname "$0")/.." && pwd)
link=$(cd "$root"/build && ninja -t commands bin/make-random-model | tail -1)
link=$(printf '%s' "$link" | sed \
  -e "s#-o bin/make-random-model#-o $dest#" \
  -e 's#[^ ]*/libMLIR\.so[^ ]*##g' \
  -e 's#[^ ]*/libLLVM\.so[^ ]*#/usr/lib/llvm-22/lib/libLLVMSupport.a /usr/lib/llvm-22/lib/libLLVMDemangle.a#g' \
  -e 's#-Wl,-rpath,[^ ]*##g')
(cd "$root"/build && eval "$link")
if ldd "$dest" | grep -q 'libLLVM\|libMLIR'; then
  echo "make-random-model-static: $dest still needs libLLVM/libMLIR" >&2
  exit 1
fi
