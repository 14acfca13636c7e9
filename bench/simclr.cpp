// bench_simclr: SimCLR training throughput on Fashion-MNIST, `selfsup train` (in-process, the demo's
// preset) next to the same model, recipe, batch and optimizer in PyTorch (bench/peers/torch_simclr_fmnist.py)
// in the same run on the same machine; images/s and the ratio.
//   --device cpu (default): 2 threads each, the demo's CPU preset (width 8, batch 64).
//   --device cuda: selfsup with its views made on the GPU; PyTorch eager with torchvision augmentation in
//   DataLoader workers (--workers, the usual PyTorch setup) and the model on the GPU. The small model is
//   where PyTorch's per-op launch cost shows.
// --precision bf16: both sides train twice, fp32 and mixed bf16 (selfsup's --precision bf16; PyTorch's
// torch.autocast(device, dtype=torch.bfloat16) around the model, the NT-Xent loss in float32 as ours), and
// print the bf16 ratio and each side's bf16-over-fp32 speedup.
// --rounds R (2): each side runs R times, alternating which goes first (bench/harness.h, alternate); the
// table gives each side's median and every round's ratio.
// The last line is JSON ({"bench", "value", "unit"}, as the other GPU benchmarks print) so gpu_check.sh can
// put it in its table.
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "bench/harness.h"
#include "engine/autograd/autocast.h"
#include "engine/core/check.h"
#include "ssl/trainer/trainer.h"

using namespace selfsup;

