#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Decode A/B of compile-time variants in one GPU run.
#
#   scripts/decode-ab.sh prepare [DIR] [LIST]   (here: MLIR, no GPU; build dir ./build)
#       compiles one artifact per line of LIST (default: the built-in list
#       below) and packs them with compressa-bench and the runtime library as
#       DIR/pack.txz (default DIR .decode-ab, ignored by git; xz keeps the
#       near-identical artifacts small: ~1 MB each).
#       A line of LIST:  NAME | ENV | COMPILE ARGS [| RUN ENV]
#       e.g.  flash-rows64 | COMPRESSA_DOT_ROW_BYTES=64 | deepseek-v4-flash --layers 2:6
#       (ENV: space-separated VAR=VALUE for compressa-compile, or -, with
#       DECODE_AB_CC=PATH naming another compressa-compile binary; every
#       artifact also gets --target=cuda:sm_90a --max-context 8192 --max-batch 1
#       unless ARGS name them; RUN ENV: VAR=VALUE for compressa-bench, e.g.
#       COMPRESSA_PDL=1).
#   scripts/decode-ab.sh run [DIR] [RUNS]        (on the GPU machine, DIR carried)
#       runs every artifact RUNS times (default 2), alternating, with
#       compressa-bench ART --weights random --seed 1 --prompt 16 --context 4096
#       --gen 16 --repeat 3 --profile; prints each run's decode step and share of
#       the copy bandwidth, then a table of the kernels' µs a step per artifact
#       (the last run); the full outputs go to $OUT/decode-ab.txt when $OUT is set.
#       DECODE_AB_BENCH_ARGS replaces the bench arguments.
#
# The compile-time switches it is meant for (read by compressa-compile):
# COMPRESSA_DOT_ROW_BYTES / COMPRESSA_DOT_LANE_BYTES (bytes of a
# lane's weight loads in flight, a row / all rows: 32 / 64),
# COMPRESSA_DOT_GROUP_ROWS (rows a warp reads together in the dense FP8
# GEMVs and wo_a), COMPRESSA_SPLIT_ITEMS (warps a split decode dot aims at,
# 1024), COMPRESSA_DOT_SHARED_SCALES (fp8,fp4 by default: a trip's block
# scales read once and shuffled; none: each round reads its own),
# COMPRESSA_DOT_WEIGHT_LOADS=plain (checkpoint weights by plain loads instead
# of ld.global.nc.L1::no_allocate.L2::256B), COMPRESSA_BRANCHES=0 (decode's
# projections and compressors a launch each instead of side by side), COMPRESSA_DOT_FMA=1 (the dots'
# products as fused multiply-adds; other bits), COMPRESSA_DOT_SCALE_FMA=1
# (the dots' block scales applied by one fused multiply-add; the same bits),
# COMPRESSA_SCALE_FMA=0 (no block scale by a fused multiply-add anywhere:
# the code before KernelBuilder::addTimesPow2; the same bits),
# COMPRESSA_ATTENTION_LAUNCH=1 (decode's attention and output projection in
# the launch of the projections before them: two launches a layer; slower on
# an H100), COMPRESSA_GRID_BARRIER=fence (grid barriers with device-scope
# fences around a relaxed atomic and volatile polling, the code before the
# release atomic and acquire loads; the same bits), COMPRESSA_BRANCH_OP_MIB=N
# (the MiB each op of a branch counts, beside its weights, when the grid's
# blocks are shared among branches; 2),
# COMPRESSA_FP8_SHARED_EARLY=1 (fast-decode's shared expert gate/up in the
# router's step instead of the experts'; the same bits),
# COMPRESSA_FP8_EXPERTS_PIPELINE=1 (fast-decode's expert tiles load the next
# 128-column block's weights before the MMAs of the current one),
# COMPRESSA_FP8_EXPERTS_WIDE=1 (fast-decode's routed FP4 expert tiles: a lane
# reads a whole 32-column block, 16 bytes, and the blocks' sums stay apart in
# the MMA's N columns; other f32 rounding),
# COMPRESSA_FP8_DECODE_LINEAR=1 (fast-decode's dense FP8 layers in the FP8
# GEMM semantics on warp MMAs: Emitter::fp8DecodeLinear; other numerics),
# COMPRESSA_INDEXER_WGMMA=0 (--numerics=fast prefill's indexer scores on warp
# MMA tiles instead of the wgmma kernel; the same picks up to f32 sums),
# COMPRESSA_RADIX_SPLIT=1 (the fast prefill's top-k selection a launch per
# step, to time the steps apart; the same bits), COMPRESSA_DOT_PIPELINE=1
# (the single-token dots load the next trip's weights before this trip's
# math; the same bits; slower on an H100, docs/perf.md, thirty-second session);
# and at run time COMPRESSA_PDL=1 (programmatic dependent launch).
set -euo pipefail
mode=${1:-}
dir=${2:-.decode-ab}
root=$(cd "$(dirname "$0")/.." && pwd)

