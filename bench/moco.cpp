// bench_moco: MoCo v2 training throughput on Fashion-MNIST, `selfsup train --method mocov2` (in-process, the
// demo's MoCo v2 preset) next to the same model, recipe, batch, queue, shuffling BN and optimizer in PyTorch
// (bench/peers/torch_moco_fmnist.py) in the same run on the same machine; images/s and the ratio.
//   --device cpu (default): 2 threads each, width 8, batch 64, K 16384, 8 shuffling-BN shards.
//   --device cuda: selfsup with its views made on the GPU; PyTorch eager with torchvision augmentation in
//   --workers DataLoader workers and the model on the GPU.
// --rounds R (2): each side runs R times, alternating which goes first (bench/harness.h, alternate).
// The last line is JSON ({"bench", "value", "unit", "peer"}) as bench_simclr prints, for gpu_check.sh.
#include <omp.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "bench/harness.h"
#include "engine/core/check.h"
#include "ssl/trainer/trainer.h"

using namespace selfsup;

int main(int argc, char** argv) {
  int64_t width = 8, batch = 64, steps = 160, workers = 8, queue = 16384;
  std::string device = "cpu", data_dir;
  bool peer = true;
  int rounds = 2;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return std::string(argv[++i]); };
    if (a == "--help" || a == "-h") {
      std::printf(
          "usage: bench_moco [--device cpu|cuda] [--width W (8)] [--batch B (64)] [--steps N (160)]\n"
          "                  [--queue-size K (16384)] [--workers N (8, PyTorch's DataLoader on cuda)]\n"
          "                  [--data-dir DIR] [--rounds R (2): each side runs R times, the order alternating]\n"
          "                  [--no-peer]\n"
          "  MoCo v2 steps on Fashion-MNIST (ResNet-18 layout, CIFAR stem, MLP head, mocov2 recipe, key queue,\n"
          "  momentum encoder, 8 shuffling-BN shards, SGD), selfsup vs PyTorch; on cpu both use 2 threads.\n");
      return 0;
    } else if (a == "--device" && i + 1 < argc) {
      device = next();
    } else if (a == "--width" && i + 1 < argc) {
      width = std::atoll(next().c_str());
    } else if (a == "--batch" && i + 1 < argc) {
      batch = std::atoll(next().c_str());
    } else if (a == "--steps" && i + 1 < argc) {
      steps = std::atoll(next().c_str());
    } else if (a == "--queue-size" && i + 1 < argc) {
      queue = std::atoll(next().c_str());
    } else if (a == "--workers" && i + 1 < argc) {
      workers = std::atoll(next().c_str());
    } else if (a == "--rounds" && i + 1 < argc) {
      rounds = std::atoi(next().c_str());
    } else if (a == "--data-dir" && i + 1 < argc) {
      data_dir = next();
    } else if (a == "--no-peer") {
      peer = false;
    } else {
      std::fprintf(stderr, "bench_moco: unknown argument '%s' (see --help)\n", a.c_str());
      return 2;
    }
  }
  if (device != "cpu" && device != "cuda") {
    std::fprintf(stderr, "bench_moco: --device must be cpu or cuda, not '%s'\n", device.c_str());
    return 2;
  }
  if (rounds < 1) {
    std::fprintf(stderr, "bench_moco: --rounds must be at least 1\n");
    return 2;
  }
  if (device == "cpu") {
    setenv("OMP_NUM_THREADS", "2", 1);
    omp_set_num_threads(2);
  }
  ssl::TrainConfig c;
  if (!data_dir.empty()) c.data = "fashion-mnist:" + data_dir;
  c.method = "mocov2";
  ssl::apply_method_preset(c);
  c.device = device;
  c.width = width;
  c.batch = batch;
  c.lr = 0.06;
  c.key_momentum = 0.99;
  c.queue_size = queue;
  c.steps = steps;
  c.knn_every_epoch = false;
  c.log_every = 1000000;
  c.out = (std::filesystem::temp_directory_path() / ("selfsup_bench_moco_" + std::to_string(getpid()))).string();
  std::vector<double> ours_ips, peer_ips;
  bool failed = false;
  bench::alternate(
      rounds,
      [&](int) {
        if (failed) return;
        std::filesystem::remove_all(c.out);
        try {
          ours_ips.push_back(ssl::train(c, {"", 0, true}).images_per_s);
        } catch (const Error& e) {
          std::fprintf(stderr, "bench_moco: %s\n", e.what());
          failed = true;
        }
        std::filesystem::remove_all(c.out);
      },
      [&](int r) {
        if (failed || !peer || (r > 0 && peer_ips.empty())) return;
        std::string args = "--device " + device + " --width " + std::to_string(width) + " --batch " +
                           std::to_string(batch) + " --steps " + std::to_string(steps) + " --queue-size " +
                           std::to_string(queue) + " --workers " + std::to_string(device == "cpu" ? 1 : workers);
        if (!data_dir.empty()) args += " --data-dir " + data_dir;
        for (const std::string& line : bench::run_peer(bench::peer_script("torch_moco_fmnist.py"), args))
          if (line.find("images_per_s") != std::string::npos)
            peer_ips.push_back(bench::json_number(line, "images_per_s"));
      });
  if (failed) return 1;
  const double ours = bench::median(ours_ips), theirs = bench::median(peer_ips);
  std::printf("%s\n", bench::cpu_description().c_str());
  std::printf("MoCo v2 on Fashion-MNIST, ResNet-18 layout width %ld, batch %ld, K %ld, %ld steps, on %s%s\n",
              long(width), long(batch), long(queue), long(steps), device.c_str(), device == "cpu" ? ", 2 threads" : "");
  std::printf("%d round%s, the order alternating (selfsup first, then PyTorch first); medians over the rounds\n",
              rounds, rounds == 1 ? "" : "s");
  std::printf("%-10s %12s\n", "", "images/s");
  std::printf("%-10s %12.0f   (%s; includes its first, slower steps)\n", "selfsup", ours,
              bench::list(ours_ips, 0).c_str());
  if (theirs > 0) {
    std::vector<double> ratios;
    for (size_t r = 0; r < ours_ips.size() && r < peer_ips.size(); ++r) ratios.push_back(ours_ips[r] / peer_ips[r]);
    std::printf("%-10s %12.0f   (%s; 3 warm-up steps excluded)\n", "PyTorch", theirs, bench::list(peer_ips, 0).c_str());
    std::printf("ratio      %12.2fx   (per round: %s)\n", ours / theirs, bench::list(ratios, 2, "x").c_str());
  } else if (peer) {
    std::printf("peer: PyTorch not available\n");
  }
  std::printf("{\"bench\": \"mocov2_w%ld_b%ld_%s\", \"value\": %.1f, \"unit\": \"img/s\", \"peer\": %.1f}\n",
              long(width), long(batch), device.c_str(), ours, theirs);
  return 0;
}
