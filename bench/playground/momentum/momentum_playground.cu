// Momentum-encoder (EMA) playground: target = m target + (1 - m) online over ResNet-50's 161 parameter
// tensors (25.6M floats), llm.c dev/cuda style: the CPU reference (ema_update_cpu), kernel versions, each
// checked bit for bit against the reference, then timed (median of cudaEvents) as GB/s against a
// device-to-device copy of the same bytes.
//
//   v1  one scalar launch per tensor: 161 launches, launch overhead dominates.
//   v2  one launch, a (tensor, chunk) table uploaded to device memory, scalar loads.
//   v3  production ema_update_cuda (kernels/cuda/momentum.cu): table in kernel parameters (no upload),
//       16-byte loads/stores, no FMA contraction (bit-identical to the CPU).
//
// Usage: bench_playground_momentum [--peer]   (--peer: torch._foreach_mul_/add_ from
// bench/peers/torch_infonce_gpu.py --ema in the same run)
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench/harness.h"
#include "kernels/cuda/cuda_nn_api.h"
#include "kernels/cuda/nn_check.cuh"
#include "kernels/kernel_api.h"

using namespace selfsup::kernels;

#define CHECK(call) SELFSUP_CUDA_CHECK(call)

// torchvision resnet50().parameters() sizes, in order (conv weights have no bias; BN has weight and bias).
std::vector<int64_t> resnet50_param_sizes() {
  std::vector<int64_t> v;
  auto conv = [&](int64_t o, int64_t i, int64_t k) { v.push_back(o * i * k * k); };
  auto bn = [&](int64_t c) {
    v.push_back(c);
    v.push_back(c);
  };
  conv(64, 3, 7);
  bn(64);
  int64_t in = 64;
  const int blocks[4] = {3, 4, 6, 3};
  const int64_t widths[4] = {64, 128, 256, 512};
  for (int st = 0; st < 4; ++st)
    for (int b = 0; b < blocks[st]; ++b) {
      const int64_t w = widths[st];
      conv(w, in, 1);
      bn(w);
      conv(w, w, 3);
      bn(w);
      conv(4 * w, w, 1);
      bn(4 * w);
      if (b == 0) {
        conv(4 * w, in, 1);
        bn(4 * w);
      }
      in = 4 * w;
    }
  v.push_back(1000 * 2048);
  v.push_back(1000);
  return v;  // 161 tensors, 25,557,032 parameters
}

__device__ __forceinline__ float ema(float a, float d, float b, float s) {
  return __fadd_rn(__fmul_rn(a, d), __fmul_rn(b, s));
}

// ---- v1: a launch per tensor
__global__ void v1_kernel(float* t, const float* o, int64_t n, float a, float b) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    t[i] = ema(a, t[i], b, o[i]);
}

// ---- v2: one launch over a device table of chunks
struct Chunk {
  float* t;
  const float* o;
  int64_t n;
};
constexpr int64_t kV2Chunk = 4096;
__global__ void v2_kernel(const Chunk* chunks, int n_chunks, float a, float b) {
  for (int c = blockIdx.x; c < n_chunks; c += gridDim.x) {
    const Chunk ch = chunks[c];
    for (int64_t i = threadIdx.x; i < ch.n; i += blockDim.x) ch.t[i] = ema(a, ch.t[i], b, ch.o[i]);
  }
}

