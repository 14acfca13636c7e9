// CPU softmax / log_softmax along any dim of a contiguous (outer, dim, inner), and the fused
// cross-entropy with label smoothing on logits (N, C), with PyTorch's semantics.
//
// Numerics: every exponential is taken of x - max(x), so nothing overflows and the largest term is exactly 1;
// the sums of exponentials accumulate in double. Rows (inner == 1, the usual classifier case) are contiguous
// and handled one per iteration; for inner > 1 the elements of one softmax are strided by inner, so a task
// takes a block of neighbouring inner positions and walks dim with contiguous, vectorisable inner loops.
// Both layouts parallelise with OpenMP over independent softmaxes.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/kernel_api.h"

namespace selfsup::kernels {

namespace {

constexpr int64_t kParallelMinWork = 1 << 14;
// Width of the block of inner positions one task handles when inner > 1 (stack arrays of this size).
constexpr int64_t kInnerBlock = 64;

template <typename T>
T row_max(const T* r, int64_t n) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t i = 0; i < n; ++i) m = std::max(m, r[i]);  // a NaN is skipped here but propagates via exp
  return m;
}

template <typename T>
void softmax_row(const T* x, T* y, int64_t dim, bool log) {
  const T m = row_max(x, dim);
  double sum = 0;
  if (log) {
    for (int64_t d = 0; d < dim; ++d) sum += std::exp(x[d] - m);
    const T shift = static_cast<T>(static_cast<double>(m) + std::log(sum));
    for (int64_t d = 0; d < dim; ++d) y[d] = x[d] - shift;
    return;
  }
  for (int64_t d = 0; d < dim; ++d) {
    const T e = std::exp(x[d] - m);
    y[d] = e;
    sum += e;
  }
  const T inv = static_cast<T>(1.0 / sum);
#pragma omp simd
  for (int64_t d = 0; d < dim; ++d) y[d] *= inv;
}

// The same along dim for inner positions [0, w) of a block starting at x, elements strided by inner.
template <typename T>
void softmax_block(const T* x, T* y, int64_t dim, int64_t inner, int64_t w, bool log) {
  T m[kInnerBlock];
  double sum[kInnerBlock];
  for (int64_t i = 0; i < w; ++i) {
    m[i] = -std::numeric_limits<T>::infinity();
    sum[i] = 0;
  }
  for (int64_t d = 0; d < dim; ++d)
    for (int64_t i = 0; i < w; ++i) m[i] = std::max(m[i], x[d * inner + i]);
  for (int64_t d = 0; d < dim; ++d) {
    for (int64_t i = 0; i < w; ++i) {
      const T e = std::exp(x[d * inner + i] - m[i]);
      if (!log) y[d * inner + i] = e;
      sum[i] += e;
    }
  }
  T post[kInnerBlock];  // log: the shift max + log(sum); softmax: 1 / sum
  for (int64_t i = 0; i < w; ++i)
    post[i] = static_cast<T>(log ? static_cast<double>(m[i]) + std::log(sum[i]) : 1.0 / sum[i]);
  for (int64_t d = 0; d < dim; ++d) {
    if (log) {
#pragma omp simd
      for (int64_t i = 0; i < w; ++i) y[d * inner + i] = x[d * inner + i] - post[i];
    } else {
#pragma omp simd
      for (int64_t i = 0; i < w; ++i) y[d * inner + i] *= post[i];
    }
  }
}

// softmax: dx = y (dy - sum(dy y)); log_softmax: dx = dy - exp(y) sum(dy).
template <typename T>
void softmax_bwd_row(const T* y, const T* dy, T* dx, int64_t dim, bool log) {
  double dot = 0;
  if (log) {
#pragma omp simd reduction(+ : dot)
    for (int64_t d = 0; d < dim; ++d) dot += dy[d];
    const T s = static_cast<T>(dot);
    for (int64_t d = 0; d < dim; ++d) dx[d] = dy[d] - std::exp(y[d]) * s;
    return;
  }
#pragma omp simd reduction(+ : dot)
  for (int64_t d = 0; d < dim; ++d) dot += static_cast<double>(dy[d]) * static_cast<double>(y[d]);
  const T s = static_cast<T>(dot);
#pragma omp simd
  for (int64_t d = 0; d < dim; ++d) dx[d] = y[d] * (dy[d] - s);
}

template <typename T>
void softmax_bwd_block(const T* y, const T* dy, T* dx, int64_t dim, int64_t inner, int64_t w, bool log) {
  double dot[kInnerBlock] = {};
  for (int64_t d = 0; d < dim; ++d) {
    const T* yr = y + d * inner;
    const T* dyr = dy + d * inner;
    for (int64_t i = 0; i < w; ++i)
      dot[i] += log ? static_cast<double>(dyr[i]) : static_cast<double>(dyr[i]) * static_cast<double>(yr[i]);
  }
  T s[kInnerBlock];
  for (int64_t i = 0; i < w; ++i) s[i] = static_cast<T>(dot[i]);
  for (int64_t d = 0; d < dim; ++d) {
    const T* yr = y + d * inner;
    const T* dyr = dy + d * inner;
    T* dxr = dx + d * inner;
    if (log) {
      for (int64_t i = 0; i < w; ++i) dxr[i] = dyr[i] - std::exp(yr[i]) * s[i];
    } else {
#pragma omp simd
      for (int64_t i = 0; i < w; ++i) dxr[i] = yr[i] * (dyr[i] - s[i]);
    }
  }
}

