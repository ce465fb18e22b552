#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The GPU check of --numerics=fast (issue 12) in one device call.
#
#   scripts/gemm-check.sh prepare [DIR]   (here, no GPU needed: build dir ./build)
#       generates the tensor-core FP8 GEMM (compressa-gemm, nvgpu.warpgroup.mma
#       + TMA) for V4-Flash's dense linear shapes and the act_quant kernels,
#       checks that ptxas assembles them for sm_90a, compiles tiny-c with
#       --numerics=fast for CUDA (and its CPU logits as the reference), and
#       copies gemm-bench, compressa-run and the runtime to DIR (default
#       .gemm-check, ignored by git; a few MB).
#   scripts/gemm-check.sh run [DIR]       (on the GPU machine, DIR carried there)
#       per shape, M = 4096 tokens: act_quant's bytes on the GPU against the
#       reference (must be identical), the GEMM against a float64 reference
#       (||d|| / ||ref|| < 1e-3) and its median time and TFLOP/s, for 3, 4 and
#       5 stages, with one accumulator (4x, 4px), with pairs of N tiles sharing
#       a's tile (4c2), a persistent grid (4p, 5p, 6p) and both (4c2p),
#       where prepared the tiles in groups of G M tiles (4pgG); a partial M tile
#       (M = 300, 4 and 4c2p); wo_a's 8 groups as one GEMM (--groups 8,
#       M = 4096 and 300); tiny-c --numerics=fast on the GPU against the same
#       artifact's CPU logits and the golden logits; the indexer's
#       tensor-core scores (compressa-gemm --kernel=indexer-scores, bf16 and
#       --fp8, V4-Flash's 64 heads x 128 and flash-dims-16e-small's 8 x 64)
#       against a float64 reference of their semantics (gemm-bench --indexer: short and partial
#       calls, a call in the middle of a context, the last 8192 tokens of a
#       1M prompt, timed); the attention's two tensor-core kernels
#       (compressa-gemm --kernel=attention-max / attention-sums: HCA at
#       V4-Flash's 64 heads x 512, V4-Pro's 128, a width of 256; CSA's
#       top-512 at V4-Flash's) against a float64 reference (gemm-bench
#       --attention: the first tokens of a prompt, a call in the middle,
#       the last 4096 tokens of a 1M prompt, timed); the indexer's top-k
#       selection (compressa-gemm --kernel=indexer-topk) against the same
#       selection computed by gemm-bench --topk (tokens that see fewer keys
#       than the top-k, more, V4-Flash's 1M state, the small model's, a row
#       length that is not a multiple of 4; the last 1024 tokens of 1M timed).
#       Exits 1 on any failure. GEMM_CHECK_PARTS=clock measures only the SM
#       clock and power under the default kernel (see clock() below);
#       GEMM_CHECK_PARTS=gemm runs only the GEMMs
#       and tiny-c; GEMM_CHECK_VARIANTS="4 4p ..." a subset of the variants.
#
# With the device tool: prepare here, then run with carry [".gemm-check"]:
#   command: bash scripts/gemm-check.sh run .gemm-check
set -uo pipefail
mode=${1:-}
dir=${2:-.gemm-check}
root=$(cd "$(dirname "$0")/.." && pwd)
chip=${COMPRESSA_CUDA_CHIP:-sm_90a}
ptxas=${CUDA_HOME:-/usr/local/cuda}/bin/ptxas
# V4-Flash's FP8 dense linear layers, N:K (out:in): wq_a, wq_b, wkv, wo_b,
# the indexer's wq_b, the shared expert's w1/w3 and w2.
shapes="1024:4096 32768:1024 512:4096 4096:8192 8192:1024 2048:4096 4096:2048"
# An odd count of N tiles (a pair's second tile past N with --cluster 2).
shapes="$shapes 640:1024"
# GEMM_CHECK_SHAPES="N:K ..." at run time: a subset of them, in that order.
[ "${1:-}" = run ] && shapes=${GEMM_CHECK_SHAPES:-$shapes}
# The indexer's scores, heads:di:capacity.
indexers="64:128:4096 64:128:262144 8:64:1024"
# The indexer's top-k selection, capacity:topk (ratio 4): V4-Flash's 1M state,
# flash-dims-16e-small's at 20000, a row length that is not a multiple of 4.
topks="262176:512 5000:16 1001:64"
# The HCA attention, heads:dim:capacity (window 128, ratio 128).
attentions="64:512:8192 128:512:8192 64:256:64"

