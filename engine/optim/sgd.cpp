// SGD update (see sgd.h for the equations and why the order follows PyTorch).
#include "engine/optim/sgd.h"

#include "engine/ops/ops.h"

namespace selfsup {

SGD::SGD(std::vector<ParamGroup> groups, const SgdOptions& opt)
    : Optimizer(std::move(groups), opt.lr, opt.weight_decay), opt_(opt) {
  SELFSUP_CHECK(opt.momentum >= 0, "sgd: invalid momentum ", opt.momentum);
  SELFSUP_CHECK(!opt.nesterov || (opt.momentum > 0 && opt.dampening == 0),
                "sgd: Nesterov momentum requires momentum > 0 and dampening 0 (got momentum ", opt.momentum,
                ", dampening ", opt.dampening, ")");
}

void SGD::step_group_impl(size_t g) {
  const ParamGroup& pg = param_groups()[g];
  for (size_t i = 0; i < pg.params.size(); ++i) {
    Tensor p = pg.params[i];
    Tensor d = p.grad();
    if (!d.defined()) continue;
    if (pg.weight_decay != 0) d = add(d, mul(p, pg.weight_decay));  // new tensor: .grad stays untouched
    if (opt_.momentum != 0) {
      bool created = false;
      Tensor& buf = buffer(g, i, "momentum_buffer", &created);
      if (created) buf.copy_(d);
      else buf.mul_(opt_.momentum).add_(d, 1.0 - opt_.dampening);
      d = opt_.nesterov ? add(d, mul(buf, opt_.momentum)) : buf;
    }
    p.add_(d, -pg.lr);
    ++state(g, i).step;
  }
}

}  // namespace selfsup
