// Layer constructors (PyTorch's default initialisation) and forwards (one engine op each).
#include "engine/nn/layers.h"

#include "engine/autograd/grad_mode.h"
#include "engine/dist/sync_batch_norm.h"
#include "engine/nn/init.h"

namespace selfsup::nn {

// ---------------------------------------------------------------- Conv2d

Conv2d::Conv2d(const Conv2dOptions& opt, Generator& gen) : opt_(opt) {
  SELFSUP_CHECK(opt.in_channels > 0 && opt.out_channels > 0 && opt.groups >= 1 &&
                    opt.in_channels % opt.groups == 0 && opt.out_channels % opt.groups == 0,
                "Conv2d: channels ", opt.in_channels, " -> ", opt.out_channels, " must be positive and divisible by groups ",
                opt.groups);
  Shape wshape{opt.out_channels, opt.in_channels / opt.groups, opt.kernel[0], opt.kernel[1]};
  register_parameter("weight", &weight, init::default_weight(wshape, DType::f32, gen));
  if (opt.bias) register_parameter("bias", &bias, init::default_bias(opt.out_channels, init::fan_in(wshape), DType::f32, gen));
}

Conv2d::Conv2d(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t padding, bool has_bias, Generator& gen)
    : Conv2d(Conv2dOptions{in, out, {k, k}, {stride, stride}, {padding, padding}, {1, 1}, 1, has_bias}, gen) {}

Tensor Conv2d::forward(const Tensor& x) {
  selfsup::Conv2dOptions o;
  o.stride = opt_.stride, o.padding = opt_.padding, o.dilation = opt_.dilation, o.groups = opt_.groups;
  return conv2d(x, weight, bias, o);
}

// ---------------------------------------------------------------- Linear

Linear::Linear(int64_t in, int64_t out, bool has_bias, Generator& gen) : in_(in), out_(out) {
  SELFSUP_CHECK(in > 0 && out > 0, "Linear: features must be positive, got ", in, " -> ", out);
  register_parameter("weight", &weight, init::default_weight({out, in}, DType::f32, gen));
  if (has_bias) register_parameter("bias", &bias, init::default_bias(out, in, DType::f32, gen));
}

Tensor Linear::forward(const Tensor& x) {
  SELFSUP_CHECK(x.dim() >= 1 && x.size(-1) == in_, "Linear(", in_, " -> ", out_, "): input of shape ",
                shape_str(x.sizes()), " must end in ", in_, " features");
  return linear(x, weight, bias);
}

// ---------------------------------------------------------------- BatchNorm

BatchNorm::BatchNorm(int64_t num_features, int spatial_dims, const BatchNormOptions& opt)
    : c_(num_features), spatial_dims_(spatial_dims), opt_(opt) {
  SELFSUP_CHECK(num_features > 0, type_name(), ": num_features must be positive, got ", num_features);
  if (opt.affine) {
    register_parameter("weight", &weight, Tensor::ones({c_}));
    register_parameter("bias", &bias, Tensor::zeros({c_}));
  }
  if (opt.track_running_stats) {
    register_buffer("running_mean", &running_mean, Tensor::zeros({c_}));
    register_buffer("running_var", &running_var, Tensor::ones({c_}));
    register_buffer("num_batches_tracked", &num_batches_tracked, Tensor::zeros({}, DType::i64));
  }
}

double BatchNorm::begin_forward(const Tensor& x) {
  const int64_t want = 2 + spatial_dims_;
  SELFSUP_CHECK(x.dim() == want && x.size(1) == c_, type_name(), "(", c_, "): expected input of ", want,
                " dims with ", c_, " channels, got ", shape_str(x.sizes()));
  double momentum = 0.0;
  if (is_training() && opt_.track_running_stats) {
    // num_batches_tracked counts training forwards; with momentum=None it sets the cumulative average.
    if (num_batches_tracked.device().is_cpu()) {
      int64_t* n = num_batches_tracked.data_ptr<int64_t>();
      *n += 1;
      num_batches_tracked.bump_version();
      momentum = opt_.momentum ? *opt_.momentum : 1.0 / static_cast<double>(*n);
    } else {  // on a GPU: count there; read it back (a sync) only when momentum=None needs the value
      NoGradGuard ng;
      num_batches_tracked.add_(Tensor::ones({}, DType::i64, num_batches_tracked.device()));
      momentum = opt_.momentum ? *opt_.momentum : 1.0 / num_batches_tracked.item();
    }
  }
  return momentum;
}

Tensor BatchNorm::forward(const Tensor& x) {
  const double momentum = begin_forward(x);
  const bool use_batch_stats = is_training() || !opt_.track_running_stats;
  // Running stats are read in eval, written in training; without tracking they are not passed at all.
  Tensor rm = opt_.track_running_stats ? running_mean : Tensor();
  Tensor rv = opt_.track_running_stats ? running_var : Tensor();
  if (groups_ > 1 && use_batch_stats) return forward_grouped(x, rm, rv, momentum);
  if (sync_ && use_batch_stats) return dist::sync_batch_norm(x, rm, rv, weight, bias, momentum, opt_.eps, *sync_);
  return batch_norm(x, rm, rv, weight, bias, use_batch_stats, momentum, opt_.eps);
}

Tensor BatchNorm::forward_add_relu(const Tensor& x, const Tensor& residual) {
  const bool use_batch_stats = is_training() || !opt_.track_running_stats;
  // Statistics across ranks or per sample group: no fused kernel for those.
  if ((sync_ || groups_ > 1) && use_batch_stats) {
    Tensor y = forward(x);
    return relu(residual.defined() ? add(y, residual) : y);
  }
  const double momentum = begin_forward(x);
  Tensor rm = opt_.track_running_stats ? running_mean : Tensor();
  Tensor rv = opt_.track_running_stats ? running_var : Tensor();
  return batch_norm_add_relu(x, residual, rm, rv, weight, bias, use_batch_stats, momentum, opt_.eps);
}

void BatchNorm::set_sample_groups(int64_t groups) {
  SELFSUP_CHECK(groups >= 1, type_name(), ": sample groups must be >= 1, got ", groups);
  SELFSUP_CHECK(groups == 1 || !sync_, type_name(), ": per-group statistics and SyncBN exclude each other");
  groups_ = groups;
}

Tensor BatchNorm::forward_grouped(const Tensor& x, const Tensor& rm, const Tensor& rv, double momentum) {
  const int64_t N = x.size(0), G = groups_;
  SELFSUP_CHECK(N % G == 0, type_name(), ": a batch of ", N, " does not split into ", G, " sample groups");
  // (N, C, ...) = (N / G, G, C, ...) in memory: group g's channel c is channel g C + c of (N / G, G C, ...).
  Shape grouped = x.sizes();
  grouped[0] = N / G;
  grouped[1] = G * c_;
  const auto tiled = [G](const Tensor& t) { return t.defined() ? cat(std::vector<Tensor>(G, t), 0) : Tensor(); };
  Tensor rm_g, rv_g;
  if (rm.defined()) {
    NoGradGuard ng;
    rm_g = tiled(rm);
    rv_g = tiled(rv);
  }
  Tensor y = batch_norm(x.contiguous().reshape(grouped), rm_g, rv_g, tiled(weight), tiled(bias), true, momentum, opt_.eps);
  if (rm.defined()) {  // each group moved its copy by momentum; their mean is the update by the mean statistic
    NoGradGuard ng;
    running_mean.copy_(mean(rm_g.reshape({G, c_}), {0}));
    running_var.copy_(mean(rv_g.reshape({G, c_}), {0}));
  }
  return y.reshape(x.sizes());
}

// ---------------------------------------------------------------- pooling

MaxPool2d::MaxPool2d(int64_t kernel, int64_t stride, int64_t padding) {
  opt_.kernel = {kernel, kernel};
  opt_.stride = {stride, stride};
  opt_.padding = {padding, padding};
}

AvgPool2d::AvgPool2d(int64_t kernel, int64_t stride, int64_t padding) {
  opt_.kernel = {kernel, kernel};
  opt_.stride = {stride, stride};
  opt_.padding = {padding, padding};
}

// ---------------------------------------------------------------- Sequential

Sequential::Sequential(const std::vector<std::shared_ptr<Module>>& modules) {
  for (const auto& m : modules) push_back(m);
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (auto& [_, m] : named_children()) y = m->forward(y);
  return y;
}

std::shared_ptr<Module> Sequential::operator[](int64_t i) const {
  SELFSUP_CHECK(i >= 0 && i < size_, "Sequential: index ", i, " out of range for ", size_, " modules");
  return named_children()[static_cast<size_t>(i)].second;
}

}  // namespace selfsup::nn
