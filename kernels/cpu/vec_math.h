// Elementary functions written so that the compiler can vectorise the loops that call them.
//
// glibc's expf is a scalar call: in a loop over a (128, 512) logit tile it cannot become one vector
// instruction sequence, and the exponentials then cost as much as the GEMM that made the tile
// (docs/infonce.md). vec_expf is the classic Cody-Waite reduction plus a degree-5 polynomial (Cephes
// expf's coefficients): branch-free, only +, *, floor, compares and selects and an integer shift, which GCC turns into
// AVX code in a `#pragma omp simd` loop under -march=native -fno-trapping-math -fno-math-errno (without those
// GCC keeps the compares as branches; CMakeLists.txt sets them for the files that use it).
//   exp(x) = 2^n exp(r),  n = floor(x log2(e) + 1/2),  r = x - n ln2 in [-ln2/2, ln2/2]
// ln2 is split in two (C1 exact in few bits, C2 the rest) so that r carries no rounding error from n ln2.
// Accuracy: within 2 ulp of the correctly rounded exp on [-87.3, 88.7] (tests/kernels/test_vec_math.cpp
// measures 1.01 ulp over every 7th float of [-87, 88.7]. Below -87.33, where the result
// would be subnormal, it returns 0 exactly (so exp(-inf) = 0, as the masked logits need); above 88.72, +inf;
// NaN gives NaN.
#pragma once
#include <cmath>
#include <cstdint>
#include <bit>
#include <limits>

namespace selfsup::kernels {

inline float vec_expf(float x) {
  constexpr float kLo = -87.33654475f, kHi = 88.72283905f;  // ln(FLT_MIN), ln(FLT_MAX)
  constexpr float kLog2e = 1.44269504088896341f, kC1 = 0.693359375f, kC2 = -2.12194440e-4f;
  // Plain compares and selects only: std::fmin/fmax are libm calls (their NaN rules), and branches or
  // min() on integers leave control flow that GCC's vectoriser refuses.
  float xc = x < kLo ? kLo : x;
  xc = xc > kHi ? kHi : xc;
  const float n = std::floor(xc * kLog2e + 0.5f);  // in [-126, 128]
  const float r = (xc - n * kC1) - n * kC2;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * (r * r) + r + 1.0f;
  // 2^n in the exponent bits, as 2^(n - h) 2^h with h = 1 when n = 128 (x just below ln FLT_MAX): 2^128
  // itself has no float encoding.
  const float h = n > 127.0f ? 1.0f : 0.0f;
  const float scale = std::bit_cast<float>((static_cast<int32_t>(n - h) + 127) << 23);
  float y = er * scale * (1.0f + h);
  y = x < kLo ? 0.0f : y;
  y = x > kHi ? std::numeric_limits<float>::infinity() : y;
  return x != x ? x : y;  // NaN stays NaN (a diverged run must show it)
}

// The tile loops' exponential for either precision: the vectorisable one for float, libm's for double (the
// reference precision of the gradient checks keeps the correctly rounded function).
inline float tile_exp(float x) { return vec_expf(x); }
inline double tile_exp(double x) { return std::exp(x); }

}  // namespace selfsup::kernels
