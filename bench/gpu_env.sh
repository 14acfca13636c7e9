# Sourced by bench/gpu_check.sh: makes the build work on a GPU machine that is not a Debian machine with
# our packages installed (the lent H200 runs another image: nvcc, cuBLAS and PyTorch's pip wheels, no
# doctest/oneDNN/OpenBLAS/stb/nlohmann-json, and no internet to apt-get them).
#
# Two things are found here, each reported on one line (GPU_ENV_REPORT) for the summary table:
#   1. Debian packages carried as .deb files in .gpu_deps/debs (scripts/gpu-pack.sh fetches them on a
#      Debian machine): when a header the build needs is missing from the system, every carried .deb is
#      unpacked into $GPU_DEPS_PREFIX (never into /: other versions of the same libraries may live there)
#      and CMake, the compiler and our programs are pointed at it.
#   2. cuDNN (and cuBLAS) where the toolkit does not hold them: pip wheels (nvidia-cudnn-cu13,
#      nvidia-cublas) ship libcudnn.so.9 without the unversioned libcudnn.so that find_library wants, so
#      the full paths are passed to CMake.
# Outputs: GPU_CMAKE_ARGS (array, extra configure arguments), RUNENV (array: `env LD_LIBRARY_PATH=...`
# to put in front of our programs, never in front of python3, whose libraries must stay its own), PY (the
# python3 with PyTorch), GPU_ENV_REPORT (string), and FMNIST defaulting to a carried copy in
# .gpu_deps/fashion-mnist.

GPU_DEPS_DIR=${GPU_DEPS_DIR:-$ROOT/.gpu_deps}
GPU_DEPS_PREFIX=${GPU_DEPS_PREFIX:-/tmp/selfsup-deps}
GPU_CMAKE_ARGS=()
GPU_ENV_REPORT=""
EXTRA_LD=""
MULTIARCH=x86_64-linux-gnu

# Headers the build needs from Debian packages (one per package); a missing one means "unpack the debs".
missing_headers=()
for h in doctest/doctest.h oneapi/dnnl/dnnl.hpp nlohmann/json.hpp stb/stb_image.h zlib.h cblas.h CL/cl.h; do
  found=""
  for d in /usr/include /usr/local/include /usr/include/$MULTIARCH; do
    [ -e "$d/$h" ] && found=1
  done
  [ -z "$found" ] && missing_headers+=("$h")
done

