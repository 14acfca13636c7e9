#!/usr/bin/env bash
# The one GPU check: run from the repository root on a machine with an NVIDIA GPU (an H200 in our case,
# in one device-tool call; never timed yet: plan on 6-9 minutes for everything, and split the groups with
# GPU_CHECK_STEPS when the session's device time is short):
#
#   bash bench/gpu_check.sh            # or: OUT=/some/dir bash bench/gpu_check.sh
#   GPU_CHECK_STEPS=tests,train bash bench/gpu_check.sh   # groups: tests sanitizer bench playground train
#
# The lent GPU machine has nvcc and PyTorch but not our Debian packages and no network: first run
# `bash scripts/gpu-pack.sh` on the Debian machine (fills .gpu_deps/: the .debs and Fashion-MNIST) and
# name .gpu_deps in the device call's carry. bench/gpu_env.sh unpacks them into a private prefix and
# finds cuDNN/cuBLAS in PyTorch's pip wheels when the toolkit lacks them (step 0 of the table).
#
# Steps (each timed, each one line in the final table; a failing step does not stop the later ones):
#   1. nvidia-smi                      what GPU and driver this is
#   2. configure + build for sm_90     build-gpu/, -j16, Release, SELFSUP_CUDA=ON, every target (the whole
#                                      test suite, the CLI, the benchmarks and playgrounds)
#   3. selfsup info                    the devices as the engine sees them
#   4. ctest, the whole suite          the CPU tests on a machine that has a GPU (they must not assume there is
#                                      none; SELFSUP_FMNIST_DIR gives them the carried Fashion-MNIST) and
#                                      test_cuda: every CUDA test (device context, Philox bit-identity,
#                                      to(Device), allocator, cuBLAS, casts, reductions, the trainer on cuda)
#                                      and the CPU-vs-CUDA OpCase table (its "not implemented on CUDA" list is
#                                      copied into the report). One row for the suite (passed/failed/skipped
#                                      tests, the failed ones named), one for test_cuda.
#      + NCCL: test_dist's NCCL case at 1 rank, and at 2 ranks under mpirun where 2+ GPUs and mpirun exist
#   5. compute-sanitizer              memcheck on the elementwise/cast/reduce/index/augment/bf16 subset
#                                      (SYNC_DEBUG on), racecheck on the bf16 tensor-core InfoNCE
#   6. benchmarks                      next to PyTorch in the same run: bench_gpu_elementwise (add/mul GB/s vs
#                                      copy, 4096^3 matmul), bench_augment_gpu (vs torchvision.transforms.v2),
#                                      bench_gpu_nn (cross-entropy 65536x1000, ResNet-50 convs), bench_simclr
#                                      (training images/s vs PyTorch eager, width 8 and 64)
#   7. playgrounds                     InfoNCE (fp32 and bf16 tensor-core versions, up to 1M rows, PyTorch
#                                      peer) and EMA kernel versions, validated against the CPU reference, then
#                                      timed (bench/playground/*)
#   8. SimCLR smoke                    50 training steps on the GPU (ResNet-18 width 64, batch 512), then 20
#                                      with streamed (not device-resident) views, when the
#                                      Fashion-MNIST .gz files are at $FMNIST (default: .gpu_deps/fashion-mnist
#                                      when carried, else Debian's /usr/share/datasets/fashion-mnist)
#   9. GPU preset (optional)           PRESET_MINUTES=M: `selfsup demo` on the GPU (the GPU preset, M minutes of
#                                      training, then its linear probe); the run directory comes back as
#                                      $OUT/gpu_preset.tar.part-* (the device tool returns files <= 16 MiB:
#                                      `cat gpu_preset.tar.part-* | tar x` here; models/pretrained/README.md)
# The summary table is printed at the end and written to $OUT/gpu_check.md when OUT is set; the full logs
# go to $BUILD/gpu_check_logs/, and to $OUT/gpu_check_logs.tar.gz (the device tool brings back at most
# 8 files, so the logs travel as one archive). Exit status: non-zero if any build or test
# step failed (the table is printed either way). Copy the table to bench/results/<date>-<commit>.md.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${BUILD:-build-gpu}
ARCHS=${SELFSUP_CUDA_ARCHS:-90}
JOBS=${JOBS:-16}
LOGS=$BUILD/gpu_check_logs
rm -rf "$LOGS"
mkdir -p "$LOGS"
export PATH=/usr/local/cuda/bin:$PATH

