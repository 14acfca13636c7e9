// randperm: a permutation, reproducible from the generator's state, different from epoch to epoch,
// and roughly uniform (every value lands in every position about equally often). class_balanced_subset:
// exact per-class counts, deterministic per seed, independent across classes. select_images: a faithful copy.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <vector>

#include "engine/core/check.h"
#include "engine/data/sampler.h"

using selfsup::Generator;
using selfsup::data::class_balanced_subset;
using selfsup::data::randperm;
using selfsup::Tensor;

TEST_CASE("randperm: a reproducible permutation that changes as the generator advances") {
  Generator a(42, 1), b(42, 1);
  std::vector<int64_t> p1 = randperm(1000, a);
  CHECK(p1 == randperm(1000, b));
  CHECK(a.offset() == 1000);
  std::vector<int64_t> sorted = p1;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> iota(1000);
  std::iota(iota.begin(), iota.end(), 0);
  CHECK(sorted == iota);
  CHECK(p1 != iota);
  std::vector<int64_t> p2 = randperm(1000, a);  // the next epoch
  CHECK(p2 != p1);
  Generator other_seed(43, 1);
  CHECK(randperm(1000, other_seed) != p1);
  CHECK(randperm(0, a).empty());
  CHECK(randperm(1, a) == std::vector<int64_t>{0});
  CHECK_THROWS_AS(randperm(-1, a), selfsup::Error);
}

TEST_CASE("randperm: every value reaches every position about equally often") {
  constexpr int n = 5, trials = 20000;
  std::vector<int> count(n * n, 0);  // (value, position)
  Generator gen(7);
  for (int t = 0; t < trials; ++t) {
    std::vector<int64_t> p = randperm(n, gen);
    for (int pos = 0; pos < n; ++pos) ++count[p[pos] * n + pos];
  }
  // Expected trials / n = 4000 each; the binomial standard deviation is about 57.
  for (int c : count) CHECK(std::abs(c - trials / n) < 300);
}

namespace {

// Labels of `sizes[c]` images per class, shuffled so that classes interleave as in a real data set.
Tensor shuffled_labels(const std::vector<int64_t>& sizes, uint64_t seed) {
  std::vector<int64_t> lab;
  for (size_t c = 0; c < sizes.size(); ++c) lab.insert(lab.end(), static_cast<size_t>(sizes[c]), static_cast<int64_t>(c));
  Generator g(seed, 99);
  std::vector<int64_t> perm = randperm(static_cast<int64_t>(lab.size()), g), out(lab.size());
  for (size_t i = 0; i < lab.size(); ++i) out[i] = lab[static_cast<size_t>(perm[i])];
  return Tensor::from_vector(out, {static_cast<int64_t>(out.size())});
}

}  // namespace

TEST_CASE("class_balanced_subset: round(fraction * n_c) images of every class, ascending, no repeats") {
  const std::vector<int64_t> sizes = {100, 137, 174, 211, 9};
  const Tensor labels = shuffled_labels(sizes, 1);
  const int64_t* lp = labels.data_ptr<int64_t>();
  for (double f : {0.1, 0.25, 0.5, 1.0}) {
    CAPTURE(f);
    std::vector<int64_t> ids = class_balanced_subset(labels, 5, f, 3);
    CHECK(std::is_sorted(ids.begin(), ids.end()));
    CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end());
    std::vector<int64_t> per_class(5, 0);
    for (int64_t i : ids) {
      REQUIRE(i >= 0);
      REQUIRE(i < labels.size(0));
      ++per_class[static_cast<size_t>(lp[i])];
    }
    // 0.1 * 9 = 0.9 rounds to 1; 0.25 * 137 = 34.25 -> 34; 0.5 * 137 = 68.5 -> 69 (half away from zero).
    for (size_t c = 0; c < sizes.size(); ++c) CHECK(per_class[c] == std::llround(f * static_cast<double>(sizes[c])));
  }
  std::vector<int64_t> all(static_cast<size_t>(labels.size(0)));
  std::iota(all.begin(), all.end(), int64_t{0});
  CHECK(class_balanced_subset(labels, 5, 1.0, 3) == all);
}

