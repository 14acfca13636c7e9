// Momentum-encoder update over a list of tensors in one call: target = m target + (1 - m) online.
// The (tensor, chunk) work items are flattened so threads share the work even when a few large tensors
// dominate (ResNet-50's largest weight is 2.4M of its 25.6M parameters).
#include <vector>

#include "kernels/kernel_api.h"

namespace selfsup::kernels {

template <typename T>
void ema_update_cpu(int64_t n_tensors, T* const* target, const T* const* online, const int64_t* numel, double m) {
  constexpr int64_t kChunk = 1 << 16;
  struct Item {
    int64_t t, begin, end;
  };
  std::vector<Item> items;
  for (int64_t t = 0; t < n_tensors; ++t)
    for (int64_t b = 0; b < numel[t]; b += kChunk) items.push_back({t, b, std::min(numel[t], b + kChunk)});
  const T a = static_cast<T>(m), b = static_cast<T>(1.0 - m);
#pragma omp parallel for schedule(static) if (items.size() > 1)
  for (size_t w = 0; w < items.size(); ++w) {
    T* dst = target[items[w].t];
    const T* src = online[items[w].t];
    for (int64_t i = items[w].begin; i < items[w].end; ++i) dst[i] = a * dst[i] + b * src[i];
  }
}

template void ema_update_cpu<float>(int64_t, float* const*, const float* const*, const int64_t*, double);
template void ema_update_cpu<double>(int64_t, double* const*, const double* const*, const int64_t*, double);

}  // namespace selfsup::kernels
