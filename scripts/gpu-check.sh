#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The whole GPU check of the CUDA target in one device call.
#
#   scripts/gpu-check.sh prepare [DIR]   (here, no GPU needed: build dir ./build)
#       compiles the CUDA artifacts of the golden tiny models, and copies the
#       runtime binaries and the comparison tool to DIR (default .gpu-check,
#       ignored by git), packed as DIR/pack.txz (~20 MB: xz's large window
#       stores the near-identical artifacts once; unpacked ~170 MB, and
#       gzip leaves ~50 MB, too much to carry with the working tree). The
#       golden models travel with the working tree (models/tiny-a,
#       models/tiny-c).
#   scripts/gpu-check.sh run [DIR]       (on the GPU machine, DIR carried there)
#       unpacks DIR/pack.txz if it is there, then runs every golden comparison (logits within 1e-3 at every position,
#       greedy ids equal; prefill-then-decode and chunked prefill), the GPU
#       unit tests, and the benchmark; prints a table; exits 1 on any failure.
#
#   scripts/gpu-check.sh prepare-batched|run-batched [DIR]
#       only the batched decode check (part of prepare and run): tiny-a and
#       tiny-c slots at different positions through the batched decode
#       program against the one-sequence program and golden, and
#       compressa-bench --batch 1, 8, 32 on tiny-c.
#
# With the device tool: prepare here, then run with carry [".gpu-check"]:
#   command: bash scripts/gpu-check.sh run .gpu-check
set -uo pipefail
mode=${1:-}
dir=${2:-.gpu-check}
root=$(cd "$(dirname "$0")/.." && pwd)
golden=${COMPRESSA_GOLDEN:-$root/models}
chip=${COMPRESSA_CUDA_CHIP:-sm_90a}

prepare() {
  local bin=$root/build/bin
  rm -rf "$dir" && mkdir -p "$dir"/bin "$dir"/lib "$dir"/art
  set -e
  # Artifacts: (case, weights, compile flags)
  "$bin"/compressa-compile tiny-a --target=cuda:$chip -o "$dir"/art/tiny-a-float.cpa
  "$bin"/compressa-compile tiny-a --target=cuda:$chip --weight-format=official -o "$dir"/art/tiny-a-quant.cpa
  # logit_rows_gpu_test prefills up to 100 tokens a call (as its CPU twin
  # compiles them: official formats, 1024-token prefill chunks).
  "$bin"/compressa-compile tiny-a --target=cuda:$chip --weight-format=official --prefill-max-tokens=1024 -o "$dir"/art/tiny-a-quant-1024.cpa
  "$bin"/compressa-compile tiny-c --target=cuda:$chip --weight-format=f32 -o "$dir"/art/tiny-c-float.cpa
  "$bin"/compressa-compile tiny-c --target=cuda:$chip -o "$dir"/art/tiny-c-quant.cpa
  "$bin"/compressa-compile tiny-c --target=cuda:$chip --prefill-max-tokens=1024 -o "$dir"/art/tiny-c-quant-1024.cpa
  "$bin"/compressa-compile tiny-c --target=cpu --prefill-max-tokens=64 -o "$dir"/art/tiny-c-quant-cpu.cpa
  # Every kernel spread over the whole GPU (grid-wide barriers), which only
  # the large models' kernels do by default.
  "$bin"/compressa-compile tiny-a --target=cuda:$chip --grid-weight-bytes=0 -o "$dir"/art/tiny-a-float-grid.cpa
  "$bin"/compressa-compile tiny-c --target=cuda:$chip --grid-weight-bytes=0 -o "$dir"/art/tiny-c-quant-grid.cpa
  # The indexer's radix top-k (more than 4096 visible entries possible).
  "$bin"/compressa-compile tiny-c --target=cuda:$chip --max-context 20000 -o "$dir"/art/tiny-c-quant-radix.cpa
  cp "$bin"/compressa-run "$bin"/compressa-bench "$dir"/bin/
  for t in runtime_cuda_unit_test runtime_cuda_device_test runtime_cuda_engine_test \
           compressa_run_cuda_test compressa_run_gpu_test logit_rows_gpu_test; do
    cp "$root"/build/unittests/$t "$dir"/bin/
  done
  cp -L "$root"/build/runtime/libcompressa_runtime.so* "$dir"/lib/
  # The runtime's one library dependency beyond libc/libstdc++ (the tokenizer).
  cp -L "$(ldconfig -p | awk '/libpcre2-8.so.0 .*x86-64/ {print $NF; exit}')" "$dir"/lib/
  cp "$root"/test/e2e/Inputs/safetensors_tool.py "$dir"/
  # Unseen random checkpoints (test/e2e/random-models.test): widths that are
  # not multiples of 32, partial FP8 blocks, hc_mult 2 and 3, FP8 experts.
  # The reference logits come from the C++ reference here. (The f32 copy of
  # the transformers-style model is left out: the carry limit is 64 MiB.)
  local inputs=$root/test/e2e/Inputs
  mkdir -p "$dir"/random
  while read -r name config seed tokens format flags; do
    "$bin"/make-random-model "$inputs/$config" "$dir/random/$name" --seed "$seed" \
      --tokens "$tokens" --format "$format" > /dev/null
    "$bin"/compressa-compile "$dir/random/$name" --target=cuda:$chip $flags \
      -o "$dir/random/$name.cpa" 2> /dev/null
  done <<'LIST'
off-q unseen-official.json 1 300 quant
off-f unseen-official.json 2 300 float --weight-format=f32
hf-q unseen-hf.json 3 150 quant --weight-format=official
f8 unseen-fp8-experts.json 5 100 config
LIST
  set +e
  prepare_batched
  pack_dir
}

