// Softmax / log_softmax along any dim of a contiguous (outer, dim, inner), and the fused cross-entropy with
// label smoothing on logits (N, C), on the GPU with the semantics of kernels/cpu/softmax_xent.cpp.
//
// Rows (inner == 1, the classifier case) are handled by a "row group": one warp per row when dim <= 1024
// (8 rows per 256-thread block, shuffles only, no barriers), a whole 512-thread block per row otherwise.
// Each thread keeps an online (max, sum of exp) pair over its strided share of the row, so the row is read
// once for the statistics and once for the output; the pairs are merged across the group
// (M = max m, L = sum l exp(m - M)). inner > 1: one thread per (outer, inner) position walks dim with stride
// inner (neighbouring threads read neighbouring addresses, so loads stay coalesced).
// Everything accumulates in float; lse and loss are float for every T.
#include <cmath>
#include <stdexcept>

#include "kernels/cuda/cuda_nn_api.h"
#include "kernels/cuda/nn_check.cuh"

namespace selfsup::kernels {

namespace {

using nn_cuda::from_f;
using nn_cuda::to_f;
using nn_cuda::group_max;
using nn_cuda::group_sum;
using nn_cuda::row_group;

constexpr int64_t kWarpRowMax = 1024;  // dim up to this: a warp per row
constexpr int kWarpRowThreads = 256;   // 8 rows per block
constexpr int kBlockRowThreads = 512;

// Online log-sum-exp state of one thread: sum_i exp(v_i - m) = l.
__device__ __forceinline__ void online_add(float& m, float& l, float v) {
  if (v > m) {
    l = l * expf(m - v) + 1.0f;  // m = -inf, l = 0 gives 1
    m = v;
  } else if (v != -INFINITY) {
    l += expf(v - m);  // a NaN propagates through here
  }
}

// Merges the group's (m, l) pairs into the row's max M and sum L = sum exp(x - M).
template <bool kBlock>
__device__ __forceinline__ void group_lse(float m, float l, float* red, float& M, float& L) {
  M = group_max<kBlock>(m, red);
  L = group_sum<kBlock>(l == 0.0f ? 0.0f : l * expf(m - M), red);
}

template <typename T, bool kBlock>
__global__ void softmax_rows_kernel(int64_t rows, int64_t dim, const T* x, T* y, bool log) {
  __shared__ float red[32];
  int64_t row;
  int tid, nt;
  if (!row_group<kBlock>(rows, row, tid, nt)) return;  // warp mode only: a whole warp leaves
  const T* xr = x + row * dim;  // (dim)
  T* yr = y + row * dim;
  float m = -INFINITY, l = 0.0f;
  for (int64_t d = tid; d < dim; d += nt) online_add(m, l, to_f(xr[d]));
  float M, L;
  group_lse<kBlock>(m, l, red, M, L);
  if (log) {
    const float shift = M + logf(L);
    for (int64_t d = tid; d < dim; d += nt) yr[d] = from_f<T>(to_f(xr[d]) - shift);
  } else {
    const float inv = 1.0f / L;
    for (int64_t d = tid; d < dim; d += nt) yr[d] = from_f<T>(expf(to_f(xr[d]) - M) * inv);
  }
}

template <typename T>
__global__ void softmax_strided_kernel(int64_t outer, int64_t dim, int64_t inner, const T* x, T* y, bool log) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < outer * inner;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = t / inner, i = t - o * inner;
    const T* xs = x + o * dim * inner + i;  // (dim) with stride inner
    T* ys = y + o * dim * inner + i;
    float m = -INFINITY, l = 0.0f;
    for (int64_t d = 0; d < dim; ++d) online_add(m, l, to_f(xs[d * inner]));
    if (log) {
      const float shift = m + logf(l);
      for (int64_t d = 0; d < dim; ++d) ys[d * inner] = from_f<T>(to_f(xs[d * inner]) - shift);
    } else {
      const float inv = 1.0f / l;
      for (int64_t d = 0; d < dim; ++d) ys[d * inner] = from_f<T>(expf(to_f(xs[d * inner]) - m) * inv);
    }
  }
}

