#!/usr/bin/env bash
# Installs every Debian package the build, the demo and the tests need. Idempotent: when all are
# present it returns at once, so `make test` and `make demo` can call it every time.
set -euo pipefail

PACKAGES=(
  cmake g++ make pkg-config
  doctest-dev            # test framework
  libdnnl-dev            # oneDNN: CPU GEMM and convolution (detects AVX-512 at run time)
  ocl-icd-opencl-dev     # oneDNN's CMake config requires OpenCL; libdnnl-dev only Recommends it
  libopenblas-dev        # BLAS for float64 GEMM (reference precision, gradient checks)
  zlib1g-dev             # gzip-compressed IDX files
  libstb-dev             # image decode/encode (image folders, PNG plots)
  nlohmann-json3-dev     # JSON: safetensors headers, checkpoint metadata, configs
  dataset-fashion-mnist  # the default dataset of the demo and the tests
  libopenmpi-dev         # MPI: data-parallel training (engine/dist), CPU transport and NCCL's bootstrap
  openmpi-bin            # mpirun, for `mpirun -np N selfsup train` and the "mpi" tests; it Depends on
                         # openssh-client, which mpirun needs to start at all, even on one host
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
