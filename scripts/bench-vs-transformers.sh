#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Compressa vs transformers' DeepseekV4ForCausalLM on a V4 slice, one GPU run.
#
#   scripts/bench-vs-transformers.sh prepare [DIR] [MODEL] [A:B] [MAX_CONTEXT]
#       here (MLIR, no GPU): compiles MODEL --layers A:B for cuda:sm_90a
#       (default deepseek-v4-flash 2:6, max context 8192) and copies the
#       artifact, compressa-bench, the runtime library, the GPU test of the
#       weight generator, the config and the script to DIR (default
#       .bench-vs-hf, ignored by git; a few MB).
#   scripts/bench-vs-transformers.sh run [DIR] [ARGS...]
#       on the GPU machine (PyTorch + transformers, DIR carried): checks the
#       device weight generator against its host twin, then runs
#       bench-vs-transformers.py (ARGS go to it, e.g. --context 4096 --gen 16).
set -euo pipefail
mode=${1:-}
dir=${2:-.bench-vs-hf}
root=$(cd "$(dirname "$0")/.." && pwd)

case $mode in
prepare)
  model=${3:-deepseek-v4-flash} layers=${4:-2:6} ctx=${5:-8192}
  name=$(basename "${model%/config.json}")
  rm -rf "$dir" && mkdir -p "$dir"/bin "$dir"/lib "$dir"/"$name"
  "$root"/build/bin/compressa-compile "$model" --layers "$layers" \
    --target=cuda:sm_90a --max-context "$ctx" -o "$dir"/model.cpa
  cp "$root"/build/bin/compressa-bench "$dir"/bin/
  cp "$root"/build/unittests/runtime_random_weights_gpu_test "$dir"/bin/
  cp -L "$root"/build/runtime/libcompressa_runtime.so* "$dir"/lib/
  cp -L "$(ldconfig -p | awk '/libpcre2-8.so.0 .*x86-64/ {print $NF; exit}')" "$dir"/lib/
  if [ -d "$model" ]; then cp "$model"/config.json "$dir"/"$name"/
  elif [ -f "$model" ]; then cp "$model" "$dir"/"$name"/config.json
  else cp "$root"/models/"$model"/config.json "$dir"/"$name"/; fi
  echo "$layers" > "$dir"/layers
  echo "$name" > "$dir"/model-name
  cp "$root"/scripts/bench-vs-transformers.py "$dir"/
  du -sh "$dir"
  ;;
run)
  shift $(( $# >= 2 ? 2 : $# ))
  export LD_LIBRARY_PATH="$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | sed 's/^/device: /'
  COMPRESSA_REQUIRE_GPU=1 "$dir"/bin/runtime_random_weights_gpu_test --gtest_brief=1
  python3 "$dir"/bench-vs-transformers.py --model "$dir/$(cat "$dir"/model-name)" \
    --layers "$(cat "$dir"/layers)" --artifact "$dir"/model.cpa \
    --bench "$dir"/bin/compressa-bench "$@"
  ;;
*)
  echo "usage: $0 prepare [DIR] [MODEL] [A:B] [MAX_CONTEXT] | run [DIR] [ARGS...]" >&2
  exit 2
  ;;
esac
