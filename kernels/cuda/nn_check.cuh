// Small helpers shared by the CUDA nn kernels (conv, norm, pool, softmax/xent, normalize, infonce,
// momentum): grid sizing and float/bf16 conversions. The error checks are the backend's
// (kernels/cuda/common.cuh): SELFSUP_CUDA_CHECK / SELFSUP_CUDNN_CHECK around every call and
// SELFSUP_LAUNCH_CHECK() after every launch, which also synchronises under SELFSUP_SYNC_DEBUG=1.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace selfsup::kernels::nn_cuda {

// Blocks for a grid-stride loop over n items: enough to fill the device, never more than the work.
inline unsigned grid_for(int64_t n, int threads, int64_t max_blocks = 65536) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > max_blocks) b = max_blocks;
  return static_cast<unsigned>(b);
}

}  // namespace selfsup::kernels::nn_cuda

#ifdef SELFSUP_DEVICE_CODE
#include <cuda_bf16.h>

namespace selfsup::kernels::nn_cuda {

// Storage type <-> float: every kernel computes and accumulates in float.
__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T>
__device__ __forceinline__ T from_f(float x);
template <>
__device__ __forceinline__ float from_f<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum (or max) over the whole block; every thread gets the result. blockDim.x must be a multiple of 32 and
// smem must hold 32 floats. Safe to call repeatedly with the same smem (the leading barrier protects it).
template <bool kMax>
__device__ __forceinline__ float block_reduce(float v, float* smem) {
  v = kMax ? warp_max(v) : warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < n_warps ? smem[lane] : (kMax ? -__int_as_float(0x7f800000) : 0.0f);
    v = kMax ? warp_max(v) : warp_sum(v);
    if (lane == 0) smem[0] = v;
  }
  __syncthreads();
  return smem[0];
}
__device__ __forceinline__ float block_sum(float v, float* smem) { return block_reduce<false>(v, smem); }
__device__ __forceinline__ float block_max(float v, float* smem) { return block_reduce<true>(v, smem); }

// Row kernels: a "row group" is one warp (kBlock = false) or the whole block (kBlock = true) per row.
// row_group gives the row this thread's group owns, its rank in the group and the group size; false when the
// row is past the end (warp mode only, where the whole warp leaves; no barrier is involved).
template <bool kBlock>
__device__ __forceinline__ bool row_group(int64_t rows, int64_t& row, int& tid, int& nt) {
  if constexpr (kBlock) {
    row = blockIdx.x;
    tid = threadIdx.x;
    nt = blockDim.x;
  } else {
    row = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
    tid = threadIdx.x & 31;
    nt = 32;
  }
  return row < rows;
}
template <bool kBlock>
__device__ __forceinline__ float group_sum(float v, float* red) {
  if constexpr (kBlock) return block_sum(v, red); else return warp_sum(v);
}
template <bool kBlock>
__device__ __forceinline__ float group_max(float v, float* red) {
  if constexpr (kBlock) return block_max(v, red); else return warp_max(v);
}

}  // namespace selfsup::kernels::nn_cuda
#endif
