// Random fills from Philox: element i depends only on (seed, stream, offset + i), so the result does not
// depend on the number of threads. The element formulas live in kernels/philox.h, shared with
// kernels/cuda/random.cu, and use only exactly-rounded operations, so CPU and GPU give the same bits.
#include <cmath>

#include "kernels/kernel_api.h"
#include "kernels/philox.h"

namespace selfsup::kernels {

template <typename T>
void fill_uniform_cpu(int64_t n, uint64_t seed, uint64_t stream, uint64_t offset, T* out) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    Philox4 r = philox_block(seed, stream, offset + static_cast<uint64_t>(i));
    if constexpr (std::is_same_v<T, float>) {
      out[i] = philox_uniform_float(r);
    } else {
      out[i] = philox_uniform_double(r);
    }
  }
}

template <typename T>
void fill_normal_cpu(int64_t n, uint64_t seed, uint64_t stream, uint64_t offset, T* out) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    Philox4 r = philox_block(seed, stream, offset + static_cast<uint64_t>(i));
    if constexpr (std::is_same_v<T, float>) {
      out[i] = philox_normal_float(r);
    } else {
      out[i] = philox_normal_double(r);
    }
  }
}

template void fill_uniform_cpu<float>(int64_t, uint64_t, uint64_t, uint64_t, float*);
template void fill_uniform_cpu<double>(int64_t, uint64_t, uint64_t, uint64_t, double*);
template void fill_normal_cpu<float>(int64_t, uint64_t, uint64_t, uint64_t, float*);
template void fill_normal_cpu<double>(int64_t, uint64_t, uint64_t, uint64_t, double*);

}  // namespace selfsup::kernels
