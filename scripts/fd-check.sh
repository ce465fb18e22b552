#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The GPU check of --numerics=fast-decode and its compile-time variants in
# one device call (issue 11).
#
# The case: test/e2e/Inputs/flash-dims-16e-small.json (V4-Flash's layer kinds
# at hidden 512: CSA with the indexer and hash routing, HCA; 16 experts top-6
# with a shared expert), random official-format weights (make-random-model,
# seed 1, 300 tokens with the C++ reference's logits). Each artifact
# prefills 250 tokens and decodes the last 50 one at a time, where the
# decode programs take fast-decode's tensor-core paths.
#
#   scripts/fd-check.sh prepare [DIR]   (here; build dir ./build; DIR default
#       .fd-check, ignored by git, a few MB) compiles the CUDA artifacts of
#       the variants below and the CPU artifacts of the two numerics they
#       hold, generates the weights to compute the CPU logits, records the
#       weights' sha256, and packs the artifacts, the CPU logits,
#       compressa-run, a make-random-model that needs no LLVM library and the
#       runtime as DIR/pack.txz (weights not kept).
#   scripts/fd-check.sh run [DIR]       (on the GPU machine, DIR carried)
#       generates the same weights (checked by sha256), runs every CUDA
#       artifact and compares:
#       - exact against the reference: within 1e-3 at every position;
#       - variants that compute the same operations (COMPRESSA_SCALE_FMA=0;
#         COMPRESSA_DOT_SCALE_FMA=1, COMPRESSA_DOT_SHARED_SCALES=none and
#         COMPRESSA_FP8_SHARED_EARLY=1 together; COMPRESSA_DOT_WEIGHT_LOADS=plain;
#         COMPRESSA_BRANCHES=0; COMPRESSA_ATTENTION_LAUNCH=1; COMPRESSA_GRID_BARRIER=fence;
#         COMPRESSA_FP8_EXPERTS_PIPELINE=1)
#         against the default artifact of their numerics: byte-identical
#         logits;
#       - variants with other f32 rounding (COMPRESSA_FP8_EXPERTS_WIDE=1)
#         against the default artifact of their numerics: the distance,
#         reported;
#       - fast-decode on the GPU against its CPU twin (bounds for gross errors:
#         max 4, median 0.1, top-1 70 %), and against the reference (reported).
#       Exits 1 on any failure.
#   FD_CHECK_VARIANTS="exact-al fd-al" (at prepare) compiles only those
#   variants and the artifacts they are compared with (exact, fd).
#
# With the device tool: prepare here, then run with carry [".fd-check"]:
#   command: bash scripts/fd-check.sh run .fd-check
set -uo pipefail
mode=${1:-}
dir=${2:-.fd-check}
root=$(cd "$(dirname "$0")/.." && pwd)
chip=${COMPRESSA_CUDA_CHIP:-sm_90a}
config=$root/test/e2e/Inputs/flash-dims-16e-small.json

