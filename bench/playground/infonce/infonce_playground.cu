// InfoNCE kernel playground (llm.c dev/cuda style): the CPU reference (kernels/cpu, float64), then kernel
// versions of increasing sophistication, each validated against the reference at several sizes and masking
// configurations, then timed (fwd + bwd dq + bwd dk, cudaEvents, median after warm-up).
//
//   v1  naive: one thread per row (dk: per column), dot products straight from global memory, online
//       log-sum-exp in registers. The correctness baseline on the GPU.
//   v2  tiled: a block's 128 rows share 32-column tiles of k staged in shared memory (dk: tiles of q).
//   v3  production: infonce_fwd_cuda / infonce_bwd_cuda from kernels/cuda/infonce.cu (64 x 64 tiles, a 4 x 4
//       micro-tile per thread, exp2 with log2(e)/tau folded in, per-thread online lse merged by shuffles,
//       G through shared memory, output blocks accumulated in registers). float, then bf16 inputs.
//   v4  bf16 tensor cores: infonce_tc_{fwd,bwd}_cuda (kernels/cuda/infonce_bf16.cu): mma.sync m16n8k16 for
//       Q K^T and for G K / G^T Q, G kept in registers between the two products, cp.async double buffering;
//       forward + dq sweep + dk sweep = 5 GEMM passes.
//   v5  v4 with the symmetric backward when q and k are the same tensor (SimCLR): dz = (G + G^T) z in one
//       sweep (infonce_tc_bwd_sym_cuda), forward + 1 sweep = 3 GEMM passes. Validated against dq + dk.
// STATUS of v4/v5: compiled, not yet run on a GPU (their logic runs on the CPU in
// tests/kernels/test_infonce_tc_emulated.cpp).
//
// Usage: bench_playground_infonce [--quick] [--big] [--peer] [--fp32-tflops X] [--bf16-tflops Y]
//   --big adds N = 262144 (v3 bf16, v4, v5) and 1048576 (v4, v5), one run each, with device memory;
//   --peer runs bench/peers/torch_infonce_gpu.py in the same run.
// "floor": 4 passes of 2 N^2 D FLOP at the given rate (fp32 FMA rate for float, tensor rate for bf16).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
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

// One InfoNCE problem on the device: rows q (M, D) against columns k (Ncol, D).
template <typename T>
struct Problem {
  int64_t M, Ncol, D, n_private;
  const T *q, *k;
  const int64_t *pos, *self;  // (M); self may be null
  double inv_tau;
  float *loss, *lse, *dloss;  // (M)
  uint8_t* correct;           // (M)
  T *dq, *dk;                 // (M, D), (Ncol, D)
};

__device__ __forceinline__ bool valid_col(int64_t j, int64_t p, int64_t s, int64_t n_private, int64_t Ncol) {
  return j < Ncol && j != s && (j >= n_private || j == p);
}

// ------------------------------------------------------------------ v1: naive
__global__ void v1_fwd(Problem<float> p) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= p.M) return;
  const float* qi = p.q + i * p.D;
  const int64_t ps = p.pos[i], sf = p.self ? p.self[i] : -1;
  float m = -INFINITY, l = 0.f, best = -INFINITY, spos = 0.f;
  int64_t bestj = -1;
  for (int64_t j = 0; j < p.Ncol; ++j) {
    const float* kj = p.k + j * p.D;
    float s = 0.f;
    for (int64_t d = 0; d < p.D; ++d) s += qi[d] * kj[d];
    s *= static_cast<float>(p.inv_tau);
    if (j == ps) spos = s;
    if (!valid_col(j, ps, sf, p.n_private, p.Ncol)) continue;
    if (s > best) { best = s; bestj = j; }
    if (s > m) { l = l * expf(m - s) + 1.f; m = s; } else { l += expf(s - m); }
  }
  p.lse[i] = m + logf(l);
  p.loss[i] = p.lse[i] - spos;
  p.correct[i] = bestj == ps;
}

