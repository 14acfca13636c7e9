// torch.nn.init formulas over selfsup's counter-based generator.
#include "engine/nn/init.h"

#include <cmath>

#include "engine/autograd/grad_mode.h"

namespace selfsup::nn::init {

namespace {
int64_t receptive(const Shape& s) {
  int64_t r = 1;
  for (size_t i = 2; i < s.size(); ++i) r *= s[i];
  return r;
}
}  // namespace

int64_t fan_in(const Shape& s) {
  SELFSUP_CHECK(s.size() >= 2, "init: fan_in needs at least 2 dimensions, got ", shape_str(s));
  return s[1] * receptive(s);
}

int64_t fan_out(const Shape& s) {
  SELFSUP_CHECK(s.size() >= 2, "init: fan_out needs at least 2 dimensions, got ", shape_str(s));
  return s[0] * receptive(s);
}

Tensor uniform(const Shape& shape, double bound, DType dtype, Generator& gen) {
  NoGradGuard ng;
  Tensor t = Tensor::rand(shape, dtype, &gen);  // [0, 1)
  t.mul_(2.0 * bound).add_(-bound);
  return t;
}

Tensor normal(const Shape& shape, double std, DType dtype, Generator& gen) {
  NoGradGuard ng;
  Tensor t = Tensor::randn(shape, dtype, &gen);
  t.mul_(std);
  return t;
}

Tensor kaiming_normal_fan_out_relu(const Shape& shape, DType dtype, Generator& gen) {
  const double gain = std::sqrt(2.0);  // calculate_gain("relu")
  return normal(shape, gain / std::sqrt(static_cast<double>(fan_out(shape))), dtype, gen);
}

Tensor default_weight(const Shape& shape, DType dtype, Generator& gen) {
  // kaiming_uniform_(a=sqrt(5)): gain = sqrt(2 / (1 + a^2)) = sqrt(1/3), bound = gain * sqrt(3 / fan_in).
  return uniform(shape, 1.0 / std::sqrt(static_cast<double>(fan_in(shape))), dtype, gen);
}

Tensor default_bias(int64_t n, int64_t fan_in_, DType dtype, Generator& gen) {
  const double bound = fan_in_ > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in_)) : 0.0;
  return uniform({n}, bound, dtype, gen);
}

}  // namespace selfsup::nn::init
