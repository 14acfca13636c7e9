// Convolution bias add and bias gradient (declared in conv_bias.h, which says why they are not cuDNN's).
// Add: a grid-stride elementwise pass. Gradient: one 256-thread block per output channel; its warps take
// runs of 32 contiguous elements of the (N, PQ) plane in turn (coalesced even for PQ = 49), each thread sums
// in float, then a block reduction in a fixed order (deterministic).
#include <cuda_bf16.h>

#include "kernels/cuda/conv_bias.h"
#include "kernels/cuda/nn_check.cuh"

namespace selfsup::kernels {

namespace {

using nn_cuda::block_sum;
using nn_cuda::from_f;
using nn_cuda::to_f;

constexpr int kAddThreads = 256;
constexpr int kGradThreads = 256;

template <typename T>
__global__ void conv_bias_add_kernel(int64_t total, int64_t K, int64_t PQ, const T* bias, T* y) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = (i / PQ) % K;
    y[i] = from_f<T>(to_f(y[i]) + to_f(bias[k]));
  }
}

template <typename T>
__global__ void conv_bias_grad_kernel(int64_t N, int64_t K, int64_t PQ, const T* dy, T* dbias) {
  __shared__ float red[32];
  const int64_t k = blockIdx.x;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  const int64_t segs = (PQ + 31) / 32, n_segs = N * segs;
  float s = 0.f;
  for (int64_t g = warp; g < n_segs; g += n_warps) {
    const int64_t n = g / segs, p = (g - n * segs) * 32 + lane;
    if (p < PQ) s += to_f(dy[(n * K + k) * PQ + p]);
  }
  s = block_sum(s, red);
  if (threadIdx.x == 0) dbias[k] = from_f<T>(s);
}

}  // namespace

template <typename T>
void conv_bias_add_cuda(int64_t N, int64_t K, int64_t PQ, const T* bias, T* y, cudaStream_t stream) {
  const int64_t total = N * K * PQ;
  if (total == 0) return;
  SELFSUP_LAUNCH(nn_cuda::grid_for(total, kAddThreads), kAddThreads, 0, stream, conv_bias_add_kernel<T>)(
      total, K, PQ, bias, y);
  SELFSUP_LAUNCH_CHECK();
}

template <typename T>
void conv_bias_grad_cuda(int64_t N, int64_t K, int64_t PQ, const T* dy, T* dbias, cudaStream_t stream) {
  if (K == 0) return;
  // N * PQ == 0 gives zero sums, which the kernel writes.
  SELFSUP_LAUNCH(static_cast<unsigned>(K), kGradThreads, 0, stream, conv_bias_grad_kernel<T>)(N, K, PQ, dy, dbias);
  SELFSUP_LAUNCH_CHECK();
}

#define SELFSUP_INSTANTIATE_CONV_BIAS_CUDA(T)                                                       \
  template void conv_bias_add_cuda<T>(int64_t, int64_t, int64_t, const T*, T*, cudaStream_t); \
  template void conv_bias_grad_cuda<T>(int64_t, int64_t, int64_t, const T*, T*, cudaStream_t);
SELFSUP_INSTANTIATE_CONV_BIAS_CUDA(float)
SELFSUP_INSTANTIATE_CONV_BIAS_CUDA(__nv_bfloat16)
#undef SELFSUP_INSTANTIATE_CONV_BIAS_CUDA

}  // namespace selfsup::kernels
