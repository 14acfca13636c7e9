// SyncBN from differentiable-op building blocks (run without autograd) and one explicit backward node, so
// the same code serves CPU (MPI) and CUDA (NCCL) tensors.
#include "engine/dist/sync_batch_norm.h"

#include <limits>

#include "engine/autograd/grad_mode.h"
#include "engine/autograd/node.h"
#include "engine/nn/layers.h"
#include "engine/ops/ops.h"

namespace selfsup::dist {

namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();
}

Tensor sync_batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                       const Tensor& bias, double momentum, double eps, Communicator& comm) {
  SELFSUP_CHECK(x.dim() == 2 || x.dim() == 4, "sync_batch_norm: input must be (N, C) or (N, C, H, W), got ",
                shape_str(x.sizes()));
  const int64_t C = x.size(1);
  const std::vector<int64_t> dims = x.dim() == 4 ? std::vector<int64_t>{0, 2, 3} : std::vector<int64_t>{0};
  const Shape bshape = x.dim() == 4 ? Shape{1, C, 1, 1} : Shape{1, C};
  const DType pdt = batch_norm_param_dtype(x.dtype());
  // Statistics and their gradients are computed in float64 for float32/64 inputs (float32 for 16-bit ones),
  // terms and sums, as the BN kernels do in double: sum(dy) and sum(dy xhat) over n H W values cancel
  // heavily, and float32 terms left layer1's BN biases 0.5% off the one-process run after one SGD step.
  const DType sdt = x.dtype() == DType::f32 || x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor mean, invstd, y;
  double count = 0;
  {
    NoGradGuard ng;
    Tensor xs = x.detach().to(sdt);
    // One all-reduce of (2C + 1): sum(x - shift), sum((x - shift)^2) and the count, so a layer costs one
    // synchronisation forward (every one of them waits for the slowest rank). The shift is the running mean,
    // the same on every rank and close to the batch mean, so E[(x - s)^2] - E[x - s]^2 does not cancel
    // (and in float64 it would not matter); without running statistics it is 0.
    Tensor shift = running_mean.defined() ? running_mean.detach().to(sdt).reshape(bshape)
                                          : Tensor::zeros(bshape, sdt, x.device());
    Tensor xc0 = sub(xs, shift);
    Tensor stats = cat({sum(xc0, dims), sum(mul(xc0, xc0), dims),
                        Tensor::full({1}, static_cast<double>(x.numel() / C), sdt, x.device())}, 0);
    comm.all_reduce(stats, ReduceOp::sum);
    count = stats.narrow(0, 2 * C, 1).item();
    SELFSUP_CHECK(count > 1, "sync_batch_norm: needs more than one value per channel over all ranks, got ", count);
    Tensor d_mean = div(stats.narrow(0, 0, C), count);  // mean - shift
    mean = add(d_mean, shift.reshape({C}));
    Tensor var = clamp(sub(div(stats.narrow(0, C, C), count), mul(d_mean, d_mean)), 0.0, kInf);  // biased
    Tensor xc = sub(xs, mean.reshape(bshape));
    invstd = rsqrt(add(var, eps));
    y = mul(xc, invstd.reshape(bshape));
    if (weight.defined()) y = mul(y, weight.detach().to(sdt).reshape(bshape));
    if (bias.defined()) y = add(y, bias.detach().to(sdt).reshape(bshape));
    y = y.to(x.dtype()).contiguous();
    if (running_mean.defined()) {
      Tensor rm = running_mean, rv = running_var;  // handles to the module's buffers, updated in place
      rm.mul_(1.0 - momentum).add_(mean.to(pdt), momentum);
      rv.mul_(1.0 - momentum).add_(var.to(pdt), momentum * count / (count - 1));
    }
  }
  if (autograd::needs_grad({x, weight, bias})) {
    autograd::SavedTensor sx = x.detach(), sw = weight;
    Communicator* c = &comm;
    autograd::record("sync_batch_norm", {x, weight, bias}, {y},
                     [sx, sw, mean, invstd, count, c, C, dims, bshape, pdt, sdt](const std::vector<Tensor>& g) {
                       Tensor xs = sx.unpack("sync_batch_norm"), w = sw.unpack("sync_batch_norm");
                       Tensor xh = mul(sub(xs.to(sdt), mean.reshape(bshape)), invstd.reshape(bshape));
                       Tensor gy = g[0].to(sdt);
                       Tensor sdy = sum(gy, dims), sdyx = sum(mul(gy, xh), dims);  // (C) each, local
                       Tensor both = cat({sdy, sdyx}, 0).contiguous();            // (2C)
                       c->all_reduce(both, ReduceOp::sum);
                       Tensor mdy = div(both.narrow(0, 0, C), count).reshape(bshape);
                       Tensor mdyx = div(both.narrow(0, C, C), count).reshape(bshape);
                       Tensor scale = w.defined() ? mul(invstd, w.to(sdt)) : invstd;
                       // dx = gamma invstd (dy - mean(dy) - xhat mean(dy xhat)), the means over the global batch
                       Tensor dx = mul(sub(sub(gy, mdy), mul(xh, mdyx)), scale.reshape(bshape)).to(xs.dtype());
                       return std::vector<Tensor>{dx, w.defined() ? sdyx.to(pdt) : Tensor(), sdy.to(pdt)};
                     });
  }
  return y;
}

int convert_sync_batch_norm(nn::Module& m, Communicator& comm) {
  int n = 0;
  for (auto& [name, mod] : m.named_modules()) {
    if (auto* bn = dynamic_cast<nn::BatchNorm*>(mod)) {
      bn->set_sync(&comm);
      ++n;
    }
  }
  return n;
}

}  // namespace selfsup::dist
