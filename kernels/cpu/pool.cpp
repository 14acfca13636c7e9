// CPU pooling kernels (max, average, adaptive average), NCHW, with PyTorch's exact semantics: they are the
// reference the CUDA kernels and the float64 gradient checks are compared against.
//
// Every (n, c) plane is independent, so each kernel runs one OpenMP loop over the N*C planes; within a plane
// the loops walk rows of W contiguous elements. Backward kernels zero their plane of dx first and scatter into
// it; the scatter stays inside the plane, so threads never write to the same element.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/kernel_api.h"

namespace selfsup::kernels {

namespace {

// Planes below this many input elements in total are not worth waking threads for.
constexpr int64_t kParallelMinWork = 1 << 14;

// avg pool window of output (p, q): the clipped range [h0, h1) x [w0, w1) and PyTorch's divisor. The
// window is first cut at the padded border (that size is count_include_pad's divisor), then at the input.
struct AvgWindow {
  int64_t h0, h1, w0, w1, divisor;
};

AvgWindow avg_window(const Pool2dShape& s, int64_t p, int64_t q) {
  int64_t h0 = p * s.stride_h - s.pad_h;
  int64_t w0 = q * s.stride_w - s.pad_w;
  int64_t h1 = std::min(h0 + s.kh, s.H + s.pad_h);
  int64_t w1 = std::min(w0 + s.kw, s.W + s.pad_w);
  const int64_t padded_size = (h1 - h0) * (w1 - w0);
  h0 = std::max<int64_t>(h0, 0);
  w0 = std::max<int64_t>(w0, 0);
  h1 = std::min(h1, s.H);
  w1 = std::min(w1, s.W);
  const int64_t divisor = s.count_include_pad ? padded_size : (h1 - h0) * (w1 - w0);
  return {h0, h1, w0, w1, divisor};
}

// PyTorch's adaptive bins: output i of n covers input [floor(i*len/n), ceil((i+1)*len/n)).
inline int64_t bin_start(int64_t i, int64_t len, int64_t n) { return (i * len) / n; }
inline int64_t bin_end(int64_t i, int64_t len, int64_t n) { return ((i + 1) * len + n - 1) / n; }

}  // namespace

template <typename T>
void max_pool2d_fwd_cpu(const Pool2dShape& s, const T* x, T* y, int64_t* argmax) {
  const int64_t planes = s.N * s.C;
#pragma omp parallel for schedule(static) if (planes * s.H * s.W > kParallelMinWork)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const T* xp = x + plane * s.H * s.W;  // (H, W)
    T* yp = y + plane * s.P * s.Q;        // (P, Q)
    int64_t* ap = argmax + plane * s.P * s.Q;
    for (int64_t p = 0; p < s.P; ++p) {
      // First tap inside the input; padding acts as -inf, so padded taps are simply skipped.
      int64_t h0 = p * s.stride_h - s.pad_h;
      const int64_t h1 = std::min(h0 + (s.kh - 1) * s.dil_h + 1, s.H);
      while (h0 < 0) h0 += s.dil_h;
      for (int64_t q = 0; q < s.Q; ++q) {
        int64_t w0 = q * s.stride_w - s.pad_w;
        const int64_t w1 = std::min(w0 + (s.kw - 1) * s.dil_w + 1, s.W);
        while (w0 < 0) w0 += s.dil_w;
        // A window can miss the input entirely (dilation over padding): -inf and no index, so backward
        // drops its gradient instead of scattering outside the plane.
        int64_t best_idx = (h0 < h1 && w0 < w1) ? h0 * s.W + w0 : -1;
        T best = -std::numeric_limits<T>::infinity();
        bool nan_seen = false;
        for (int64_t h = h0; h < h1; h += s.dil_h) {
          for (int64_t w = w0; w < w1; w += s.dil_w) {
            const T v = xp[h * s.W + w];
            nan_seen |= v != v;
            if (v > best) {  // strict: the first maximum wins ties
              best = v;
              best_idx = h * s.W + w;
            }
          }
        }
        // PyTorch makes a NaN the maximum (the last NaN gives the index). Rescanning only windows that hold
        // one keeps the common loop free of a per-tap isnan branch (2.5x faster).
        if (nan_seen) {
          for (int64_t h = h0; h < h1; h += s.dil_h)
            for (int64_t w = w0; w < w1; w += s.dil_w)
              if (std::isnan(xp[h * s.W + w])) {
                best = xp[h * s.W + w];
                best_idx = h * s.W + w;
              }
        }
        yp[p * s.Q + q] = best;
        ap[p * s.Q + q] = best_idx;
      }
    }
  }
}

template <typename T>
void max_pool2d_bwd_cpu(const Pool2dShape& s, const T* dy, const int64_t* argmax, T* dx) {
  const int64_t planes = s.N * s.C;
#pragma omp parallel for schedule(static) if (planes * s.H * s.W > kParallelMinWork)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const T* dyp = dy + plane * s.P * s.Q;  // (P, Q)
    const int64_t* ap = argmax + plane * s.P * s.Q;
    T* dxp = dx + plane * s.H * s.W;  // (H, W)
    std::fill(dxp, dxp + s.H * s.W, T(0));
    // Overlapping windows (stride < kernel) may share a maximum: contributions add up.
    for (int64_t i = 0; i < s.P * s.Q; ++i)
      if (ap[i] >= 0) dxp[ap[i]] += dyp[i];
  }
}

