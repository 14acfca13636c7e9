// The fused CUDA augmentation kernel (kernels/cuda/augment.cu) against the CPU pipeline
// (kernels/cpu/augment.cpp) on the very same AugmentParams: every recipe, 28x28x1, 32x32x3 and 96x96x3
// sources, max abs error after normalization <= 2e-3 (issue 5). Runs only with a device (test_cuda_main.cpp
// exits 77 without one).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/core/cuda_context.h"
#include "engine/data/augment.h"
#include "kernels/philox.h"

using namespace selfsup;

namespace {

const Device kCuda = Device::cuda(0);
constexpr double kTol = 2e-3;

// Noise on top of a smooth gradient: high frequencies stress the resize, the gradient the colour ops.
Tensor test_images(int64_t N, int64_t H, int64_t W, int64_t C, uint32_t seed) {
  Tensor t = Tensor::empty({N, H, W, C}, DType::u8);
  uint8_t* p = t.data_ptr<uint8_t>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x)
        for (int64_t c = 0; c < C; ++c) {
          const int64_t i = ((n * H + y) * W + x) * C + c;
          const uint32_t u = kernels::philox_block(seed, 7, static_cast<uint64_t>(i)).v[0];
          const int64_t v = (255 * (x + y + 17 * c + 5 * n)) / (H + W) % 256 + static_cast<int64_t>(u % 96) - 48;
          p[i] = static_cast<uint8_t>(std::clamp<int64_t>(v, 0, 255));
        }
  return t;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.sizes() == b.sizes());
  const Tensor ac = a.contiguous(), bc = b.contiguous();
  const float *pa = ac.data_ptr<float>(), *pb = bc.data_ptr<float>();
  double m = 0;
  for (int64_t i = 0; i < ac.numel(); ++i) {
    const double d = std::fabs(static_cast<double>(pa[i]) - pb[i]);
    if (!(d <= m)) m = d;  // NaN propagates as a failure
  }
  return m;
}

// CPU vs CUDA for `views` views of N images under recipe r; returns the max abs difference.
double compare_recipe(const AugmentRecipe& r, const Tensor& images, int views, uint64_t seed, uint64_t step) {
  const int64_t N = images.size(0);
  std::vector<int64_t> ids(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) ids[i] = 1000 + 3 * i;
  const Tensor gpu_images = images.to(kCuda);
  double worst = 0;
  for (int v = 0; v < views; ++v) {
    const auto params = sample_params(r, static_cast<int>(images.size(1)), static_cast<int>(images.size(2)), seed,
                                      step, ids.data(), N, static_cast<uint32_t>(v));
    const Tensor cpu = apply_augment(images, r, params, Tensor(), 1);
    const Tensor gpu = apply_augment(gpu_images, r, params);
    CHECK(gpu.device() == kCuda);
    worst = std::max(worst, max_abs_diff(gpu.to(Device::cpu()), cpu));
  }
  return worst;
}

}  // namespace

TEST_CASE("augment: the CUDA kernel matches the CPU pipeline for every recipe and size") {
  struct Size {
    int hw, c;
  };
  for (const Size sz : {Size{28, 1}, Size{32, 3}, Size{96, 3}}) {
    const int64_t N = sz.hw >= 96 ? 24 : 64;
    const Tensor images = test_images(N, sz.hw, sz.hw, sz.c, 11u + static_cast<uint32_t>(sz.hw));
    for (const std::string& name : recipe_names()) {
      CAPTURE(name);
      CAPTURE(sz.hw);
      CAPTURE(sz.c);
      const AugmentRecipe r = make_recipe(name, sz.hw, sz.c);
      const double err = compare_recipe(r, images, 2, 42, 7);
      MESSAGE(name, " ", sz.hw, "x", sz.hw, "x", sz.c, ": max abs ", err);
      CHECK(err <= kTol);
    }
  }
}

TEST_CASE("augment: CUDA matches CPU with a different output size, solarize, and a source index") {
  const Tensor images = test_images(16, 40, 48, 3, 5);  // non-square source, 24x24 views
  AugmentRecipe r = make_recipe("simclr", 24, 3);
  r.solarize_p = 0.5f;
  CHECK(compare_recipe(r, images, 3, 9, 1) <= kTol);

  // src_index: 10 views drawn from the 16-image store, in a scrambled order with repeats.
  const std::vector<int64_t> pick = {3, 15, 0, 3, 7, 7, 12, 1, 9, 15};
  std::vector<int64_t> ids(pick.size());
  for (size_t i = 0; i < pick.size(); ++i) ids[i] = static_cast<int64_t>(i);
  const auto params = sample_params(r, 40, 48, 9, 2, ids.data(), static_cast<int64_t>(ids.size()), 0);
  const Tensor index = Tensor::from_vector(pick, {static_cast<int64_t>(pick.size())});
  const Tensor cpu = apply_augment(images, r, params, index, 1);
  const Tensor gpu = apply_augment(images.to(kCuda), r, params, index.to(kCuda));
  CHECK(max_abs_diff(gpu.to(Device::cpu()), cpu) <= kTol);
}

TEST_CASE("augment: CUDA views of an empty batch and a bad crop") {
  const Tensor images = test_images(2, 32, 32, 3, 1).to(kCuda);
  const AugmentRecipe r = make_recipe("simclr", 32, 3);
  const Tensor none = apply_augment(images, r, {}, Tensor::from_vector(std::vector<int64_t>{}, {0}));
  CHECK(none.size(0) == 0);
  std::vector<AugmentParams> bad(2);
  bad[0].crop_h = bad[0].crop_w = 40;  // larger than the source
  bad[1].crop_h = bad[1].crop_w = 8;
  CHECK_THROWS(apply_augment(images, r, bad));
}
