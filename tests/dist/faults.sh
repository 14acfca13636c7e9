#!/bin/sh
# usage: faults.sh TEST_DIST_FAULT SELFSUP: a rank that throws, dies or hangs ends the whole job with a
# non-zero status and a message, and a training job whose --batch does not divide over the ranks stops with
# the trainer's error. Each job runs under `timeout 120`: reaching it (status 124) is a failure, a hang.
dir=$(dirname "$0")
fault=$1
selfsup=$2
status=0
# check NAME EXPECTED_TEXT CMD...: the job must fail (not 0), not time out (124), and print EXPECTED_TEXT.
check() {
  name=$1
  text=$2
  shift 2
  out=$(timeout 120 "$@" 2>&1)
  rc=$?
  if [ "$rc" -eq 77 ]; then echo "$out"; exit 77; fi
  if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] || ! printf '%s' "$out" | grep -qF "$text"; then
    echo "FAIL $name: exit status $rc, expected non-zero (not 124, the hang timeout) and the text '$text'; output:"
    echo "$out"
    status=1
  else
    echo "ok   $name: exit status $rc, '$text' printed"
  fi
}
check throw "selfsup rank 1/2: error: rank 1 fails on purpose" sh "$dir/mpirun.sh" 2 "$fault" throw
check die "signal 9" sh "$dir/mpirun.sh" 2 "$fault" die
export SELFSUP_DIST_TIMEOUT=3
check hang "all_reduce of [1024] did not complete within 3 s" sh "$dir/mpirun.sh" 2 "$fault" hang
unset SELFSUP_DIST_TIMEOUT
tmp=$(mktemp -d)
check batch "must be a multiple of the 2 ranks" sh "$dir/mpirun.sh" 2 "$selfsup" train --batch 7 --steps 1 \
  --limit 64 --no-knn --out "$tmp/run"
rm -rf "$tmp"
exit $status
