// Pooling on the GPU (max, average, adaptive average), NCHW, with the exact semantics of kernels/cpu/pool.cpp
// (PyTorch's): padding acts as -inf for max pool, the first maximum wins ties, a NaN is the maximum (the last
// NaN gives the index), a window entirely in the padding gives -inf and index -1; avg pool's divisor follows
// count_include_pad with the window clipped first at the padded border; adaptive bins are
// [floor(i*H/P), ceil((i+1)*H/P)).
//
// Forward: one thread per output element (grid-stride), accumulating in float.
// Backward: one thread per INPUT element that gathers from every output window that can contain it (the
// window range is inverted arithmetically, then membership is checked exactly). No atomics: deterministic,
// and no zero-fill pass is needed since every dx element is written once.
#include <cmath>

#include "kernels/cuda/cuda_nn_api.h"
#include "kernels/cuda/nn_check.cuh"

namespace selfsup::kernels {

namespace {

using nn_cuda::from_f;
using nn_cuda::to_f;

constexpr int kThreads = 256;

#define SELFSUP_GRID_STRIDE(i, n)                                                               \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// First output index whose window (start o*stride - pad, extent `span`) can reach input position h, and one
// past the last: [ceil((h + pad - span + 1) / stride), floor((h + pad) / stride) + 1) clipped to [0, n_out).
__device__ __forceinline__ void covering_outputs(int64_t h, int64_t pad, int64_t span, int64_t stride,
                                                 int64_t n_out, int64_t& o0, int64_t& o1) {
  o0 = (h + pad < span) ? 0 : (h + pad - span) / stride + 1;
  o1 = min((h + pad) / stride + 1, n_out);
}

template <typename T>
__global__ void max_pool2d_fwd_kernel(Pool2dShape s, const T* x, T* y, int64_t* argmax) {
  const int64_t total = s.N * s.C * s.P * s.Q;
  SELFSUP_GRID_STRIDE(o, total) {
    const int64_t q = o % s.Q, p = (o / s.Q) % s.P, plane = o / (s.P * s.Q);
    const T* xp = x + plane * s.H * s.W;  // (H, W)
    // First tap inside the input (padding is -inf, never the max), as the CPU kernel.
    int64_t h0 = p * s.stride_h - s.pad_h;
    const int64_t h1 = min(h0 + (s.kh - 1) * s.dil_h + 1, s.H);
    if (h0 < 0) h0 += ((-h0 + s.dil_h - 1) / s.dil_h) * s.dil_h;
    int64_t w0 = q * s.stride_w - s.pad_w;
    const int64_t w1 = min(w0 + (s.kw - 1) * s.dil_w + 1, s.W);
    if (w0 < 0) w0 += ((-w0 + s.dil_w - 1) / s.dil_w) * s.dil_w;
    int64_t best_idx = (h0 < h1 && w0 < w1) ? h0 * s.W + w0 : -1;
    float best = -INFINITY;
    bool nan_seen = false;
    for (int64_t h = h0; h < h1; h += s.dil_h)
      for (int64_t w = w0; w < w1; w += s.dil_w) {
        const float v = to_f(xp[h * s.W + w]);
        nan_seen |= v != v;
        if (v > best) {  // strict: first maximum wins ties
          best = v;
          best_idx = h * s.W + w;
        }
      }
    if (nan_seen)  // PyTorch: a NaN is the maximum, the last one gives the index
      for (int64_t h = h0; h < h1; h += s.dil_h)
        for (int64_t w = w0; w < w1; w += s.dil_w)
          if (isnan(to_f(xp[h * s.W + w]))) {
            best = to_f(xp[h * s.W + w]);
            best_idx = h * s.W + w;
          }
    y[o] = from_f<T>(best);
    argmax[o] = best_idx;
  }
}

template <typename T>
__global__ void max_pool2d_bwd_kernel(Pool2dShape s, const T* dy, const int64_t* argmax, T* dx) {
  const int64_t total = s.N * s.C * s.H * s.W;
  SELFSUP_GRID_STRIDE(i, total) {
    const int64_t w = i % s.W, h = (i / s.W) % s.H, plane = i / (s.H * s.W);
    const int64_t flat = h * s.W + w;
    int64_t p0, p1, q0, q1;
    covering_outputs(h, s.pad_h, (s.kh - 1) * s.dil_h + 1, s.stride_h, s.P, p0, p1);
    covering_outputs(w, s.pad_w, (s.kw - 1) * s.dil_w + 1, s.stride_w, s.Q, q0, q1);
    const int64_t* ap = argmax + plane * s.P * s.Q;  // (P, Q)
    const T* dyp = dy + plane * s.P * s.Q;
    float g = 0.f;  // overlapping windows sharing this maximum add up, in a fixed order
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t q = q0; q < q1; ++q)
        if (ap[p * s.Q + q] == flat) g += to_f(dyp[p * s.Q + q]);
    dx[i] = from_f<T>(g);
  }
}

// avg pool window of output (p, q) clipped as avg_window() in kernels/cpu/pool.cpp.
struct AvgWin {
  int64_t h0, h1, w0, w1, divisor;
};
__device__ __forceinline__ AvgWin avg_window(const Pool2dShape& s, int64_t p, int64_t q) {
  int64_t h0 = p * s.stride_h - s.pad_h, w0 = q * s.stride_w - s.pad_w;
  int64_t h1 = min(h0 + s.kh, s.H + s.pad_h), w1 = min(w0 + s.kw, s.W + s.pad_w);
  const int64_t padded = (h1 - h0) * (w1 - w0);
  h0 = max(h0, int64_t{0});
  w0 = max(w0, int64_t{0});
  h1 = min(h1, s.H);
  w1 = min(w1, s.W);
  return {h0, h1, w0, w1, s.count_include_pad ? padded : (h1 - h0) * (w1 - w0)};
}

template <typename T>
__global__ void avg_pool2d_fwd_kernel(Pool2dShape s, const T* x, T* y) {
  const int64_t total = s.N * s.C * s.P * s.Q;
  SELFSUP_GRID_STRIDE(o, total) {
    const int64_t q = o % s.Q, p = (o / s.Q) % s.P, plane = o / (s.P * s.Q);
    const AvgWin win = avg_window(s, p, q);
    if (win.h0 >= win.h1 || win.w0 >= win.w1) {  // entirely in the padding (ceil mode): 0, as PyTorch
      y[o] = from_f<T>(0.f);
      continue;
    }
    const T* xp = x + plane * s.H * s.W;
    float sum = 0.f;
    for (int64_t h = win.h0; h < win.h1; ++h)
      for (int64_t w = win.w0; w < win.w1; ++w) sum += to_f(xp[h * s.W + w]);
    y[o] = from_f<T>(sum / static_cast<float>(win.divisor));
  }
}

template <typename T>
__global__ void avg_pool2d_bwd_kernel(Pool2dShape s, const T* dy, T* dx) {
  const int64_t total = s.N * s.C * s.H * s.W;
  SELFSUP_GRID_STRIDE(i, total) {
    const int64_t w = i % s.W, h = (i / s.W) % s.H, plane = i / (s.H * s.W);
    int64_t p0, p1, q0, q1;
    covering_outputs(h, s.pad_h, s.kh, s.stride_h, s.P, p0, p1);
    covering_outputs(w, s.pad_w, s.kw, s.stride_w, s.Q, q0, q1);
    const T* dyp = dy + plane * s.P * s.Q;  // (P, Q)
    float g = 0.f;
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t q = q0; q < q1; ++q) {
        const AvgWin win = avg_window(s, p, q);
        if (h >= win.h0 && h < win.h1 && w >= win.w0 && w < win.w1)
          g += to_f(dyp[p * s.Q + q]) / static_cast<float>(win.divisor);
      }
    dx[i] = from_f<T>(g);
  }
}

