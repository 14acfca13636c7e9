// The layers ResNets and SSL heads are made of, with PyTorch's names ("weight", "bias", "running_mean",
// "running_var", "num_batches_tracked") and default initialisation, so their state_dicts are PyTorch's.
// Each forward is one call into engine/ops; the layer only owns the state and the options.
#pragma once
#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/nn/module.h"
#include "engine/ops/ops.h"

namespace selfsup::dist {
class Communicator;
}

namespace selfsup::nn {

struct Conv2dOptions {
  int64_t in_channels = 0, out_channels = 0;
  std::array<int64_t, 2> kernel{3, 3};
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};
  std::array<int64_t, 2> dilation{1, 1};
  int64_t groups = 1;
  bool bias = true;
};

// weight (out, in/groups, kh, kw), bias (out) when enabled. x (N, in, H, W) -> (N, out, P, Q).
// Init as nn.Conv2d: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
class Conv2d : public Module {
 public:
  explicit Conv2d(const Conv2dOptions& opt, Generator& gen = default_generator());
  // Square kernel shorthand: Conv2d(in, out, k, stride, padding, bias).
  Conv2d(int64_t in, int64_t out, int64_t k, int64_t stride = 1, int64_t padding = 0, bool bias = true,
         Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Conv2d"; }
  const Conv2dOptions& options() const { return opt_; }
  Tensor weight, bias;

 private:
  Conv2dOptions opt_;
};

// x (N, in) or (..., in) -> (..., out). weight (out, in), bias (out).
// Init as nn.Linear: weight and bias U(-1/sqrt(in), 1/sqrt(in)).
class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias = true, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Linear"; }
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  Tensor weight, bias;

 private:
  int64_t in_, out_;
};

struct BatchNormOptions {
  double eps = 1e-5;
  // Weight of the new batch statistic in the running average; nullopt = cumulative average
  // (1 / num_batches_tracked), as PyTorch's momentum=None.
  std::optional<double> momentum = 0.1;
  bool affine = true;               // learnable weight (gamma, init 1) and bias (beta, init 0)
  bool track_running_stats = true;  // running_mean (0), running_var (1), num_batches_tracked (int64 0)
};

// Batch norm over dim 1. Training: batch statistics, running stats updated in place (running_var with the
// unbiased variance) and num_batches_tracked incremented. Eval: running stats, unless
// track_running_stats is off, in which case batch statistics are used in both modes (as PyTorch).
class BatchNorm : public Module {
 public:
  BatchNorm(int64_t num_features, int spatial_dims, const BatchNormOptions& opt);
  Tensor forward(const Tensor& x) override;
  // relu(forward(x) + residual) (residual undefined: relu(forward(x))) with the same state updates, through
  // the fused batch_norm_add_relu op when this process's batch statistics are used (SyncBN composes it).
  Tensor forward_add_relu(const Tensor& x, const Tensor& residual);
  std::string type_name() const override { return spatial_dims_ == 2 ? "BatchNorm2d" : "BatchNorm1d"; }
  int64_t num_features() const { return c_; }
  const BatchNormOptions& options() const { return opt_; }
  // Training batch statistics over every rank of `comm` (SyncBN, engine/dist/sync_batch_norm.h); null: this
  // process's batch only. dist::convert_sync_batch_norm sets it on every BatchNorm of a model.
  void set_sync(dist::Communicator* comm) { sync_ = comm; }
  dist::Communicator* sync() const { return sync_; }
  // Training batch statistics per group of samples instead of over the whole batch (MoCo's shuffling BN
  // in one process, ssl/methods/moco.cpp): sample i belongs to group i mod G, so an (N, C, ...) input is
  // viewed without a copy as (N / G, G C, ...) and normalised as G C channels. The running statistics move
  // by the mean of the groups' statistics. 1 = off; N must be a multiple of G.
  void set_sample_groups(int64_t groups);
  int64_t sample_groups() const { return groups_; }
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;

 private:
  // Checks x, counts the batch in num_batches_tracked (training) and returns the momentum to use.
  double begin_forward(const Tensor& x);

  Tensor forward_grouped(const Tensor& x, const Tensor& rm, const Tensor& rv, double momentum);
  dist::Communicator* sync_ = nullptr;
  int64_t groups_ = 1;
  int64_t c_;
  int spatial_dims_;
  BatchNormOptions opt_;
};

// x (N, C) only (PyTorch also takes (N, C, L); our batch_norm op has no 3-D path yet).
class BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(int64_t num_features, const BatchNormOptions& opt = {}) : BatchNorm(num_features, 0, opt) {}
};
// x (N, C, H, W).
class BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(int64_t num_features, const BatchNormOptions& opt = {}) : BatchNorm(num_features, 2, opt) {}
};

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return relu(x); }
  std::string type_name() const override { return "ReLU"; }
};

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(const Pool2dOptions& opt) : opt_(opt) {}
  MaxPool2d(int64_t kernel, int64_t stride, int64_t padding = 0);
  Tensor forward(const Tensor& x) override { return max_pool2d(x, opt_); }
  std::string type_name() const override { return "MaxPool2d"; }

 private:
  Pool2dOptions opt_;
};

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(const Pool2dOptions& opt) : opt_(opt) {}
  AvgPool2d(int64_t kernel, int64_t stride, int64_t padding = 0);
  Tensor forward(const Tensor& x) override { return avg_pool2d(x, opt_); }
  std::string type_name() const override { return "AvgPool2d"; }

 private:
  Pool2dOptions opt_;
};

// (N, C, H, W) -> (N, C, out_h, out_w); ResNets use (1, 1) as global average pooling.
class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(std::array<int64_t, 2> output_size) : out_(output_size) {}
  Tensor forward(const Tensor& x) override { return adaptive_avg_pool2d(x, out_); }
  std::string type_name() const override { return "AdaptiveAvgPool2d"; }

 private:
  std::array<int64_t, 2> out_;
};

// Flattens dims start..end into one (default: everything after the batch dim, as nn.Flatten).
class Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1) : start_(start_dim), end_(end_dim) {}
  Tensor forward(const Tensor& x) override { return x.flatten(start_, end_); }
  std::string type_name() const override { return "Flatten"; }

 private:
  int64_t start_, end_;
};

class Identity : public Module {
 public:
  Tensor forward(const Tensor& x) override { return x; }
  std::string type_name() const override { return "Identity"; }
};

// Children named "0", "1", ... in order, as nn.Sequential; forward chains them.
class Sequential : public Module {
 public:
  Sequential() = default;
  explicit Sequential(const std::vector<std::shared_ptr<Module>>& modules);
  // Appends a module under the next index and returns it (typed, for chaining).
  template <typename M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> m) {
    register_module(std::to_string(size_), m);
    ++size_;
    return m;
  }
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Sequential"; }
  int64_t size() const { return size_; }
  std::shared_ptr<Module> operator[](int64_t i) const;

 private:
  int64_t size_ = 0;
};

}  // namespace selfsup::nn
