// Batch norm on the GPU, x viewed as (N, C, S) with S = H*W (1 for BatchNorm1d), the semantics of
// batch_norm_*_cpu (kernels/cpu/norm.cpp): biased batch variance to normalise, unbiased variance for the
// running statistics, gamma/beta/running stats optional.
//
// Training forward and backward are ONE kernel each: a block owns whole channels, reduces them (fp32, per
// thread partial sums, then warp shuffles and a block reduction), finalises the per-channel scalars and then
// streams the elementwise pass over the same channels (the second read mostly hits L2). Two layouts:
//   S >= 32 ("long rows", conv feature maps): one block per channel; each warp takes runs of 32 contiguous
//           elements of a row in turn (coalesced, and balanced even when N is small).
//   S < 32 (BatchNorm1d heads, 2x2 maps): a channel is strided by C*S, so a block takes 32 neighbouring
//           channels, threadIdx.x along channels (coalesced for S = 1) and threadIdx.y along the N*S samples,
//           and reduces over y in shared memory.
// Statistics use sums of x - shift and (x - shift)^2 with shift = x[0, c, 0], as the CPU kernel, so the
// one-pass variance does not cancel when |mean| >> std. Reduction order depends only on the shapes and the
// launch configuration: results are deterministic run to run (no atomics).
// The fused batch norm + residual add + ReLU (kAct) is the same kernels with an epilogue: the forward adds the
// residual and clamps in the elementwise pass; the backward masks dy by the output (y > 0) in both passes and
// also writes the residual's gradient (the masked dy).
// Known limit: with few channels (C = 64) and long rows, one block per channel leaves SMs idle; a split
// over N with a second combine stage is the next step if gpu_check shows it (or cuDNN's batch norm).
#include <cmath>
#include <stdexcept>

#include "kernels/cuda/cuda_nn_api.h"
#include "kernels/cuda/nn_check.cuh"

