// L2 normalisation on the GPU, as F.normalize(p=2) and kernels/cpu/normalize.cpp: y = x / max(||x||, eps)
// along dim of a contiguous (outer, dim, inner), the raw norm (float) saved for backward. SSL heads run it on
// every embedding (D = 128..2048), right before InfoNCE.
//
// inner == 1: a warp per vector for dim <= 1024 (8 vectors per block, shuffles only), a block per vector
// beyond. inner > 1: a thread per (outer, inner) position walking dim with stride inner (coalesced across
// threads). Sums of squares and the backward dot products accumulate in float.
#include <cmath>
#include <stdexcept>

#include "kernels/cuda/cuda_nn_api.h"
#include "kernels/cuda/nn_check.cuh"

namespace selfsup::kernels {

namespace {

using nn_cuda::from_f;
using nn_cuda::group_sum;
using nn_cuda::row_group;
using nn_cuda::to_f;

constexpr int64_t kWarpRowMax = 1024;
constexpr int kWarpRowThreads = 256;
constexpr int kBlockRowThreads = 512;

template <typename T, bool kBlock>
__global__ void l2n_fwd_rows_kernel(int64_t rows, int64_t dim, const T* x, float eps, T* y, float* norm) {
  __shared__ float red[32];
  int64_t row;
  int tid, nt;
  if (!row_group<kBlock>(rows, row, tid, nt)) return;
  const T* xr = x + row * dim;  // (dim)
  T* yr = y + row * dim;
  float s = 0.0f;
  for (int64_t d = tid; d < dim; d += nt) {
    const float v = to_f(xr[d]);
    s += v * v;
  }
  const float n = sqrtf(group_sum<kBlock>(s, red));
  if (tid == 0) norm[row] = n;
  const float inv = 1.0f / fmaxf(n, eps);
  for (int64_t d = tid; d < dim; d += nt) yr[d] = from_f<T>(to_f(xr[d]) * inv);
}

template <typename T>
__global__ void l2n_fwd_strided_kernel(int64_t outer, int64_t dim, int64_t inner, const T* x, float eps, T* y,
                                       float* norm) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < outer * inner;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = t / inner, i = t - o * inner, base = o * dim * inner + i;
    float s = 0.0f;
    for (int64_t d = 0; d < dim; ++d) {
      const float v = to_f(x[base + d * inner]);
      s += v * v;
    }
    const float n = sqrtf(s);
    norm[t] = n;  // (outer, inner)
    const float inv = 1.0f / fmaxf(n, eps);
    for (int64_t d = 0; d < dim; ++d) y[base + d * inner] = from_f<T>(to_f(x[base + d * inner]) * inv);
  }
}

// dx = (dy - y <y, dy>) / norm where norm > eps, else dy / eps (the clamp's derivative).
template <typename T, bool kBlock>
__global__ void l2n_bwd_rows_kernel(int64_t rows, int64_t dim, const T* y, const float* norm, float eps,
                                    const T* dy, T* dx) {
  __shared__ float red[32];
  int64_t row;
  int tid, nt;
  if (!row_group<kBlock>(rows, row, tid, nt)) return;
  const T* yr = y + row * dim;  // (dim)
  const T* dyr = dy + row * dim;
  T* dxr = dx + row * dim;
  float s = 0.0f;
  for (int64_t d = tid; d < dim; d += nt) s += to_f(yr[d]) * to_f(dyr[d]);
  s = group_sum<kBlock>(s, red);
  const float n = norm[row];
  const float proj = n > eps ? s : 0.0f, inv = 1.0f / (n > eps ? n : eps);
  for (int64_t d = tid; d < dim; d += nt) dxr[d] = from_f<T>((to_f(dyr[d]) - to_f(yr[d]) * proj) * inv);
}

