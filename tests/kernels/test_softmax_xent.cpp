// softmax / log_softmax along a middle dim and cross-entropy with label smoothing, against naive float64
// loops and finite differences; plus extreme logits that would overflow without the max subtraction.
#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>

#include "kernels/kernel_api.h"
#include "tests/kernels/nn_test_util.h"

using namespace selfsup::kernels;
using namespace selfsup::testing;

namespace {

// (outer, dim, inner): rows (inner 1), dim in the middle, inner wider than the kernel's 64-wide blocks.
const int64_t kShapes[][3] = {{1, 1, 1},  {3, 10, 1}, {2, 1000, 1}, {4, 7, 5},   {2, 3, 130},
                              {1, 5, 64}, {5, 2, 65}, {17, 33, 3},  {600, 40, 1}, {3, 50, 200}};

std::vector<double> softmax_ref(int64_t outer, int64_t dim, int64_t inner, const std::vector<double>& x, bool log) {
  std::vector<double> y(x.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t d) { return (o * dim + d) * inner + i; };
      double m = -INFINITY, s = 0;
      for (int64_t d = 0; d < dim; ++d) m = std::max(m, x[at(d)]);
      for (int64_t d = 0; d < dim; ++d) s += std::exp(x[at(d)] - m);
      for (int64_t d = 0; d < dim; ++d) y[at(d)] = log ? x[at(d)] - m - std::log(s) : std::exp(x[at(d)] - m) / s;
    }
  return y;
}

// Backward as the explicit Jacobian-vector product: dx_d = sum_e dy_e dy_e/dx_d.
std::vector<double> softmax_bwd_ref(int64_t outer, int64_t dim, int64_t inner, const std::vector<double>& x,
                                    const std::vector<double>& dy, bool log) {
  const auto p = softmax_ref(outer, dim, inner, x, false);
  std::vector<double> dx(x.size(), 0.0);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t d) { return (o * dim + d) * inner + i; };
      for (int64_t d = 0; d < dim; ++d)
        for (int64_t e = 0; e < dim; ++e) {
          const double kron = d == e ? 1.0 : 0.0;
          const double jac = log ? kron - p[at(d)] : p[at(e)] * (kron - p[at(d)]);  // d y_e / d x_d
          dx[at(d)] += dy[at(e)] * jac;
        }
    }
  return dx;
}

std::vector<double> xent_ref(int64_t N, int64_t C, const std::vector<double>& x, const std::vector<int64_t>& t,
                             double eps) {
  const auto logp = softmax_ref(N, C, 1, x, true);
  std::vector<double> loss(N, 0.0);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t c = 0; c < C; ++c) {
      const double q = (c == t[i] ? 1 - eps : 0.0) + eps / static_cast<double>(C);  // smoothed target
      loss[i] -= q * logp[i * C + c];
    }
  return loss;
}

template <typename T>
void check_softmax(const int64_t* sh, bool log, uint64_t seed, double tol) {
  const int64_t outer = sh[0], dim = sh[1], inner = sh[2];
  const auto x = random_float_exact(outer * dim * inner, seed, -4, 4);
  const auto dy = random_float_exact(x.size(), seed + 1);
  auto xt = cast_to<T>(x), dyt = cast_to<T>(dy);
  std::vector<T> y(x.size()), dx(x.size());
  softmax_fwd_cpu(outer, dim, inner, xt.data(), y.data(), log);
  check_close(y, softmax_ref(outer, dim, inner, x, log), tol, tol, log ? "log_softmax y" : "softmax y");
  softmax_bwd_cpu(outer, dim, inner, y.data(), dyt.data(), dx.data(), log);
  const double gtol = tol * std::sqrt(static_cast<double>(dim));
  check_close(dx, softmax_bwd_ref(outer, dim, inner, x, dy, log), gtol, gtol, log ? "log_softmax dx" : "softmax dx");
}

template <typename T>
void check_xent(int64_t N, int64_t C, double eps, uint64_t seed, double tol) {
  const auto x = random_float_exact(N * C, seed, -5, 5);
  const auto dloss = random_float_exact(N, seed + 1);
  std::vector<int64_t> t(N);
  for (int64_t i = 0; i < N; ++i) t[i] = static_cast<int64_t>((seed * 7 + i * 13) % C);
  auto xt = cast_to<T>(x), dlt = cast_to<T>(dloss);
  std::vector<T> loss(N), lse(N), dx(N * C);
  cross_entropy_fwd_cpu(N, C, xt.data(), t.data(), eps, loss.data(), lse.data());
  check_close(loss, xent_ref(N, C, x, t, eps), tol, tol, "xent loss");
  cross_entropy_bwd_cpu(N, C, xt.data(), t.data(), eps, lse.data(), dlt.data(), dx.data());
  const auto p = softmax_ref(N, C, 1, x, false);
  std::vector<double> dx_ref(N * C);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t c = 0; c < C; ++c)
      dx_ref[i * C + c] = dloss[i] * (p[i * C + c] - (c == t[i] ? 1 - eps : 0.0) - eps / static_cast<double>(C));
  check_close(dx, dx_ref, tol, tol, "xent dlogits");
}

}  // namespace

