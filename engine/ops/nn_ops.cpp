// Convolution, pooling and batch norm: fused ops with explicit backward kernels.
#include <array>

#include "engine/autograd/autocast.h"
#include "engine/autograd/grad_mode.h"
#include "engine/autograd/node.h"
#include "engine/ops/op_utils.h"
#include "engine/ops/ops.h"
#include "kernels/bf16_api.h"

namespace selfsup {

using autograd::SavedTensor;
using ops_detail::check_dim;
using ops_detail::check_floating;
using Grads = std::vector<Tensor>;

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& opt) {
  check_floating(x, "conv2d");
  check_dim(x, 4, "conv2d", "input (N, C, H, W)");
  check_dim(weight, 4, "conv2d", "weight (K, C/groups, R, S)");
  ops_detail::check_same_device(x, weight, "conv2d");
  if (bias.defined()) ops_detail::check_same_device(x, bias, "conv2d");
  SELFSUP_CHECK(weight.dtype() == x.dtype(), "conv2d: weight dtype ", dtype_name(weight.dtype()),
                " differs from input dtype ", dtype_name(x.dtype()));
  const int64_t g = opt.groups;
  SELFSUP_CHECK(g >= 1 && x.size(1) % g == 0 && weight.size(0) % g == 0, "conv2d: groups ", g,
                " must divide input channels ", x.size(1), " and output channels ", weight.size(0));
  SELFSUP_CHECK(weight.size(1) * g == x.size(1), "conv2d: input of shape ", shape_str(x.sizes()), " has ", x.size(1),
                " channels, weight of shape ", shape_str(weight.sizes()), " expects ", weight.size(1) * g);
  for (int i = 0; i < 2; ++i)
    SELFSUP_CHECK(opt.stride[i] >= 1 && opt.dilation[i] >= 1 && opt.padding[i] >= 0,
                  "conv2d: stride and dilation must be >= 1 and padding >= 0");
  kernels::Conv2dShape s{};
  s.N = x.size(0), s.C = x.size(1), s.H = x.size(2), s.W = x.size(3);
  s.K = weight.size(0), s.R = weight.size(2), s.S = weight.size(3);
  s.stride_h = opt.stride[0], s.stride_w = opt.stride[1], s.pad_h = opt.padding[0], s.pad_w = opt.padding[1];
  s.dil_h = opt.dilation[0], s.dil_w = opt.dilation[1], s.groups = g;
  const int64_t span_h = s.H + 2 * s.pad_h - s.dil_h * (s.R - 1) - 1, span_w = s.W + 2 * s.pad_w - s.dil_w * (s.S - 1) - 1;
  s.P = span_h < 0 ? 0 : span_h / s.stride_h + 1;
  s.Q = span_w < 0 ? 0 : span_w / s.stride_w + 1;
  SELFSUP_CHECK(s.P > 0 && s.Q > 0, "conv2d: input of shape ", shape_str(x.sizes()), " is smaller than the ",
                s.R, "x", s.S, " kernel (with padding ", s.pad_h, ", dilation ", s.dil_h, ")");
  if (bias.defined())
    SELFSUP_CHECK(bias.dim() == 1 && bias.size(0) == s.K && bias.dtype() == x.dtype(), "conv2d: bias of shape ",
                  shape_str(bias.sizes()), " must be (", s.K, ") of dtype ", dtype_name(x.dtype()));
  // Autocast (engine/autograd/autocast.h): on CUDA cuDNN's bfloat16 convolutions on cast copies, the result
  // back in float32; on the CPU kernels/bf16_api.h's kernels on the float32 buffers, forward and both backward
  // passes (the choice is the forward's, kept by the backward node). Those are CPU-only, so not in the table.
  const bool bf16 = Autocast::bf16_for(x.dtype());
  if (bf16 && x.device().is_cuda())
    return conv2d(x.to(DType::bf16), weight.to(DType::bf16), bias.defined() ? bias.to(DType::bf16) : Tensor(), opt)
        .to(DType::f32);
  // Channels-last on the CPU's float kernels (docs/cpu-dense-kernels.md): the output is channels-last where that
  // computes fastest, and a channels-last input is read as it is; everything else is NCHW.
  const bool cpu_f32 = x.device().is_cpu() && x.dtype() == DType::f32 && !bf16;
  s.y_nhwc = cpu_f32 && kernels::conv2d_channels_last_cpu(s);
  Tensor xc = cpu_f32 && x.is_channels_last() ? x.detach() : x.detach().contiguous();
  s.x_nhwc = cpu_f32 && xc.is_channels_last() && (s.y_nhwc || !xc.is_contiguous());
  Tensor wc = weight.detach().contiguous();
  Tensor bc = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor y = s.y_nhwc ? Tensor::empty_channels_last({s.N, s.K, s.P, s.Q}, x.dtype(), x.device())
                      : Tensor::empty({s.N, s.K, s.P, s.Q}, x.dtype(), x.device());
  if (bf16) {
    kernels::conv2d_fwd_bf16_cpu(s, xc.data_ptr<float>(), wc.data_ptr<float>(),
                                 bc.defined() ? bc.data_ptr<float>() : nullptr, y.data_ptr<float>());
  } else {
    SELFSUP_KERNEL_CALL(x.device(), conv2d_fwd)(x.dtype(), s, xc.raw_data(), wc.raw_data(),
                                                bc.defined() ? bc.raw_data() : nullptr, y.raw_data());
  }
  if (autograd::needs_grad({x, weight, bias})) {
    SavedTensor sx = xc, sw = wc;
    bool need_dx = x.requires_grad(), need_dw = weight.requires_grad() || (bias.defined() && bias.requires_grad());
    bool has_bias = bias.defined();
    autograd::record("conv2d", {x, weight, bias}, {y}, [sx, sw, s, need_dx, need_dw, has_bias, bf16](const Grads& gr) {
      Tensor gy = s.y_nhwc ? gr[0].channels_last() : gr[0].contiguous();
      Tensor xs = sx.unpack("conv2d"), ws = sw.unpack("conv2d");
      Tensor dx, dw, db;
      if (need_dx) {
        dx = s.x_nhwc ? Tensor::empty_channels_last(xs.sizes(), xs.dtype(), xs.device())
                      : Tensor::empty(xs.sizes(), xs.dtype(), xs.device());
        if (bf16) {
          kernels::conv2d_bwd_data_bf16_cpu(s, gy.data_ptr<float>(), ws.data_ptr<float>(), dx.data_ptr<float>());
        } else {
          SELFSUP_KERNEL_CALL(xs.device(), conv2d_bwd_data)(xs.dtype(), s, gy.raw_data(), ws.raw_data(),
                                                            dx.raw_data());
        }
      }
      if (need_dw) {
        dw = Tensor::empty(ws.sizes(), ws.dtype(), ws.device());
        if (has_bias) db = Tensor::empty({s.K}, ws.dtype(), ws.device());
        if (bf16) {
          kernels::conv2d_bwd_weight_bf16_cpu(s, xs.data_ptr<float>(), gy.data_ptr<float>(), dw.data_ptr<float>(),
                                              has_bias ? db.data_ptr<float>() : nullptr);
        } else {
          SELFSUP_KERNEL_CALL(xs.device(), conv2d_bwd_weight)(xs.dtype(), s, xs.raw_data(), gy.raw_data(),
                                                              dw.raw_data(), has_bias ? db.raw_data() : nullptr);
        }
      }
      return Grads{dx, dw, db};
    });
  }
  return y;
}

