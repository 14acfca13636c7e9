// bench_e2e_step: one training step (forward, backward, SGD with momentum and weight decay) of a CIFAR-stem
// ResNet-18 with a 10-class fc and cross-entropy, float32, batch 128, through the whole engine (modules,
// ops, autograd, optimizer), next to PyTorch doing the same step (bench/peers/torch_e2e_step.py) in the same
// run, 2 threads each. Prints the median step time and images/s of both and the ratio.
// --precision bf16: each case in float32 and in mixed bfloat16 on both sides (selfsup's autocast,
// engine/autograd/autocast.h; PyTorch's torch.autocast("cpu", dtype=torch.bfloat16) around forward and loss),
// with the bf16 ratio and each side's bf16-over-fp32 speedup.
// --rounds R (2): both sides time every case R times, alternating which side goes first (bench/harness.h,
// alternate); the table gives the medians over the rounds and every round's ratio.
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
  int runs = 5, rounds = 2;
  bool peer = true;
  std::vector<int64_t> widths = {16, 64};
  int64_t batch = 128;
  bool bf16 = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf(
          "usage: bench_e2e_step [--runs N (5)] [--width W (default: 16 and 64)] [--batch B (128)]\n"
          "                      [--precision fp32|bf16 (fp32)] [--rounds R (2)] [--no-peer]\n"
          "  One SGD training step of a CIFAR-stem ResNet-18, 28x28x1 and 32x32x3, selfsup vs PyTorch on 2\n"
          "  threads. --precision bf16 times each case in fp32 and bf16 on both sides (autocast). --rounds: each\n"
          "  side times every case R times, the order alternating every round; medians and per-round ratios.\n");
      return 0;
    } else if (a == "--runs" && i + 1 < argc) {
      runs = std::atoi(argv[++i]);
    } else if (a == "--rounds" && i + 1 < argc) {
      rounds = std::atoi(argv[++i]);
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
  if (runs < 1 || rounds < 1) {
    std::fprintf(stderr, "bench_e2e_step: --runs and --rounds must be at least 1\n");
    return 2;
  }
  setenv("OMP_NUM_THREADS", "2", 1);
  omp_set_num_threads(2);
  std::vector<Case> cases;
  for (int64_t w : widths) {
    cases.push_back({w, 1, 28, batch});
    cases.push_back({w, 3, 32, batch});
  }
  // Each side's step times by "precision/key", one entry per round.
  std::map<std::string, std::vector<double>> ours_ms, peer_ms;
  std::vector<DType> precisions = {DType::f32};
  if (bf16) precisions.push_back(DType::bf16);
  bench::alternate(
      rounds,
      [&](int) {
        for (const Case& c : cases)
          for (DType p : precisions)
            ours_ms[std::string(precision_name(p)) + "/" + c.key()].push_back(step_ms(c, runs, p));
      },
      [&](int r) {
        if (!peer || (r > 0 && peer_ms.empty())) return;
        std::string args = "--runs " + std::to_string(runs) + (bf16 ? " --precision bf16" : "");
        for (const Case& c : cases) args += " " + c.key();
        for (const std::string& line : bench::run_peer(bench::peer_script("torch_e2e_step.py"), args))
          peer_ms[bench::json_string(line, "precision") + "/" + bench::json_string(line, "key")].push_back(
              bench::json_number(line, "ms"));
      });
  // Median over the rounds (0 where that side has no time), and every round's PyTorch-over-ours ratio.
  auto med = [](std::map<std::string, std::vector<double>>& m, const std::string& k) {
    return m.count(k) ? bench::median(m[k]) : 0.0;
  };
  auto round_ratios = [&](const std::string& k) {
    std::vector<double> r;
    if (!peer_ms.count(k)) return r;
    for (size_t i = 0; i < ours_ms[k].size() && i < peer_ms[k].size(); ++i) r.push_back(peer_ms[k][i] / ours_ms[k][i]);
    return r;
  };
  std::printf("%s\n", bench::cpu_description().c_str());
  const char* order = "the order alternating (selfsup first, then PyTorch first); medians over the rounds";
  if (bf16) {
    std::printf("ResNet-18 (CIFAR stem) training step: forward, backward, SGD; batch %ld, fp32 and bf16 (autocast), "
                "2 threads\n%s\n%d round%s, %s\n", long(batch), precision_description(DType::bf16, false).c_str(),
                rounds, rounds == 1 ? "" : "s", order);
    std::printf("%-6s %-9s %10s %10s %8s %10s %10s %8s %10s  %s\n", "width", "input", "ours fp32", "ours bf16", "speedup",
                "torch fp32", "torch bf16", "speedup", "bf16 ratio", "per round");
    for (const Case& c : cases) {
      const double f = med(ours_ms, "fp32/" + c.key()), b = med(ours_ms, "bf16/" + c.key());
      const double pf = med(peer_ms, "fp32/" + c.key()), pb = med(peer_ms, "bf16/" + c.key());
      const std::string input = std::to_string(c.size) + "x" + std::to_string(c.size) + "x" + std::to_string(c.channels);
      std::printf("%-6ld %-9s %10.1f %10.1f %7.2fx %10.1f %10.1f %7.2fx %9.2fx  %s\n", long(c.width), input.c_str(), f, b,
                  f / b, pf, pb, pb > 0 ? pf / pb : 0.0, b > 0 ? pb / b : 0.0,
                  bench::list(round_ratios("bf16/" + c.key()), 2, "x").c_str());
    }
    std::printf("(ms per step, medians; speedup = fp32 ms / bf16 ms of that side; bf16 ratio = PyTorch bf16 ms / ours)\n");
    if (peer && peer_ms.empty()) std::printf("peer: PyTorch not available\n");
    return 0;
  }
  std::printf("ResNet-18 (CIFAR stem) training step: forward, backward, SGD; batch %ld, float32, 2 threads\n"
              "%d round%s, %s\n", long(batch), rounds, rounds == 1 ? "" : "s", order);
  std::printf("%-8s %-10s %12s %12s %12s %12s %8s  %s\n", "width", "input", "selfsup ms", "img/s", "PyTorch ms", "img/s",
              "ratio", "per round");
  for (const Case& c : cases) {
    const std::string k = "fp32/" + c.key();
    const double ms = med(ours_ms, k), pms = med(peer_ms, k);
    const std::string input = std::to_string(c.size) + "x" + std::to_string(c.size) + "x" + std::to_string(c.channels);
    if (pms > 0) {
      std::printf("%-8ld %-10s %12.1f %12.0f %12.1f %12.0f %7.2fx  %s\n", long(c.width), input.c_str(), ms,
                  1e3 * c.batch / ms, pms, 1e3 * c.batch / pms, pms / ms, bench::list(round_ratios(k), 2, "x").c_str());
    } else {
      std::printf("%-8ld %-10s %12.1f %12.0f %12s %12s %8s\n", long(c.width), input.c_str(), ms, 1e3 * c.batch / ms,
                  "-", "-", "-");
    }
  }
  if (peer && peer_ms.empty()) std::printf("peer: PyTorch not available\n");
  return 0;
}
