// kNN and the linear probe against float64 reference implementations written here from their documented
// definitions (docs/training.md, "Evaluation protocols"; ssl/eval/*.h), on OVERLAPPING classes with
// per-sample and per-dimension scales, so that a kNN without L2 normalisation, with another k or without
// the exp(sim / T) weights, or a probe without standardisation, gives a different answer (each shown
// below); and extract_features (eval mode, the training normalisation, train mode restored).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "engine/autograd/grad_mode.h"
#include "engine/ops/ops.h"
#include "models/resnet.h"
#include "ssl/eval/features.h"
#include "ssl/eval/knn.h"
#include "ssl/eval/linear_probe.h"
#include "tests/support/engine_gradcheck.h"

using namespace selfsup;
using testing::allclose;

namespace {

// Features (n, d) row-major in float64 holding float32-representable values (so the engine's float32 view
// is the same data), and labels in [0, classes).
struct Set {
  int64_t n = 0, d = 0;
  std::vector<double> x;
  std::vector<int64_t> y;
  Tensor features() const { return Tensor::from_vector(x, {n, d}).to(DType::f32); }
  Tensor labels() const { return Tensor::from_vector(y, {n}); }
};

// `classes` Gaussian clusters whose centres (N(0, 1), fixed by centre_seed) lie closer than the noise
// (sigma 0.9): the classes overlap, kNN and the probe land well between chance and 1. Each row is scaled
// by exp(U(-1, 1)) (kNN must ignore the norm) and dimension j by dim_scale[j] with an offset (the probe's
// standardisation must undo it).
Set overlapping(int64_t per_class, int64_t classes, int64_t d, uint64_t seed, bool row_scale,
                const std::vector<double>& dim_scale) {
  std::mt19937_64 centres_rng(1234), rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> log_scale(-1.0, 1.0);
  std::vector<double> centres(static_cast<size_t>(classes * d));
  for (double& c : centres) c = normal(centres_rng);
  Set s;
  s.n = per_class * classes;
  s.d = d;
  for (int64_t i = 0; i < s.n; ++i) {
    const int64_t c = i % classes;  // classes interleaved: no block structure for a bug to exploit
    const double r = row_scale ? std::exp(log_scale(rng)) : 1.0;
    for (int64_t j = 0; j < d; ++j) {
      const double v = (centres[c * d + j] + 0.9 * normal(rng)) * r;
      const double scaled = dim_scale.empty() ? v : v * dim_scale[j] + 3.0 * static_cast<double>(j);
      s.x.push_back(static_cast<double>(static_cast<float>(scaled)));
    }
    s.y.push_back(c);
  }
  return s;
}

// ---- kNN reference (float64): cosine similarity (or the raw dot product when !normalise), the k most
// similar training rows (k clamped to N) vote with weight exp(sim / T) (or 1 when !weighted); top-1 is
// the class with the largest vote.
struct KnnRef {
  bool normalise = true, weighted = true;
};

// Per test row: 1 if its prediction is its label.
std::vector<int> knn_reference(const Set& train, const Set& test, int64_t classes, int64_t k, double T, KnnRef v = {}) {
  auto unit = [&](const Set& s, int64_t i) {
    std::vector<double> r(s.x.begin() + i * s.d, s.x.begin() + (i + 1) * s.d);
    if (v.normalise) {
      double nrm = 0;
      for (double e : r) nrm += e * e;
      for (double& e : r) e /= std::sqrt(nrm);
    }
    return r;
  };
  std::vector<std::vector<double>> tr;
  for (int64_t i = 0; i < train.n; ++i) tr.push_back(unit(train, i));
  k = std::min(k, train.n);
  std::vector<int> correct;
  for (int64_t t = 0; t < test.n; ++t) {
    const std::vector<double> q = unit(test, t);
    std::vector<double> sim(static_cast<size_t>(train.n));
    for (int64_t i = 0; i < train.n; ++i) sim[i] = std::inner_product(q.begin(), q.end(), tr[i].begin(), 0.0);
    std::vector<int64_t> order(static_cast<size_t>(train.n));
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return sim[a] > sim[b]; });
    std::vector<double> votes(static_cast<size_t>(classes), 0.0);
    for (int64_t j = 0; j < k; ++j) votes[train.y[order[j]]] += v.weighted ? std::exp(sim[order[j]] / T) : 1.0;
    correct.push_back((std::max_element(votes.begin(), votes.end()) - votes.begin()) == test.y[t]);
  }
  return correct;
}

