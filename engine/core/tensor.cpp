// Tensor: factories, metadata, views (with their backward), printing, in-place updates.
#include "engine/core/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <ostream>

#include "engine/autograd/grad_mode.h"
#include "engine/autograd/node.h"
#include "engine/core/cuda_context.h"
#include "engine/ops/dispatch.h"
#include "engine/ops/op_utils.h"
#include "engine/ops/ops.h"

namespace selfsup {

using ops_detail::operand;

namespace {

std::shared_ptr<TensorImpl> make_impl(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) SELFSUP_CHECK(d >= 0, "empty: negative dimension in shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype), device);
  impl->sizes = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return impl;
}

// A view of `base` with new geometry: shares storage, no autograd history yet.
Tensor make_view(const Tensor& base, Shape sizes, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->sizes = std::move(sizes);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

// Replaces one -1 in `shape` so that it holds `numel` elements.
Shape infer_shape(Shape shape, int64_t numel, const char* op, const Shape& from) {
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      SELFSUP_CHECK(infer < 0, op, ": only one dimension can be -1, got ", shape_str(shape));
      infer = static_cast<int>(i);
    } else {
      SELFSUP_CHECK(shape[i] >= 0, op, ": invalid dimension ", shape[i], " in ", shape_str(shape));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    SELFSUP_CHECK(known != 0 && numel % known == 0, op, ": cannot reshape a tensor of shape ", shape_str(from),
                  " (", numel, " elements) into ", shape_str(shape));
    shape[infer] = numel / known;
  }
  SELFSUP_CHECK(shape_numel(shape) == numel, op, ": cannot reshape a tensor of shape ", shape_str(from), " (",
                numel, " elements) into ", shape_str(shape));
  return shape;
}

// Strides for viewing (old_sizes, old_strides) as new_sizes without copying, if possible (PyTorch's rule:
// each run of dims that is contiguous in memory can be re-split freely).
std::optional<Shape> view_strides(const Shape& old_sizes, const Shape& old_strides, const Shape& new_sizes) {
  Shape ns(new_sizes.size());
  if (old_sizes.empty()) return contiguous_strides(new_sizes);
  if (shape_numel(old_sizes) == 0) return contiguous_strides(new_sizes);
  int64_t view_d = static_cast<int64_t>(new_sizes.size()) - 1;
  int64_t chunk_base_stride = old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t td = static_cast<int64_t>(old_sizes.size()) - 1; td >= 0; --td) {
    tensor_numel *= old_sizes[td];
    if (td == 0 || (old_sizes[td - 1] != 1 && old_strides[td - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_sizes[view_d] == 1)) {
        ns[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_sizes[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (td > 0) {
        chunk_base_stride = old_strides[td - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return ns;
}

}  // namespace

// ---------------------------------------------------------------- factories

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  return Tensor(make_impl(shape, dtype, device));
}

Tensor Tensor::empty_channels_last(const Shape& shape, DType dtype, Device device) {
  SELFSUP_CHECK(shape.size() == 4, "empty_channels_last: expected a 4-d shape (N, C, H, W), got ", shape_str(shape));
  auto impl = make_impl(shape, dtype, device);
  const int64_t C = shape[1], H = shape[2], W = shape[3];
  impl->strides = {H * W * C, 1, W * C, C};
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  NoGradGuard ng;
  t.fill_(value);
  return t;
}

Tensor Tensor::arange(double start, double end, double step, DType dtype) {
  SELFSUP_CHECK(step != 0, "arange: step must be non-zero");
  int64_t n = std::max<int64_t>(0, static_cast<int64_t>(std::ceil((end - start) / step)));
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = start + static_cast<double>(i) * step;
  return from_vector(v, {n}).to(dtype);
}

Tensor Tensor::rand(const Shape& shape, DType dtype, Generator* gen) {
  Generator& g = gen ? *gen : default_generator();
  Tensor t = empty(shape, dtype);
  int64_t n = t.numel();
  SELFSUP_KERNEL_CALL(t.device(), fill_uniform)(dtype, n, g.seed(), g.stream(), g.take(n), t.raw_data());
  return t;
}

Tensor Tensor::randn(const Shape& shape, DType dtype, Generator* gen) {
  Generator& g = gen ? *gen : default_generator();
  Tensor t = empty(shape, dtype);
  int64_t n = t.numel();
  SELFSUP_KERNEL_CALL(t.device(), fill_normal)(dtype, n, g.seed(), g.stream(), g.take(n), t.raw_data());
  return t;
}

Tensor Tensor::from_blob(const void* data, const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  if (t.numel() > 0) std::memcpy(t.raw_data(), data, static_cast<size_t>(t.numel()) * dtype_size(dtype));
  return t;
}
Tensor Tensor::from_vector(const std::vector<float>& v, const Shape& shape) {
  SELFSUP_CHECK(static_cast<int64_t>(v.size()) == shape_numel(shape), "from_vector: ", v.size(),
                " values for shape ", shape_str(shape));
  return from_blob(v.data(), shape, DType::f32);
}
Tensor Tensor::from_vector(const std::vector<double>& v, const Shape& shape) {
  SELFSUP_CHECK(static_cast<int64_t>(v.size()) == shape_numel(shape), "from_vector: ", v.size(),
                " values for shape ", shape_str(shape));
  return from_blob(v.data(), shape, DType::f64);
}
Tensor Tensor::from_vector(const std::vector<int64_t>& v, const Shape& shape) {
  SELFSUP_CHECK(static_cast<int64_t>(v.size()) == shape_numel(shape), "from_vector: ", v.size(),
                " values for shape ", shape_str(shape));
  return from_blob(v.data(), shape, DType::i64);
}
Tensor Tensor::scalar(double value, DType dtype) { return full({}, value, dtype); }

// ---------------------------------------------------------------- metadata

int64_t Tensor::size(int64_t d) const { return sizes()[wrap_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim(d, dim(), "stride")]; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (sizes()[i] == 1) continue;
    if (strides()[i] != expected) return false;
    expected *= sizes()[i];
  }
  return true;
}

bool Tensor::is_channels_last() const {
  if (dim() != 4) return false;
  int64_t expected = 1;
  for (int64_t i : {1, 3, 2, 0}) {
    if (sizes()[i] == 1) continue;
    if (strides()[i] != expected) return false;
    expected *= sizes()[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  if (!impl().storage || !impl().storage->data()) return nullptr;
  return static_cast<char*>(impl().storage->data()) + offset() * static_cast<int64_t>(dtype_size(dtype()));
}

double Tensor::item() const {
  SELFSUP_CHECK(numel() == 1, "item: expected a one-element tensor, got shape ", shape_str(sizes()));
  return to_vector()[0];
}

std::vector<double> Tensor::to_vector() const {
  Tensor c = detach().to(Device::cpu()).to(DType::f64).contiguous();
  const double* p = c.data_ptr<double>();
  return std::vector<double>(p, p + c.numel());
}

std::string Tensor::str() const {
  if (!defined()) return "Tensor(undefined)";
  std::string s = str_cat("Tensor(", shape_str(sizes()), ", ", dtype_name(dtype()), ", ", device().str());
  if (requires_grad()) s += grad_fn() ? str_cat(", grad_fn=", "recorded") : ", requires_grad";
  s += ") [";
  std::vector<double> v = to_vector();
  const size_t n = v.size(), show = 6;
  for (size_t i = 0; i < n; ++i) {
    if (n > show && i == show / 2) {
      s += "..., ";
      i = n - show / 2;
    }
    s += str_cat(v[i], i + 1 < n ? ", " : "");
  }
  return s + "]";
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

// ---------------------------------------------------------------- views

Tensor Tensor::view(const Shape& shape) const {
  Shape ns = infer_shape(shape, numel(), "view", sizes());
  auto st = view_strides(sizes(), strides(), ns);
  SELFSUP_CHECK(st.has_value(), "view: shape ", shape_str(ns), " is incompatible with the strides ",
                shape_str(strides()), " of a tensor of shape ", shape_str(sizes()), " (use reshape)");
  Tensor out = make_view(*this, ns, *st, offset());
  Shape in_shape = sizes();
  autograd::record("view", {*this}, {out}, [in_shape](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0].reshape(in_shape)};
  });
  return out;
}

Tensor Tensor::reshape(const Shape& shape) const {
  Shape ns = infer_shape(shape, numel(), "reshape", sizes());
  if (view_strides(sizes(), strides(), ns)) return view(ns);
  return contiguous().view(ns);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  SELFSUP_CHECK(static_cast<int64_t>(dims.size()) == dim(), "permute: got ", dims.size(),
                " dims for a tensor of shape ", shape_str(sizes()));
  Shape ns(dims.size()), nst(dims.size());
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    int d = wrap_dim(dims[i], dim(), "permute");
    SELFSUP_CHECK(inverse[d] < 0, "permute: dim ", d, " repeated in ", shape_str(Shape(dims)));
    inverse[d] = static_cast<int64_t>(i);
    ns[i] = sizes()[d];
    nst[i] = strides()[d];
  }
  Tensor out = make_view(*this, ns, nst, offset());
  autograd::record("permute", {*this}, {out}, [inverse](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0].permute(inverse)};
  });
  return out;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  std::vector<int64_t> p(static_cast<size_t>(dim()));
  for (int64_t i = 0; i < dim(); ++i) p[i] = i;
  std::swap(p[wrap_dim(d0, dim(), "transpose")], p[wrap_dim(d1, dim(), "transpose")]);
  return permute(p);
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  int dd = wrap_dim(d, dim(), "narrow");
  if (start < 0) start += sizes()[dd];
  return slice(dd, start, start + length);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  int dd = wrap_dim(d, dim(), "slice");
  const int64_t n = sizes()[dd];
  SELFSUP_CHECK(step > 0, "slice: step must be positive, got ", step);
  SELFSUP_CHECK(start >= 0 && start <= end && end <= n, "slice: range [", start, ", ", end,
                ") out of bounds for dim ", dd, " of size ", n, " (tensor shape ", shape_str(sizes()), ")");
  Shape ns = sizes(), nst = strides();
  ns[dd] = (end - start + step - 1) / step;
  nst[dd] = strides()[dd] * step;
  Tensor out = make_view(*this, ns, nst, offset() + start * strides()[dd]);
  Shape in_shape = sizes();
  autograd::record("slice", {*this}, {out}, [in_shape, dd, start, end, step](const std::vector<Tensor>& g) {
    Tensor z = Tensor::zeros(in_shape, g[0].dtype(), g[0].device());
    z.slice(dd, start, end, step).copy_(g[0]);
    return std::vector<Tensor>{z};
  });
  return out;
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  int dd = wrap_dim(d, dim(), "select");
  int64_t n = sizes()[dd];
  SELFSUP_CHECK(index >= -n && index < n, "select: index ", index, " out of range for dim ", dd, " of size ", n);
  if (index < 0) index += n;
  return slice(dd, index, index + 1).squeeze(dd);
}

Tensor Tensor::expand(const Shape& shape) const {
  SELFSUP_CHECK(static_cast<int64_t>(shape.size()) >= dim(), "expand: cannot expand shape ", shape_str(sizes()),
                " to fewer dimensions ", shape_str(shape));
  const size_t lead = shape.size() - sizes().size();
  Shape ns(shape.size()), nst(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i < lead) {
      SELFSUP_CHECK(shape[i] >= 0, "expand: new leading dimension must be non-negative in ", shape_str(shape));
      ns[i] = shape[i];
      nst[i] = 0;
      continue;
    }
    int64_t cur = sizes()[i - lead], want = shape[i] == -1 ? cur : shape[i];
    SELFSUP_CHECK(cur == want || cur == 1, "expand: cannot expand shape ", shape_str(sizes()), " to ",
                  shape_str(shape), " (dim ", i, ": ", cur, " vs ", want, ")");
    ns[i] = want;
    nst[i] = cur == want ? strides()[i - lead] : 0;
  }
  Tensor out = make_view(*this, ns, nst, offset());
  Shape in_shape = sizes();
  autograd::record("expand", {*this}, {out}, [in_shape](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{ops_detail::sum_to(g[0], in_shape)};
  });
  return out;
}

Tensor Tensor::squeeze() const {
  Shape ns;
  for (int64_t d : sizes())
    if (d != 1) ns.push_back(d);
  return reshape(ns);
}

Tensor Tensor::squeeze(int64_t d) const {
  int dd = wrap_dim(d, dim(), "squeeze");
  if (sizes()[dd] != 1) return *this;
  Shape ns = sizes();
  ns.erase(ns.begin() + dd);
  return reshape(ns);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  int dd = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape ns = sizes();
  ns.insert(ns.begin() + dd, 1);
  return reshape(ns);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  int s = wrap_dim(start_dim, dim(), "flatten"), e = wrap_dim(end_dim, dim(), "flatten");
  SELFSUP_CHECK(s <= e, "flatten: start_dim ", s, " after end_dim ", e);
  Shape ns(sizes().begin(), sizes().begin() + s);
  int64_t m = 1;
  for (int i = s; i <= e; ++i) m *= sizes()[i];
  ns.push_back(m);
  ns.insert(ns.end(), sizes().begin() + e + 1, sizes().end());
  return reshape(ns);
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::channels_last() const {
  if (is_channels_last()) return *this;
  SELFSUP_CHECK(dim() == 4, "channels_last: expected a 4-d tensor (N, C, H, W), got ", shape_str(sizes()));
  Tensor out = empty_channels_last(sizes(), dtype(), device());
  SELFSUP_KERNEL_CALL(device(), copy_cast)(static_cast<int>(dim()), sizes().data(), dtype(), operand(out), dtype(),
                                           operand(*this));
  autograd::record("channels_last", {*this}, {out},
                   [](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0]}; });
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = empty(sizes(), dtype(), device());
  SELFSUP_KERNEL_CALL(device(), copy_cast)(static_cast<int>(dim()), sizes().data(), dtype(), operand(out), dtype(),
                                           operand(*this));
  autograd::record("clone", {*this}, {out}, [](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0]}; });
  return out;
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = storage();
  impl->sizes = sizes();
  impl->strides = strides();
  impl->offset = offset();
  impl->dtype = dtype();
  return Tensor(std::move(impl));
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype()) return *this;
  Tensor out = empty(sizes(), dt, device());
  SELFSUP_KERNEL_CALL(device(), copy_cast)(static_cast<int>(dim()), sizes().data(), dt, operand(out), dtype(),
                                           operand(*this));
  if (is_floating(dt) && is_floating(dtype())) {
    DType in_dt = dtype();
    autograd::record("to", {*this}, {out}, [in_dt](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{g[0].to(in_dt)};
    });
  }
  return out;
}

