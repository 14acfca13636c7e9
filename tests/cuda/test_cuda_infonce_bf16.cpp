// InfoNCE on CUDA bf16 tensors (the tensor-core kernels of kernels/cuda/infonce_bf16.cu, and the CUDA-core
// fallback for D % 8 != 0) against the CPU float64 ops on the same bf16-rounded values: loss, accuracy, and
// the gradients of nt_xent (one symmetric sweep), info_nce with gradient to k (dq and dk sweeps) and the
// general contrastive_loss, at ragged sizes. Guard bytes around every CUDA allocation must stay intact.
// Part of test_cuda: without a GPU the whole binary exits 77 (skipped).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/core/cuda_allocator.h"
#include "engine/ops/contrastive.h"
#include "engine/ops/ops.h"
#include "tests/support/engine_gradcheck.h"

using namespace selfsup;
using namespace selfsup::testing;

namespace {

const Device kGpu = Device::cuda(0);

// Unit rows, rounded to bf16 and returned as float64 (the reference sees exactly the GPU's inputs).
Tensor bf16_rows(int64_t n, int64_t D, uint64_t seed) {
  Generator g(seed, 7);
  Tensor x = normalize(Tensor::randn({n, D}, DType::f32, &g), 1);
  return x.to(DType::bf16).to(DType::f64);
}

Tensor gpu_leaf(const Tensor& x64) {
  Tensor t = x64.to(DType::bf16).to(kGpu);
  t.set_requires_grad(true);
  return t;
}
Tensor cpu_leaf(const Tensor& x64) {
  Tensor t = x64.detach().clone();
  t.set_requires_grad(true);
  return t;
}

// max |gpu - ref| relative to max |ref|: bf16 gradients carry ~2^-9 relative rounding per element.
double scaled_err(const Tensor& gpu, const Tensor& ref) {
  Tensor a = gpu.to(Device::cpu()).to(DType::f64), b = ref.to(DType::f64);
  const double err = amax(abs(sub(a, b))).item(), scale = std::max(1e-3, amax(abs(b)).item());
  return err / scale;
}

constexpr double kLossTol = 1e-4, kGradTol = 2e-2, kAccTol = 0.01;

}  // namespace

TEST_CASE("nt_xent on CUDA bf16 matches CPU float64 (symmetric backward, ragged sizes, padded D)") {
  cuda_set_guard_mode(true);
  struct Size { int64_t n, D; };
  for (Size s : {Size{100, 128}, Size{257, 128}, Size{65, 64}, Size{300, 40}, Size{150, 100}}) {
    // D = 100: not a multiple of 8, the CUDA-core fallback; the others: tensor cores (D = 40 padded to 64).
    const double tau = 0.2;
    Tensor z64 = bf16_rows(2 * s.n, s.D, 100 + s.n + s.D);
    Tensor zc = cpu_leaf(z64), zg = gpu_leaf(z64);
    ContrastiveResult rc = nt_xent(zc, tau, /*normalize=*/false);
    ContrastiveResult rg = nt_xent(zg, tau, /*normalize=*/false);
    CHECK(rg.loss.dtype() == DType::f32);
    rc.loss.backward();
    rg.loss.backward();
    const double lc = rc.loss.item(), lg = rg.loss.item();
    INFO("2N=", 2 * s.n, " D=", s.D, " loss cpu ", lc, " gpu ", lg, " acc ", rc.accuracy, " vs ", rg.accuracy);
    CHECK(std::fabs(lg - lc) <= kLossTol * std::max(1.0, std::fabs(lc)));
    CHECK(std::fabs(rg.accuracy - rc.accuracy) <= kAccTol);
    REQUIRE(zg.grad().defined());
    CHECK(zg.grad().dtype() == DType::bf16);
    const double e = scaled_err(zg.grad(), zc.grad());
    INFO("dz scaled error ", e);
    CHECK(e < kGradTol);
  }
  cuda_set_guard_mode(false);
}

