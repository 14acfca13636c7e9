#include "tests/support/engine_gradcheck.h"

#include <cmath>

#include "engine/autograd/grad_mode.h"
#include "engine/ops/ops.h"

namespace selfsup::testing {

CloseResult allclose(const std::vector<double>& a, const std::vector<double>& b, double atol, double rtol) {
  CloseResult r{true, 0.0, -1, ""};
  if (a.size() != b.size()) {
    r.ok = false;
    r.message = str_cat("size mismatch: ", a.size(), " vs ", b.size());
    return r;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    double d = std::abs(a[i] - b[i]);
    bool bad = !(d <= atol + rtol * std::abs(b[i]));  // NaN counts as bad
    if (d > r.max_abs || std::isnan(d)) {
      r.max_abs = std::isnan(d) ? INFINITY : d;
      r.worst_index = static_cast<int64_t>(i);
    }
    if (bad && r.ok) {
      r.ok = false;
      r.message = str_cat("element ", i, ": actual ", a[i], " expected ", b[i], " (|diff| ", d, ")");
    }
  }
  return r;
}

CloseResult allclose(const Tensor& actual, const Tensor& expected, double atol, double rtol) {
  if (actual.sizes() != expected.sizes())
    return {false, INFINITY, -1,
            str_cat("shape mismatch: ", shape_str(actual.sizes()), " vs ", shape_str(expected.sizes()))};
  return allclose(actual.to_vector(), expected.to_vector(), atol, rtol);
}

namespace {
double weighted_sum(const Tensor& out, const Tensor& w) { return sum(mul(out.to(DType::f64), w)).item(); }
}  // namespace

std::string gradcheck(const OpFn& f, const std::vector<Tensor>& inputs, const GradcheckOptions& opt) {
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.requires_grad()) continue;
    if (x.dtype() != DType::f64 || !x.is_contiguous() || !x.is_leaf())
      return str_cat("gradcheck: input ", i, " must be a contiguous float64 leaf");
    x.set_grad(Tensor());
  }
  Tensor out = f(inputs);
  Generator gen(12345, 7);
  Tensor w = Tensor::randn(out.sizes(), DType::f64, &gen);
  if (!out.requires_grad()) return "gradcheck: output does not require grad";
  Tensor loss = sum(mul(out.to(DType::f64), w));
  loss.backward();
  NoGradGuard ng;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.requires_grad()) continue;
    Tensor g = x.grad();
    std::vector<double> analytic = g.defined() ? g.to_vector() : std::vector<double>(x.numel(), 0.0);
    double* p = x.data_ptr<double>();
    for (int64_t k = 0; k < x.numel(); ++k) {
      const double orig = p[k];
      p[k] = orig + opt.eps;
      x.bump_version();
      double lp = weighted_sum(f(inputs), w);
      p[k] = orig - opt.eps;
      x.bump_version();
      double lm = weighted_sum(f(inputs), w);
      p[k] = orig;
      x.bump_version();
      double numeric = (lp - lm) / (2 * opt.eps);
      double diff = std::abs(numeric - analytic[k]);
      if (!(diff <= opt.atol + opt.rtol * std::abs(numeric)))
        return str_cat("input ", i, " (shape ", shape_str(x.sizes()), ") element ", k, ": analytic ", analytic[k],
                       " numeric ", numeric, " |diff| ", diff);
    }
  }
  return "";
}

}  // namespace selfsup::testing
