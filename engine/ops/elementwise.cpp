// Elementwise ops: broadcasting, dtype promotion, and their derivatives.
#include "engine/autograd/grad_mode.h"
#include "engine/autograd/node.h"
#include "engine/ops/op_utils.h"
#include "engine/ops/ops.h"

namespace selfsup {

using autograd::SavedTensor;
using kernels::BinaryOp;
using kernels::UnaryBwdOp;
using kernels::UnaryOp;
using ops_detail::grad_like;
using ops_detail::operand;
using Grads = std::vector<Tensor>;

namespace ops_detail {

void check_inplace(const Tensor& t, const char* op) {
  SELFSUP_CHECK(!(GradMode::enabled() && t.requires_grad()), op,
                ": in-place operation on a tensor that requires grad (shape ", shape_str(t.sizes()),
                "); run it under NoGradGuard (as optimizers do) or use the out-of-place op");
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.sizes() == shape) return g;
  const int64_t lead = g.dim() - static_cast<int64_t>(shape.size());
  SELFSUP_CHECK(lead >= 0, "sum_to: cannot reduce shape ", shape_str(g.sizes()), " to ", shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < g.dim(); ++i)
    if (i < lead || (shape[i - lead] == 1 && g.sizes()[i] != 1)) dims.push_back(i);
  Tensor r = dims.empty() ? g : sum(g, dims, /*keepdim=*/true);
  return r.reshape(shape);
}

Tensor grad_like(const Tensor& g, const Tensor& input) { return sum_to(g, input.sizes()).to(input.dtype()); }
Tensor grad_like(const Tensor& g, const InputMeta& input) { return sum_to(g, input.sizes).to(input.dtype); }

}  // namespace ops_detail