# GPU_CHECK_STEPS: which groups run after the build (comma list; default all). One device call of all of
# them takes several minutes: a session short of device time runs "tests,train" first, "bench,playground"
# once they pass.
GPU_CHECK_STEPS=${GPU_CHECK_STEPS:-tests,sanitizer,bench,playground,train}
want() { [[ ",$GPU_CHECK_STEPS," == *",$1,"* ]]; }

declare -a ROWS=()
FAILED=0
row() { ROWS+=("| $1 | $2 | $3 | $4 |"); }

# run_step NAME SECONDS CMD...: runs with a timeout, logs to $LOGS/NAME.log, records status and time.
run_step() {
  local name=$1 limit=$2
  shift 2
  local t0=$(date +%s) rc
  echo "=== $name: $*" > "$LOGS/$name.log"
  timeout --kill-after=10 "$limit" "$@" >> "$LOGS/$name.log" 2>&1
  rc=$?
  local dt=$(( $(date +%s) - t0 ))
  tail -n 25 "$LOGS/$name.log"
  if [ $rc -eq 0 ]; then
    STEP_STATUS=ok
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    STEP_STATUS="TIMEOUT (${limit}s)"
  elif [ $rc -eq 77 ]; then
    STEP_STATUS="SKIPPED (no device)"
  else
    STEP_STATUS="FAILED (rc $rc)"
  fi
  STEP_TIME=${dt}s
  STEP_RC=$rc
}

START=$(date +%s)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git status --porcelain 2>/dev/null | grep -q . && echo " (+ uncommitted changes)" || true)

# 0. dependencies: carried .debs and pip-wheel cuDNN/cuBLAS when the image lacks them (bench/gpu_env.sh)
source "$ROOT/bench/gpu_env.sh"
echo "deps: $GPU_ENV_REPORT"
row "dependencies" "$(echo "$GPU_ENV_REPORT" | grep -q 'NOT FOUND\|no .debs' && echo MISSING || echo ok)" "-" "$GPU_ENV_REPORT"

# 1. GPU
GPU=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
GPU=${GPU:-"nvidia-smi unavailable"}
echo "GPU: $GPU"

# 2. build
run_step configure 60 cmake -S . -B "$BUILD" -DSELFSUP_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
  -DSELFSUP_CUDA_ARCHS="$ARCHS" -DCMAKE_CUDA_ARCHITECTURES="$ARCHS" "${GPU_CMAKE_ARGS[@]}"
row "configure (sm_$ARCHS)" "$STEP_STATUS" "$STEP_TIME" "$BUILD"
[ "$STEP_RC" -ne 0 ] && FAILED=1
if [ "$STEP_RC" -eq 0 ]; then
  run_step build "${BUILD_LIMIT:-300}" cmake --build "$BUILD" -j "$JOBS"
  row "build -j$JOBS" "$STEP_STATUS" "$STEP_TIME" "every target: tests, selfsup, benchmarks, playgrounds"
  [ "$STEP_RC" -ne 0 ] && FAILED=1
  BUILD_OK=$STEP_RC
else
  BUILD_OK=1
fi

