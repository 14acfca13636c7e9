// Index kernels on contiguous (outer, dim, inner) layouts: index_select, gather, scatter_add. They move
// raw elements (elem_size bytes) so every dtype shares one implementation; scatter_add needs arithmetic.
#include <cstring>

#include "kernels/kernel_api.h"

namespace selfsup::kernels {

void index_select_cpu(int64_t outer, int64_t in_dim, int64_t inner, int64_t elem_size, const void* in,
                      int64_t n_index, const int64_t* index, void* out) {
  const char* src = static_cast<const char*>(in);
  char* dst = static_cast<char*>(out);
  const size_t row = static_cast<size_t>(inner * elem_size);
#pragma omp parallel for collapse(2) schedule(static) if (outer * n_index * inner > 32768)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < n_index; ++j)
      std::memcpy(dst + (o * n_index + j) * static_cast<int64_t>(row),
                  src + (o * in_dim + index[j]) * static_cast<int64_t>(row), row);
}

void gather_cpu(int64_t outer, int64_t in_dim, int64_t out_dim, int64_t inner, int64_t elem_size, const void* in,
                const int64_t* index, void* out) {
  const char* src = static_cast<const char*>(in);
  char* dst = static_cast<char*>(out);
#pragma omp parallel for schedule(static) if (outer * out_dim * inner > 32768)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < out_dim; ++j)
      for (int64_t i = 0; i < inner; ++i) {
        int64_t k = (o * out_dim + j) * inner + i;
        std::memcpy(dst + k * elem_size, src + ((o * in_dim + index[k]) * inner + i) * elem_size,
                    static_cast<size_t>(elem_size));
      }
}

template <typename T>
void scatter_add_cpu(int64_t outer, int64_t self_dim, int64_t src_dim, int64_t inner, T* self, const int64_t* index,
                     const T* src) {
  // Parallel over `outer` only: two j may hit the same target row, so j stays sequential.
#pragma omp parallel for schedule(static) if (outer * src_dim * inner > 32768)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < src_dim; ++j)
      for (int64_t i = 0; i < inner; ++i) {
        int64_t k = (o * src_dim + j) * inner + i;
        self[(o * self_dim + index[k]) * inner + i] += src[k];
      }
}

template void scatter_add_cpu<float>(int64_t, int64_t, int64_t, int64_t, float*, const int64_t*, const float*);
template void scatter_add_cpu<double>(int64_t, int64_t, int64_t, int64_t, double*, const int64_t*, const double*);

}  // namespace selfsup::kernels
