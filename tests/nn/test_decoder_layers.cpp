// The decoder layers: PyTorch's parameter names, shapes and init bounds, and forward = the op.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/nn/decoder_layers.h"
#include "engine/ops/ops.h"

using namespace selfsup;
using namespace selfsup::nn;

TEST_CASE("ConvTranspose2d: torch's weight layout (in, out/groups, k, k), init bound from dim 1, forward = op") {
  Generator gen(3);
  ConvTranspose2d d(6, 4, 4, 2, 1, 0, true, gen);
  const NamedTensors sd = d.state_dict();
  REQUIRE(sd.size() == 2);
  CHECK(sd[0].first == "weight");
  CHECK(sd[1].first == "bias");
  CHECK(d.weight.sizes() == Shape{6, 4, 4, 4});
  CHECK(d.bias.sizes() == Shape{4});
  // nn.ConvTranspose2d's fan-in is weight.size(1) * kh * kw = 4 * 16 = 64: bound 1/8.
  const double bound = 1.0 / 8.0;
  double widest = 0;
  for (double v : d.weight.to_vector()) widest = std::max(widest, std::abs(v));
  CHECK(widest <= bound);
  CHECK(widest > 0.9 * bound);  // 384 draws from U(-b, b) reach past 0.9 b (probability 1 - 0.95^384)
  Tensor x = Tensor::randn({2, 6, 7, 7}, DType::f32, &gen);
  Tensor y = d.forward(x);
  CHECK(y.sizes() == Shape{2, 4, 14, 14});  // (7 - 1) * 2 - 2 + 4 = 14: the decoder's doubling
  selfsup::ConvTranspose2dOptions o;
  o.stride = {2, 2};
  o.padding = {1, 1};
  CHECK(y.to_vector() == conv_transpose2d(x, d.weight, d.bias, o).to_vector());
  CHECK_THROWS_WITH_AS(ConvTranspose2d(nn::ConvTranspose2dOptions{6, 4, {3, 3}, {1, 1}, {0, 0}, {0, 0}, {1, 1}, 4}),
                       doctest::Contains("must be positive and divisible by groups 4"), Error);
}

TEST_CASE("Upsample and LeakyReLU") {
  Tensor x = Tensor::from_vector(std::vector<double>{1, -2, 3, -4}, {1, 1, 2, 2});
  Tensor up = Upsample(2, UpsampleMode::nearest).forward(x);
  CHECK(up.sizes() == Shape{1, 1, 4, 4});
  CHECK(up.to_vector() == std::vector<double>{1, 1, -2, -2, 1, 1, -2, -2, 3, 3, -4, -4, 3, 3, -4, -4});
  x.set_requires_grad(true);
  Tensor y = LeakyReLU(0.2).forward(x);
  CHECK(y.to_vector() == std::vector<double>{1, -0.4, 3, -0.8});
  sum(y).backward();
  CHECK(x.grad().to_vector() == std::vector<double>{1, 0.2, 1, 0.2});
  CHECK_THROWS_WITH_AS(LeakyReLU(1.5), doctest::Contains("negative slope 1.5 must be in [0, 1)"), Error);
}
