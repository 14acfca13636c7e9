// BatchNorm with per-group statistics (nn::BatchNorm::set_sample_groups, MoCo's one-pass shuffling BN):
// values and running statistics against a float64 loop, gradients by central differences.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "engine/autograd/grad_mode.h"
#include "engine/core/check.h"
#include "engine/nn/layers.h"
#include "engine/ops/ops.h"
#include "tests/support/engine_gradcheck.h"

using namespace selfsup;
using namespace selfsup::testing;

namespace {

constexpr int64_t N = 8, C = 3, H = 2, W = 3, G = 4;

Tensor randn64(const Shape& s, uint64_t seed) {
  Generator g(seed, 3);
  return Tensor::randn(s, DType::f64, &g);
}

// Per group g (samples i with i mod G == g) and channel c: mean, biased and unbiased variance.
struct GroupStats {
  std::vector<double> mean, var, unbiased;  // (G, C)
};
GroupStats group_stats(const std::vector<double>& x) {
  GroupStats s{std::vector<double>(G * C), std::vector<double>(G * C), std::vector<double>(G * C)};
  const double n = static_cast<double>(N / G * H * W);
  for (int64_t g = 0; g < G; ++g)
    for (int64_t c = 0; c < C; ++c) {
      double sum = 0, sq = 0;
      for (int64_t i = g; i < N; i += G)
        for (int64_t p = 0; p < H * W; ++p) sum += x[(i * C + c) * H * W + p];
      const double m = sum / n;
      for (int64_t i = g; i < N; i += G)
        for (int64_t p = 0; p < H * W; ++p) sq += std::pow(x[(i * C + c) * H * W + p] - m, 2);
      s.mean[g * C + c] = m;
      s.var[g * C + c] = sq / n;
      s.unbiased[g * C + c] = sq / (n - 1);
    }
  return s;
}

}  // namespace

TEST_CASE("BatchNorm2d with sample groups: each group's own statistics, running stats by their mean") {
  nn::BatchNorm2d bn(C);
  bn.to(DType::f64);
  bn.weight = randn64({C}, 1);
  bn.bias = randn64({C}, 2);
  bn.set_sample_groups(G);
  const Tensor x = randn64({N, C, H, W}, 3);
  Tensor y;
  {
    NoGradGuard ng;
    y = bn.forward(x);
  }
  const std::vector<double> xv = x.to_vector(), yv = y.to_vector(), w = bn.weight.to_vector(), b = bn.bias.to_vector();
  const GroupStats s = group_stats(xv);
  double worst = 0;
  for (int64_t i = 0; i < N; ++i)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t p = 0; p < H * W; ++p) {
        const int64_t e = (i * C + c) * H * W + p, gc = (i % G) * C + c;
        const double want = (xv[e] - s.mean[gc]) / std::sqrt(s.var[gc] + 1e-5) * w[c] + b[c];
        worst = std::max(worst, std::abs(yv[e] - want));
      }
  CHECK(worst <= 1e-12);  // float64 rounding of O(3) values; a group cut by i / (N / G) instead is off by O(1)
  // momentum 0.1 from (0, 1): 0.1 x the mean over groups of each group's mean and unbiased variance.
  const std::vector<double> rm = bn.running_mean.to_vector(), rv = bn.running_var.to_vector();
  for (int64_t c = 0; c < C; ++c) {
    double m = 0, v = 0;
    for (int64_t g = 0; g < G; ++g) {
      m += s.mean[g * C + c] / G;
      v += s.unbiased[g * C + c] / G;
    }
    CHECK(rm[c] == doctest::Approx(0.1 * m).epsilon(1e-12));
    CHECK(rv[c] == doctest::Approx(0.9 + 0.1 * v).epsilon(1e-12));
  }
  CHECK(bn.num_batches_tracked.item() == 1);
  // Eval mode normalises with the running statistics: the groups play no part.
  bn.eval();
  Tensor ye = bn.forward(x);
  bn.set_sample_groups(1);
  CHECK(allclose(ye, bn.forward(x), 0, 0).ok);
}

TEST_CASE("BatchNorm2d with sample groups: float64 gradients of input, weight and bias") {
  nn::BatchNorm2d bn(C);
  bn.to(DType::f64);
  bn.set_sample_groups(G);
  Tensor x = randn64({N, C, H, W}, 4), w = randn64({C}, 5), b = randn64({C}, 6);
  for (Tensor* t : {&x, &w, &b}) t->set_requires_grad(true);
  const std::string err = gradcheck(
      [&](const std::vector<Tensor>& in) {
        bn.weight = in[1];
        bn.bias = in[2];
        return bn.forward(in[0]);
      },
      {x, w, b});
  CHECK_MESSAGE(err.empty(), err);
}

TEST_CASE("BatchNorm2d sample groups reject a batch they do not divide") {
  nn::BatchNorm2d bn(C);
  bn.set_sample_groups(3);
  Generator g(1, 1);
  CHECK_THROWS_WITH_AS(bn.forward(Tensor::randn({8, C, H, W}, DType::f32, &g)),
                       doctest::Contains("a batch of 8 does not split into 3 sample groups"), Error);
  CHECK_THROWS_WITH_AS(bn.set_sample_groups(0), doctest::Contains("sample groups must be >= 1"), Error);
}