// Between devices: a strided tensor is made contiguous on its own device first (one kernel there, one
// plain copy across). Differentiable: the gradient goes back with to(source device).
Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  check_device(d);
  Tensor src = contiguous();
  Tensor out = empty(sizes(), dtype(), d);
  copy_bytes(out.raw_data(), d, src.raw_data(), src.device(), static_cast<size_t>(numel()) * dtype_size(dtype()));
  if (is_floating(dtype())) {
    Device from = device();
    autograd::record("to_device", {src}, {out}, [from](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{g[0].to(from)};
    });
  }
  return out;
}

// ---------------------------------------------------------------- autograd entry points

Tensor& Tensor::set_requires_grad(bool r) {
  SELFSUP_CHECK(!r || is_floating(dtype()), "set_requires_grad: only floating tensors can require grad, got ",
                dtype_name(dtype()));
  SELFSUP_CHECK(is_leaf() || r, "set_requires_grad(false) on a non-leaf tensor: use detach()");
  impl().requires_grad = r;
  return *this;
}

void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  SELFSUP_CHECK(requires_grad(), "backward: tensor of shape ", shape_str(sizes()),
                " does not require grad and has no grad_fn");
  Tensor seed = grad;
  if (!seed.defined()) {
    SELFSUP_CHECK(numel() == 1, "backward: grad can be implicitly created only for a one-element output, got shape ",
                  shape_str(sizes()), grad_fn() ? str_cat(" from op '", grad_fn()->name(), "'") : std::string(),
                  "; pass a gradient of the same shape");
    seed = ones(sizes(), dtype(), device());
  }
  SELFSUP_CHECK(seed.sizes() == sizes(), "backward: gradient shape ", shape_str(seed.sizes()),
                " does not match output shape ", shape_str(sizes()));
  autograd::run_backward({*this}, {seed}, retain_graph);
}

