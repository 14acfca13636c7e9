#!/usr/bin/env bash
# Data-parallel scaling on this machine's CPU, selfsup vs PyTorch DDP (gloo) in one run, at the same model
# (ResNet-18 layout width W, SimCLR head, global NT-Xent), the same global batch and the same steps:
#   1 rank x 2 threads, and 2 ranks x 1 thread (mpirun for selfsup, torch.multiprocessing for PyTorch).
# selfsup runs twice at 2 ranks: with SyncBN (what `selfsup train` does) and without (PyTorch's SyncBatchNorm
# refuses CPU tensors, so its ranks normalise with their own statistics: the like-for-like comparison).
#   bash bench/dist_scaling.sh [BUILD (build)] [--width 8] [--batch 64] [--steps 20]
# Needs mpirun (openmpi-bin) and python3-torch. Prints a table and one JSON line per run.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then BUILD=$1; shift; fi
ARGS=("$@")
BENCH=$BUILD/bench_dist
[ -x "$BENCH" ] || { echo "dist_scaling: $BENCH not built (make build)"; exit 1; }
command -v mpirun >/dev/null || { echo "dist_scaling: mpirun not found (apt-get install openmpi-bin)"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive
width=8 batch=64 steps=20
for ((i = 0; i < ${#ARGS[@]}; i++)); do
  case "${ARGS[$i]}" in
    --width) width=${ARGS[$((i + 1))]} ;;
    --batch) batch=${ARGS[$((i + 1))]} ;;
    --steps) steps=${ARGS[$((i + 1))]} ;;
  esac
done
common=(--width "$width" --batch "$batch" --steps "$steps")
# 256 KB buckets: the width-8 model has 1.1 MB of gradients, one 25 MB bucket would start only after backward.
ours=(--bucket-kb 256)
json() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
s1=$(OMP_NUM_THREADS=2 "$BENCH" "${common[@]}" "${ours[@]}" --threads 2 | tail -1)
s2=$(OMP_NUM_THREADS=1 mpirun -np 2 --bind-to none "$BENCH" "${common[@]}" "${ours[@]}" --threads 1 | tail -1)
s2n=$(OMP_NUM_THREADS=1 mpirun -np 2 --bind-to none "$BENCH" "${common[@]}" "${ours[@]}" --threads 1 --no-sync-bn | tail -1)
PY=/usr/bin/python3
p1=$($PY bench/peers/torch_ddp.py "${common[@]}" --ranks 1 --threads 2 | tail -1)
p2=$($PY bench/peers/torch_ddp.py "${common[@]}" --ranks 2 --threads 1 | tail -1)
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"
ips() { json "$1" images_per_s; }
printf "\nSimCLR steps, ResNet-18 layout width %s, global batch %s, %s steps, CPU (%s cores)\n" "$width" "$batch" \
  "$steps" "$(nproc)"
printf "%-34s %10s %10s %12s %10s %12s\n" "" "images/s" "vs 1 rank" "comm ms/step" "hidden" "bytes/step"
row() {
  local hidden="-"
  [ "$(json "$2" ranks)" -gt 1 ] && hidden=$(python3 -c "print('%.0f%%' % (100 * $(json "$2" hidden_fraction)))")
  printf "%-34s %10.1f %9.2fx %12.2f %10s %12s\n" "$1" "$(ips "$2")" \
    "$(python3 -c "print($(ips "$2") / $(ips "$3"))")" "$(json "$2" comm_wait_ms)" "$hidden" \
    "$(json "$2" bytes_per_step)"
}
row "selfsup 1 rank x 2 threads" "$s1" "$s1"
row "selfsup 2 ranks x 1 thread, SyncBN" "$s2" "$s1"
row "selfsup 2 ranks x 1 thread, no Sync" "$s2n" "$s1"
printf "%-34s %10.1f\n" "PyTorch DDP 1 rank x 2 threads" "$(ips "$p1")"
printf "%-34s %10.1f %9.2fx\n" "PyTorch DDP 2 ranks x 1 thread" "$(ips "$p2")" \
  "$(python3 -c "print($(ips "$p2") / $(ips "$p1"))")"
printf "\n1-element all_reduce at 2 ranks: %s us (SyncBN synchronises twice per BN layer and step)\n" \
  "$(json "$s2" allreduce_latency_us)"
printf "selfsup / PyTorch: 1 rank %.2fx, 2 ranks %.2fx (both without SyncBN at 2 ranks)\n" \
  "$(python3 -c "print($(ips "$s1") / $(ips "$p1"))")" "$(python3 -c "print($(ips "$s2n") / $(ips "$p2"))")"
echo "$s1"
echo "$s2"
echo "$s2n"
echo "{\"peer\": \"torch_ddp\", \"ranks\": 1, \"images_per_s\": $(ips "$p1")}"
echo "{\"peer\": \"torch_ddp\", \"ranks\": 2, \"images_per_s\": $(ips "$p2")}"
