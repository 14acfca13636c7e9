// LARS update (see lars.h for the equations and the SimCLR reference).
#include "engine/optim/lars.h"

#include "engine/ops/ops.h"

namespace selfsup {

LARS::LARS(std::vector<ParamGroup> groups, const LarsOptions& opt)
    : Optimizer(std::move(groups), opt.lr, opt.weight_decay), opt_(opt) {
  SELFSUP_CHECK(opt.momentum >= 0, "lars: invalid momentum ", opt.momentum);
  SELFSUP_CHECK(opt.eta > 0, "lars: invalid trust coefficient eta ", opt.eta);
  SELFSUP_CHECK(opt.eps >= 0, "lars: invalid epsilon ", opt.eps);
}

bool LARS::excluded(size_t g, size_t i) const {
  const ParamGroup& pg = param_groups()[g];
  return pg.exclude_from_adaptation || (opt_.exclude_1d && pg.params[i].dim() <= 1);
}

void LARS::step_group_impl(size_t g) {
  const ParamGroup& pg = param_groups()[g];
  for (size_t i = 0; i < pg.params.size(); ++i) {
    Tensor p = pg.params[i];
    Tensor d = p.grad();
    if (!d.defined()) continue;
    double scaled_lr = pg.lr;
    if (!excluded(g, i)) {
      if (pg.weight_decay != 0) d = add(d, mul(p, pg.weight_decay));
      const double w_norm = l2_norm(p), d_norm = l2_norm(d);
      const double trust = (w_norm > 0 && d_norm > 0) ? opt_.eta * w_norm / (d_norm + opt_.eps) : 1.0;
      scaled_lr = pg.lr * trust;
    }
    Tensor& v = buffer(g, i, "momentum_buffer");
    v.mul_(opt_.momentum).add_(d, scaled_lr);
    if (opt_.nesterov) {
      p.add_(v, -opt_.momentum);
      p.add_(d, -scaled_lr);
    } else {
      p.sub_(v);
    }
    ++state(g, i).step;
  }
}

}  // namespace selfsup
