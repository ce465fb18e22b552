#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs every system dependency of Compressa (Debian 12). Idempotent: does
# nothing when all packages are present. CUDA 13 is expected at /usr/local/cuda
# (only needed for the CUDA target; the CPU build and the tests run without it).
set -euo pipefail

packages=(
  # LLVM/MLIR 22: headers, libMLIR.so, mlir-tblgen, lit, FileCheck, not
  libmlir-22-dev mlir-22-tools llvm-22-dev llvm-22-tools
  # The artifact format
  libflatbuffers-dev flatbuffers-compiler
  # Unit tests
  googletest libgtest-dev
  # Build tools: ninja, ccache for rebuilds, lld for fast links of libMLIR users
  cmake ninja-build ccache lld g++ binutils python3
  # The tokenizer's pre-tokenizer regexes (PCRE2, found with pkg-config)
  libpcre2-dev pkg-config
  # scripts/ci-sanitize.sh: clang with the ASan/UBSan and libFuzzer runtimes
  clang-22 libclang-rt-22-dev
  # The artifact digest (SHA-256 through OpenSSL's libcrypto)
  libssl-dev
  # compressa-serve: HTTP/SSE (cpp-httplib) and JSON (nlohmann); the runtime
  # tools' argument parser (CLI11). All header-only.
  libcpp-httplib-dev nlohmann-json3-dev libcli11-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
else
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install-deps: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  echo "install-deps: done"
fi

# Test-only reference, not a runtime dependency: the Hugging Face `tokenizers`
# library, against which test/tokenizer/live-reference.test checks the
# runtime's tokenizer (REQUIRES: hf-tokenizers; skipped without it).
if ! python3 -c 'import tokenizers' 2>/dev/null; then
  echo "install-deps: installing the tokenizers Python package (test reference)"
  python3 -m pip install --quiet 'tokenizers==0.23.3' ||
    echo "install-deps: WARNING: could not pip-install tokenizers;" \
         "test/tokenizer/live-reference.test will be UNSUPPORTED" >&2
fi

# Test-only client, not a runtime dependency: the `openai` Python package,
# with which test/serve drives compressa-serve (REQUIRES: openai).
if ! python3 -c 'import openai' 2>/dev/null; then
  echo "install-deps: installing the openai Python package (test client)"
  python3 -m pip install --quiet 'openai==3.57.0' ||
    echo "install-deps: WARNING: could not pip-install openai;" \
         "the compressa-serve tests will be UNSUPPORTED" >&2
fi
