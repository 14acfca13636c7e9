// Timing shared by the GPU benchmark programs (CUDA builds only): CUDA events around each run on the
// current stream of cuda:0, warm-up runs first, the median of the timed runs.
#pragma once
#include <algorithm>
#include <functional>
#include <vector>

#include <cuda_runtime.h>

#include "kernels/cuda/device.h"

namespace selfsup::bench {

inline double median_gpu_ms(const std::function<void()>& fn, int warmup = 3, int runs = 10) {
  namespace kc = selfsup::kernels::cuda;
  cudaStream_t s = kc::current_stream(0);
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    kc::Event a(true), b(true);
    a.record(s);
    fn();
    b.record(s);
    b.synchronize();
    t.push_back(a.elapsed_ms(b));
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace selfsup::bench
