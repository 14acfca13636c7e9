// Pretext transforms: the jigsaw permutation table (regenerated here with the same greedy algorithm),
// jigsaw tiles against naive indexing, RotNet batches, masking with its target.
#include <algorithm>
#include <numeric>
#include <set>

#include "engine/data/augment.h"
#include "kernels/jigsaw_perms.h"
#include "tests/data/data_test_util.h"

using namespace selfsup;
using namespace selfsup::kernels;

namespace {

Tensor ramp(int64_t N, int64_t C, int64_t H, int64_t W) {
  std::vector<float> v(static_cast<size_t>(N * C * H * W));
  std::iota(v.begin(), v.end(), 0.0f);
  return Tensor::from_vector(v, {N, C, H, W});
}

int hamming(const uint8_t* a, const uint8_t* b) {
  int d = 0;
  for (int i = 0; i < 9; ++i) d += a[i] != b[i];
  return d;
}

}  // namespace

TEST_CASE("jigsaw permutation table: valid, distinct, and the greedy max-Hamming selection") {
  // The greedy selection over all 9! permutations in lexicographic order, identity first.
  std::vector<std::array<uint8_t, 9>> all;
  std::array<uint8_t, 9> p = {0, 1, 2, 3, 4, 5, 6, 7, 8};
  do all.push_back(p);
  while (std::next_permutation(p.begin(), p.end()));
  REQUIRE(all.size() == 362880);
  std::vector<int> min_dist(all.size());
  for (size_t i = 0; i < all.size(); ++i) min_dist[i] = hamming(all[i].data(), all[0].data());
  CHECK(std::equal(all[0].begin(), all[0].end(), kJigsawPerms[0]));
  for (int k = 1; k < kJigsawPermCount; ++k) {
    const size_t best = std::max_element(min_dist.begin(), min_dist.end()) - min_dist.begin();
    REQUIRE_MESSAGE(std::equal(all[best].begin(), all[best].end(), kJigsawPerms[k]), "row ", k);
    for (size_t i = 0; i < all.size(); ++i) min_dist[i] = std::min(min_dist[i], hamming(all[i].data(), all[best].data()));
  }
  int pair_min = 9;
  for (int a = 0; a < kJigsawPermCount; ++a)
    for (int b = a + 1; b < kJigsawPermCount; ++b) pair_min = std::min(pair_min, hamming(kJigsawPerms[a], kJigsawPerms[b]));
  CHECK(pair_min == kJigsawMinHamming);
  CHECK(pair_min >= 6);
}

TEST_CASE("jigsaw tiles: position p holds the tile of cell perm[p] at its offset") {
  const Tensor x = ramp(3, 2, 12, 15);  // cells 4x5
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{7, 8, 9}, {3});
  const LabeledBatch j = jigsaw(x, 3, ids, 1, 2, 100);
  CHECK(j.images.sizes() == Shape{3, 9, 2, 3, 3});
  const float* xs = x.data_ptr<float>();
  const float* t = j.images.data_ptr<float>();
  for (int n = 0; n < 3; ++n) {
    const int64_t perm = static_cast<int64_t>(j.labels.to_vector()[n]);
    REQUIRE(perm >= 0);
    REQUIRE(perm < 100);
    for (int pos = 0; pos < 9; ++pos) {
      const int cell = kJigsawPerms[perm][pos];
      // find the offset from the tile's first element, then check the whole tile against it
      const float first = t[((n * 9 + pos) * 2 + 0) * 9];
      const int64_t flat = static_cast<int64_t>(first) - n * 2 * 180;
      const int64_t oy = flat / 15 - (cell / 3) * 4, ox = flat % 15 - (cell % 3) * 5;
      REQUIRE(oy >= 0);
      REQUIRE(oy <= 1);
      REQUIRE(ox >= 0);
      REQUIRE(ox <= 2);
      for (int c = 0; c < 2; ++c)
        for (int i = 0; i < 3; ++i)
          for (int k = 0; k < 3; ++k)
            REQUIRE(t[(((n * 9 + pos) * 2 + c) * 3 + i) * 3 + k] ==
                    xs[((n * 2 + c) * 12 + (cell / 3) * 4 + oy + i) * 15 + (cell % 3) * 5 + ox + k]);
    }
  }
  // deterministic in (seed, step, id)
  CHECK(jigsaw(x, 3, ids, 1, 2, 100).images.to_vector() == j.images.to_vector());
  CHECK(jigsaw(x, 3, ids, 1, 3, 100).images.to_vector() != j.images.to_vector());
  CHECK_THROWS_WITH_AS(jigsaw(x, 5, ids, 1, 2), doctest::Contains("tile 5"), Error);
}