__device__ __forceinline__ int64_t bin_start(int64_t i, int64_t len, int64_t n) { return (i * len) / n; }
__device__ __forceinline__ int64_t bin_end(int64_t i, int64_t len, int64_t n) { return ((i + 1) * len + n - 1) / n; }

template <typename T>
__global__ void adaptive_avg_pool2d_fwd_kernel(int64_t N, int64_t C, int64_t H, int64_t W, int64_t P, int64_t Q,
                                               const T* x, T* y) {
  const int64_t total = N * C * P * Q;
  SELFSUP_GRID_STRIDE(o, total) {
    const int64_t q = o % Q, p = (o / Q) % P, plane = o / (P * Q);
    const int64_t h0 = bin_start(p, H, P), h1 = bin_end(p, H, P), w0 = bin_start(q, W, Q), w1 = bin_end(q, W, Q);
    const T* xp = x + plane * H * W;
    float sum = 0.f;
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) sum += to_f(xp[h * W + w]);
    y[o] = from_f<T>(sum / static_cast<float>((h1 - h0) * (w1 - w0)));
  }
}

template <typename T>
__global__ void adaptive_avg_pool2d_bwd_kernel(int64_t N, int64_t C, int64_t H, int64_t W, int64_t P, int64_t Q,
                                               const T* dy, T* dx) {
  const int64_t total = N * C * H * W;
  SELFSUP_GRID_STRIDE(i, total) {
    const int64_t w = i % W, h = (i / W) % H, plane = i / (H * W);
    // Bins containing h: p in [floor(h*P/H), ceil((h+1)*P/H)); membership is re-checked exactly below.
    const int64_t p0 = (h * P) / H, p1 = min(((h + 1) * P + H - 1) / H, P);
    const int64_t q0 = (w * Q) / W, q1 = min(((w + 1) * Q + W - 1) / W, Q);
    const T* dyp = dy + plane * P * Q;
    float g = 0.f;
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t h0 = bin_start(p, H, P), h1 = bin_end(p, H, P);
      if (h < h0 || h >= h1) continue;
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t w0 = bin_start(q, W, Q), w1 = bin_end(q, W, Q);
        if (w < w0 || w >= w1) continue;
        g += to_f(dyp[p * Q + q]) / static_cast<float>((h1 - h0) * (w1 - w0));
      }
    }
    dx[i] = from_f<T>(g);
  }
}