namespace {

// Output size of a pooling window along one axis, PyTorch's rule (ceil mode keeps the last window only if
// it starts inside the input or the left padding).
int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode) {
  int64_t span = in + 2 * p - d * (k - 1) - 1;
  if (span < 0) return 0;
  int64_t out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
  if (ceil_mode && (out - 1) * s >= in + p) --out;
  return out;
}

kernels::Pool2dShape pool_shape(const Tensor& x, const Pool2dOptions& opt, const char* op) {
  check_floating(x, op);
  check_dim(x, 4, op, "input (N, C, H, W)");
  kernels::Pool2dShape s{};
  s.N = x.size(0), s.C = x.size(1), s.H = x.size(2), s.W = x.size(3);
  s.kh = opt.kernel[0], s.kw = opt.kernel[1];
  s.stride_h = opt.stride[0] > 0 ? opt.stride[0] : s.kh;
  s.stride_w = opt.stride[1] > 0 ? opt.stride[1] : s.kw;
  s.pad_h = opt.padding[0], s.pad_w = opt.padding[1];
  s.dil_h = opt.dilation[0], s.dil_w = opt.dilation[1];
  s.count_include_pad = opt.count_include_pad;
  SELFSUP_CHECK(s.kh >= 1 && s.kw >= 1 && s.dil_h >= 1 && s.dil_w >= 1, op, ": kernel and dilation must be >= 1");
  SELFSUP_CHECK(s.pad_h >= 0 && s.pad_w >= 0 && 2 * s.pad_h <= s.kh && 2 * s.pad_w <= s.kw, op,
                ": padding must be between 0 and half the kernel size, got ", s.pad_h, "x", s.pad_w, " for kernel ",
                s.kh, "x", s.kw);
  s.P = pool_out(s.H, s.kh, s.stride_h, s.pad_h, s.dil_h, opt.ceil_mode);
  s.Q = pool_out(s.W, s.kw, s.stride_w, s.pad_w, s.dil_w, opt.ceil_mode);
  SELFSUP_CHECK(s.P > 0 && s.Q > 0, op, ": input of shape ", shape_str(x.sizes()), " is smaller than the ", s.kh,
                "x", s.kw, " window");
  return s;
}

}  // namespace