namespace selfsup::kernels {

namespace {

using nn_cuda::block_sum;
using nn_cuda::from_f;
using nn_cuda::to_f;

constexpr int kLongThreads = 512;  // S >= 32: one block per channel
constexpr int kLongRowMin = 32;
constexpr int kColX = 32, kColY = 16;  // S < 32: 32 channels x 16 sample lanes

struct BnFwdArgs {
  int64_t N, C, S;
  const float *gamma, *beta;
  float eps, momentum;
  float *save_mean, *save_invstd, *running_mean, *running_var;
};

// From the two shifted sums of a channel: write saved/running statistics and return (mean, scale, offset).
__device__ __forceinline__ void bn_finalize_stats(const BnFwdArgs& a, int64_t c, float shift, float s1, float s2,
                                                  bool write, float& mean, float& scale, float& offset) {
  const int64_t count = a.N * a.S;
  const float inv_count = 1.0f / static_cast<float>(count);
  const float d_mean = s1 * inv_count;
  const float var = fmaxf(0.0f, s2 * inv_count - d_mean * d_mean);  // biased
  mean = shift + d_mean;
  const float invstd = 1.0f / sqrtf(var + a.eps);
  scale = invstd * (a.gamma ? a.gamma[c] : 1.0f);
  offset = a.beta ? a.beta[c] : 0.0f;
  if (!write) return;
  a.save_mean[c] = mean;
  a.save_invstd[c] = invstd;
  if (a.running_mean) a.running_mean[c] = (1.0f - a.momentum) * a.running_mean[c] + a.momentum * mean;
  if (a.running_var) {
    const float unbiased = var * static_cast<float>(count) / static_cast<float>(count - 1);
    a.running_var[c] = (1.0f - a.momentum) * a.running_var[c] + a.momentum * unbiased;
  }
}

// The elementwise output: the normalised value, or with kAct max(0, value + residual) (r may be null).
template <bool kAct, typename T>
__device__ __forceinline__ float bn_out(float v, const T* r, int64_t i) {
  if (!kAct) return v;
  if (r) v += to_f(r[i]);
  return fmaxf(v, 0.0f);
}

// The gradient reaching the batch norm: dy, or with kAct dy where the fused output y is positive.
template <bool kAct, typename T>
__device__ __forceinline__ float bn_grad(const T* dy, const T* y, int64_t i) {
  const float d = to_f(dy[i]);
  if (!kAct) return d;
  return to_f(y[i]) > 0.0f ? d : 0.0f;
}

template <typename T, bool kAct>
__global__ void bn_fwd_train_long_kernel(BnFwdArgs a, const T* x, const T* r, T* y) {
  __shared__ float red[32];
  const int64_t c = blockIdx.x;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  const float shift = to_f(x[c * a.S]);
  float s1 = 0.f, s2 = 0.f;
  const int64_t segs = (a.S + 31) / 32, n_segs = a.N * segs;
  for (int64_t g = warp; g < n_segs; g += n_warps) {  // a warp takes 32 contiguous elements of a row
    const int64_t n = g / segs, s = (g - n * segs) * 32 + lane;
    if (s < a.S) {
      const float u = to_f(x[(n * a.C + c) * a.S + s]) - shift;
      s1 += u;
      s2 += u * u;
    }
  }
  s1 = block_sum(s1, red);
  s2 = block_sum(s2, red);
  float mean, scale, offset;
  bn_finalize_stats(a, c, shift, s1, s2, threadIdx.x == 0, mean, scale, offset);
  for (int64_t g = warp; g < n_segs; g += n_warps) {
    const int64_t n = g / segs, s = (g - n * segs) * 32 + lane;
    if (s < a.S) {
      const int64_t i = (n * a.C + c) * a.S + s;
      y[i] = from_f<T>(bn_out<kAct>((to_f(x[i]) - mean) * scale + offset, r, i));
    }
  }
}

// Sums over threadIdx.y of a (kColY, kColX) block: every thread of column x gets its column's total.
__device__ __forceinline__ float column_sum(float v, float (*sm)[kColX + 1]) {
  __syncthreads();
  sm[threadIdx.y][threadIdx.x] = v;
  __syncthreads();
  float t = 0.f;
  for (int i = 0; i < kColY; ++i) t += sm[i][threadIdx.x];  // fixed order: deterministic
  return t;
}

template <typename T, bool kAct>
__global__ void bn_fwd_train_short_kernel(BnFwdArgs a, const T* x, const T* r, T* y) {
  __shared__ float sm[kColY][kColX + 1];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColX + threadIdx.x;
  const bool live = c < a.C;
  const int64_t count = a.N * a.S;
  const float shift = live ? to_f(x[c * a.S]) : 0.f;
  float s1 = 0.f, s2 = 0.f;
  if (live)
    for (int64_t j = threadIdx.y; j < count; j += kColY) {
      const int64_t n = j / a.S, s = j - n * a.S;
      const float u = to_f(x[(n * a.C + c) * a.S + s]) - shift;
      s1 += u;
      s2 += u * u;
    }
  s1 = column_sum(s1, sm);
  s2 = column_sum(s2, sm);
  if (!live) return;  // no barrier follows
  float mean, scale, offset;
  bn_finalize_stats(a, c, shift, s1, s2, threadIdx.y == 0, mean, scale, offset);
  for (int64_t j = threadIdx.y; j < count; j += kColY) {
    const int64_t n = j / a.S, s = j - n * a.S;
    const int64_t i = (n * a.C + c) * a.S + s;
    y[i] = from_f<T>(bn_out<kAct>((to_f(x[i]) - mean) * scale + offset, r, i));
  }
}

template <typename T>
__global__ void bn_fwd_eval_kernel(int64_t total, int64_t C, int64_t S, const T* x, const float* gamma,
                                   const float* beta, const float* rmean, const float* rvar, float eps, T* y) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = (i / S) % C;
    const float scale = (1.0f / sqrtf(rvar[c] + eps)) * (gamma ? gamma[c] : 1.0f);
    y[i] = from_f<T>((to_f(x[i]) - rmean[c]) * scale + (beta ? beta[c] : 0.0f));
  }
}

struct BnBwdArgs {
  int64_t N, C, S;
  const float *gamma, *save_mean, *save_invstd;
  float *dgamma, *dbeta;
};

// With xhat = (x - mean) invstd, g = gamma invstd, n = N*S (the CPU kernel's formulas):
//   dbeta = sum dy, dgamma = invstd sum dy (x - mean), dx = (dy - mean(dy)) g - (x - mean) k,
//   k = g invstd^2 sum(dy (x - mean)) / n.
__device__ __forceinline__ void bn_bwd_finalize(const BnBwdArgs& a, int64_t c, float sdy, float sdyx, bool write,
                                                float& mean_dy, float& g, float& k) {
  const float invstd = a.save_invstd[c];
  const float inv_count = 1.0f / static_cast<float>(a.N * a.S);
  g = invstd * (a.gamma ? a.gamma[c] : 1.0f);
  mean_dy = sdy * inv_count;
  k = g * invstd * invstd * sdyx * inv_count;
  if (!write) return;
  if (a.dbeta) a.dbeta[c] = sdy;
  if (a.dgamma) a.dgamma[c] = sdyx * invstd;
}

