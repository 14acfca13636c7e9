// kNN and linear-probe evaluation on synthetic features whose answer is known.
#include <doctest/doctest.h>

#include "engine/ops/ops.h"
#include "ssl/eval/knn.h"
#include "ssl/eval/linear_probe.h"

using namespace selfsup;

namespace {
// n points per class around class centres far apart (separable), with labels.
std::pair<Tensor, Tensor> blobs(int64_t per_class, int64_t classes, int64_t dim, double noise, uint64_t seed) {
  Generator g(seed, 0);
  Generator gc(99, 0);  // same centres for train and test
  Tensor centres = mul(Tensor::randn({classes, dim}, DType::f32, &gc), 3.0);
  std::vector<int64_t> labels;
  for (int64_t c = 0; c < classes; ++c)
    for (int64_t i = 0; i < per_class; ++i) labels.push_back(c);
  Tensor y = Tensor::from_vector(labels, {classes * per_class});
  Tensor x = add(index_select(centres, 0, y), mul(Tensor::randn({classes * per_class, dim}, DType::f32, &g), noise));
  return {x, y};
}
}  // namespace

TEST_CASE("kNN classifies well-separated clusters perfectly and random labels at chance") {
  auto [xtr, ytr] = blobs(50, 4, 8, 0.3, 1);
  auto [xte, yte] = blobs(20, 4, 8, 0.3, 2);
  CHECK(eval::knn_accuracy(xtr, ytr, xte, yte, 4, {10, 0.07, 16}) == 1.0);
  // Shuffled training labels: accuracy near chance (1/4).
  Generator g(3, 0);
  Tensor noise_labels = Tensor::rand({200}, DType::f32, &g);
  Tensor yrand = mul(noise_labels, 4.0).to(DType::i64);
  double acc = eval::knn_accuracy(xtr, yrand, xte, yte, 4, {10, 0.07, 16});
  CHECK(acc < 0.5);
  CHECK_THROWS_WITH_AS(eval::knn_accuracy(xtr, ytr, xte, yte, 3), doctest::Contains("label 3 at 150 outside [0, 3)"),
                       Error);
}

TEST_CASE("kNN votes are weighted by similarity") {
  // One test point; neighbours: two of class 1 far-ish, one of class 0 identical. With k=3 and a small
  // temperature the identical neighbour's weight dominates.
  Tensor train = Tensor::from_vector(std::vector<float>{1, 0, 0.6f, 0.8f, 0.6f, -0.8f}, {3, 2});
  Tensor labels = Tensor::from_vector(std::vector<int64_t>{0, 1, 1}, {3});
  Tensor test = Tensor::from_vector(std::vector<float>{1, 0}, {1, 2});
  Tensor test_label = Tensor::from_vector(std::vector<int64_t>{0}, {1});
  CHECK(eval::knn_accuracy(train, labels, test, test_label, 2, {3, 0.05, 8}) == 1.0);
  CHECK(eval::knn_accuracy(train, labels, test, test_label, 2, {3, 100.0, 8}) == 0.0);  // near-uniform weights
}

TEST_CASE("linear probe separates linearly separable features") {
  auto [xtr, ytr] = blobs(100, 3, 6, 0.5, 4);
  auto [xte, yte] = blobs(30, 3, 6, 0.5, 5);
  int epochs_seen = 0;
  eval::LinearProbeOptions opt;
  opt.epochs = 10;
  opt.batch = 32;
  opt.on_epoch = [&](int64_t, double) { ++epochs_seen; };
  eval::LinearProbeResult r = eval::linear_probe(xtr, ytr, xte, yte, 3, opt);
  CHECK(epochs_seen == 10);
  CHECK(r.train_top1 >= 0.99);
  CHECK(r.test_top1 >= 0.95);
}