template <typename T>
void avg_pool2d_fwd_cpu(const Pool2dShape& s, const T* x, T* y) {
  const int64_t planes = s.N * s.C;
#pragma omp parallel for schedule(static) if (planes * s.H * s.W > kParallelMinWork)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const T* xp = x + plane * s.H * s.W;  // (H, W)
    T* yp = y + plane * s.P * s.Q;        // (P, Q)
    for (int64_t p = 0; p < s.P; ++p) {
      for (int64_t q = 0; q < s.Q; ++q) {
        const AvgWindow win = avg_window(s, p, q);
        // A window entirely in the padding (possible with ceil_mode) averages nothing: 0, as PyTorch.
        if (win.h0 >= win.h1 || win.w0 >= win.w1) {
          yp[p * s.Q + q] = T(0);
          continue;
        }
        double sum = 0;  // double: windows can be large (global pooling) and float sums drift
        for (int64_t h = win.h0; h < win.h1; ++h) {
          const T* row = xp + h * s.W;
#pragma omp simd reduction(+ : sum)
          for (int64_t w = win.w0; w < win.w1; ++w) sum += row[w];
        }
        yp[p * s.Q + q] = static_cast<T>(sum / static_cast<double>(win.divisor));
      }
    }
  }
}

template <typename T>
void avg_pool2d_bwd_cpu(const Pool2dShape& s, const T* dy, T* dx) {
  const int64_t planes = s.N * s.C;
#pragma omp parallel for schedule(static) if (planes * s.H * s.W > kParallelMinWork)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const T* dyp = dy + plane * s.P * s.Q;  // (P, Q)
    T* dxp = dx + plane * s.H * s.W;        // (H, W)
    std::fill(dxp, dxp + s.H * s.W, T(0));
    for (int64_t p = 0; p < s.P; ++p) {
      for (int64_t q = 0; q < s.Q; ++q) {
        const AvgWindow win = avg_window(s, p, q);
        if (win.h0 >= win.h1 || win.w0 >= win.w1) continue;
        const T g = static_cast<T>(static_cast<double>(dyp[p * s.Q + q]) / static_cast<double>(win.divisor));
        for (int64_t h = win.h0; h < win.h1; ++h) {
          T* row = dxp + h * s.W;
#pragma omp simd
          for (int64_t w = win.w0; w < win.w1; ++w) row[w] += g;
        }
      }
    }
  }
}

template <typename T>
void adaptive_avg_pool2d_fwd_cpu(int64_t N, int64_t C, int64_t H, int64_t W, int64_t P, int64_t Q, const T* x,
                                 T* y) {
  const int64_t planes = N * C;
#pragma omp parallel for schedule(static) if (planes * H * W > kParallelMinWork)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const T* xp = x + plane * H * W;  // (H, W)
    T* yp = y + plane * P * Q;        // (P, Q)
    for (int64_t p = 0; p < P; ++p) {
      const int64_t h0 = bin_start(p, H, P), h1 = bin_end(p, H, P);
      for (int64_t q = 0; q < Q; ++q) {
        const int64_t w0 = bin_start(q, W, Q), w1 = bin_end(q, W, Q);
        double sum = 0;
        for (int64_t h = h0; h < h1; ++h) {
          const T* row = xp + h * W;
#pragma omp simd reduction(+ : sum)
          for (int64_t w = w0; w < w1; ++w) sum += row[w];
        }
        yp[p * Q + q] = static_cast<T>(sum / static_cast<double>((h1 - h0) * (w1 - w0)));
      }
    }
  }
}

template <typename T>
void adaptive_avg_pool2d_bwd_cpu(int64_t N, int64_t C, int64_t H, int64_t W, int64_t P, int64_t Q, const T* dy,
                                 T* dx) {
  const int64_t planes = N * C;
#pragma omp parallel for schedule(static) if (planes * H * W > kParallelMinWork)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const T* dyp = dy + plane * P * Q;  // (P, Q)
    T* dxp = dx + plane * H * W;        // (H, W)
    std::fill(dxp, dxp + H * W, T(0));
    for (int64_t p = 0; p < P; ++p) {
      const int64_t h0 = bin_start(p, H, P), h1 = bin_end(p, H, P);
      for (int64_t q = 0; q < Q; ++q) {
        const int64_t w0 = bin_start(q, W, Q), w1 = bin_end(q, W, Q);
        const T g = static_cast<T>(static_cast<double>(dyp[p * Q + q]) / static_cast<double>((h1 - h0) * (w1 - w0)));
        for (int64_t h = h0; h < h1; ++h) {
          T* row = dxp + h * W;
#pragma omp simd
          for (int64_t w = w0; w < w1; ++w) row[w] += g;
        }
      }
    }
  }
}

#define SELFSUP_INSTANTIATE_POOL(T)                                                                          \
  template void max_pool2d_fwd_cpu<T>(const Pool2dShape&, const T*, T*, int64_t*);                           \
  template void max_pool2d_bwd_cpu<T>(const Pool2dShape&, const T*, const int64_t*, T*);                     \
  template void avg_pool2d_fwd_cpu<T>(const Pool2dShape&, const T*, T*);                                     \
  template void avg_pool2d_bwd_cpu<T>(const Pool2dShape&, const T*, T*);                                     \
  template void adaptive_avg_pool2d_fwd_cpu<T>(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, const T*, \
                                               T*);                                                          \
  template void adaptive_avg_pool2d_bwd_cpu<T>(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, const T*, \
                                               T*);
SELFSUP_INSTANTIATE_POOL(float)
SELFSUP_INSTANTIATE_POOL(double)
#undef SELFSUP_INSTANTIATE_POOL

}  // namespace selfsup::kernels
