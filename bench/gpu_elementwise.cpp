// GPU benchmark for bench/gpu_check.sh: large elementwise add/mul (GB/s, next to a device-to-device
// cudaMemcpy of the same bytes, the bandwidth ceiling) and a 4096^3 matmul in float32, TF32 and bf16
// (TFLOP/s). Everything goes through the engine (ops on cuda:0 tensors, the caching allocator, the CUDA
// kernel table) except the bf16 GEMM, which calls the table entry directly. Timing: CUDA events around
// each run on the current stream, 3 warm-up runs, median of 20. Prints one JSON line per measurement
// ({"bench", "value", "unit"}) that gpu_check.sh joins with the PyTorch peer's lines (bench/peers/
// torch_gpu_ops.py prints the same keys). Without a CUDA build or device it says so and exits 0.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <vector>

#include "engine/core/cuda_allocator.h"
#include "engine/core/cuda_context.h"

#ifdef SELFSUP_HAVE_CUDA
#include <cuda_runtime.h>

#include "engine/ops/dispatch.h"
#include "engine/ops/ops.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_api.h"
#include "bench/gpu_harness.h"
#include "kernels/cuda/device.h"

using namespace selfsup;
namespace kc = selfsup::kernels::cuda;

namespace {

// 20 timed runs, as its peer (bench/peers/torch_gpu_ops.py) does.
double time_ms(const std::function<void()>& fn) { return bench::median_gpu_ms(fn, 3, 20); }

void report(const char* bench, double value, const char* unit) {
  std::printf("{\"bench\": \"%s\", \"value\": %.2f, \"unit\": \"%s\"}\n", bench, value, unit);
  std::fflush(stdout);
}

}  // namespace

int main() {
  if (cuda_device_count() == 0) {
    std::printf("bench_gpu_elementwise: SKIPPED: no CUDA device (%s)\n", cuda_no_device_reason().c_str());
    return 0;
  }
  const Device dev = Device::cuda(0);
  const int64_t n = int64_t(1) << 28;  // 256 Mi floats = 1 GiB per tensor
  Generator gen(1, 0);
  Tensor a = Tensor::empty({n}, DType::f32, dev), b = Tensor::empty({n}, DType::f32, dev);
  kernel_table(DeviceType::cuda).fill_uniform(DType::f32, n, 1, 0, 0, a.raw_data());
  kernel_table(DeviceType::cuda).fill_uniform(DType::f32, n, 2, 0, 0, b.raw_data());
  Tensor c = Tensor::empty({n}, DType::f32, dev);
  const double bytes = static_cast<double>(n) * 4;

  // Copy: reads n*4 and writes n*4 bytes.
  double ms = time_ms([&] {
    SELFSUP_CUDA_CHECK(cudaMemcpyAsync(c.raw_data(), a.raw_data(), n * 4, cudaMemcpyDeviceToDevice, kc::current_stream(0)));
  });
  report("copy_d2d_f32_256M", 2 * bytes / ms / 1e6, "GB/s");
  ms = time_ms([&] { Tensor r = add(a, b); });
  report("add_f32_256M", 3 * bytes / ms / 1e6, "GB/s");
  ms = time_ms([&] { Tensor r = mul(a, b); });
  report("mul_f32_256M", 3 * bytes / ms / 1e6, "GB/s");
  ms = time_ms([&] { Tensor r = mul(a, 3.0); });
  report("scale_f32_256M", 2 * bytes / ms / 1e6, "GB/s");
  {
    Tensor a16 = a.to(DType::bf16), b16 = b.to(DType::bf16);
    ms = time_ms([&] { Tensor r = add(a16, b16); });
    report("add_bf16_256M", 3 * bytes / 2 / ms / 1e6, "GB/s");
  }
  a = b = c = Tensor();

  const int64_t M = 4096;
  const double flop = 2.0 * M * M * M;
  Tensor x = Tensor::empty({M, M}, DType::f32, dev), y = Tensor::empty({M, M}, DType::f32, dev);
  kernel_table(DeviceType::cuda).fill_normal(DType::f32, M * M, 3, 0, 0, x.raw_data());
  kernel_table(DeviceType::cuda).fill_normal(DType::f32, M * M, 4, 0, 0, y.raw_data());
  kernels::set_tf32(false);
  ms = time_ms([&] { Tensor r = matmul(x, y); });
  report("matmul_f32_4096", flop / ms / 1e9, "TFLOP/s");
  kernels::set_tf32(true);
  ms = time_ms([&] { Tensor r = matmul(x, y); });
  report("matmul_tf32_4096", flop / ms / 1e9, "TFLOP/s");
  Tensor x16 = x.to(DType::bf16), y16 = y.to(DType::bf16), z16 = Tensor::empty({M, M}, DType::bf16, dev);
  ms = time_ms([&] {
    kernel_table(DeviceType::cuda).gemm_batched(DType::bf16, false, false, 1, M, M, M, 1.0, x16.raw_data(), M, 0,
                                                y16.raw_data(), M, 0, 0.0, z16.raw_data(), M, 0);
  });
  report("matmul_bf16_4096", flop / ms / 1e9, "TFLOP/s");
  std::printf("# %s\n", cuda_memory_summary(0).c_str());
  return 0;
}

#else
int main() {
  std::printf("bench_gpu_elementwise: SKIPPED: built without the CUDA backend\n");
  return 0;
}
#endif
