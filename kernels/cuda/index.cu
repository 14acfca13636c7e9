// Index kernels on contiguous (outer, dim, inner) layouts, the GPU side of kernels/cpu/index.cpp:
// index_select and gather move raw elements (1, 2, 4 or 8 bytes, so every dtype shares one kernel per
// element size); scatter_add adds with atomicAdd because two source rows may hit the same target.
// Indices are device memory and already validated by the engine (on a host copy).
#include <stdexcept>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_api.h"

namespace selfsup::kernels {

namespace {

// out (outer, n_index, inner) = in (outer, in_dim, inner)[:, index[j], :]; one thread per output element.
template <typename E>
__global__ void index_select_kernel(int64_t outer, int64_t in_dim, int64_t inner, const E* in, int64_t n_index,
                                    const int64_t* index, E* out) {
  const int64_t n = outer * n_index * inner;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n; k += step) {
    const int64_t i = k % inner, oj = k / inner, j = oj % n_index, o = oj / n_index;
    out[k] = in[(o * in_dim + index[j]) * inner + i];
  }
}

// out (outer, out_dim, inner)[o, j, i] = in (outer, in_dim, inner)[o, index[o, j, i], i]
template <typename E>
__global__ void gather_kernel(int64_t outer, int64_t in_dim, int64_t out_dim, int64_t inner, const E* in,
                              const int64_t* index, E* out) {
  const int64_t n = outer * out_dim * inner;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n; k += step) {
    const int64_t i = k % inner, o = k / (inner * out_dim);
    out[k] = in[(o * in_dim + index[k]) * inner + i];
  }
}

template <typename T>
__global__ void scatter_add_kernel(int64_t outer, int64_t self_dim, int64_t src_dim, int64_t inner, T* self,
                                   const int64_t* index, const T* src) {
  const int64_t n = outer * src_dim * inner;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n; k += step) {
    const int64_t i = k % inner, o = k / (inner * src_dim);
    atomicAdd(self + (o * self_dim + index[k]) * inner + i, src[k]);
  }
}

// Calls f(E{}) with the unsigned type of `elem_size` bytes.
template <typename F>
void on_elem_size(int64_t elem_size, const char* name, F&& f) {
  switch (elem_size) {
    case 1: return f(uint8_t{});
    case 2: return f(uint16_t{});
    case 4: return f(uint32_t{});
    case 8: return f(uint64_t{});
    default: throw std::invalid_argument(std::string(name) + ": unsupported element size " + std::to_string(elem_size));
  }
}

}  // namespace

void index_select_cuda(int64_t outer, int64_t in_dim, int64_t inner, int64_t elem_size, const void* in,
                       int64_t n_index, const int64_t* index, void* out, cudaStream_t stream) {
  const int64_t n = outer * n_index * inner;
  if (n <= 0) return;
  on_elem_size(elem_size, "index_select_cuda", [&](auto tag) {
    using E = decltype(tag);
    SELFSUP_LAUNCH(cuda::grid_for(n, cuda::kBlock), cuda::kBlock, 0, stream, index_select_kernel<E>)(
        outer, in_dim, inner, static_cast<const E*>(in), n_index, index, static_cast<E*>(out));
    SELFSUP_LAUNCH_CHECK();
  });
}

void gather_cuda(int64_t outer, int64_t in_dim, int64_t out_dim, int64_t inner, int64_t elem_size, const void* in,
                 const int64_t* index, void* out, cudaStream_t stream) {
  const int64_t n = outer * out_dim * inner;
  if (n <= 0) return;
  on_elem_size(elem_size, "gather_cuda", [&](auto tag) {
    using E = decltype(tag);
    SELFSUP_LAUNCH(cuda::grid_for(n, cuda::kBlock), cuda::kBlock, 0, stream, gather_kernel<E>)(
        outer, in_dim, out_dim, inner, static_cast<const E*>(in), index, static_cast<E*>(out));
    SELFSUP_LAUNCH_CHECK();
  });
}

template <typename T>
void scatter_add_cuda(int64_t outer, int64_t self_dim, int64_t src_dim, int64_t inner, T* self,
                      const int64_t* index, const T* src, cudaStream_t stream) {
  const int64_t n = outer * src_dim * inner;
  if (n <= 0) return;
  SELFSUP_LAUNCH(cuda::grid_for(n, cuda::kBlock), cuda::kBlock, 0, stream, scatter_add_kernel<T>)(
      outer, self_dim, src_dim, inner, self, index, src);
  SELFSUP_LAUNCH_CHECK();
}

template void scatter_add_cuda<float>(int64_t, int64_t, int64_t, int64_t, float*, const int64_t*, const float*,
                                      cudaStream_t);
template void scatter_add_cuda<double>(int64_t, int64_t, int64_t, int64_t, double*, const int64_t*, const double*,
                                       cudaStream_t);

}  // namespace selfsup::kernels
