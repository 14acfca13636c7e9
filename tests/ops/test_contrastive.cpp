// Streaming InfoNCE against the dense float64 formula (explicit logit matrix), across several tiles;
// EMA and the key queue.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/autograd/grad_mode.h"
#include "engine/ops/contrastive.h"
#include "engine/ops/ops.h"
#include "tests/support/engine_gradcheck.h"
#include "tests/support/engine_op_case.h"

using namespace selfsup;
using namespace selfsup::testing;

namespace {

// Dense reference: mean_i (logsumexp_{valid j} s_ij - s_i,pos_i), s = q k^T / tau; valid is a bool mask (M, Ncol).
Tensor dense_loss(const Tensor& q, const Tensor& k, const Tensor& valid, const std::vector<int64_t>& pos, double tau) {
  Tensor s = div(matmul(q, k.t()), tau);
  Tensor masked = where(valid, s, Tensor::full({}, -std::numeric_limits<double>::infinity(), DType::f64));
  Tensor lse = logsumexp(masked, 1);
  Tensor p = gather(s, 1, Tensor::from_vector(pos, {static_cast<int64_t>(pos.size()), 1})).reshape({-1});
  return mean(sub(lse, p));
}

Tensor leaf(const Shape& s, uint64_t seed) {
  Generator g(seed, 1);
  Tensor t = Tensor::randn(s, DType::f64, &g);
  t.set_requires_grad(true);
  return t;
}

}  // namespace

TEST_CASE("nt_xent matches the dense formula over several tiles") {
  const int64_t n = 150, D = 16;  // 300 rows: three row blocks; 300 columns
  Tensor z = leaf({2 * n, D}, 1);
  double tau = 0.3;
  ContrastiveResult r = nt_xent(z, tau);
  r.loss.backward();
  Tensor g_stream = z.grad();
  z.set_grad(Tensor());
  std::vector<int64_t> pos(2 * n);
  std::vector<double> mask(4 * n * n, 1.0);
  for (int64_t i = 0; i < 2 * n; ++i) {
    pos[i] = (i + n) % (2 * n);
    mask[i * 2 * n + i] = 0.0;
  }
  Tensor valid = gt(Tensor::from_vector(mask, {2 * n, 2 * n}), 0.5);
  Tensor zn = normalize(z, 1);
  Tensor ref = dense_loss(zn, zn, valid, pos, tau);
  ref.backward();
  CHECK(r.loss.item() == doctest::Approx(ref.item()).epsilon(1e-12));
  CloseResult c = allclose(g_stream, z.grad(), 1e-12, 1e-9);
  INFO(c.message);
  CHECK(c.ok);
  CHECK(r.accuracy >= 0.0);
  CHECK(r.accuracy <= 1.0);
}

TEST_CASE("info_nce with a queue wider than one column tile, gradient to q and k") {
  const int64_t n = 130, K = 700, D = 8;
  Tensor q = leaf({n, D}, 2), k = leaf({n, D}, 3);
  Generator g(4, 0);
  Tensor queue = Tensor::randn({K, D}, DType::f64, &g);
  ContrastiveResult r = info_nce(q, k, queue, 0.2, /*grad_to_k=*/true);
  r.loss.backward();
  Tensor gq = q.grad(), gk = k.grad();
  q.set_grad(Tensor());
  k.set_grad(Tensor());
  std::vector<int64_t> pos(n);
  std::vector<double> mask(n * (n + K), 1.0);
  for (int64_t i = 0; i < n; ++i) {
    pos[i] = i;
    for (int64_t j = 0; j < n; ++j)
      if (j != i) mask[i * (n + K) + j] = 0.0;
  }
  Tensor valid = gt(Tensor::from_vector(mask, {n, n + K}), 0.5);
  Tensor ref = dense_loss(q, cat({k, queue}, 0), valid, pos, 0.2);
  ref.backward();
  CHECK(r.loss.item() == doctest::Approx(ref.item()).epsilon(1e-12));
  CHECK(allclose(gq, q.grad(), 1e-12, 1e-9).ok);
  CHECK(allclose(gk, k.grad(), 1e-12, 1e-9).ok);
  // Only the keys want a gradient: the column-block sweep computes dk alone.
  Tensor k3 = leaf({n, D}, 3);
  info_nce(q.detach(), k3, queue, 0.2, true).loss.backward();
  CHECK(allclose(k3.grad(), k.grad(), 1e-12, 1e-9).ok);
  // Without grad_to_k the key gets nothing.
  Tensor k2 = leaf({n, D}, 3);
  info_nce(q, k2, queue, 0.2).loss.backward();
  CHECK(!k2.grad().defined());
}