Tensor max_pool2d(const Tensor& x, const Pool2dOptions& opt) {
  kernels::Pool2dShape s = pool_shape(x, opt, "max_pool2d");
  Tensor xc = x.detach().contiguous();
  Tensor y = Tensor::empty({s.N, s.C, s.P, s.Q}, x.dtype(), x.device());
  Tensor arg = Tensor::empty({s.N, s.C, s.P, s.Q}, DType::i64, x.device());
  SELFSUP_KERNEL_CALL(x.device(), max_pool2d_fwd)(x.dtype(), s, xc.raw_data(), y.raw_data(), arg.data_ptr<int64_t>());
  autograd::record("max_pool2d", {x}, {y}, [s, arg, dt = x.dtype()](const Grads& g) {
    Tensor gy = g[0].contiguous();
    Tensor dx = Tensor::empty({s.N, s.C, s.H, s.W}, dt, gy.device());
    SELFSUP_KERNEL_CALL(gy.device(), max_pool2d_bwd)(dt, s, gy.raw_data(), arg.data_ptr<int64_t>(), dx.raw_data());
    return Grads{dx};
  });
  return y;
}

Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& opt_in) {
  Pool2dOptions opt = opt_in;
  SELFSUP_CHECK(opt.dilation[0] == 1 && opt.dilation[1] == 1, "avg_pool2d: dilation is not supported");
  kernels::Pool2dShape s = pool_shape(x, opt, "avg_pool2d");
  Tensor xc = x.detach().contiguous();
  Tensor y = Tensor::empty({s.N, s.C, s.P, s.Q}, x.dtype(), x.device());
  SELFSUP_KERNEL_CALL(x.device(), avg_pool2d_fwd)(x.dtype(), s, xc.raw_data(), y.raw_data());
  autograd::record("avg_pool2d", {x}, {y}, [s, dt = x.dtype()](const Grads& g) {
    Tensor gy = g[0].contiguous();
    Tensor dx = Tensor::empty({s.N, s.C, s.H, s.W}, dt, gy.device());
    SELFSUP_KERNEL_CALL(gy.device(), avg_pool2d_bwd)(dt, s, gy.raw_data(), dx.raw_data());
    return Grads{dx};
  });
  return y;
}

Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> out) {
  check_floating(x, "adaptive_avg_pool2d");
  check_dim(x, 4, "adaptive_avg_pool2d", "input (N, C, H, W)");
  SELFSUP_CHECK(out[0] >= 1 && out[1] >= 1, "adaptive_avg_pool2d: output size must be positive, got ", out[0], "x",
                out[1]);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), P = out[0], Q = out[1];
  Tensor xc = x.detach().contiguous();
  Tensor y = Tensor::empty({N, C, P, Q}, x.dtype(), x.device());
  SELFSUP_KERNEL_CALL(x.device(), adaptive_avg_pool2d_fwd)(x.dtype(), N, C, H, W, P, Q, xc.raw_data(), y.raw_data());
  autograd::record("adaptive_avg_pool2d", {x}, {y}, [N, C, H, W, P, Q, dt = x.dtype()](const Grads& g) {
    Tensor gy = g[0].contiguous();
    Tensor dx = Tensor::empty({N, C, H, W}, dt, gy.device());
    SELFSUP_KERNEL_CALL(gy.device(), adaptive_avg_pool2d_bwd)(dt, N, C, H, W, P, Q, gy.raw_data(), dx.raw_data());
    return Grads{dx};
  });
  return y;
}

