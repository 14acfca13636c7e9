// Autograd engine: gradients, accumulation, retain_graph, no-grad, detach, version checks, hooks, depth.
#include <doctest/doctest.h>

#include "engine/autograd/grad_mode.h"
#include "engine/autograd/node.h"
#include "engine/ops/ops.h"

using namespace selfsup;

namespace {
Tensor leaf(std::vector<double> v, Shape s) {
  Tensor t = Tensor::from_vector(v, s);
  t.set_requires_grad(true);
  return t;
}
}  // namespace

TEST_CASE("gradients of a small expression match the hand derivation") {
  Tensor x = leaf({1.0, 2.0, 3.0}, {3});
  Tensor w = leaf({0.5, -1.0, 2.0}, {3});
  // L = sum(x * w + x^2) -> dL/dx = w + 2x, dL/dw = x
  Tensor L = sum(add(mul(x, w), square(x)));
  CHECK(L.item() == doctest::Approx(0.5 - 2 + 6 + 1 + 4 + 9));
  L.backward();
  CHECK(x.grad().to_vector() == std::vector<double>{2.5, 3.0, 8.0});
  CHECK(w.grad().to_vector() == std::vector<double>{1.0, 2.0, 3.0});
  CHECK(x.is_leaf());
  CHECK(!L.is_leaf());
  CHECK(L.grad_fn()->name() == "sum");
}

TEST_CASE("a tensor used twice receives the sum of both paths") {
  Tensor x = leaf({2.0}, {1});
  Tensor y = mul(x, x);  // dy/dx = 2x = 4
  Tensor z = add(y, x);  // + 1
  sum(z).backward();
  CHECK(x.grad().item() == 5.0);
}

TEST_CASE("gradients accumulate across backward calls; retain_graph allows a second pass") {
  Tensor x = leaf({1.0, 2.0}, {2});
  Tensor L = sum(mul(x, 3.0));
  L.backward(Tensor(), /*retain_graph=*/true);
  L.backward();
  CHECK(x.grad().to_vector() == std::vector<double>{6.0, 6.0});
  Tensor M = sum(mul(x, x));
  M.backward();
  CHECK_THROWS_WITH_AS(M.backward(), doctest::Contains("a second time"), Error);
}

TEST_CASE("NoGradGuard records nothing; detach cuts the graph") {
  Tensor x = leaf({1.0}, {1});
  {
    NoGradGuard ng;
    Tensor y = mul(x, 2.0);
    CHECK(!y.requires_grad());
    CHECK(y.grad_fn() == nullptr);
  }
  CHECK(GradMode::enabled());
  Tensor d = mul(x, 2.0).detach();
  CHECK(!d.requires_grad());
  Tensor L = sum(add(mul(d, x), x));  // d is a constant 2: dL/dx = 2 + 1
  L.backward();
  CHECK(x.grad().item() == 3.0);
}

TEST_CASE("backward of a non-scalar needs an explicit gradient") {
  Tensor x = leaf({1.0, 2.0, 3.0, 4.0}, {2, 2});
  Tensor y = mul(x, x);
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("only for a one-element output, got shape [2, 2] from op 'mul'"),
                       Error);
  y.backward(Tensor::from_vector(std::vector<double>{1, 0, 0, 1}, {2, 2}));
  CHECK(x.grad().to_vector() == std::vector<double>{2, 0, 0, 8});
  CHECK_THROWS_WITH_AS(sum(Tensor::ones({2})).backward(), doctest::Contains("does not require grad"), Error);
}

TEST_CASE("an in-place write to a saved tensor makes backward fail naming the op") {
  Tensor x = leaf({1.0, 2.0}, {2});
  Tensor w = Tensor::from_vector(std::vector<double>{3.0, 4.0}, {2});
  Tensor L = sum(mul(x, w));
  w.add_(1.0);  // w does not require grad, so the write itself is allowed...
  CHECK_THROWS_WITH_AS(L.backward(), doctest::Contains("backward of 'mul'"), Error);  // ...but backward sees it
  CHECK_THROWS_WITH_AS(x.add_(1.0), doctest::Contains("in-place operation on a tensor that requires grad"), Error);
  {
    NoGradGuard ng;
    x.add_(1.0);  // the optimizer's way
  }
  CHECK(x.to_vector() == std::vector<double>{2.0, 3.0});
}

TEST_CASE("grad-ready hooks run once per backward with the final gradient") {
  Tensor x = leaf({1.0, 1.0}, {2});
  int calls = 0;
  std::vector<double> seen;
  x.register_grad_ready_hook([&](const Tensor& g) {
    ++calls;
    seen = g.to_vector();
  });
  // x feeds three ops; the hook must see the sum of all three contributions, once.
  Tensor L = sum(add(add(mul(x, 2.0), mul(x, 3.0)), x));
  L.backward();
  CHECK(calls == 1);
  CHECK(seen == std::vector<double>{6.0, 6.0});
  CHECK_THROWS_AS(L.grad_fn() ? mul(x, 1.0).register_grad_ready_hook([](const Tensor&) {}) : void(), Error);
}

TEST_CASE("a 20000-op chain runs backward without recursion") {
  Tensor x = leaf({1.0}, {1});
  Tensor y = x;
  for (int i = 0; i < 20000; ++i) y = add(y, 0.0);
  sum(y).backward();
  CHECK(x.grad().item() == 1.0);
}

TEST_CASE("views propagate gradients to the base tensor") {
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor y = x.t().slice(0, 1, 3).reshape({-1});  // x[:, 1:3] transposed, flattened: 2, 5, 3, 6
  CHECK(y.to_vector() == std::vector<double>{2, 5, 3, 6});
  sum(mul(y, Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, {4}))).backward();
  CHECK(x.grad().to_vector() == std::vector<double>{0, 1, 3, 0, 2, 4});
}

TEST_CASE("dtype casts carry gradients back to the source dtype") {
  Tensor x = leaf({1.5, -2.0}, {2});
  Tensor y = x.to(DType::f32);
  sum(mul(y, y)).backward();
  CHECK(x.grad().dtype() == DType::f64);
  CHECK(x.grad().to_vector() == std::vector<double>{3.0, -4.0});
}
