// Convolutions with at most 4 output positions per image, float, groups 1: one GEMM over the whole batch.
//
// On the 8x8 tiles of PIRL's and Jigsaw's 3x3 puzzles (batch 64 x 9 tiles = 576 images) a ResNet's layer3 and
// layer4 see 2x2 and 1x1 maps. oneDNN takes im2col + one GEMM per image there (`gemm:jit`): 576 GEMMs of 1-4
// rows each. Its backward-weights of the 64->64 3x3 layer on a 1x1 map took 8.4 ms per call, the largest
// single cost of a PIRL step (docs/cpu-dense-kernels.md). Here the output positions of all images are the rows
// of one matrix, and only the filter taps that meet the image at some output position are columns: on a 1x1
// map with padding 1 that is the centre tap alone, and the 3x3 convolution is the GEMM of a linear layer.
//
//   taps  the filter rows r_a and columns t_b that meet the image for some output position; T = rows x cols
//   col   (N*P*Q, C*T)  col[(n,p,q), c*T + j] = x[n, c, p*sh - ph + r_j*dh, q*sw - pw + t_j*dw], 0 outside
//   wsel  (K, C*T)      wsel[k, c*T + j] = w[k, c, r_j, t_j]
//   dy'   (N*P*Q, K)    dy' = dy with (n, p, q) as rows: for P*Q == 1 the same bytes as dy (N, K)
//   fwd          y' = col wsel^T, y[n, k, p, q] = y'[(n, p, q), k] + bias[k]
//   bwd_weight   dwsel = dy'^T col, scattered into dw (0 at the taps that never meet the image),
//                dbias[k] = sum over rows of dy'[., k]
//   bwd_data     dcol = dy' wsel, dx = the scatter-add of dcol (the adjoint of im2col)
#include "kernels/cpu/conv_small.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/cpu/dnnl_common.h"

namespace selfsup::kernels::conv_small {
namespace {

namespace du = dnnl_util;

// Workspace slots (dnnl_common.h): conv.cpp's oneDNN path does not run in the same call.
constexpr int kColSlot = 0, kWeightSlot = 1, kRowsSlot = 2;

// The filter indices i in [0, k) that meet [0, in) for some output index o in [0, out).
std::vector<int64_t> used_taps(int64_t k, int64_t out, int64_t in, int64_t stride, int64_t pad, int64_t dil) {
  std::vector<int64_t> used;
  for (int64_t i = 0; i < k; ++i)
    for (int64_t o = 0; o < out; ++o) {
      const int64_t h = o * stride - pad + i * dil;
      if (h >= 0 && h < in) {
        used.push_back(i);
        break;
      }
    }
  return used;
}

struct Layout {
  explicit Layout(const Conv2dShape& shape)
      : s(shape),
        rows(used_taps(s.R, s.P, s.H, s.stride_h, s.pad_h, s.dil_h)),
        cols(used_taps(s.S, s.Q, s.W, s.stride_w, s.pad_w, s.dil_w)),
        T(int64_t(rows.size() * cols.size())),
        L(s.C * T),
        PQ(s.P * s.Q),
        M(s.N * PQ) {}

  // Offset of x[n, c, h, w] within image n's (C, H, W) for tap (a, b) at output (p, q); -1 outside the image.
  int64_t offset(int64_t c, int64_t a, int64_t b, int64_t p, int64_t q) const {
    const int64_t h = p * s.stride_h - s.pad_h + rows[a] * s.dil_h;
    const int64_t w = q * s.stride_w - s.pad_w + cols[b] * s.dil_w;
    return (h >= 0 && h < s.H && w >= 0 && w < s.W) ? (c * s.H + h) * s.W + w : -1;
  }

  const Conv2dShape& s;
  std::vector<int64_t> rows, cols;
  int64_t T, L, PQ, M;
};

float* buffer(int slot, int64_t n) { return static_cast<float*>(du::workspace(slot, std::size_t(n) * sizeof(float))); }

// col (M, L) from x (N, C, H, W).
void im2col(const Layout& l, const float* x, float* col) {
  const Conv2dShape& s = l.s;
  const int64_t nr = int64_t(l.rows.size()), nc = int64_t(l.cols.size());
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < s.N; ++n) {
    const float* img = x + n * s.C * s.H * s.W;
    for (int64_t p = 0; p < s.P; ++p)
      for (int64_t q = 0; q < s.Q; ++q) {
        float* row = col + ((n * s.P + p) * s.Q + q) * l.L;
        for (int64_t c = 0; c < s.C; ++c)
          for (int64_t a = 0; a < nr; ++a)
            for (int64_t b = 0; b < nc; ++b) {
              const int64_t o = l.offset(c, a, b, p, q);
              *row++ = o >= 0 ? img[o] : 0.0f;
            }
      }
  }
}

// wsel (K, L) gathered from w (K, C, R, S).
void gather_weights(const Layout& l, const float* w, float* wsel) {
  const Conv2dShape& s = l.s;
  for (int64_t k = 0; k < s.K; ++k)
    for (int64_t c = 0; c < s.C; ++c)
      for (size_t a = 0; a < l.rows.size(); ++a)
        for (size_t b = 0; b < l.cols.size(); ++b)
          *wsel++ = w[((k * s.C + c) * s.R + l.rows[a]) * s.S + l.cols[b]];
}

// dy' (M, K) from dy (N, K, P, Q); for P * Q == 1 dy itself.
const float* rows_of(const Layout& l, const float* dy) {
  const Conv2dShape& s = l.s;
  if (l.PQ == 1) return dy;
  float* t = buffer(kRowsSlot, l.M * s.K);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t k = 0; k < s.K; ++k)
      for (int64_t pq = 0; pq < l.PQ; ++pq) t[(n * l.PQ + pq) * s.K + k] = dy[(n * s.K + k) * l.PQ + pq];
  return t;
}

}  // namespace

