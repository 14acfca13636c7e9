#!/bin/sh
# usage: train.sh SELFSUP: `mpirun -np 2 selfsup train` against the same run in one process, on Fashion-MNIST.
#  1. The first step's loss (before any update) of a 2-rank run equals the one-process loss: the ranks
#     together saw the same views (shards keyed by the global sample id), SyncBN and global negatives.
#  2. Rank 0 alone wrote the run: one metrics line per step, one checkpoint, the encoder.
#  3. A checkpoint of the 2-rank run resumes in one process (another world size is supported) and its
#     next step's loss matches the one-process run's second step.
#  4. At an epoch's end rank 0 runs the kNN monitor alone while rank 1 waits (at a barrier), and the run goes on.
#  5. The methods with state run data-parallel as one process: MoCo v2 (keys shuffled across the ranks, one
#     global queue), PIRL (one global bank), Context Encoder (one discriminator): step 1's loss of a 2-rank
#     run equals the one-process loss; MoCo v2's 2-rank checkpoint (queue, pointer, key encoder) resumes in
#     one process and step 2 matches the one-process run.
#  6. MoCo with a shard count that cannot split over the ranks (3 shards, 2 ranks) is refused with the rule.
# Float32: the losses agree to 1e-5 relative (measured: 6e-8 at step 1, 1.6e-6 at step 2 after an SGD step
# at lr 0.3 on gradients that agree to ~1e-6).
dir=$(dirname "$0")
selfsup=$1
data=${SELFSUP_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
if [ ! -f "$data/train-images-idx3-ubyte.gz" ]; then
  echo "FAIL: Fashion-MNIST is missing at $data (apt-get install dataset-fashion-mnist, or scripts/install-deps.sh)"
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
args="--limit 256 --batch 32 --width 4 --no-knn --log-every 1 --threads 1 --seed 5"
OMP_NUM_THREADS=1 "$selfsup" train $args --steps 2 --out "$tmp/one" >"$tmp/one.log" 2>&1 || { cat "$tmp/one.log"; exit 1; }
sh "$dir/mpirun.sh" 2 "$selfsup" train $args --steps 2 --stop-after 1 --out "$tmp/two" >"$tmp/two.log" 2>&1
rc=$?
if [ $rc -eq 77 ]; then cat "$tmp/two.log"; exit 77; fi
[ $rc -eq 0 ] || { echo "FAIL: the 2-rank run exited with $rc"; cat "$tmp/two.log"; exit 1; }
OMP_NUM_THREADS=1 "$selfsup" train --resume "$tmp/two" >"$tmp/resume.log" 2>&1 || { cat "$tmp/resume.log"; exit 1; }
loss() { grep "\"step\": $2," "$1/metrics.jsonl" | sed 's/.*"loss": \([^,]*\),.*/\1/'; }
one1=$(loss "$tmp/one" 1); one2=$(loss "$tmp/one" 2); two1=$(loss "$tmp/two" 1); two2=$(loss "$tmp/two" 2)
lines=$(wc -l < "$tmp/two/metrics.jsonl")
echo "one process: step 1 loss $one1, step 2 loss $one2"
echo "2 ranks:     step 1 loss $two1; resumed in one process: step 2 loss $two2"
status=0
awk -v a="$one1" -v b="$two1" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-5 * a) }' ||
  { echo "FAIL: step 1 losses differ by more than 1e-5 relative"; status=1; }
awk -v a="$one2" -v b="$two2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-5 * a) }' ||
  { echo "FAIL: step 2 losses (resumed from the 2-rank checkpoint) differ by more than 1e-5 relative"; status=1; }
[ "$lines" -eq 2 ] || { echo "FAIL: metrics.jsonl has $lines lines, expected 2 (rank 0 alone writes)"; status=1; }
grep -q "data parallel: 2 ranks" "$tmp/two.log" || { echo "FAIL: the 2-rank run did not report its ranks"; status=1; }
[ "$(grep -c 'selfsup train: starting' "$tmp/two.log")" -eq 1 ] || { echo "FAIL: more than one rank printed"; status=1; }
[ -f "$tmp/two/encoder.safetensors" ] || { echo "FAIL: the resumed run wrote no encoder"; status=1; }
sh "$dir/mpirun.sh" 2 "$selfsup" train --limit 64 --batch 32 --steps 3 --width 4 --knn-train-limit 64 --threads 1 \
  --out "$tmp/knn" >"$tmp/knn.log" 2>&1 || { echo "FAIL: the 2-rank run with the kNN monitor failed"; cat "$tmp/knn.log"; status=1; }
[ "$(grep -c '"type": "epoch"' "$tmp/knn/metrics.jsonl" 2>/dev/null)" -eq 2 ] ||
  { echo "FAIL: the 2-rank run with the kNN monitor logged no epoch line per epoch"; status=1; }
close() {  # close A B WHAT: |A - B| <= 1e-5 |A|; a missing loss is a failure
  [ -n "$1" ] && [ -n "$2" ] || { echo "FAIL: $3: a loss is missing ('$1', '$2')"; status=1; return; }
  awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-5 * (a < 0 ? -a : a)) }' ||
    { echo "FAIL: $3: $1 vs $2 differ by more than 1e-5 relative"; status=1; }
}
for m in mocov2 pirl context-encoder; do
  margs="--method $m --limit 256 --batch 32 --width 4 --no-knn --log-every 1 --threads 1 --seed 5"
  steps=1
  [ $m = mocov2 ] && steps=2
  OMP_NUM_THREADS=1 "$selfsup" train $margs --steps $steps --out "$tmp/$m-one" >"$tmp/$m-one.log" 2>&1 ||
    { echo "FAIL: --method $m in one process"; cat "$tmp/$m-one.log"; status=1; continue; }
  sh "$dir/mpirun.sh" 2 "$selfsup" train $margs --steps $steps --stop-after 1 --out "$tmp/$m-two" >"$tmp/$m-two.log" 2>&1 ||
    { echo "FAIL: --method $m on 2 ranks"; cat "$tmp/$m-two.log"; status=1; continue; }
  a=$(loss "$tmp/$m-one" 1); b=$(loss "$tmp/$m-two" 1)
  echo "$m: step 1 loss, one process $a, 2 ranks $b"
  close "$a" "$b" "$m step 1 loss (one process vs 2 ranks)"
  if [ $m = mocov2 ]; then
    OMP_NUM_THREADS=1 "$selfsup" train --resume "$tmp/$m-two" >"$tmp/$m-resume.log" 2>&1 ||
      { echo "FAIL: the 2-rank mocov2 checkpoint did not resume"; cat "$tmp/$m-resume.log"; status=1; continue; }
    a=$(loss "$tmp/$m-one" 2); b=$(loss "$tmp/$m-two" 2)
    echo "$m: step 2 loss, one process $a, resumed from 2 ranks $b"
    close "$a" "$b" "$m step 2 loss (resumed from the 2-rank checkpoint)"
  fi
done
sh "$dir/mpirun.sh" 2 "$selfsup" train --method moco --shuffle-bn-shards 3 --limit 64 --batch 30 --steps 1 --width 4 \
  --no-knn --threads 1 --out "$tmp/shards" >"$tmp/shards.log" 2>&1 && { echo "FAIL: 3 key shards ran on 2 ranks"; status=1; }
grep -q "shuffle-bn-shards 3 on 2 ranks: moco's key shards are split over the ranks" "$tmp/shards.log" ||
  { echo "FAIL: 3 key shards on 2 ranks: no clear refusal"; cat "$tmp/shards.log"; status=1; }
exit $status