# DIR's contents into DIR/pack.txz (xz -9: a 64 MiB window spans whole
# artifacts, so the near-identical ones are stored about once).
pack_dir() {
  (cd "$dir" && tar cf - --exclude=./pack.txz --exclude=./pack.txz.tmp . | xz -9 -T0 > pack.txz.tmp &&
    mv pack.txz.tmp pack.txz &&
    find . -mindepth 1 -maxdepth 1 ! -name pack.txz -exec rm -rf {} +) || exit 1
  du -sh "$dir"/pack.txz
}

# DIR/pack.txz unpacked in place (Python's lzma: the GPU machine may have no
# xz binary).
unpack_dir() {
  [ -f "$dir"/pack.txz ] || return 0
  python3 -c "import sys, tarfile; tarfile.open(sys.argv[1] + '/pack.txz', 'r:xz').extractall(sys.argv[1])" "$dir" ||
    { echo "cannot unpack $dir/pack.txz"; exit 1; }
}

# The batched decode program (compressa-compile --max-batch B > 1).
prepare_batched() {
  local bin=$root/build/bin
  mkdir -p "$dir"/bin "$dir"/lib "$dir"/art/batched
  set -e
  for mb in "tiny-c 4" "tiny-c 1" "tiny-a 3" "tiny-a 1"; do
    set -- $mb
    "$bin"/compressa-compile $1 --target=cuda:$chip --weight-format=official --max-batch $2 \
      -o "$dir"/art/batched/$1-$2.cpa 2> /dev/null
  done
  "$bin"/compressa-compile tiny-c --target=cuda:$chip --max-batch 32 -o "$dir"/art/tiny-c-quant-b32.cpa 2> /dev/null
  cp "$root"/build/unittests/batched_decode_test "$bin"/compressa-bench "$dir"/bin/
  cp -L "$root"/build/runtime/libcompressa_runtime.so* "$dir"/lib/
  cp -L "$(ldconfig -p | awk '/libpcre2-8.so.0 .*x86-64/ {print $NF; exit}')" "$dir"/lib/
  set +e
}

run_batched() {
  local bin=$dir/bin g=$golden/tiny-c
  # Kernels of a grid may sum in another order than the one-sequence
  # program's on a GPU: 1e-5 there (0 on the CPU).
  local env="COMPRESSA_BATCHED_ARTIFACTS=$dir/art/batched COMPRESSA_BATCHED_MODELS=$golden COMPRESSA_BATCHED_TOLERANCE=1e-5"
  for f in tiny_c tiny_a BatchedDecodeErrors; do
    check "batched decode $f: slots vs one-sequence program and golden" bash -c "$env $bin/batched_decode_test --gtest_filter='*$f*' 2>&1 | grep -E 'rows of|FAILED|Failure|tests? ran|expected|Which is'; exit \${PIPESTATUS[0]}"
  done
  for b in 1 8 32; do
    echo "benchmark (tiny-c quant, CUDA, --max-batch 32 artifact, --batch $b):"
    "$bin"/compressa-bench "$dir"/art/tiny-c-quant-b32.cpa --weights "$g"/quant --prompt 256 --gen 64 --repeat 3 --batch $b | grep -E '^decode |batch|decode step' | sed "s/^/[batch $b] /"
  done
}