TEST_CASE("nt_xent on CUDA bf16 with normalisation on the GPU") {
  // The GPU normalises in bf16 (output rounded), the CPU in float64: looser loss tolerance.
  const int64_t n = 200, D = 128;
  Generator g(3, 7);
  Tensor z64 = Tensor::randn({2 * n, D}, DType::f32, &g).to(DType::bf16).to(DType::f64);
  Tensor zc = cpu_leaf(z64), zg = gpu_leaf(z64);
  ContrastiveResult rc = nt_xent(zc, 0.5), rg = nt_xent(zg, 0.5);
  rc.loss.backward();
  rg.loss.backward();
  CHECK(rg.loss.item() == doctest::Approx(rc.loss.item()).epsilon(1e-2));
  const double e = scaled_err(zg.grad(), zc.grad());
  INFO("dz scaled error ", e);
  CHECK(e < 5e-2);
}

TEST_CASE("info_nce on CUDA bf16 (MoCo queue, gradient to q and k) matches CPU float64") {
  cuda_set_guard_mode(true);
  struct Size { int64_t n, K, D; };
  for (Size s : {Size{64, 256, 128}, Size{70, 250, 64}, Size{33, 500, 128}}) {
    Tensor q64 = bf16_rows(s.n, s.D, 1 + s.n), k64 = bf16_rows(s.n, s.D, 2 + s.n), queue64 = bf16_rows(s.K, s.D, 3);
    Tensor qc = cpu_leaf(q64), kc = cpu_leaf(k64), qg = gpu_leaf(q64), kg = gpu_leaf(k64);
    ContrastiveResult rc = info_nce(qc, kc, queue64, 0.07, /*grad_to_k=*/true);
    ContrastiveResult rg = info_nce(qg, kg, queue64.to(DType::bf16).to(kGpu), 0.07, /*grad_to_k=*/true);
    rc.loss.backward();
    rg.loss.backward();
    const double lc = rc.loss.item(), lg = rg.loss.item();
    INFO("N=", s.n, " K=", s.K, " D=", s.D, " loss cpu ", lc, " gpu ", lg);
    CHECK(std::fabs(lg - lc) <= kLossTol * std::max(1.0, std::fabs(lc)));
    CHECK(std::fabs(rg.accuracy - rc.accuracy) <= kAccTol);
    const double eq = scaled_err(qg.grad(), qc.grad()), ek = scaled_err(kg.grad(), kc.grad());
    INFO("dq ", eq, " dk ", ek);
    CHECK(eq < kGradTol);
    CHECK(ek < kGradTol);
  }
  cuda_set_guard_mode(false);
}

TEST_CASE("contrastive_loss on CUDA bf16: excluded columns, private columns, fewer columns than rows") {
  cuda_set_guard_mode(true);
  const int64_t M = 150, Ncol = 90, D = 64;
  Tensor q64 = bf16_rows(M, D, 11), k64 = bf16_rows(Ncol, D, 12);
  std::vector<int64_t> pos(M), self(M);
  for (int64_t i = 0; i < M; ++i) {
    pos[i] = (7 * i + 3) % Ncol;
    self[i] = (pos[i] + 1 + i % 5) % Ncol;
  }
  Tensor pt = Tensor::from_vector(pos, {M}), st = Tensor::from_vector(self, {M});
  Tensor qc = cpu_leaf(q64), kc = cpu_leaf(k64), qg = gpu_leaf(q64), kg = gpu_leaf(k64);
  ContrastiveResult rc = contrastive_loss(qc, kc, pt, st, 20, 0.3);
  ContrastiveResult rg = contrastive_loss(qg, kg, pt, st, 20, 0.3);
  rc.loss.backward();
  rg.loss.backward();
  CHECK(std::fabs(rg.loss.item() - rc.loss.item()) <= kLossTol * std::max(1.0, std::fabs(rc.loss.item())));
  CHECK(std::fabs(rg.accuracy - rc.accuracy) <= kAccTol);
  CHECK(scaled_err(qg.grad(), qc.grad()) < kGradTol);
  CHECK(scaled_err(kg.grad(), kc.grad()) < kGradTol);
  cuda_set_guard_mode(false);
}