// G_ij = inv_tau dloss_i (p_ij - [j == pos_i]) for a (row, column) pair, from global memory.
__device__ float v1_grad(const Problem<float>& p, int64_t i, int64_t j, const float* qi, const float* kj) {
  const int64_t ps = p.pos[i], sf = p.self ? p.self[i] : -1;
  float prob = 0.f;
  if (valid_col(j, ps, sf, p.n_private, p.Ncol)) {
    float s = 0.f;
    for (int64_t d = 0; d < p.D; ++d) s += qi[d] * kj[d];
    prob = expf(s * static_cast<float>(p.inv_tau) - p.lse[i]);
  }
  return static_cast<float>(p.inv_tau) * p.dloss[i] * (prob - (j == ps ? 1.f : 0.f));
}

__global__ void v1_dq(Problem<float> p) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= p.M) return;
  float acc[256];
  for (int d = 0; d < p.D; ++d) acc[d] = 0.f;
  for (int64_t j = 0; j < p.Ncol; ++j) {
    const float g = v1_grad(p, i, j, p.q + i * p.D, p.k + j * p.D);
    for (int d = 0; d < p.D; ++d) acc[d] += g * p.k[j * p.D + d];
  }
  for (int d = 0; d < p.D; ++d) p.dq[i * p.D + d] = acc[d];
}

__global__ void v1_dk(Problem<float> p) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (j >= p.Ncol) return;
  float acc[256];
  for (int d = 0; d < p.D; ++d) acc[d] = 0.f;
  for (int64_t i = 0; i < p.M; ++i) {
    const float g = v1_grad(p, i, j, p.q + i * p.D, p.k + j * p.D);
    for (int d = 0; d < p.D; ++d) acc[d] += g * p.q[i * p.D + d];
  }
  for (int d = 0; d < p.D; ++d) p.dk[j * p.D + d] = acc[d];
}

void run_v1(const Problem<float>& p, bool fwd, bool bwd, int block) {
  if (fwd) {
    v1_fwd<<<(p.M + block - 1) / block, block>>>(p);
    SELFSUP_LAUNCH_CHECK();
  }
  if (bwd) {
    v1_dq<<<(p.M + block - 1) / block, block>>>(p);
    SELFSUP_LAUNCH_CHECK();
    v1_dk<<<(p.Ncol + block - 1) / block, block>>>(p);
    SELFSUP_LAUNCH_CHECK();
  }
}

// ------------------------------------------------------------------ v2: shared-memory tiles of the other side
constexpr int kV2Cols = 32;

// Each thread owns one "own" vector (a q row, or a k column for dk); the block stages kV2Cols vectors of the
// other side in shared memory and every thread scores its vector against them.
template <int kMode>  // 0: forward, 1: dq, 2: dk
__global__ void v2_kernel(Problem<float> p) {
  extern __shared__ float tile[];  // (kV2Cols, D)
  const bool rows_own = kMode != 2;
  const int64_t own_n = rows_own ? p.M : p.Ncol, other_n = rows_own ? p.Ncol : p.M;
  const int64_t me = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const bool live = me < own_n;
  const float* mine = (rows_own ? p.q : p.k) + (live ? me : 0) * p.D;
  const float* other = rows_own ? p.k : p.q;
  const float it = static_cast<float>(p.inv_tau);
  float m = -INFINITY, l = 0.f, best = -INFINITY, spos = 0.f;
  int64_t bestj = -1;
  float acc[256];
  for (int d = 0; d < p.D; ++d) acc[d] = 0.f;
  for (int64_t o0 = 0; o0 < other_n; o0 += kV2Cols) {
    __syncthreads();
    for (int64_t idx = threadIdx.x; idx < kV2Cols * p.D; idx += blockDim.x) {
      const int64_t r = idx / p.D;
      tile[idx] = o0 + r < other_n ? other[(o0 + r) * p.D + idx % p.D] : 0.f;
    }
    __syncthreads();
    if (!live) continue;
    for (int c = 0; c < kV2Cols && o0 + c < other_n; ++c) {
      const float* v = tile + c * p.D;
      float s = 0.f;
      for (int d = 0; d < p.D; ++d) s += mine[d] * v[d];
      s *= it;
      const int64_t i = rows_own ? me : o0 + c, j = rows_own ? o0 + c : me;
      const int64_t ps = p.pos[i], sf = p.self ? p.self[i] : -1;
      const bool ok = valid_col(j, ps, sf, p.n_private, p.Ncol);
      if (kMode == 0) {
        if (j == ps) spos = s;
        if (!ok) continue;
        if (s > best) { best = s; bestj = j; }
        if (s > m) { l = l * expf(m - s) + 1.f; m = s; } else { l += expf(s - m); }
      } else {
        const float g = it * p.dloss[i] * ((ok ? expf(s - p.lse[i]) : 0.f) - (j == ps ? 1.f : 0.f));
        for (int d = 0; d < p.D; ++d) acc[d] += g * v[d];
      }
    }
  }
  if (!live) return;
  if (kMode == 0) {
    p.lse[me] = m + logf(l);
    p.loss[me] = p.lse[me] - spos;
    p.correct[me] = bestj == p.pos[me];
  } else {
    float* out = (kMode == 1 ? p.dq : p.dk) + me * p.D;
    for (int d = 0; d < p.D; ++d) out[d] = acc[d];
  }
}

