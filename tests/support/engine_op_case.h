// The OpCase table (ARCHITECTURE.md, "Rules every op follows"): one row per op configuration. Rows are
// registered from tests/ops/op_cases_*.cpp with SELFSUP_OP_CASES; tests/ops/test_op_table.cpp runs every
// row: a float64 gradient check, and float32 vs float64 agreement of the forward and of every gradient (the
// CUDA-vs-CPU comparison runs the same rows on a GPU).
#pragma once
#include <algorithm>
#include <cmath>
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
  // Float32 vs float64 on the same (float32-representable) inputs, as max|f32 - f64| / (kF32Eps * max|f64|)
  // over the tensor: the float32 arithmetic's rounding error relative to the output's scale (forward), and
  // the same for every input's gradient of sum(w * out) (backward). The bound follows the number n of terms
  // summed into one element (f32_ulps_for_terms): rounding errors of a sum grow like sqrt(n) (a random
  // walk; n at worst), measured at most 0.21 sqrt(n) on the long rows (matmul K = 1024: 6.7, conv 576
  // terms: 2.2, logsumexp's gradient over 2048: 5.9) and at most 1.5 on the small ones, which sum a few
  // dozen terms and get the default. A wrong index or a dropped term is off by ~1e6 units.
  double f32_ulps = 4, f32_grad_ulps = 4;
};

// float32 machine epsilon (2^-23); tolerances above are multiples of it.
inline constexpr double kF32Eps = 1.1920928955078125e-07;

// The float32 bound, in kF32Eps x tensor scale, for a row that sums n terms into an output element: the
// default 4 up to n = 64, then sqrt(n) / 2.
inline double f32_ulps_for_terms(double n) { return std::max(4.0, std::sqrt(n) / 2.0); }

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
