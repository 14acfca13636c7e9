// Batch norm kernels against a naive two-pass float64 implementation, finite differences of the training
// forward, the running-statistics update, the eval path, and independence from the thread count.
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <stdexcept>

#include "kernels/kernel_api.h"
#include "tests/kernels/nn_test_util.h"

using namespace selfsup::kernels;
using namespace selfsup::testing;

namespace {

constexpr double kEps = 1e-5;
constexpr double kMomentum = 0.1;

struct BnShape {
  int64_t N, C, S;
};

// Covers S = 1 (BatchNorm1d), N = 1, odd sizes, both kernel paths (short rows S < 16, long rows), and
// short rows spread over several blocks (N*C*S above 16384).
const BnShape kShapes[] = {{4, 3, 1},  {64, 6, 1}, {1, 3, 5},  {2, 5, 7},   {5, 7, 3},  {3, 2, 17},
                           {8, 4, 16}, {2, 3, 33}, {1, 2, 40}, {3, 2, 100}, {9000, 3, 1}, {700, 2, 15}};

struct BnRef {
  std::vector<double> y, mean, invstd, rmean, rvar;
};

BnRef bn_ref(const BnShape& s, const std::vector<double>& x, const std::vector<double>& g, const std::vector<double>& b,
             const std::vector<double>& rm, const std::vector<double>& rv) {
  BnRef r{std::vector<double>(x.size()), {}, {}, rm, rv};
  const double n = static_cast<double>(s.N * s.S);
  for (int64_t c = 0; c < s.C; ++c) {
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < s.N; ++i)
      for (int64_t k = 0; k < s.S; ++k) sum += x[(i * s.C + c) * s.S + k];
    const double mean = sum / n;
    for (int64_t i = 0; i < s.N; ++i)
      for (int64_t k = 0; k < s.S; ++k) sq += std::pow(x[(i * s.C + c) * s.S + k] - mean, 2);
    const double var = sq / n, invstd = 1 / std::sqrt(var + kEps);
    r.mean.push_back(mean);
    r.invstd.push_back(invstd);
    r.rmean[c] = (1 - kMomentum) * rm[c] + kMomentum * mean;
    r.rvar[c] = (1 - kMomentum) * rv[c] + kMomentum * sq / (n - 1);
    for (int64_t i = 0; i < s.N; ++i)
      for (int64_t k = 0; k < s.S; ++k) {
        const int64_t j = (i * s.C + c) * s.S + k;
        r.y[j] = (x[j] - mean) * invstd * g[c] + b[c];
      }
  }
  return r;
}

// dx, dgamma, dbeta of sum(dy * y) written term by term from the chain rule through mean and variance.
void bn_bwd_ref(const BnShape& s, const std::vector<double>& x, const std::vector<double>& dy,
                const std::vector<double>& g, const BnRef& f, std::vector<double>& dx, std::vector<double>& dg,
                std::vector<double>& db) {
  const double n = static_cast<double>(s.N * s.S);
  dx.assign(x.size(), 0.0);
  dg.assign(s.C, 0.0);
  db.assign(s.C, 0.0);
  for (int64_t c = 0; c < s.C; ++c) {
    double dvar = 0, dmean = 0;
    const double m = f.mean[c], is = f.invstd[c];
    for (int64_t i = 0; i < s.N; ++i)
      for (int64_t k = 0; k < s.S; ++k) {
        const int64_t j = (i * s.C + c) * s.S + k;
        db[c] += dy[j];
        dg[c] += dy[j] * (x[j] - m) * is;
        dvar += dy[j] * g[c] * (x[j] - m) * -0.5 * is * is * is;
        dmean += -dy[j] * g[c] * is;
      }
    for (int64_t i = 0; i < s.N; ++i)
      for (int64_t k = 0; k < s.S; ++k) {
        const int64_t j = (i * s.C + c) * s.S + k;
        dx[j] = dy[j] * g[c] * is + dvar * 2 * (x[j] - m) / n + dmean / n;
      }
  }
}

