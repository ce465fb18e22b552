#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The runtime-only install, checked the way a deploy host uses it:
#   scripts/ci-runtime-install.sh [FULL_BUILD_DIR]
# 1. configures build-runtime-only with COMPRESSA_RUNTIME_ONLY=ON while the
#    MLIR and LLVM CMake packages cannot be found
#    (CMAKE_DISABLE_FIND_PACKAGE_MLIR/LLVM), Release;
# 2. builds only what is installed (libcompressa_runtime and the runtime
#    tools, no tests) and runs `cmake --install` into a temporary prefix;
# 3. checks the installed files, and that no installed binary or library
#    needs an LLVM or MLIR library (their NEEDED entries);
# 4. compiles a CPU artifact of models/tiny-c with FULL_BUILD_DIR's
#    compressa-compile (default: build, the README build) and runs the
#    INSTALLED compressa-run on it, from a copy of the prefix moved elsewhere
#    (RUNPATH $ORIGIN/../lib), greedy, and compares its text with the full
#    build's compressa-run; the installed compressa-tokenize --chat prints a
#    prompt.
# Exits non-zero on any failure. Environment: COMPRESSA_RUNTIME_BUILD_DIR
# (default build-runtime-only), COMPRESSA_BUILD_LOCK (a file to flock around
# configure and build, default /tmp/compressa-build.lock; empty: none).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
full=$(cd "${1:-$root/build}" && pwd)
build=${COMPRESSA_RUNTIME_BUILD_DIR:-$root/build-runtime-only}
lock=${COMPRESSA_BUILD_LOCK-/tmp/compressa-build.lock}
start=$(date +%s)

die() { echo "ci-runtime-install: $*" >&2; exit 1; }
locked() {
  if [ -n "$lock" ] && command -v flock >/dev/null; then
    flock "$lock" "$@"
  else
    "$@"
  fi
}
[ -x "$full/bin/compressa-compile" ] ||
  die "$full/bin/compressa-compile not found: build the full tree first (README)"
[ -x "$full/bin/compressa-run" ] || die "$full/bin/compressa-run not found"

echo "== configure $build (runtime only, MLIR/LLVM packages hidden)"
mkdir -p "$build"
locked cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCOMPRESSA_RUNTIME_ONLY=ON \
  -DCMAKE_DISABLE_FIND_PACKAGE_MLIR=ON -DCMAKE_DISABLE_FIND_PACKAGE_LLVM=ON \
  >"$build/configure.log" 2>&1 || { cat "$build/configure.log"; die "configure failed"; }
# The configure must not have found MLIR or LLVM.
if grep -qE '^(MLIR_DIR|LLVM_DIR):PATH=/' "$build/CMakeCache.txt"; then
  die "the runtime-only configure found MLIR/LLVM: $(grep -E '^(MLIR|LLVM)_DIR' "$build/CMakeCache.txt" | tr '\n' ' ')"
fi

# Nor may any compile line use their headers.
if grep -qE -- '-(I|isystem )[^ ]*(llvm|mlir)' "$build/compile_commands.json"; then
  die "a runtime-only compile line uses LLVM/MLIR headers ($build/compile_commands.json)"
fi

echo "== build the installed targets"
targets=(compressa_runtime compressa-run compressa-bench compressa-tokenize)
[ -d "$root/tools/compressa-serve" ] && targets+=(compressa-serve)
locked cmake --build "$build" --target "${targets[@]}" || die "build failed"

work=$(mktemp -d "${TMPDIR:-/tmp}/compressa-runtime-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "== install into $work/prefix"
cmake --install "$build" --prefix "$work/prefix" >"$work/install.log" ||
  { cat "$work/install.log"; die "cmake --install failed"; }

# The prefix is moved after the install: the tools must find the library
# relative to themselves.
mv "$work/prefix" "$work/moved"
prefix=$work/moved
for file in bin/compressa-run bin/compressa-bench bin/compressa-tokenize \
            lib/libcompressa_runtime.so \
            include/compressa/runtime/session/engine.h \
            include/compressa/runtime/chat/chat_request.h \
            include/compressa/runtime/format/artifact_generated.h; do
  [ -e "$prefix/$file" ] || die "not installed: $file"
done
if [ -d "$root/tools/compressa-serve" ]; then
  [ -x "$prefix/bin/compressa-serve" ] || die "not installed: bin/compressa-serve"
fi
for file in "$prefix"/bin/* "$prefix"/lib/*.so*; do
  needed=$(readelf -d "$file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  if echo "$needed" | grep -qiE 'llvm|mlir'; then
    die "$file needs $(echo "$needed" | grep -iE 'llvm|mlir' | tr '\n' ' ')"
  fi
done
echo "installed: $(cd "$prefix" && find . -type f | wc -l) files; no LLVM/MLIR among the NEEDED libraries"

echo "== the installed compressa-run on a CPU artifact of the full build"
"$full/bin/compressa-compile" "$root/models/tiny-c" --target=cpu -o "$work/tiny-c.cpa" ||
  die "compressa-compile failed"
run_args=("$work/tiny-c.cpa" --weights "$root/models/tiny-c/quant"
          --tokenizer "$root/models/tokenizers/tiny-768.json"
          -p "Once upon a time" -n 12 --greedy)
"$prefix/bin/compressa-run" "${run_args[@]}" >"$work/installed.out" 2>"$work/installed.err" ||
  { cat "$work/installed.err"; die "the installed compressa-run failed"; }
"$full/bin/compressa-run" "${run_args[@]}" >"$work/full.out" 2>/dev/null ||
  die "the full build's compressa-run failed"
cmp -s "$work/installed.out" "$work/full.out" ||
  die "the installed compressa-run printed '$(cat "$work/installed.out")', the full build '$(cat "$work/full.out")'"
[ -s "$work/installed.out" ] || die "the installed compressa-run printed nothing"
echo "compressa-run (installed) = compressa-run (full build): $(head -c 80 "$work/installed.out" | tr '\n' ' ')"

printf '{"messages": [{"role": "user", "content": "Hi"}]}' |
  "$prefix/bin/compressa-tokenize" "$root/models/tokenizers/tiny-768.json" --chat >"$work/prompt" ||
  die "the installed compressa-tokenize --chat failed"
printf '<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜></think>' | cmp -s - "$work/prompt" ||
  die "the installed compressa-tokenize --chat printed '$(cat "$work/prompt")'"
echo "ci-runtime-install: passed ($(($(date +%s) - start)) s)"
