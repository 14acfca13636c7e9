// CPU vs CUDA on every row of the OpCase table (tests/ops/op_cases_*.cpp, linked into this binary): forward
// and backward in float32 on fresh random inputs, with the allocator's guard bytes around every CUDA
// allocation (outputs included) that must stay untouched. A row whose op reaches a kernel the CUDA table
// does not have yet is reported as "not implemented on CUDA" (counted and printed), never passed silently.
#include <doctest/doctest.h>

#include <cstdio>
#include <functional>
#include <map>
#include <string>

#include "engine/autograd/grad_mode.h"
#include "engine/core/cuda_allocator.h"
#include "engine/ops/ops.h"
#include "kernels/cuda/cuda_api.h"
#include "tests/support/engine_op_case.h"

using namespace selfsup;
using namespace selfsup::testing;

namespace {

const Device kCuda = Device::cuda(0);

bool is_not_implemented(const std::string& msg) { return msg.find("is not implemented for device cuda") != std::string::npos; }

// Compares a CUDA result with the CPU one (float32 tolerances; exact for integer/bool results).
std::string compare(const Tensor& gpu, const Tensor& cpu, const OpCase& c, const char* what) {
  if (gpu.sizes() != cpu.sizes()) return str_cat(what, ": shape ", shape_str(gpu.sizes()), " vs CPU ", shape_str(cpu.sizes()));
  if (gpu.dtype() != cpu.dtype()) return str_cat(what, ": dtype ", dtype_name(gpu.dtype()), " vs CPU ", dtype_name(cpu.dtype()));
  if (gpu.device() != kCuda) return str_cat(what, ": result is on ", gpu.device().str(), ", expected cuda:0");
  const bool exact = !is_floating(cpu.dtype());
  CloseResult r = allclose(gpu.to(Device::cpu()), cpu, exact ? 0.0 : std::max(c.f32_atol, 1e-5),
                           exact ? 0.0 : std::max(c.f32_rtol, 1e-4));
  return r.ok ? std::string() : str_cat(what, ": ", r.message);
}

struct Summary {
  int rows = 0, passed = 0, failed = 0;
  std::map<std::string, std::string> not_implemented;  // row -> missing kernel message
};

}  // namespace

TEST_CASE("op table: CPU vs CUDA, forward and backward, guard bytes around every CUDA allocation") {
  kernels::set_tf32(false);  // compare float32 with float32, not TF32
  Summary summary;
  for (const OpCase& c : op_cases()) {
    ++summary.rows;
    const uint64_t seed = 0x5eed + std::hash<std::string>{}(c.name) % 100000;
    std::vector<Tensor> in_cpu = make_case_inputs(c, DType::f32, seed);
    std::vector<Tensor> in_gpu;
    for (const Tensor& t : in_cpu) {
      Tensor g = t.detach().to(kCuda);
      if (t.requires_grad()) g.set_requires_grad(true);
      in_gpu.push_back(g);
    }
    Tensor out_cpu = c.fn(in_cpu);
    std::string err;
    cuda_set_guard_mode(true);
    try {
      Tensor out_gpu = c.fn(in_gpu);
      err = compare(out_gpu, out_cpu, c, "forward");
      if (err.empty() && out_cpu.requires_grad()) {
        Generator gen(seed + 1, 3);
        Tensor w = Tensor::randn(out_cpu.sizes(), DType::f32, &gen);
        selfsup::sum(mul(out_cpu, w)).backward();
        selfsup::sum(mul(out_gpu, w.to(kCuda))).backward();
        for (size_t i = 0; i < in_cpu.size() && err.empty(); ++i) {
          if (!in_cpu[i].requires_grad()) continue;
          Tensor gc = in_cpu[i].grad(), gg = in_gpu[i].grad();
          if (gc.defined() != gg.defined()) {
            err = str_cat("backward: input ", i, " has a gradient on ", gc.defined() ? "CPU only" : "CUDA only");
          } else if (gc.defined()) {
            err = compare(gg, gc, c, str_cat("gradient of input ", i).c_str());
          }
        }
      }
    } catch (const std::exception& e) {
      if (is_not_implemented(e.what())) {
        summary.not_implemented[c.name] = e.what();
      } else {
        err = str_cat("threw: ", e.what());
      }
    }
    in_gpu.clear();
    for (const std::string& v : cuda_guard_check()) err += (err.empty() ? "" : "; ") + std::string("guard: ") + v;
    cuda_set_guard_mode(false);
    if (summary.not_implemented.count(c.name) && err.empty()) continue;
    INFO(c.name, ": ", err);
    CHECK(err.empty());
    if (err.empty()) {
      ++summary.passed;
    } else {
      ++summary.failed;
      std::printf("  FAIL %-36s %s\n", c.name.c_str(), err.c_str());
    }
  }
  kernels::set_tf32(true);
  std::printf("op table CPU vs CUDA: %d rows: %d passed, %d failed, %zu not implemented on CUDA\n", summary.rows,
              summary.passed, summary.failed, summary.not_implemented.size());
  for (const auto& [row, msg] : summary.not_implemented) std::printf("  not implemented on CUDA: %-36s (%s)\n", row.c_str(), msg.c_str());
}
