// The ops a decoder needs to grow a feature map back into an image: transposed convolution and
// upsampling (nearest, bilinear).
//
// conv_transpose2d is the adjoint of conv2d, so it needs no kernel of its own: a transposed convolution
// from x (N, Cin, h, w) to y (N, Cout, H, W) is exactly conv2d's backward-data pass of the convolution that
// maps y-shaped images to x-shaped ones with the same weight (Cin, Cout/groups, R, S). Its backward is then
// that convolution's forward (for dx) and its backward-weight pass (for dw). Every device with the three
// conv2d kernels (oneDNN on the CPU, cuDNN on CUDA) therefore has conv_transpose2d, with their speed.
//
// upsample is separable interpolation written as two small matrix products, y = A_h x A_w^T with A_h
// (H_out, H) and A_w (W_out, W) holding each output pixel's interpolation weights (one 1 per row for
// nearest, two weights for bilinear). Autograd then derives the backward (A_h^T dy A_w) and matmul runs it
// on any device. It costs H_out * H multiply-adds per output column instead of 4, small next to a
// decoder's convolutions at 28x28 or 32x32 (docs/nn-and-models.md has the counts).
#include <algorithm>
#include <cmath>

#include "engine/autograd/autocast.h"
#include "engine/autograd/grad_mode.h"
#include "engine/autograd/node.h"
#include "engine/ops/op_utils.h"
#include "engine/ops/ops.h"

namespace selfsup {

using autograd::SavedTensor;
using ops_detail::check_dim;
using ops_detail::check_floating;
using Grads = std::vector<Tensor>;

Tensor conv_transpose2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const ConvTranspose2dOptions& opt) {
  check_floating(x, "conv_transpose2d");
  check_dim(x, 4, "conv_transpose2d", "input (N, Cin, h, w)");
  check_dim(weight, 4, "conv_transpose2d", "weight (Cin, Cout/groups, R, S)");
  ops_detail::check_same_device(x, weight, "conv_transpose2d");
  SELFSUP_CHECK(weight.dtype() == x.dtype(), "conv_transpose2d: weight dtype ", dtype_name(weight.dtype()),
                " differs from input dtype ", dtype_name(x.dtype()));
  const int64_t g = opt.groups;
  SELFSUP_CHECK(g >= 1 && x.size(1) % g == 0, "conv_transpose2d: groups ", g, " must divide the ", x.size(1),
                " input channels");
  SELFSUP_CHECK(weight.size(0) == x.size(1), "conv_transpose2d: input of shape ", shape_str(x.sizes()), " has ",
                x.size(1), " channels, weight of shape ", shape_str(weight.sizes()), " expects ", weight.size(0));
  for (int i = 0; i < 2; ++i) {
    SELFSUP_CHECK(opt.stride[i] >= 1 && opt.dilation[i] >= 1 && opt.padding[i] >= 0 && opt.output_padding[i] >= 0,
                  "conv_transpose2d: stride and dilation must be >= 1, padding and output_padding >= 0");
    // PyTorch's rule: the extra rows must lie inside one stride (or dilation) step, else no input reaches them.
    SELFSUP_CHECK(opt.output_padding[i] < std::max(opt.stride[i], opt.dilation[i]), "conv_transpose2d: output_padding ",
                  opt.output_padding[i], " must be smaller than the stride ", opt.stride[i], " or the dilation ",
                  opt.dilation[i]);
  }
  // The convolution whose adjoint this is: from (N, Cout, H, W) to (N, Cin, h, w), weight (Cin, Cout/g, R, S).
  kernels::Conv2dShape s{};
  s.N = x.size(0), s.K = x.size(1), s.P = x.size(2), s.Q = x.size(3);
  s.C = weight.size(1) * g, s.R = weight.size(2), s.S = weight.size(3);
  s.stride_h = opt.stride[0], s.stride_w = opt.stride[1], s.pad_h = opt.padding[0], s.pad_w = opt.padding[1];
  s.dil_h = opt.dilation[0], s.dil_w = opt.dilation[1], s.groups = g;
  s.H = (s.P - 1) * s.stride_h - 2 * s.pad_h + s.dil_h * (s.R - 1) + opt.output_padding[0] + 1;
  s.W = (s.Q - 1) * s.stride_w - 2 * s.pad_w + s.dil_w * (s.S - 1) + opt.output_padding[1] + 1;
  SELFSUP_CHECK(s.P > 0 && s.Q > 0 && s.H > 0 && s.W > 0, "conv_transpose2d: input of shape ", shape_str(x.sizes()),
                " with a ", s.R, "x", s.S, " kernel, stride ", s.stride_h, " and padding ", s.pad_h,
                " gives an empty output (", s.H, "x", s.W, ")");
  if (bias.defined())
    SELFSUP_CHECK(bias.dim() == 1 && bias.size(0) == s.C && bias.dtype() == x.dtype(), "conv_transpose2d: bias of shape ",
                  shape_str(bias.sizes()), " must be (", s.C, ") of dtype ", dtype_name(x.dtype()));
  Tensor xc = x.detach().contiguous(), wc = weight.detach().contiguous();
  Tensor y = Tensor::empty({s.N, s.C, s.H, s.W}, x.dtype(), x.device());  // (N, Cout, H, W)
  SELFSUP_KERNEL_CALL(x.device(), conv2d_bwd_data)(x.dtype(), s, xc.raw_data(), wc.raw_data(), y.raw_data());
  if (autograd::needs_grad({x, weight})) {
    SavedTensor sx = xc, sw = wc;
    const bool need_dx = x.requires_grad(), need_dw = weight.requires_grad();
    autograd::record("conv_transpose2d", {x, weight}, {y}, [sx, sw, s, need_dx, need_dw](const Grads& gr) {
      Tensor gy = gr[0].contiguous();  // (N, Cout, H, W): the adjoint convolution's input
      Tensor xs = sx.unpack("conv_transpose2d"), ws = sw.unpack("conv_transpose2d");
      Tensor dx, dw;
      if (need_dx) {
        dx = Tensor::empty(xs.sizes(), xs.dtype(), xs.device());
        SELFSUP_KERNEL_CALL(xs.device(), conv2d_fwd)(xs.dtype(), s, gy.raw_data(), ws.raw_data(), nullptr, dx.raw_data());
      }
      if (need_dw) {
        dw = Tensor::empty(ws.sizes(), ws.dtype(), ws.device());
        SELFSUP_KERNEL_CALL(xs.device(), conv2d_bwd_weight)(xs.dtype(), s, gy.raw_data(), xs.raw_data(), dw.raw_data(),
                                                            nullptr);
      }
      return Grads{dx, dw};
    });
  }
  // The bias is a broadcast add, so autograd sums its gradient over (N, H, W).
  return bias.defined() ? add(y, bias.view({1, s.C, 1, 1})) : y;
}