TEST_CASE("class_balanced_subset: a pure function of (labels, fraction, seed), each class on its own stream") {
  const Tensor labels = shuffled_labels({300, 300, 300}, 2);
  const std::vector<int64_t> a = class_balanced_subset(labels, 3, 0.1, 0);
  CHECK(a == class_balanced_subset(labels, 3, 0.1, 0));
  CHECK(a != class_balanced_subset(labels, 3, 0.1, 1));
  // Appending images of another class does not move the picks of the classes already there.
  std::vector<int64_t> longer(labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + labels.size(0));
  longer.insert(longer.end(), 50, 3);
  const std::vector<int64_t> b =
      class_balanced_subset(Tensor::from_vector(longer, {static_cast<int64_t>(longer.size())}), 4, 0.1, 0);
  std::vector<int64_t> b_first(b.begin(), b.begin() + static_cast<long>(a.size()));
  CHECK(b_first == a);
  CHECK(b.size() == a.size() + 5);
  // The draw is uniform within a class: over many seeds every image of class 0 is picked about equally often.
  const Tensor small = shuffled_labels({10, 10}, 4);
  std::vector<int> hits(20, 0);
  constexpr int kSeeds = 4000;
  for (uint64_t s = 0; s < kSeeds; ++s)
    for (int64_t i : class_balanced_subset(small, 2, 0.3, s)) ++hits[static_cast<size_t>(i)];
  // Each image is in with probability 3/10: 1200 expected, binomial standard deviation about 29.
  for (int h : hits) CHECK(std::abs(h - kSeeds * 3 / 10) < 150);
}

TEST_CASE("class_balanced_subset: bad fractions and unlabelled data are errors that say why") {
  const Tensor labels = shuffled_labels({40, 400}, 5);
  for (double f : {0.0, -0.1, 1.5}) {
    CAPTURE(f);
    CHECK_THROWS_WITH_AS(class_balanced_subset(labels, 2, f, 0), doctest::Contains("must be in (0, 1]"),
                         selfsup::Error);
  }
  // 0.01 * 40 = 0.4 rounds to 0: class 0 would vanish; 0.5 / 40 = 0.0125 is the smallest fraction that keeps one.
  CHECK_THROWS_WITH_AS(class_balanced_subset(labels, 2, 0.01, 0),
                       doctest::Contains("leaves class 0 (40 images) without a labelled image; the smallest "
                                         "fraction that keeps one is 0.0125"),
                       selfsup::Error);
  const Tensor unlabelled = Tensor::from_vector(std::vector<int64_t>{0, -1, 1}, {3});
  CHECK_THROWS_WITH_AS(class_balanced_subset(unlabelled, 2, 0.5, 0), doctest::Contains("image 1 has label -1"),
                       selfsup::Error);
}

TEST_CASE("select_images: the pixels and labels at the given indices, in their order") {
  selfsup::ImageDataset ds;
  std::vector<uint8_t> px(5 * 2 * 3 * 1);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i);
  ds.images = Tensor::from_blob(px.data(), {5, 2, 3, 1}, selfsup::DType::u8);  // (N, H, W, C)
  ds.labels = Tensor::from_vector(std::vector<int64_t>{4, 3, 2, 1, 0}, {5});
  ds.num_classes = 5;
  ds.name = "toy";
  selfsup::ImageDataset sub = selfsup::data::select_images(ds, {3, 0, 3});
  REQUIRE(sub.size() == 3);
  CHECK(sub.images.size(1) == 2);
  const uint8_t* sp = sub.images.data_ptr<uint8_t>();
  for (int j = 0; j < 3; ++j)
    for (int k = 0; k < 6; ++k) CHECK(sp[j * 6 + k] == px[static_cast<size_t>((j == 1 ? 0 : 3) * 6 + k)]);
  CHECK(sub.labels.data_ptr<int64_t>()[0] == 1);
  CHECK(sub.labels.data_ptr<int64_t>()[1] == 4);
  CHECK(sub.num_classes == 5);
  CHECK(sub.name == "toy (3 of 5)");
  CHECK_THROWS_WITH_AS(selfsup::data::select_images(ds, {5}), doctest::Contains("index 5 outside toy"),
                       selfsup::Error);
}
