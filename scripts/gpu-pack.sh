#!/usr/bin/env bash
# Packs what bench/gpu_check.sh needs on a GPU machine that cannot reach a package archive: the Debian
# packages of the build (as .deb files, unpacked there into a private prefix by bench/gpu_env.sh) and the
# Fashion-MNIST files (for the SimCLR run on the GPU). Run here, on a Debian machine with apt:
#
#   bash scripts/gpu-pack.sh        # fills .gpu_deps/ (ignored by git, about 52 MB)
#
# then name .gpu_deps in the device tool's `carry` and run `bash bench/gpu_check.sh` there.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.gpu_deps
# The build's packages (scripts/install-deps.sh) and what they need that a non-Debian image may lack:
# OpenBLAS's Fortran runtime, and OpenCL (Debian's oneDNN is built with its OpenCL GPU runtime, so its
# CMake config asks for CL/cl.h and libOpenCL). libc, libstdc++ and libgomp come with any compiler.
PACKAGES=(doctest-dev libdnnl-dev libdnnl2 libopenblas-dev libopenblas-pthread-dev libopenblas0
          libopenblas0-pthread libgfortran5 libquadmath0 zlib1g-dev zlib1g libstb-dev libstb0
          nlohmann-json3-dev ocl-icd-libopencl1 ocl-icd-opencl-dev opencl-c-headers)
mkdir -p "$DEST/debs" "$DEST/fashion-mnist"
rm -f "$DEST"/debs/*.deb
# apt-get download writes into the current folder; as root it warns that _apt cannot write there.
(cd "$DEST/debs" && apt-get download "${PACKAGES[@]}" 2>&1 | grep -v "^W: Download is performed unsandboxed" || true)
n=$(ls "$DEST"/debs/*.deb 2>/dev/null | wc -l)
if [ "$n" -ne ${#PACKAGES[@]} ]; then
  echo "gpu-pack: expected ${#PACKAGES[@]} .deb files, got $n (is apt's package list up to date? apt-get update)" >&2
  exit 1
fi
SRC=/usr/share/datasets/fashion-mnist
if [ -f "$SRC/train-images-idx3-ubyte.gz" ]; then
  cp "$SRC"/*.gz "$DEST/fashion-mnist/"
else
  echo "gpu-pack: no Fashion-MNIST at $SRC (apt-get install dataset-fashion-mnist); the GPU SimCLR step will be skipped" >&2
fi
echo "gpu-pack: $(du -sh "$DEST" | cut -f1) in $DEST ($n packages + Fashion-MNIST); carry it: carry=[\"$DEST\"]"
