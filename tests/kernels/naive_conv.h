// The float64 reference of the convolution tests (test_conv.cpp, test_dense_bf16.cpp): naive direct loops
// over every (output, filter tap) pair, each value with the sum of |terms| that produced it.
#pragma once
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "kernels/kernel_api.h"
#include "tests/kernels/dense_check.h"

namespace selfsup::testing {

namespace sk = selfsup::kernels;

// N, C, H, W, K, R, S, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups; P and Q are derived.
inline sk::Conv2dShape make_shape(std::initializer_list<int64_t> v) {
  const int64_t* a = v.begin();
  sk::Conv2dShape s{a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], 0, 0};
  s.P = (s.H + 2 * s.pad_h - s.dil_h * (s.R - 1) - 1) / s.stride_h + 1;
  s.Q = (s.W + 2 * s.pad_w - s.dil_w * (s.S - 1) - 1) / s.stride_w + 1;
  return s;
}

struct NaiveConv {
  std::vector<RefValue> y, dx, dw, dbias;
};

// Direct loops over every (output, filter tap) pair; the three directions visit the same pairs.
inline NaiveConv naive_conv(const sk::Conv2dShape& s, const std::vector<double>& x, const std::vector<double>& w,
                     const std::vector<double>* bias, const std::vector<double>& dy) {
  NaiveConv out{std::vector<RefValue>(s.N * s.K * s.P * s.Q), std::vector<RefValue>(s.N * s.C * s.H * s.W),
                std::vector<RefValue>(s.K * (s.C / s.groups) * s.R * s.S), std::vector<RefValue>(s.K)};
  const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups;
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t k = 0; k < s.K; ++k)
      for (int64_t p = 0; p < s.P; ++p)
        for (int64_t q = 0; q < s.Q; ++q) {
          const int64_t yi = ((n * s.K + k) * s.P + p) * s.Q + q;
          if (bias) out.y[yi] = {(*bias)[k], std::abs((*bias)[k])};
          out.dbias[k].value += dy[yi];
          out.dbias[k].magnitude += std::abs(dy[yi]);
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t r = 0; r < s.R; ++r)
              for (int64_t t = 0; t < s.S; ++t) {
                const int64_t h = p * s.stride_h - s.pad_h + r * s.dil_h;
                const int64_t ww = q * s.stride_w - s.pad_w + t * s.dil_w;
                if (h < 0 || h >= s.H || ww < 0 || ww >= s.W) continue;
                const int64_t xi = ((n * s.C + (k / Kg) * Cg + c) * s.H + h) * s.W + ww;
                const int64_t wi = ((k * Cg + c) * s.R + r) * s.S + t;
                const auto add = [](RefValue& v, double term) {
                  v.value += term;
                  v.magnitude += std::abs(term);
                };
                add(out.y[yi], x[xi] * w[wi]);
                add(out.dx[xi], dy[yi] * w[wi]);
                add(out.dw[wi], dy[yi] * x[xi]);
              }
        }
  return out;
}

template <typename T>
std::vector<double> to_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

}  // namespace selfsup::testing
