#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Two compilers, one GPU run: are the logits the same bits, and which is
# faster? For changes that move work between threads, warps or launches
# without changing any operation (issues 11, 12).
#
#   scripts/compiler-ab.sh prepare DIR OLD [CONTEXTS]   (here: MLIR, no GPU)
#       OLD: a compressa-compile binary of the code before the change (e.g.
#       a copy of build/bin/compressa-compile saved before rebuilding); the
#       new one is build/bin/compressa-compile (AB_NEW_CC: another). Compiles with both, for
#       cuda:sm_90a:
#       - test/e2e/Inputs/flash-dims-16e-small.json (V4-Flash's layer kinds
#         at hidden 512), --weight-format=official --max-context 20000 (the
#         indexer's radix selection runs), --numerics=exact and fast;
#       - for each context C of CONTEXTS (default none; e.g. "65600
#         1048704"), deepseek-v4-flash --layers 2:6 --numerics=fast
#         --prefill-max-tokens=4096 --max-batch 1 --max-context C.
#       Packs them with compressa-run, compressa-bench, a make-random-model
#       without LLVM libraries and the runtime as DIR/pack.txz (DIR ignored
#       by git, e.g. .compiler-ab).
#   scripts/compiler-ab.sh run DIR                      (on the GPU machine)
#       generates the small model's weights (seed 1, 300 tokens), runs each
#       small artifact with --prefill 251 and --prefill 0 (token by token)
#       and compares old and new logits byte for byte (cmp), exact against
#       the reference within 1e-3, and prints fast's distance from the
#       reference, old and new (AB_FAST_CHANGES=1: a change meant to move
#       fast's bits, whose differing logits then count as no failure); then benchmarks each Flash artifact
#       (AB_CONTEXTS="C ...": only those of the prepared contexts),
#       old then new: compressa-bench --weights random --seed 1 --prompt C'
#       --context C' (C' the power of two below C), --profile; the prefill
#       kernels' table of each run is printed, the whole output goes to $OUT
#       when set. Exits 1 if any logits differ.
set -uo pipefail
mode=${1:-}
dir=${2:-}
root=$(cd "$(dirname "$0")/.." && pwd)
chip=${COMPRESSA_CUDA_CHIP:-sm_90a}
config=$root/test/e2e/Inputs/flash-dims-16e-small.json

usage() {
  sed -n '3,33p' "$0" >&2
  exit 2
}

prepare() {
  local old=${1:-} contexts=${2:-}
  [ -n "$dir" ] && [ -x "$old" ] || usage
  local new=${AB_NEW_CC:-$root/build/bin/compressa-compile}
  set -e
  rm -rf "$dir" && mkdir -p "$dir"/art "$dir"/bin "$dir"/lib
  cp "$config" "$dir"/config.json
  for which in old new; do
    local cc=$old
    [ $which = new ] && cc=$new
    for n in exact fast; do
      "$cc" "$config" --target=cuda:$chip --weight-format=official --numerics=$n \
        --max-context 20000 -o "$dir"/art/$which-$n.cpa > /dev/null 2>&1 ||
        { echo "error: $cc failed on $config ($n)" >&2; exit 1; }
    done
    for ctx in $contexts; do
      "$cc" deepseek-v4-flash --layers 2:6 --target=cuda:$chip --numerics=fast \
        --prefill-max-tokens=4096 --max-batch 1 --max-context "$ctx" \
        -o "$dir"/art/$which-flash-$ctx.cpa > /dev/null 2>&1 ||
        { echo "error: $cc failed on deepseek-v4-flash at --max-context $ctx" >&2; exit 1; }
    done
    echo "compiled the $which artifacts"
  done
  echo "$contexts" > "$dir"/contexts
  cp "$root"/build/bin/compressa-run "$root"/build/bin/compressa-bench "$dir"/bin/
  "$root"/scripts/make-random-model-static.sh "$dir"/bin/make-random-model
  cp -L "$root"/build/runtime/libcompressa_runtime.so* "$dir"/lib/
  cp -L "$(ldconfig -p | awk '/libpcre2-8.so.0 .*x86-64/ {print $NF; exit}')" "$dir"/lib/
  cp -L "$(ldconfig -p | awk '/libgomp.so.1 .*x86-64/ {print $NF; exit}')" "$dir"/lib/
  (cd "$dir" && tar cf - art bin lib | xz -6 -T2 > pack.txz && rm -rf art bin lib)
  set +e
  du -sh "$dir"
}