int main(int argc, char** argv) {
  int64_t width = 8, batch = 64, steps = 160, workers = 8;
  int rounds = 2;
  std::string device = "cpu", data_dir;
  bool peer = true, bf16 = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf(
          "usage: bench_simclr [--device cpu|cuda] [--width W (8)] [--batch B (64)] [--steps N (160)]\n"
          "                    [--workers N (8, PyTorch's DataLoader on cuda)] [--data-dir DIR] [--no-peer]\n"
          "                    [--precision fp32|bf16 (fp32; bf16 runs both precisions on both sides)]\n"
          "                    [--rounds R (2): each side runs R times, the order alternating every round]\n"
          "  SimCLR steps on Fashion-MNIST (ResNet-18 layout, CIFAR stem, grayscale recipe, NT-Xent, SGD),\n"
          "  selfsup vs PyTorch; on cpu both use 2 threads. --data-dir: the Fashion-MNIST .gz files (default:\n"
          "  Debian's dataset-fashion-mnist).\n");
      return 0;
    } else if (a == "--device" && i + 1 < argc) {
      device = argv[++i];
    } else if (a == "--width" && i + 1 < argc) {
      width = std::atoll(argv[++i]);
    } else if (a == "--batch" && i + 1 < argc) {
      batch = std::atoll(argv[++i]);
    } else if (a == "--steps" && i + 1 < argc) {
      steps = std::atoll(argv[++i]);
    } else if (a == "--rounds" && i + 1 < argc) {
      rounds = std::atoi(argv[++i]);
    } else if (a == "--workers" && i + 1 < argc) {
      workers = std::atoll(argv[++i]);
    } else if (a == "--data-dir" && i + 1 < argc) {
      data_dir = argv[++i];
    } else if (a == "--precision" && i + 1 < argc) {
      try {
        bf16 = parse_precision(argv[++i], "bench_simclr: --precision") == DType::bf16;
      } catch (const Error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 2;
      }
    } else if (a == "--no-peer") {
      peer = false;
    } else {
      std::fprintf(stderr, "bench_simclr: unknown argument '%s' (see --help)\n", a.c_str());
      return 2;
    }
  }
  if (device != "cpu" && device != "cuda") {
    std::fprintf(stderr, "bench_simclr: --device must be cpu or cuda, not '%s'\n", device.c_str());
    return 2;
  }
  if (rounds < 1) {
    std::fprintf(stderr, "bench_simclr: --rounds must be at least 1\n");
    return 2;
  }
  if (device == "cpu") {
    setenv("OMP_NUM_THREADS", "2", 1);
    omp_set_num_threads(2);
  }
  // One selfsup run at `precision` (images/s; 0 after printing the error) and one PyTorch run.
  auto ours = [&](const std::string& precision) -> double {
    ssl::TrainConfig c;
    if (!data_dir.empty()) c.data = "fashion-mnist:" + data_dir;
    c.device = device;
    c.precision = precision;
    c.width = width;
    c.batch = batch;
    c.crop_min = 0.3;
    c.steps = steps;
    c.knn_every_epoch = false;
    c.log_every = 1000000;
    c.out = (std::filesystem::temp_directory_path() / ("selfsup_bench_simclr_" + std::to_string(getpid()))).string();
    std::filesystem::remove_all(c.out);
    try {
      const ssl::TrainSummary s = ssl::train(c, {"", 0, true});
      std::filesystem::remove_all(c.out);
      return s.images_per_s;
    } catch (const Error& e) {
      std::fprintf(stderr, "bench_simclr: %s\n", e.what());
      return 0;
    }
  };
  auto theirs = [&](const std::string& precision) -> double {
    if (!peer) return 0;
    std::string args = "--device " + device + " --width " + std::to_string(width) + " --batch " +
                       std::to_string(batch) + " --steps " + std::to_string(steps) + " --crop-min 0.3 --workers " +
                       std::to_string(device == "cpu" ? 1 : workers) + " --precision " + precision;
    if (!data_dir.empty()) args += " --data-dir " + data_dir;
    double ips = 0;
    for (const std::string& line : bench::run_peer(bench::peer_script("torch_simclr_fmnist.py"), args))
      if (line.find("images_per_s") != std::string::npos) ips = bench::json_number(line, "images_per_s");
    return ips;
  };
  // Per round: images/s of each side at fp32 and (with --precision bf16) bf16; a failed selfsup run ends the
  // benchmark, a missing peer leaves its columns empty.
  std::vector<double> s32, s16, p32, p16;
  bool failed = false;
  bench::alternate(
      rounds,
      [&](int) {
        if (failed) return;
        s32.push_back(ours("fp32"));
        if (bf16 && s32.back() > 0) s16.push_back(ours("bf16"));
        failed = s32.back() == 0 || (bf16 && s16.back() == 0);
      },
      [&](int r) {
        if (failed || (r > 0 && p32.empty())) return;
        const double f = theirs("fp32"), b = bf16 && f > 0 ? theirs("bf16") : 0;
        if (f > 0) p32.push_back(f);
        if (b > 0) p16.push_back(b);
      });
  if (failed) return 1;
  const double s_ips = bench::median(s32), peer_ips = bench::median(p32);
  std::printf("%s\n", bench::cpu_description().c_str());
  std::printf("SimCLR on Fashion-MNIST, ResNet-18 layout width %ld, batch %ld (2 views), %ld steps, on %s%s\n",
              long(width), long(batch), long(steps), device.c_str(), device == "cpu" ? ", 2 threads" : "");
  std::printf("%d round%s, the order alternating (selfsup first, then PyTorch first); medians over the rounds\n",
              rounds, rounds == 1 ? "" : "s");
  std::vector<double> ratios;
  if (bf16) {
    const double s16m = bench::median(s16), p16m = bench::median(p16);
    std::printf("%s\n", precision_description(DType::bf16, device == "cuda").c_str());
    std::printf("%-10s %12s %12s %10s\n", "images/s", "fp32", "bf16", "speedup");
    std::printf("%-10s %12.0f %12.0f %9.2fx   (includes its first, slower steps)\n", "selfsup", s_ips, s16m,
                s16m / s_ips);
    if (!p32.empty() && !p16.empty()) {
      std::printf("%-10s %12.0f %12.0f %9.2fx   (3 warm-up steps excluded)\n", "PyTorch", peer_ips, p16m,
                  p16m / peer_ips);
      for (size_t r = 0; r < s16.size() && r < p16.size(); ++r) ratios.push_back(s16[r] / p16[r]);
      std::printf("ratio      %12.2fx %11.2fx   (bf16 per round: %s)\n", s_ips / peer_ips, s16m / p16m,
                  bench::list(ratios, 2, "x").c_str());
    } else if (peer) {
      std::printf("peer: PyTorch not available\n");
    }
    std::printf("{\"bench\": \"simclr_w%ld_b%ld_%s_bf16\", \"value\": %.1f, \"unit\": \"img/s\", \"peer\": %.1f}\n",
                long(width), long(batch), device.c_str(), s16m, p16m);
    return 0;
  }
  std::printf("%-10s %12s\n", "", "images/s");
  std::printf("%-10s %12.0f   (%s; includes its first, slower steps)\n", "selfsup", s_ips, bench::list(s32, 0).c_str());
  if (!p32.empty()) {
    std::printf("%-10s %12.0f   (%s; 3 warm-up steps excluded)\n", "PyTorch", peer_ips, bench::list(p32, 0).c_str());
    for (size_t r = 0; r < s32.size() && r < p32.size(); ++r) ratios.push_back(s32[r] / p32[r]);
    std::printf("ratio      %12.2fx   (per round: %s)\n", s_ips / peer_ips, bench::list(ratios, 2, "x").c_str());
  } else if (peer) {
    std::printf("peer: PyTorch not available\n");
  }
  std::printf("{\"bench\": \"simclr_w%ld_b%ld_%s\", \"value\": %.1f, \"unit\": \"img/s\", \"peer\": %.1f}\n", long(width),
              long(batch), device.c_str(), s_ips, peer_ips);
  return 0;
}