if [ ${#missing_headers[@]} -gt 0 ]; then
  if compgen -G "$GPU_DEPS_DIR/debs/*.deb" > /dev/null; then
    mkdir -p "$GPU_DEPS_PREFIX"
    for deb in "$GPU_DEPS_DIR"/debs/*.deb; do
      dpkg-deb -x "$deb" "$GPU_DEPS_PREFIX" || echo "gpu_env: could not unpack $deb"
    done
    # Debian's symbolic links may be absolute (libz.so -> /lib/.../libz.so.1.2.13): point them inside
    # the prefix, where their targets were unpacked.
    while IFS= read -r link; do
      target=$(readlink "$link")
      case "$target" in
        /*) [ -e "$GPU_DEPS_PREFIX$target" ] && ln -sfn "$GPU_DEPS_PREFIX$target" "$link" ;;
      esac
    done < <(find "$GPU_DEPS_PREFIX" -type l)
    P=$GPU_DEPS_PREFIX
    BLAS_DIR=$P/usr/lib/$MULTIARCH/openblas-pthread
    # cblas.h lives in OpenBLAS's own folder (Debian's alternatives system links it into place).
    export CPATH="$P/usr/include:$P/usr/include/$MULTIARCH:$P/usr/include/$MULTIARCH/openblas-pthread${CPATH:+:$CPATH}"
    export LIBRARY_PATH="$P/usr/lib/$MULTIARCH:$P/lib/$MULTIARCH:$BLAS_DIR${LIBRARY_PATH:+:$LIBRARY_PATH}"
    GPU_CMAKE_ARGS+=("-DCMAKE_PREFIX_PATH=$P/usr" "-DCMAKE_LIBRARY_PATH=$BLAS_DIR" "-DBLA_VENDOR=OpenBLAS"
                     "-DZLIB_ROOT=$P/usr" "-DSTB_INCLUDE_DIR=$P/usr/include" "-DDOCTEST_INCLUDE_DIR=$P/usr/include"
                     "-DSTB_LIBRARY=$P/usr/lib/$MULTIARCH/libstb.so")
    EXTRA_LD="$P/usr/lib/$MULTIARCH:$P/lib/$MULTIARCH:$BLAS_DIR"
    GPU_ENV_REPORT="missing ${missing_headers[*]}: unpacked $(ls "$GPU_DEPS_DIR"/debs/*.deb | wc -l) carried .debs into $P"
  else
    GPU_ENV_REPORT="missing ${missing_headers[*]} and no .debs in $GPU_DEPS_DIR/debs (run scripts/gpu-pack.sh here, carry .gpu_deps)"
  fi
else
  GPU_ENV_REPORT="system packages present"
fi

# Search roots for CUDA libraries the toolkit may lack: the toolkit, system folders, and every Python
# site-packages/nvidia folder (pip wheels).
cuda_roots=(/usr/local/cuda /usr/lib/$MULTIARCH /usr/include)
while IFS= read -r sp; do
  [ -d "$sp/nvidia" ] && cuda_roots+=("$sp/nvidia")
done < <(/usr/bin/env python3 -c 'import site; print("\n".join(site.getsitepackages()))' 2>/dev/null)

find_first() {  # find_first NAME: the first file called NAME under the CUDA search roots
  find -L "${cuda_roots[@]}" -maxdepth 5 -name "$1" 2>/dev/null | head -1
}

if [ ! -e /usr/local/cuda/include/cudnn.h ] || ! compgen -G "/usr/local/cuda/lib64/libcudnn.so*" > /dev/null; then
  cudnn_h=$(find_first cudnn.h)
  cudnn_so=$(find_first libcudnn.so); [ -z "$cudnn_so" ] && cudnn_so=$(find_first libcudnn.so.9)
  if [ -n "$cudnn_h" ] && [ -n "$cudnn_so" ]; then
    GPU_CMAKE_ARGS+=("-DSELFSUP_CUDNN_INCLUDE_DIR=$(dirname "$cudnn_h")" "-DSELFSUP_CUDNN_LIBRARY=$cudnn_so")
    EXTRA_LD="$(dirname "$cudnn_so")${EXTRA_LD:+:$EXTRA_LD}"
    GPU_ENV_REPORT="$GPU_ENV_REPORT; cuDNN from $(dirname "$cudnn_so")"
  else
    GPU_ENV_REPORT="$GPU_ENV_REPORT; cuDNN NOT FOUND (cudnn.h: ${cudnn_h:-none}, libcudnn: ${cudnn_so:-none})"
  fi
fi

if ! compgen -G "/usr/local/cuda/lib64/libcublas.so*" > /dev/null && \
   ! compgen -G "/usr/local/cuda/targets/x86_64-linux/lib/libcublas.so*" > /dev/null; then
  cublas_so=$(find_first libcublas.so); [ -z "$cublas_so" ] && cublas_so=$(find_first libcublas.so.13)
  cublaslt_so=$(find_first libcublasLt.so); [ -z "$cublaslt_so" ] && cublaslt_so=$(find_first libcublasLt.so.13)
  cublas_h=$(find_first cublas_v2.h)
  if [ -n "$cublas_so" ] && [ -n "$cublaslt_so" ] && [ -n "$cublas_h" ]; then
    GPU_CMAKE_ARGS+=("-DSELFSUP_CUBLAS_LIBRARY=$cublas_so" "-DSELFSUP_CUBLASLT_LIBRARY=$cublaslt_so"
                     "-DSELFSUP_CUBLAS_INCLUDE_DIR=$(dirname "$cublas_h")")
    EXTRA_LD="$(dirname "$cublas_so")${EXTRA_LD:+:$EXTRA_LD}"
    GPU_ENV_REPORT="$GPU_ENV_REPORT; cuBLAS from $(dirname "$cublas_so")"
  else
    GPU_ENV_REPORT="$GPU_ENV_REPORT; cuBLAS NOT FOUND in the toolkit or wheels"
  fi
fi

# NCCL (engine/dist's CUDA backend): the toolkit's, else pip's nvidia-nccl-cu12 (PyTorch's wheels bring it).
if ! compgen -G "/usr/local/cuda/lib64/libnccl.so*" > /dev/null; then
  nccl_h=$(find_first nccl.h)
  nccl_so=$(find_first libnccl.so); [ -z "$nccl_so" ] && nccl_so=$(find_first libnccl.so.2)
  if [ -n "$nccl_h" ] && [ -n "$nccl_so" ]; then
    GPU_CMAKE_ARGS+=("-DSELFSUP_NCCL_INCLUDE_DIR=$(dirname "$nccl_h")" "-DSELFSUP_NCCL_LIBRARY=$nccl_so")
    EXTRA_LD="$(dirname "$nccl_so")${EXTRA_LD:+:$EXTRA_LD}"
    GPU_ENV_REPORT="$GPU_ENV_REPORT; NCCL from $(dirname "$nccl_so")"
  else
    GPU_ENV_REPORT="$GPU_ENV_REPORT; NCCL not found (the data-parallel check will say so)"
  fi
fi

RUNENV=(env "LD_LIBRARY_PATH=${EXTRA_LD}${LD_LIBRARY_PATH:+${EXTRA_LD:+:}$LD_LIBRARY_PATH}")
# Our programs that start the PyTorch peer themselves (bench/harness.h run_peer): the interpreter on PATH
# (PyTorch's virtual environment there, not necessarily /usr/bin/python3) with the original library path.
PY=$(command -v python3 || echo /usr/bin/python3)
export SELFSUP_PYTHON=$PY
export SELFSUP_PEER_LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}

if [ -z "${FMNIST:-}" ]; then
  if [ -f "$GPU_DEPS_DIR/fashion-mnist/train-images-idx3-ubyte.gz" ]; then
    FMNIST=$GPU_DEPS_DIR/fashion-mnist
  else
    FMNIST=/usr/share/datasets/fashion-mnist
  fi
fi
