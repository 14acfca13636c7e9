// Helpers shared by the emulated CUDA kernel tests (tests/cuda_emu): inputs, error measures, and the
// check that ends every test case (every launch was followed by SELFSUP_LAUNCH_CHECK()).
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <random>
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

inline std::vector<bf16> to_bf16(const std::vector<float>& v) {
  std::vector<bf16> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = __float2bfloat16_rn(v[i]);
  return o;
}
inline std::vector<float> to_float(const std::vector<bf16>& v) {
  std::vector<float> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = __bfloat162float(v[i]);
  return o;
}
inline std::vector<float> to_float(const std::vector<float>& v) { return v; }

// max |a - b| / (atol + rtol |b|): <= 1 passes; a NaN anywhere (an element never written) fails.
template <typename A, typename B>
double err_ratio(const std::vector<A>& a, const std::vector<B>& b, double atol, double rtol) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = static_cast<double>(a[i]), y = static_cast<double>(b[i]);
    const double r = std::fabs(x - y) / (atol + rtol * std::fabs(y));
    if (!(r <= worst)) worst = r;  // NaN sticks
  }
  return worst;
}

// Ends a test case: the launchers it called all checked their launches.
inline void launches_checked() { CHECK_NOTHROW(selfsup::emu::expect_launches_checked()); }

}  // namespace emu_test