template <typename T>
void check_bn_case(const BnShape& s, uint64_t seed, double offset, double tol) {
  const size_t numel = s.N * s.C * s.S;
  auto x = random_float_exact(numel, seed, -2, 2);
  for (auto& v : x) v = static_cast<double>(static_cast<float>(v + offset));
  const auto dy = random_float_exact(numel, seed + 1);
  const auto g = random_float_exact(s.C, seed + 2, 0.5, 1.5), b = random_float_exact(s.C, seed + 3);
  const auto rm = random_float_exact(s.C, seed + 4), rv = random_float_exact(s.C, seed + 5, 0.5, 2);
  const BnRef ref = bn_ref(s, x, g, b, rm, rv);

  auto xt = cast_to<T>(x), dyt = cast_to<T>(dy), gt = cast_to<T>(g), bt = cast_to<T>(b);
  auto rmt = cast_to<T>(rm), rvt = cast_to<T>(rv);
  std::vector<T> y(numel), mean(s.C), invstd(s.C);
  batch_norm_fwd_train_cpu(s.N, s.C, s.S, xt.data(), gt.data(), bt.data(), kEps, kMomentum, y.data(), mean.data(),
                           invstd.data(), rmt.data(), rvt.data());
  check_close(y, ref.y, tol, tol, "bn y");
  check_close(mean, ref.mean, tol, tol, "bn save_mean");
  check_close(invstd, ref.invstd, tol, tol, "bn save_invstd");
  check_close(rmt, ref.rmean, tol, tol, "bn running_mean");
  check_close(rvt, ref.rvar, tol, tol, "bn running_var");

  std::vector<double> dx_ref, dg_ref, db_ref;
  bn_bwd_ref(s, x, dy, g, ref, dx_ref, dg_ref, db_ref);
  std::vector<T> dx(numel), dg(s.C), db(s.C);
  batch_norm_bwd_cpu(s.N, s.C, s.S, dyt.data(), xt.data(), gt.data(), mean.data(), invstd.data(), dx.data(),
                     dg.data(), db.data());
  const double gtol = tol * std::sqrt(static_cast<double>(s.N * s.S));  // sums of n terms
  check_close(dx, dx_ref, gtol, gtol, "bn dx");
  check_close(dg, dg_ref, gtol, gtol, "bn dgamma");
  check_close(db, db_ref, gtol, gtol, "bn dbeta");

  // Eval mode normalises with the running statistics.
  std::vector<T> ye(numel);
  auto rm0 = cast_to<T>(rm), rv0 = cast_to<T>(rv);
  batch_norm_fwd_eval_cpu(s.N, s.C, s.S, xt.data(), gt.data(), bt.data(), rm0.data(), rv0.data(), kEps, ye.data());
  std::vector<double> ye_ref(numel);
  for (size_t j = 0; j < numel; ++j) {
    const int64_t c = static_cast<int64_t>(j / s.S) % s.C;
    ye_ref[j] = (x[j] - rm[c]) / std::sqrt(rv[c] + kEps) * g[c] + b[c];
  }
  check_close(ye, ye_ref, tol * (1 + offset), tol, "bn eval y");
}

}  // namespace

TEST_CASE("batch_norm forward/backward/running stats match a naive float64 implementation") {
  uint64_t seed = 10;
  for (const auto& s : kShapes) {
    CAPTURE(s.N);
    CAPTURE(s.C);
    CAPTURE(s.S);
    check_bn_case<double>(s, seed, 0.0, 1e-12);
    check_bn_case<float>(s, seed, 0.0, 2e-5);
    seed += 6;
  }
}

TEST_CASE("batch_norm keeps precision with a large mean (float input offset by 1000)") {
  uint64_t seed = 200;
  for (const auto& s : kShapes) {
    CAPTURE(s.N);
    CAPTURE(s.S);
    check_bn_case<double>(s, seed, 1000.0, 1e-10);
    check_bn_case<float>(s, seed, 1000.0, 2e-4);
    seed += 6;
  }
}

TEST_CASE("batch_norm without affine parameters or running statistics") {
  const BnShape s{3, 4, 5};
  const auto x = random_vector(60, 7);
  const auto dy = random_vector(60, 8);
  const std::vector<double> ones(4, 1.0), zeros(4, 0.0);
  const BnRef ref = bn_ref(s, x, ones, zeros, zeros, ones);
  std::vector<double> y(60), mean(4), invstd(4), dx(60);
  batch_norm_fwd_train_cpu<double>(3, 4, 5, x.data(), nullptr, nullptr, kEps, kMomentum, y.data(), mean.data(),
                                   invstd.data(), nullptr, nullptr);
  check_close(y, ref.y, 1e-12, 1e-12, "bn y (no affine)");
  std::vector<double> dx_ref, dg_ref, db_ref;
  bn_bwd_ref(s, x, dy, ones, ref, dx_ref, dg_ref, db_ref);
  batch_norm_bwd_cpu<double>(3, 4, 5, dy.data(), x.data(), nullptr, mean.data(), invstd.data(), dx.data(), nullptr,
                             nullptr);
  check_close(dx, dx_ref, 1e-12, 1e-12, "bn dx (no affine)");
  std::vector<double> ye(60);
  batch_norm_fwd_eval_cpu<double>(3, 4, 5, x.data(), nullptr, nullptr, zeros.data(), ones.data(), kEps, ye.data());
  for (size_t j = 0; j < 60; ++j) CHECK(ye[j] == doctest::Approx(x[j] / std::sqrt(1 + kEps)).epsilon(1e-14));
}