#undef SELFSUP_GRID_STRIDE

}  // namespace

template <typename T>
void max_pool2d_fwd_cuda(const Pool2dShape& s, const T* x, T* y, int64_t* argmax, cudaStream_t stream) {
  const int64_t total = s.N * s.C * s.P * s.Q;
  if (total == 0) return;
  SELFSUP_LAUNCH(nn_cuda::grid_for(total, kThreads), kThreads, 0, stream, max_pool2d_fwd_kernel<T>)(s, x, y, argmax);
  SELFSUP_LAUNCH_CHECK();
}

template <typename T>
void max_pool2d_bwd_cuda(const Pool2dShape& s, const T* dy, const int64_t* argmax, T* dx, cudaStream_t stream) {
  const int64_t total = s.N * s.C * s.H * s.W;
  if (total == 0) return;
  SELFSUP_LAUNCH(nn_cuda::grid_for(total, kThreads), kThreads, 0, stream, max_pool2d_bwd_kernel<T>)(
      s, dy, argmax, dx);
  SELFSUP_LAUNCH_CHECK();
}

template <typename T>
void avg_pool2d_fwd_cuda(const Pool2dShape& s, const T* x, T* y, cudaStream_t stream) {
  const int64_t total = s.N * s.C * s.P * s.Q;
  if (total == 0) return;
  SELFSUP_LAUNCH(nn_cuda::grid_for(total, kThreads), kThreads, 0, stream, avg_pool2d_fwd_kernel<T>)(s, x, y);
  SELFSUP_LAUNCH_CHECK();
}

template <typename T>
void avg_pool2d_bwd_cuda(const Pool2dShape& s, const T* dy, T* dx, cudaStream_t stream) {
  const int64_t total = s.N * s.C * s.H * s.W;
  if (total == 0) return;
  SELFSUP_LAUNCH(nn_cuda::grid_for(total, kThreads), kThreads, 0, stream, avg_pool2d_bwd_kernel<T>)(s, dy, dx);
  SELFSUP_LAUNCH_CHECK();
}

template <typename T>
void adaptive_avg_pool2d_fwd_cuda(int64_t N, int64_t C, int64_t H, int64_t W, int64_t P, int64_t Q, const T* x,
                                  T* y, cudaStream_t stream) {
  const int64_t total = N * C * P * Q;
  if (total == 0) return;
  SELFSUP_LAUNCH(nn_cuda::grid_for(total, kThreads), kThreads, 0, stream, adaptive_avg_pool2d_fwd_kernel<T>)(
      N, C, H, W, P, Q, x, y);
  SELFSUP_LAUNCH_CHECK();
}

template <typename T>
void adaptive_avg_pool2d_bwd_cuda(int64_t N, int64_t C, int64_t H, int64_t W, int64_t P, int64_t Q, const T* dy,
                                  T* dx, cudaStream_t stream) {
  const int64_t total = N * C * H * W;
  if (total == 0) return;
  SELFSUP_LAUNCH(nn_cuda::grid_for(total, kThreads), kThreads, 0, stream, adaptive_avg_pool2d_bwd_kernel<T>)(
      N, C, H, W, P, Q, dy, dx);
  SELFSUP_LAUNCH_CHECK();
}

#define SELFSUP_INSTANTIATE_POOL_CUDA(T)                                                                      \
  template void max_pool2d_fwd_cuda<T>(const Pool2dShape&, const T*, T*, int64_t*, cudaStream_t);             \
  template void max_pool2d_bwd_cuda<T>(const Pool2dShape&, const T*, const int64_t*, T*, cudaStream_t);       \
  template void avg_pool2d_fwd_cuda<T>(const Pool2dShape&, const T*, T*, cudaStream_t);                       \
  template void avg_pool2d_bwd_cuda<T>(const Pool2dShape&, const T*, T*, cudaStream_t);                       \
  template void adaptive_avg_pool2d_fwd_cuda<T>(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, const T*, \
                                                T*, cudaStream_t);                                            \
  template void adaptive_avg_pool2d_bwd_cuda<T>(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, const T*, \
                                                T*, cudaStream_t);
SELFSUP_INSTANTIATE_POOL_CUDA(float)
SELFSUP_INSTANTIATE_POOL_CUDA(__nv_bfloat16)
#undef SELFSUP_INSTANTIATE_POOL_CUDA

}  // namespace selfsup::kernels
