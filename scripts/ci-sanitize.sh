#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The sanitizer CI job, in one command:
#   scripts/ci-sanitize.sh [SECONDS_PER_TARGET]
# 1. configures build-asan with clang-22: runtime only (no MLIR), ASan+UBSan
#    on everything, the libFuzzer targets of test/fuzz;
# 2. builds it and runs its ctest (the runtime unit tests and each fuzz
#    target once over its seeds) with every sanitizer report fatal;
# 3. runs every fuzz target for SECONDS_PER_TARGET seconds (default 60, or
#    $COMPRESSA_FUZZ_SECONDS), two at a time, from the seed corpus that
#    make-fuzz-seeds writes from the repository's files;
# 4. prints a summary table and exits non-zero on any failed test, or any
#    crash, sanitizer report, leak, timeout (-timeout=, default 10 s per
#    input) or out-of-memory (-rss_limit_mb=2048) finding. A finding's input
#    is kept under build-asan/fuzz-findings/<target>/; rerun it with
#    build-asan/fuzz/fuzz_<target> <file>.
# Environment: COMPRESSA_FUZZ_SECONDS, COMPRESSA_FUZZ_TIMEOUT (s per input),
# COMPRESSA_FUZZ_JOBS (targets at once, default 2), COMPRESSA_ASAN_BUILD_DIR
# (default build-asan), COMPRESSA_BUILD_LOCK (a file to flock around the
# configure and build steps, default /tmp/compressa-build.lock; empty: none).
# Needs clang-22 and libclang-rt-22-dev (scripts/install-deps.sh).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${COMPRESSA_ASAN_BUILD_DIR:-$root/build-asan}
seconds=${1:-${COMPRESSA_FUZZ_SECONDS:-60}}
per_input=${COMPRESSA_FUZZ_TIMEOUT:-10}
jobs=${COMPRESSA_FUZZ_JOBS:-2}
lock=${COMPRESSA_BUILD_LOCK-/tmp/compressa-build.lock}
start=$(date +%s)

die() { echo "ci-sanitize: $*" >&2; exit 2; }
case $seconds in ''|*[!0-9]*) die "SECONDS_PER_TARGET must be a whole number, found '$seconds'";; esac
case $jobs in ''|*[!0-9]*|0) die "COMPRESSA_FUZZ_JOBS must be a positive number, found '$jobs'";; esac
for tool in clang-22 clang++-22 cmake ctest ninja; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs it)"
done

# The configure and build steps share the machine's build lock when there is
# one (several checkouts build on one machine).
locked() {
  if [ -n "$lock" ] && command -v flock >/dev/null; then
    flock "$lock" "$@"
  else
    "$@"
  fi
}

# Any sanitizer report ends the process with an error; leaks are reports.
export ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1
export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=report_objects=1

echo "== configure $build"
mkdir -p "$build" || die "cannot create $build"
locked cmake -S "$root" -B "$build" -G Ninja \
  -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCOMPRESSA_RUNTIME_ONLY=ON \
  -DCOMPRESSA_SANITIZE=address,undefined \
  -DCOMPRESSA_FUZZ=ON >"$build/configure.log" 2>&1 ||
  { cat "$build/configure.log"; die "configure failed"; }

echo "== build"
locked cmake --build "$build" || die "build failed"
build_done=$(date +%s)

echo "== ctest (ASan+UBSan)"
ctest_status=PASS
ctest --test-dir "$build" -LE gpu --output-on-failure -j "$jobs" \
  >"$build/ctest.log" 2>&1 || ctest_status=FAIL
grep -E "tests passed|tests failed" "$build/ctest.log" | tail -1
if [ $ctest_status = FAIL ]; then
  grep -E "\(Failed\)|\(Subprocess aborted\)|\(SEGFAULT\)|\(Timeout\)|\*\*\*Exception" \
    "$build/ctest.log" | head -40
  echo "ci-sanitize: ctest failed; the log is $build/ctest.log"
fi
ctest_done=$(date +%s)