namespace {

// A 0-dim CPU tensor used with a tensor on another device moves there (as PyTorch treats CPU scalars).
Tensor scalar_to_device_of(const Tensor& t, const Tensor& other) {
  if (t.device() != other.device() && t.dim() == 0 && t.device().is_cpu()) return t.to(other.device());
  return t;
}

// Computes `op` on a and b broadcast to a common shape, in their promoted dtype; no autograd.
Tensor binary_raw(BinaryOp op, const Tensor& a_in, const Tensor& b_in, const char* name) {
  const Tensor a = scalar_to_device_of(a_in, b_in), b = scalar_to_device_of(b_in, a_in);
  ops_detail::check_same_device(a, b, name);
  NoGradGuard ng;
  DType dt = promote_types(a.dtype(), b.dtype());
  Shape shape = broadcast_shapes(a.sizes(), b.sizes(), name);
  Tensor ae = a.to(dt).expand(shape), be = b.to(dt).expand(shape);
  bool is_cmp = op >= BinaryOp::eq;
  Tensor out = ops_detail::empty_like_inputs(shape, is_cmp ? DType::b8 : dt, a.device(), {a, b});
  if (is_cmp) {
    SELFSUP_KERNEL_CALL(a.device(), compare)(dt, op, static_cast<int>(shape.size()), shape.data(), operand(out),
                                             operand(ae), operand(be));
  } else {
    SELFSUP_KERNEL_CALL(a.device(), binary)(dt, op, static_cast<int>(shape.size()), shape.data(), operand(out),
                                            operand(ae), operand(be));
  }
  return out;
}

Tensor unary_raw(UnaryOp op, const Tensor& a, double p0, double p1, const char* name) {
  ops_detail::check_floating(a, name);
  Tensor out = ops_detail::empty_like_inputs(a.sizes(), a.dtype(), a.device(), {a});
  SELFSUP_KERNEL_CALL(a.device(), unary)(a.dtype(), op, static_cast<int>(a.dim()), a.sizes().data(), operand(out),
                                         operand(a), p0, p1);
  return out;
}

// dx = dy * f'(x) through the unary_bwd kernel; y is the forward output (or x when unused).
Tensor unary_grad(UnaryBwdOp op, const Tensor& dy, const Tensor& x, const Tensor& y, double p0, double p1) {
  Tensor dx = ops_detail::empty_like_inputs(x.sizes(), x.dtype(), x.device(), {x, dy});
  Tensor g = dy.to(x.dtype());
  SELFSUP_KERNEL_CALL(x.device(), unary_bwd)(x.dtype(), op, static_cast<int>(x.dim()), x.sizes().data(),
                                             operand(dx), operand(g), operand(x), operand(y), p0, p1);
  return dx;
}

// A unary op whose derivative the unary_bwd kernel computes.
Tensor unary_with_grad(UnaryOp op, UnaryBwdOp bop, const Tensor& a, const char* name, double p0 = 0,
                       double p1 = 0) {
  Tensor out = unary_raw(op, a, p0, p1, name);
  if (autograd::needs_grad({a})) {
    SavedTensor sx = a, sy = out;
    std::string n = name;
    autograd::record(name, {a}, {out}, [sx, sy, bop, p0, p1, n](const Grads& g) {
      Tensor x = sx.unpack(n), y = sy.unpack(n);
      return Grads{unary_grad(bop, g[0], x, y, p0, p1)};
    });
  }
  return out;
}

// a * x + b (float) with derivative a.
Tensor affine(const Tensor& x, double a, double b, const char* name) {
  if (!is_floating(x.dtype()))
    return binary_raw(BinaryOp::add, binary_raw(BinaryOp::mul, x, Tensor::full({}, a, x.dtype(), x.device()), name),
                      Tensor::full({}, b, x.dtype(), x.device()), name);
  Tensor out = unary_raw(UnaryOp::affine, x, a, b, name);
  autograd::record(name, {x}, {out}, [a](const Grads& g) { return Grads{mul(g[0], a)}; });
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::add, a, b, "add");
  autograd::record("add", {a, b}, {out}, [a_meta = ops_detail::InputMeta(a), b_meta = ops_detail::InputMeta(b)](const Grads& g) {
    return Grads{grad_like(g[0], a_meta), grad_like(g[0], b_meta)};
  });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::sub, a, b, "sub");
  autograd::record("sub", {a, b}, {out}, [a_meta = ops_detail::InputMeta(a), b_meta = ops_detail::InputMeta(b)](const Grads& g) {
    return Grads{grad_like(g[0], a_meta), grad_like(neg(g[0]), b_meta)};
  });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::mul, a, b, "mul");
  if (autograd::needs_grad({a, b})) {
    SavedTensor sa = a, sb = b;
    autograd::record("mul", {a, b}, {out}, [sa, sb](const Grads& g) {
      Tensor x = sa.unpack("mul"), y = sb.unpack("mul");
      return Grads{grad_like(mul(g[0], y), x), grad_like(mul(g[0], x), y)};
    });
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::div, a, b, "div");
  if (autograd::needs_grad({a, b})) {
    SavedTensor sa = a, sb = b;
    autograd::record("div", {a, b}, {out}, [sa, sb](const Grads& g) {
      Tensor x = sa.unpack("div"), y = sb.unpack("div");
      Tensor gx = div(g[0], y);
      return Grads{grad_like(gx, x), grad_like(neg(mul(gx, div(x, y))), y)};
    });
  }
  return out;
}

Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::pow, a, b, "pow");
  if (autograd::needs_grad({a, b})) {
    SavedTensor sa = a, sb = b, so = out;
    autograd::record("pow", {a, b}, {out}, [sa, sb, so](const Grads& g) {
      Tensor x = sa.unpack("pow"), y = sb.unpack("pow"), o = so.unpack("pow");
      Tensor gx = mul(g[0], mul(y, pow(x, sub(y, 1.0))));
      Tensor gy = mul(g[0], mul(o, log(x)));
      return Grads{grad_like(gx, x), grad_like(gy, y)};
    });
  }
  return out;
}

namespace {
// maximum/minimum: the gradient goes to the selected input (to a on ties).
Tensor select_binary(BinaryOp op, const Tensor& a, const Tensor& b, const char* name) {
  Tensor out = binary_raw(op, a, b, name);
  if (autograd::needs_grad({a, b})) {
    SavedTensor sa = a, sb = b;
    std::string n = name;
    autograd::record(name, {a, b}, {out}, [sa, sb, op, n](const Grads& g) {
      Tensor x = sa.unpack(n), y = sb.unpack(n);
      Tensor pick_a = op == BinaryOp::maximum ? ge(x, y) : le(x, y);
      Tensor zero = Tensor::zeros({}, g[0].dtype(), g[0].device());
      return Grads{grad_like(where(pick_a, g[0], zero), x), grad_like(where(pick_a, zero, g[0]), y)};
    });
  }
  return out;
}
}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) { return select_binary(BinaryOp::maximum, a, b, "maximum"); }
Tensor minimum(const Tensor& a, const Tensor& b) { return select_binary(BinaryOp::minimum, a, b, "minimum"); }

