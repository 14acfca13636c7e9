// LARS (You et al. 2017) as SimCLR implements it (tf/lars_optimizer.py in google-research/simclr), with an
// optional epsilon in the trust ratio. Per parameter p with gradient g, for parameters not excluded:
//   d     = g + wd * p
//   trust = eta * ||p|| / (||d|| + eps)   if ||p|| > 0 and ||d|| > 0, else 1
// excluded parameters (1-D ones by default: biases and BN weights; or a group with exclude_from_adaptation)
// use d = g and trust = 1. Then, with the lr inside the momentum buffer as SimCLR has it:
//   v = momentum * v + lr * trust * d          (v starts at 0)
//   p = p - v                                  or, Nesterov: p = p - (momentum * v + lr * trust * d)
// Note the difference to the "lr outside" variant (v = m v + trust d; p -= lr v): they agree while lr is
// constant and differ while a schedule changes it. Norms are accumulated in float64.
#pragma once
#include "engine/optim/optimizer.h"

namespace selfsup {

struct LarsOptions {
  double lr = 0.1;
  double momentum = 0.9;
  double weight_decay = 0.0;
  double eta = 0.001;       // trust coefficient
  double eps = 0.0;         // added to ||d|| in the trust ratio (SimCLR: none)
  bool nesterov = false;
  bool exclude_1d = true;   // 1-D parameters (bias, BN) skip adaptation and weight decay
};

class LARS : public Optimizer {
 public:
  LARS(std::vector<ParamGroup> groups, const LarsOptions& opt);
  LARS(std::vector<Tensor> params, const LarsOptions& opt) : LARS({ParamGroup{std::move(params)}}, opt) {}
  const char* name() const override { return "lars"; }
  const LarsOptions& options() const { return opt_; }
  // Whether parameter i of group g skips trust-ratio scaling and weight decay.
  bool excluded(size_t g, size_t i) const;

 protected:
  void step_group_impl(size_t g) override;
  std::vector<std::string> buffer_names() const override { return {"momentum_buffer"}; }

 private:
  LarsOptions opt_;
};

}  // namespace selfsup