default_list() {
  local f="deepseek-v4-flash --layers 2:6" p="deepseek-v4-pro --layers 0:3"
  cat <<EOF
flash-exact | - | $f
flash-old | COMPRESSA_DOT_SCALE_FMA=1 COMPRESSA_DOT_SHARED_SCALES=none COMPRESSA_DOT_WEIGHT_LOADS=plain COMPRESSA_BRANCHES=0 | $f
flash-plain | COMPRESSA_DOT_WEIGHT_LOADS=plain | $f
flash-nobranches | COMPRESSA_BRANCHES=0 | $f
flash-scalefma | COMPRESSA_DOT_SCALE_FMA=1 | $f
flash-fma | COMPRESSA_DOT_FMA=1 | $f
flash-pdl | - | $f | COMPRESSA_PDL=1
flash-attnlaunch | COMPRESSA_ATTENTION_LAUNCH=1 | $f
flash-fd | - | $f --numerics=fast-decode
flash-fd-old | COMPRESSA_DOT_SCALE_FMA=1 COMPRESSA_DOT_SHARED_SCALES=none COMPRESSA_DOT_WEIGHT_LOADS=plain COMPRESSA_BRANCHES=0 COMPRESSA_FP8_SHARED_EARLY=1 | $f --numerics=fast-decode
flash-fd-early | COMPRESSA_FP8_SHARED_EARLY=1 | $f --numerics=fast-decode
flash-fd-nobranches | COMPRESSA_BRANCHES=0 | $f --numerics=fast-decode
pro-exact | - | $p
pro-old | COMPRESSA_DOT_SCALE_FMA=1 COMPRESSA_DOT_SHARED_SCALES=none COMPRESSA_DOT_WEIGHT_LOADS=plain COMPRESSA_BRANCHES=0 | $p
pro-nobranches | COMPRESSA_BRANCHES=0 | $p
pro-fd | - | $p --numerics=fast-decode
pro-attnlaunch | COMPRESSA_ATTENTION_LAUNCH=1 | $p
EOF
}