template <typename T>
__global__ void l2n_bwd_strided_kernel(int64_t outer, int64_t dim, int64_t inner, const T* y, const float* norm,
                                       float eps, const T* dy, T* dx) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < outer * inner;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = t / inner, i = t - o * inner, base = o * dim * inner + i;
    float s = 0.0f;
    for (int64_t d = 0; d < dim; ++d) s += to_f(y[base + d * inner]) * to_f(dy[base + d * inner]);
    const float n = norm[t];
    const float proj = n > eps ? s : 0.0f, inv = 1.0f / (n > eps ? n : eps);
    for (int64_t d = 0; d < dim; ++d) {
      const int64_t j = base + d * inner;
      dx[j] = from_f<T>((to_f(dy[j]) - to_f(y[j]) * proj) * inv);
    }
  }
}

unsigned rows_grid(int64_t rows, bool block_mode) {
  const int64_t g = block_mode ? rows : (rows + kWarpRowThreads / 32 - 1) / (kWarpRowThreads / 32);
  if (g > 0x7fffffff) throw std::runtime_error("l2_normalize cuda: too many rows for one launch");
  return static_cast<unsigned>(g);
}

}  // namespace

template <typename T>
void l2_normalize_fwd_cuda(int64_t outer, int64_t dim, int64_t inner, const T* x, double eps, T* y, float* norm,
                           cudaStream_t stream) {
  if (outer * inner == 0) return;
  const float e = static_cast<float>(eps);
  if (inner == 1) {
    if (dim <= kWarpRowMax)
      SELFSUP_LAUNCH(rows_grid(outer, false), kWarpRowThreads, 0, stream, l2n_fwd_rows_kernel<T, false>)(
          outer, dim, x, e, y, norm);
    else
      SELFSUP_LAUNCH(rows_grid(outer, true), kBlockRowThreads, 0, stream, l2n_fwd_rows_kernel<T, true>)(
          outer, dim, x, e, y, norm);
  } else {
    SELFSUP_LAUNCH(nn_cuda::grid_for(outer * inner, 256), 256, 0, stream, l2n_fwd_strided_kernel<T>)(
        outer, dim, inner, x, e, y, norm);
  }
  SELFSUP_LAUNCH_CHECK();
}

template <typename T>
void l2_normalize_bwd_cuda(int64_t outer, int64_t dim, int64_t inner, const T* y, const float* norm, double eps,
                           const T* dy, T* dx, cudaStream_t stream) {
  if (outer * inner * dim == 0) return;
  const float e = static_cast<float>(eps);
  if (inner == 1) {
    if (dim <= kWarpRowMax)
      SELFSUP_LAUNCH(rows_grid(outer, false), kWarpRowThreads, 0, stream, l2n_bwd_rows_kernel<T, false>)(
          outer, dim, y, norm, e, dy, dx);
    else
      SELFSUP_LAUNCH(rows_grid(outer, true), kBlockRowThreads, 0, stream, l2n_bwd_rows_kernel<T, true>)(
          outer, dim, y, norm, e, dy, dx);
  } else {
    SELFSUP_LAUNCH(nn_cuda::grid_for(outer * inner, 256), 256, 0, stream, l2n_bwd_strided_kernel<T>)(
        outer, dim, inner, y, norm, e, dy, dx);
  }
  SELFSUP_LAUNCH_CHECK();
}

#define SELFSUP_INSTANTIATE_L2_CUDA(T)                                                                         \
  template void l2_normalize_fwd_cuda<T>(int64_t, int64_t, int64_t, const T*, double, T*, float*, cudaStream_t); \
  template void l2_normalize_bwd_cuda<T>(int64_t, int64_t, int64_t, const T*, const float*, double, const T*,   \
                                         T*, cudaStream_t);
SELFSUP_INSTANTIATE_L2_CUDA(float)
SELFSUP_INSTANTIATE_L2_CUDA(__nv_bfloat16)
#undef SELFSUP_INSTANTIATE_L2_CUDA

}  // namespace selfsup::kernels
