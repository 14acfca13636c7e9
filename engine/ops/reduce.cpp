// Reductions. The kernel reduces the middle axis of a contiguous (outer, dim, inner) block; when the
// reduced dims are one run of adjacent dims of a contiguous tensor that is the tensor itself, otherwise
// the kept dims are permuted to the front and the reduced ones to the back (one copy).
#include <algorithm>
#include <numeric>

#include "engine/autograd/grad_mode.h"
#include "engine/autograd/node.h"
#include "engine/ops/op_utils.h"
#include "engine/ops/ops.h"

namespace selfsup {

using autograd::SavedTensor;
using kernels::ReduceOp;
using Grads = std::vector<Tensor>;

namespace {

// Sorted unique wrapped dims; empty input = all dims.
std::vector<int64_t> normalize_dims(const std::vector<int64_t>& dims, int64_t ndim, const char* op) {
  std::vector<int64_t> out;
  if (dims.empty()) {
    out.resize(static_cast<size_t>(ndim));
    std::iota(out.begin(), out.end(), 0);
    return out;
  }
  for (int64_t d : dims) out.push_back(wrap_dim(d, ndim, op));
  std::sort(out.begin(), out.end());
  SELFSUP_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(), op, ": repeated dim in ",
                shape_str(Shape(dims)));
  return out;
}

// Output shape with reduced dims removed (or kept as 1).
Shape reduced_shape(const Shape& in, const std::vector<int64_t>& dims, bool keepdim) {
  Shape out;
  for (int64_t i = 0; i < static_cast<int64_t>(in.size()); ++i) {
    bool r = std::find(dims.begin(), dims.end(), i) != dims.end();
    if (!r) out.push_back(in[i]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

// Runs the reduce kernel over `dims` of a (float) tensor; values (and indices for max/min) in the
// keepdim=false layout. No autograd.
std::pair<Tensor, Tensor> reduce_raw(ReduceOp op, const Tensor& a, const std::vector<int64_t>& dims, bool want_idx,
                                     const char* name) {
  ops_detail::check_floating(a, name);
  NoGradGuard ng;
  const int64_t nd = a.dim();
  Tensor src = a;
  int64_t outer = 1, dim = 1, inner = 1;
  const bool adjacent = dims.empty() || dims.back() - dims.front() + 1 == static_cast<int64_t>(dims.size());
  if (adjacent && a.is_contiguous()) {
    int64_t lo = dims.empty() ? 0 : dims.front(), hi = dims.empty() ? -1 : dims.back();
    for (int64_t i = 0; i < nd; ++i) (i < lo ? outer : (i <= hi ? dim : inner)) *= a.sizes()[i];
  } else {
    std::vector<int64_t> perm;
    for (int64_t i = 0; i < nd; ++i)
      if (std::find(dims.begin(), dims.end(), i) == dims.end()) perm.push_back(i);
    for (int64_t d : dims) perm.push_back(d);
    src = a.permute(perm).contiguous();
    for (int64_t i = 0; i < nd; ++i)
      (i < nd - static_cast<int64_t>(dims.size()) ? outer : dim) *= src.sizes()[i];
  }
  Shape out_shape = reduced_shape(a.sizes(), dims, false);
  SELFSUP_CHECK(dim > 0 || op == ReduceOp::sum, name, ": cannot reduce over an empty dimension (shape ",
                shape_str(a.sizes()), ")");
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  Tensor idx = want_idx ? Tensor::empty(out_shape, DType::i64, a.device()) : Tensor();
  if (dim == 0) {
    out.zero_();
  } else {
    SELFSUP_KERNEL_CALL(a.device(), reduce)(a.dtype(), op, outer, dim, inner, src.raw_data(), out.raw_data(),
                                            want_idx ? idx.data_ptr<int64_t>() : nullptr);
  }
  return {out, idx};
}

// Reshapes a reduced gradient back to keepdim form so it broadcasts against the input.
Tensor unreduce(const Tensor& g, const Shape& in_shape, const std::vector<int64_t>& dims, bool keepdim) {
  return keepdim ? g : g.reshape(reduced_shape(in_shape, dims, true));
}

}  // namespace

Tensor sum(const Tensor& a, const std::vector<int64_t>& dims_in, bool keepdim) {
  std::vector<int64_t> dims = normalize_dims(dims_in, a.dim(), "sum");
  if (!is_floating(a.dtype())) {  // counts of bools/ints: reduce in float64, return int64 as PyTorch does
    NoGradGuard ng;
    return sum(a.to(DType::f64), dims_in, keepdim).to(DType::i64);
  }
  Tensor out = reduce_raw(ReduceOp::sum, a, dims, false, "sum").first;
  if (keepdim) out = out.reshape(reduced_shape(a.sizes(), dims, true));
  Shape in_shape = a.sizes();
  autograd::record("sum", {a}, {out}, [in_shape, dims, keepdim](const Grads& g) {
    return Grads{unreduce(g[0], in_shape, dims, keepdim).expand(in_shape)};
  });
  return out;
}

Tensor mean(const Tensor& a, const std::vector<int64_t>& dims_in, bool keepdim) {
  ops_detail::check_floating(a, "mean");
  std::vector<int64_t> dims = normalize_dims(dims_in, a.dim(), "mean");
  int64_t n = 1;
  for (int64_t d : dims) n *= a.sizes()[d];
  SELFSUP_CHECK(n > 0, "mean: cannot average over an empty dimension (shape ", shape_str(a.sizes()), ")");
  return div(sum(a, dims_in, keepdim), static_cast<double>(n));
}

Tensor var(const Tensor& a, const std::vector<int64_t>& dims_in, int64_t correction, bool keepdim) {
  ops_detail::check_floating(a, "var");
  std::vector<int64_t> dims = normalize_dims(dims_in, a.dim(), "var");
  int64_t n = 1;
  for (int64_t d : dims) n *= a.sizes()[d];
  SELFSUP_CHECK(n - correction > 0, "var: ", n, " elements with correction ", correction, " (shape ",
                shape_str(a.sizes()), ")");
  Tensor centered = sub(a, mean(a, dims_in, true));
  return div(sum(mul(centered, centered), dims_in, keepdim), static_cast<double>(n - correction));
}

namespace {
std::pair<Tensor, Tensor> max_min(ReduceOp op, const Tensor& a, int64_t dim_in, bool keepdim, const char* name) {
  SELFSUP_CHECK(a.dim() > 0, name, ": needs a tensor with at least one dimension");
  int64_t d = wrap_dim(dim_in, a.dim(), name);
  auto [values, idx] = reduce_raw(op, a, {d}, true, name);
  if (keepdim) {
    values = values.unsqueeze(d);
    idx = idx.unsqueeze(d);
  }
  Shape in_shape = a.sizes();
  Tensor idx_keep = keepdim ? idx : idx.unsqueeze(d);
  autograd::record(name, {a}, {values}, [in_shape, d, keepdim, idx_keep](const Grads& g) {
    Tensor gk = keepdim ? g[0] : g[0].unsqueeze(d);
    return Grads{scatter_add(Tensor::zeros(in_shape, g[0].dtype(), g[0].device()), d, idx_keep, gk)};
  });
  return {values, idx};
}
}  // namespace

std::pair<Tensor, Tensor> max(const Tensor& a, int64_t dim, bool keepdim) {
  return max_min(ReduceOp::max, a, dim, keepdim, "max");
}
std::pair<Tensor, Tensor> min(const Tensor& a, int64_t dim, bool keepdim) {
  return max_min(ReduceOp::min, a, dim, keepdim, "min");
}
Tensor amax(const Tensor& a) { return max(a.reshape({-1}), 0).first; }
Tensor amin(const Tensor& a) { return min(a.reshape({-1}), 0).first; }
Tensor argmax(const Tensor& a, int64_t dim, bool keepdim) {
  NoGradGuard ng;
  return max(a, dim, keepdim).second;
}

Tensor logsumexp(const Tensor& a, int64_t dim_in, bool keepdim) {
  int64_t d = wrap_dim(dim_in, a.dim(), "logsumexp");
  Tensor out = reduce_raw(ReduceOp::logsumexp, a, {d}, false, "logsumexp").first;
  if (keepdim) out = out.unsqueeze(d);
  if (autograd::needs_grad({a})) {
    SavedTensor sa = a, so = out;
    autograd::record("logsumexp", {a}, {out}, [sa, so, d, keepdim](const Grads& g) {
      Tensor x = sa.unpack("logsumexp"), o = so.unpack("logsumexp");
      Tensor ok = keepdim ? o : o.unsqueeze(d), gk = keepdim ? g[0] : g[0].unsqueeze(d);
      return Grads{mul(gk, exp(sub(x, ok)))};
    });
  }
  return out;
}

}  // namespace selfsup