namespace {

// Shapes, dtypes and devices of batch norm's arguments, for `op`; returns (N, C, S).
std::array<int64_t, 3> check_batch_norm_args(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                                             const Tensor& weight, const Tensor& bias, const char* op) {
  check_floating(x, op);
  SELFSUP_CHECK(x.dim() == 2 || x.dim() == 4, op, ": input must be (N, C) or (N, C, H, W), got ",
                shape_str(x.sizes()));
  const int64_t N = x.size(0), C = x.size(1), S = x.dim() == 4 ? x.size(2) * x.size(3) : 1;
  const DType pdt = batch_norm_param_dtype(x.dtype());  // float32 for a bfloat16 input
  auto check_param = [&](const Tensor& t, const char* what) {
    if (!t.defined()) return;
    SELFSUP_CHECK(t.dim() == 1 && t.size(0) == C && t.dtype() == pdt, op, ": ", what, " of shape ",
                  shape_str(t.sizes()), " and dtype ", dtype_name(t.dtype()), " must be (", C, ") of dtype ",
                  dtype_name(pdt), " for a ", dtype_name(x.dtype()), " input");
    SELFSUP_CHECK(t.is_contiguous(), op, ": ", what, " must be contiguous");
    ops_detail::check_same_device(x, t, op);  // kernels read these through raw pointers
  };
  check_param(weight, "weight");
  check_param(bias, "bias");
  check_param(running_mean, "running_mean");
  check_param(running_var, "running_var");
  SELFSUP_CHECK(running_mean.defined() == running_var.defined(), op,
                ": running_mean and running_var must be given together");
  return {N, C, S};
}

// A channels-last (N, C, H, W) CPU input (a channels-last convolution's output) is normalised as the
// (N*H*W, C, 1) problem: the same per-channel statistics over the same values, read in memory order (the
// kernels' S = 1 path vectorises along C), outputs and gradients channels-last too. Everything else is NCHW.
struct BnLayout {
  bool nhwc;
  int64_t N, S;  // the kernels' view: (N, C, S)
  Tensor input(const Tensor& t) const { return nhwc ? t.detach().channels_last() : t.detach().contiguous(); }
  Tensor empty_like(const Tensor& t) const {
    return nhwc ? Tensor::empty_channels_last(t.sizes(), t.dtype(), t.device())
                : Tensor::empty(t.sizes(), t.dtype(), t.device());
  }
};

BnLayout bn_layout(const Tensor& x, int64_t N, int64_t S) {
  if (x.device().is_cpu() && x.is_channels_last() && !x.is_contiguous()) return {true, N * S, 1};
  return {false, N, S};
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps) {
  const std::array<int64_t, 3> ncs = check_batch_norm_args(x, running_mean, running_var, weight, bias, "batch_norm");
  const int64_t N = ncs[0], C = ncs[1], S = ncs[2];
  const DType pdt = batch_norm_param_dtype(x.dtype());
  auto ptr = [](const Tensor& t) -> void* { return t.defined() ? t.raw_data() : nullptr; };
  const BnLayout L = bn_layout(x, N, S);
  Tensor xc = L.input(x);
  Tensor y = L.empty_like(x);
  if (!training) {
    SELFSUP_CHECK(running_mean.defined(), "batch_norm: eval mode needs running_mean and running_var");
    if (!autograd::needs_grad({x, weight, bias})) {
      SELFSUP_KERNEL_CALL(x.device(), batch_norm_fwd_eval)(x.dtype(), L.N, C, L.S, xc.raw_data(), ptr(weight), ptr(bias),
                                                           running_mean.raw_data(), running_var.raw_data(), eps,
                                                           y.raw_data());
      return y;
    }
    // With gradients: the same affine map composed from differentiable ops (eval backward is elementwise).
    Shape bshape = x.dim() == 4 ? Shape{1, C, 1, 1} : Shape{1, C};
    Tensor scale = rsqrt(add(running_var.detach(), eps)).reshape(bshape);
    Tensor out = mul(sub(x, running_mean.detach().reshape(bshape)), scale);
    if (weight.defined()) out = mul(out, weight.reshape(bshape));
    if (bias.defined()) out = add(out, bias.reshape(bshape));
    return out.to(x.dtype());  // bfloat16 x: computed in float32 (the parameters' dtype), rounded once
  }
  SELFSUP_CHECK(N * S > 1, "batch_norm: training needs more than one value per channel, got input of shape ",
                shape_str(x.sizes()));
  Tensor save_mean = Tensor::empty({C}, pdt, x.device()), save_invstd = Tensor::empty({C}, pdt, x.device());
  SELFSUP_KERNEL_CALL(x.device(), batch_norm_fwd_train)(x.dtype(), L.N, C, L.S, xc.raw_data(), ptr(weight), ptr(bias), eps,
                                                        momentum, y.raw_data(), save_mean.raw_data(),
                                                        save_invstd.raw_data(), ptr(running_mean), ptr(running_var));
  if (running_mean.defined()) {
    running_mean.bump_version();
    running_var.bump_version();
  }
  if (autograd::needs_grad({x, weight, bias})) {
    SavedTensor sx = xc, sw = weight;
    bool affine_grad = (weight.defined() && weight.requires_grad()) || (bias.defined() && bias.requires_grad());
    bool has_w = weight.defined(), has_b = bias.defined();
    autograd::record("batch_norm", {x, weight, bias}, {y},
                     [sx, sw, save_mean, save_invstd, L, C, affine_grad, has_w, has_b, pdt](const Grads& g) {
                       Tensor xs = sx.unpack("batch_norm"), ws = sw.unpack("batch_norm");
                       Tensor gy = L.input(g[0]);
                       Tensor dx = L.empty_like(xs);
                       Tensor dw = affine_grad && has_w ? Tensor::empty({C}, pdt, xs.device()) : Tensor();
                       Tensor db = affine_grad && has_b ? Tensor::empty({C}, pdt, xs.device()) : Tensor();
                       auto p = [](const Tensor& t) -> void* { return t.defined() ? t.raw_data() : nullptr; };
                       SELFSUP_KERNEL_CALL(xs.device(), batch_norm_bwd)(
                           xs.dtype(), L.N, C, L.S, gy.raw_data(), xs.raw_data(), p(ws), save_mean.raw_data(),
                           save_invstd.raw_data(), dx.raw_data(), p(dw), p(db));
                       return Grads{dx, dw, db};
                     });
  }
  return y;
}

Tensor batch_norm_add_relu(const Tensor& x, const Tensor& residual, const Tensor& running_mean,
                           const Tensor& running_var, const Tensor& weight, const Tensor& bias, bool training,
                           double momentum, double eps) {
  const std::array<int64_t, 3> ncs =
      check_batch_norm_args(x, running_mean, running_var, weight, bias, "batch_norm_add_relu");
  const int64_t N = ncs[0], C = ncs[1], S = ncs[2];
  if (residual.defined()) {
    SELFSUP_CHECK(residual.sizes() == x.sizes() && residual.dtype() == x.dtype(), "batch_norm_add_relu: residual of shape ",
                  shape_str(residual.sizes()), " and dtype ", dtype_name(residual.dtype()), " must match the input's ",
                  shape_str(x.sizes()), " and ", dtype_name(x.dtype()));
    ops_detail::check_same_device(x, residual, "batch_norm_add_relu");
  }
  if (!training) {  // running statistics: an elementwise affine map, composed (its backward is elementwise too)
    Tensor out = batch_norm(x, running_mean, running_var, weight, bias, false, momentum, eps);
    return relu(residual.defined() ? add(out, residual) : out);
  }
  SELFSUP_CHECK(N * S > 1, "batch_norm_add_relu: training needs more than one value per channel, got input of shape ",
                shape_str(x.sizes()));
  const DType pdt = batch_norm_param_dtype(x.dtype());
  auto ptr = [](const Tensor& t) -> void* { return t.defined() ? t.raw_data() : nullptr; };
  const BnLayout L = bn_layout(x, N, S);
  Tensor xc = L.input(x);
  Tensor rc = residual.defined() ? L.input(residual) : Tensor();
  Tensor y = L.empty_like(x);
  Tensor save_mean = Tensor::empty({C}, pdt, x.device()), save_invstd = Tensor::empty({C}, pdt, x.device());
  SELFSUP_KERNEL_CALL(x.device(), batch_norm_add_relu_fwd_train)(
      x.dtype(), L.N, C, L.S, xc.raw_data(), ptr(rc), ptr(weight), ptr(bias), eps, momentum, y.raw_data(),
      save_mean.raw_data(), save_invstd.raw_data(), ptr(running_mean), ptr(running_var));
  if (running_mean.defined()) {
    running_mean.bump_version();
    running_var.bump_version();
  }
  if (autograd::needs_grad({x, residual, weight, bias})) {
    // Saved: x and the output y (its sign is the ReLU's mask), not the pre-activation: no extra tensor.
    SavedTensor sx = xc, sy = y, sw = weight;
    const bool affine_grad = (weight.defined() && weight.requires_grad()) || (bias.defined() && bias.requires_grad());
    const bool need_dr = residual.defined() && residual.requires_grad();
    const bool has_w = weight.defined(), has_b = bias.defined();
    autograd::record("batch_norm_add_relu", {x, residual, weight, bias}, {y},
                     [sx, sy, sw, save_mean, save_invstd, L, C, affine_grad, need_dr, has_w, has_b,
                      pdt](const Grads& g) {
                       Tensor xs = sx.unpack("batch_norm_add_relu"), ys = sy.unpack("batch_norm_add_relu");
                       Tensor ws = sw.unpack("batch_norm_add_relu");
                       Tensor gy = L.input(g[0]);
                       Tensor dx = L.empty_like(xs);
                       Tensor dr = need_dr ? L.empty_like(xs) : Tensor();
                       Tensor dw = affine_grad && has_w ? Tensor::empty({C}, pdt, xs.device()) : Tensor();
                       Tensor db = affine_grad && has_b ? Tensor::empty({C}, pdt, xs.device()) : Tensor();
                       auto p = [](const Tensor& t) -> void* { return t.defined() ? t.raw_data() : nullptr; };
                       SELFSUP_KERNEL_CALL(xs.device(), batch_norm_add_relu_bwd)(
                           xs.dtype(), L.N, C, L.S, gy.raw_data(), ys.raw_data(), xs.raw_data(), p(ws),
                           save_mean.raw_data(), save_invstd.raw_data(), dx.raw_data(), p(dr), p(dw), p(db));
                       return Grads{dx, dr, dw, db};
                     });
  }
  return y;
}

}  // namespace selfsup