void run_v2(const Problem<float>& p, bool fwd, bool bwd, int block) {
  const size_t smem = sizeof(float) * kV2Cols * p.D;
  if (fwd) {
    v2_kernel<0><<<(p.M + block - 1) / block, block, smem>>>(p);
    SELFSUP_LAUNCH_CHECK();
  }
  if (bwd) {
    v2_kernel<1><<<(p.M + block - 1) / block, block, smem>>>(p);
    SELFSUP_LAUNCH_CHECK();
    v2_kernel<2><<<(p.Ncol + block - 1) / block, block, smem>>>(p);
    SELFSUP_LAUNCH_CHECK();
  }
}

// ------------------------------------------------------------------ v3: the production kernels
template <typename T>
void run_v3(const Problem<T>& p, bool fwd, bool bwd, int /*block: fixed 256*/) {
  if (fwd)
    infonce_fwd_cuda<T>(p.M, p.Ncol, p.D, p.q, p.k, p.pos, p.self, p.n_private, p.inv_tau, p.loss, p.lse, p.correct,
                        nullptr);
  if (bwd)
    infonce_bwd_cuda<T>(p.M, p.Ncol, p.D, p.q, p.k, p.pos, p.self, p.n_private, p.inv_tau, p.lse, p.dloss, p.dq,
                        p.dk, nullptr);
}

// ------------------------------------------------------------------ v4, v5: bf16 tensor cores
void run_v4(const Problem<__nv_bfloat16>& p, bool fwd, bool bwd, int /*block: fixed 128*/) {
  if (fwd)
    infonce_tc_fwd_cuda(p.M, p.Ncol, p.D, p.q, p.k, p.pos, p.self, p.n_private, p.inv_tau, p.loss, p.lse, p.correct,
                        nullptr);
  if (bwd)
    infonce_tc_bwd_cuda(p.M, p.Ncol, p.D, p.q, p.k, p.pos, p.self, p.n_private, p.inv_tau, p.lse, p.dloss, p.dq, p.dk,
                        nullptr);
}

// Needs q == k (the SimCLR layout); writes dz = dq + dk into p.dq.
void run_v5(const Problem<__nv_bfloat16>& p, bool fwd, bool bwd, int /*block: fixed 128*/) {
  if (fwd)
    infonce_tc_fwd_cuda(p.M, p.Ncol, p.D, p.q, p.k, p.pos, p.self, p.n_private, p.inv_tau, p.loss, p.lse, p.correct,
                        nullptr);
  if (bwd)
    infonce_tc_bwd_sym_cuda(p.M, p.D, p.q, p.pos, p.self, p.n_private, p.inv_tau, p.lse, p.dloss, p.dq, nullptr);
}

// ------------------------------------------------------------------ host side: data, reference, checks
// A problem in both precisions on the host: SimCLR (q = k = z, pos = twin, self excluded) or MoCo
// (q (N), k = [keys (N); queue (K)], pos = i, n_private = N).
struct HostCase {
  std::string name;
  int64_t M, Ncol, D, n_private;
  bool same_qk;
  std::vector<float> q, k;  // rounded to bf16 first when the case is for bf16, so the reference sees the same inputs
  std::vector<int64_t> pos, self;
};

