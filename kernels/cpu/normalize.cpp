// CPU L2 normalisation along dim of a contiguous (outer, dim, inner), as PyTorch's F.normalize(p=2):
// y = x / max(||x||, eps). SSL heads use it on every embedding (SimCLR, MoCo), so it must be exact and cheap.
//
// Squared norms and the backward's dot products accumulate in double. inner == 1 (normalise rows of a
// (N, D) matrix) walks each row contiguously; inner > 1 takes blocks of neighbouring inner positions so the
// loops over them stay contiguous. Independent vectors are spread over OpenMP threads.
#include <algorithm>
#include <cmath>

#include "kernels/kernel_api.h"

namespace selfsup::kernels {

namespace {

constexpr int64_t kParallelMinWork = 1 << 14;
constexpr int64_t kInnerBlock = 64;

// Runs fn(o, i0, w) over every vector of (outer, dim, inner): the vectors at outer index o and inner
// positions [i0, i0 + w) (w = 1 when inner == 1).
template <typename Fn>
void for_each_vector(int64_t outer, int64_t dim, int64_t inner, const Fn& fn) {
  if (inner == 1) {
#pragma omp parallel for schedule(static) if (outer * dim > kParallelMinWork)
    for (int64_t o = 0; o < outer; ++o) fn(o, int64_t{0}, int64_t{1});
    return;
  }
  const int64_t blocks = (inner + kInnerBlock - 1) / kInnerBlock;
#pragma omp parallel for collapse(2) schedule(static) if (outer * dim * inner > kParallelMinWork)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t b = 0; b < blocks; ++b)
      fn(o, b * kInnerBlock, std::min(kInnerBlock, inner - b * kInnerBlock));
}

}  // namespace

template <typename T>
void l2_normalize_fwd_cpu(int64_t outer, int64_t dim, int64_t inner, const T* x, double eps, T* y, T* norm) {
  for_each_vector(outer, dim, inner, [&](int64_t o, int64_t i0, int64_t w) {
    const int64_t off = o * dim * inner + i0;
    const T* xb = x + off;  // (dim, w) with row stride inner
    T* yb = y + off;
    T* nb = norm + o * inner + i0;  // (w)
    if (inner == 1) {  // one contiguous row
      double s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t d = 0; d < dim; ++d) s += static_cast<double>(xb[d]) * static_cast<double>(xb[d]);
      const double n = std::sqrt(s);
      nb[0] = static_cast<T>(n);
      const T inv = static_cast<T>(1.0 / std::max(n, eps));
#pragma omp simd
      for (int64_t d = 0; d < dim; ++d) yb[d] = xb[d] * inv;
      return;
    }
    double sq[kInnerBlock] = {};
    for (int64_t d = 0; d < dim; ++d)
      for (int64_t i = 0; i < w; ++i) {
        const double v = static_cast<double>(xb[d * inner + i]);
        sq[i] += v * v;
      }
    T inv[kInnerBlock];
    for (int64_t i = 0; i < w; ++i) {
      const double n = std::sqrt(sq[i]);
      nb[i] = static_cast<T>(n);
      inv[i] = static_cast<T>(1.0 / std::max(n, eps));
    }
    for (int64_t d = 0; d < dim; ++d) {
#pragma omp simd
      for (int64_t i = 0; i < w; ++i) yb[d * inner + i] = xb[d * inner + i] * inv[i];
    }
  });
}

// Where norm > eps, y = x / ||x|| and the Jacobian is (I - y y^T) / ||x||; below eps the divisor is the
// constant eps, so the gradient is dy / eps.
template <typename T>
void l2_normalize_bwd_cpu(int64_t outer, int64_t dim, int64_t inner, const T* y, const T* norm, double eps,
                          const T* dy, T* dx) {
  for_each_vector(outer, dim, inner, [&](int64_t o, int64_t i0, int64_t w) {
    const int64_t off = o * dim * inner + i0;
    const T* yb = y + off;  // (dim, w) with row stride inner
    const T* dyb = dy + off;
    T* dxb = dx + off;
    const T* nb = norm + o * inner + i0;  // (w)
    if (inner == 1) {  // one contiguous row
      double s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t d = 0; d < dim; ++d) s += static_cast<double>(yb[d]) * static_cast<double>(dyb[d]);
      const double n = static_cast<double>(nb[0]);
      const T proj = static_cast<T>(n > eps ? s : 0.0);  // the <y, dy> to remove (none below eps)
      const T inv = static_cast<T>(1.0 / (n > eps ? n : eps));
#pragma omp simd
      for (int64_t d = 0; d < dim; ++d) dxb[d] = (dyb[d] - yb[d] * proj) * inv;
      return;
    }
    double dot[kInnerBlock] = {};
    for (int64_t d = 0; d < dim; ++d)
      for (int64_t i = 0; i < w; ++i)
        dot[i] += static_cast<double>(yb[d * inner + i]) * static_cast<double>(dyb[d * inner + i]);
    T proj[kInnerBlock], inv[kInnerBlock];
    for (int64_t i = 0; i < w; ++i) {
      const double n = static_cast<double>(nb[i]);
      proj[i] = static_cast<T>(n > eps ? dot[i] : 0.0);
      inv[i] = static_cast<T>(1.0 / (n > eps ? n : eps));
    }
    for (int64_t d = 0; d < dim; ++d) {
#pragma omp simd
      for (int64_t i = 0; i < w; ++i)
        dxb[d * inner + i] = (dyb[d * inner + i] - yb[d * inner + i] * proj[i]) * inv[i];
    }
  });
}

#define SELFSUP_INSTANTIATE_L2(T)                                                                       \
  template void l2_normalize_fwd_cpu<T>(int64_t, int64_t, int64_t, const T*, double, T*, T*);            \
  template void l2_normalize_bwd_cpu<T>(int64_t, int64_t, int64_t, const T*, const T*, double, const T*, \
                                        T*);
SELFSUP_INSTANTIATE_L2(float)
SELFSUP_INSTANTIATE_L2(double)
#undef SELFSUP_INSTANTIATE_L2

}  // namespace selfsup::kernels