// Fewer row blocks (128 rows each) than threads: the kernels split the columns among the threads and merge
// partial log-sum-exps, argmaxes and dq in thread order (kernels/cpu/infonce.cpp). The thread count is set
// here so the split runs whatever the machine has: 2 and 3 threads over 64 rows (one row block, MoCo's
// shape) and 3 threads over 200 rows (two row blocks per chunk), 1600 queue keys in 4 column blocks. A wrong
// merge (a chunk's sum not rescaled to the common max, a positive read from the wrong chunk, a dq partial
// dropped) is off by far more than the 1e-12 rounding of float64.
TEST_CASE("info_nce split over columns when rows are fewer than threads matches the dense formula") {
  const int saved = omp_get_max_threads();
  const int64_t K = 1600, D = 8;
  for (auto [n, threads] : {std::pair<int64_t, int>{64, 2}, {64, 3}, {200, 3}}) {
    CAPTURE(n);
    CAPTURE(threads);
    omp_set_num_threads(threads);
    Tensor q = leaf({n, D}, 12), k = leaf({n, D}, 13);
    Generator g(14, 0);
    Tensor queue = Tensor::randn({K, D}, DType::f64, &g);
    ContrastiveResult r = info_nce(q, k, queue, 0.1, /*grad_to_k=*/true);
    r.loss.backward();
    Tensor gq = q.grad(), gk = k.grad();
    q.set_grad(Tensor());
    k.set_grad(Tensor());
    omp_set_num_threads(saved);
    std::vector<int64_t> pos(static_cast<size_t>(n));
    std::vector<double> mask(static_cast<size_t>(n * (n + K)), 1.0);
    for (int64_t i = 0; i < n; ++i) {
      pos[i] = i;
      for (int64_t j = 0; j < n; ++j)
        if (j != i) mask[i * (n + K) + j] = 0.0;
    }
    Tensor cols = cat({k, queue}, 0);
    Tensor ref = dense_loss(q, cols, gt(Tensor::from_vector(mask, {n, n + K}), 0.5), pos, 0.1);
    ref.backward();
    CHECK(r.loss.item() == doctest::Approx(ref.item()).epsilon(1e-12));
    CloseResult cq = allclose(gq, q.grad(), 1e-12, 1e-9), ck = allclose(gk, k.grad(), 1e-12, 1e-9);
    INFO(cq.message, " ", ck.message);
    CHECK(cq.ok);
    CHECK(ck.ok);
    // Accuracy: the dense argmax over the valid columns, counted by hand.
    std::vector<double> s = matmul(q, cols.t()).detach().to_vector();
    int64_t right = 0;
    for (int64_t i = 0; i < n; ++i) {
      int64_t best = -1;
      for (int64_t j = 0; j < n + K; ++j)
        if (mask[i * (n + K) + j] > 0 && (best < 0 || s[i * (n + K) + j] > s[i * (n + K) + best])) best = j;
      right += best == i;
    }
    CHECK(r.accuracy == doctest::Approx(static_cast<double>(right) / static_cast<double>(n)).epsilon(1e-15));
    q.set_grad(Tensor());
    k.set_grad(Tensor());
  }
}