double accuracy(const std::vector<int>& correct) {
  return static_cast<double>(std::accumulate(correct.begin(), correct.end(), 0)) / static_cast<double>(correct.size());
}

// Test rows whose correctness differs between two kNN variants.
int64_t rows_differing(const std::vector<int>& a, const std::vector<int>& b) {
  int64_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += a[i] != b[i];
  return n;
}

// The engine's per-row correctness: one knn_accuracy call per test row (the API reports only accuracy).
std::vector<int> knn_per_row(const Set& train, const Set& test, int64_t classes, const eval::KnnOptions& o) {
  const Tensor f = test.features(), y = test.labels();
  std::vector<int> correct;
  for (int64_t t = 0; t < test.n; ++t)
    correct.push_back(
        eval::knn_accuracy(train.features(), train.labels(), f.narrow(0, t, 1), y.narrow(0, t, 1), classes, o) == 1.0);
  return correct;
}

// ---- linear-probe reference (float64), ssl/eval/linear_probe.h: standardise with the training mean and
// biased std (+1e-6), W (C, d) initialised (U[0,1) - 0.5) * 2 / sqrt(d) from Generator(seed, "LINEA"),
// b = 0; per epoch the permutation that sorts Generator(seed, "PROBE" + epoch)'s uniforms; per mini-batch
// mean cross-entropy, SGD momentum 0.9 (the buffer starts as the first update), weight decay on W only,
// lr = base (1 + cos(pi s / S)) / 2 over S = epochs x steps_per_epoch updates.
struct ProbeRef {
  std::vector<double> epoch_loss;
  double train_top1 = 0, test_top1 = 0;
};

ProbeRef probe_reference(const Set& train, const Set& test, int64_t C, const eval::LinearProbeOptions& o,
                         bool standardise = true) {
  const int64_t n = train.n, d = train.d;
  std::vector<double> mu(d, 0.0), sd(d, 1.0);
  if (standardise) {
    for (int64_t j = 0; j < d; ++j) {
      double m = 0, v = 0;
      for (int64_t i = 0; i < n; ++i) m += train.x[i * d + j];
      m /= static_cast<double>(n);
      for (int64_t i = 0; i < n; ++i) v += (train.x[i * d + j] - m) * (train.x[i * d + j] - m);
      mu[j] = m;
      sd[j] = std::sqrt(v / static_cast<double>(n)) + 1e-6;
    }
  }
  auto standardised = [&](const Set& s) {
    std::vector<double> z(s.x.size());
    for (int64_t i = 0; i < s.n; ++i)
      for (int64_t j = 0; j < d; ++j) z[i * d + j] = (s.x[i * d + j] - mu[j]) / sd[j];
    return z;
  };
  const std::vector<double> ztr = standardised(train), zte = standardised(test);
  Generator g(o.seed, 0x4c494e4541ull);
  std::vector<double> W = Tensor::rand({C, d}, DType::f32, &g).to_vector(), b(C, 0.0);
  for (double& w : W) w = (w - 0.5) * 2.0 / std::sqrt(static_cast<double>(d));
  std::vector<double> bufW(W.size()), bufb(C);
  const int64_t steps = (n + o.batch - 1) / o.batch, total = o.epochs * steps;
  auto logits = [&](const std::vector<double>& z, int64_t i) {
    std::vector<double> l(C);
    for (int64_t c = 0; c < C; ++c) {
      l[c] = b[c];
      for (int64_t j = 0; j < d; ++j) l[c] += W[c * d + j] * z[i * d + j];
    }
    return l;
  };
  ProbeRef r;
  int64_t step = 0;
  for (int64_t e = 0; e < o.epochs; ++e) {
    Generator pg(o.seed, 0x50524f4245ull + static_cast<uint64_t>(e));
    const std::vector<double> keys = Tensor::rand({n}, DType::f64, &pg).to_vector();
    std::vector<int64_t> perm(static_cast<size_t>(n));
    std::iota(perm.begin(), perm.end(), 0);
    std::sort(perm.begin(), perm.end(), [&](int64_t a, int64_t c) { return keys[a] < keys[c]; });
    double loss_sum = 0;
    for (int64_t s = 0; s < steps; ++s, ++step) {
      const int64_t b0 = s * o.batch, rows = std::min(o.batch, n - b0);
      std::vector<double> gW(W.size(), 0.0), gb(C, 0.0);
      double loss = 0;
      for (int64_t r0 = 0; r0 < rows; ++r0) {
        const int64_t i = perm[b0 + r0];
        std::vector<double> l = logits(ztr, i);
        const double mx = *std::max_element(l.begin(), l.end());
        double se = 0;
        for (double v : l) se += std::exp(v - mx);
        loss += mx + std::log(se) - l[train.y[i]];
        for (int64_t c = 0; c < C; ++c) {
          const double p = std::exp(l[c] - mx) / se - (c == train.y[i] ? 1.0 : 0.0);
          gb[c] += p / static_cast<double>(rows);
          for (int64_t j = 0; j < d; ++j) gW[c * d + j] += p * ztr[i * d + j] / static_cast<double>(rows);
        }
      }
      loss_sum += loss / static_cast<double>(rows);
      const double lr = o.lr * (1 + std::cos(M_PI * std::min(1.0, double(step) / double(total)))) / 2;
      for (size_t q = 0; q < W.size(); ++q) {
        const double u = gW[q] + o.weight_decay * W[q];
        bufW[q] = step == 0 ? u : 0.9 * bufW[q] + u;
        W[q] -= lr * bufW[q];
      }
      for (int64_t c = 0; c < C; ++c) {
        bufb[c] = step == 0 ? gb[c] : 0.9 * bufb[c] + gb[c];
        b[c] -= lr * bufb[c];
      }
    }
    r.epoch_loss.push_back(loss_sum / static_cast<double>(steps));
  }
  auto top1 = [&](const std::vector<double>& z, const Set& s) {
    int64_t correct = 0;
    for (int64_t i = 0; i < s.n; ++i) {
      std::vector<double> l = logits(z, i);
      correct += (std::max_element(l.begin(), l.end()) - l.begin()) == s.y[i];
    }
    return static_cast<double>(correct) / static_cast<double>(s.n);
  };
  r.train_top1 = top1(ztr, train);
  r.test_top1 = top1(zte, test);
  return r;
}

}  // namespace

