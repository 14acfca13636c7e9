// bench_augment_cpu: images/s of the SimCLR recipe (2 views per image, RandomResizedCrop + flip + colour
// jitter p=0.8 + grayscale p=0.2 + blur p=0.5 + normalize) on the CPU with 2 threads, for 28x28x1, 32x32x3
// and 96x96x3 sources, next to torchvision doing the same transforms in the same run
// (bench/peers/torchvision_augment.py through /usr/bin/python3: two worker processes, PIL and tensor paths;
// the ratio is against the faster of the two). The views are the output size of the source, as in training.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "bench/harness.h"
#include "engine/data/augment.h"
#include "kernels/philox.h"

using namespace selfsup;

namespace {

struct Shape3 {
  int h, w, c;
  std::string key() const { return std::to_string(h) + "x" + std::to_string(w) + "x" + std::to_string(c); }
};

struct PeerResult {
  double pil = 0, tensor = 0;
};

// selfsup: `n` random images, augment_views with 2 views over all of them; best images/s of `runs` runs
// (each run a different step, so the parameters change as in training).
double time_selfsup(const Shape3& s, int64_t n, int runs) {
  Tensor images = Tensor::empty({n, s.h, s.w, s.c}, DType::u8);
  uint8_t* p = images.data_ptr<uint8_t>();
  for (int64_t i = 0; i < images.numel(); ++i) p[i] = static_cast<uint8_t>(kernels::philox_block(1, 2, i).v[0]);
  std::vector<int64_t> idv(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) idv[i] = i;
  const Tensor ids = Tensor::from_vector(idv, {n});
  const AugmentRecipe r = make_recipe("simclr", s.h, s.c);
  augment_views(images, ids, r, 0, 0, 2);  // warm-up
  double best = 0;
  for (int k = 0; k < runs; ++k) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto views = augment_views(images, ids, r, 0, 1 + k, 2);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, n / sec);
  }
  return best;
}

std::map<std::string, PeerResult> run_peer(const std::string& script, const std::vector<Shape3>& shapes, int64_t n) {
  std::map<std::string, PeerResult> out;
  std::string args = "--n " + std::to_string(n) + " --shapes ";
  for (size_t i = 0; i < shapes.size(); ++i) args += (i ? "," : "") + shapes[i].key();
  for (const std::string& line : bench::run_peer(script, args)) {
    const std::string k = bench::json_string(line, "key");
    if (!k.empty()) out[k] = {bench::json_number(line, "pil_img_s"), bench::json_number(line, "tensor_img_s")};
  }
  return out;
}

std::string peer_script_path() { return bench::peer_script("torchvision_augment.py"); }

void usage() {
  std::printf(
      "usage: bench_augment_cpu [--quick] [--n N] [--rounds N] [--no-peer] [--peer SCRIPT]\n"
      "  images/s of the SimCLR recipe (2 views) on 2 threads for 28x28x1, 32x32x3, 96x96x3, next to\n"
      "  torchvision (2 worker processes) doing the same transforms.\n"
      "  --quick     fewer images and one round (about half a minute)\n"
      "  --n N       images per measurement for selfsup (default 8192; the peer gets N/8, min 256)\n"
      "  --rounds N  alternate selfsup and the peer N times, keep each side's best (default 2)\n"
      "  --no-peer   skip torchvision\n"
      "  --peer S    the torchvision script (default: %s)\n",
      peer_script_path().c_str());
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, peer = true;
  int64_t n = 8192;
  int rounds = 2;
  std::string script = peer_script_path();
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if (a == "--no-peer") {
      peer = false;
    } else if (a == "--n" && i + 1 < argc) {
      n = std::max<int64_t>(16, std::atoll(argv[++i]));
    } else if (a == "--rounds" && i + 1 < argc) {
      rounds = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--peer" && i + 1 < argc) {
      script = argv[++i];
    } else {
      usage();
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  if (quick) n = std::min<int64_t>(n, 2048), rounds = 1;
  if (!std::getenv("OMP_NUM_THREADS")) omp_set_num_threads(2);
  std::printf("%s\n", bench::cpu_description().c_str());
  std::printf("selfsup threads: %d, torchvision: 2 worker processes x 1 thread\n", omp_get_max_threads());
  const std::vector<Shape3> shapes = {{28, 28, 1}, {32, 32, 3}, {96, 96, 3}};
  const int64_t peer_n = std::max<int64_t>(256, n / 8);
  std::vector<double> ours(shapes.size(), 0.0);
  std::map<std::string, PeerResult> theirs;
  for (int round = 0; round < rounds; ++round) {
    for (size_t i = 0; i < shapes.size(); ++i) {
      const int64_t ni = shapes[i].h > 64 ? std::max<int64_t>(64, n / 8) : n;
      ours[i] = std::max(ours[i], time_selfsup(shapes[i], ni, 3));
    }
    if (!peer) continue;
    for (const auto& [k, r] : run_peer(script, shapes, peer_n)) {
      theirs[k].pil = std::max(theirs[k].pil, r.pil);
      theirs[k].tensor = std::max(theirs[k].tensor, r.tensor);
    }
  }
  if (peer && theirs.empty()) std::printf("peer: PyTorch not available\n");

  std::printf("\n| %-8s | %13s | %15s | %18s | %6s |\n", "source", "selfsup img/s", "torchvision PIL",
              "torchvision tensor", "ratio");
  std::printf("|----------|---------------|-----------------|--------------------|--------|\n");
  for (size_t i = 0; i < shapes.size(); ++i) {
    const auto it = theirs.find(shapes[i].key());
    if (it == theirs.end()) {
      std::printf("| %-8s | %13.0f | %15s | %18s | %6s |\n", shapes[i].key().c_str(), ours[i], "-", "-", "-");
      continue;
    }
    const double best = std::max(it->second.pil, it->second.tensor);
    std::printf("| %-8s | %13.0f | %15.0f | %18.0f | %5.1fx |\n", shapes[i].key().c_str(), ours[i], it->second.pil,
                it->second.tensor, best > 0 ? ours[i] / best : 0.0);
  }
  std::printf("\nimages/s count source images; each yields 2 views. ratio = selfsup / the faster torchvision path.\n");
  return 0;
}
