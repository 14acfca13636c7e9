// Momentum-encoder update (BYOL, MoCo, DINO teachers): target = m target + (1 - m) online for every
// parameter of an encoder, in ONE kernel launch. A per-tensor launch costs ~3-5 us each, and ResNet-50 has
// 161 parameter tensors: launches alone would take longer than moving the 25.6M floats (~70 us at 4 TB/s).
//
// Multi-tensor apply, as PyTorch's _foreach kernels: the host cuts every tensor into chunks of kChunk
// elements and passes a table (pointers, sizes, first chunk of each tensor) in the kernel's parameters
// (__grid_constant__, up to ~32 KB on sm_70+ with CUDA 12.1+), so no upload and no device allocation is
// needed. Block b handles chunk b: a binary search over the table finds its tensor, then the chunk streams
// with 16-byte loads/stores when both pointers are 16-byte aligned (scalar otherwise, and for the tail).
// The arithmetic avoids fused multiply-adds so results are bit-identical to ema_update_cpu.
#include <algorithm>
#include <memory>
#include <stdexcept>

#include "kernels/cuda/cuda_nn_api.h"
#include "kernels/cuda/nn_check.cuh"

namespace selfsup::kernels {

namespace {

constexpr int kEmaThreads = 256;
constexpr int64_t kChunk = 4096;    // elements per block: 256 threads x 4 float4
constexpr int kMaxTensors = 960;    // table size: 960 * 24 + 961 * 4 bytes ~ 26 KB of kernel parameters

template <typename T>
struct EmaTable {
  int n;                                // tensors in this launch
  T* target[kMaxTensors];               // device pointers
  const T* online[kMaxTensors];
  int64_t numel[kMaxTensors];
  int chunk_begin[kMaxTensors + 1];     // first chunk of each tensor; chunk_begin[n] = total chunks
};

__device__ __forceinline__ float ema(float a, float d, float b, float s) {
  return __fadd_rn(__fmul_rn(a, d), __fmul_rn(b, s));  // no FMA contraction: same rounding as the CPU
}

template <typename T>
__global__ void ema_update_kernel(const __grid_constant__ EmaTable<T> tab, float a, float b) {
  const int total = tab.chunk_begin[tab.n];
  for (int chunk = blockIdx.x; chunk < total; chunk += gridDim.x) {
    // Largest t with chunk_begin[t] <= chunk (empty tensors share their successor's begin and are skipped).
    int lo = 0, hi = tab.n - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) >> 1;
      if (tab.chunk_begin[mid] <= chunk) lo = mid; else hi = mid - 1;
    }
    const int64_t begin = static_cast<int64_t>(chunk - tab.chunk_begin[lo]) * kChunk;
    const int64_t len = min(kChunk, tab.numel[lo] - begin);
    T* dst = tab.target[lo] + begin;  // (len)
    const T* src = tab.online[lo] + begin;
    int64_t done = 0;
    if constexpr (sizeof(T) == 4) {
      if (((reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(src)) & 15) == 0) {
        float4* d4 = reinterpret_cast<float4*>(dst);
        const float4* s4 = reinterpret_cast<const float4*>(src);
        const int64_t n4 = len / 4;
        for (int64_t i = threadIdx.x; i < n4; i += blockDim.x) {
          float4 d = d4[i];
          const float4 s = __ldg(s4 + i);
          d.x = ema(a, d.x, b, s.x);
          d.y = ema(a, d.y, b, s.y);
          d.z = ema(a, d.z, b, s.z);
          d.w = ema(a, d.w, b, s.w);
          d4[i] = d;
        }
        done = n4 * 4;
      }
    }
    for (int64_t i = done + threadIdx.x; i < len; i += blockDim.x) dst[i] = ema(a, dst[i], b, src[i]);
  }
}

}  // namespace

template <typename T>
void ema_update_cuda(int64_t n_tensors, T* const* target, const T* const* online, const int64_t* numel, double m,
                     cudaStream_t stream) {
  const float a = static_cast<float>(m), b = static_cast<float>(1.0 - m);  // as ema_update_cpu
  // The table is ~26 KB: heap-allocate it rather than put it on the caller's stack.
  auto tab = std::make_unique<EmaTable<T>>();
  for (int64_t first = 0; first < n_tensors; first += kMaxTensors) {
    const int n = static_cast<int>(std::min<int64_t>(kMaxTensors, n_tensors - first));
    int64_t chunks = 0;
    for (int t = 0; t < n; ++t) {
      tab->target[t] = target[first + t];
      tab->online[t] = online[first + t];
      tab->numel[t] = numel[first + t];
      tab->chunk_begin[t] = static_cast<int>(chunks);
      chunks += (numel[first + t] + kChunk - 1) / kChunk;
    }
    if (chunks > (int64_t{1} << 30)) throw std::runtime_error("ema_update_cuda: more than 2^30 chunks in one call");
    tab->chunk_begin[n] = static_cast<int>(chunks);
    tab->n = n;
    if (chunks == 0) continue;
    const unsigned grid = static_cast<unsigned>(std::min<int64_t>(chunks, 1 << 20));
    SELFSUP_LAUNCH(grid, kEmaThreads, 0, stream, ema_update_kernel<T>)(*tab, a, b);
    SELFSUP_LAUNCH_CHECK();
  }
}

template void ema_update_cuda<float>(int64_t, float* const*, const float* const*, const int64_t*, double,
                                     cudaStream_t);

}  // namespace selfsup::kernels