TEST_CASE("kNN equals a float64 reference on overlapping classes, row by row, for several k and temperatures") {
  const Set train = overlapping(40, 4, 6, 1, /*row_scale=*/true, {});  // 160 rows
  const Set test = overlapping(50, 4, 6, 2, true, {});                 // 200 rows
  struct Case {
    int64_t k;
    double T;
  };
  for (Case c : {Case{1, 0.07}, Case{5, 0.07}, Case{20, 0.07}, Case{20, 0.2}, Case{80, 0.5}, Case{500, 0.07}}) {
    CAPTURE(c.k);
    CAPTURE(c.T);
    const std::vector<int> ref = knn_reference(train, test, 4, c.k, c.T);
    // Row by row for two of the cases (one call per test row: 200 calls each, enough to pin every row).
    if ((c.k == 20 && c.T == 0.2) || (c.k == 5 && c.T == 0.07)) CHECK(knn_per_row(train, test, 4, {c.k, c.T, 8}) == ref);
    // The whole set at once, chunk 64 < 200 test rows: several similarity blocks.
    CHECK(eval::knn_accuracy(train.features(), train.labels(), test.features(), test.labels(), 4, {c.k, c.T, 64}) ==
          accuracy(ref));
    CHECK(accuracy(ref) > 0.4);  // overlapping, not hopeless (chance 0.25) ...
    CHECK(accuracy(ref) < 0.9);  // ... and not separable
  }
  // The data tells the variants apart: another k, no L2 normalisation, or unweighted votes change whether
  // several test rows are classified correctly (measured: 15 rows for k = 5, 7 for k = 80, 38 without
  // normalisation, 11 unweighted), so an implementation with any of those mistakes fails the row-by-row
  // comparison above.
  const std::vector<int> ref = knn_reference(train, test, 4, 20, 0.2);
  CHECK(rows_differing(knn_reference(train, test, 4, 5, 0.2), ref) >= 4);
  CHECK(rows_differing(knn_reference(train, test, 4, 80, 0.2), ref) >= 4);
  CHECK(rows_differing(knn_reference(train, test, 4, 20, 0.2, {/*normalise=*/false, true}), ref) >= 20);
  CHECK(rows_differing(knn_reference(train, test, 4, 20, 0.2, {true, /*weighted=*/false}), ref) >= 4);
}