# One check: a row of the table (uses the caller's rows and failures).
check() { # name, command...
  local name=$1; shift
  local out
  out=$("$@" 2>&1); local rc=$?
  local detail
  detail=$(printf '%s\n' "$out" | grep -E 'max \|diff\||ids equal|generated|error' | tail -1)
  local row
  if [ $rc -eq 0 ]; then row="PASS | $name | $detail"; else row="FAIL | $name | $detail"; failures=$((failures+1)); fi
  rows+=("$row")
  echo "$row ($SECONDS s)"
}

run() {
  unpack_dir
  export LD_LIBRARY_PATH="$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  local bin=$dir/bin tool="python3 $dir/safetensors_tool.py" failures=0
  local rows=()
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/device: /'
  for spec in "tiny-a float logits_float generated_float 200" "tiny-a quant logits_quant generated_quant 200" \
              "tiny-c float logits_float generated_float 400" "tiny-c quant logits_quant generated_quant 400"; do
    set -- $spec
    local case=$1 w=$2 lk=$3 gk=$4 p=$5 art=$dir/art/$1-$2.cpa g=$golden/$1
    local n
    n=$(python3 -c "import json;print(json.load(open('$g/golden.json'))['gen'])")
    check "$case $w: prefill+decode logits" bash -c "$bin/compressa-run $art --weights $g/$w --input-ids $g/golden.safetensors --dump-logits $dir/out.st && $tool compare $dir/out.st logits $g/golden.safetensors $lk 1e-3"
    check "$case $w: chunked prefill (7) logits" bash -c "$bin/compressa-run $art --weights $g/$w --input-ids $g/golden.safetensors --chunk 7 --dump-logits $dir/out.st && $tool compare $dir/out.st logits $g/golden.safetensors $lk 1e-3"
    check "$case $w: token-by-token logits" bash -c "$bin/compressa-run $art --weights $g/$w --input-ids $g/golden.safetensors --prefill 0 --dump-logits $dir/out.st && $tool compare $dir/out.st logits $g/golden.safetensors $lk 1e-3"
    check "$case $w: greedy $n ids" bash -c "$bin/compressa-run $art --weights $g/$w --input-ids $g/golden.safetensors --prompt-len $p -n $n --greedy --print-ids > $dir/ids.txt && $tool ids $g/golden.safetensors $gk $dir/ids.txt"
  done
  # Unseen random checkpoints against the C++ reference.
  for name in off-q off-f hf-q f8; do
    local r=$dir/random/$name
    check "random $name: logits" bash -c "$bin/compressa-run $r.cpa --weights $r --input-ids $r/inputs.safetensors --dump-logits $dir/out.st && $tool compare $dir/out.st logits $r/reference.safetensors logits 1e-3"
  done
  local r=$dir/random/hf-q
  check "random hf-q: token-by-token logits" bash -c "$bin/compressa-run $r.cpa --weights $r --input-ids $r/inputs.safetensors --prefill 0 --dump-logits $dir/out.st && $tool compare $dir/out.st logits $r/reference.safetensors logits 1e-3"
  r=$dir/random/off-q
  check "random off-q: chunked prefill (5) logits" bash -c "$bin/compressa-run $r.cpa --weights $r --input-ids $r/inputs.safetensors --chunk 5 --dump-logits $dir/out.st && $tool compare $dir/out.st logits $r/reference.safetensors logits 1e-3"
  # The grid-wide kernels: every launch over all multiprocessors.
  for cw in "tiny-a float logits_float" "tiny-c quant logits_quant"; do
    set -- $cw
    local gg=$golden/$1
    check "$1 $2 grid: prefill+decode logits" bash -c "timeout 120 $bin/compressa-run $dir/art/$1-$2-grid.cpa --weights $gg/$2 --input-ids $gg/golden.safetensors --dump-logits $dir/out.st && $tool compare $dir/out.st logits $gg/golden.safetensors $3 1e-3"
    check "$1 $2 grid: token-by-token logits" bash -c "timeout 120 $bin/compressa-run $dir/art/$1-$2-grid.cpa --weights $gg/$2 --input-ids $gg/golden.safetensors --prefill 0 --dump-logits $dir/out.st && $tool compare $dir/out.st logits $gg/golden.safetensors $3 1e-3"
  done
  local gc=$golden/tiny-c
  check "tiny-c quant radix top-k: prefill+decode logits" bash -c "$bin/compressa-run $dir/art/tiny-c-quant-radix.cpa --weights $gc/quant --input-ids $gc/golden.safetensors --dump-logits $dir/out.st && $tool compare $dir/out.st logits $gc/golden.safetensors logits_quant 1e-3"
  check "tiny-c quant radix top-k: token-by-token logits" bash -c "$bin/compressa-run $dir/art/tiny-c-quant-radix.cpa --weights $gc/quant --input-ids $gc/golden.safetensors --prefill 0 --dump-logits $dir/out.st && $tool compare $dir/out.st logits $gc/golden.safetensors logits_quant 1e-3"
  # Whole prompt in one prefill call, and the same on the CPU target.
  local g=$golden/tiny-c
  check "tiny-c quant: one 599-token prefill" bash -c "$bin/compressa-run $dir/art/tiny-c-quant-1024.cpa --weights $g/quant --input-ids $g/golden.safetensors --dump-logits $dir/out.st && $tool compare $dir/out.st logits $g/golden.safetensors logits_quant 1e-3"
  check "tiny-c quant: GPU vs CPU target" bash -c "$bin/compressa-run $dir/art/tiny-c-quant-cpu.cpa --weights $g/quant --input-ids $g/golden.safetensors --dump-logits $dir/cpu.st && $tool compare $dir/out.st logits $dir/cpu.st logits 1e-3"
  for t in runtime_cuda_unit_test runtime_cuda_device_test runtime_cuda_engine_test \
           compressa_run_cuda_test compressa_run_gpu_test; do
    check "gtest $t" bash -c "COMPRESSA_REQUIRE_GPU=1 COMPRESSA_RUN=$bin/compressa-run $bin/$t --gtest_brief=1 2>&1 | tail -3; exit \${PIPESTATUS[0]}"
  done
  # LogitRows (test/logit-rows): prefillLast and forward(..., L) against the
  # every-row calls, on artifacts compiled above (named as the test expects).
  local art; art=$(cd "$dir"/art && pwd)
  mkdir -p "$dir"/logit-rows
  ln -sf "$art"/tiny-a-quant-1024.cpa "$dir"/logit-rows/tiny-a.cpa
  ln -sf "$art"/tiny-c-quant-1024.cpa "$dir"/logit-rows/tiny-c.cpa
  ln -sf "$art"/batched/tiny-c-4.cpa "$dir"/logit-rows/tiny-c-b2.cpa
  check "gtest logit_rows_gpu_test (prefillLast = last row of prefill)" bash -c "COMPRESSA_REQUIRE_GPU=1 COMPRESSA_LOGIT_ROWS_ARTIFACTS=$dir/logit-rows COMPRESSA_LOGIT_ROWS_MODELS=$golden $bin/logit_rows_gpu_test --gtest_brief=1 2>&1 | grep -E 'max \\|diff|FAILED|Failure|tests? ran|expected|Which is|PASSED|OutOfRange|InvalidArgument|differs'; exit \${PIPESTATUS[0]}"
  run_batched
  echo
  echo "status | check | detail"
  printf '%s\n' "${rows[@]}"
  echo
  echo "benchmark (tiny-c quant, CUDA artifact):"
  "$bin"/compressa-bench "$dir"/art/tiny-c-quant.cpa --weights "$g"/quant --prompt 256 --gen 64 --repeat 5 --profile
  echo "benchmark (tiny-c quant, CUDA artifact with 1024-token prefill chunks):"
  "$bin"/compressa-bench "$dir"/art/tiny-c-quant-1024.cpa --weights "$g"/quant --prompt 512 --gen 64 --repeat 5 | sed 's/^/[chunk 1024] /'
  COMPRESSA_CUDA_GRAPH=0 "$bin"/compressa-bench "$dir"/art/tiny-c-quant.cpa --weights "$g"/quant --prompt 256 --gen 64 --repeat 5 | sed 's/^/[no graph] /'
  [ $failures -eq 0 ] && echo "all GPU checks passed" || { echo "$failures GPU checks FAILED"; return 1; }
}

run_batched_only() {
  unpack_dir
  export LD_LIBRARY_PATH="$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  local failures=0 rows=()
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/device: /'
  run_batched
  printf '%s\n' "${rows[@]}"
  [ $failures -eq 0 ]
}

case "$mode" in
  prepare) prepare ;;
  run) run ;;
  prepare-batched) rm -rf "$dir"; prepare_batched; pack_dir ;;
  run-batched) run_batched_only ;;
  *) sed -n '3,25p' "$0"; exit 2 ;;
esac
