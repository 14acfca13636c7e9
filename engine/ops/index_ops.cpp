// Joining, splitting and indexing: cat, stack, split, chunk, index_select, gather, scatter_add.
#include "engine/autograd/grad_mode.h"
#include "engine/autograd/node.h"
#include "engine/ops/op_utils.h"
#include "engine/ops/ops.h"

namespace selfsup {

using Grads = std::vector<Tensor>;

namespace {

// Throws unless every index lies in [0, limit), naming the op. Reads a host copy when the index lives
// on a GPU (a synchronising download: validation before the kernel, as on the CPU).
void check_index(const Tensor& index, int64_t limit, const char* op) {
  SELFSUP_CHECK(index.dtype() == DType::i64, op, ": index must be int64, got ", dtype_name(index.dtype()));
  Tensor c = index.to(Device::cpu()).contiguous();
  const int64_t* p = c.data_ptr<int64_t>();
  for (int64_t i = 0; i < c.numel(); ++i)
    SELFSUP_CHECK(p[i] >= 0 && p[i] < limit, op, ": index ", p[i], " out of range [0, ", limit, ") at position ", i);
}

// (outer, dim, inner) of a contiguous shape around `d`.
void split_dims(const Shape& s, int64_t d, int64_t& outer, int64_t& inner) {
  outer = 1;
  inner = 1;
  for (int64_t i = 0; i < static_cast<int64_t>(s.size()); ++i) {
    if (i < d) outer *= s[i];
    if (i > d) inner *= s[i];
  }
}

}  // namespace

Tensor cat(const std::vector<Tensor>& ts, int64_t dim_in) {
  SELFSUP_CHECK(!ts.empty(), "cat: expected at least one tensor");
  const Tensor& first = ts[0];
  int64_t d = wrap_dim(dim_in, first.dim(), "cat");
  Shape out_shape = first.sizes();
  out_shape[d] = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    const Tensor& t = ts[i];
    SELFSUP_CHECK(t.dim() == first.dim(), "cat: tensor ", i, " has shape ", shape_str(t.sizes()),
                  ", tensor 0 has shape ", shape_str(first.sizes()), " (ranks differ)");
    SELFSUP_CHECK(t.dtype() == first.dtype(), "cat: tensor ", i, " has dtype ", dtype_name(t.dtype()),
                  ", tensor 0 has ", dtype_name(first.dtype()));
    ops_detail::check_same_device(t, first, "cat");
    for (int64_t k = 0; k < t.dim(); ++k)
      SELFSUP_CHECK(k == d || t.sizes()[k] == first.sizes()[k], "cat: tensor ", i, " has shape ",
                    shape_str(t.sizes()), ", expected ", shape_str(first.sizes()), " except in dim ", d);
    out_shape[d] += t.sizes()[d];
  }
  Tensor out = Tensor::empty(out_shape, first.dtype(), first.device());
  std::vector<int64_t> lengths;
  {
    NoGradGuard ng;
    int64_t off = 0;
    for (const Tensor& t : ts) {
      out.narrow(d, off, t.sizes()[d]).copy_(t);
      lengths.push_back(t.sizes()[d]);
      off += t.sizes()[d];
    }
  }
  autograd::record("cat", ts, {out}, [d, lengths](const Grads& g) {
    Grads r;
    int64_t off = 0;
    for (int64_t n : lengths) {
      r.push_back(g[0].narrow(d, off, n));
      off += n;
    }
    return r;
  });
  return out;
}

