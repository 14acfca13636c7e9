// Float64 central-difference gradient check. For f: inputs -> output, with a fixed random cotangent w,
// compares the gradient of L = sum(w * f(inputs)) from backward() with (L(x + eps e_k) - L(x - eps e_k)) / 2eps
// for every element k of every input that requires grad.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/core/tensor.h"

namespace selfsup::testing {

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-6;
  double rtol = 1e-5;
};

// Inputs must be contiguous float64 leaves; those with requires_grad are checked. Returns "" on success,
// otherwise a description of the first mismatch (input, element, analytic, numeric).
std::string gradcheck(const OpFn& f, const std::vector<Tensor>& inputs, const GradcheckOptions& opt = {});

// Max |a - b| over elements, and whether all |a - b| <= atol + rtol |b| (shapes must match).
struct CloseResult {
  bool ok;
  double max_abs;
  int64_t worst_index;
  std::string message;
};
CloseResult allclose(const Tensor& actual, const Tensor& expected, double atol, double rtol);
CloseResult allclose(const std::vector<double>& actual, const std::vector<double>& expected, double atol, double rtol);

}  // namespace selfsup::testing