// softmax: dx = y (dy - sum dy y); log_softmax: dx = dy - exp(y) sum dy.
template <typename T, bool kBlock>
__global__ void softmax_bwd_rows_kernel(int64_t rows, int64_t dim, const T* y, const T* dy, T* dx, bool log) {
  __shared__ float red[32];
  int64_t row;
  int tid, nt;
  if (!row_group<kBlock>(rows, row, tid, nt)) return;
  const T* yr = y + row * dim;  // (dim)
  const T* dyr = dy + row * dim;
  T* dxr = dx + row * dim;
  float s = 0.0f;
  for (int64_t d = tid; d < dim; d += nt) s += log ? to_f(dyr[d]) : to_f(dyr[d]) * to_f(yr[d]);
  s = group_sum<kBlock>(s, red);
  for (int64_t d = tid; d < dim; d += nt) {
    const float yv = to_f(yr[d]), g = to_f(dyr[d]);
    dxr[d] = from_f<T>(log ? g - expf(yv) * s : yv * (g - s));
  }
}

template <typename T>
__global__ void softmax_bwd_strided_kernel(int64_t outer, int64_t dim, int64_t inner, const T* y, const T* dy,
                                           T* dx, bool log) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < outer * inner;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = t / inner, i = t - o * inner;
    const int64_t base = o * dim * inner + i;
    float s = 0.0f;
    for (int64_t d = 0; d < dim; ++d) {
      const int64_t j = base + d * inner;
      s += log ? to_f(dy[j]) : to_f(dy[j]) * to_f(y[j]);
    }
    for (int64_t d = 0; d < dim; ++d) {
      const int64_t j = base + d * inner;
      const float yv = to_f(y[j]), g = to_f(dy[j]);
      dx[j] = from_f<T>(log ? g - expf(yv) * s : yv * (g - s));
    }
  }
}

// loss_i = lse_i - (1-eps) x_{i,t_i} - eps/C sum_c x_{i,c}; an out-of-range target gives NaN.
template <typename T, bool kBlock>
__global__ void xent_fwd_kernel(int64_t N, int64_t C, const T* logits, const int64_t* target, float eps,
                                float* loss, float* lse) {
  __shared__ float red[32];
  int64_t row;
  int tid, nt;
  if (!row_group<kBlock>(N, row, tid, nt)) return;
  const T* xr = logits + row * C;  // (C)
  float m = -INFINITY, l = 0.0f, sx = 0.0f;
  for (int64_t c = tid; c < C; c += nt) {
    const float v = to_f(xr[c]);
    online_add(m, l, v);
    sx += v;
  }
  float M, L;
  group_lse<kBlock>(m, l, red, M, L);
  sx = group_sum<kBlock>(sx, red);
  if (tid != 0) return;
  const int64_t t = target[row];
  const float lse_row = M + logf(L);
  const bool ok = t >= 0 && t < C;
  lse[row] = ok ? lse_row : NAN;
  loss[row] = ok ? lse_row - (1.0f - eps) * to_f(xr[t]) - eps / static_cast<float>(C) * sx : NAN;
}

// dlogits_{i,c} = dloss_i (exp(x - lse_i) - eps/C) - dloss_i (1-eps) [c == t_i].
template <typename T>
__global__ void xent_bwd_kernel(int64_t N, int64_t C, const T* logits, const int64_t* target, float eps,
                                const float* lse, const float* dloss, T* dlogits) {
  // A warp per row for any C: the backward has no reduction, so rows only need to be split evenly.
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= N) return;
  const int lane = threadIdx.x & 31;
  const T* xr = logits + row * C;  // (C)
  T* dxr = dlogits + row * C;
  const int64_t t = target[row];
  const bool ok = t >= 0 && t < C;
  const float g = ok ? dloss[row] : NAN, l = lse[row];
  const float smooth = eps / static_cast<float>(C), on_target = 1.0f - eps;
  for (int64_t c = lane; c < C; c += 32) {
    float v = g * (expf(to_f(xr[c]) - l) - smooth);
    if (c == t) v -= g * on_target;
    dxr[c] = from_f<T>(v);
  }
}

unsigned rows_grid(int64_t rows, bool block_mode) {
  const int64_t g = block_mode ? rows : (rows + kWarpRowThreads / 32 - 1) / (kWarpRowThreads / 32);
  if (g > 0x7fffffff) throw std::runtime_error("softmax/cross_entropy cuda: too many rows for one launch");
  return static_cast<unsigned>(g);
}

}  // namespace

