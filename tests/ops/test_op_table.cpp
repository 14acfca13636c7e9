// Runs every row of the OpCase table (tests/ops/op_cases_*.cpp): float64 central-difference gradient
// check, and float32 forward and backward against float64 on the same inputs with a bound in units of the
// float32 rounding error (OpCase::f32_ulps). The CUDA comparison of the same rows runs in test_cuda
// (tests/cuda/test_cuda_ops.cpp); this file checks on the CPU that every kernel has a CUDA entry.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "engine/autograd/grad_mode.h"
#include "engine/ops/dispatch.h"
#include "engine/ops/ops.h"
#include "tests/support/engine_op_case.h"

using namespace selfsup;
using namespace selfsup::testing;

TEST_CASE("op table: the table covers the op families") {
  std::vector<std::string> families;
  for (const OpCase& c : op_cases()) families.push_back(c.name.substr(0, c.name.find('/')));
  for (const char* f : {"add", "mul", "div", "exp", "relu", "gelu", "where", "sum", "mean", "var", "max", "logsumexp",
                        "matmul", "linear", "conv2d", "conv_transpose2d", "upsample", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "batch_norm", "batch_norm_add_relu",
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

namespace {
// Largest |float32 - float64| of a tensor in units of eps32 * max|float64| (the tensor's scale: an element
// that cancels to ~0 is still judged against the size of the terms that produced it). Exact comparison for
// integer/bool results.
double f32_error_units(const Tensor& got32, const Tensor& ref64) {
  std::vector<double> g = got32.to_vector(), r = ref64.to_vector();
  double scale = 0.0, worst = 0.0;
  for (double v : r) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < r.size(); ++i) {
    const double d = std::abs(g[i] - r[i]);
    if (!(d <= worst)) worst = std::isnan(d) ? INFINITY : d;
  }
  if (worst == 0.0) return 0.0;
  return worst / (kF32Eps * scale);
}
}  // namespace

TEST_CASE("op table: float32 forward and backward agree with float64 on the same inputs") {
  for (const OpCase& c : op_cases()) {
    SUBCASE(c.name.c_str()) {
      // The float64 inputs are the float32 ones widened, so the difference is the float32 arithmetic alone.
      std::vector<Tensor> base = make_case_inputs(c, DType::f64, 77);
      std::vector<Tensor> in32, in64;
      for (const Tensor& t : base) {
        Tensor t32 = is_floating(t.dtype()) ? t.detach().to(DType::f32) : t;
        Tensor t64 = is_floating(t.dtype()) ? t32.to(DType::f64) : t;
        if (t.requires_grad()) {
          t32.set_requires_grad(true);
          t64.set_requires_grad(true);
        }
        in32.push_back(t32);
        in64.push_back(t64);
      }
      Tensor out64 = c.fn(in64), out32 = c.fn(in32);
      REQUIRE(out32.dtype() == (is_floating(out64.dtype()) ? DType::f32 : out64.dtype()));
      REQUIRE(out32.sizes() == out64.sizes());
      const double fwd = f32_error_units(out32, out64);
      INFO(c.name, " forward: ", fwd, " eps32 x scale (bound ", c.f32_ulps, ")");
      CHECK(fwd <= c.f32_ulps);
      if (!out64.requires_grad()) continue;
      // Backward of sum(w * out) with a cotangent w exactly representable in float32.
      Generator gen(78, 0);
      Tensor w32 = Tensor::randn(out32.sizes(), DType::f32, &gen);
      sum(mul(out32, w32)).backward();
      sum(mul(out64, w32.to(DType::f64))).backward();
      for (size_t i = 0; i < in64.size(); ++i) {
        if (!in64[i].requires_grad()) continue;
        REQUIRE(in32[i].grad().defined() == in64[i].grad().defined());
        if (!in64[i].grad().defined()) continue;
        REQUIRE(in32[i].grad().dtype() == DType::f32);
        const double bwd = f32_error_units(in32[i].grad(), in64[i].grad());
        INFO(c.name, " gradient of input ", i, ": ", bwd, " eps32 x scale (bound ", c.f32_grad_ulps, ")");
        CHECK(bwd <= c.f32_grad_ulps);
      }
    }
  }
}

// The CPU-side half of the CUDA allowlist (tests/cuda/test_cuda_ops.cpp, kNotOnCuda): checked here because
// it needs no device. Every kernel of op_list.def has a CPU entry; with the CUDA backend built every kernel
// also has a CUDA entry (so the allowlist is empty), and without it none has (an op on a CUDA tensor then
// throws "not implemented for device cuda" instead of calling a null pointer). infonce_bwd_sym is an
// optional fast path (contrastive.cpp calls it only where the table has it, else infonce_bwd): CUDA only.
TEST_CASE("op table: every kernel has a CPU entry, and a CUDA entry when CUDA is built") {
  const KernelTable& cpu = kernel_table(DeviceType::cpu);
  const KernelTable& cuda = kernel_table(DeviceType::cuda);
#ifdef SELFSUP_HAVE_CUDA
  const bool cuda_built = true;
#else
  const bool cuda_built = false;
#endif
#define SELFSUP_KERNEL(name, ...)                      \
  {                                                   \
    const bool optional = std::string(#name) == "infonce_bwd_sym"; \
    const bool on_cpu = cpu.name != nullptr || optional; \
    const bool on_cuda = cuda.name != nullptr;        \
    INFO("kernel " #name);                            \
    CHECK(on_cpu);                                    \
    CHECK(on_cuda == cuda_built);                     \
  }
#include "engine/ops/op_list.def"
#undef SELFSUP_KERNEL
}