int main(int argc, char** argv) {
  const bool peer = argc > 1 && !std::strcmp(argv[1], "--peer");
  int dev_count = 0;
  if (cudaGetDeviceCount(&dev_count) != cudaSuccess || dev_count == 0) {
    std::printf("momentum playground: no CUDA device, nothing to run\n");
    return 0;
  }
  const std::vector<int64_t> sizes = resnet50_param_sizes();
  int64_t total = 0;
  for (int64_t n : sizes) total += n;
  std::printf("EMA over %zu tensors, %lld floats (ResNet-50)\n", sizes.size(), static_cast<long long>(total));
  const double m = 0.996;
  const float a = static_cast<float>(m), b = static_cast<float>(1.0 - m);

  // One slab per side, each tensor 256-byte aligned inside it as an allocator would place it.
  std::vector<int64_t> offs;
  int64_t slab = 0;
  for (int64_t n : sizes) {
    offs.push_back(slab);
    slab += (n + 63) / 64 * 64;
  }
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> h_t(slab), h_o(slab);
  for (auto& x : h_t) x = u(rng);
  for (auto& x : h_o) x = u(rng);
  float *d_t, *d_o, *d_t0, *d_copy;
  CHECK(cudaMalloc(&d_t, slab * sizeof(float)));
  CHECK(cudaMalloc(&d_t0, slab * sizeof(float)));
  CHECK(cudaMalloc(&d_o, slab * sizeof(float)));
  CHECK(cudaMalloc(&d_copy, slab * sizeof(float)));
  CHECK(cudaMemcpy(d_t0, h_t.data(), slab * sizeof(float), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(d_o, h_o.data(), slab * sizeof(float), cudaMemcpyHostToDevice));
  std::vector<float*> tgt, ht;
  std::vector<const float*> onl, ho;
  for (size_t i = 0; i < sizes.size(); ++i) {
    tgt.push_back(d_t + offs[i]);
    onl.push_back(d_o + offs[i]);
    ht.push_back(h_t.data() + offs[i]);
    ho.push_back(h_o.data() + offs[i]);
  }
  // Reference: one CPU update of the host copy.
  std::vector<float> ref_t = h_t;
  {
    std::vector<float*> rt;
    for (size_t i = 0; i < sizes.size(); ++i) rt.push_back(ref_t.data() + offs[i]);
    ema_update_cpu<float>(static_cast<int64_t>(sizes.size()), rt.data(), ho.data(), sizes.data(), m);
  }
  // v2's table
  std::vector<Chunk> chunks;
  for (size_t i = 0; i < sizes.size(); ++i)
    for (int64_t c = 0; c < sizes[i]; c += kV2Chunk)
      chunks.push_back({tgt[i] + c, onl[i] + c, std::min(kV2Chunk, sizes[i] - c)});
  Chunk* d_chunks;
  CHECK(cudaMalloc(&d_chunks, chunks.size() * sizeof(Chunk)));
  CHECK(cudaMemcpy(d_chunks, chunks.data(), chunks.size() * sizeof(Chunk), cudaMemcpyHostToDevice));

  struct Version {
    const char* name;
    const char* note;
    std::function<void()> run;
  };
  const std::vector<Version> versions = {
      {"v1", "a scalar launch per tensor", [&] {
         for (size_t i = 0; i < sizes.size(); ++i) {
           v1_kernel<<<selfsup::kernels::nn_cuda::grid_for(sizes[i], 256), 256>>>(tgt[i], onl[i], sizes[i], a, b);
           SELFSUP_LAUNCH_CHECK();
         }
       }},
      {"v2", "one launch, device chunk table, scalar", [&] {
         v2_kernel<<<static_cast<unsigned>(chunks.size()), 256>>>(d_chunks, static_cast<int>(chunks.size()), a, b);
         SELFSUP_LAUNCH_CHECK();
       }},
      {"v3", "production: param table, 16-byte access", [&] {
         ema_update_cuda<float>(static_cast<int64_t>(sizes.size()), tgt.data(), onl.data(), sizes.data(), m, nullptr);
       }},
  };

  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  auto time_it = [&](const std::function<void()>& fn) {
    for (int i = 0; i < 3; ++i) fn();
    std::vector<float> t;
    for (int i = 0; i < 21; ++i) {
      CHECK(cudaEventRecord(e0));
      fn();
      CHECK(cudaEventRecord(e1));
      CHECK(cudaEventSynchronize(e1));
      float ms = 0;
      CHECK(cudaEventElapsedTime(&ms, e0, e1));
      t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    return static_cast<double>(t[t.size() / 2]);
  };
  const double bytes = static_cast<double>(total) * sizeof(float);
  const double copy_ms = time_it([&] {
    CHECK(cudaMemcpyAsync(d_copy, d_o, static_cast<size_t>(bytes), cudaMemcpyDeviceToDevice));
  });
  const double copy_gbs = 2 * bytes / (copy_ms * 1e6);
  std::printf("device-to-device copy of %.1f MB: %.3f ms, %.0f GB/s (read + write)\n", bytes / 1e6, copy_ms, copy_gbs);

  bool all_ok = true;
  for (const Version& v : versions) {
    CHECK(cudaMemcpy(d_t, d_t0, slab * sizeof(float), cudaMemcpyDeviceToDevice));
    v.run();
    CHECK(cudaDeviceSynchronize());
    std::vector<float> got(slab);
    CHECK(cudaMemcpy(got.data(), d_t, slab * sizeof(float), cudaMemcpyDeviceToHost));
    int64_t diff = 0;
    for (size_t i = 0; i < sizes.size(); ++i)
      for (int64_t j = 0; j < sizes[i]; ++j) diff += got[offs[i] + j] != ref_t[offs[i] + j];
    const double ms = time_it(v.run);
    const double gbs = 3 * bytes / (ms * 1e6);  // read target and online, write target
    std::printf("%-3s %-42s %8.1f us %7.0f GB/s %5.1f%% of copy  %s (%lld elements differ)\n", v.name, v.note,
                ms * 1e3, gbs, 100 * gbs / copy_gbs, diff == 0 ? "bit-exact" : "MISMATCH",
                static_cast<long long>(diff));
    all_ok &= diff == 0;
  }
  if (peer) {
    const auto lines = selfsup::bench::run_peer(selfsup::bench::peer_script("torch_infonce_gpu.py"), "--ema");
    if (lines.empty()) std::printf("peer: PyTorch not available\n");
    for (const std::string& line : lines)
      if (selfsup::bench::json_string(line, "what") == "ema")
        std::printf("torch._foreach_mul_/add_ %28s %8.1f us %7.0f GB/s\n", "",
                    selfsup::bench::json_number(line, "ms") * 1e3,
                    3 * bytes / (selfsup::bench::json_number(line, "ms") * 1e6));
  }
  cudaFree(d_t);
  cudaFree(d_t0);
  cudaFree(d_o);
  cudaFree(d_copy);
  cudaFree(d_chunks);
  return all_ok ? 0 : 1;
}
