// Forward values of ops against hand-computed results, and the errors bad input must raise.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/autograd/grad_mode.h"
#include "engine/ops/ops.h"
#include "tests/support/engine_gradcheck.h"

using namespace selfsup;
using namespace selfsup::testing;

namespace {
Tensor vec(std::vector<double> v, Shape s) { return Tensor::from_vector(v, s); }
}  // namespace

TEST_CASE("elementwise values with broadcasting and promotion") {
  Tensor a = vec({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = vec({10, 20, 30}, {3});
  CHECK(add(a, b).to_vector() == std::vector<double>{11, 22, 33, 14, 25, 36});
  CHECK(sub(a, vec({1, 2}, {2, 1})).to_vector() == std::vector<double>{0, 1, 2, 2, 3, 4});
  Tensor i = Tensor::from_vector(std::vector<int64_t>{1, 2, 3}, {3});
  Tensor m = mul(i, Tensor::full({3}, 0.5, DType::f32));
  CHECK(m.dtype() == DType::f32);
  CHECK(m.to_vector() == std::vector<double>{0.5, 1.0, 1.5});
  CHECK(add(i, i).dtype() == DType::i64);
  Tensor c = gt(a, 3.0);
  CHECK(c.dtype() == DType::b8);
  CHECK(c.to_vector() == std::vector<double>{0, 0, 0, 1, 1, 1});
  CHECK(where(c, a, Tensor::zeros({})).to_vector() == std::vector<double>{0, 0, 0, 4, 5, 6});
  CHECK(eq(i, Tensor::from_vector(std::vector<int64_t>{1, 0, 3}, {3})).to_vector() == std::vector<double>{1, 0, 1});
  CHECK(gelu(vec({0.0, 1.0}, {2})).to_vector()[1] == doctest::Approx(0.8413447460685429));
  CHECK(sigmoid(vec({0.0}, {1})).item() == 0.5);
  CHECK(clamp(vec({-2, 0.5, 9}, {3}), 0, 1).to_vector() == std::vector<double>{0, 0.5, 1});
}

TEST_CASE("reduction values") {
  Tensor a = vec({1, 5, 3, 4, 2, 6}, {2, 3});
  CHECK(sum(a).item() == 21);
  CHECK(sum(a, {0}).to_vector() == std::vector<double>{5, 7, 9});
  CHECK(sum(a, {1}, true).sizes() == Shape{2, 1});
  CHECK(mean(a, {1}).to_vector() == std::vector<double>{3, 4});
  CHECK(var(a, {1}).to_vector() == std::vector<double>{4, 4});
  auto [v, ix] = max(a, 1);
  CHECK(v.to_vector() == std::vector<double>{5, 6});
  CHECK(ix.to_vector() == std::vector<double>{1, 2});
  CHECK(argmax(a, 0).to_vector() == std::vector<double>{1, 0, 1});
  CHECK(min(a, 0).first.to_vector() == std::vector<double>{1, 2, 3});
  CHECK(amax(a).item() == 6);
  CHECK(logsumexp(vec({0, 0}, {2}), 0).item() == doctest::Approx(std::log(2.0)));
  CHECK(logsumexp(vec({1000, 1000}, {2}), 0).item() == doctest::Approx(1000 + std::log(2.0)));
  CHECK(sum(gt(a, 2.0)).item() == 4);  // counting bools gives int64
  CHECK(sum(gt(a, 2.0)).dtype() == DType::i64);
}

TEST_CASE("matmul, linear and indexing values") {
  Tensor a = vec({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = vec({1, 0, 0, 1, 1, 1}, {3, 2});
  CHECK(matmul(a, b).to_vector() == std::vector<double>{4, 5, 10, 11});
  CHECK(matmul(a.t().contiguous().t(), b).to_vector() == std::vector<double>{4, 5, 10, 11});
  CHECK(linear(a, b.t(), vec({100, 200}, {2})).to_vector() == std::vector<double>{104, 205, 110, 211});
  CHECK(cat({a, a}, 0).sizes() == Shape{4, 3});
  CHECK(stack({a, a}, 0).sizes() == Shape{2, 2, 3});
  auto parts = split(vec({0, 1, 2, 3, 4}, {5}), 2);
  CHECK(parts.size() == 3);
  CHECK(parts[2].to_vector() == std::vector<double>{4});
  CHECK(chunk(vec({0, 1, 2, 3, 4}, {5}), 2)[1].to_vector() == std::vector<double>{3, 4});
  Tensor idx = Tensor::from_vector(std::vector<int64_t>{2, 0}, {2});
  CHECK(index_select(a, 1, idx).to_vector() == std::vector<double>{3, 1, 6, 4});
  Tensor g = gather(a, 1, Tensor::from_vector(std::vector<int64_t>{2, 2, 0, 1}, {2, 2}));
  CHECK(g.to_vector() == std::vector<double>{3, 3, 4, 5});
  Tensor s = scatter_add(Tensor::zeros({3}, DType::f64), 0, Tensor::from_vector(std::vector<int64_t>{0, 2, 0}, {3}),
                         vec({1, 2, 3}, {3}));
  CHECK(s.to_vector() == std::vector<double>{4, 0, 2});
}

TEST_CASE("softmax, cross-entropy, normalize values") {
  Tensor x = vec({1, 2, 3}, {1, 3});
  double z = std::exp(1) + std::exp(2) + std::exp(3);
  CHECK(softmax(x, 1).to_vector()[2] == doctest::Approx(std::exp(3) / z));
  CHECK(log_softmax(x, 1).to_vector()[0] == doctest::Approx(1 - std::log(z)));
  Tensor t = Tensor::from_vector(std::vector<int64_t>{2}, {1});
  CHECK(cross_entropy(x, t).item() == doctest::Approx(std::log(z) - 3));
  // label smoothing eps: (1 - eps) * nll + eps * mean_c(-log p_c)
  double nll = std::log(z) - 3, smooth = std::log(z) - 2;
  CHECK(cross_entropy(x, t, 0.1).item() == doctest::Approx(0.9 * nll + 0.1 * smooth));
  CHECK(allclose(normalize(vec({3, 4}, {1, 2}), 1), vec({0.6, 0.8}, {1, 2}), 1e-15, 0).ok);
  CHECK(mse_loss(vec({1, 2}, {2}), vec({0, 0}, {2})).item() == 2.5);
}

TEST_CASE("batch norm updates running statistics with momentum and unbiased variance") {
  Tensor x = vec({1, 2, 3, 4, 5, 6, 7, 8}, {4, 2});  // channel 0: 1,3,5,7; channel 1: 2,4,6,8
  Tensor rm = Tensor::zeros({2}, DType::f64), rv = Tensor::ones({2}, DType::f64);
  Tensor y = batch_norm(x, rm, rv, Tensor(), Tensor(), true, 0.1, 0.0);
  CHECK(rm.to_vector()[0] == doctest::Approx(0.1 * 4));
  CHECK(rv.to_vector()[0] == doctest::Approx(0.9 + 0.1 * (20.0 / 3)));
  CHECK(y.to_vector()[0] == doctest::Approx(-3 / std::sqrt(5.0)));
  Tensor ye = batch_norm(x, rm, rv, Tensor(), Tensor(), false, 0.1, 0.0);
  CHECK(ye.to_vector()[0] == doctest::Approx((1 - 0.4) / std::sqrt(0.9 + 0.1 * 20.0 / 3)));
}

TEST_CASE("bad input raises selfsup::Error naming the op and shapes") {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4, 3});
  CHECK_THROWS_WITH_AS(add(a, b), doctest::Contains("add: shapes [2, 3] and [4, 3] cannot be broadcast"), Error);
  CHECK_THROWS_WITH_AS(matmul(a, b), doctest::Contains("matmul: shapes [2, 3] and [4, 3] cannot be multiplied"),
                       Error);
  CHECK_THROWS_WITH_AS(matmul(a, Tensor::zeros({3, 2}, DType::f64)), doctest::Contains("matmul: dtypes differ"), Error);
  CHECK_THROWS_WITH_AS(conv2d(Tensor::zeros({1, 3, 8, 8}), Tensor::zeros({4, 2, 3, 3})),
                       doctest::Contains("conv2d: input of shape [1, 3, 8, 8] has 3 channels"), Error);
  CHECK_THROWS_WITH_AS(conv2d(Tensor::zeros({1, 3, 2, 2}), Tensor::zeros({4, 3, 3, 3})),
                       doctest::Contains("smaller than the 3x3 kernel"), Error);
  CHECK_THROWS_WITH_AS(cross_entropy(a, Tensor::from_vector(std::vector<int64_t>{0, 3}, {2})),
                       doctest::Contains("cross_entropy: target 3 at position 1 out of range [0, 3)"), Error);
  CHECK_THROWS_WITH_AS(cross_entropy(a, Tensor::zeros({2})), doctest::Contains("target must be int64"), Error);
  CHECK_THROWS_WITH_AS(exp(Tensor::zeros({2}, DType::i64)), doctest::Contains("exp: input must be float32 or float64"),
                       Error);
  CHECK_THROWS_WITH_AS(index_select(a, 1, Tensor::from_vector(std::vector<int64_t>{5}, {1})),
                       doctest::Contains("index_select: index 5 out of range [0, 3)"), Error);
  CHECK_THROWS_WITH_AS(cat({a, Tensor::zeros({2, 3, 1})}), doctest::Contains("cat: tensor 1 has shape [2, 3, 1]"), Error);
  CHECK_THROWS_WITH_AS(sum(a, {2}), doctest::Contains("sum: dim 2 out of range"), Error);
  CHECK_THROWS_WITH_AS(batch_norm(a, Tensor(), Tensor(), Tensor::zeros({5}), Tensor(), true),
                       doctest::Contains("batch_norm: weight of shape [5]"), Error);
  CHECK_THROWS_WITH_AS(max_pool2d(Tensor::zeros({1, 1, 2, 2}), Pool2dOptions{{3, 3}}),
                       doctest::Contains("max_pool2d: input of shape [1, 1, 2, 2] is smaller than the 3x3 window"),
                       Error);
}
