// Streaming InfoNCE against the dense float64 formula (explicit logit matrix), across several tiles;
// EMA and the key queue.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "engine/autograd/grad_mode.h"
#include "engine/ops/contrastive.h"
#include "engine/ops/ops.h"
#include "tests/support/engine_gradcheck.h"

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

TEST_CASE("float32 streaming loss agrees with the float64 one") {
  Tensor z = leaf({600, 32}, 5);
  double l64 = nt_xent(z, 0.1).loss.item();
  double l32 = nt_xent(z.detach().to(DType::f32), 0.1).loss.item();
  CHECK(l32 == doctest::Approx(l64).epsilon(1e-5));
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
  FeatureQueue queue(5, 2, DType::f64);
  auto rows = [](double start, int64_t n) {
    std::vector<double> v(static_cast<size_t>(2 * n));
    for (int64_t i = 0; i < 2 * n; ++i) v[i] = start + static_cast<double>(i / 2);
    return Tensor::from_vector(v, {n, 2});
  };
  queue.enqueue(rows(10, 3));
  CHECK(queue.pointer() == 3);
  queue.enqueue(rows(20, 3));  // rows 3, 4, then wraps to 0
  CHECK(queue.pointer() == 1);
  std::vector<double> b = queue.buffer().to_vector();
  CHECK(b[0] == 22);
  CHECK(b[2] == 11);
  CHECK(b[6] == 20);
  CHECK(b[8] == 21);
  queue.enqueue(rows(30, 7));  // larger than the queue: the newest 5 survive
  CHECK(queue.buffer().to_vector()[2] == 32);
}

TEST_CASE("contrastive losses reject bad input") {
  Tensor z = Tensor::zeros({3, 4});
  CHECK_THROWS_WITH_AS(nt_xent(z, 0.1), doctest::Contains("nt_xent: z must be (2N, D)"), Error);
  CHECK_THROWS_WITH_AS(nt_xent(Tensor::zeros({4, 4}), 0.0), doctest::Contains("temperature must be positive"), Error);
  CHECK_THROWS_WITH_AS(info_nce(Tensor::zeros({2, 4}), Tensor::zeros({2, 4}), Tensor::zeros({5, 3}), 0.1),
                       doctest::Contains("info_nce: queue [5, 3] must be (K, 4)"), Error);
}
