// SGD with momentum, dampening, Nesterov and (L2, coupled) weight decay, in PyTorch's exact order of
// operations (torch.optim.SGD, _single_tensor_sgd), so runs match torch.optim to rounding:
//   d = g + wd * p
//   b = d                          (first step: the buffer is a copy of d, not (1 - dampening) * d)
//   b = momentum * b + (1 - dampening) * d   (later steps)
//   d = nesterov ? d + momentum * b : b
//   p = p - lr * d
#pragma once
#include "engine/optim/optimizer.h"

namespace selfsup {

struct SgdOptions {
  double lr = 0.1;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<ParamGroup> groups, const SgdOptions& opt);
  SGD(std::vector<Tensor> params, const SgdOptions& opt) : SGD({ParamGroup{std::move(params)}}, opt) {}
  const char* name() const override { return "sgd"; }
  const SgdOptions& options() const { return opt_; }

 protected:
  void step_group_impl(size_t g) override;
  std::vector<std::string> buffer_names() const override { return {"momentum_buffer"}; }

 private:
  SgdOptions opt_;
};

}  // namespace selfsup
