// The one loop behind every elementwise CPU kernel: N operands that share `sizes`, each with its own
// element strides (0 = broadcast). The dimensions are walked in the order of the output's (operand 0's)
// memory, outermost first, so a channels-last output (strides (HWC, 1, WC, C)) streams as well as a
// contiguous one (the order changes no result: every operand element is visited once, independently).
// Dimensions that are contiguous for every operand are then merged, so a contiguous tensor is one flat loop; the flat index range is split between OpenMP threads, and each
// thread walks its part row by row, handing the op one run of the innermost dimension at a time
// (`inner(n, ptrs, byte_strides)`), where a unit-stride fast path vectorises.
#pragma once
#include <omp.h>

#include <algorithm>
#include <array>
#include <numeric>
#include <cstdint>
#include <vector>

namespace selfsup::kernels::cpu {

template <int N>
struct StridedLoop {
  std::vector<int64_t> sizes;                    // coalesced, innermost last
  std::array<std::vector<int64_t>, N> strides;  // bytes
  std::array<char*, N> base;
  int64_t numel = 1;

  StridedLoop(int ndim, const int64_t* in_sizes, std::array<char*, N> ptrs,
              std::array<const int64_t*, N> elem_strides, std::array<int64_t, N> elem_sizes)
      : base(ptrs) {
    for (int d = 0; d < ndim; ++d) numel *= in_sizes[d];
    // The output's dims by decreasing stride (ties keep their order): row-major for a contiguous output.
    std::vector<int> order(static_cast<size_t>(ndim));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return elem_strides[0][a] > elem_strides[0][b]; });
    // Drop size-1 dims, then merge d into d+1 when every operand's stride allows it.
    for (int d : order) {
      if (in_sizes[d] == 1) continue;
      bool merge = !sizes.empty();
      for (int k = 0; k < N && merge; ++k)
        merge = strides[k].back() == elem_strides[k][d] * elem_sizes[k] * in_sizes[d];
      if (merge) {
        sizes.back() *= in_sizes[d];
        for (int k = 0; k < N; ++k) strides[k].back() = elem_strides[k][d] * elem_sizes[k];
      } else {
        sizes.push_back(in_sizes[d]);
        for (int k = 0; k < N; ++k) strides[k].push_back(elem_strides[k][d] * elem_sizes[k]);
      }
    }
    if (sizes.empty()) {
      sizes.push_back(1);
      for (int k = 0; k < N; ++k) strides[k].push_back(0);
    }
  }

  // Calls inner(n, ptrs, byte_strides) over runs of the innermost dim covering [begin, end).
  template <typename F>
  void run_range(int64_t begin, int64_t end, F& inner) const {
    const int nd = static_cast<int>(sizes.size());
    const int64_t last = sizes[nd - 1];
    std::vector<int64_t> idx(nd, 0);
    int64_t rem = begin;
    for (int d = nd - 1; d >= 0; --d) {
      idx[d] = rem % sizes[d];
      rem /= sizes[d];
    }
    std::array<int64_t, N> inner_stride;
    for (int k = 0; k < N; ++k) inner_stride[k] = strides[k][nd - 1];
    int64_t pos = begin;
    while (pos < end) {
      std::array<char*, N> p;
      for (int k = 0; k < N; ++k) {
        int64_t off = 0;
        for (int d = 0; d < nd; ++d) off += idx[d] * strides[k][d];
        p[k] = base[k] + off;
      }
      int64_t n = std::min(last - idx[nd - 1], end - pos);
      inner(n, p, inner_stride);
      pos += n;
      idx[nd - 1] += n;
      for (int d = nd - 1; d > 0 && idx[d] == sizes[d]; --d) {
        idx[d] = 0;
        ++idx[d - 1];
      }
    }
  }

  template <typename F>
  void run(F inner) const {
    constexpr int64_t kGrain = 32768;  // below this, threads cost more than they save
    if (numel == 0) return;
    if (numel < kGrain || omp_get_max_threads() == 1 || omp_in_parallel()) {
      run_range(0, numel, inner);
      return;
    }
#pragma omp parallel
    {
      int nt = omp_get_num_threads(), t = omp_get_thread_num();
      int64_t chunk = (numel + nt - 1) / nt;
      int64_t b = std::min<int64_t>(numel, t * chunk), e = std::min<int64_t>(numel, b + chunk);
      if (b < e) run_range(b, e, inner);
    }
  }
};

}  // namespace selfsup::kernels::cpu
