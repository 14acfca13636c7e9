// bench_infonce_cpu: NT-Xent forward+backward (D = 128) on the CPU, selfsup's streaming kernels next to
// the PyTorch expression (bench/peers/torch_infonce.py) in the same run, 2 threads each; then the peak
// resident memory of one selfsup step at large N, which stays O(N D) because no (2N, 2N) matrix exists
// (PyTorch's expression would need 4 (2N)^2 bytes for the similarity matrix alone, and as much again for
// its gradient).
// --moco K: MoCo's InfoNCE instead, B queries against their B keys and a queue of K keys (the gradient
// reaches the queries only), next to MoCo's own expression (l_pos, q @ queue.T, cat, cross_entropy).
#include <omp.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "bench/harness.h"
#include "engine/core/tensor.h"
#include "engine/ops/contrastive.h"
#include "engine/ops/ops.h"

using namespace selfsup;

namespace {

constexpr int64_t kDim = 128;
constexpr double kTau = 0.2;

double step_ms(int64_t rows, int runs, double* loss_out) {
  Generator g(0, 0);
  Tensor z = Tensor::randn({rows, kDim}, DType::f32, &g);
  z.set_requires_grad(true);
  return bench::median_ms(
      [&] {
        z.set_grad(Tensor());
        ContrastiveResult r = nt_xent(z, kTau);
        r.loss.backward();
        *loss_out = r.loss.item();
      },
      1, runs);
}

// MoCo: q (B, D) with gradient, k (B, D) and queue (K, D) constant, as ssl/methods/moco.cpp calls it.
double moco_step_ms(int64_t batch, int64_t queue_size, int runs, double* loss_out) {
  Generator g(0, 0);
  Tensor q = Tensor::randn({batch, kDim}, DType::f32, &g);
  Tensor k = normalize(Tensor::randn({batch, kDim}, DType::f32, &g), 1);
  Tensor queue = normalize(Tensor::randn({queue_size, kDim}, DType::f32, &g), 1);
  q.set_requires_grad(true);
  return bench::median_ms(
      [&] {
        q.set_grad(Tensor());
        ContrastiveResult r = info_nce(normalize(q, 1), k, queue, kTau);
        r.loss.backward();
        *loss_out = r.loss.item();
      },
      1, runs);
}

// Peak RSS (MiB) of a fresh process (this program re-executed with --rss-child) running one step at `rows`.
// fork + exec rather than a bare fork: the OpenMP runtime's threads do not survive a fork.
double child_peak_rss_mib(int64_t rows) {
  const std::string n = std::to_string(rows);
  pid_t pid = fork();
  if (pid == 0) {
    execl("/proc/self/exe", "bench_infonce_cpu", "--rss-child", n.c_str(), static_cast<char*>(nullptr));
    std::_Exit(127);
  }
  int status = 0;
  struct rusage ru {};
  wait4(pid, &status, 0, &ru);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? static_cast<double>(ru.ru_maxrss) / 1024.0 : -1.0;
}

void usage() {
  std::printf(
      "usage: bench_infonce_cpu [--quick] [--runs N] [--no-peer] [--rss-rows R] [--moco K]\n"
      "  NT-Xent (D=128, tau=0.2) forward+backward on 2 threads: selfsup vs PyTorch, then the peak memory of\n"
      "  one selfsup step at --rss-rows rows (default 65536).\n"
      "  --quick     smaller sizes\n"
      "  --moco K    MoCo's InfoNCE instead: batches 64 and 256 (--quick: 64) against a queue of K keys\n");
}

int run_moco(int64_t queue_size, bool quick, int runs, bool peer) {
  const std::vector<int64_t> batches = quick ? std::vector<int64_t>{64} : std::vector<int64_t>{64, 256};
  std::string args = "--runs=" + std::to_string(runs) + " --moco=" + std::to_string(queue_size);
  for (int64_t b : batches) args += " " + std::to_string(b);
  std::map<int64_t, std::pair<double, double>> peer_ms;
  if (peer)
    for (const std::string& line : bench::run_peer(bench::peer_script("torch_infonce.py"), args))
      peer_ms[static_cast<int64_t>(bench::json_number(line, "rows"))] = {bench::json_number(line, "ms"),
                                                                        bench::json_number(line, "loss")};
  std::printf("%s\n", bench::cpu_description().c_str());
  std::printf("MoCo InfoNCE forward+backward, D=%ld, tau=%.2f, queue K=%ld, float32, 2 threads\n", long(kDim), kTau,
              long(queue_size));
  std::printf("(each side draws its own random q, k and queue, so the losses agree only statistically)\n");
  std::printf("%-10s %14s %14s %8s %12s %12s\n", "batch", "selfsup ms", "PyTorch ms", "ratio", "loss",
              "torch loss");
  for (int64_t b : batches) {
    double loss = 0;
    const double ms = moco_step_ms(b, queue_size, runs, &loss);
    auto it = peer_ms.find(b);
    if (it != peer_ms.end())
      std::printf("%-10ld %14.2f %14.2f %7.2fx %12.5f %12.5f\n", long(b), ms, it->second.first,
                  it->second.first / ms, loss, it->second.second);
    else
      std::printf("%-10ld %14.2f %14s %8s %12.5f\n", long(b), ms, "-", "-", loss);
  }
  if (peer && peer_ms.empty()) std::printf("peer: PyTorch not available\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  omp_set_num_threads(2);
  bool quick = false, peer = true;
  int runs = 5;
  int64_t rss_rows = 65536, moco_queue = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      usage();
      return 0;
    } else if (a == "--quick") {
      quick = true;
    } else if (a == "--no-peer") {
      peer = false;
    } else if (a == "--runs" && i + 1 < argc) {
      runs = std::atoi(argv[++i]);
    } else if (a == "--rss-child" && i + 1 < argc) {
      double loss;
      step_ms(std::atoll(argv[++i]), 1, &loss);
      return 0;
    } else if (a == "--moco" && i + 1 < argc) {
      moco_queue = std::atoll(argv[++i]);
      if (moco_queue < 1) {
        std::fprintf(stderr, "bench_infonce_cpu: --moco needs a queue size >= 1\n");
        return 2;
      }
    } else if (a == "--rss-rows" && i + 1 < argc) {
      rss_rows = std::atoll(argv[++i]);
    } else {
      std::fprintf(stderr, "bench_infonce_cpu: unknown argument '%s'\n", a.c_str());
      usage();
      return 2;
    }
  }
  setenv("OMP_NUM_THREADS", "2", 1);
  omp_set_num_threads(2);
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (moco_queue > 0) return run_moco(moco_queue, quick, runs, peer);
  std::vector<int64_t> sizes = quick ? std::vector<int64_t>{1024, 4096} : std::vector<int64_t>{2048, 8192};
  if (quick) rss_rows = std::min<int64_t>(rss_rows, 16384);
  std::string args = "--runs=" + std::to_string(runs);
  for (int64_t s : sizes) args += " " + std::to_string(s);
  std::map<int64_t, std::pair<double, double>> peer_ms;
  if (peer)
    for (const std::string& line : bench::run_peer(bench::peer_script("torch_infonce.py"), args))
      peer_ms[static_cast<int64_t>(bench::json_number(line, "rows"))] = {bench::json_number(line, "ms"),
                                                                        bench::json_number(line, "loss")};
  std::printf("%s\n", bench::cpu_description().c_str());
  std::printf("NT-Xent forward+backward, D=%ld, tau=%.2f, float32, 2 threads\n", long(kDim), kTau);
  std::printf("(each side draws its own random z, so the losses agree only statistically)\n");
  std::printf("%-10s %14s %14s %8s %12s %12s\n", "rows (2N)", "selfsup ms", "PyTorch ms", "ratio", "loss", "torch loss");
  for (int64_t rows : sizes) {
    double loss = 0;
    double ms = step_ms(rows, runs, &loss);
    auto it = peer_ms.find(rows);
    if (it != peer_ms.end()) {
      std::printf("%-10ld %14.1f %14.1f %7.2fx %12.5f %12.5f\n", long(rows), ms, it->second.first,
                  it->second.first / ms, loss, it->second.second);
    } else {
      std::printf("%-10ld %14.1f %14s %8s %12.5f\n", long(rows), ms, "-", "-", loss);
    }
  }
  if (peer && peer_ms.empty()) std::printf("peer: PyTorch not available\n");
  double rss = child_peak_rss_mib(rss_rows);
  double inputs_mib = 2.0 * static_cast<double>(rss_rows) * kDim * 4 / (1 << 20);
  double dense_mib = static_cast<double>(rss_rows) * static_cast<double>(rss_rows) * 4 / (1 << 20);
  std::printf("peak RSS of one selfsup step at %ld rows: %.0f MiB (z and its gradient: %.0f MiB; one dense "
              "similarity matrix would be %.0f MiB)\n",
              long(rss_rows), rss, inputs_mib, dense_mib);
  return 0;
}
