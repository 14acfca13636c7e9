// Weight initialisers with PyTorch's formulas (torch.nn.init), drawing from a selfsup::Generator so a
// model built from a seed is reproducible. The random streams differ from PyTorch's, the distributions
// do not.
#pragma once
#include "engine/core/tensor.h"

namespace selfsup::nn::init {

// fan_in = size(1) * receptive field, fan_out = size(0) * receptive field (receptive = prod of dims >= 2).
int64_t fan_in(const Shape& shape);
int64_t fan_out(const Shape& shape);

// U(-bound, bound) / N(0, std^2) of the given shape and dtype.
Tensor uniform(const Shape& shape, double bound, DType dtype, Generator& gen);
Tensor normal(const Shape& shape, double std, DType dtype, Generator& gen);

// torch.nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"): std = sqrt(2 / fan_out).
// torchvision's ResNet initialises every conv this way.
Tensor kaiming_normal_fan_out_relu(const Shape& shape, DType dtype, Generator& gen);
// PyTorch's default for nn.Linear and nn.Conv2d weights: kaiming_uniform_(a = sqrt(5)), which works out
// to U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the default bias uses the same bound.
Tensor default_weight(const Shape& shape, DType dtype, Generator& gen);
Tensor default_bias(int64_t n, int64_t fan_in, DType dtype, Generator& gen);

}  // namespace selfsup::nn::init