if [ "$BUILD_OK" -eq 0 ]; then
  # 3. what the engine sees
  if want tests; then
    run_step info 30 "${RUNENV[@]}" "$BUILD/selfsup" info
    row "selfsup info" "$STEP_STATUS" "$STEP_TIME" "$(grep -m1 'cuda:' "$LOGS/info.log" | sed 's/|/\//g' | cut -c1-90)"

    # 4. the whole ctest suite, CPU tests and test_cuda (the OpCase table included). -V keeps every test's
    # output in the log, each line prefixed "N: " by ctest; test_cuda's lines go to test_cuda.log for the
    # rows and lists below. A skipped test (test_cuda without a device: exit 77) does not fail ctest, so the
    # test_cuda row says Skipped where it did not run.
    run_step ctest "${CTEST_LIMIT:-480}" "${RUNENV[@]}" SELFSUP_FMNIST_DIR="$FMNIST" \
      bash -c "cd '$BUILD' && ctest -V -j ${CTEST_JOBS:-8} --timeout 400"
    [ "$STEP_RC" -ne 0 ] && FAILED=1
    SUITE=$(grep -m1 -E '^[0-9]+% tests passed' "$LOGS/ctest.log")
    list_after() {  # the test names ctest lists under a heading ("\t 11 - cuda (Skipped)"), comma-separated
      sed -n "/^$1/,/^\$/p" "$LOGS/ctest.log" | grep -E '^\s+[0-9]+ - ' | sed -E 's/^\s+[0-9]+ - //' | paste -sd, -
    }
    NOT_PASSED=$(list_after 'The following tests FAILED:')
    NOT_RUN=$(list_after 'The following tests did not run:')
    row "ctest, whole suite" "$STEP_STATUS" "$STEP_TIME" \
      "${SUITE:-no ctest summary}${NOT_PASSED:+; FAILED: $NOT_PASSED}${NOT_RUN:+; not run: $NOT_RUN}"
    CUDA_N=$(grep -m1 -E '^[0-9]+: Test command: .*/test_cuda$' "$LOGS/ctest.log" | cut -d: -f1)
    [ -n "$CUDA_N" ] && sed -n "s/^$CUDA_N: //p" "$LOGS/ctest.log" > "$LOGS/test_cuda.log"
    CUDA_RESULT=$(grep -m1 -E '^[0-9]+/[0-9]+ Test +#[0-9]+: cuda \.' "$LOGS/ctest.log" | sed -E 's/.* \.+[* ]*//; s/  +/ /g')
    OPT=$(grep -m1 '^op table CPU vs CUDA' "$LOGS/test_cuda.log" 2>/dev/null | sed 's/^op table CPU vs CUDA: //')
    DT=$(grep -m1 -E '^\[doctest\] test cases' "$LOGS/test_cuda.log" 2>/dev/null | sed 's/^\[doctest\] //; s/|/\//g')
    row "test_cuda (in ctest)" "${CUDA_RESULT:-not run}" "-" "${DT:-no doctest summary}"
    row "OpCase table CPU vs CUDA" "$([ -n "$OPT" ] && echo ran || echo missing)" "-" "${OPT:-see log}"
    OPB=$(grep -m1 '^op table CPU vs CUDA in bf16' "$LOGS/test_cuda.log" 2>/dev/null | sed 's/^op table CPU vs CUDA in bf16: //')
    row "OpCase table CPU vs CUDA, bf16" "$([ -n "$OPB" ] && echo ran || echo missing)" "-" "${OPB:-see log}"

    # 4b. data parallelism over NCCL (engine/dist): one rank always; two ranks under mpirun when this machine
    # has 2+ GPUs and mpirun (the NCCL unique id travels over MPI). Collectives and the all-gather's backward
    # on CUDA tensors against the values the CPU tests check.
    run_step nccl_1rank 120 "${RUNENV[@]}" "$BUILD/test_dist" -tc="NCCL*"
    row "NCCL, 1 rank (test_dist)" "$STEP_STATUS" "$STEP_TIME" \
      "$(grep -m1 -E 'SKIPPED|test cases' "$LOGS/nccl_1rank.log" | sed 's/^\[doctest\] //; s/|/\//g')"
    [ "$STEP_RC" -ne 0 ] && FAILED=1
    NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
    if [ "${NGPU:-0}" -ge 2 ] && command -v mpirun > /dev/null; then
      run_step nccl_2ranks 180 "${RUNENV[@]}" OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
        mpirun -np 2 --bind-to none "$BUILD/test_dist" -tc="NCCL*"
      row "NCCL, 2 ranks (mpirun)" "$STEP_STATUS" "$STEP_TIME" \
        "$(grep -m1 'test cases' "$LOGS/nccl_2ranks.log" | sed 's/^\[doctest\] //; s/|/\//g')"
      [ "$STEP_RC" -ne 0 ] && FAILED=1
    else
      row "NCCL, 2 ranks (mpirun)" "not run" "-" "needs 2+ GPUs (found ${NGPU:-0}) and mpirun"
    fi
  fi

  # 5. memcheck on a subset (each kernel family once; SYNC_DEBUG pins faults to their launch)
  if want sanitizer; then
    # compute-sanitizer: on PATH, in the toolkit, or from the PyPI wheel nvidia-cuda-sanitizer-api
    # (pip install nvidia-cuda-sanitizer-api; its binary sits in site-packages/nvidia/cuda_sanitizer_api/).
    SANITIZER=$(command -v compute-sanitizer 2>/dev/null)
    for c in /usr/local/cuda/compute-sanitizer/compute-sanitizer /usr/local/cuda/bin/compute-sanitizer \
             $("$PY" -c 'import nvidia, os; [print(os.path.join(p, "cuda_sanitizer_api", "compute-sanitizer", "compute-sanitizer")) for p in nvidia.__path__]' 2>/dev/null); do
      [ -z "$SANITIZER" ] && [ -x "$c" ] && SANITIZER=$c
    done
    if [ -n "$SANITIZER" ]; then
      run_step memcheck 120 "${RUNENV[@]}" SELFSUP_SYNC_DEBUG=1 "$SANITIZER" --tool memcheck --leak-check none \
        --error-exitcode 99 "$BUILD/test_cuda" \
        -tc="*Philox*,*casts*,*elementwise*,*reductions*,*index ops*,*to(Device) round*,*cuBLAS*,*bf16 CUDA output*,*device augment*,*CUDA bf16*,*record_stream*"
      [ "$STEP_RC" -ne 0 ] && FAILED=1
      ERRS=$(grep -m1 -E 'ERROR SUMMARY' "$LOGS/memcheck.log" | sed 's/^=* *//')
      row "compute-sanitizer memcheck" "$STEP_STATUS" "$STEP_TIME" "${ERRS:-no summary}"
      # shared-memory hazards of the bf16 InfoNCE cp.async/ldmatrix pipeline
      run_step racecheck_infonce 120 "${RUNENV[@]}" "$SANITIZER" --tool racecheck --error-exitcode 99 \
        "$BUILD/test_cuda" -tc="*nt_xent on CUDA bf16 matches*"
      [ "$STEP_RC" -ne 0 ] && FAILED=1
      row "racecheck InfoNCE bf16" "$STEP_STATUS" "$STEP_TIME" \
        "$(grep -m1 -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$LOGS/racecheck_infonce.log" | sed 's/^=* *//')"
    else
      # Not a test failure, but the table says loudly that memory checking did not happen.
      row "compute-sanitizer memcheck" "NOT RUN" "-" "compute-sanitizer not found (pip install nvidia-cuda-sanitizer-api)"
    fi
  fi

  # 6. benchmarks: ours, then PyTorch's on the same GPU
  if want bench; then
    run_step bench_ours 60 "${RUNENV[@]}" "$BUILD/bench_gpu_elementwise"
    row "bench_gpu_elementwise" "$STEP_STATUS" "$STEP_TIME" "JSON lines in the log"
    run_step bench_torch 60 "$PY" bench/peers/torch_gpu_ops.py
    row "PyTorch peer" "$STEP_STATUS" "$STEP_TIME" "$("$PY" -c 'import torch; print("torch", torch.__version__)' 2>/dev/null || echo 'torch not importable')"
    # augmentation: 4096 x 256x256x3 -> 224x224 SimCLR, 2 views (bf16, fp32), next to torchvision v2 on the GPU
    run_step bench_augment_ours 120 "${RUNENV[@]}" "$BUILD/bench_augment_gpu"
    row "bench_augment_gpu" "$STEP_STATUS" "$STEP_TIME" "$(grep -m1 'dataset RESIDENT' "$LOGS/bench_augment_ours.log" | cut -c3-60)"
    run_step bench_augment_torch 90 "$PY" bench/peers/torch_augment_gpu.py
    row "torchvision augment peer" "$STEP_STATUS" "$STEP_TIME" "$(grep -m1 '^# torch' "$LOGS/bench_augment_torch.log" | cut -c3-90 | sed 's/|/\//g')"
    # nn kernels: cross-entropy 65536x1000 and ResNet-50 convs (ms, lower is better), next to PyTorch
    run_step bench_nn_ours 120 "${RUNENV[@]}" "$BUILD/bench_gpu_nn"
    row "bench_gpu_nn" "$STEP_STATUS" "$STEP_TIME" "cross-entropy + ResNet-50 conv, ms"
    run_step bench_nn_torch 120 "$PY" bench/peers/torch_gpu_nn.py
    row "PyTorch nn peer" "$STEP_STATUS" "$STEP_TIME" "same keys as bench_gpu_nn"
    # SimCLR training images/s, selfsup (views made on the GPU) vs PyTorch eager (DataLoader workers): the
    # small model, where launch overhead dominates, and the GPU preset's model
    if [ -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
      for wb in "8 256" "64 512"; do
        set -- $wb
        run_step "bench_simclr_w$1" 150 "${RUNENV[@]}" "$BUILD/bench_simclr" --device cuda --width "$1" --batch "$2" \
          --steps 100 --rounds 1 --workers 12 --data-dir "$FMNIST"
        row "SimCLR img/s, width $1 batch $2" "$STEP_STATUS" "$STEP_TIME" \
          "$(grep -E '^(selfsup|PyTorch|ratio) ' "$LOGS/bench_simclr_w$1.log" | tr -s ' ' | tr '\n' ';')"
      done
    fi
  fi

  # 7. kernel playgrounds: each version is validated first (non-zero exit on a mismatch), then timed
  if want playground; then
    run_step playground_infonce 180 "${RUNENV[@]}" "$BUILD/bench_playground_infonce" --big --peer
    row "playground InfoNCE" "$STEP_STATUS" "$STEP_TIME" "versions, validation and ms in the log"
    run_step playground_momentum 60 "${RUNENV[@]}" "$BUILD/bench_playground_momentum"
    row "playground EMA" "$STEP_STATUS" "$STEP_TIME" "GB/s vs copy in the log"
  fi

  # 8. the trainer on the GPU
  if want train; then
    if [ -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
      rm -rf "$BUILD/simclr_smoke"
      run_step simclr_smoke 180 "${RUNENV[@]}" "$BUILD/selfsup" train --data "fashion-mnist:$FMNIST" --device cuda --width 64 \
        --batch 512 --steps 50 --no-knn --log-every 10 --out "$BUILD/simclr_smoke"
      row "SimCLR 50 steps on cuda" "$STEP_STATUS" "$STEP_TIME" "$(grep -o 'trained.*' "$LOGS/simclr_smoke.log" | tail -1)"
      row "GPU views (smoke)" "$(grep -q '^augmentation on cuda' "$LOGS/simclr_smoke.log" && echo ran || echo missing)" "-" \
        "$(grep -m1 -o '^augmentation on cuda[^;]*' "$LOGS/simclr_smoke.log" | cut -c1-90)"
      rm -rf "$BUILD/simclr_smoke_stream"
      run_step simclr_smoke_stream 120 "${RUNENV[@]}" SELFSUP_GPU_DATA=stream "$BUILD/selfsup" train \
        --data "fashion-mnist:$FMNIST" --device cuda --width 64 --batch 512 --steps 20 --no-knn --log-every 10 \
        --out "$BUILD/simclr_smoke_stream"
      row "SimCLR 20 steps, streamed views" "$STEP_STATUS" "$STEP_TIME" "$(grep -o 'trained.*' "$LOGS/simclr_smoke_stream.log" | tail -1)"
    else
      row "SimCLR 50 steps on cuda" "NOT RUN" "-" "no Fashion-MNIST at $FMNIST (set FMNIST=DIR)"
    fi
  fi

  # 9. the GPU preset, trained and probed by the demo; the run directory is packed for the trip back
  if [ "${PRESET_MINUTES:-0}" != "0" ] && [ -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
    rm -rf "$BUILD/gpu_preset"
    run_step gpu_preset $(awk -v m="$PRESET_MINUTES" 'BEGIN { printf("%d", 60 * m + 150) }') \
      "${RUNENV[@]}" "$BUILD/selfsup" demo --minutes "$PRESET_MINUTES" --out "$BUILD/gpu_preset" \
      --pretrained none --data-dir "$FMNIST"
    row "GPU preset, $PRESET_MINUTES min" "$STEP_STATUS" "$STEP_TIME" \
      "$(grep -E 'linear probe test top-1:' "$LOGS/gpu_preset.log" | tail -1 | sed 's/  */ /g')"
    if [ -n "${OUT:-}" ] && [ -f "$BUILD/gpu_preset/encoder.safetensors" ]; then
      tar cf - -C "$BUILD/gpu_preset" encoder.safetensors config.json metrics.jsonl metrics.png 2>/dev/null |
        split -b 15M - "$OUT/gpu_preset.tar.part-"
    fi
  fi
fi

TOTAL=$(( $(date +%s) - START ))

# Benchmark table: join the two JSON-line logs on "bench" (plain shell + awk: no Python needed for this).
bench_table() {
  local ours=${1:-$LOGS/bench_ours.log} torch=${2:-$LOGS/bench_torch.log}
  [ -f "$ours" ] || { echo "(no benchmark output)"; return; }
  echo "| benchmark | selfsup | PyTorch | selfsup / PyTorch |"
  echo "|---|---:|---:|---:|"
  awk '
    function field(line, key,   m) {  # value of "key": in a flat JSON line
      if (match(line, "\"" key "\": *\"[^\"]*\"")) { m = substr(line, RSTART, RLENGTH); sub(/^[^:]*: *"/, "", m); sub(/"$/, "", m); return m }
      if (match(line, "\"" key "\": *[-0-9.eE+]+")) { m = substr(line, RSTART, RLENGTH); sub(/^[^:]*: */, "", m); return m }
      return ""
    }
    FNR == NR { if ($0 ~ /"bench"/) { t[field($0, "bench")] = field($0, "value") } next }
    /"bench"/ {
      b = field($0, "bench"); v = field($0, "value"); u = field($0, "unit")
      pt = (b in t) ? t[b] : ""
      ratio = (pt != "" && pt + 0 > 0) ? sprintf("%.2f", v / pt) : "-"
      printf("| %s | %s %s | %s | %s |\n", b, v, u, (pt == "" ? "-" : pt " " u), ratio)
    }' "$torch" "$ours" 2>/dev/null
  local copy add
  copy=$(grep -m1 '"copy_d2d_f32_256M"' "$ours" | sed 's/.*"value": \([0-9.]*\).*/\1/')
  add=$(grep -m1 '"add_f32_256M"' "$ours" | sed 's/.*"value": \([0-9.]*\).*/\1/')
  if [ -n "$copy" ] && [ -n "$add" ]; then
    echo
    echo "elementwise add reaches $(awk -v a="$add" -v c="$copy" 'BEGIN { printf("%.0f", 100 * a / c) }')% of the device-to-device copy bandwidth (goal: >= 80%)."
  fi
}

{
  echo "# gpu_check $(date -u +%Y-%m-%d) commit $COMMIT$DIRTY"
  echo
  echo "GPU: $GPU  "
  echo "total: ${TOTAL}s, status: $([ $FAILED -eq 0 ] && echo PASS || echo FAIL)"
  echo
  echo "| step | status | time | detail |"
  echo "|---|---|---|---|"
  for r in "${ROWS[@]}"; do echo "$r"; done
  echo
  bench_table
  if [ -f "$LOGS/bench_augment_ours.log" ]; then
    echo
    echo "Augmentation (4096 x 256x256x3 -> 224x224, SimCLR, 2 views; the peer is extrapolated from a timed subset):"
    echo
    bench_table "$LOGS/bench_augment_ours.log" "$LOGS/bench_augment_torch.log"
  fi
  if [ -f "$LOGS/bench_nn_ours.log" ]; then
    echo
    echo "nn kernels (milliseconds: selfsup / PyTorch below 1 is faster):"
    echo
    bench_table "$LOGS/bench_nn_ours.log" "$LOGS/bench_nn_torch.log"
  fi
  if [ -f "$LOGS/test_cuda.log" ] && grep -q 'not implemented on CUDA:' "$LOGS/test_cuda.log"; then
    echo
    echo "OpCase rows not implemented on CUDA yet:"
    echo
    grep 'not implemented on CUDA:' "$LOGS/test_cuda.log" | sed 's/^ */- /; s/ (kernel .*//' | head -60
  fi
  if [ -f "$LOGS/test_cuda.log" ] && grep -q '  FAIL ' "$LOGS/test_cuda.log"; then
    echo
    echo "OpCase rows that FAILED on CUDA:"
    echo
    grep '  FAIL ' "$LOGS/test_cuda.log" | sed 's/^ */- /' | head -60
  fi
} > "$LOGS/gpu_check.md"

echo
echo "================================================================ gpu_check summary"
cat "$LOGS/gpu_check.md"
if [ -n "${OUT:-}" ]; then
  cp "$LOGS/gpu_check.md" "$OUT/gpu_check.md"
  tar czf "$OUT/gpu_check_logs.tar.gz" -C "$BUILD" gpu_check_logs
  echo "(written to $OUT/gpu_check.md; logs in $OUT/gpu_check_logs.tar.gz)"
fi
exit $FAILED
