#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Correctness at real dimensions (issue 11, point 4): the CUDA target's logits
# on a V4-Flash-sized model against the C++ reference (test/reference).
#
# The case (test/e2e/Inputs/flash-dims-16e.json): every dimension of
# V4-Flash (models/deepseek-v4-flash/config.json) -- hidden 4096, 64 heads x
# 512 (rope 64), q_lora 1024, 8 output groups of rank 1024, window 128,
# indexer 64 heads x 128 with top-512, hc_mult 4, moe_intermediate 2048, 6
# routed experts per token + 1 shared, sqrtsoftplus routing, swiglu_limit 10,
# YaRN 16 / 65536 -- except: 16 routed experts (not 256), vocabulary 8192
# (not 129280: the LM head would dominate the reference's time), 2 layers
# (layer 0 CSA ratio 4 with the indexer and hash routing, num_hash_layers 1;
# layer 1 HCA ratio 128 with score routing), no MTP layer. Random weights in
# the official formats (FP8 e4m3 with 128x128 UE8M0 block scales, FP4 e2m1
# experts with 1x32 UE8M0 scales, BF16 rest; 872 MB), written by
# make-random-model with seed 1, which also runs the reference (float64, on
# every thread) over a random prompt of 2200 ids. 2200 tokens: the CSA
# layer's compressor holds (pos+1)/4 entries, more than top-512 from position
# 2051 on, so the indexer's selection really truncates at the last 149
# positions; the HCA layer holds 17 entries at the end. compressa-run prefills
# the first 2199 ids (in the artifact's prefill chunks, 64 by default) and
# decodes the last one; the logits of every position (or REAL_DIMS_POSITIONS)
# must be within 1e-3 of the reference's.
#
#   scripts/real-dims-check.sh prepare [DIR]   (here; default DIR .real-dims,
#       ignored by git, ~12 MB) compiles the artifact from the config alone
#       (--weight-format=official, --max-context 4096; packed as
#       DIR/model.cpa.xz) and copies make-random-model, compressa-run, the
#       runtime .so, libpcre2, libgomp, the config and
#       scripts/compare-logits.py into DIR.
#   scripts/real-dims-check.sh run [DIR]       (on the GPU machine, DIR
#       carried) generates the weights, inputs and reference logits there
#       (DIR/work, ~1 GB on disk, ~11 GB RAM), runs compressa-run
#       --dump-logits, compares; prints every phase's time and max |diff|
#       (overall, before the truncation, while it truncates, the decode
#       step); exit 0 when within 1e-3, else 1.
#
# With the device tool: prepare here, then
#   run, carry [".real-dims"], command: bash scripts/real-dims-check.sh run .real-dims
#
# Settings (environment; prepare records the case in DIR/case.env):
#   prepare: REAL_DIMS_SMALL=1   the scaled-down case flash-dims-16e-small.json
#                                (hidden 512, 8 heads x 128, top-16, window 32,
#                                V 1024, 300 tokens) to prove the script on a
#                                CPU; REAL_DIMS_TARGET (default cuda:sm_90a;
#                                cpu); REAL_DIMS_TOKENS, REAL_DIMS_SEED;
#                                REAL_DIMS_COMPILE_FLAGS (extra, e.g.
#                                --prefill-max-tokens=1024).
#   run:     REAL_DIMS_THREADS (reference threads; default nproc),
#            REAL_DIMS_POSITIONS (compare-logits.py spec; default all),
#            REAL_DIMS_RUN_FLAGS (extra compressa-run flags, e.g. --chunk 7).
set -uo pipefail
mode=${1:-}
dir=${2:-.real-dims}
root=$(cd "$(dirname "$0")/.." && pwd)