# --group-m G of a variant named ...gG... (compressa-gemm and gemm-bench).
groupOpts() {
  [[ $1 =~ g([0-9]+) ]] && echo "--group-m ${BASH_REMATCH[1]}"
  return 0
}

prepare() {
  local bin=$root/build/bin
  rm -rf "$dir" && mkdir -p "$dir"/bin "$dir"/lib "$dir"/ptx "$dir"/art
  set -e
  local ks=""
  for s in $shapes; do
    local n=${s%:*} k=${s#*:}
    # Stages 3, 4 and 5; 4 with one accumulator ("4x": COMPRESSA_GEMM_OVERLAP=0,
    # the code before the consumers' two accumulators); 4 stages with pairs of
    # N tiles sharing a's tile ("4c2": --cluster 2), a persistent grid ("4p",
    # "5p", "6p"; "4px" with one accumulator: the default before) and both ("4c2p").
    # Experiments: "w", two accumulators with pairs too
    # (COMPRESSA_GEMM_PAIR_OVERLAP=1) and registers 24/240
    # (COMPRESSA_GEMM_REGS); "f", one K loop over a persistent block's
    # tiles (COMPRESSA_GEMM_FLAT=1). GEMM_CHECK_PREP_VARIANTS: which to
    # prepare.
    for st in ${GEMM_CHECK_PREP_VARIANTS:-3 4 4x 4c2 4p 4px 5p 6p 4c2p}; do
      local overlap="" pairOverlap="" regs="" flat="" opts=()
      case $st in *x*) overlap=0 ;; esac
      case $st in *w*) pairOverlap=1 regs=24/240 ;; esac
      case $st in *f*) flat=1 ;; esac
      # "gG": groups of G M tiles in a persistent grid's order (--group-m G).
      opts+=($(groupOpts "$st"))
      case $st in *c2*) opts+=(--cluster 2) ;; esac
      case $st in *p*) opts+=(--persistent) ;; esac
      COMPRESSA_GEMM_OVERLAP=$overlap COMPRESSA_GEMM_PAIR_OVERLAP=$pairOverlap COMPRESSA_GEMM_REGS=$regs \
        COMPRESSA_GEMM_FLAT=$flat \
        "$bin"/compressa-gemm --n "$n" --k "$k" --stages "${st:0:1}" "${opts[@]}" \
        --chip "$chip" -o "$dir/ptx/gemm_n${n}_k${k}_s$st.ptx"
      "$ptxas" -arch="$chip" "$dir/ptx/gemm_n${n}_k${k}_s$st.ptx" -o /dev/null
    done
    case " $ks " in *" $k "*) ;; *) ks="$ks $k" ;; esac
  done
  # wo_a's 8 groups as one GEMM (--groups 8: a [M, 8 x 4096]), persistent
  # as in a program, and its act_quant over the whole row.
  "$bin"/compressa-gemm --n 8192 --k 4096 --groups 8 --persistent --chip "$chip" \
    -o "$dir/ptx/gemm_n8192_k4096_g8p.ptx"
  "$ptxas" -arch="$chip" "$dir/ptx/gemm_n8192_k4096_g8p.ptx" -o /dev/null
  ks="$ks 32768"
  for k in $ks; do
    "$bin"/compressa-gemm --kernel=act-quant --k "$k" --target "cuda:$chip" \
      -o "$dir/ptx/act_k$k.ptx"
    "$ptxas" -arch="$chip" "$dir/ptx/act_k$k.ptx" -o /dev/null
  done
  for x in $topks; do
    "$bin"/compressa-gemm --kernel=indexer-topk --capacity "${x%:*}" --selected "${x#*:}" \
      --ratio 4 --chip "$chip" -o "$dir/ptx/topk_c${x%:*}_k${x#*:}.ptx"
    "$ptxas" -arch="$chip" "$dir/ptx/topk_c${x%:*}_k${x#*:}.ptx" -o /dev/null
  done
  for x in $indexers; do
    local h=${x%%:*} rest=${x#*:}
    local d=${rest%:*} cap=${rest#*:}
    "$bin"/compressa-gemm --kernel=indexer-scores --heads "$h" --k "$d" --ratio 4 \
      --capacity "$cap" --chip "$chip" -o "$dir/ptx/indexer_h${h}_d${d}_c$cap.ptx"
    "$ptxas" -arch="$chip" "$dir/ptx/indexer_h${h}_d${d}_c$cap.ptx" -o /dev/null
    "$bin"/compressa-gemm --kernel=indexer-scores --heads "$h" --k "$d" --ratio 4 --fp8 \
      --capacity "$cap" --chip "$chip" -o "$dir/ptx/indexer_h${h}_d${d}_c${cap}_f8.ptx"
    "$ptxas" -arch="$chip" "$dir/ptx/indexer_h${h}_d${d}_c${cap}_f8.ptx" -o /dev/null
  done
  for x in $attentions; do
    local h=${x%%:*} rest=${x#*:}
    local d=${rest%:*} cap=${rest#*:}
    for pass in max sums; do
      local ptx=$dir/ptx/attention_${pass}_h${h}_d${d}_c$cap.ptx
      "$bin"/compressa-gemm --kernel=attention-$pass --heads "$h" --k "$d" --window 128 \
        --ratio 128 --capacity "$cap" --scale 0.0441941738 --chip "$chip" -o "$ptx"
      "$ptxas" -arch="$chip" "$ptx" -o /dev/null
    done
  done
  for pass in max sums; do
    "$bin"/compressa-gemm --kernel=attention-$pass --heads 64 --k 512 --window 128 --ratio 4 \
      --capacity 262176 --selected 512 --scale 0.0441941738 --chip "$chip" \
      -o "$dir/ptx/attention_csa_$pass.ptx"
    "$ptxas" -arch="$chip" "$dir/ptx/attention_csa_$pass.ptx" -o /dev/null
  done
  "$bin"/compressa-compile tiny-c --target=cuda:$chip --numerics=fast -o "$dir"/art/tiny-c-fast.cpa
  "$bin"/compressa-compile tiny-c --target=cpu --numerics=fast -o "$dir"/art/tiny-c-fast-cpu.cpa
  "$bin"/compressa-run "$dir"/art/tiny-c-fast-cpu.cpa --weights "$root"/models/tiny-c/quant \
    --input-ids "$root"/models/tiny-c/golden.safetensors \
    --dump-logits "$dir"/art/tiny-c-fast-cpu.logits > /dev/null
  rm "$dir"/art/tiny-c-fast-cpu.cpa
  # xz: the artifact's cubins shrink several-fold (the carry limit).
  xz -6 -T2 "$dir"/art/tiny-c-fast.cpa
  cp "$bin"/gemm-bench "$bin"/compressa-run "$dir"/bin/
  cp -L "$root"/build/runtime/libcompressa_runtime.so* "$dir"/lib/
  cp -L "$(ldconfig -p | awk '/libpcre2-8.so.0 .*x86-64/ {print $NF; exit}')" "$dir"/lib/
  set +e
  du -sh "$dir"
}

# GEMM_CHECK_PARTS=clock: the SM clock and power under the default kernel
# (4p, 4096 x 4096 x 8192; docs/perf.md, twenty-ninth session): 20000
# launches back to back with nvidia-smi sampling every 200 ms beside them,
# then, where Nsight Compute is installed, the clock of a 20-launch run's
# launches (--clock-control none) and their L2 and DRAM throughput.
clock() {
  local ptx=$dir/ptx/gemm_n4096_k8192_s4p.ptx samples
  [ -f "$ptx" ] || { echo "clock: $ptx not prepared (GEMM_CHECK_PREP_VARIANTS with 4p)"; return 1; }
  local bench=("$dir"/bin/gemm-bench --gemm "$ptx" --persistent --m 4096 --n 4096 --k 8192 --check-rows 4)
  samples=$(mktemp)
  nvidia-smi --query-gpu=clocks.sm,power.draw,clocks_throttle_reasons.active --format=csv,noheader \
    -lms 200 > "$samples" &
  local sampler=$! out rc
  out=$("${bench[@]}" --iters 20000 2>&1)
  rc=$?
  echo "20000 launches: $(echo "$out" | tail -1)"
  kill $sampler 2> /dev/null; wait $sampler 2> /dev/null
  [ $rc -eq 0 ] || { rm -f "$samples"; return 1; }
  echo "nvidia-smi samples (SM clock, power, throttle reasons), most frequent first:"
  sort "$samples" | uniq -c | sort -rn | head -12
  rm -f "$samples"
  if command -v ncu > /dev/null; then
    ncu --clock-control none -k regex:gemm -s 5 -c 3 --metrics \
      gpu__time_duration.sum,sm__cycles_elapsed.avg.per_second,lts__t_bytes.sum.per_second,lts__t_sector_hit_rate.pct,dram__bytes.sum.per_second \
      "${bench[@]}" --iters 10 2>&1 | grep -E "duration|per_second|hit_rate"
  fi
}

run() {
  export LD_LIBRARY_PATH="$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  local failures=0 rows=()
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader 2>/dev/null | sed 's/^/device: /'
  if [ "${GEMM_CHECK_PARTS:-all}" = clock ]; then
    clock
    return
  fi
  local out rc
  out=$("$dir"/bin/gemm-bench --gemm "$dir/ptx/gemm_n1024_k4096_s4.ptx" --act "$dir/ptx/act_k4096.ptx" \
          --m 300 --n 1024 --k 4096 --check-rows 300 --iters 3 2>&1)
  rc=$?; echo "partial tile: $out"; [ $rc -eq 0 ] || failures=$((failures + 1))
  out=$("$dir"/bin/gemm-bench --gemm "$dir/ptx/gemm_n1024_k4096_s4c2p.ptx" --cluster 2 --persistent \
          --m 300 --n 1024 --k 4096 --check-rows 300 --iters 3 2>&1)
  rc=$?; echo "partial tile, 4c2p: $out"; [ $rc -eq 0 ] || failures=$((failures + 1))
  # The persistent two-accumulator forms, where prepared: a block's tiles
  # (4p; 4pf: in one K loop), with pairs (4c2pw).
  for st in 4p 4pf 4c2pw 4pg8 6p; do
    [ -f "$dir/ptx/gemm_n1024_k4096_s$st.ptx" ] || continue
    local popts=(--persistent --stages "${st:0:1}" $(groupOpts "$st"))
    case $st in *c2*) popts+=(--cluster 2) ;; esac
    out=$("$dir"/bin/gemm-bench --gemm "$dir/ptx/gemm_n1024_k4096_s$st.ptx" "${popts[@]}" \
            --m 300 --n 1024 --k 4096 --check-rows 300 --iters 3 2>&1)
    rc=$?; echo "partial tile, $st: $out"; [ $rc -eq 0 ] || failures=$((failures + 1))
  done
  for m in 4096 300; do
    out=$("$dir"/bin/gemm-bench --gemm "$dir/ptx/gemm_n8192_k4096_g8p.ptx" --groups 8 --persistent \
            --act "$dir/ptx/act_k32768.ptx" --m $m --n 8192 --k 4096 --check-rows 64 --iters 3 2>&1)
    rc=$?; echo "wo_a's groups, M = $m: $out"; [ $rc -eq 0 ] || failures=$((failures + 1))
  done
  [ -f "$dir"/art/tiny-c-fast.cpa ] || xz -dk "$dir"/art/tiny-c-fast.cpa.xz
  "$dir"/bin/compressa-run "$dir"/art/tiny-c-fast.cpa --weights models/tiny-c/quant \
    --input-ids models/tiny-c/golden.safetensors --dump-logits "$dir"/gpu-fast.logits > /dev/null 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    echo "tiny-c fast on the GPU: compressa-run failed ($rc)"; failures=$((failures + 1))
  else
    # prefill-check.sh's bounds: act_quant codes flip downstream of the GPU's
    # other summation order (docs/perf.md, tenth session: 3.158 / 0.06908 /
    # 78.2 % on an H200; the same on an H100 in the eighteenth session).
    python3 scripts/numerics-check.py "$dir"/gpu-fast.logits logits "$dir"/art/tiny-c-fast-cpu.logits logits \
      --label "tiny-c fast, GPU vs CPU" --max-abs 4 --median-abs 0.1 --top1 0.72 ||
      failures=$((failures + 1))
    python3 scripts/numerics-check.py "$dir"/gpu-fast.logits logits models/tiny-c/golden.safetensors logits_quant \
      --label "tiny-c fast, GPU vs golden"
  fi
  for s in $shapes; do
    local n=${s%:*} k=${s#*:}
    for st in ${GEMM_CHECK_VARIANTS:-4 4x 3 4c2 4p 4px 5p 6p 4c2p}; do
      local out opts=()
      # act_quant's bytes once per shape (with the 4-stage run).
      [ "$st" = 4 ] && opts=(--act "$dir/ptx/act_k$k.ptx")
      case $st in *c2*) opts+=(--cluster 2) ;; esac
      case $st in *p*) opts+=(--persistent) ;; esac
      opts+=($(groupOpts "$st"))
      out=$("$dir"/bin/gemm-bench --gemm "$dir/ptx/gemm_n${n}_k${k}_s$st.ptx" --stages "${st:0:1}" \
              "${opts[@]}" --m 4096 --n "$n" --k "$k" --check-rows 16 2>&1)
      local rc=$?
      echo "stages $st: $out"
      rows+=("stages $st $(printf '%s' "$out" | tail -1)")
      [ $rc -eq 0 ] || failures=$((failures + 1))
    done
  done
  # GEMM_CHECK_PARTS=gemm: only the GEMMs and tiny-c above.
  if [ "${GEMM_CHECK_PARTS:-all}" = gemm ]; then
    echo; printf '%s\n' "${rows[@]}"; echo "failures: $failures"; [ $failures -eq 0 ]; return
  fi
  # The indexer's scores: (heads di capacity tokens start check-rows).
  local cases=("64 128 4096 1000 0 24" "64 128 4096 1097 3001 24" "64 128 4096 1 16000 2"
               "64 128 4096 3 5 4" "64 128 262144 8192 65536 6" "64 128 262144 8192 1040384 3"
               "8 64 1024 300 0 24" "8 64 1024 77 3000 24")
  # One gemm-bench case: its output, its last line for the table, a failure
  # counted.
  bench() {
    local out rc
    out=$(timeout 300 "$dir"/bin/gemm-bench "$@" --iters 3 2>&1)
    rc=$?
    echo "$out"
    rows+=("$(printf '%s' "$out" | tail -1)")
    [ $rc -eq 0 ] || failures=$((failures + 1))
  }
  for c in "${cases[@]}"; do
    read -r h d cap t st rows_ <<< "$c"
    bench --indexer "$dir/ptx/indexer_h${h}_d${d}_c$cap.ptx" --heads "$h" --dim "$d" --ratio 4 \
      --capacity "$cap" --tokens "$t" --start "$st" --check-rows "$rows_"
    bench --indexer "$dir/ptx/indexer_h${h}_d${d}_c${cap}_f8.ptx" --fp8 --heads "$h" --dim "$d" \
      --ratio 4 --capacity "$cap" --tokens "$t" --start "$st" --check-rows "$rows_"
  done
  # The top-k selection: (capacity topk tokens start check-rows).
  local selections=("262176 512 300 1000 64" "262176 512 2000 4000 64" "5000 16 300 19000 300"
                    "1001 64 500 3000 500" "262176 512 1024 1047552 48")
  for c in "${selections[@]}"; do
    read -r cap k t st rows_ <<< "$c"
    bench --topk "$dir/ptx/topk_c${cap}_k$k.ptx" --selected "$k" --ratio 4 --capacity "$cap" \
      --tokens "$t" --start "$st" --check-rows "$rows_"
  done
  # The HCA attention: (heads dim capacity tokens start check-rows).
  local attention=("64 512 8192 300 0 12" "64 512 8192 1097 3001 12" "64 512 8192 1 9000 1"
                   "64 512 8192 4096 1044480 6" "128 512 8192 200 5000 8" "64 256 64 300 1000 12")
  for c in "${attention[@]}"; do
    read -r h d cap t st rows_ <<< "$c"
    bench --attention "$dir/ptx/attention_max_h${h}_d${d}_c$cap.ptx" \
      --sums "$dir/ptx/attention_sums_h${h}_d${d}_c$cap.ptx" --heads "$h" --dim "$d" --window 128 \
      --ratio 128 --capacity "$cap" --scale 0.0441941738 --tokens "$t" --start "$st" \
      --check-rows "$rows_"
  done
  # CSA: the top-512 (tokens start check-rows).
  for c in "300 0 12" "1097 3001 12" "4096 1044480 4"; do
    read -r t st rows_ <<< "$c"
    bench --attention "$dir/ptx/attention_csa_max.ptx" --sums "$dir/ptx/attention_csa_sums.ptx" \
      --heads 64 --dim 512 --window 128 --ratio 4 --capacity 262176 --selected 512 \
      --scale 0.0441941738 --tokens "$t" --start "$st" --check-rows "$rows_"
  done
  echo
  printf '%s\n' "${rows[@]}"
  echo "failures: $failures"
  [ $failures -eq 0 ]
}

case "$mode" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: $0 prepare|run [DIR]" >&2; exit 2 ;;
esac
