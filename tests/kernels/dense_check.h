// Helpers shared by test_gemm.cpp and test_conv.cpp: seeded random fills and an error measure scaled by the
// magnitude of the summed terms, which bounds the rounding error of any summation order (so a correct kernel
// passes at ~1e-5 in float whatever its blocking, and a wrong index fails by orders of magnitude).
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace selfsup::testing {

template <typename T>
std::vector<T> random_vector(std::size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<T> v(n);
  for (auto& x : v) x = T(dist(rng));
  return v;
}

template <typename T>
std::vector<T> nan_vector(std::size_t n) {
  return std::vector<T>(n, std::numeric_limits<T>::quiet_NaN());
}

// A reference value with the sum of |terms| that produced it.
struct RefValue {
  double value = 0, magnitude = 0;
};

// max_i |got_i - ref_i| / (magnitude_i + 1e-30); NaN in got counts as infinite error.
template <typename T>
double max_scaled_error(const std::vector<T>& got, const std::vector<RefValue>& ref) {
  double worst = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double err = std::abs(double(got[i]) - ref[i].value) / (ref[i].magnitude + 1e-30);
    if (!(err <= worst)) worst = std::isnan(err) ? std::numeric_limits<double>::infinity() : err;
  }
  return worst;
}

template <typename T>
constexpr double tolerance() {
  return sizeof(T) == 4 ? 1e-4 : 1e-10;
}

}  // namespace selfsup::testing