const char* upsample_mode_name(UpsampleMode mode) { return mode == UpsampleMode::nearest ? "nearest" : "bilinear"; }

namespace {

// The (out, in) interpolation matrix of one axis, PyTorch's coordinate rules for F.interpolate with a size
// (or an integer scale factor, which gives the same ratio): nearest takes src = floor(dst * in / out);
// bilinear with align_corners=False samples src = (dst + 0.5) * in / out - 0.5 (clamped at 0), with
// align_corners=True src = dst * (in - 1) / (out - 1), and mixes rows floor(src) and floor(src) + 1.
Tensor interpolation_matrix(int64_t out, int64_t in, UpsampleMode mode, bool align_corners) {
  std::vector<double> a(static_cast<size_t>(out * in), 0.0);
  const double ratio = static_cast<double>(in) / static_cast<double>(out);
  for (int64_t o = 0; o < out; ++o) {
    double* row = a.data() + o * in;
    if (mode == UpsampleMode::nearest) {
      row[std::min(static_cast<int64_t>(std::floor(static_cast<double>(o) * ratio)), in - 1)] = 1.0;
      continue;
    }
    double src = align_corners ? (out > 1 ? static_cast<double>(o) * static_cast<double>(in - 1) / static_cast<double>(out - 1) : 0.0)
                               : std::max(0.0, (static_cast<double>(o) + 0.5) * ratio - 0.5);
    const int64_t i0 = std::min(static_cast<int64_t>(std::floor(src)), in - 1);
    const int64_t i1 = std::min(i0 + 1, in - 1);
    const double l1 = src - static_cast<double>(i0);
    row[i0] += 1.0 - l1;
    row[i1] += l1;
  }
  return Tensor::from_vector(a, {out, in});
}

}  // namespace

Tensor upsample(const Tensor& x, std::array<int64_t, 2> size, UpsampleMode mode, bool align_corners) {
  check_floating(x, "upsample");
  check_dim(x, 4, "upsample", "input (N, C, H, W)");
  SELFSUP_CHECK(size[0] >= 1 && size[1] >= 1, "upsample: output size ", size[0], "x", size[1], " must be positive");
  SELFSUP_CHECK(mode == UpsampleMode::bilinear || !align_corners,
                "upsample: align_corners applies to bilinear mode only (nearest has no corners to align)");
  const Tensor ah = interpolation_matrix(size[0], x.size(2), mode, align_corners).to(x.dtype()).to(x.device());
  const Tensor aw = interpolation_matrix(size[1], x.size(3), mode, align_corners).to(x.dtype()).to(x.device());
  // An interpolation, not a learned layer: exact under autocast too (torch.autocast leaves interpolate alone).
  AutocastGuard exact(DType::f32);
  Tensor rows = matmul(x, aw.t());  // (N, C, H, W_out)
  return matmul(rows.transpose(2, 3), ah.t()).transpose(2, 3).contiguous();  // (N, C, H_out, W_out)
}

Tensor upsample(const Tensor& x, int64_t scale, UpsampleMode mode, bool align_corners) {
  SELFSUP_CHECK(scale >= 1, "upsample: scale factor ", scale, " must be >= 1");
  check_dim(x, 4, "upsample", "input (N, C, H, W)");
  return upsample(x, {x.size(2) * scale, x.size(3) * scale}, mode, align_corners);
}

}  // namespace selfsup
