// The layers a decoder or a small discriminator is built from: transposed convolution, upsampling and
// the leaky ReLU, with PyTorch's parameter names, shapes and default initialisation.
#pragma once
#include <array>
#include <cstdint>

#include "engine/nn/module.h"
#include "engine/ops/ops.h"

namespace selfsup::nn {

struct ConvTranspose2dOptions {
  int64_t in_channels = 0, out_channels = 0;
  std::array<int64_t, 2> kernel{4, 4};
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};
  std::array<int64_t, 2> output_padding{0, 0};
  std::array<int64_t, 2> dilation{1, 1};
  int64_t groups = 1;
  bool bias = true;
};

// weight (in, out/groups, kh, kw), bias (out) when enabled: x (N, in, h, w) -> (N, out, H, W) with H =
// (h - 1) stride - 2 padding + dilation (kh - 1) + output_padding + 1. Init as nn.ConvTranspose2d: PyTorch
// takes the fan-in from the weight's dim 1 (out/groups x kh x kw), so U(-1/sqrt(that), 1/sqrt(that)).
class ConvTranspose2d : public Module {
 public:
  explicit ConvTranspose2d(const ConvTranspose2dOptions& opt, Generator& gen = default_generator());
  // Square kernel shorthand: ConvTranspose2d(in, out, k, stride, padding, output_padding, bias).
  ConvTranspose2d(int64_t in, int64_t out, int64_t k, int64_t stride = 1, int64_t padding = 0,
                  int64_t output_padding = 0, bool bias = true, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "ConvTranspose2d"; }
  const ConvTranspose2dOptions& options() const { return opt_; }
  Tensor weight, bias;

 private:
  ConvTranspose2dOptions opt_;
};

// x (N, C, H, W) -> (N, C, scale H, scale W), nn.Upsample(scale_factor=scale, mode=...). No parameters.
class Upsample : public Module {
 public:
  Upsample(int64_t scale, UpsampleMode mode, bool align_corners = false);
  Tensor forward(const Tensor& x) override { return upsample(x, scale_, mode_, align_corners_); }
  std::string type_name() const override { return "Upsample"; }

 private:
  int64_t scale_;
  UpsampleMode mode_;
  bool align_corners_;
};

// max(x, slope x) for 0 <= slope < 1: nn.LeakyReLU(negative_slope), the DCGAN discriminator's activation.
class LeakyReLU : public Module {
 public:
  explicit LeakyReLU(double slope = 0.2);
  Tensor forward(const Tensor& x) override { return maximum(x, mul(x, slope_)); }
  std::string type_name() const override { return "LeakyReLU"; }

 private:
  double slope_;
};

}  // namespace selfsup::nn
