// Small helpers shared by the CPU nn kernel tests (pool, norm, softmax/cross-entropy, normalize): seeded
// random data, float/double casts, a closeness check that reports the worst element, and a central finite
// difference in double, and lookup of a tensor in a PyTorch fixture.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "tests/support/fixture.h"

namespace selfsup::testing {

inline std::vector<double> random_vector(size_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(n);
  for (auto& e : v) e = dist(rng);
  return v;
}

// Values rounded to float first, so float and double kernels see the same inputs.
inline std::vector<double> random_float_exact(size_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::vector<double> v = random_vector(n, seed, lo, hi);
  for (auto& e : v) e = static_cast<double>(static_cast<float>(e));
  return v;
}

template <typename T>
std::vector<T> cast_to(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

// Checks |got - want| <= atol + rtol |want| everywhere; on failure reports the worst element and its index.
template <typename T>
void check_close(const std::vector<T>& got, const std::vector<double>& want, double atol, double rtol,
                 const std::string& what) {
  REQUIRE_MESSAGE(got.size() == want.size(), what << ": size " << got.size() << " != " << want.size());
  // The element furthest beyond its tolerance (NaN counts as infinitely far).
  double worst_excess = -INFINITY;
  size_t worst_i = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = static_cast<double>(got[i]);
    const double err = g == want[i] ? 0.0 : std::abs(g - want[i]);  // equal infinities are no error
    const double excess = std::isnan(err) ? INFINITY : err - (atol + rtol * std::abs(want[i]));
    if (excess > worst_excess) {
      worst_excess = excess;
      worst_i = i;
    }
  }
  if (got.empty()) return;
  CHECK_MESSAGE(worst_excess <= 0, what << ": index " << worst_i << " got " << static_cast<double>(got[worst_i])
                                        << ", want " << want[worst_i] << " (atol " << atol << ", rtol " << rtol
                                        << ")");
}

// Central finite difference of a scalar function: grad_i = (f(x + h e_i) - f(x - h e_i)) / 2h.
inline std::vector<double> finite_difference(const std::function<double(const std::vector<double>&)>& f,
                                             std::vector<double> x, double h = 1e-6) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double xi = x[i];
    x[i] = xi + h;
    const double fp = f(x);
    x[i] = xi - h;
    const double fm = f(x);
    x[i] = xi;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// The tensor called name in a loaded fixture; a missing name fails the test with the name.
inline const FixtureTensor& fixture_tensor(const std::map<std::string, FixtureTensor>& fx, const std::string& name) {
  const auto it = fx.find(name);
  REQUIRE_MESSAGE(it != fx.end(), "fixture tensor '" << name << "' is missing");
  return it->second;
}

}  // namespace selfsup::testing
