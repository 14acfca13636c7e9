// bench_e2e_step: one training step (forward, backward, SGD with momentum and weight decay) of a CIFAR-stem
// ResNet-18 with a 10-class fc and cross-entropy, float32, batch 128, through the whole engine (modules,
// ops, autograd, optimizer), next to PyTorch doing the same step (bench/peers/torch_e2e_step.py) in the same
// run, 2 threads each. Prints the median step time and images/s of both and the ratio.
// --precision bf16: each case in float32 and in mixed bfloat16 on both sides (selfsup's autocast,
// engine/autograd/autocast.h; PyTorch's torch.autocast("cpu", dtype=torch.bfloat16) around forward and loss),
// with the bf16 ratio and each side's bf16-over-fp32 speedup.
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "bench/harness.h"
#include "engine/autograd/autocast.h"
#include "engine/ops/ops.h"
#include "engine/optim/sgd.h"
#include "models/resnet.h"

using namespace selfsup;

namespace {

struct Case {
  int64_t width, channels, size, batch;
  std::string key() const {
    return std::to_string(width) + ":" + std::to_string(channels) + ":" + std::to_string(size) + ":" +
           std::to_string(batch);
  }
};

double step_ms(const Case& c, int runs, DType precision) {
  models::ResNetOptions o;
  o.depth = 18;
  o.in_channels = c.channels;
  o.stem = models::Stem::cifar;
  o.width = c.width;
  o.num_classes = 10;
  models::ResNet model(o);
  SGD sgd(model.parameters(), SgdOptions{0.01, 0.9, 0.0, 5e-4, false});
  Generator g(0, 0);
  Tensor x = Tensor::randn({c.batch, c.channels, c.size, c.size}, DType::f32, &g);
  Tensor y = mul(Tensor::rand({c.batch}, DType::f32, &g), 10.0).to(DType::i64);
  return bench::median_ms(
      [&] {
        AutocastGuard autocast(precision);
        Tensor loss = cross_entropy(model.forward(x), y);
        sgd.zero_grad();
        loss.backward();
        sgd.step();
      },
      1, runs);
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 5;
  bool peer = true;
  std::vector<int64_t> widths = {16, 64};
  int64_t batch = 128;
  bool bf16 = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf(
          "usage: bench_e2e_step [--runs N (5)] [--width W (default: 16 and 64)] [--batch B (128)]\n"
          "                      [--precision fp32|bf16 (fp32)] [--no-peer]\n"
          "  One SGD training step of a CIFAR-stem ResNet-18, 28x28x1 and 32x32x3, selfsup vs PyTorch on 2\n"
          "  threads. --precision bf16 times each case in fp32 and bf16 on both sides (autocast).\n");
      return 0;
    } else if (a == "--runs" && i + 1 < argc) {
      runs = std::atoi(argv[++i]);
    } else if (a == "--width" && i + 1 < argc) {
      widths = {std::atoll(argv[++i])};
    } else if (a == "--batch" && i + 1 < argc) {
      batch = std::atoll(argv[++i]);
    } else if (a == "--precision" && i + 1 < argc) {
      try {
        bf16 = parse_precision(argv[++i], "bench_e2e_step: --precision") == DType::bf16;
      } catch (const Error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 2;
      }
    } else if (a == "--no-peer") {
      peer = false;
    } else {
      std::fprintf(stderr, "bench_e2e_step: unknown argument '%s' (see --help)\n", a.c_str());
      return 2;
    }
  }
  setenv("OMP_NUM_THREADS", "2", 1);
  omp_set_num_threads(2);
  std::vector<Case> cases;
  for (int64_t w : widths) {
    cases.push_back({w, 1, 28, batch});
    cases.push_back({w, 3, 32, batch});
  }
  // PyTorch's times by "precision/key".
  std::map<std::string, double> peer_ms;
  if (peer) {
    std::string args = "--runs " + std::to_string(runs) + (bf16 ? " --precision bf16" : "");
    for (const Case& c : cases) args += " " + c.key();
    for (const std::string& line : bench::run_peer(bench::peer_script("torch_e2e_step.py"), args))
      peer_ms[bench::json_string(line, "precision") + "/" + bench::json_string(line, "key")] =
          bench::json_number(line, "ms");
  }
  if (bf16) {
    std::printf("%s\n", bench::cpu_description().c_str());
    std::printf("ResNet-18 (CIFAR stem) training step: forward, backward, SGD; batch %ld, fp32 and bf16 (autocast), "
                "2 threads\n%s\n", long(batch), precision_description(DType::bf16, false).c_str());
    std::printf("%-6s %-9s %10s %10s %8s %10s %10s %8s %10s\n", "width", "input", "ours fp32", "ours bf16", "speedup",
                "torch fp32", "torch bf16", "speedup", "bf16 ratio");
    for (const Case& c : cases) {
      const double f = step_ms(c, runs, DType::f32), b = step_ms(c, runs, DType::bf16);
      const double pf = peer_ms.count("fp32/" + c.key()) ? peer_ms["fp32/" + c.key()] : 0;
      const double pb = peer_ms.count("bf16/" + c.key()) ? peer_ms["bf16/" + c.key()] : 0;
      const std::string input = std::to_string(c.size) + "x" + std::to_string(c.size) + "x" + std::to_string(c.channels);
      std::printf("%-6ld %-9s %10.1f %10.1f %7.2fx %10.1f %10.1f %7.2fx %9.2fx\n", long(c.width), input.c_str(), f, b,
                  f / b, pf, pb, pb > 0 ? pf / pb : 0.0, b > 0 ? pb / b : 0.0);
    }
    std::printf("(ms per step, medians; speedup = fp32 ms / bf16 ms of that side; bf16 ratio = PyTorch bf16 ms / ours)\n");
    if (peer && peer_ms.empty()) std::printf("peer: PyTorch not available\n");
    return 0;
  }
  std::printf("%s\n", bench::cpu_description().c_str());
  std::printf("ResNet-18 (CIFAR stem) training step: forward, backward, SGD; batch %ld, float32, 2 threads\n",
              long(batch));
  std::printf("%-8s %-10s %12s %12s %12s %12s %8s\n", "width", "input", "selfsup ms", "img/s", "PyTorch ms", "img/s",
              "ratio");
  for (const Case& c : cases) {
    const double ms = step_ms(c, runs, DType::f32);
    const std::string input = std::to_string(c.size) + "x" + std::to_string(c.size) + "x" + std::to_string(c.channels);
    auto it = peer_ms.find("fp32/" + c.key());
    if (it != peer_ms.end() && it->second > 0) {
      std::printf("%-8ld %-10s %12.1f %12.0f %12.1f %12.0f %7.2fx\n", long(c.width), input.c_str(), ms,
                  1e3 * c.batch / ms, it->second, 1e3 * c.batch / it->second, it->second / ms);
    } else {
      std::printf("%-8ld %-10s %12.1f %12.0f %12s %12s %8s\n", long(c.width), input.c_str(), ms, 1e3 * c.batch / ms,
                  "-", "-", "-");
    }
  }
  if (peer && peer_ms.empty()) std::printf("peer: PyTorch not available\n");
  return 0;
}