std::vector<float> unit_rows(int64_t n, int64_t D, std::mt19937& rng, bool round_bf16) {
  std::normal_distribution<float> nd;
  std::vector<float> v(static_cast<size_t>(n * D));
  for (int64_t r = 0; r < n; ++r) {
    double s = 0;
    for (int64_t d = 0; d < D; ++d) s += (v[r * D + d] = nd(rng)) * static_cast<double>(v[r * D + d]);
    for (int64_t d = 0; d < D; ++d) {
      float x = static_cast<float>(v[r * D + d] / std::sqrt(s));
      if (round_bf16) x = __bfloat162float(__float2bfloat16(x));
      v[r * D + d] = x;
    }
  }
  return v;
}

HostCase make_simclr(int64_t N, int64_t D, bool bf16) {
  std::mt19937 rng(1234 + N + D);
  HostCase c{"simclr", N, N, D, 0, true, unit_rows(N, D, rng, bf16), {}, {}, {}};
  c.k = c.q;
  for (int64_t i = 0; i < N; ++i) {
    c.pos.push_back((i + N / 2) % N);
    c.self.push_back(i);
  }
  return c;
}

HostCase make_moco(int64_t N, int64_t K, int64_t D, bool bf16) {
  std::mt19937 rng(99 + N + K + D);
  HostCase c{"moco", N, N + K, D, N, false, unit_rows(N, D, rng, bf16), unit_rows(N + K, D, rng, bf16), {}, {}};
  for (int64_t i = 0; i < N; ++i) c.pos.push_back(i);
  return c;
}

struct Reference {
  std::vector<double> loss, lse, dq, dk;
  std::vector<uint8_t> correct;
};

Reference reference(const HostCase& c, double inv_tau) {
  Reference r;
  std::vector<double> q(c.q.begin(), c.q.end()), k(c.k.begin(), c.k.end()), dloss(c.M, 1.0 / c.M);
  r.loss.resize(c.M);
  r.lse.resize(c.M);
  r.correct.resize(c.M);
  r.dq.resize(c.M * c.D);
  r.dk.resize(c.Ncol * c.D);
  const int64_t* self = c.self.empty() ? nullptr : c.self.data();
  infonce_fwd_cpu<double>(c.M, c.Ncol, c.D, q.data(), k.data(), c.pos.data(), self, c.n_private, inv_tau,
                          r.loss.data(), r.lse.data(), r.correct.data());
  infonce_bwd_cpu<double>(c.M, c.Ncol, c.D, q.data(), k.data(), c.pos.data(), self, c.n_private, inv_tau,
                          r.lse.data(), dloss.data(), r.dq.data(), r.dk.data());
  return r;
}

// Device buffers of one case, in storage type T.
template <typename T>
struct DeviceCase {
  Problem<T> p{};
  std::vector<void*> owned;
  template <typename U>
  U* alloc(size_t n) {
    void* ptr = nullptr;
    CHECK(cudaMalloc(&ptr, std::max<size_t>(n, 1) * sizeof(U)));
    owned.push_back(ptr);
    return static_cast<U*>(ptr);
  }
  template <typename U>
  U* upload(const std::vector<U>& v) {
    U* d = alloc<U>(v.size());
    CHECK(cudaMemcpy(d, v.data(), v.size() * sizeof(U), cudaMemcpyHostToDevice));
    return d;
  }
  DeviceCase(const HostCase& c, double inv_tau) {
    std::vector<T> q(c.q.size()), k(c.k.size());
    for (size_t i = 0; i < q.size(); ++i) q[i] = static_cast<T>(c.q[i]);
    for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<T>(c.k[i]);
    p.M = c.M;
    p.Ncol = c.Ncol;
    p.D = c.D;
    p.n_private = c.n_private;
    p.inv_tau = inv_tau;
    p.q = upload(q);
    p.k = c.same_qk ? p.q : upload(k);
    p.pos = upload(c.pos);
    p.self = c.self.empty() ? nullptr : upload(c.self);
    p.loss = alloc<float>(c.M);
    p.lse = alloc<float>(c.M);
    p.dloss = upload(std::vector<float>(c.M, 1.0f / c.M));
    p.correct = alloc<uint8_t>(c.M);
    p.dq = alloc<T>(c.M * c.D);
    p.dk = alloc<T>(c.Ncol * c.D);
  }
  ~DeviceCase() {
    for (void* ptr : owned) cudaFree(ptr);
  }
};