TEST_CASE("batch_norm backward equals a finite difference of sum(dy * y)") {
  const BnShape shapes[] = {{2, 3, 4}, {5, 2, 1}, {1, 2, 18}};
  uint64_t seed = 400;
  for (const auto& s : shapes) {
    const size_t numel = s.N * s.C * s.S;
    const auto x = random_vector(numel, seed), dy = random_vector(numel, seed + 1);
    const auto g = random_vector(s.C, seed + 2, 0.5, 1.5), b = random_vector(s.C, seed + 3);
    std::vector<double> y(numel), mean(s.C), invstd(s.C), dx(numel), dg(s.C), db(s.C);
    // loss(x, gamma, beta) = sum(dy * bn(x)), all parameters in one vector for the finite difference.
    std::vector<double> params = x;
    params.insert(params.end(), g.begin(), g.end());
    params.insert(params.end(), b.begin(), b.end());
    const auto loss = [&](const std::vector<double>& p) {
      std::vector<double> yy(numel), m(s.C), is(s.C);
      batch_norm_fwd_train_cpu<double>(s.N, s.C, s.S, p.data(), p.data() + numel, p.data() + numel + s.C, kEps,
                                       kMomentum, yy.data(), m.data(), is.data(), nullptr, nullptr);
      return dot(yy, dy);
    };
    batch_norm_fwd_train_cpu<double>(s.N, s.C, s.S, x.data(), g.data(), b.data(), kEps, kMomentum, y.data(),
                                     mean.data(), invstd.data(), nullptr, nullptr);
    batch_norm_bwd_cpu<double>(s.N, s.C, s.S, dy.data(), x.data(), g.data(), mean.data(), invstd.data(), dx.data(),
                               dg.data(), db.data());
    std::vector<double> analytic = dx;
    analytic.insert(analytic.end(), dg.begin(), dg.end());
    analytic.insert(analytic.end(), db.begin(), db.end());
    check_close(analytic, finite_difference(loss, params), 1e-6, 1e-6, "bn fd");
    seed += 4;
  }
}

TEST_CASE("batch_norm results do not depend on the thread count") {
  const int saved = omp_get_max_threads();
  for (const BnShape& s : {BnShape{9000, 3, 1}, BnShape{16, 8, 300}}) {
    const size_t numel = s.N * s.C * s.S;
    const auto x = cast_to<float>(random_vector(numel, 3)), dy = cast_to<float>(random_vector(numel, 4));
    std::vector<float> results[2];
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      std::vector<float> y(numel), mean(s.C), invstd(s.C), dx(numel), dg(s.C), db(s.C);
      batch_norm_fwd_train_cpu<float>(s.N, s.C, s.S, x.data(), nullptr, nullptr, kEps, kMomentum, y.data(),
                                      mean.data(), invstd.data(), nullptr, nullptr);
      batch_norm_bwd_cpu<float>(s.N, s.C, s.S, dy.data(), x.data(), nullptr, mean.data(), invstd.data(), dx.data(),
                                dg.data(), db.data());
      auto& r = results[threads - 1];
      r = y;
      r.insert(r.end(), dx.begin(), dx.end());
      r.insert(r.end(), dg.begin(), dg.end());
    }
    CHECK(results[0] == results[1]);
  }
  omp_set_num_threads(saved);
}

TEST_CASE("batch_norm training refuses a single value per channel") {
  std::vector<double> x(3), y(3), m(3), is(3);
  CHECK_THROWS_AS(batch_norm_fwd_train_cpu<double>(1, 3, 1, x.data(), nullptr, nullptr, kEps, kMomentum, y.data(),
                                                   m.data(), is.data(), nullptr, nullptr),
                  std::runtime_error);
}
