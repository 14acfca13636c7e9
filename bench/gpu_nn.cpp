// GPU benchmark of the nn kernels on the training hot path, for bench/gpu_check.sh (issue #3):
//   * fused softmax-cross-entropy (label smoothing 0.1) on logits (65536, 1000), float32 and bf16:
//     forward alone, and forward + backward (dlogits);
//   * conv2d on representative ResNet-50 layers (ImageNet 224 input) at batch 64 and 128, float32 with TF32
//     (PyTorch's default for cuDNN convolutions) and bf16: forward, and backward (data + weight).
// Calls the CUDA kernel table's entries directly (the engine's dispatch and DType wiring, no autograd), on
// cuda:0 tensors from the caching allocator. Timing: CUDA events on the current stream, 3 warm-up runs
// (which include cuDNN's one-time algorithm search per shape), median of 10. Prints one JSON line per
// measurement, {"bench", "value", "unit"}, all in milliseconds (lower is better); bench/peers/
// torch_gpu_nn.py prints the same keys. Built only with the CUDA backend; without a device it prints
// SKIPPED and exits 0.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "engine/core/cuda_allocator.h"
#include "engine/core/cuda_context.h"
#include "engine/ops/dispatch.h"
#include "engine/ops/ops.h"
#include "kernels/cuda/cuda_nn_api.h"
#include "bench/gpu_harness.h"
#include "kernels/cuda/device.h"

using namespace selfsup;
namespace kc = selfsup::kernels::cuda;

namespace {

void report(const std::string& bench, double ms) {
  std::printf("{\"bench\": \"%s\", \"value\": %.4g, \"unit\": \"ms\"}\n", bench.c_str(), ms);
  std::fflush(stdout);
}

const KernelTable& cuda_table() { return kernel_table(DeviceType::cuda); }

// A (n) tensor of standard normals on cuda:0 in dtype dt (bf16: rounded from float32).
Tensor randn_cuda(int64_t n, DType dt, uint64_t seed, double scale = 1.0) {
  Tensor t = Tensor::empty({n}, DType::f32, Device::cuda(0));
  cuda_table().fill_normal(DType::f32, n, seed, 0, 0, t.raw_data());
  if (scale != 1.0) t = mul(t, scale);
  return t.to(dt);
}

void bench_cross_entropy(DType dt, const char* tag) {
  const int64_t N = 65536, C = 1000;
  const double ls = 0.1;
  Tensor logits = randn_cuda(N * C, dt, 11, 2.0);  // (N, C)
  std::vector<int64_t> t(N);
  for (int64_t i = 0; i < N; ++i) t[static_cast<size_t>(i)] = (i * 7919) % C;
  Tensor target = Tensor::from_vector(t, {N}).to(Device::cuda(0));  // (N) int64
  Tensor loss = Tensor::empty({N}, DType::f32, Device::cuda(0)), lse = Tensor::empty({N}, DType::f32, Device::cuda(0));
  Tensor dloss = Tensor::full({N}, 1.0 / N, DType::f32, Device::cuda(0));  // d(mean)/d(row)
  Tensor dlogits = Tensor::empty({N * C}, dt, Device::cuda(0));
  const int64_t* tp = target.data_ptr<int64_t>();
  auto fwd = [&] {
    cuda_table().cross_entropy_fwd(dt, N, C, logits.raw_data(), tp, ls, loss.raw_data(), lse.raw_data());
  };
  auto bwd = [&] {
    cuda_table().cross_entropy_bwd(dt, N, C, logits.raw_data(), tp, ls, lse.raw_data(), dloss.raw_data(),
                                   dlogits.raw_data());
  };
  report(std::string("xent_fwd_") + tag + "_65536x1000", bench::median_gpu_ms(fwd));
  report(std::string("xent_fwdbwd_") + tag + "_65536x1000", bench::median_gpu_ms([&] {
           fwd();
           bwd();
         }));
}

// A ResNet-50 convolution (torchvision v1.5: the stride sits on the 3x3), square input and filter.
struct ConvLayer {
  const char* name;
  int64_t C, H, K, R, stride, pad;
};
constexpr ConvLayer kLayers[] = {
    {"conv1_7x7s2", 3, 224, 64, 7, 2, 3},    // stem
    {"l1_3x3", 64, 56, 64, 3, 1, 1},         // layer1 bottleneck 3x3
    {"l2_3x3s2", 128, 56, 128, 3, 2, 1},     // layer2 first block, strided 3x3
    {"l3_1x1_256to1024", 256, 14, 1024, 1, 1, 0},  // layer3 expansion 1x1
    {"l4_3x3", 512, 7, 512, 3, 1, 1},        // layer4 bottleneck 3x3
};

void bench_conv(const ConvLayer& l, int64_t N, DType dt, const char* tag) {
  kernels::Conv2dShape s{};
  s.N = N;
  s.C = l.C;
  s.H = s.W = l.H;
  s.K = l.K;
  s.R = s.S = l.R;
  s.stride_h = s.stride_w = l.stride;
  s.pad_h = s.pad_w = l.pad;
  s.dil_h = s.dil_w = 1;
  s.groups = 1;
  s.P = s.Q = (l.H + 2 * l.pad - l.R) / l.stride + 1;
  Tensor x = randn_cuda(s.N * s.C * s.H * s.W, dt, 21);      // (N, C, H, W)
  Tensor w = randn_cuda(s.K * s.C * s.R * s.S, dt, 22, 0.05);  // (K, C, R, S)
  Tensor y = Tensor::empty({s.N * s.K * s.P * s.Q}, dt, Device::cuda(0));  // (N, K, P, Q)
  Tensor dy = randn_cuda(s.N * s.K * s.P * s.Q, dt, 23);
  Tensor dx = Tensor::empty({s.N * s.C * s.H * s.W}, dt, Device::cuda(0));
  Tensor dw = Tensor::empty({s.K * s.C * s.R * s.S}, dt, Device::cuda(0));
  const std::string base = std::string("conv_") + l.name + "_b" + std::to_string(N) + "_" + tag;
  report(base + "_fwd", bench::median_gpu_ms([&] {
           cuda_table().conv2d_fwd(dt, s, x.raw_data(), w.raw_data(), nullptr, y.raw_data());
         }));
  report(base + "_bwd", bench::median_gpu_ms([&] {
           cuda_table().conv2d_bwd_data(dt, s, dy.raw_data(), w.raw_data(), dx.raw_data());
           cuda_table().conv2d_bwd_weight(dt, s, x.raw_data(), dy.raw_data(), dw.raw_data(), nullptr);
         }));
}

}  // namespace

int main() {
  if (cuda_device_count() == 0) {
    std::printf("bench_gpu_nn: SKIPPED: no CUDA device (%s)\n", cuda_no_device_reason().c_str());
    return 0;
  }
  bench_cross_entropy(DType::f32, "f32");
  bench_cross_entropy(DType::bf16, "bf16");
  kernels::conv2d_cuda_set_allow_tf32(true);
  for (int64_t N : {64, 128})
    for (const ConvLayer& l : kLayers) {
      bench_conv(l, N, DType::f32, "tf32");
      bench_conv(l, N, DType::bf16, "bf16");
    }
  kernels::conv2d_cuda_set_allow_tf32(false);
  std::printf("# %s\n", cuda_memory_summary(0).c_str());
  return 0;
}
