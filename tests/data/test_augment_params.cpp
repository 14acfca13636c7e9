// Parameter sampling: a pure function of (seed, step, sample, view); recipe probabilities and ranges over
// many samples; the pipeline's determinism and thread independence.
#include <omp.h>

#include <cmath>
#include <cstring>
#include <set>

#include "engine/data/augment.h"
#include "kernels/augment_api.h"
#include "tests/data/data_test_util.h"

using namespace selfsup;
using namespace selfsup::kernels;

namespace {

bool same(const AugmentParams& a, const AugmentParams& b) { return std::memcmp(&a, &b, sizeof(a)) == 0; }

Tensor random_images(int64_t N, int64_t H, int64_t W, int64_t C, uint32_t seed) {
  Tensor t = Tensor::empty({N, H, W, C}, DType::u8);
  uint8_t* p = t.data_ptr<uint8_t>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<uint8_t>(philox_block(seed, 7, i).v[0]);
  return t;
}

}  // namespace

TEST_CASE("AugmentParams is plain data a CUDA kernel can take by value") {
  static_assert(std::is_trivially_copyable_v<AugmentParams>);
  static_assert(std::is_trivially_copyable_v<AugmentRecipe>);
  static_assert(std::is_standard_layout_v<AugmentParams>);
  CHECK(sizeof(AugmentParams) <= 64);
}

TEST_CASE("params are a pure function of (seed, step, sample, view)") {
  const AugmentRecipe r = make_recipe("simclr", 32, 3);
  const AugmentParams a = sample_augment_params(r, 32, 32, 7, 100, 12345, 0);
  CHECK(same(a, sample_augment_params(r, 32, 32, 7, 100, 12345, 0)));
  CHECK_FALSE(same(a, sample_augment_params(r, 32, 32, 7, 100, 12345, 1)));  // other view
  CHECK_FALSE(same(a, sample_augment_params(r, 32, 32, 7, 101, 12345, 0)));  // other step
  CHECK_FALSE(same(a, sample_augment_params(r, 32, 32, 7, 100, 12346, 0)));  // other sample
  CHECK_FALSE(same(a, sample_augment_params(r, 32, 32, 8, 100, 12345, 0)));  // other seed
  // The batch a sample lands in does not matter: sample_params over a permuted id list gives permuted params.
  std::vector<int64_t> ids = {5, 9, 2, 40}, rev = {40, 2, 9, 5};
  const auto p = sample_params(r, 32, 32, 3, 4, ids.data(), 4, 1), q = sample_params(r, 32, 32, 3, 4, rev.data(), 4, 1);
  for (int i = 0; i < 4; ++i) CHECK(same(p[i], q[3 - i]));
}

TEST_CASE("SimCLR recipe: probabilities and ranges over many samples") {
  const AugmentRecipe r = make_recipe("simclr", 32, 3);
  const int n = 40000;
  int flips = 0, jit = 0, gray = 0, blur = 0, sol = 0;
  double area = 0;
  int order_first[4] = {0, 0, 0, 0};
  std::set<int> widths;
  for (int i = 0; i < n; ++i) {
    const AugmentParams p = sample_augment_params(r, 32, 32, 1, 0, i, 0);
    REQUIRE(p.crop_h >= 1);
    REQUIRE(p.crop_w >= 1);
    REQUIRE(p.crop_y + p.crop_h <= 32);
    REQUIRE(p.crop_x + p.crop_w <= 32);
    const double ratio = double(p.crop_w) / p.crop_h;
    // rounding to pixels can move the ratio a little outside [3/4, 4/3]
    REQUIRE(ratio > 0.5);
    REQUIRE(ratio < 2.0);
    area += double(p.crop_h) * p.crop_w / 1024.0;
    widths.insert(p.crop_w);
    flips += p.flip;
    jit += p.jitter;
    gray += p.gray;
    blur += p.sigma > 0;
    sol += p.solarize;
    if (p.jitter) {
      REQUIRE(p.brightness >= 0.2f);
      REQUIRE(p.brightness <= 1.8f);
      REQUIRE(p.contrast >= 0.2f);
      REQUIRE(p.saturation <= 1.8f);
      REQUIRE(std::fabs(p.hue) <= 0.2f);
      std::set<int> ops(p.order, p.order + 4);
      REQUIRE(ops.size() == 4);
      ++order_first[p.order[0]];
    } else {
      REQUIRE(p.brightness == 1.0f);
      REQUIRE(p.hue == 0.0f);
    }
    if (p.sigma > 0) {
      REQUIRE(p.sigma >= 0.1f);
      REQUIRE(p.sigma <= 2.0f);
    }
  }
  // Binomial standard deviation at n = 40000 is <= 0.0025; allow 4 of them.
  CHECK(std::fabs(flips / double(n) - 0.5) < 0.01);
  CHECK(std::fabs(jit / double(n) - 0.8) < 0.01);
  CHECK(std::fabs(gray / double(n) - 0.2) < 0.01);
  CHECK(std::fabs(blur / double(n) - 0.5) < 0.01);
  CHECK(sol == 0);
  for (int k = 0; k < 4; ++k) CHECK(std::fabs(order_first[k] / double(jit) - 0.25) < 0.015);
  // Mean area fraction of U[0.08, 1] is 0.54 (rejections and rounding shift it slightly).
  CHECK(area / n > 0.48);
  CHECK(area / n < 0.58);
  CHECK(widths.size() > 20);
}