void Tensor::register_grad_ready_hook(GradReadyHook hook) const {
  SELFSUP_CHECK(is_leaf() && requires_grad(), "register_grad_ready_hook: only leaf tensors that require grad");
  impl().grad_ready_hooks.push_back(std::move(hook));
}

// ---------------------------------------------------------------- in-place

Tensor& Tensor::fill_(double value) {
  ops_detail::check_inplace(*this, "fill_");
  if (numel() > 0) {
    Tensor& self = *this;
    // The fill kernel covers float32/float64 (and bfloat16 on CUDA, whose unary kernels take it).
    const bool kernel_fill =
        dtype() == DType::f32 || dtype() == DType::f64 || (device().is_cuda() && dtype() == DType::bf16);
    if (kernel_fill) {
      SELFSUP_KERNEL_CALL(device(), unary)(dtype(), kernels::UnaryOp::fill, static_cast<int>(dim()),
                                           sizes().data(), operand(self), operand(self), value, 0.0);
    } else {  // other dtypes: convert one value and broadcast it
      Tensor v = from_vector(std::vector<double>{value}, {}).to(dtype()).to(device());
      Tensor e = v.expand(sizes());
      SELFSUP_KERNEL_CALL(device(), copy_cast)(static_cast<int>(dim()), sizes().data(), dtype(), operand(self),
                                               dtype(), operand(e));
    }
  }
  bump_version();
  return *this;
}

