// Softmax, log-softmax, cross-entropy, MSE and L2 normalisation.
#include "engine/autograd/grad_mode.h"
#include "engine/autograd/node.h"
#include "engine/ops/op_utils.h"
#include "engine/ops/ops.h"

namespace selfsup {

using autograd::SavedTensor;
using ops_detail::check_floating;
using Grads = std::vector<Tensor>;

namespace {

// The dtype of per-row statistics (cross-entropy's loss and log-sum-exp, the L2 norm) kept beside data of
// dtype t: float32 for bfloat16 (the kernels accumulate in float and keep what they accumulated), else t.
DType stat_dtype(DType t) { return t == DType::bf16 ? DType::f32 : t; }

// (outer, dim, inner) of x around dim d.
void around(const Tensor& x, int64_t d, int64_t& outer, int64_t& n, int64_t& inner) {
  outer = 1;
  inner = 1;
  for (int64_t i = 0; i < x.dim(); ++i) {
    if (i < d) outer *= x.size(i);
    if (i > d) inner *= x.size(i);
  }
  n = x.dim() == 0 ? 1 : x.size(d);
}

Tensor softmax_impl(const Tensor& x, int64_t dim, bool log, const char* name) {
  check_floating(x, name);
  int64_t d = wrap_dim(dim, x.dim(), name), outer, n, inner;
  around(x, d, outer, n, inner);
  Tensor xc = x.detach().contiguous();
  Tensor y = Tensor::empty(x.sizes(), x.dtype(), x.device());
  SELFSUP_KERNEL_CALL(x.device(), softmax_fwd)(x.dtype(), outer, n, inner, xc.raw_data(), y.raw_data(), log);
  if (autograd::needs_grad({x})) {
    SavedTensor sy = y;
    std::string nm = name;
    autograd::record(name, {x}, {y}, [sy, outer, n, inner, log, nm](const Grads& g) {
      Tensor ys = sy.unpack(nm), gy = g[0].contiguous();
      Tensor dx = Tensor::empty(ys.sizes(), ys.dtype(), ys.device());
      SELFSUP_KERNEL_CALL(ys.device(), softmax_bwd)(ys.dtype(), outer, n, inner, ys.raw_data(), gy.raw_data(),
                                                    dx.raw_data(), log);
      return Grads{dx};
    });
  }
  return y;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false, "softmax"); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true, "log_softmax"); }

Tensor cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing) {
  check_floating(logits, "cross_entropy", "logits");
  SELFSUP_CHECK(logits.dim() == 2, "cross_entropy: logits must be (N, C), got ", shape_str(logits.sizes()));
  SELFSUP_CHECK(target.dtype() == DType::i64 && target.dim() == 1 && target.size(0) == logits.size(0),
                "cross_entropy: target must be int64 of shape (", logits.size(0), "), got ",
                dtype_name(target.dtype()), " ", shape_str(target.sizes()));
  SELFSUP_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0,
                "cross_entropy: label_smoothing must be in [0, 1], got ", label_smoothing);
  const int64_t N = logits.size(0), C = logits.size(1);
  SELFSUP_CHECK(N > 0, "cross_entropy: empty batch");
  {  // validate on a host copy (a download when the target lives on a GPU)
    Tensor th = target.to(Device::cpu()).contiguous();
    const int64_t* t = th.data_ptr<int64_t>();
    for (int64_t i = 0; i < N; ++i)
      SELFSUP_CHECK(t[i] >= 0 && t[i] < C, "cross_entropy: target ", t[i], " at position ", i, " out of range [0, ",
                    C, ")");
  }
  Tensor tc = target.to(logits.device()).contiguous();  // the kernel reads it on the logits' device
  const int64_t* t = tc.data_ptr<int64_t>();
  Tensor lc = logits.detach().contiguous();
  const DType sdt = stat_dtype(logits.dtype());  // float32 for bfloat16 logits
  Tensor rows = Tensor::empty({N}, sdt, logits.device());
  Tensor lse = Tensor::empty({N}, sdt, logits.device());
  SELFSUP_KERNEL_CALL(logits.device(), cross_entropy_fwd)(logits.dtype(), N, C, lc.raw_data(), t, label_smoothing,
                                                          rows.raw_data(), lse.raw_data());
  if (autograd::needs_grad({logits})) {
    SavedTensor sl = lc;
    autograd::record("cross_entropy", {logits}, {rows}, [sl, tc, lse, N, C, label_smoothing](const Grads& g) {
      Tensor ls = sl.unpack("cross_entropy"), gr = g[0].contiguous();
      Tensor dl = Tensor::empty({N, C}, ls.dtype(), ls.device());
      SELFSUP_KERNEL_CALL(ls.device(), cross_entropy_bwd)(ls.dtype(), N, C, ls.raw_data(), tc.data_ptr<int64_t>(),
                                                          label_smoothing, lse.raw_data(), gr.raw_data(),
                                                          dl.raw_data());
      return Grads{dl};
    });
  }
  return mean(rows);
}

Tensor mse_loss(const Tensor& input, const Tensor& target) {
  SELFSUP_CHECK(input.sizes() == target.sizes(), "mse_loss: input shape ", shape_str(input.sizes()),
                " differs from target shape ", shape_str(target.sizes()));
  Tensor d = sub(input, target);
  return mean(mul(d, d));
}

Tensor normalize(const Tensor& x, int64_t dim, double eps) {
  check_floating(x, "normalize");
  int64_t d = wrap_dim(dim, x.dim(), "normalize"), outer, n, inner;
  around(x, d, outer, n, inner);
  Tensor xc = x.detach().contiguous();
  Tensor y = Tensor::empty(x.sizes(), x.dtype(), x.device());
  Tensor norm = Tensor::empty({outer, inner}, stat_dtype(x.dtype()), x.device());
  SELFSUP_KERNEL_CALL(x.device(), l2_normalize_fwd)(x.dtype(), outer, n, inner, xc.raw_data(), eps, y.raw_data(),
                                                    norm.raw_data());
  if (autograd::needs_grad({x})) {
    SavedTensor sy = y;
    autograd::record("normalize", {x}, {y}, [sy, norm, outer, n, inner, eps](const Grads& g) {
      Tensor ys = sy.unpack("normalize"), gy = g[0].contiguous();
      Tensor dx = Tensor::empty(ys.sizes(), ys.dtype(), ys.device());
      SELFSUP_KERNEL_CALL(ys.device(), l2_normalize_bwd)(ys.dtype(), outer, n, inner, ys.raw_data(), norm.raw_data(),
                                                         eps, gy.raw_data(), dx.raw_data());
      return Grads{dx};
    });
  }
  return y;
}

}  // namespace selfsup