template <typename T>
std::vector<double> download(const T* d, size_t n) {
  std::vector<T> h(n);
  CHECK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  std::vector<double> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<double>(static_cast<float>(h[i]));
  return out;
}

// max |a - b| / max(1e-3, max |b|): errors relative to the tensor's scale.
double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
  double e = 0, s = 1e-3;
  for (size_t i = 0; i < a.size(); ++i) {
    e = std::max(e, std::fabs(a[i] - b[i]));
    s = std::max(s, std::fabs(b[i]));
  }
  return e / s;
}

// sym: the version writes dz = dq + dk into dq (v5) and no dk.
template <typename T, typename Run>
bool validate(const char* version, const HostCase& c, const Reference& ref, double inv_tau, Run run, int block,
              double tol, bool sym = false) {
  DeviceCase<T> dc(c, inv_tau);
  run(dc.p, true, true, block);
  CHECK(cudaDeviceSynchronize());
  const double e_loss = rel_err(download(dc.p.loss, c.M), ref.loss);
  const double e_lse = rel_err(download(dc.p.lse, c.M), ref.lse);
  std::vector<double> want_dq = ref.dq;
  if (sym)
    for (size_t i = 0; i < want_dq.size(); ++i) want_dq[i] += ref.dk[i];
  const double e_dq = rel_err(download(dc.p.dq, c.M * c.D), want_dq);
  const double e_dk = sym ? 0.0 : rel_err(download(dc.p.dk, c.Ncol * c.D), ref.dk);
  std::vector<uint8_t> corr(c.M);
  CHECK(cudaMemcpy(corr.data(), dc.p.correct, c.M, cudaMemcpyDeviceToHost));
  int64_t bad_correct = 0;
  for (int64_t i = 0; i < c.M; ++i) bad_correct += corr[i] != ref.correct[i];
  // A near tie between the positive and a negative may flip the argmax under float rounding: allow 0.5%.
  const bool ok = e_loss < tol && e_lse < tol && e_dq < tol && e_dk < tol && bad_correct * 200 <= c.M;
  std::printf("  %-3s %-6s M=%-6lld Ncol=%-6lld D=%-3lld block=%-3d  err loss %.1e lse %.1e dq %.1e dk %.1e"
              "  correct mismatches %lld  %s\n",
              version, c.name.c_str(), static_cast<long long>(c.M), static_cast<long long>(c.Ncol),
              static_cast<long long>(c.D), block, e_loss, e_lse, e_dq, e_dk, static_cast<long long>(bad_correct),
              ok ? "OK" : "FAIL");
  return ok;
}

