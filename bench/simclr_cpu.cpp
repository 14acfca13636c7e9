// bench_simclr_cpu: SimCLR training throughput on Fashion-MNIST, `selfsup train` (in-process, the demo's
// preset) next to the same model, recipe, batch and optimizer in PyTorch (bench/peers/torch_simclr_fmnist.py)
// in the same run on the same machine, 2 threads each; images/s and the ratio.
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "bench/harness.h"
#include "ssl/trainer/trainer.h"

using namespace selfsup;

int main(int argc, char** argv) {
  int64_t width = 8, batch = 256, steps = 40;
  bool peer = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf(
          "usage: bench_simclr_cpu [--width W (8)] [--batch B (256)] [--steps N (40)] [--no-peer]\n"
          "  SimCLR steps on Fashion-MNIST (ResNet-18 layout, CIFAR stem, grayscale recipe, NT-Xent, SGD),\n"
          "  selfsup vs PyTorch on 2 threads.\n");
      return 0;
    } else if (a == "--width" && i + 1 < argc) {
      width = std::atoll(argv[++i]);
    } else if (a == "--batch" && i + 1 < argc) {
      batch = std::atoll(argv[++i]);
    } else if (a == "--steps" && i + 1 < argc) {
      steps = std::atoll(argv[++i]);
    } else if (a == "--no-peer") {
      peer = false;
    } else {
      std::fprintf(stderr, "bench_simclr_cpu: unknown argument '%s' (see --help)\n", a.c_str());
      return 2;
    }
  }
  setenv("OMP_NUM_THREADS", "2", 1);
  omp_set_num_threads(2);
  ssl::TrainConfig c;
  c.width = width;
  c.batch = batch;
  c.crop_min = 0.3;
  c.steps = steps;
  c.knn_every_epoch = false;
  c.log_every = 1000000;
  c.out = (std::filesystem::temp_directory_path() / "selfsup_bench_simclr").string();
  std::filesystem::remove_all(c.out);
  ssl::TrainSummary s = ssl::train(c, {"", 0, true});
  std::filesystem::remove_all(c.out);
  double peer_ips = 0;
  if (peer) {
    const std::string args = "--width " + std::to_string(width) + " --batch " + std::to_string(batch) + " --steps " +
                             std::to_string(steps) + " --crop-min 0.3";
    for (const std::string& line : bench::run_peer(bench::peer_script("torch_simclr_fmnist.py"), args))
      if (line.find("images_per_s") != std::string::npos) peer_ips = bench::json_number(line, "images_per_s");
  }
  std::printf("SimCLR on Fashion-MNIST, ResNet-18 layout width %ld, batch %ld (2 views), %ld steps, 2 threads\n",
              long(width), long(batch), long(steps));
  std::printf("%-10s %12s\n", "", "images/s");
  std::printf("%-10s %12.0f   (includes its first, slower steps)\n", "selfsup", s.images_per_s);
  if (peer_ips > 0) {
    std::printf("%-10s %12.0f   (3 warm-up steps excluded)\n", "PyTorch", peer_ips);
    std::printf("ratio      %12.2fx\n", s.images_per_s / peer_ips);
  } else if (peer) {
    std::printf("peer: PyTorch not available\n");
  }
  return 0;
}