Tensor& Tensor::zero_() { return fill_(0.0); }

Tensor& Tensor::copy_(const Tensor& src) {
  ops_detail::check_inplace(*this, "copy_");
  // Across devices the source moves first (copy_ records no autograd history, so detach).
  Tensor s = (src.device() == device() ? src : src.detach().to(device())).expand(sizes());
  SELFSUP_KERNEL_CALL(device(), copy_cast)(static_cast<int>(dim()), sizes().data(), dtype(), operand(*this),
                                           s.dtype(), operand(s));
  bump_version();
  return *this;
}

namespace {
// self = self (op) other, other broadcast to self's shape and converted to its dtype.
Tensor& binary_inplace(Tensor& self, const Tensor& other, kernels::BinaryOp op, const char* name) {
  ops_detail::check_inplace(self, name);
  ops_detail::check_same_device(self, other, name);
  Tensor o = other.to(self.dtype()).expand(self.sizes());
  SELFSUP_KERNEL_CALL(self.device(), binary)(self.dtype(), op, static_cast<int>(self.dim()), self.sizes().data(),
                                             operand(self), operand(self), operand(o));
  self.bump_version();
  return self;
}
// self = a * self + b
Tensor& affine_inplace(Tensor& self, double a, double b, const char* name) {
  ops_detail::check_inplace(self, name);
  SELFSUP_KERNEL_CALL(self.device(), unary)(self.dtype(), kernels::UnaryOp::affine, static_cast<int>(self.dim()),
                                            self.sizes().data(), operand(self), operand(self), a, b);
  self.bump_version();
  return self;
}
}  // namespace

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  if (alpha == 1.0) return binary_inplace(*this, other, kernels::BinaryOp::add, "add_");
  ops_detail::check_inplace(*this, "add_");
  NoGradGuard ng;
  return binary_inplace(*this, mul(other, alpha), kernels::BinaryOp::add, "add_");
}
Tensor& Tensor::mul_(const Tensor& other) { return binary_inplace(*this, other, kernels::BinaryOp::mul, "mul_"); }
Tensor& Tensor::div_(const Tensor& other) { return binary_inplace(*this, other, kernels::BinaryOp::div, "div_"); }
Tensor& Tensor::mul_(double s) { return affine_inplace(*this, s, 0.0, "mul_"); }
Tensor& Tensor::add_(double s) { return affine_inplace(*this, 1.0, s, "add_"); }

Tensor& Tensor::clamp_(double lo, double hi) {
  ops_detail::check_inplace(*this, "clamp_");
  SELFSUP_KERNEL_CALL(device(), unary)(dtype(), kernels::UnaryOp::clamp, static_cast<int>(dim()), sizes().data(),
                                       operand(*this), operand(*this), lo, hi);
  bump_version();
  return *this;
}

Tensor& Tensor::addcmul_(const Tensor& a, const Tensor& b, double value) {
  ops_detail::check_inplace(*this, "addcmul_");
  NoGradGuard ng;
  return add_(mul(a, b), value);
}
Tensor& Tensor::addcdiv_(const Tensor& a, const Tensor& b, double value) {
  ops_detail::check_inplace(*this, "addcdiv_");
  NoGradGuard ng;
  return add_(div(a, b), value);
}

// ---------------------------------------------------------------- random

Generator& default_generator() {
  static Generator g(0, 0);
  return g;
}

void manual_seed(uint64_t seed) { default_generator() = Generator(seed, 0); }

}  // namespace selfsup
