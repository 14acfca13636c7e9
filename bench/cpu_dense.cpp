// bench_cpu_dense: the dense CPU kernels (GEMM, convolution forward/backward-data/backward-weight) on
// ResNet-like shapes at batch 256, against PyTorch doing the same work (bench/peers/torch_cpu_dense.py, run
// through /usr/bin/python3 when present). Both sides use 2 threads and report the median of several timed runs
// after warm-up; one table compares GFLOP/s. The peer receives the shape list on its command line, so both
// sides always measure the same shapes.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "bench/harness.h"
#include "kernels/kernel_api.h"

namespace sk = selfsup::kernels;
namespace bench = selfsup::bench;
using bench::median_ms;

namespace {

struct Case {
  bool conv;
  sk::Conv2dShape s;  // conv
  bool bias;
  int64_t M, N, K;    // matmul C(M,N) = A(M,K) B(K,N)
  bool quick;         // part of --quick
};

struct Timing {
  double ms[3] = {0, 0, 0};  // fwd, bwd_data, bwd_weight
};
const char* const kDirs[3] = {"fwd", "bwd_data", "bwd_weight"};

Case conv_case(int64_t N, int64_t C, int64_t H, int64_t K, int64_t R, int64_t stride, bool quick) {
  const int64_t pad = R / 2;
  sk::Conv2dShape s{N, C, H, H, K, R, R, stride, stride, pad, pad, 1, 1, 1, 0, 0};
  s.P = (H + 2 * pad - R) / stride + 1;
  s.Q = s.P;
  return {true, s, false, 0, 0, 0, quick};
}

Case matmul_case(int64_t M, int64_t N, int64_t K, bool quick) { return {false, {}, false, M, N, K, quick}; }

std::vector<Case> all_cases() {
  return {
      conv_case(256, 3, 32, 16, 3, 1, false),    // CIFAR stem
      conv_case(256, 3, 32, 64, 7, 2, false),    // ImageNet-style 7x7/2 stem on 32x32
      conv_case(256, 16, 32, 16, 3, 1, true),    // ResNet-20 stage 1
      conv_case(256, 16, 28, 16, 3, 1, false),   // same on 28x28 (Fashion-MNIST)
      conv_case(256, 8, 28, 8, 3, 1, false),     // width-8 ResNet-18 layer1 (the demo): nChw8c blocks
      conv_case(256, 8, 28, 16, 3, 2, false),    // its layer2 transition
      conv_case(256, 32, 16, 32, 3, 1, true),    // stage 2
      conv_case(256, 32, 16, 64, 3, 2, true),    // stage transition, stride 2
      conv_case(256, 64, 8, 64, 3, 1, true),     // stage 3
      conv_case(256, 128, 4, 128, 3, 1, false),  // ResNet-18 late stages at CIFAR resolution
      conv_case(256, 256, 4, 256, 3, 1, false),
      conv_case(256, 64, 8, 256, 1, 1, true),    // bottleneck expand
      conv_case(256, 256, 8, 64, 1, 1, false),   // bottleneck reduce
      conv_case(256, 32, 16, 64, 1, 2, false),   // 1x1/2 shortcut
      matmul_case(256, 512, 512, true),          // projection head layer
      matmul_case(4096, 256, 128, false),        // similarity of 4096 embeddings (dim 128) with 256
      matmul_case(512, 512, 2048, true),         // wide head layer
  };
}

double flops(const Case& c) {
  if (!c.conv) return 2.0 * c.M * c.N * c.K;
  const auto& s = c.s;
  return 2.0 * s.N * s.K * s.P * s.Q * (s.C / s.groups) * s.R * s.S;
}

// The peer's shape key; bench/peers/torch_cpu_dense.py documents the format.
std::string key(const Case& c) {
  char buf[160];
  const auto& s = c.s;
  if (c.conv) {
    std::snprintf(buf, sizeof buf, "conv:%ld,%ld,%ld,%ld,%ld,%ld,%ld,%ld,%ld,%ld,%ld,%d", long(s.N), long(s.C),
                  long(s.H), long(s.W), long(s.K), long(s.R), long(s.S), long(s.stride_h), long(s.pad_h),
                  long(s.dil_h), long(s.groups), int(c.bias));
  } else {
    std::snprintf(buf, sizeof buf, "matmul:%ld,%ld,%ld", long(c.M), long(c.N), long(c.K));
  }
  return buf;
}

std::string label(const Case& c) {
  char buf[96];
  const auto& s = c.s;
  if (c.conv) {
    std::snprintf(buf, sizeof buf, "conv %ldx%ld/%ld %ld->%ld %ldx%ld", long(s.R), long(s.S), long(s.stride_h),
                  long(s.C), long(s.K), long(s.H), long(s.W));
  } else {
    std::snprintf(buf, sizeof buf, "matmul %ldx%ldx%ld", long(c.M), long(c.N), long(c.K));
  }
  return buf;
}

std::vector<float> random_floats(size_t n) {
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

Timing time_selfsup(const Case& c, int warmup, int runs) {
  Timing t;
  if (c.conv) {
    const auto& s = c.s;
    auto x = random_floats(s.N * s.C * s.H * s.W), dx = x;             // (N, C, H, W)
    auto w = random_floats(s.K * (s.C / s.groups) * s.R * s.S), dw = w;  // (K, C/G, R, S)
    auto y = random_floats(s.N * s.K * s.P * s.Q), dy = y;             // (N, K, P, Q)
    std::vector<float> bias(s.K), dbias(s.K);
    const float* b = c.bias ? bias.data() : nullptr;
    float* db = c.bias ? dbias.data() : nullptr;
    t.ms[0] = median_ms([&] { sk::conv2d_fwd_cpu<float>(s, x.data(), w.data(), b, y.data()); }, warmup, runs);
    t.ms[1] = median_ms([&] { sk::conv2d_bwd_data_cpu<float>(s, dy.data(), w.data(), dx.data()); }, warmup, runs);
    t.ms[2] = median_ms([&] { sk::conv2d_bwd_weight_cpu<float>(s, x.data(), dy.data(), dw.data(), db); }, warmup,
                        runs);
  } else {
    const int64_t M = c.M, N = c.N, K = c.K;
    auto a = random_floats(M * K), da = a;  // (M, K)
    auto b = random_floats(K * N), db = b;  // (K, N)
    auto out = random_floats(M * N), dc = out;  // (M, N)
    // Forward C = A B; the backward GEMMs of C = A B: dA = dC B^T, dB = A^T dC.
    const auto gemm = [](bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* x, int64_t ldx,
                         const float* y, int64_t ldy, float* z) {
      sk::gemm_cpu<float>(ta, tb, m, n, k, 1.0f, x, ldx, y, ldy, 0.0f, z, n);
    };
    t.ms[0] = median_ms([&] { gemm(false, false, M, N, K, a.data(), K, b.data(), N, out.data()); }, warmup, runs);
    t.ms[1] = median_ms([&] { gemm(false, true, M, K, N, dc.data(), N, b.data(), N, da.data()); }, warmup, runs);
    t.ms[2] = median_ms([&] { gemm(true, false, K, N, M, a.data(), K, dc.data(), N, db.data()); }, warmup, runs);
  }
  return t;
}

// Runs the PyTorch peer on the given cases; returns timings by key (empty when PyTorch is unavailable).
std::map<std::string, Timing> run_peer(const std::string& script, const std::vector<Case>& cases, int runs) {
  std::map<std::string, Timing> out;
  std::string args = "--runs=" + std::to_string(runs);
  for (const auto& c : cases) args += " " + key(c);
  for (const std::string& line : bench::run_peer(script, args)) {
    Timing t;
    for (int d = 0; d < 3; ++d) t.ms[d] = bench::json_number(line, (std::string(kDirs[d]) + "_ms").c_str());
    const std::string k = bench::json_string(line, "key");
    if (!k.empty()) out[k] = t;
  }
  return out;
}

void usage() {
  std::printf(
      "usage: bench_cpu_dense [--quick] [--runs N] [--rounds N] [--no-peer] [--peer SCRIPT]\n"
      "  Times selfsup's float32 CPU GEMM and convolution (forward, backward-data, backward-weight) on\n"
      "  ResNet-like shapes at batch 256 and compares with PyTorch (2 threads each).\n"
      "  --quick     fewer shapes (about a minute)\n"
      "  --runs N    timed runs per measurement, median reported (default 7; 2 warm-up runs first)\n"
      "  --rounds N  alternate selfsup and PyTorch N times, keep each side's best median (default 2)\n"
      "  --no-peer   skip PyTorch\n"
      "  --peer S    the PyTorch script (default: %s)\n",
      bench::peer_script("torch_cpu_dense.py").c_str());
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, peer = true;
  int runs = 7, rounds = 2;
  std::string script = bench::peer_script("torch_cpu_dense.py");
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if (a == "--no-peer") {
      peer = false;
    } else if (a == "--runs" && i + 1 < argc) {
      runs = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--rounds" && i + 1 < argc) {
      rounds = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--peer" && i + 1 < argc) {
      script = argv[++i];
    } else {
      usage();
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  // Two threads like the peer, unless the caller chose otherwise (libgomp read OMP_NUM_THREADS at load).
  if (!std::getenv("OMP_NUM_THREADS")) omp_set_num_threads(2);
  std::printf("%s\n", bench::cpu_description().c_str());
  std::printf("selfsup threads: %d\n", omp_get_max_threads());

  std::vector<Case> cases;
  for (const auto& c : all_cases())
    if (!quick || c.quick) cases.push_back(c);
  // The machine is shared: alternate the two sides for a few rounds and keep each side's best median, so a
  // burst of foreign load during one side's turn does not decide the ratio.
  std::vector<Timing> ours(cases.size());
  std::map<std::string, Timing> theirs;
  const auto keep_best = [](Timing& best, const Timing& t) {
    for (int d = 0; d < 3; ++d)
      if (best.ms[d] == 0 || (t.ms[d] > 0 && t.ms[d] < best.ms[d])) best.ms[d] = t.ms[d];
  };
  for (int round = 0; round < rounds; ++round) {
    for (size_t i = 0; i < cases.size(); ++i) keep_best(ours[i], time_selfsup(cases[i], 2, runs));
    if (!peer) continue;
    for (const auto& [k, t] : run_peer(script, cases, runs)) keep_best(theirs[k], t);
  }
  if (peer && theirs.empty()) std::printf("peer: PyTorch not available\n");

  std::printf("\n| %-26s | %-10s | %10s | %15s | %15s | %5s |\n", "shape (batch 256 for conv)", "direction",
              "selfsup ms", "selfsup GFLOP/s", "PyTorch GFLOP/s", "ratio");
  std::printf("|%s|%s|%s|%s|%s|%s|\n", std::string(28, '-').c_str(), std::string(12, '-').c_str(),
              std::string(12, '-').c_str(), std::string(17, '-').c_str(), std::string(17, '-').c_str(),
              std::string(7, '-').c_str());
  for (size_t i = 0; i < cases.size(); ++i) {
    const double gf = flops(cases[i]) / 1e6;  // GFLOP/s = flop / (ms * 1e6)
    const auto peer_it = theirs.find(key(cases[i]));
    for (int d = 0; d < 3; ++d) {
      const double g_ours = gf / ours[i].ms[d];
      char peer_col[32] = "-", ratio_col[16] = "-";
      if (peer_it != theirs.end() && peer_it->second.ms[d] > 0) {
        const double g_peer = gf / peer_it->second.ms[d];
        std::snprintf(peer_col, sizeof peer_col, "%.1f", g_peer);
        std::snprintf(ratio_col, sizeof ratio_col, "%.2f", g_ours / g_peer);
      }
      std::printf("| %-26s | %-10s | %10.3f | %15.1f | %15s | %5s |\n", d == 0 ? label(cases[i]).c_str() : "",
                  kDirs[d], ours[i].ms[d], g_ours, peer_col, ratio_col);
    }
  }
  return 0;
}