Tensor stack(const std::vector<Tensor>& ts, int64_t dim) {
  SELFSUP_CHECK(!ts.empty(), "stack: expected at least one tensor");
  int64_t d = wrap_dim(dim, ts[0].dim() + 1, "stack");
  std::vector<Tensor> u;
  for (size_t i = 0; i < ts.size(); ++i) {
    SELFSUP_CHECK(ts[i].sizes() == ts[0].sizes(), "stack: tensor ", i, " has shape ", shape_str(ts[i].sizes()),
                  ", tensor 0 has shape ", shape_str(ts[0].sizes()));
    u.push_back(ts[i].unsqueeze(d));
  }
  return cat(u, d);
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  int64_t d = wrap_dim(dim, x.dim(), "split");
  SELFSUP_CHECK(split_size > 0, "split: split_size must be positive, got ", split_size);
  std::vector<Tensor> out;
  for (int64_t off = 0; off < x.sizes()[d]; off += split_size)
    out.push_back(x.narrow(d, off, std::min(split_size, x.sizes()[d] - off)));
  return out;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  SELFSUP_CHECK(chunks > 0, "chunk: chunks must be positive, got ", chunks);
  int64_t d = wrap_dim(dim, x.dim(), "chunk");
  int64_t size = (x.sizes()[d] + chunks - 1) / chunks;
  return split(x, std::max<int64_t>(size, 1), d);
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  int64_t d = wrap_dim(dim, x.dim(), "index_select");
  SELFSUP_CHECK(index.dim() == 1, "index_select: index must be 1-D, got shape ", shape_str(index.sizes()));
  check_index(index, x.sizes()[d], "index_select");
  // The kernel reads the index on the data's device (a CPU index is uploaded).
  Tensor xc = x.detach().contiguous(), ic = index.to(x.device()).contiguous();
  Shape out_shape = x.sizes();
  out_shape[d] = index.numel();
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  int64_t outer, inner;
  split_dims(x.sizes(), d, outer, inner);
  SELFSUP_KERNEL_CALL(x.device(), index_select)(outer, x.sizes()[d], inner, static_cast<int64_t>(dtype_size(x.dtype())),
                                                xc.raw_data(), ic.numel(), ic.data_ptr<int64_t>(), out.raw_data());
  Shape in_shape = x.sizes();
  autograd::record("index_select", {x}, {out}, [in_shape, d, ic](const Grads& g) {
    Shape view(g[0].dim(), 1);
    view[d] = ic.numel();
    Tensor full_index = ic.view(view).expand(g[0].sizes());
    return Grads{scatter_add(Tensor::zeros(in_shape, g[0].dtype(), g[0].device()), d, full_index, g[0])};
  });
  return out;
}

namespace {
// index must match `like` in every dim but d.
void check_index_shape(const Tensor& index, const Tensor& like, int64_t d, const char* op) {
  SELFSUP_CHECK(index.dim() == like.dim(), op, ": index of shape ", shape_str(index.sizes()),
                " must have the rank of the input ", shape_str(like.sizes()));
  for (int64_t k = 0; k < like.dim(); ++k)
    SELFSUP_CHECK(k == d || index.sizes()[k] == like.sizes()[k], op, ": index of shape ", shape_str(index.sizes()),
                  " must match input shape ", shape_str(like.sizes()), " except in dim ", d);
}
}  // namespace

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  int64_t d = wrap_dim(dim, x.dim(), "gather");
  check_index_shape(index, x, d, "gather");
  check_index(index, x.sizes()[d], "gather");
  Tensor xc = x.detach().contiguous(), ic = index.to(x.device()).contiguous();
  Tensor out = Tensor::empty(index.sizes(), x.dtype(), x.device());
  int64_t outer, inner;
  split_dims(x.sizes(), d, outer, inner);
  SELFSUP_KERNEL_CALL(x.device(), gather)(outer, x.sizes()[d], index.sizes()[d], inner,
                                          static_cast<int64_t>(dtype_size(x.dtype())), xc.raw_data(),
                                          ic.data_ptr<int64_t>(), out.raw_data());
  Shape in_shape = x.sizes();
  autograd::record("gather", {x}, {out}, [in_shape, d, ic](const Grads& g) {
    return Grads{scatter_add(Tensor::zeros(in_shape, g[0].dtype(), g[0].device()), d, ic, g[0])};
  });
  return out;
}

Tensor scatter_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) {
  int64_t d = wrap_dim(dim, self.dim(), "scatter_add");
  ops_detail::check_floating(self, "scatter_add", "self");
  SELFSUP_CHECK(src.dtype() == self.dtype(), "scatter_add: src dtype ", dtype_name(src.dtype()),
                " differs from self dtype ", dtype_name(self.dtype()));
  SELFSUP_CHECK(index.sizes() == src.sizes(), "scatter_add: index shape ", shape_str(index.sizes()),
                " must equal src shape ", shape_str(src.sizes()));
  check_index_shape(index, self, d, "scatter_add");
  check_index(index, self.sizes()[d], "scatter_add");
  Tensor out;
  {
    NoGradGuard ng;
    out = self.clone();
  }
  ops_detail::check_same_device(self, src, "scatter_add");
  Tensor ic = index.to(self.device()).contiguous(), sc = src.detach().contiguous();
  int64_t outer, inner;
  split_dims(self.sizes(), d, outer, inner);
  SELFSUP_KERNEL_CALL(self.device(), scatter_add)(self.dtype(), outer, self.sizes()[d], src.sizes()[d], inner,
                                                  out.raw_data(), ic.data_ptr<int64_t>(), sc.raw_data());
  autograd::record("scatter_add", {self, src}, {out}, [d, ic](const Grads& g) {
    return Grads{g[0], gather(g[0], d, ic)};
  });
  return out;
}

}  // namespace selfsup