TEST_CASE("kNN: labels are validated, and the vote is weighted by similarity") {
  const Set train = overlapping(10, 3, 4, 3, true, {});
  CHECK_THROWS_WITH_AS(eval::knn_accuracy(train.features(), train.labels(), train.features(), train.labels(), 2),
                       doctest::Contains("label 2 at 2 outside [0, 2)"), Error);
  // One test point; neighbours: two of class 1 at cosine 0.6, one of class 0 at cosine 1. With k = 3 a small
  // temperature lets the identical neighbour win (e^(1/0.05) > 2 e^(0.6/0.05)); a large one, the majority.
  Tensor tr = Tensor::from_vector(std::vector<float>{1, 0, 0.6f, 0.8f, 0.6f, -0.8f}, {3, 2});
  Tensor labels = Tensor::from_vector(std::vector<int64_t>{0, 1, 1}, {3});
  Tensor q = Tensor::from_vector(std::vector<float>{2, 0}, {1, 2});  // norm 2: normalised before the dot
  Tensor ql = Tensor::from_vector(std::vector<int64_t>{0}, {1});
  CHECK(eval::knn_accuracy(tr, labels, q, ql, 2, {3, 0.05, 8}) == 1.0);
  CHECK(eval::knn_accuracy(tr, labels, q, ql, 2, {3, 100.0, 8}) == 0.0);
}

TEST_CASE("linear probe equals a float64 reference (epoch losses and top-1) on overlapping classes") {
  // Dimension scales over four decades and offsets: without standardisation SGD at lr 0.1 behaves quite
  // differently (shown below).
  const std::vector<double> dim_scale = {0.01, 0.1, 1.0, 10.0, 100.0};
  const Set train = overlapping(60, 3, 5, 4, /*row_scale=*/false, dim_scale);  // 180 rows
  const Set test = overlapping(40, 3, 5, 5, false, dim_scale);                 // 120 rows
  eval::LinearProbeOptions opt;
  opt.epochs = 8;
  opt.batch = 32;  // 6 steps per epoch, the last one partial (180 = 5 x 32 + 20)
  opt.lr = 0.1;
  opt.weight_decay = 1e-2;  // large enough to matter for the reference comparison
  opt.seed = 7;
  std::vector<double> losses;
  opt.on_epoch = [&](int64_t e, double loss) {
    CHECK(e == static_cast<int64_t>(losses.size()));
    losses.push_back(loss);
  };
  eval::LinearProbeResult got =
      eval::linear_probe(train.features(), train.labels(), test.features(), test.labels(), 3, opt);
  const ProbeRef ref = probe_reference(train, test, 3, opt);
  // Float32 training vs float64: each loss is a mean of ~32 cross-entropies of 5-term logits, and 48 SGD
  // steps compound the weights' rounding; measured agreement 4e-8 relative (0.3 eps32), bound 1e-6.
  REQUIRE(losses.size() == ref.epoch_loss.size());
  testing::CloseResult c = allclose(losses, ref.epoch_loss, 0.0, 1e-6);
  INFO(c.message);
  CHECK(c.ok);
  CHECK(got.train_top1 == ref.train_top1);
  CHECK(got.test_top1 == ref.test_top1);
  CHECK(ref.test_top1 > 0.45);  // chance 1/3, and overlapping: not separable
  CHECK(ref.test_top1 < 0.95);
  CHECK(ref.epoch_loss.back() < ref.epoch_loss.front());
  // Without standardisation the same recipe gives other losses: a probe that skipped it fails above.
  const ProbeRef raw = probe_reference(train, test, 3, opt, /*standardise=*/false);
  CHECK(std::abs(raw.epoch_loss.back() - ref.epoch_loss.back()) > 0.05);
}