namespace {
// max|got - ref| over a tensor in units of eps32 * max|ref| (its scale), as the op table measures float32.
double f32_units(const Tensor& got, const Tensor& ref) {
  std::vector<double> g = got.to_vector(), r = ref.to_vector();
  double scale = 0.0, worst = 0.0;
  for (double v : r) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < r.size(); ++i) worst = std::max(worst, std::isnan(g[i]) ? INFINITY : std::abs(g[i] - r[i]));
  return worst / (kF32Eps * scale);
}
// A float32 leaf and its float64 widening: the same values, so a difference is the float32 arithmetic.
std::pair<Tensor, Tensor> leaf_pair(const Shape& s, uint64_t seed) {
  Tensor t32 = leaf(s, seed).detach().to(DType::f32), t64 = t32.to(DType::f64);
  t32.set_requires_grad(true);
  t64.set_requires_grad(true);
  return {t32, t64};
}
}  // namespace

// Float32 streaming InfoNCE (loss and gradient) against float64 on the same values. A gradient element is
// a sum over the N columns of (softmax weight - target) x key / tau, so its float32 error grows with N: at
// most N eps32 x scale, and as a random walk ~sqrt(N). Measured (in eps32 x tensor scale): gradient 7.6,
// 11.8, 18.2 for N = 230, 830, 5130 (dq; dk is smaller) and 6.5 for nt_xent with N = 600; the loss, a
// mean of logsumexps, 0.5. Bounds: loss 4, gradient sqrt(N) (2-4x above the measurements). A wrong
// positive, a dropped tile or a missing 1/tau is off by 1e4+ units.
TEST_CASE("float32 streaming InfoNCE: loss and gradient agree with float64 on the same inputs") {
  auto [z32, z64] = leaf_pair({600, 32}, 5);
  Tensor l32 = nt_xent(z32, 0.1).loss, l64 = nt_xent(z64, 0.1).loss;
  l32.backward();
  l64.backward();
  CHECK(f32_units(l32, l64) <= 4);
  CHECK(f32_units(z32.grad(), z64.grad()) <= std::sqrt(600.0));

  auto [q32, q64] = leaf_pair({130, 8}, 2);
  auto [k32, k64] = leaf_pair({130, 8}, 3);
  Generator g(4, 0);
  Tensor queue64 = Tensor::randn({700, 8}, DType::f32, &g).to(DType::f64);
  Tensor m32 = info_nce(q32, k32, queue64.to(DType::f32), 0.2, /*grad_to_k=*/true).loss;
  Tensor m64 = info_nce(q64, k64, queue64, 0.2, /*grad_to_k=*/true).loss;
  m32.backward();
  m64.backward();
  const double n_cols = 130 + 700;  // the positive key block and the queue
  CHECK(f32_units(m32, m64) <= 4);
  CHECK(f32_units(q32.grad(), q64.grad()) <= std::sqrt(n_cols));
  CHECK(f32_units(k32.grad(), k64.grad()) <= std::sqrt(n_cols));
}

TEST_CASE("accuracy counts rows whose positive has the highest logit") {
  // Two views that are identical: every row's positive is its twin (cosine 1), the best possible logit.
  Generator g(9, 0);
  Tensor a = Tensor::randn({20, 64}, DType::f64, &g);
  ContrastiveResult r = nt_xent(cat({a, a}, 0), 0.5);
  CHECK(r.accuracy == 1.0);
  // Positive made the worst: second view = -first view.
  CHECK(nt_xent(cat({a, neg(a)}, 0), 0.5).accuracy == 0.0);
}