Tensor add(const Tensor& a, double s) { return affine(a, 1.0, s, "add"); }
Tensor sub(const Tensor& a, double s) { return affine(a, 1.0, -s, "sub"); }
Tensor mul(const Tensor& a, double s) { return affine(a, s, 0.0, "mul"); }
Tensor div(const Tensor& a, double s) { return affine(a, 1.0 / s, 0.0, "div"); }
Tensor neg(const Tensor& a) { return affine(a, -1.0, 0.0, "neg"); }

Tensor pow(const Tensor& a, double e) { return unary_with_grad(UnaryOp::pow_scalar, UnaryBwdOp::pow_scalar, a, "pow", e); }
Tensor exp(const Tensor& a) { return unary_with_grad(UnaryOp::exp, UnaryBwdOp::exp, a, "exp"); }
Tensor log(const Tensor& a) { return unary_with_grad(UnaryOp::log, UnaryBwdOp::log, a, "log"); }
Tensor sqrt(const Tensor& a) { return unary_with_grad(UnaryOp::sqrt, UnaryBwdOp::sqrt, a, "sqrt"); }
Tensor rsqrt(const Tensor& a) { return unary_with_grad(UnaryOp::rsqrt, UnaryBwdOp::rsqrt, a, "rsqrt"); }
Tensor abs(const Tensor& a) { return unary_with_grad(UnaryOp::abs, UnaryBwdOp::abs, a, "abs"); }
Tensor relu(const Tensor& a) { return unary_with_grad(UnaryOp::relu, UnaryBwdOp::relu, a, "relu"); }
Tensor sigmoid(const Tensor& a) { return unary_with_grad(UnaryOp::sigmoid, UnaryBwdOp::sigmoid, a, "sigmoid"); }
Tensor tanh(const Tensor& a) { return unary_with_grad(UnaryOp::tanh, UnaryBwdOp::tanh, a, "tanh"); }
Tensor gelu(const Tensor& a) { return unary_with_grad(UnaryOp::gelu, UnaryBwdOp::gelu, a, "gelu"); }
Tensor square(const Tensor& a) { return pow(a, 2.0); }
Tensor clamp(const Tensor& a, double lo, double hi) {
  SELFSUP_CHECK(lo <= hi, "clamp: lower bound ", lo, " above upper bound ", hi);
  return unary_with_grad(UnaryOp::clamp, UnaryBwdOp::clamp, a, "clamp", lo, hi);
}
Tensor sign(const Tensor& a) { return unary_raw(UnaryOp::sign, a, 0, 0, "sign"); }

Tensor where(const Tensor& cond, const Tensor& a_in, const Tensor& b_in) {
  const Tensor a = scalar_to_device_of(a_in, b_in), b = scalar_to_device_of(b_in, a_in);
  SELFSUP_CHECK(cond.dtype() == DType::b8 || cond.dtype() == DType::u8, "where: condition must be bool or uint8, got ",
                dtype_name(cond.dtype()));
  ops_detail::check_same_device(a, b, "where");
  ops_detail::check_same_device(cond, a, "where");
  Tensor out;
  {
    NoGradGuard ng;
    DType dt = promote_types(a.dtype(), b.dtype());
    Shape shape = broadcast_shapes(broadcast_shapes(cond.sizes(), a.sizes(), "where"), b.sizes(), "where");
    Tensor ce = cond.expand(shape), ae = a.to(dt).expand(shape), be = b.to(dt).expand(shape);
    out = Tensor::empty(shape, dt, a.device());
    SELFSUP_KERNEL_CALL(a.device(), where)(dt, static_cast<int>(shape.size()), shape.data(), operand(out),
                                           operand(ce), operand(ae), operand(be));
  }
  if (autograd::needs_grad({a, b})) {
    Tensor c = cond.detach();
    ops_detail::InputMeta a_meta(a), b_meta(b);
    autograd::record("where", {a, b}, {out}, [c, a_meta, b_meta](const Grads& g) {
      Tensor zero = Tensor::zeros({}, g[0].dtype(), g[0].device());
      return Grads{grad_like(where(c, g[0], zero), a_meta), grad_like(where(c, zero, g[0]), b_meta)};
    });
  }
  return out;
}

Tensor eq(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::eq, a, b, "eq"); }
Tensor ne(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::ne, a, b, "ne"); }
Tensor lt(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::lt, a, b, "lt"); }
Tensor le(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::le, a, b, "le"); }
Tensor gt(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::gt, a, b, "gt"); }
Tensor ge(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::ge, a, b, "ge"); }
Tensor gt(const Tensor& a, double s) { return gt(a, Tensor::full({}, s, a.dtype(), a.device())); }
Tensor lt(const Tensor& a, double s) { return lt(a, Tensor::full({}, s, a.dtype(), a.device())); }

}  // namespace selfsup