TEST_CASE("recipes: MoCo v1 always jitters (gray first), MoCo v2 blurs, gray has no hue/saturation, eval is identity") {
  const AugmentRecipe v1 = make_recipe("mocov1", 224, 3), v2 = make_recipe("mocov2", 224, 3),
                      g = make_recipe("gray", 28, 1), e = make_recipe("eval", 28, 1);
  CHECK(v1.gray_before_jitter == 1);
  CHECK(v2.blur_ksize == 23);
  CHECK(g.blur_ksize == 3);
  int j1 = 0, b2 = 0, hue_g = 0;
  for (int i = 0; i < 5000; ++i) {
    j1 += sample_augment_params(v1, 256, 256, 0, 0, i, 0).jitter;
    b2 += sample_augment_params(v2, 256, 256, 0, 0, i, 0).sigma > 0;
    const AugmentParams pg = sample_augment_params(g, 28, 28, 0, 0, i, 0);
    hue_g += pg.hue != 0 || pg.saturation != 1.0f;
    const AugmentParams pe = sample_augment_params(e, 28, 28, 0, 0, i, 0);
    REQUIRE(pe.crop_y == 0);
    REQUIRE(pe.crop_h == 28);
    REQUIRE(pe.crop_w == 28);
    REQUIRE(pe.flip == 0);
  }
  CHECK(j1 == 5000);
  CHECK(std::fabs(b2 / 5000.0 - 0.5) < 0.03);
  CHECK(hue_g == 0);
  CHECK_THROWS_WITH_AS(make_recipe("byol", 32, 3), doctest::Contains("unknown recipe 'byol'"), Error);
}

TEST_CASE("augment_views: deterministic, thread-count independent, views differ") {
  const Tensor images = random_images(16, 20, 24, 3, 3);
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {16});
  const AugmentRecipe r = make_recipe("simclr", 16, 3);
  const auto a = augment_views(images, ids, r, 42, 3, 2, 1);
  const auto b = augment_views(images, ids, r, 42, 3, 2, 2);
  REQUIRE(a.size() == 2);
  CHECK(a[0].sizes() == Shape{16, 3, 16, 16});
  CHECK(a[0].to_vector() == b[0].to_vector());
  CHECK(a[1].to_vector() == b[1].to_vector());
  CHECK(a[0].to_vector() != a[1].to_vector());
  // eval on a same-size output reproduces the input exactly (x / 255, normalized)
  AugmentRecipe e = make_recipe("eval", 24, 3);
  e.out_h = 20;
  const Tensor img = random_images(1, 20, 24, 3, 9);
  AugmentParams id;
  id.crop_h = 20, id.crop_w = 24;
  const Tensor out = apply_augment(img, e, {id});
  const uint8_t* px = img.data_ptr<uint8_t>();
  const float* o = out.data_ptr<float>();
  double worst = 0;
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 480; ++i)
      worst = std::max(worst, std::fabs(o[c * 480 + i] - (px[i * 3 + c] / 255.0 - e.mean[c]) / e.std[c]));
  CHECK(worst < 1e-5);
}

TEST_CASE("apply_augment: argument errors") {
  const Tensor images = random_images(2, 8, 8, 3, 1);
  const AugmentRecipe r = make_recipe("simclr", 8, 3);
  AugmentParams p;
  p.crop_h = p.crop_w = 8;
  CHECK_THROWS_WITH_AS(apply_augment(images, r, {p}), doctest::Contains("1 parameter sets for 2 images"), Error);
  AugmentParams bad = p;
  bad.crop_x = 1;
  CHECK_THROWS_WITH_AS(apply_augment(images, r, {p, bad}), doctest::Contains("outside the 8x8 source"), Error);
  CHECK_THROWS_WITH_AS(apply_augment(Tensor::zeros({2, 8, 8, 3}), r, {p, p}), doctest::Contains("uint8"), Error);
  CHECK_THROWS_WITH_AS(apply_augment(random_images(1, 8, 8, 2, 1), r, {p}), doctest::Contains("1 or 3 channels"),
                       Error);
  AugmentRecipe even = r;
  even.blur_ksize = 4;
  CHECK_THROWS_WITH_AS(apply_augment(images, even, {p, p}), doctest::Contains("odd"), Error);
  CHECK_THROWS_WITH_AS(apply_augment(images, r, {p, p}, Tensor(), 1, DType::f16), doctest::Contains("bfloat16"),
                       Error);
}

TEST_CASE("apply_augment: a bf16 output is the float32 views rounded to nearest even") {
  const Tensor images = random_images(6, 20, 24, 3, 4);
  const AugmentRecipe r = make_recipe("simclr", 16, 3);
  const std::vector<int64_t> ids = {0, 1, 2, 3, 4, 5};
  const auto params = sample_params(r, 20, 24, 7, 2, ids.data(), 6, 0);
  const Tensor f = apply_augment(images, r, params, Tensor(), 1);
  const Tensor h = apply_augment(images, r, params, Tensor(), 1, DType::bf16);
  REQUIRE(h.dtype() == DType::bf16);
  REQUIRE(h.sizes() == f.sizes());
  const float* pf = f.data_ptr<float>();
  const bf16* ph = h.data_ptr<bf16>();
  int64_t mismatches = 0;
  double worst_rel = 0;
  for (int64_t i = 0; i < f.numel(); ++i) {
    mismatches += ph[i].bits != bf16::from_float(pf[i]).bits;
    // The tolerance test_cuda uses for the CUDA bf16 output: |err| <= 2e-3 + 2^-8 |ref|.
    const double err = std::fabs(static_cast<double>(ph[i].to_float()) - pf[i]);
    worst_rel = std::max(worst_rel, err / (2e-3 + std::ldexp(std::fabs(pf[i]), -8)));
  }
  CHECK(mismatches == 0);
  CHECK(worst_rel <= 1.0);
}