template <typename T, bool kAct>
__global__ void bn_bwd_long_kernel(BnBwdArgs a, const T* dy, const T* y, const T* x, T* dx, T* dr) {
  __shared__ float red[32];
  const int64_t c = blockIdx.x;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  const float mean = a.save_mean[c];
  float s1 = 0.f, s2 = 0.f;
  const int64_t segs = (a.S + 31) / 32, n_segs = a.N * segs;
  for (int64_t g = warp; g < n_segs; g += n_warps) {
    const int64_t n = g / segs, s = (g - n * segs) * 32 + lane;
    if (s < a.S) {
      const int64_t i = (n * a.C + c) * a.S + s;
      const float d = bn_grad<kAct>(dy, y, i);
      s1 += d;
      s2 += d * (to_f(x[i]) - mean);
    }
  }
  s1 = block_sum(s1, red);
  s2 = block_sum(s2, red);
  float mean_dy, g, k;
  bn_bwd_finalize(a, c, s1, s2, threadIdx.x == 0, mean_dy, g, k);
  for (int64_t sg = warp; sg < n_segs; sg += n_warps) {
    const int64_t n = sg / segs, s = (sg - n * segs) * 32 + lane;
    if (s < a.S) {
      const int64_t i = (n * a.C + c) * a.S + s;
      const float d = bn_grad<kAct>(dy, y, i);
      dx[i] = from_f<T>((d - mean_dy) * g - (to_f(x[i]) - mean) * k);
      if (kAct && dr) dr[i] = from_f<T>(d);
    }
  }
}

template <typename T, bool kAct>
__global__ void bn_bwd_short_kernel(BnBwdArgs a, const T* dy, const T* y, const T* x, T* dx, T* dr) {
  __shared__ float sm[kColY][kColX + 1];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColX + threadIdx.x;
  const bool live = c < a.C;
  const int64_t count = a.N * a.S;
  const float mean = live ? a.save_mean[c] : 0.f;
  float s1 = 0.f, s2 = 0.f;
  if (live)
    for (int64_t j = threadIdx.y; j < count; j += kColY) {
      const int64_t n = j / a.S, s = j - n * a.S;
      const int64_t i = (n * a.C + c) * a.S + s;
      const float d = bn_grad<kAct>(dy, y, i);
      s1 += d;
      s2 += d * (to_f(x[i]) - mean);
    }
  s1 = column_sum(s1, sm);
  s2 = column_sum(s2, sm);
  if (!live) return;
  float mean_dy, g, k;
  bn_bwd_finalize(a, c, s1, s2, threadIdx.y == 0, mean_dy, g, k);
  for (int64_t j = threadIdx.y; j < count; j += kColY) {
    const int64_t n = j / a.S, s = j - n * a.S;
    const int64_t i = (n * a.C + c) * a.S + s;
    const float d = bn_grad<kAct>(dy, y, i);
    dx[i] = from_f<T>((d - mean_dy) * g - (to_f(x[i]) - mean) * k);
    if (kAct && dr) dr[i] = from_f<T>(d);
  }
}

// The training forward (kAct: fused with the residual add and ReLU), one kernel for either layout.
template <bool kAct, typename T>
void bn_fwd_train_launch(int64_t N, int64_t C, int64_t S, const T* x, const T* r, const float* gamma,
                         const float* beta, double eps, double momentum, T* y, float* save_mean, float* save_invstd,
                         float* running_mean, float* running_var, cudaStream_t stream) {
  if (N * S < 2) throw std::runtime_error("batch_norm: expected more than 1 value per channel when training");
  if (C == 0) return;
  const BnFwdArgs a{N, C, S, gamma, beta, static_cast<float>(eps), static_cast<float>(momentum),
                    save_mean, save_invstd, running_mean, running_var};
  if (S >= kLongRowMin) {
    SELFSUP_LAUNCH(static_cast<unsigned>(C), kLongThreads, 0, stream, bn_fwd_train_long_kernel<T, kAct>)(a, x, r, y);
  } else {
    SELFSUP_LAUNCH(static_cast<unsigned>((C + kColX - 1) / kColX), dim3(kColX, kColY), 0, stream,
                   bn_fwd_train_short_kernel<T, kAct>)(a, x, r, y);
  }
  SELFSUP_LAUNCH_CHECK();
}

template <bool kAct, typename T>
void bn_bwd_launch(int64_t N, int64_t C, int64_t S, const T* dy, const T* y, const T* x, const float* gamma,
                   const float* save_mean, const float* save_invstd, T* dx, T* dr, float* dgamma, float* dbeta,
                   cudaStream_t stream) {
  if (C == 0) return;
  if (N * S == 0) {  // no samples: zero parameter gradients, nothing to write in dx (as the CPU kernel)
    if (dgamma) SELFSUP_CUDA_CHECK(cudaMemsetAsync(dgamma, 0, C * sizeof(float), stream));
    if (dbeta) SELFSUP_CUDA_CHECK(cudaMemsetAsync(dbeta, 0, C * sizeof(float), stream));
    return;
  }
  const BnBwdArgs a{N, C, S, gamma, save_mean, save_invstd, dgamma, dbeta};
  if (S >= kLongRowMin) {
    SELFSUP_LAUNCH(static_cast<unsigned>(C), kLongThreads, 0, stream, bn_bwd_long_kernel<T, kAct>)(a, dy, y, x, dx, dr);
  } else {
    SELFSUP_LAUNCH(static_cast<unsigned>((C + kColX - 1) / kColX), dim3(kColX, kColY), 0, stream,
                   bn_bwd_short_kernel<T, kAct>)(a, dy, y, x, dx, dr);
  }
  SELFSUP_LAUNCH_CHECK();
}

}  // namespace