TEST_CASE("softmax and log_softmax match naive loops along any dim, forward and backward") {
  uint64_t seed = 1;
  for (const auto& sh : kShapes) {
    CAPTURE(sh[0]);
    CAPTURE(sh[1]);
    CAPTURE(sh[2]);
    for (bool log : {false, true}) {
      CAPTURE(log);
      check_softmax<double>(sh, log, seed, 1e-13);
      check_softmax<float>(sh, log, seed, 2e-6);
    }
    seed += 2;
  }
}

TEST_CASE("softmax backward equals a finite difference of sum(dy * softmax(x))") {
  const int64_t shapes[][3] = {{2, 5, 1}, {2, 4, 3}, {1, 3, 70}};
  uint64_t seed = 50;
  for (const auto& sh : shapes)
    for (bool log : {false, true}) {
      const int64_t n = sh[0] * sh[1] * sh[2];
      const auto x = random_vector(n, seed, -3, 3), dy = random_vector(n, seed + 1);
      const auto loss = [&](const std::vector<double>& v) {
        std::vector<double> y(n);
        softmax_fwd_cpu(sh[0], sh[1], sh[2], v.data(), y.data(), log);
        return dot(y, dy);
      };
      std::vector<double> y(n), dx(n);
      softmax_fwd_cpu(sh[0], sh[1], sh[2], x.data(), y.data(), log);
      softmax_bwd_cpu(sh[0], sh[1], sh[2], y.data(), dy.data(), dx.data(), log);
      check_close(dx, finite_difference(loss, x), 1e-8, 1e-7, "softmax fd");
      seed += 2;
    }
}

TEST_CASE("softmax and cross-entropy stay finite for huge logits (max subtraction)") {
  std::vector<float> x = {1000.f, 999.f, -1000.f, 80.f, 90.f, 100.f};
  std::vector<float> y(6);
  softmax_fwd_cpu<float>(2, 3, 1, x.data(), y.data(), false);
  CHECK(y[0] == doctest::Approx(1 / (1 + std::exp(-1.0))));
  CHECK(y[2] == 0.f);
  CHECK(y[5] == doctest::Approx(1 / (1 + std::exp(-10.0) + std::exp(-20.0))));
  softmax_fwd_cpu<float>(2, 3, 1, x.data(), y.data(), true);
  CHECK(y[2] == doctest::Approx(-2000 - std::log1p(std::exp(-1.0))));
  const int64_t t[2] = {2, 0};
  float loss[2], lse[2];
  cross_entropy_fwd_cpu<float>(2, 3, x.data(), t, 0.0, loss, lse);
  CHECK(loss[0] == doctest::Approx(2000 + std::log1p(std::exp(-1.0))));
  CHECK(std::isfinite(loss[1]));
  CHECK(lse[1] == doctest::Approx(100 + std::log1p(std::exp(-10.0) + std::exp(-20.0))));
}

TEST_CASE("cross_entropy with label smoothing 0 and 0.1 matches a naive float64 loop") {
  const int64_t shapes[][2] = {{1, 1}, {1, 10}, {7, 3}, {32, 10}, {5, 1000}, {300, 100}};
  uint64_t seed = 77;
  for (const auto& sh : shapes)
    for (double eps : {0.0, 0.1}) {
      CAPTURE(sh[0]);
      CAPTURE(sh[1]);
      CAPTURE(eps);
      check_xent<double>(sh[0], sh[1], eps, seed, 1e-13);
      check_xent<float>(sh[0], sh[1], eps, seed, 2e-5);
      seed += 2;
    }
}

TEST_CASE("cross_entropy backward equals a finite difference of sum(dloss * loss)") {
  const int64_t N = 4, C = 6;
  for (double eps : {0.0, 0.1}) {
    const auto x = random_vector(N * C, 5, -2, 2), dloss = random_vector(N, 6);
    const std::vector<int64_t> t = {0, 5, 2, 2};
    const auto f = [&](const std::vector<double>& v) {
      std::vector<double> loss(N), lse(N);
      cross_entropy_fwd_cpu<double>(N, C, v.data(), t.data(), eps, loss.data(), lse.data());
      return dot(loss, dloss);
    };
    std::vector<double> loss(N), lse(N), dx(N * C);
    cross_entropy_fwd_cpu<double>(N, C, x.data(), t.data(), eps, loss.data(), lse.data());
    cross_entropy_bwd_cpu<double>(N, C, x.data(), t.data(), eps, lse.data(), dloss.data(), dx.data());
    check_close(dx, finite_difference(f, x), 1e-8, 1e-7, "xent fd");
  }
}

TEST_CASE("cross_entropy rejects targets outside [0, C)") {
  std::vector<double> x(6), loss(2), lse(2);
  const int64_t bad[2] = {0, 3};
  CHECK_THROWS_AS(cross_entropy_fwd_cpu<double>(2, 3, x.data(), bad, 0.0, loss.data(), lse.data()),
                  std::runtime_error);
}