case $mode in
prepare)
  list=${3:-}
  rm -rf "$dir" && mkdir -p "$dir"/stage/art "$dir"/stage/bin "$dir"/stage/lib
  { if [ -n "$list" ]; then cat "$list"; else default_list; fi; } > "$dir"/variants
  while IFS='|' read -r name env args runenv; do
    name=$(echo "$name" | xargs); env=$(echo "$env" | xargs); args=$(echo "$args" | xargs)
    runenv=$(echo "${runenv:-}" | xargs)
    [ -z "$name" ] || [ "${name:0:1}" = "#" ] && continue
    extra=""
    [[ "$args" == *--target* ]] || extra+=" --target=cuda:sm_90a"
    [[ "$args" == *--max-context* ]] || extra+=" --max-context 8192"
    [[ "$args" == *--max-batch* ]] || extra+=" --max-batch 1"
    [ "$env" = "-" ] && env=""
    # DECODE_AB_CC=PATH in ENV: that compressa-compile (e.g. a copy of an
    # earlier build) instead of build/bin's.
    cc="$root"/build/bin/compressa-compile
    for kv in $env; do [[ "$kv" == DECODE_AB_CC=* ]] && cc=${kv#DECODE_AB_CC=}; done
    echo "compiling $name: ${env:+$env }compressa-compile $args$extra"
    # shellcheck disable=SC2086
    env $env "$cc" $args $extra -o "$dir"/stage/art/"$name".cpa \
      > "$dir"/compile.log 2>&1 || { cat "$dir"/compile.log >&2; exit 1; }
    echo "$name" >> "$dir"/names
    echo "$name ${runenv}" >> "$dir"/runenv
  done < "$dir"/variants
  cp "$root"/build/bin/compressa-bench "$dir"/stage/bin/
  cp -L "$root"/build/runtime/libcompressa_runtime.so* "$dir"/stage/lib/
  cp -L "$(ldconfig -p | awk '/libpcre2-8.so.0 .*x86-64/ {print $NF; exit}')" "$dir"/stage/lib/
  (cd "$dir"/stage && tar cf - art bin lib | xz -6 -T2 > ../pack.txz)
  rm -rf "$dir"/stage
  du -sh "$dir"/pack.txz
  ;;
run)
  runs=${3:-2}
  [ -f "$dir"/pack.txz ] || { echo "error: $dir/pack.txz missing: run '$0 prepare $dir' first" >&2; exit 2; }
  work=$(mktemp -d)
  pack=$(cd "$dir" && pwd)/pack.txz
  (cd "$work" && tar xJf "$pack")
  export LD_LIBRARY_PATH="$work/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  log=${OUT:-$work}/decode-ab.txt
  : > "$log"
  bench_args=${DECODE_AB_BENCH_ARGS:---weights random --seed 1 --prompt 16 --context 4096 --gen 16 --repeat 3 --profile}
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/device: /' || true
  mapfile -t names < "$dir"/names
  for ((r = 1; r <= runs; ++r)); do
    for n in "${names[@]}"; do
      out=$work/$n.$r.txt
      runenv=$(awk -v n="$n" '$1 == n {$1 = ""; print}' "$dir"/runenv 2>/dev/null | xargs)
      # shellcheck disable=SC2086
      env $runenv "$work"/bin/compressa-bench "$work"/art/"$n".cpa $bench_args > "$out" 2>&1 ||
        { echo "$n run $r: FAILED"; tail -3 "$out"; continue; }
      { echo "=== $n run $r"; cat "$out"; } >> "$log"
      step=$(grep -o '[0-9.]* us per decode step in kernels' "$out" | awk '{print $1}')
      pct=$(grep -o '[0-9.]*% of the device copy' "$out" | head -1 | awk '{print $1}')
      printf '%-20s run %d: %8s us a step in kernels, %s of the copy bandwidth\n' "$n" "$r" "$step" "$pct"
    done
  done
  python3 - "$work" "$runs" "${names[@]}" <<'EOF'
import re, sys
work, runs, names = sys.argv[1], sys.argv[2], sys.argv[3:]
rows, order = {}, []
for n in names:
    try:
        text = open(f"{work}/{n}.{runs}.txt").read()
    except OSError:
        continue
    sec = text[text.find("profile: decode kernels"):]
    for line in sec.splitlines()[2:]:
        m = re.match(r"\s*([\d.]+)\s+[\d.]+%\s+([\d.]+)\s+\d+\s+([\d.]+)\s+[\d.]+\s+(\S+) \((.*)\)", line)
        if not m:
            continue
        key = (m.group(4), m.group(5))
        if key not in rows:
            rows[key] = {}
            order.append(key)
        rows[key][n] = float(m.group(1))
print("\nkernel us a step (run %s)" % runs)
print("%-48s" % "kernel (first dispatch)" + "".join("%15s" % n[:14] for n in names))
for key in order:
    print("%-48s" % (key[0].replace("compressa_", "") + " " + key[1])[:48]
          + "".join("%15s" % ("%.1f" % rows[key][n] if n in rows[key] else "-") for n in names))
EOF
  ;;
*)
  echo "usage: $0 prepare [DIR] [LIST] | run [DIR] [RUNS]" >&2
  exit 2
  ;;
esac