template <typename T>
void batch_norm_fwd_train_cuda(int64_t N, int64_t C, int64_t S, const T* x, const float* gamma, const float* beta,
                               double eps, double momentum, T* y, float* save_mean, float* save_invstd,
                               float* running_mean, float* running_var, cudaStream_t stream) {
  bn_fwd_train_launch<false>(N, C, S, x, static_cast<const T*>(nullptr), gamma, beta, eps, momentum, y, save_mean,
                             save_invstd, running_mean, running_var, stream);
}

template <typename T>
void batch_norm_add_relu_fwd_train_cuda(int64_t N, int64_t C, int64_t S, const T* x, const T* residual,
                                        const float* gamma, const float* beta, double eps, double momentum, T* y,
                                        float* save_mean, float* save_invstd, float* running_mean,
                                        float* running_var, cudaStream_t stream) {
  bn_fwd_train_launch<true>(N, C, S, x, residual, gamma, beta, eps, momentum, y, save_mean, save_invstd,
                            running_mean, running_var, stream);
}

template <typename T>
void batch_norm_fwd_eval_cuda(int64_t N, int64_t C, int64_t S, const T* x, const float* gamma, const float* beta,
                              const float* running_mean, const float* running_var, double eps, T* y,
                              cudaStream_t stream) {
  const int64_t total = N * C * S;
  if (total == 0) return;
  SELFSUP_LAUNCH(nn_cuda::grid_for(total, 256), 256, 0, stream, bn_fwd_eval_kernel<T>)(
      total, C, S, x, gamma, beta, running_mean, running_var, static_cast<float>(eps), y);
  SELFSUP_LAUNCH_CHECK();
}

template <typename T>
void batch_norm_bwd_cuda(int64_t N, int64_t C, int64_t S, const T* dy, const T* x, const float* gamma,
                         const float* save_mean, const float* save_invstd, T* dx, float* dgamma, float* dbeta,
                         cudaStream_t stream) {
  bn_bwd_launch<false>(N, C, S, dy, static_cast<const T*>(nullptr), x, gamma, save_mean, save_invstd, dx,
                       static_cast<T*>(nullptr), dgamma, dbeta, stream);
}

template <typename T>
void batch_norm_add_relu_bwd_cuda(int64_t N, int64_t C, int64_t S, const T* dy, const T* y, const T* x,
                                  const float* gamma, const float* save_mean, const float* save_invstd, T* dx,
                                  T* dresidual, float* dgamma, float* dbeta, cudaStream_t stream) {
  bn_bwd_launch<true>(N, C, S, dy, y, x, gamma, save_mean, save_invstd, dx, dresidual, dgamma, dbeta, stream);
}

#define SELFSUP_INSTANTIATE_BN_CUDA(T)                                                                           \
  template void batch_norm_fwd_train_cuda<T>(int64_t, int64_t, int64_t, const T*, const float*, const float*,    \
                                             double, double, T*, float*, float*, float*, float*, cudaStream_t);  \
  template void batch_norm_fwd_eval_cuda<T>(int64_t, int64_t, int64_t, const T*, const float*, const float*,     \
                                            const float*, const float*, double, T*, cudaStream_t);               \
  template void batch_norm_bwd_cuda<T>(int64_t, int64_t, int64_t, const T*, const T*, const float*, const float*, \
                                       const float*, T*, float*, float*, cudaStream_t);                          \
  template void batch_norm_add_relu_fwd_train_cuda<T>(int64_t, int64_t, int64_t, const T*, const T*, const float*, \
                                                      const float*, double, double, T*, float*, float*, float*,   \
                                                      float*, cudaStream_t);                                      \
  template void batch_norm_add_relu_bwd_cuda<T>(int64_t, int64_t, int64_t, const T*, const T*, const T*,          \
                                                const float*, const float*, const float*, T*, T*, float*, float*,  \
                                                cudaStream_t);
SELFSUP_INSTANTIATE_BN_CUDA(float)
SELFSUP_INSTANTIATE_BN_CUDA(__nv_bfloat16)
#undef SELFSUP_INSTANTIATE_BN_CUDA

}  // namespace selfsup::kernels