namespace {

// A tiny feature extractor (ResNet-18, width 2, CIFAR stem, 3 channels) whose batch-norm running statistics
// were moved off their initial 0/1 by one training-mode forward, so eval and train mode give different
// features.
std::shared_ptr<models::ResNet> tiny_encoder() {
  models::ResNetOptions o;
  o.depth = 18;
  o.in_channels = 3;
  o.stem = models::Stem::cifar;
  o.width = 2;
  o.num_classes = 0;
  o.seed = 21;
  auto net = std::make_shared<models::ResNet>(o);
  Generator g(22, 0);
  NoGradGuard ng;
  net->forward(add(mul(Tensor::randn({6, 3, 8, 8}, DType::f32, &g), 2.0), 1.0));
  return net;
}

ImageDataset random_images(int64_t n, int64_t size, int64_t channels) {
  std::mt19937 rng(31);
  std::vector<double> px(static_cast<size_t>(n * size * size * channels));
  for (double& p : px) p = static_cast<double>(rng() % 256);
  ImageDataset d;
  d.images = Tensor::from_vector(px, {n, size, size, channels}).to(DType::u8);
  d.labels = Tensor::zeros({n}, DType::i64);
  d.num_classes = 1;
  d.name = "random";
  return d;
}

// The encoder input extract_features must build: (N, C, H, W) float, (pixel / 255 - mean_c) / std_c with
// the 3-channel training normalisation (ImageNet mean and std, engine/data/augment.cpp), computed in
// float64; at the encoder's own input size there is nothing to resize.
Tensor normalised_input(const ImageDataset& d) {
  const double mean[3] = {0.485, 0.456, 0.406}, stdv[3] = {0.229, 0.224, 0.225};
  const int64_t n = d.images.size(0), h = d.images.size(1), w = d.images.size(2);
  const std::vector<double> px = d.images.to_vector();  // (N, H, W, C)
  std::vector<double> x(px.size());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t xx = 0; xx < w; ++xx)
          x[((i * 3 + c) * h + y) * w + xx] = (px[((i * h + y) * w + xx) * 3 + c] / 255.0 - mean[c]) / stdv[c];
  return Tensor::from_vector(x, {n, 3, h, w}).to(DType::f32);
}

bool same_state(const nn::NamedTensors& a, const nn::NamedTensors& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].first != b[i].first || a[i].second.to_vector() != b[i].second.to_vector()) return false;
  return true;
}

}  // namespace

TEST_CASE("extract_features: eval mode, the training normalisation, train mode restored") {
  auto enc = tiny_encoder();
  const ImageDataset data = random_images(7, 8, 3);
  const Tensor x = normalised_input(data);
  Tensor want_eval;
  {
    NoGradGuard ng;
    enc->eval();
    want_eval = enc->forward_features(x);
    enc->train();
  }
  const nn::NamedTensors before = enc->state_dict();
  // batch 3: three batches, the last partial.
  Tensor f = eval::extract_features(*enc, data, 8, "simclr", 0, 3);
  CHECK(enc->is_training());                        // restored
  CHECK(same_state(before, enc->state_dict()));     // eval mode: running statistics not updated
  CHECK(f.sizes() == Shape{7, enc->feature_dim()});
  CHECK(f.dtype() == DType::f32);
  // Equal to the eval-mode features of the reference input, up to float32 rounding of the normalisation
  // (an ulp or so per pixel, carried through 17 convolutions): measured 7e-7 of the features' scale,
  // bound 5e-6. The mean/std in reversed channel order moves them by 0.25 of the scale (measured).
  double scale = 0;
  for (double v : want_eval.to_vector()) scale = std::max(scale, std::abs(v));
  testing::CloseResult c = allclose(f, want_eval, 5e-6 * scale, 0.0);
  INFO(c.message);
  CHECK(c.ok);
  // limit: the first rows only; an encoder in eval mode stays in eval mode.
  enc->eval();
  Tensor f3 = eval::extract_features(*enc, data, 8, "simclr", 3, 3);  // batch 3 as above: bit-identical
  CHECK(!enc->is_training());
  const std::vector<double> all = f.to_vector();
  CHECK(f3.to_vector() == std::vector<double>(all.begin(), all.begin() + 3 * enc->feature_dim()));
  // Train mode (batch statistics; it also updates the running ones, so it comes last) differs visibly:
  // extracting in train mode would fail the comparison above.
  enc->train();
  Tensor want_train;
  {
    NoGradGuard ng;
    want_train = enc->forward_features(x);
  }
  CHECK(allclose(want_train, want_eval, 1e-2 * scale, 0.0).ok == false);
}

TEST_CASE("extract_features restores train mode when the encoder throws") {
  auto enc = tiny_encoder();
  const ImageDataset gray = random_images(2, 8, 1);  // 1 channel into a 3-channel conv1
  CHECK_THROWS_AS(eval::extract_features(*enc, gray, 8, "gray"), Error);
  CHECK(enc->is_training());
}