// Runs fn(offset, w) over every softmax of (outer, dim, inner): offset is where its first element lies, w
// how many neighbouring inner positions it covers (1 row when inner == 1).
template <typename Fn>
void for_each_softmax(int64_t outer, int64_t dim, int64_t inner, const Fn& fn) {
  if (inner == 1) {
#pragma omp parallel for schedule(static) if (outer * dim > kParallelMinWork)
    for (int64_t o = 0; o < outer; ++o) fn(o * dim, int64_t{1});
    return;
  }
  const int64_t blocks = (inner + kInnerBlock - 1) / kInnerBlock;
#pragma omp parallel for collapse(2) schedule(static) if (outer * dim * inner > kParallelMinWork)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t b = 0; b < blocks; ++b)
      fn(o * dim * inner + b * kInnerBlock, std::min(kInnerBlock, inner - b * kInnerBlock));
}

void check_targets(int64_t N, int64_t C, const int64_t* target) {
  for (int64_t i = 0; i < N; ++i)
    if (target[i] < 0 || target[i] >= C)
      throw std::runtime_error("cross_entropy: target " + std::to_string(target[i]) + " of row " +
                               std::to_string(i) + " is outside [0, " + std::to_string(C) + ")");
}

}  // namespace

template <typename T>
void softmax_fwd_cpu(int64_t outer, int64_t dim, int64_t inner, const T* x, T* y, bool log) {
  for_each_softmax(outer, dim, inner, [&](int64_t off, int64_t w) {
    if (inner == 1)
      softmax_row(x + off, y + off, dim, log);
    else
      softmax_block(x + off, y + off, dim, inner, w, log);
  });
}

template <typename T>
void softmax_bwd_cpu(int64_t outer, int64_t dim, int64_t inner, const T* y, const T* dy, T* dx, bool log) {
  for_each_softmax(outer, dim, inner, [&](int64_t off, int64_t w) {
    if (inner == 1)
      softmax_bwd_row(y + off, dy + off, dx + off, dim, log);
    else
      softmax_bwd_block(y + off, dy + off, dx + off, dim, inner, w, log);
  });
}

// PyTorch's label smoothing mixes the one-hot target with the uniform distribution:
// loss_i = (1-eps) (lse_i - x_{i,t}) + eps (lse_i - mean_c x_{i,c}) = lse_i - (1-eps) x_{i,t} - eps/C sum_c x_{i,c}.
template <typename T>
void cross_entropy_fwd_cpu(int64_t N, int64_t C, const T* logits, const int64_t* target, double label_smoothing,
                           T* loss, T* lse) {
  check_targets(N, C, target);
  const double eps = label_smoothing;
#pragma omp parallel for schedule(static) if (N * C > kParallelMinWork)
  for (int64_t i = 0; i < N; ++i) {
    const T* x = logits + i * C;  // (C)
    const T m = row_max(x, C);
    double sum_exp = 0, sum_x = 0;
    for (int64_t c = 0; c < C; ++c) {
      sum_exp += std::exp(x[c] - m);
      sum_x += x[c];
    }
    const double l = static_cast<double>(m) + std::log(sum_exp);
    lse[i] = static_cast<T>(l);
    loss[i] = static_cast<T>(l - (1 - eps) * static_cast<double>(x[target[i]]) - eps / static_cast<double>(C) * sum_x);
  }
}

template <typename T>
void cross_entropy_bwd_cpu(int64_t N, int64_t C, const T* logits, const int64_t* target, double label_smoothing,
                           const T* lse, const T* dloss, T* dlogits) {
  check_targets(N, C, target);
  const T smooth = static_cast<T>(label_smoothing / static_cast<double>(C));
  const T on_target = static_cast<T>(1 - label_smoothing);
#pragma omp parallel for schedule(static) if (N * C > kParallelMinWork)
  for (int64_t i = 0; i < N; ++i) {
    const T* x = logits + i * C;  // (C)
    T* dx = dlogits + i * C;      // (C)
    const T l = lse[i], g = dloss[i];
    // exp(x - lse) is the softmax without a second normalising sum.
    for (int64_t c = 0; c < C; ++c) dx[c] = g * (std::exp(x[c] - l) - smooth);
    dx[target[i]] -= g * on_target;
  }
}

#define SELFSUP_INSTANTIATE_SOFTMAX(T)                                                                       \
  template void softmax_fwd_cpu<T>(int64_t, int64_t, int64_t, const T*, T*, bool);                           \
  template void softmax_bwd_cpu<T>(int64_t, int64_t, int64_t, const T*, const T*, T*, bool);                 \
  template void cross_entropy_fwd_cpu<T>(int64_t, int64_t, const T*, const int64_t*, double, T*, T*);        \
  template void cross_entropy_bwd_cpu<T>(int64_t, int64_t, const T*, const int64_t*, double, const T*, const T*, \
                                         T*);
SELFSUP_INSTANTIATE_SOFTMAX(float)
SELFSUP_INSTANTIATE_SOFTMAX(double)
#undef SELFSUP_INSTANTIATE_SOFTMAX

}  // namespace selfsup::kernels