TEST_CASE("memory-bank NCE matches the dense formula") {
  const int64_t m = 6, B = 40, D = 5;
  Tensor q = leaf({m, D}, 6);
  Generator g(7, 0);
  Tensor bank = Tensor::randn({B, D}, DType::f64, &g);
  Tensor pos_idx = Tensor::from_vector(std::vector<int64_t>{3, 9, 27, 0, 14, 39}, {m});
  Tensor neg_idx = Tensor::from_vector(std::vector<int64_t>{1, 2, 5, 7, 8, 10, 11, 20}, {8});
  ContrastiveResult r = memory_bank_nce(q, bank, pos_idx, neg_idx, 0.07);
  Tensor cols = cat({index_select(bank, 0, pos_idx), index_select(bank, 0, neg_idx)}, 0);
  std::vector<int64_t> pos(m);
  std::vector<double> mask(m * (m + 8), 1.0);
  for (int64_t i = 0; i < m; ++i) {
    pos[i] = i;
    for (int64_t j = 0; j < m; ++j)
      if (j != i) mask[i * (m + 8) + j] = 0.0;
  }
  CHECK(r.loss.item() ==
        doctest::Approx(dense_loss(q, cols, gt(Tensor::from_vector(mask, {m, m + 8}), 0.5), pos, 0.07).item())
            .epsilon(1e-12));
}

TEST_CASE("ema_update updates every tensor in one call") {
  Tensor t1 = Tensor::full({3}, 1.0), t2 = Tensor::full({100000}, 2.0);
  Tensor o1 = Tensor::full({3}, 3.0), o2 = Tensor::full({100000}, 4.0);
  ema_update({t1, t2}, {o1, o2}, 0.9);
  CHECK(t1.to_vector()[2] == doctest::Approx(0.9 * 1 + 0.1 * 3));
  CHECK(t2.to_vector()[99999] == doctest::Approx(0.9 * 2 + 0.1 * 4));
  CHECK_THROWS_WITH_AS(ema_update({t1}, {o2}, 0.9), doctest::Contains("ema_update: pair 0 differs"), Error);
}

TEST_CASE("the key queue wraps around when the batch does not divide its size") {
  // Queue of 5 rows of D = 2; a key row r of rows(v, n) is (v + r, v + r). Every row of the buffer is checked
  // after each enqueue, against the ring written out by hand; the rows not yet overwritten keep the initial
  // random (L2-normalised) keys.
  FeatureQueue queue(5, 2, DType::f64);
  const std::vector<double> init = queue.buffer().to_vector();
  auto rows = [](double start, int64_t n) {
    std::vector<double> v(static_cast<size_t>(2 * n));
    for (int64_t i = 0; i < 2 * n; ++i) v[i] = start + static_cast<double>(i / 2);
    return Tensor::from_vector(v, {n, 2});
  };
  auto expect = [&](std::vector<double> row_values, int64_t pointer) {  // NaN: the initial row
    std::vector<double> want;
    for (size_t r = 0; r < row_values.size(); ++r)
      for (size_t d = 0; d < 2; ++d) want.push_back(std::isnan(row_values[r]) ? init[2 * r + d] : row_values[r]);
    CHECK(queue.buffer().to_vector() == want);
    CHECK(queue.pointer() == pointer);
  };
  const double keep = std::nan("");
  queue.enqueue(rows(10, 3));
  expect({10, 11, 12, keep, keep}, 3);
  queue.enqueue(rows(20, 3));  // rows 3, 4, then wraps to 0
  expect({22, 11, 12, 20, 21}, 1);
  queue.enqueue(rows(30, 7));  // larger than the queue: the newest 5 (32..36) survive, written from row 1
  expect({36, 32, 33, 34, 35}, 1);
  queue.enqueue(rows(40, 5));  // exactly the queue size: every row replaced, the pointer back where it was
  expect({44, 40, 41, 42, 43}, 1);
}

TEST_CASE("contrastive losses reject bad input") {
  Tensor z = Tensor::zeros({3, 4});
  CHECK_THROWS_WITH_AS(nt_xent(z, 0.1), doctest::Contains("nt_xent: z must be (2N, D)"), Error);
  CHECK_THROWS_WITH_AS(nt_xent(Tensor::zeros({4, 4}), 0.0), doctest::Contains("temperature must be positive"), Error);
  CHECK_THROWS_WITH_AS(info_nce(Tensor::zeros({2, 4}), Tensor::zeros({2, 4}), Tensor::zeros({5, 3}), 0.1),
                       doctest::Contains("info_nce: queue [5, 3] must be (K, 4)"), Error);
}