echo "== fuzz: ${seconds}s per target, $jobs at a time"
seeds=$build/fuzz-seeds
"$build/fuzz/make-fuzz-seeds" "$root" "$seeds" || die "make-fuzz-seeds failed"
findings=$build/fuzz-findings
logs=$build/fuzz-logs
rm -rf "$findings" "$logs"
mkdir -p "$findings" "$logs"
# The loaders that read files get a scratch directory in memory.
scratch_base=/dev/shm
[ -d "$scratch_base" ] && [ -w "$scratch_base" ] || scratch_base=${TMPDIR:-/tmp}
COMPRESSA_FUZZ_SCRATCH=$(mktemp -d "$scratch_base/compressa-ci-sanitize.XXXXXX") ||
  die "cannot create a scratch directory in $scratch_base"
export COMPRESSA_FUZZ_SCRATCH
trap 'rm -rf "$COMPRESSA_FUZZ_SCRATCH"' EXIT

targets=()
for bin in "$build"/fuzz/fuzz_*; do
  [ -x "$bin" ] && targets+=("$(basename "$bin")")
done
[ ${#targets[@]} -gt 0 ] || die "no fuzz targets in $build/fuzz"

# run_target NAME: fuzzes one target; its exit status and log tell the rest.
run_target() {
  local target=$1 name=${1#fuzz_}
  local corpus=$build/fuzz-corpus/$name
  local inputs=("$corpus" "$seeds/$name")
  [ -d "$root/test/fuzz/regressions/$name" ] &&
    inputs+=("$root/test/fuzz/regressions/$name")
  mkdir -p "$corpus" "$findings/$name"
  local t0
  t0=$(date +%s)
  "$build/fuzz/$target" -max_total_time="$seconds" -timeout="$per_input" \
    -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$findings/$name/" "${inputs[@]}" \
    >"$logs/$name.log" 2>&1
  local rc=$?
  echo "$rc $(($(date +%s) - t0))" >"$logs/$name.status"
}

running=0
for target in "${targets[@]}"; do
  if [ $running -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
  echo "  $target"
  run_target "$target" &
  running=$((running + 1))
done
wait
fuzz_done=$(date +%s)

# The summary.
failed=0
[ $ctest_status = PASS ] || failed=1
printf '\n%-24s %-8s %10s %8s %8s %6s  %s\n' target result execs cov corpus secs "finding / reproducer"
printf '%-24s %-8s %10s %8s %8s %6s  %s\n' ------------------------ -------- ---------- -------- -------- ------ --------------------
for target in "${targets[@]}"; do
  name=${target#fuzz_}
  log=$logs/$name.log
  read -r rc secs <"$logs/$name.status" 2>/dev/null || { rc=missing; secs=?; }
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  corpus=$(find "$build/fuzz-corpus/$name" -type f 2>/dev/null | wc -l)
  found=$(find "$findings/$name" -type f 2>/dev/null | sort | head -1)
  result=ok
  detail=
  if [ "$rc" != 0 ] || [ -n "$found" ]; then
    failed=1
    result=FAIL
    kind=$(grep -m1 -oE 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer): [a-zA-Z-]+|runtime error: .{0,60}|FUZZ_CHECK\(.{0,60}' "$log")
    detail="${kind:-exit status $rc}; ${found:-no input saved}; log $log"
  fi
  printf '%-24s %-8s %10s %8s %8s %6s  %s\n' "$target" "$result" "${execs:-?}" \
    "${cov:-?}" "$corpus" "$secs" "$detail"
done
end=$(date +%s)
printf '\nctest: %s (%s)\n' "$ctest_status" "$build/ctest.log"
printf 'time: build %ss, ctest %ss, fuzz %ss, total %ss\n' \
  $((build_done - start)) $((ctest_done - build_done)) \
  $((fuzz_done - ctest_done)) $((end - start))
if [ $failed -ne 0 ]; then
  echo "ci-sanitize: FAILED (rerun a finding with $build/fuzz/fuzz_<target> <file>)"
  exit 1
fi
echo "ci-sanitize: all passed"
