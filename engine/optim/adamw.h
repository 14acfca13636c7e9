// AdamW (Loshchilov & Hutter): Adam with decoupled weight decay, in torch.optim.AdamW's order
// (_single_tensor_adamw, amsgrad off). With t the parameter's step count after incrementing:
//   p = p * (1 - lr * wd)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g * g
//   p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
#pragma once
#include "engine/optim/optimizer.h"

namespace selfsup {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

class AdamW : public Optimizer {
 public:
  AdamW(std::vector<ParamGroup> groups, const AdamWOptions& opt);
  AdamW(std::vector<Tensor> params, const AdamWOptions& opt) : AdamW({ParamGroup{std::move(params)}}, opt) {}
  const char* name() const override { return "adamw"; }
  const AdamWOptions& options() const { return opt_; }

 protected:
  void step_group_impl(size_t g) override;
  std::vector<std::string> buffer_names() const override { return {"exp_avg", "exp_avg_sq"}; }

 private:
  AdamWOptions opt_;
};

}  // namespace selfsup
