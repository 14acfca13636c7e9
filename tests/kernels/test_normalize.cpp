// L2 normalisation along any dim against naive float64 loops and finite differences, including vectors
// whose norm is below eps (the divisor is then the constant eps, as F.normalize's clamp_min).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "kernels/kernel_api.h"
#include "tests/kernels/nn_test_util.h"

using namespace selfsup::kernels;
using namespace selfsup::testing;

namespace {

constexpr double kEps = 1e-12;

struct NormRef {
  std::vector<double> y, norm, dx;
};

NormRef normalize_ref(int64_t outer, int64_t dim, int64_t inner, const std::vector<double>& x,
                      const std::vector<double>& dy, double eps) {
  NormRef r{std::vector<double>(x.size()), std::vector<double>(outer * inner), std::vector<double>(x.size())};
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t d) { return (o * dim + d) * inner + i; };
      double sq = 0;
      for (int64_t d = 0; d < dim; ++d) sq += x[at(d)] * x[at(d)];
      const double n = std::sqrt(sq), den = std::max(n, eps);
      r.norm[o * inner + i] = n;
      for (int64_t d = 0; d < dim; ++d) r.y[at(d)] = x[at(d)] / den;
      // Jacobian of x / ||x||: (I - x x^T / ||x||^2) / ||x||; of x / eps: I / eps.
      for (int64_t d = 0; d < dim; ++d) {
        double v = dy[at(d)] / den;
        if (n > eps)
          for (int64_t e = 0; e < dim; ++e) v -= dy[at(e)] * x[at(e)] * x[at(d)] / (n * n * n);
        r.dx[at(d)] = v;
      }
    }
  return r;
}

template <typename T>
void check_normalize(int64_t outer, int64_t dim, int64_t inner, double eps, double scale, uint64_t seed, double tol) {
  auto x = random_float_exact(outer * dim * inner, seed);
  for (auto& v : x) v = static_cast<double>(static_cast<float>(v * scale));
  const auto dy = random_float_exact(x.size(), seed + 1);
  const NormRef ref = normalize_ref(outer, dim, inner, x, dy, eps);
  auto xt = cast_to<T>(x), dyt = cast_to<T>(dy);
  std::vector<T> y(x.size()), norm(outer * inner), dx(x.size());
  l2_normalize_fwd_cpu(outer, dim, inner, xt.data(), eps, y.data(), norm.data());
  check_close(y, ref.y, tol, tol, "l2 y");
  check_close(norm, ref.norm, tol * scale, tol, "l2 norm");
  l2_normalize_bwd_cpu(outer, dim, inner, y.data(), norm.data(), eps, dyt.data(), dx.data());
  // dx scales like |dy| / max(norm, eps): the smallest norm sets the absolute tolerance.
  const double min_norm = *std::min_element(ref.norm.begin(), ref.norm.end());
  const double dtol = tol * std::sqrt(static_cast<double>(dim)) / std::max(min_norm, eps);
  check_close(dx, ref.dx, dtol, tol * std::sqrt(static_cast<double>(dim)), "l2 dx");
}

}  // namespace

TEST_CASE("l2_normalize matches a naive float64 loop along any dim") {
  const int64_t shapes[][3] = {{1, 1, 1}, {4, 128, 1}, {3, 7, 1}, {2, 5, 3},   {2, 9, 64},
                               {3, 4, 65}, {1, 3, 130}, {256, 33, 1}, {5, 1, 7}, {40, 20, 30}};
  uint64_t seed = 3;
  for (const auto& sh : shapes) {
    CAPTURE(sh[0]);
    CAPTURE(sh[1]);
    CAPTURE(sh[2]);
    check_normalize<double>(sh[0], sh[1], sh[2], kEps, 1.0, seed, 1e-13);
    check_normalize<float>(sh[0], sh[1], sh[2], kEps, 1.0, seed, 2e-6);
    seed += 2;
  }
}

TEST_CASE("l2_normalize below eps divides by eps, forward and backward") {
  // eps = 1e-2 and inputs of size ~1e-3: every norm is below eps.
  for (const auto& sh : {std::array<int64_t, 3>{3, 4, 1}, std::array<int64_t, 3>{2, 3, 5}}) {
    check_normalize<double>(sh[0], sh[1], sh[2], 1e-2, 1e-3, 11, 1e-13);
    check_normalize<float>(sh[0], sh[1], sh[2], 1e-2, 1e-3, 11, 2e-6);
  }
  // An all-zero vector gives zeros and a finite gradient dy / eps.
  std::vector<double> x(4, 0.0), y(4), norm(1), dy = {1, 2, 3, 4}, dx(4);
  l2_normalize_fwd_cpu<double>(1, 4, 1, x.data(), kEps, y.data(), norm.data());
  l2_normalize_bwd_cpu<double>(1, 4, 1, y.data(), norm.data(), kEps, dy.data(), dx.data());
  CHECK(norm[0] == 0.0);
  for (int i = 0; i < 4; ++i) {
    CHECK(y[i] == 0.0);
    CHECK(dx[i] == doctest::Approx(dy[i] / kEps));
  }
}

TEST_CASE("l2_normalize backward equals a finite difference of sum(dy * y)") {
  const int64_t shapes[][3] = {{2, 5, 1}, {2, 3, 4}, {1, 4, 66}};
  uint64_t seed = 31;
  for (const auto& sh : shapes) {
    const int64_t n = sh[0] * sh[1] * sh[2];
    const auto x = random_vector(n, seed), dy = random_vector(n, seed + 1);
    const auto loss = [&](const std::vector<double>& v) {
      std::vector<double> y(n), norm(sh[0] * sh[2]);
      l2_normalize_fwd_cpu<double>(sh[0], sh[1], sh[2], v.data(), kEps, y.data(), norm.data());
      return dot(y, dy);
    };
    std::vector<double> y(n), norm(sh[0] * sh[2]), dx(n);
    l2_normalize_fwd_cpu<double>(sh[0], sh[1], sh[2], x.data(), kEps, y.data(), norm.data());
    l2_normalize_bwd_cpu<double>(sh[0], sh[1], sh[2], y.data(), norm.data(), kEps, dy.data(), dx.data());
    check_close(dx, finite_difference(loss, x), 1e-7, 1e-6, "l2 fd");
    seed += 2;
  }
}
