// bench_resnet_fwd_bwd: forward + backward time of a CIFAR-stem ResNet (training mode, float32) through the
// whole engine (modules, ops, autograd), the number docs/nn-and-models.md reports. No optimizer step: the
// e2e benchmark adds SGD and the PyTorch peer.
//   bench_resnet_fwd_bwd [--depth 18] [--width 64] [--batch 128] [--channels 3] [--size 32] [--iters 5]
// Threads: OMP_NUM_THREADS (the docs use 2). Prints the median and min over the timed iterations after
// one warm-up iteration.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "models/resnet.h"

using namespace selfsup;

int main(int argc, char** argv) {
  int depth = 18, iters = 5;
  int64_t width = 64, batch = 128, channels = 3, size = 32;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const long v = std::atol(argv[i + 1]);
    if (a == "--depth") depth = static_cast<int>(v);
    else if (a == "--width") width = v;
    else if (a == "--batch") batch = v;
    else if (a == "--channels") channels = v;
    else if (a == "--size") size = v;
    else if (a == "--iters") iters = static_cast<int>(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
  }
  try {
    auto model = std::make_shared<models::ResNet>(models::ResNetOptions{
        .depth = depth, .in_channels = channels, .stem = models::Stem::cifar, .width = width, .num_classes = 10});
    Generator gen(1);
    Tensor x = Tensor::randn({batch, channels, size, size}, DType::f32, &gen);
    Tensor target_w = Tensor::randn({batch, 10}, DType::f32, &gen);
    std::vector<double> fwd_ms, total_ms;
    for (int it = 0; it <= iters; ++it) {
      model->zero_grad();
      auto t0 = std::chrono::steady_clock::now();
      Tensor y = model->forward(x);  // (batch, 10)
      Tensor loss = sum(mul(y, target_w));
      auto t1 = std::chrono::steady_clock::now();
      loss.backward();
      auto t2 = std::chrono::steady_clock::now();
      if (it == 0) continue;  // warm-up: oneDNN primitive creation, allocator growth
      fwd_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      total_ms.push_back(std::chrono::duration<double, std::milli>(t2 - t0).count());
    }
    std::sort(fwd_ms.begin(), fwd_ms.end());
    std::sort(total_ms.begin(), total_ms.end());
    const double med = total_ms[total_ms.size() / 2];
    std::printf(
        "resnet%d cifar-stem width %ld, batch %ld x %ldx%ldx%ld, %d threads, %ld params: forward %.1f ms, "
        "forward+backward median %.1f ms (min %.1f), %.1f img/s\n",
        depth, static_cast<long>(width), static_cast<long>(batch), static_cast<long>(channels),
        static_cast<long>(size), static_cast<long>(size), omp_get_max_threads(),
        static_cast<long>(model->num_parameters()), fwd_ms[fwd_ms.size() / 2], med, total_ms[0],
        1000.0 * static_cast<double>(batch) / med);
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