TEST_CASE("rotation batches: all four rotations with labels; random rotation uses (seed, step, id)") {
  const Tensor x = ramp(2, 1, 4, 4);
  const LabeledBatch all = rotations_all(x);
  CHECK(all.images.sizes() == Shape{8, 1, 4, 4});
  CHECK(all.labels.to_vector() == std::vector<double>{0, 0, 1, 1, 2, 2, 3, 3});
  CHECK(all.images.narrow(0, 0, 2).to_vector() == x.to_vector());
  // four quarter turns of image 0 give it back; rotation by 2 twice too
  Tensor r = all.images.narrow(0, 2, 1);
  for (int i = 0; i < 3; ++i) r = rotate90(r, {1});
  CHECK(r.to_vector() == x.narrow(0, 0, 1).to_vector());
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{0, 1}, {2});
  const LabeledBatch rr = rotate_random(x, ids, 3, 0);
  for (int n = 0; n < 2; ++n) {
    const uint8_t k = static_cast<uint8_t>(rr.labels.to_vector()[n]);
    CHECK(rr.images.narrow(0, n, 1).to_vector() == rotate90(x.narrow(0, n, 1), {k}).to_vector());
  }
  std::set<int> seen;
  std::vector<int64_t> many(400);
  std::iota(many.begin(), many.end(), 0);
  const LabeledBatch big = rotate_random(ramp(400, 1, 2, 2), Tensor::from_vector(many, {400}), 3, 0);
  for (double l : big.labels.to_vector()) seen.insert(static_cast<int>(l));
  CHECK(seen.size() == 4);
  CHECK_THROWS_WITH_AS(rotate90(ramp(1, 1, 2, 3), {1}), doctest::Contains("square"), Error);
}

TEST_CASE("masking keeps the target: central region and random blocks") {
  const Tensor x = ramp(2, 3, 8, 8);
  const MaskedBatch c = mask_center(x, 0.5, -1.0f);
  CHECK(c.target.sizes() == Shape{2, 3, 4, 4});
  CHECK(c.target.to_vector() == x.narrow(2, 2, 4).narrow(3, 2, 4).contiguous().to_vector());
  const auto m = c.masked.to_vector(), xv = x.to_vector(), mk = c.mask.to_vector();
  for (int n = 0; n < 2; ++n)
    for (int ch = 0; ch < 3; ++ch)
      for (int i = 0; i < 8; ++i)
        for (int j = 0; j < 8; ++j) {
          const bool inside = i >= 2 && i < 6 && j >= 2 && j < 6;
          const size_t at = ((n * 3 + ch) * 8 + i) * 8 + j;
          REQUIRE(m[at] == (inside ? -1.0 : xv[at]));
          REQUIRE(mk[(n * 8 + i) * 8 + j] == (inside ? 1.0 : 0.0));
        }
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{3, 4}, {2});
  const MaskedBatch b = mask_random_blocks(x, ids, 5, 1, 3, 0.25, 0.0f);
  CHECK(b.target.to_vector() == xv);
  const auto bm = b.mask.to_vector(), bv = b.masked.to_vector();
  int masked = 0;
  for (int n = 0; n < 2; ++n)
    for (int i = 0; i < 64; ++i) {
      masked += bm[n * 64 + i] != 0;
      for (int ch = 0; ch < 3; ++ch)
        REQUIRE(bv[(n * 3 + ch) * 64 + i] == (bm[n * 64 + i] != 0 ? 0.0 : xv[(n * 3 + ch) * 64 + i]));
    }
  CHECK(masked >= 2 * 4);       // at least one 2x2 block per image
  CHECK(masked <= 2 * 3 * 4);   // at most three
  CHECK(mask_random_blocks(x, ids, 5, 1, 3, 0.25).mask.to_vector() == bm);
}
