#include "tests/support/engine_op_case.h"

namespace selfsup::testing {

std::vector<OpCase>& op_cases() {
  static std::vector<OpCase> cases;
  return cases;
}

OpCaseRegistrar::OpCaseRegistrar(std::vector<OpCase> cases) {
  for (auto& c : cases) op_cases().push_back(std::move(c));
}

std::vector<Tensor> make_case_inputs(const OpCase& c, DType dtype, uint64_t seed) {
  Generator gen(seed, 0);
  std::vector<Tensor> inputs;
  size_t n = c.shapes.size();
  for (size_t i = 0; i < n; ++i) {
    Tensor t = c.make_input ? c.make_input(i, dtype, gen) : Tensor::randn(c.shapes[i], dtype, &gen);
    bool diff = c.differentiable.empty() ? is_floating(t.dtype()) : c.differentiable[i];
    if (diff && is_floating(t.dtype())) t.set_requires_grad(true);
    inputs.push_back(t);
  }
  return inputs;
}

}  // namespace selfsup::testing
