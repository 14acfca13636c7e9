// Reductions over the middle axis of a contiguous (outer, dim, inner) block, with the semantics of
// kernels/cpu/reduce.cpp: sums and the exp-sums of logsumexp accumulate in double; max/min propagate NaN
// and report the first index on ties (the combine step compares indices explicitly, so the tree order of
// the parallel reduction does not matter); logsumexp is max + log(sum exp(x - max)), -inf/+inf max as is.
//
// Two kernels:
//   rows_kernel    (inner == 1): one block per row (grid-stride over rows); each thread strides over the
//                  row, then warp shuffles and one shared-memory step combine the block.
//   columns_kernel (inner > 1):  a 32 x 16 block: x walks 32 adjacent columns (coalesced loads), y splits
//                  dim 16 ways; the 16 partials per column are combined in shared memory in y order.
// Known limit: a single row of a huge tensor (outer == 1, e.g. sum of everything) runs on one block of
// 1024 threads; a two-stage split of that case is future work.
#include <stdexcept>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_api.h"

namespace selfsup::kernels {

namespace {

template <typename T>
struct MinMax {
  T v;
  int64_t i;  // -1: empty
};

// The better of two (value, index) candidates: NaN wins, then the larger (smaller) value, then the lower index.
template <typename T>
__device__ __forceinline__ MinMax<T> pick(MinMax<T> a, MinMax<T> b, bool is_max) {
  if (a.i < 0) return b;
  if (b.i < 0) return a;
  const bool an = isnan(a.v), bn = isnan(b.v);
  if (an || bn) {
    if (an && bn) return a.i <= b.i ? a : b;
    return an ? a : b;
  }
  if (a.v == b.v) return a.i <= b.i ? a : b;
  return (is_max ? b.v > a.v : b.v < a.v) ? b : a;
}

// max that ignores NaN the way the CPU's `x > m ? x : m` does.
template <typename T>
__device__ __forceinline__ T max_keep(T m, T x) {
  return x > m ? x : m;
}

template <typename T>
__device__ __forceinline__ MinMax<T> shfl_pick(MinMax<T> a, int o, bool is_max) {
  MinMax<T> b;
  b.v = __shfl_xor_sync(0xffffffffu, a.v, o);
  b.i = __shfl_xor_sync(0xffffffffu, a.i, o);
  return pick(a, b, is_max);
}

// Whole-block combine helpers for rows_kernel (blockDim.x is a multiple of 32, at most 1024).
__device__ __forceinline__ double block_sum_d(double v) {
  __shared__ double s[32];
  return cuda::block_sum(v, s);
}

template <typename T>
__device__ __forceinline__ T block_max_keep(T v) {
  __shared__ T s[32];
  for (int o = 16; o > 0; o >>= 1) v = max_keep(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) s[warp] = v;
  __syncthreads();
  v = lane < nwarps ? s[lane] : -INFINITY;
  for (int o = 16; o > 0; o >>= 1) v = max_keep(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

template <typename T>
__device__ __forceinline__ MinMax<T> block_pick(MinMax<T> v, bool is_max) {
  __shared__ T sv[32];
  __shared__ int64_t si[32];
  for (int o = 16; o > 0; o >>= 1) v = shfl_pick(v, o, is_max);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) {
    sv[warp] = v.v;
    si[warp] = v.i;
  }
  __syncthreads();
  if (lane < nwarps) {
    v.v = sv[lane];
    v.i = si[lane];
  } else {
    v.i = -1;
  }
  for (int o = 16; o > 0; o >>= 1) v = shfl_pick(v, o, is_max);
  return v;
}

template <typename T>
__global__ void rows_kernel(ReduceOp op, int64_t outer, int64_t dim, const T* in, T* out, int64_t* idx) {
  for (int64_t o = blockIdx.x; o < outer; o += gridDim.x) {
    const T* row = in + o * dim;
    if (op == ReduceOp::sum) {
      double acc = 0;
      for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) acc += static_cast<double>(row[d]);
      acc = block_sum_d(acc);
      if (threadIdx.x == 0) out[o] = static_cast<T>(acc);
    } else if (op == ReduceOp::max || op == ReduceOp::min) {
      const bool is_max = op == ReduceOp::max;
      MinMax<T> best{T(0), -1};
      for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) best = pick(best, MinMax<T>{row[d], d}, is_max);
      best = block_pick(best, is_max);
      if (threadIdx.x == 0) {
        out[o] = best.v;
        if (idx) idx[o] = best.i;
      }
    } else {  // logsumexp
      T m = -INFINITY;
      for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) m = max_keep(m, row[d]);
      m = block_max_keep(m);
      double acc = 0;
      if (!isinf(m))
        for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) acc += exp(static_cast<double>(row[d] - m));
      acc = block_sum_d(acc);
      if (threadIdx.x == 0) out[o] = isinf(m) ? m : static_cast<T>(m + log(acc));
    }
    __syncthreads();  // the shared scratch is reused by the next row
  }
}

