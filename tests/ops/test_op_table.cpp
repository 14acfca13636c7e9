// Runs every row of the OpCase table (tests/ops/op_cases_*.cpp): float64 central-difference gradient
// check, and the float32 forward against the float64 forward on the same inputs. The CUDA comparison of the
// same rows runs in test_cuda (tests/cuda/test_cuda_ops.cpp).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>

#include "engine/autograd/grad_mode.h"
#include "tests/support/engine_op_case.h"

using namespace selfsup;
using namespace selfsup::testing;

TEST_CASE("op table: the table covers the op families") {
  std::vector<std::string> families;
  for (const OpCase& c : op_cases()) families.push_back(c.name.substr(0, c.name.find('/')));
  for (const char* f : {"add", "mul", "div", "exp", "relu", "gelu", "where", "sum", "mean", "var", "max", "logsumexp",
                        "matmul", "linear", "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "batch_norm",
                        "softmax", "log_softmax", "cross_entropy", "mse_loss", "normalize", "cat", "stack", "split",
                        "index_select", "gather", "scatter_add", "permute", "slice", "expand"}) {
    std::string family = f;
    CAPTURE(family);
    CHECK(std::find(families.begin(), families.end(), family) != families.end());
  }
}

TEST_CASE("op table: float64 gradient check of every row") {
  for (const OpCase& c : op_cases()) {
    SUBCASE(c.name.c_str()) {
      std::vector<Tensor> in = make_case_inputs(c, DType::f64, 1000 + c.name.size());
      std::string err = gradcheck(c.fn, in, c.grad);
      INFO(c.name, ": ", err);
      CHECK(err.empty());
    }
  }
}

TEST_CASE("op table: float32 forward agrees with float64 forward") {
  for (const OpCase& c : op_cases()) {
    SUBCASE(c.name.c_str()) {
      NoGradGuard ng;
      std::vector<Tensor> in64 = make_case_inputs(c, DType::f64, 77);
      std::vector<Tensor> in32;
      for (const Tensor& t : in64) in32.push_back(is_floating(t.dtype()) ? t.to(DType::f32) : t);
      Tensor out64 = c.fn(in64), out32 = c.fn(in32);
      CHECK(out32.dtype() == (is_floating(out64.dtype()) ? DType::f32 : out64.dtype()));
      CloseResult r = allclose(out32, out64, c.f32_atol, c.f32_rtol);
      INFO(c.name, ": ", r.message);
      CHECK(r.ok);
    }
  }
}

TEST_CASE("op table: CPU vs CUDA") {
#ifdef SELFSUP_HAVE_CUDA
  std::printf("op table CPU vs CUDA: runs in test_cuda (tests/cuda/test_cuda_ops.cpp; ctest skips it without a GPU)\n");
#else
  std::printf("op table CPU vs CUDA: SKIPPED (built without CUDA)\n");
#endif
}
