// Helpers shared by the emulated CUDA kernel tests (tests/cuda_emu): inputs, error measures, and the
// check that ends every test case (every launch was followed by SELFSUP_LAUNCH_CHECK()).
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <type_traits>
#include <vector>

#include "kernels/cuda/emu/emu.h"

namespace emu_test {

using selfsup::emu::DeviceArray;
using bf16 = __nv_bfloat16;

inline std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

// Storage type T (float or bf16) from doubles, and back.
template <typename T>
std::vector<T> as(const std::vector<double>& v) {
  std::vector<T> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if constexpr (std::is_same_v<T, bf16>) o[i] = __float2bfloat16_rn(static_cast<float>(v[i]));
    else o[i] = static_cast<T>(v[i]);
  }
  return o;
}
template <typename T>
std::vector<double> as_double(const std::vector<T>& v) {
  std::vector<double> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if constexpr (std::is_same_v<T, bf16>) o[i] = __bfloat162float(v[i]);
    else o[i] = static_cast<double>(v[i]);
  }
  return o;
}
// v rounded to T: the CPU reference runs in double on exactly the values the kernel reads.
template <typename T>
std::vector<double> rounded(const std::vector<double>& v) {
  return as_double(as<T>(v));
}
inline std::vector<double> randn_d(size_t n, uint32_t seed, double scale = 1.0) {
  const std::vector<float> f = randn(n, seed, static_cast<float>(scale));
  return std::vector<double>(f.begin(), f.end());
}

// Tolerances of a kernel output of type T against the double reference: float math, then one rounding.
template <typename T>
constexpr double kAtol = std::is_same_v<T, bf16> ? 1e-2 : 2e-5;
template <typename T>
constexpr double kRtol = std::is_same_v<T, bf16> ? 1e-2 : 2e-4;

// max |a - b| / (atol + rtol |b|): <= 1 passes; a NaN where the reference has none (an element never
// written: device buffers start as NaN) fails.
template <typename A, typename B>
double err_ratio(const std::vector<A>& a, const std::vector<B>& b, double atol, double rtol) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = static_cast<double>(a[i]), y = static_cast<double>(b[i]);
    if (x == y || (std::isnan(x) && std::isnan(y))) continue;  // equal infinities, NaN where NaN is due
    const double r = std::fabs(x - y) / (atol + rtol * std::fabs(y));
    if (!(r <= worst)) worst = r;  // NaN sticks
  }
  return worst;
}

// Ends a test case: the launchers it called all checked their launches.
inline void launches_checked() { CHECK_NOTHROW(selfsup::emu::expect_launches_checked()); }

}  // namespace emu_test
