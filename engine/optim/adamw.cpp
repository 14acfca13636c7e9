// AdamW update (see adamw.h for the equations, in PyTorch's order).
#include "engine/optim/adamw.h"

#include <cmath>

#include "engine/ops/ops.h"

namespace selfsup {

AdamW::AdamW(std::vector<ParamGroup> groups, const AdamWOptions& opt)
    : Optimizer(std::move(groups), opt.lr, opt.weight_decay), opt_(opt) {
  SELFSUP_CHECK(opt.beta1 >= 0 && opt.beta1 < 1, "adamw: invalid beta1 ", opt.beta1, " (expected [0, 1))");
  SELFSUP_CHECK(opt.beta2 >= 0 && opt.beta2 < 1, "adamw: invalid beta2 ", opt.beta2, " (expected [0, 1))");
  SELFSUP_CHECK(opt.eps >= 0, "adamw: invalid epsilon ", opt.eps);
}

void AdamW::step_group_impl(size_t g) {
  const ParamGroup& pg = param_groups()[g];
  const double b1 = opt_.beta1, b2 = opt_.beta2;
  for (size_t i = 0; i < pg.params.size(); ++i) {
    Tensor p = pg.params[i];
    Tensor grad = p.grad();
    if (!grad.defined()) continue;
    const double t = static_cast<double>(++state(g, i).step);
    if (pg.weight_decay != 0) p.mul_(1.0 - pg.lr * pg.weight_decay);
    Tensor& m = buffer(g, i, "exp_avg");
    Tensor& v = buffer(g, i, "exp_avg_sq");
    m.mul_(b1).add_(grad, 1.0 - b1);
    v.mul_(b2).addcmul_(grad, grad, 1.0 - b2);
    const double step_size = pg.lr / (1.0 - std::pow(b1, t));
    const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(b2, t));
    Tensor denom = add(div(sqrt(v), bias_correction2_sqrt), opt_.eps);
    p.addcdiv_(m, denom, -step_size);
  }
}

}  // namespace selfsup