# name | environment | numerics: the CUDA artifacts.
variants() {
  cat <<EOF
exact | - | exact
exact-old | COMPRESSA_DOT_SCALE_FMA=1 COMPRESSA_DOT_SHARED_SCALES=none | exact
exact-plain | COMPRESSA_DOT_WEIGHT_LOADS=plain | exact
exact-nobr | COMPRESSA_BRANCHES=0 | exact
exact-al | COMPRESSA_ATTENTION_LAUNCH=1 | exact
exact-fence | COMPRESSA_GRID_BARRIER=fence | exact
fd | - | fast-decode
fd-mulscale | COMPRESSA_SCALE_FMA=0 | fast-decode
fd-old | COMPRESSA_DOT_SCALE_FMA=1 COMPRESSA_DOT_SHARED_SCALES=none COMPRESSA_FP8_SHARED_EARLY=1 | fast-decode
fd-plain | COMPRESSA_DOT_WEIGHT_LOADS=plain | fast-decode
fd-nobr | COMPRESSA_BRANCHES=0 | fast-decode
fd-al | COMPRESSA_ATTENTION_LAUNCH=1 | fast-decode
fd-fence | COMPRESSA_GRID_BARRIER=fence | fast-decode
fd-pipe | COMPRESSA_FP8_EXPERTS_PIPELINE=1 | fast-decode
fd-lin | COMPRESSA_FP8_DECODE_LINEAR=1 | fast-decode
fd-wide | COMPRESSA_FP8_EXPERTS_WIDE=1 | fast-decode
EOF
}
# The artifact whose logits a variant must equal byte for byte (same ops).
same_as() {
  case $1 in
    exact-old | exact-plain | exact-nobr | exact-al | exact-fence) echo exact ;;
    fd-mulscale | fd-old | fd-plain | fd-nobr | fd-al | fd-fence | fd-pipe) echo fd ;;
  esac
}
# The artifact a variant with other rounding is reported against.
near_of() {
  case $1 in
    fd-wide) echo fd ;;
  esac
}
# The CPU twin of a variant's numerics (its CPU code ignores the GPU-only
# switches).
cpu_of() {
  case $1 in
    fd-lin*) echo cpu-fd-lin ;;
    fd*) echo cpu-fd ;;
  esac
}
run_args="--prefill 250"
# variants(), or those FD_CHECK_VARIANTS names and their same_as bases.
chosen_variants() {
  if [ -z "${FD_CHECK_VARIANTS:-}" ]; then variants; return; fi
  local all want=" " v
  all=" $(variants | cut -d'|' -f1 | xargs) "
  for v in $FD_CHECK_VARIANTS; do
    [[ $all == *" $v "* ]] || { echo "error: FD_CHECK_VARIANTS names '$v', which is not a variant" >&2; exit 2; }
    want+="$v $(same_as "$v") $(near_of "$v") "
  done
  variants | while IFS= read -r line; do
    v=$(echo "${line%%|*}" | xargs)
    if [[ $want == *" $v "* ]]; then echo "$line"; fi
  done
}

