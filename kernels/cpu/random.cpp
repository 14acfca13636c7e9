// Random fills from Philox: element i depends only on (seed, stream, offset + i), so the result does not
// depend on the number of threads, and a CUDA kernel computing the same formula gives the same numbers.
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
      out[i] = uint_to_unit_float(r.v[0]);
    } else {
      out[i] = uints_to_unit_double(r.v[0], r.v[1]);
    }
  }
}

template <typename T>
void fill_normal_cpu(int64_t n, uint64_t seed, uint64_t stream, uint64_t offset, T* out) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    Philox4 r = philox_block(seed, stream, offset + static_cast<uint64_t>(i));
    // Box-Muller; u1 in (0, 1] so the log is finite.
    if constexpr (std::is_same_v<T, float>) {
      float u1 = 1.0f - uint_to_unit_float(r.v[0]);
      float u2 = uint_to_unit_float(r.v[1]);
      out[i] = std::sqrt(-2.0f * std::log(u1)) * std::cos(6.2831853071795864f * u2);
    } else {
      double u1 = 1.0 - uints_to_unit_double(r.v[0], r.v[1]);
      double u2 = uints_to_unit_double(r.v[2], r.v[3]);
      out[i] = std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }
  }
}

template void fill_uniform_cpu<float>(int64_t, uint64_t, uint64_t, uint64_t, float*);
template void fill_uniform_cpu<double>(int64_t, uint64_t, uint64_t, uint64_t, double*);
template void fill_normal_cpu<float>(int64_t, uint64_t, uint64_t, uint64_t, float*);
template void fill_normal_cpu<double>(int64_t, uint64_t, uint64_t, uint64_t, double*);

}  // namespace selfsup::kernels