bool applies(const Conv2dShape& s) { return s.groups == 1 && s.P * s.Q <= 4; }

void fwd(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y) {
  const Layout l(s);
  float* col = buffer(kColSlot, l.M * l.L);
  float* wsel = buffer(kWeightSlot, s.K * l.L);
  im2col(l, x, col);
  gather_weights(l, w, wsel);
  // y' (M, K): for one position per image that is y (N, K) itself.
  if (l.PQ == 1) {
    gemm_cpu<float>(false, true, l.M, s.K, l.L, 1.0f, col, l.L, wsel, l.L, 0.0f, y, s.K);
    if (bias)
      for (int64_t n = 0; n < s.N; ++n)
        for (int64_t k = 0; k < s.K; ++k) y[n * s.K + k] += bias[k];
    return;
  }
  float* rows = buffer(kRowsSlot, l.M * s.K);
  gemm_cpu<float>(false, true, l.M, s.K, l.L, 1.0f, col, l.L, wsel, l.L, 0.0f, rows, s.K);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t k = 0; k < s.K; ++k)
      for (int64_t pq = 0; pq < l.PQ; ++pq)
        y[(n * s.K + k) * l.PQ + pq] = rows[(n * l.PQ + pq) * s.K + k] + (bias ? bias[k] : 0.0f);
}

void bwd_weight(const Conv2dShape& s, const float* x, const float* dy, float* dw, float* dbias) {
  const Layout l(s);
  float* col = buffer(kColSlot, l.M * l.L);
  float* dwsel = buffer(kWeightSlot, s.K * l.L);
  im2col(l, x, col);
  const float* rows = rows_of(l, dy);
  gemm_cpu<float>(true, false, s.K, l.L, l.M, 1.0f, rows, s.K, col, l.L, 0.0f, dwsel, l.L);
  std::fill(dw, dw + s.K * s.C * s.R * s.S, 0.0f);
  const float* src = dwsel;
  for (int64_t k = 0; k < s.K; ++k)
    for (int64_t c = 0; c < s.C; ++c)
      for (size_t a = 0; a < l.rows.size(); ++a)
        for (size_t b = 0; b < l.cols.size(); ++b) dw[((k * s.C + c) * s.R + l.rows[a]) * s.S + l.cols[b]] = *src++;
  if (dbias) {
    // Sums over N * P * Q rows in double: the float result is then the correctly rounded sum.
    std::vector<double> sum(size_t(s.K), 0.0);
    for (int64_t m = 0; m < l.M; ++m)
      for (int64_t k = 0; k < s.K; ++k) sum[size_t(k)] += rows[m * s.K + k];
    for (int64_t k = 0; k < s.K; ++k) dbias[k] = float(sum[size_t(k)]);
  }
}

void bwd_data(const Conv2dShape& s, const float* dy, const float* w, float* dx) {
  const Layout l(s);
  float* dcol = buffer(kColSlot, l.M * l.L);
  float* wsel = buffer(kWeightSlot, s.K * l.L);
  gather_weights(l, w, wsel);
  const float* rows = rows_of(l, dy);
  gemm_cpu<float>(false, false, l.M, l.L, s.K, 1.0f, rows, s.K, wsel, l.L, 0.0f, dcol, l.L);
  const int64_t nr = int64_t(l.rows.size()), nc = int64_t(l.cols.size());
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < s.N; ++n) {
    float* img = dx + n * s.C * s.H * s.W;
    std::fill(img, img + s.C * s.H * s.W, 0.0f);
    for (int64_t p = 0; p < s.P; ++p)
      for (int64_t q = 0; q < s.Q; ++q) {
        const float* row = dcol + ((n * s.P + p) * s.Q + q) * l.L;
        for (int64_t c = 0; c < s.C; ++c)
          for (int64_t a = 0; a < nr; ++a)
            for (int64_t b = 0; b < nc; ++b, ++row)
              if (const int64_t o = l.offset(c, a, b, p, q); o >= 0) img[o] += *row;
      }
  }
}

}  // namespace selfsup::kernels::conv_small