constexpr int kColX = 32, kColY = 16;

template <typename T>
__global__ void columns_kernel(ReduceOp op, int64_t outer, int64_t dim, int64_t inner, const T* in, T* out,
                               int64_t* idx) {
  __shared__ double s_sum[kColY][kColX];
  __shared__ T s_v[kColY][kColX];
  __shared__ int64_t s_i[kColY][kColX];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t tiles = (inner + kColX - 1) / kColX;
  for (int64_t b = blockIdx.x; b < outer * tiles; b += gridDim.x) {
    const int64_t o = b / tiles, i = (b % tiles) * kColX + tx;
    const bool valid = i < inner;
    const T* col = in + o * dim * inner + i;
    if (op == ReduceOp::sum) {
      double acc = 0;
      if (valid)
        for (int64_t d = ty; d < dim; d += kColY) acc += static_cast<double>(col[d * inner]);
      s_sum[ty][tx] = acc;
      __syncthreads();
      if (ty == 0 && valid) {
        double t = 0;
        for (int y = 0; y < kColY; ++y) t += s_sum[y][tx];
        out[o * inner + i] = static_cast<T>(t);
      }
    } else if (op == ReduceOp::max || op == ReduceOp::min) {
      const bool is_max = op == ReduceOp::max;
      MinMax<T> best{T(0), -1};
      if (valid)
        for (int64_t d = ty; d < dim; d += kColY) best = pick(best, MinMax<T>{col[d * inner], d}, is_max);
      s_v[ty][tx] = best.v;
      s_i[ty][tx] = best.i;
      __syncthreads();
      if (ty == 0 && valid) {
        MinMax<T> r{T(0), -1};
        for (int y = 0; y < kColY; ++y) r = pick(r, MinMax<T>{s_v[y][tx], s_i[y][tx]}, is_max);
        out[o * inner + i] = r.v;
        if (idx) idx[o * inner + i] = r.i;
      }
    } else {  // logsumexp
      T m = -INFINITY;
      if (valid)
        for (int64_t d = ty; d < dim; d += kColY) m = max_keep(m, col[d * inner]);
      s_v[ty][tx] = m;
      __syncthreads();
      m = -INFINITY;
      for (int y = 0; y < kColY; ++y) m = max_keep(m, s_v[y][tx]);
      double acc = 0;
      if (valid && !isinf(m))
        for (int64_t d = ty; d < dim; d += kColY) acc += exp(static_cast<double>(col[d * inner] - m));
      s_sum[ty][tx] = acc;
      __syncthreads();
      if (ty == 0 && valid) {
        double t = 0;
        for (int y = 0; y < kColY; ++y) t += s_sum[y][tx];
        out[o * inner + i] = isinf(m) ? m : static_cast<T>(m + log(t));
      }
    }
    __syncthreads();  // shared arrays are reused by the next tile
  }
}

}  // namespace

template <typename T>
void reduce_cuda(ReduceOp op, int64_t outer, int64_t dim, int64_t inner, const T* in, T* out, int64_t* idx,
                 cudaStream_t stream) {
  if (outer <= 0 || inner <= 0) return;
  if (dim <= 0 && (op == ReduceOp::max || op == ReduceOp::min))
    throw std::invalid_argument("reduce_cuda: max/min over an empty dimension");
  if (inner == 1) {
    const int threads = outer < 1024 ? 1024 : 256;  // few rows: wide blocks keep more loads in flight
    SELFSUP_LAUNCH(cuda::grid_for(outer, 1), threads, 0, stream, rows_kernel<T>)(op, outer, dim, in, out, idx);
    SELFSUP_LAUNCH_CHECK();
  } else {
    const int64_t tiles = (inner + kColX - 1) / kColX;
    SELFSUP_LAUNCH(cuda::grid_for(outer * tiles, 1), dim3(kColX, kColY), 0, stream, columns_kernel<T>)(
        op, outer, dim, inner, in, out, idx);
    SELFSUP_LAUNCH_CHECK();
  }
}

template void reduce_cuda<float>(ReduceOp, int64_t, int64_t, int64_t, const float*, float*, int64_t*, cudaStream_t);
template void reduce_cuda<double>(ReduceOp, int64_t, int64_t, int64_t, const double*, double*, int64_t*,
                                  cudaStream_t);

}  // namespace selfsup::kernels