prepare() {
  local bin=$root/build/bin
  local small=${REAL_DIMS_SMALL:-0} target=${REAL_DIMS_TARGET:-cuda:sm_90a}
  local config=$root/test/e2e/Inputs/flash-dims-16e.json tokens=2200
  if [ "$small" = 1 ]; then
    config=$root/test/e2e/Inputs/flash-dims-16e-small.json
    tokens=300
  fi
  tokens=${REAL_DIMS_TOKENS:-$tokens}
  local seed=${REAL_DIMS_SEED:-1}
  rm -rf "$dir" && mkdir -p "$dir"/bin "$dir"/lib
  set -e
  cp "$config" "$dir"/config.json
  # The artifact needs only the config: the official formats are named.
  "$bin"/compressa-compile "$dir"/config.json --target="$target" \
    --weight-format=official --max-context=4096 ${REAL_DIMS_COMPILE_FLAGS:-} \
    -o "$dir"/model.cpa
  cp "$bin"/compressa-run "$dir"/bin/
  # A copy of make-random-model that loads no LLVM/MLIR library.
  "$root"/scripts/make-random-model-static.sh "$dir"/bin/make-random-model
  cp -L "$root"/build/runtime/libcompressa_runtime.so* "$dir"/lib/
  # The binaries' libraries beyond libc/libstdc++: the tokenizer's PCRE2 and
  # OpenMP (make-random-model's threads).
  cp -L "$(ldconfig -p | awk '/libpcre2-8.so.0 .*x86-64/ {print $NF; exit}')" "$dir"/lib/
  cp -L "$(ldconfig -p | awk '/libgomp.so.1 .*x86-64/ {print $NF; exit}')" "$dir"/lib/
  cp "$root"/scripts/compare-logits.py "$dir"/
  # The CSA layer's top-k truncates once (pos + 1) / ratio > index_topk.
  local trunc
  trunc=$(python3 -c "
import json; c = json.load(open('$dir/config.json'))
ratio = min(r for r in c['compress_ratios'] if r > 0)
print(ratio * (c['index_topk'] + 1) - 1)")
  cat > "$dir"/case.env <<EOF
config=$(basename "$config")
target=$target
tokens=$tokens
seed=$seed
trunc=$trunc
compile_flags="--weight-format=official --max-context=4096 ${REAL_DIMS_COMPILE_FLAGS:-}"
EOF
  set +e
  if [ "$trunc" -ge "$tokens" ]; then
    echo "warning: $tokens tokens never truncate the CSA top-k (from position $trunc)" >&2
  fi
  cat "$dir"/case.env
  # The artifact packed (a third of its size: it travels to the GPU machine
  # with the working tree).
  xz -T0 -f "$dir"/model.cpa
  du -sh "$dir"
}

run() {
  [ -f "$dir"/case.env ] || { echo "error: $dir/case.env missing: run '$0 prepare $dir' first" >&2; return 2; }
  # shellcheck disable=SC1091
  . "$dir"/case.env
  export LD_LIBRARY_PATH="$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  local bin=$dir/bin work=$dir/work
  local threads=${REAL_DIMS_THREADS:-$(nproc)}
  local positions=${REAL_DIMS_POSITIONS:-all}
  echo "case: $config, $tokens tokens, seed $seed, target $target ($compile_flags)"
  echo "CSA top-k truncates from position $trunc on ($(( tokens > trunc ? tokens - trunc : 0 )) positions)"
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/device: /'
  echo "host: $(nproc) CPUs, $(free -g | awk '/^Mem:/ {print $2}') GiB; reference threads: $threads"
  rm -rf "$work" && mkdir -p "$work"
  local art=$dir/model.cpa
  if [ ! -f "$art" ] && [ -f "$art.xz" ]; then
    # Python's lzma: the GPU machine may have no xz binary (as gpu-check.sh).
    python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
      "$art.xz" "$work"/model.cpa || { echo "FAIL: unpacking $art.xz"; return 1; }
    art=$work/model.cpa
  fi
  local t0=$SECONDS
  if ! "$bin"/make-random-model "$dir"/config.json "$work"/model --seed "$seed" \
       --tokens "$tokens" --format quant --threads "$threads" --progress; then
    echo "FAIL: make-random-model"; return 1
  fi
  local t1=$SECONDS
  echo "weights + reference: $((t1 - t0)) s ($(du -sh "$work"/model | cut -f1))"
  # shellcheck disable=SC2086
  if ! "$bin"/compressa-run "$art" --weights "$work"/model \
       --input-ids "$work"/model/inputs.safetensors \
       --dump-logits "$work"/logits.safetensors ${REAL_DIMS_RUN_FLAGS:-}; then
    echo "FAIL: compressa-run"; return 1
  fi
  local t2=$SECONDS
  echo "compressa-run (load, prefill $((tokens - 1)), decode 1): $((t2 - t1)) s"
  python3 "$dir"/compare-logits.py "$work"/logits.safetensors logits \
    "$work"/model/reference.safetensors logits 1e-3 --positions "$positions" \
    --group "before truncation:0:$trunc" \
    --group "CSA top-k truncating:$trunc:$((tokens - 1))" \
    --group "decode step:$((tokens - 1)):$tokens"
  local rc=$?
  echo "compare: $((SECONDS - t2)) s; total $((SECONDS - t0)) s"
  [ $rc -eq 0 ] && echo "real-dims check PASSED" || echo "real-dims check FAILED"
  return $rc
}

case "$mode" in
  prepare) prepare ;;
  run) run ;;
  *) sed -n '3,54p' "$0"; exit 2 ;;
esac