template <typename T>
void softmax_fwd_cuda(int64_t outer, int64_t dim, int64_t inner, const T* x, T* y, bool log, cudaStream_t stream) {
  if (outer * dim * inner == 0) return;
  if (inner == 1) {
    if (dim <= kWarpRowMax)
      SELFSUP_LAUNCH(rows_grid(outer, false), kWarpRowThreads, 0, stream, softmax_rows_kernel<T, false>)(
          outer, dim, x, y, log);
    else
      SELFSUP_LAUNCH(rows_grid(outer, true), kBlockRowThreads, 0, stream, softmax_rows_kernel<T, true>)(
          outer, dim, x, y, log);
  } else {
    SELFSUP_LAUNCH(nn_cuda::grid_for(outer * inner, 256), 256, 0, stream, softmax_strided_kernel<T>)(
        outer, dim, inner, x, y, log);
  }
  SELFSUP_LAUNCH_CHECK();
}

template <typename T>
void softmax_bwd_cuda(int64_t outer, int64_t dim, int64_t inner, const T* y, const T* dy, T* dx, bool log,
                      cudaStream_t stream) {
  if (outer * dim * inner == 0) return;
  if (inner == 1) {
    if (dim <= kWarpRowMax)
      SELFSUP_LAUNCH(rows_grid(outer, false), kWarpRowThreads, 0, stream, softmax_bwd_rows_kernel<T, false>)(
          outer, dim, y, dy, dx, log);
    else
      SELFSUP_LAUNCH(rows_grid(outer, true), kBlockRowThreads, 0, stream, softmax_bwd_rows_kernel<T, true>)(
          outer, dim, y, dy, dx, log);
  } else {
    SELFSUP_LAUNCH(nn_cuda::grid_for(outer * inner, 256), 256, 0, stream, softmax_bwd_strided_kernel<T>)(
        outer, dim, inner, y, dy, dx, log);
  }
  SELFSUP_LAUNCH_CHECK();
}

template <typename T>
void cross_entropy_fwd_cuda(int64_t N, int64_t C, const T* logits, const int64_t* target, double label_smoothing,
                            float* loss, float* lse, cudaStream_t stream) {
  if (N == 0) return;
  if (C == 0) throw std::runtime_error("cross_entropy_fwd_cuda: C == 0");
  const float eps = static_cast<float>(label_smoothing);
  if (C <= kWarpRowMax)
    SELFSUP_LAUNCH(rows_grid(N, false), kWarpRowThreads, 0, stream, xent_fwd_kernel<T, false>)(
        N, C, logits, target, eps, loss, lse);
  else
    SELFSUP_LAUNCH(rows_grid(N, true), kBlockRowThreads, 0, stream, xent_fwd_kernel<T, true>)(
        N, C, logits, target, eps, loss, lse);
  SELFSUP_LAUNCH_CHECK();
}

template <typename T>
void cross_entropy_bwd_cuda(int64_t N, int64_t C, const T* logits, const int64_t* target, double label_smoothing,
                            const float* lse, const float* dloss, T* dlogits, cudaStream_t stream) {
  if (N * C == 0) return;
  SELFSUP_LAUNCH(rows_grid(N, false), kWarpRowThreads, 0, stream, xent_bwd_kernel<T>)(
      N, C, logits, target, static_cast<float>(label_smoothing), lse, dloss, dlogits);
  SELFSUP_LAUNCH_CHECK();
}

#define SELFSUP_INSTANTIATE_SOFTMAX_CUDA(T)                                                                     \
  template void softmax_fwd_cuda<T>(int64_t, int64_t, int64_t, const T*, T*, bool, cudaStream_t);              \
  template void softmax_bwd_cuda<T>(int64_t, int64_t, int64_t, const T*, const T*, T*, bool, cudaStream_t);    \
  template void cross_entropy_fwd_cuda<T>(int64_t, int64_t, const T*, const int64_t*, double, float*, float*,  \
                                          cudaStream_t);                                                       \
  template void cross_entropy_bwd_cuda<T>(int64_t, int64_t, const T*, const int64_t*, double, const float*,    \
                                          const float*, T*, cudaStream_t);
SELFSUP_INSTANTIATE_SOFTMAX_CUDA(float)
SELFSUP_INSTANTIATE_SOFTMAX_CUDA(__nv_bfloat16)
#undef SELFSUP_INSTANTIATE_SOFTMAX_CUDA

}  // namespace selfsup::kernels
