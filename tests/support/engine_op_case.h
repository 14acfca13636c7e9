// The OpCase table (ARCHITECTURE.md, "Rules every op follows"): one row per op configuration. Rows are
// registered from tests/ops/op_cases_*.cpp with SELFSUP_OP_CASES; tests/ops/test_op_table.cpp runs every
// row: a float64 gradient check, and float32 vs float64 forward agreement (the CUDA-vs-CPU comparison
// runs the same rows on a GPU).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/core/tensor.h"
#include "tests/support/engine_gradcheck.h"

namespace selfsup::testing {

// Builds input i of a case in the given dtype (float64 for the gradcheck, float32 for the float check).
using InputMaker = std::function<Tensor(size_t i, DType dtype, Generator& gen)>;

struct OpCase {
  std::string name;         // "family/variant", e.g. "add/broadcast_rows"
  std::vector<Shape> shapes;  // default inputs: randn of these shapes (used when make_input is empty)
  OpFn fn;                  // inputs -> output (may permute/slice its inputs to test strided paths)
  InputMaker make_input;    // optional: custom inputs (positive values, int targets, ...)
  std::vector<bool> differentiable;  // per input; default: all floating inputs
  GradcheckOptions grad{};
  double f32_atol = 1e-4, f32_rtol = 1e-3;  // float32 forward vs float64 forward
};

std::vector<OpCase>& op_cases();

struct OpCaseRegistrar {
  explicit OpCaseRegistrar(std::vector<OpCase> cases);
};

// Inputs of a case: make_input or randn, with requires_grad set on the differentiable floating ones.
std::vector<Tensor> make_case_inputs(const OpCase& c, DType dtype, uint64_t seed);

}  // namespace selfsup::testing

#define SELFSUP_OP_CASES_CAT2(a, b) a##b
#define SELFSUP_OP_CASES_CAT(a, b) SELFSUP_OP_CASES_CAT2(a, b)
#define SELFSUP_OP_CASES(...) \
  static ::selfsup::testing::OpCaseRegistrar SELFSUP_OP_CASES_CAT(op_cases_, __LINE__)(__VA_ARGS__)
