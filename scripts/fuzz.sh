#!/usr/bin/env bash
# Runs each libFuzzer target of tests/fuzz (built by `make fuzz` into BUILD) for SECONDS, one after the other,
# niced and on one core, and prints each target's final statistics (executions, coverage).
#   scripts/fuzz.sh BUILD SECONDS TARGET...
# New inputs go to BUILD/fuzz-corpus/<target>/ (the committed seeds in tests/fuzz/corpus/<target>/ are only
# read); a crash stops that target, leaves its input in BUILD/fuzz-artifacts/<target>/ and fails the run.
# Limits: -timeout=10 (an input taking longer is a hang), -malloc_limit_mb=512 (one allocation past that
# is a finding), -rss_limit_mb=2048.
set -uo pipefail
cd "$(dirname "$0")/.."
build=$(realpath "$1")
seconds=$2
shift 2
failed=()
for t in "$@"; do
  work="$build/fuzz-corpus/$t"
  artifacts="$build/fuzz-artifacts/$t/"
  log="$build/fuzz-$t.log"
  seeds="$PWD/tests/fuzz/corpus/$t"
  mkdir -p "$work" "$artifacts"
  echo "fuzz: $t for ${seconds}s (log $log)"
  # -jobs=1 runs the fuzzer in a child that writes fuzz-0.log into the working directory: run it in BUILD.
  (cd "$build" && rm -f fuzz-0.log &&
    nice -n 19 "./fuzz_$t" -max_total_time="$seconds" -timeout=10 -malloc_limit_mb=512 -rss_limit_mb=2048 \
      -jobs=1 -workers=1 -print_final_stats=1 -artifact_prefix="$artifacts" "$work" "$seeds" > "$log" 2>&1)
  rc=$?
  if [ -f "$build/fuzz-0.log" ]; then cat "$build/fuzz-0.log" >> "$log"; rm -f "$build/fuzz-0.log"; fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  cov=$(grep -oE 'DONE[[:space:]]+cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+')
  echo "fuzz: $t: rc $rc, ${execs:-?} executions, ${cov:-no final stats}"
  if [ $rc -ne 0 ]; then
    failed+=("$t")
    grep -E "ERROR|SUMMARY|Test unit written" "$log" | head -5
  fi
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs under $build/fuzz-artifacts/)"
  exit 1
fi
