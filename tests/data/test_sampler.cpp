// randperm: a permutation, reproducible from the generator's state, different from epoch to epoch,
// and roughly uniform (every value lands in every position about equally often).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <numeric>
#include <vector>

#include "engine/core/check.h"
#include "engine/data/sampler.h"

using selfsup::Generator;
using selfsup::data::randperm;

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