// used_mib (optional): device memory taken by the case's buffers, measured with cudaMemGetInfo around the
// allocation and after the runs (the kernels allocate nothing themselves, so this is the step's footprint).
template <typename T, typename Run>
double time_ms(const HostCase& c, double inv_tau, Run run, int block, int warmup, int runs,
               double* used_mib = nullptr) {
  size_t free0 = 0, free1 = 0, total = 0;
  CHECK(cudaDeviceSynchronize());
  CHECK(cudaMemGetInfo(&free0, &total));
  DeviceCase<T> dc(c, inv_tau);
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  for (int i = 0; i < warmup; ++i) run(dc.p, true, true, block);
  std::vector<float> t;
  for (int i = 0; i < runs; ++i) {
    CHECK(cudaEventRecord(a));
    run(dc.p, true, true, block);
    CHECK(cudaEventRecord(b));
    CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  CHECK(cudaEventDestroy(a));
  CHECK(cudaEventDestroy(b));
  CHECK(cudaMemGetInfo(&free1, &total));
  if (used_mib) *used_mib = (static_cast<double>(free0) - static_cast<double>(free1)) / (1 << 20);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

int main(int argc, char** argv) {
  bool quick = false, big = false, peer = false;
  double fp32_tflops = 60.0, bf16_tflops = 790.0;  // H200: FP32 FMA (~67 peak) and the issue's measured bf16 rate
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--big")) big = true;
    else if (!std::strcmp(argv[i], "--peer")) peer = true;
    else if (!std::strcmp(argv[i], "--fp32-tflops") && i + 1 < argc) fp32_tflops = std::atof(argv[++i]);
    else if (!std::strcmp(argv[i], "--bf16-tflops") && i + 1 < argc) bf16_tflops = std::atof(argv[++i]);
    else { std::fprintf(stderr, "unknown argument %s\n", argv[i]); return 2; }
  }
  int dev_count = 0;
  if (cudaGetDeviceCount(&dev_count) != cudaSuccess || dev_count == 0) {
    std::printf("infonce playground: no CUDA device, nothing to run\n");
    return 0;
  }
  cudaDeviceProp prop{};
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
  const double inv_tau = 1.0 / 0.2;

  // ---- validation: sizes that cross tile boundaries with ragged tails, odd D, both masking layouts
  std::printf("validation against infonce_*_cpu<double>:\n");
  bool all_ok = true;
  const auto v1 = [](const Problem<float>& p, bool f, bool b, int blk) { run_v1(p, f, b, blk); };
  const auto v2 = [](const Problem<float>& p, bool f, bool b, int blk) { run_v2(p, f, b, blk); };
  const auto v3 = [](const Problem<float>& p, bool f, bool b, int blk) { run_v3<float>(p, f, b, blk); };
  const auto v3h = [](const Problem<__nv_bfloat16>& p, bool f, bool b, int blk) { run_v3<__nv_bfloat16>(p, f, b, blk); };
  const int64_t dims[] = {128, 64, 100, 256};
  for (int64_t D : dims) {
    const HostCase cases[] = {make_simclr(300, D, false), make_moco(130, 300, D, false)};
    for (const HostCase& c : cases) {
      const Reference ref = reference(c, inv_tau);
      for (int blk : {64, 128}) all_ok &= validate<float>("v1", c, ref, inv_tau, v1, blk, 1e-4);
      for (int blk : {64, 128}) all_ok &= validate<float>("v2", c, ref, inv_tau, v2, blk, 1e-4);
      all_ok &= validate<float>("v3", c, ref, inv_tau, v3, 256, 1e-4);
    }
    const HostCase hc[] = {make_simclr(300, D, true), make_moco(130, 300, D, true)};
    for (const HostCase& c : hc) {
      const Reference ref = reference(c, inv_tau);
      all_ok &= validate<__nv_bfloat16>("v3h", c, ref, inv_tau, v3h, 256, 2e-2);  // bf16 gradient storage
    }
  }
  {
    const HostCase c = make_simclr(1000, 128, false);  // more tiles than one block
    const Reference ref = reference(c, inv_tau);
    all_ok &= validate<float>("v3", c, ref, inv_tau, v3, 256, 1e-4);
  }
  // v4, v5 (bf16 tensor cores): D % 8 == 0 and D <= 128 (D = 40 is padded to 64 inside); ragged N everywhere.
  const auto v4 = [](const Problem<__nv_bfloat16>& p, bool f, bool b, int blk) { run_v4(p, f, b, blk); };
  const auto v5 = [](const Problem<__nv_bfloat16>& p, bool f, bool b, int blk) { run_v5(p, f, b, blk); };
  for (int64_t D : {128, 64, 40}) {
    const HostCase hc[] = {make_simclr(300, D, true), make_moco(130, 300, D, true), make_simclr(1000, D, true)};
    for (const HostCase& c : hc) {
      const Reference ref = reference(c, inv_tau);
      all_ok &= validate<__nv_bfloat16>("v4", c, ref, inv_tau, v4, 128, 2e-2);
      if (c.same_qk) all_ok &= validate<__nv_bfloat16>("v5", c, ref, inv_tau, v5, 128, 2e-2, /*sym=*/true);
    }
  }
  {
    const HostCase c = make_simclr(4100, 128, true);  // many tiles, ragged last row and column tiles
    const Reference ref = reference(c, inv_tau);
    all_ok &= validate<__nv_bfloat16>("v4", c, ref, inv_tau, v4, 128, 2e-2);
    all_ok &= validate<__nv_bfloat16>("v5", c, ref, inv_tau, v5, 128, 2e-2, /*sym=*/true);
  }
  std::printf("validation: %s\n", all_ok ? "all OK" : "FAILURES");

  // ---- timing: SimCLR layout, D = 128
  std::vector<int64_t> sizes = quick ? std::vector<int64_t>{4096, 16384} : std::vector<int64_t>{4096, 16384, 65536};
  if (big) {
    sizes.push_back(262144);
    sizes.push_back(1048576);
  }
  std::vector<std::string> peer_lines;
  if (peer) {
    std::string args;
    for (int64_t n : sizes)
      if (n <= 65536) args += " " + std::to_string(n);
    peer_lines = selfsup::bench::run_peer(selfsup::bench::peer_script("torch_infonce_gpu.py"), "--infonce" + args);
    if (peer_lines.empty()) std::printf("peer: PyTorch not available\n");
  }
  std::printf("\ntiming fwd+bwd(dq, dk), SimCLR layout, D = 128, tau = 0.2 (median of events):\n");
  std::printf("%-9s %-4s %-5s %10s %10s %9s\n", "N", "ver", "dtype", "ms", "TFLOP/s", "floor%");
  for (int64_t N : sizes) {
    const double pass_flop = 2.0 * static_cast<double>(N) * N * 128;
    const double floor_flop = 4.0 * pass_flop;  // fwd + dq + dk products at the given rate (see the header)
    const bool huge = N >= 262144;  // one run each; v1-v3 f32 skipped, v3 bf16 only at 262144
    const int runs = huge ? 1 : 7, warm = huge ? 0 : 2;
    // passes: GEMM-sized products the version performs (fwd 1, dq 2, dk 2; v5: fwd 1, dz 2).
    auto report = [&](const char* ver, const char* dt, double ms, double rate, double passes) {
      std::printf("%-9lld %-4s %-5s %10.3f %10.1f %8.1f%%\n", static_cast<long long>(N), ver, dt, ms,
                  passes * pass_flop / ms * 1e-9, 100.0 * floor_flop / (rate * 1e12) / (ms * 1e-3));
    };
    if (!huge) {
      const HostCase c = make_simclr(N, 128, false);
      if (N <= 4096) report("v1", "f32", time_ms<float>(c, inv_tau, v1, 128, 1, 3), fp32_tflops, 5);
      if (N <= 16384) report("v2", "f32", time_ms<float>(c, inv_tau, v2, 128, 1, 3), fp32_tflops, 5);
      report("v3", "f32", time_ms<float>(c, inv_tau, v3, 256, warm, runs), fp32_tflops, 5);
    }
    const HostCase ch = make_simclr(N, 128, true);
    if (N <= 262144) report("v3", "bf16", time_ms<__nv_bfloat16>(ch, inv_tau, v3h, 256, warm, runs), bf16_tflops, 5);
    double mib4 = 0, mib5 = 0;
    report("v4", "bf16", time_ms<__nv_bfloat16>(ch, inv_tau, v4, 128, warm, runs, &mib4), bf16_tflops, 5);
    report("v5", "bf16", time_ms<__nv_bfloat16>(ch, inv_tau, v5, 128, warm, runs, &mib5), bf16_tflops, 3);
    std::printf("%-9lld device memory measured (cudaMemGetInfo): v4 %.1f MiB, v5 %.1f MiB\n",
                static_cast<long long>(N), mib4, mib5);
    for (const std::string& line : peer_lines)
      if (selfsup::bench::json_number(line, "n") == static_cast<double>(N))
        std::printf("%-9lld %-4s %-5s %10.3f %10s %9s  peak %.0f MiB (PyTorch)\n", static_cast<long long>(N), "torch",
                    selfsup::bench::json_string(line, "dtype").c_str(), selfsup::bench::json_number(line, "ms"), "",
                    "", selfsup::bench::json_number(line, "peak_mib"));
    // Our memory: inputs and gradients O(N D) plus O(N) statistics; the kernels allocate nothing. bf16 step:
    // z, dq, dk (2 bytes each) + loss, lse, dloss (float), correct (u8), pos, self (int64).
    std::printf("%-9lld selfsup device memory for the step: f32 %.1f MiB, bf16 %.1f MiB (z, dq, dk, O(N) stats)\n",
                static_cast<long long>(N), (3.0 * N * 128 * 4 + N * 29.0) / (1 << 20),
                (3.0 * N * 128 * 2 + N * 29.0) / (1 << 20));
  }
  return all_ok ? 0 : 1;
}