prepare() {
  local bin=$root/build/bin
  rm -rf "$dir" && mkdir -p "$dir"/bin "$dir"/lib "$dir"/art "$dir"/cpu
  set -e
  cp "$config" "$dir"/config.json
  chosen_variants > "$dir"/chosen
  while IFS='|' read -r name env numerics; do
    name=$(echo "$name" | xargs); env=$(echo "$env" | xargs); numerics=$(echo "$numerics" | xargs)
    [ "$env" = "-" ] && env=""
    echo "compiling $name: ${env:+$env }--numerics=$numerics"
    # shellcheck disable=SC2086
    env $env "$bin"/compressa-compile "$dir"/config.json --target=cuda:$chip \
      --weight-format=official --numerics="$numerics" -o "$dir"/art/"$name".cpa \
      > "$dir"/compile.log 2>&1 || { cat "$dir"/compile.log >&2; exit 1; }
    echo "$name" >> "$dir"/names
  done < "$dir"/chosen
  # The CPU twins, run here on the same weights.
  local work
  work=$(mktemp -d)
  "$bin"/make-random-model "$dir"/config.json "$work"/m --seed 1 --tokens 300 --format quant > /dev/null
  sha256sum "$work"/m/model.safetensors | cut -d' ' -f1 > "$dir"/weights.sha256
  for twin in cpu-fd:- cpu-fd-lin:COMPRESSA_FP8_DECODE_LINEAR=1; do
    local name=${twin%%:*} env=${twin#*:}
    # Only the twins the chosen variants are compared with (cpu_of).
    while read -r n; do cpu_of "$n"; done < "$dir"/names | grep -qx "$name" || continue
    [ "$env" = "-" ] && env=""
    # shellcheck disable=SC2086
    env $env "$bin"/compressa-compile "$dir"/config.json --target=cpu --weight-format=official \
      --numerics=fast-decode -o "$work"/$name.cpa > "$dir"/compile.log 2>&1 ||
      { cat "$dir"/compile.log >&2; exit 1; }
    # shellcheck disable=SC2086
    "$bin"/compressa-run "$work"/$name.cpa --weights "$work"/m --input-ids "$work"/m/inputs.safetensors \
      $run_args --dump-logits "$dir"/cpu/$name.logits > /dev/null
  done
  rm -rf "$work"
  cp "$bin"/compressa-run "$dir"/bin/
  "$root"/scripts/make-random-model-static.sh "$dir"/bin/make-random-model
  cp -L "$root"/build/runtime/libcompressa_runtime.so* "$dir"/lib/
  cp -L "$(ldconfig -p | awk '/libpcre2-8.so.0 .*x86-64/ {print $NF; exit}')" "$dir"/lib/
  cp -L "$(ldconfig -p | awk '/libgomp.so.1 .*x86-64/ {print $NF; exit}')" "$dir"/lib/
  # xz's window holds the near-identical artifacts once (~80 MB -> a few MB).
  (cd "$dir" && tar cf - art bin lib cpu | xz -6 -T2 > pack.txz && rm -rf art bin lib cpu compile.log)
  set +e
  du -sh "$dir"
}

run() {
  [ -f "$dir"/names ] || { echo "error: $dir/names missing: run '$0 prepare $dir' first" >&2; return 2; }
  local failures=0 work=$dir/work
  rm -rf "$work" && mkdir -p "$work"
  [ -d "$dir"/art ] || (cd "$dir" && tar xJf pack.txz) || { echo "FAIL: unpacking"; return 1; }
  export LD_LIBRARY_PATH="$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/device: /'
  "$dir"/bin/make-random-model "$dir"/config.json "$work"/m --seed 1 --tokens 300 --format quant > /dev/null ||
    { echo "FAIL: make-random-model"; return 1; }
  if [ "$(sha256sum "$work"/m/model.safetensors | cut -d' ' -f1)" != "$(cat "$dir"/weights.sha256)" ]; then
    echo "FAIL: the weights differ from those the CPU logits were computed on"; return 1
  fi
  local check="python3 $root/scripts/numerics-check.py"
  local tool="python3 $root/test/e2e/Inputs/safetensors_tool.py"
  local ref="$work/m/reference.safetensors"
  mapfile -t names < "$dir"/names
  for n in "${names[@]}"; do
    local logits=$work/$n.logits
    # shellcheck disable=SC2086
    if ! "$dir"/bin/compressa-run "$dir"/art/$n.cpa --weights "$work"/m \
         --input-ids "$work"/m/inputs.safetensors $run_args --dump-logits "$logits" > "$work"/$n.log 2>&1; then
      echo "FAIL $n: compressa-run"; tail -3 "$work"/$n.log; failures=$((failures + 1)); continue
    fi
    if [ "$n" = exact ]; then
      $tool compare "$logits" logits "$ref" logits 1e-3 && echo "exact vs reference: within 1e-3" ||
        { echo "FAIL exact vs reference"; failures=$((failures + 1)); }
      continue
    fi
    local same
    same=$(same_as "$n")
    if [ -n "$same" ]; then
      cmp -s "$logits" "$work"/$same.logits && echo "$n: logits byte-identical to $same's" ||
        { echo "FAIL $n: logits differ from $same's"; failures=$((failures + 1)); }
    fi
    local near
    near=$(near_of "$n")
    if [ -n "$near" ] && [ -f "$work"/$near.logits ]; then
      $check "$logits" logits "$work"/$near.logits logits --label "$n GPU vs $near GPU" || true
    fi
    # An exact variant: its byte comparison with exact says all.
    [[ $n == exact* ]] && continue
    # Bounds for gross errors only (a wrong tile or part gives medians near
    # the logits' own size): the GPU's tensor cores accumulate with fewer
    # bits than the twin's f32, and act_quant amplifies small differences.
    $check "$logits" logits "$dir"/cpu/"$(cpu_of "$n")".logits logits --label "$n GPU vs CPU twin" \
      --max-abs 4 --median-abs 0.1 --top1 0.7 || failures=$((failures + 1))
    $check "$logits" logits "$ref" logits --label "$n GPU vs reference" || true
  done
  echo "failures: $failures"
  [ $failures -eq 0 ]
}

case "$mode" in
  prepare) prepare ;;
  run) run ;;
  *) sed -n '3,38p' "$0"; exit 2 ;;
esac
