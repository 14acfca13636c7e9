#include "engine/nn/decoder_layers.h"

#include "engine/core/check.h"
#include "engine/nn/init.h"

namespace selfsup::nn {

ConvTranspose2d::ConvTranspose2d(const ConvTranspose2dOptions& opt, Generator& gen) : opt_(opt) {
  SELFSUP_CHECK(opt.in_channels > 0 && opt.out_channels > 0 && opt.groups >= 1 && opt.in_channels % opt.groups == 0 &&
                    opt.out_channels % opt.groups == 0,
                "ConvTranspose2d: channels ", opt.in_channels, " -> ", opt.out_channels,
                " must be positive and divisible by groups ", opt.groups);
  const Shape wshape{opt.in_channels, opt.out_channels / opt.groups, opt.kernel[0], opt.kernel[1]};
  register_parameter("weight", &weight, init::default_weight(wshape, DType::f32, gen));
  if (opt.bias)
    register_parameter("bias", &bias, init::default_bias(opt.out_channels, init::fan_in(wshape), DType::f32, gen));
}

ConvTranspose2d::ConvTranspose2d(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t padding,
                                 int64_t output_padding, bool has_bias, Generator& gen)
    : ConvTranspose2d(ConvTranspose2dOptions{in, out, {k, k}, {stride, stride}, {padding, padding},
                                             {output_padding, output_padding}, {1, 1}, 1, has_bias},
                      gen) {}

Tensor ConvTranspose2d::forward(const Tensor& x) {
  selfsup::ConvTranspose2dOptions o;
  o.stride = opt_.stride, o.padding = opt_.padding, o.output_padding = opt_.output_padding;
  o.dilation = opt_.dilation, o.groups = opt_.groups;
  return conv_transpose2d(x, weight, bias, o);
}

Upsample::Upsample(int64_t scale, UpsampleMode mode, bool align_corners)
    : scale_(scale), mode_(mode), align_corners_(align_corners) {
  SELFSUP_CHECK(scale >= 1, "Upsample: scale factor ", scale, " must be >= 1");
}

LeakyReLU::LeakyReLU(double slope) : slope_(slope) {
  SELFSUP_CHECK(slope >= 0 && slope < 1, "LeakyReLU: negative slope ", slope, " must be in [0, 1)");
}

}  // namespace selfsup::nn