run() {
  [ -n "$dir" ] && [ -f "$dir"/pack.txz ] || usage
  [ -d "$dir"/art ] || (cd "$dir" && tar xJf pack.txz) || { echo "FAIL: unpacking"; return 1; }
  export LD_LIBRARY_PATH="$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  local work failures=0
  work=$(mktemp -d)
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/device: /'
  "$dir"/bin/make-random-model "$dir"/config.json "$work"/m --seed 1 --tokens 300 --format quant \
    > /dev/null || { echo "FAIL: make-random-model"; return 1; }
  for n in exact fast; do
    for p in 251 0; do
      for which in old new; do
        "$dir"/bin/compressa-run "$dir"/art/$which-$n.cpa --weights "$work"/m \
          --input-ids "$work"/m/inputs.safetensors --prefill $p \
          --dump-logits "$work"/$which-$n-$p.st > "$work"/$which-$n-$p.log 2>&1 ||
          { echo "FAIL $which-$n --prefill $p: compressa-run"; tail -3 "$work"/$which-$n-$p.log; }
      done
      if cmp -s "$work"/old-$n-$p.st "$work"/new-$n-$p.st; then
        echo "$n --prefill $p: old and new logits byte-identical"
      elif [ $n = fast ] && [ "${AB_FAST_CHANGES:-0}" = 1 ]; then
        echo "$n --prefill $p: old and new logits differ (expected: AB_FAST_CHANGES=1)"
      else
        echo "FAIL $n --prefill $p: old and new logits differ"; failures=$((failures + 1))
      fi
      if [ $n = fast ]; then
        for which in old new; do
          python3 "$root"/scripts/numerics-check.py "$work"/$which-fast-$p.st logits \
            "$work"/m/reference.safetensors logits --label "$which fast --prefill $p vs reference"
        done
      fi
    done
  done
  python3 "$root"/test/e2e/Inputs/safetensors_tool.py compare "$work"/new-exact-251.st logits \
    "$work"/m/reference.safetensors logits 1e-3 && echo "new exact vs reference: within 1e-3" ||
    failures=$((failures + 1))
  for ctx in ${AB_CONTEXTS:-$(cat "$dir"/contexts)}; do
    local prompt=1
    while [ $((prompt * 2)) -le "$ctx" ]; do prompt=$((prompt * 2)); done
    for which in old new; do
      local out=${OUT:-$work}/$which-flash-$ctx.txt
      echo "== $which, V4-Flash 2:6, --prompt $prompt"
      "$dir"/bin/compressa-bench "$dir"/art/$which-flash-$ctx.cpa --weights random --seed 1 \
        --prompt $prompt --context $prompt --gen 4 --repeat 1 --no-warmup --profile > "$out" 2>&1 ||
        { echo "FAIL: compressa-bench"; tail -3 "$out"; failures=$((failures + 1)); continue; }
      grep -E "^prefill |device memory" "$out"
      sed -n '/profile: prefill kernels/,/of prefill in kernels/p' "$out" | head -14
      grep "of prefill in kernels" "$out"
    done
  done
  rm -rf "$work"
  echo "failures: $failures"
  [ $failures -eq 0 ]
}

case $mode in
  prepare) shift 2 2>/dev/null; prepare "$@" ;;
  run) run ;;
  *) usage ;;
esac
