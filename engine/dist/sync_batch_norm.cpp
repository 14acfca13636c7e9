// SyncBN from differentiable-op building blocks (run without autograd) and one explicit backward node, so
// the same code serves CPU (MPI) and CUDA (NCCL) tensors.
#include "engine/dist/sync_batch_norm.h"

#include "engine/autograd/grad_mode.h"
#include "engine/autograd/node.h"
#include "engine/nn/layers.h"
#include "engine/ops/ops.h"

namespace selfsup::dist {

Tensor sync_batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                       const Tensor& bias, double momentum, double eps, Communicator& comm) {
  SELFSUP_CHECK(x.dim() == 2 || x.dim() == 4, "sync_batch_norm: input must be (N, C) or (N, C, H, W), got ",
                shape_str(x.sizes()));
  const int64_t C = x.size(1);
  const std::vector<int64_t> dims = x.dim() == 4 ? std::vector<int64_t>{0, 2, 3} : std::vector<int64_t>{0};
  const Shape bshape = x.dim() == 4 ? Shape{1, C, 1, 1} : Shape{1, C};
  const DType pdt = batch_norm_param_dtype(x.dtype());
  // Statistics and their gradients are summed in float64 for float32/64 inputs (float32 for 16-bit ones), as
  // the BN kernels accumulate in double: per-channel sums over n H W values in float32 lose digits, and
  // sum(dy) cancels heavily (measured: 0.5% error in conv1's gradient at 28 x 28 with float32 sums).
  const DType sdt = x.dtype() == DType::f32 || x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor mean, invstd, y;
  double count = 0;
  {
    NoGradGuard ng;
    Tensor xs = x.detach().to(sdt);
    // (C + 1): per-channel sums and this rank's count, summed over ranks -> the global mean.
    Tensor s1 = cat({sum(xs, dims), Tensor::full({1}, static_cast<double>(x.numel() / C), sdt, x.device())}, 0);
    comm.all_reduce(s1, ReduceOp::sum);
    count = s1.narrow(0, C, 1).item();
    SELFSUP_CHECK(count > 1, "sync_batch_norm: needs more than one value per channel over all ranks, got ", count);
    mean = div(s1.narrow(0, 0, C), count);
    Tensor xc = sub(xs, mean.reshape(bshape));
    Tensor s2 = sum(mul(xc, xc), dims).contiguous();  // (C) squared deviations
    comm.all_reduce(s2, ReduceOp::sum);
    Tensor var = div(s2, count);
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
