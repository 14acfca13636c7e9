// Random fills on the GPU: element i is Philox block offset + i of (seed, stream), turned into a number by
// the same functions of kernels/philox.h that the CPU uses, so the GPU draws the CPU's numbers bit for bit.
// One thread per element in a grid-stride loop (Philox is ~10 rounds of integer multiplies: compute-bound
// and cheap next to the store).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_api.h"
#include "kernels/philox.h"

namespace selfsup::kernels {

namespace {

template <typename T, bool kNormal>
__global__ void fill_kernel(int64_t n, uint64_t seed, uint64_t stream_id, uint64_t offset, T* out) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const Philox4 r = philox_block(seed, stream_id, offset + static_cast<uint64_t>(i));
    if constexpr (std::is_same_v<T, float>) {
      out[i] = kNormal ? philox_normal_float(r) : philox_uniform_float(r);
    } else {
      out[i] = kNormal ? philox_normal_double(r) : philox_uniform_double(r);
    }
  }
}

template <typename T, bool kNormal>
void launch_fill(int64_t n, uint64_t seed, uint64_t stream_id, uint64_t offset, T* out, cudaStream_t stream) {
  if (n <= 0) return;
  SELFSUP_LAUNCH(cuda::grid_for(n, cuda::kBlock), cuda::kBlock, 0, stream, fill_kernel<T, kNormal>)(
      n, seed, stream_id, offset, out);
  SELFSUP_LAUNCH_CHECK();
}

}  // namespace

template <typename T>
void fill_uniform_cuda(int64_t n, uint64_t seed, uint64_t stream_id, uint64_t offset, T* out, cudaStream_t stream) {
  launch_fill<T, false>(n, seed, stream_id, offset, out, stream);
}
template <typename T>
void fill_normal_cuda(int64_t n, uint64_t seed, uint64_t stream_id, uint64_t offset, T* out, cudaStream_t stream) {
  launch_fill<T, true>(n, seed, stream_id, offset, out, stream);
}

template void fill_uniform_cuda<float>(int64_t, uint64_t, uint64_t, uint64_t, float*, cudaStream_t);
template void fill_uniform_cuda<double>(int64_t, uint64_t, uint64_t, uint64_t, double*, cudaStream_t);
template void fill_normal_cuda<float>(int64_t, uint64_t, uint64_t, uint64_t, float*, cudaStream_t);
template void fill_normal_cuda<double>(int64_t, uint64_t, uint64_t, uint64_t, double*, cudaStream_t);

}  // namespace selfsup::kernels
