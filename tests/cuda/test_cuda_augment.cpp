// The fused CUDA augmentation kernel (kernels/cuda/augment.cu) against the CPU pipeline
// (kernels/cpu/augment.cpp) on the very same AugmentParams: every recipe, 28x28x1, 32x32x3 and 96x96x3
// sources, max abs error after normalization <= 2e-3 (issue 5); the bf16 output within 2e-3 + 2^-8 |ref|
// of the CPU's float32 views; and the DeviceAugmenter (engine/data/device_augment.h) in its resident and
// streamed modes against the CPU views of the same batches. Runs only with a device (test_cuda_main.cpp
// exits 77 without one).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/core/cuda_context.h"
#include "engine/data/augment.h"
#include "engine/data/device_augment.h"
#include "engine/data/loader.h"
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

// A bf16 CUDA output against the float32 CPU reference: the worst |err| / (2e-3 + 2^-8 |ref|) (<= 1 passes:
// bf16 keeps 8 significant bits, so rounding the normalized value costs at most 2^-9 |ref|, plus the float
// differences the float32 comparison allows).
double bf16_error_ratio(const Tensor& gpu_bf16, const Tensor& cpu_f32) {
  REQUIRE(gpu_bf16.dtype() == DType::bf16);
  REQUIRE(gpu_bf16.sizes() == cpu_f32.sizes());
  const Tensor g = gpu_bf16.to(Device::cpu()).contiguous(), c = cpu_f32.contiguous();
  const bf16* pg = g.data_ptr<bf16>();
  const float* pc = c.data_ptr<float>();
  double worst = 0;
  for (int64_t i = 0; i < c.numel(); ++i) {
    const double ref = pc[i];
    const double r = std::fabs(static_cast<double>(pg[i].to_float()) - ref) / (kTol + std::ldexp(std::fabs(ref), -8));
    if (!(r <= worst)) worst = r;  // NaN propagates as a failure
  }
  return worst;
}

// CPU vs CUDA for `views` views of N images under recipe r; returns the max abs difference (float32 output)
// or the worst bf16 error ratio (bf16 output).
double compare_recipe(const AugmentRecipe& r, const Tensor& images, int views, uint64_t seed, uint64_t step,
                      DType out_dtype = DType::f32) {
  const int64_t N = images.size(0);
  std::vector<int64_t> ids(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) ids[i] = 1000 + 3 * i;
  const Tensor gpu_images = images.to(kCuda);
  double worst = 0;
  for (int v = 0; v < views; ++v) {
    const auto params = sample_params(r, static_cast<int>(images.size(1)), static_cast<int>(images.size(2)), seed,
                                      step, ids.data(), N, static_cast<uint32_t>(v));
    const Tensor cpu = apply_augment(images, r, params, Tensor(), 1);
    const Tensor gpu = apply_augment(gpu_images, r, params, Tensor(), 0, out_dtype);
    CHECK(gpu.device() == kCuda);
    CHECK(gpu.dtype() == out_dtype);
    const double e = out_dtype == DType::bf16 ? bf16_error_ratio(gpu, cpu) : max_abs_diff(gpu.to(Device::cpu()), cpu);
    if (!(e <= worst)) worst = e;
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

TEST_CASE("augment: the bf16 CUDA output matches the CPU views within bf16 rounding") {
  struct Size {
    int hw, c;
  };
  for (const Size sz : {Size{28, 1}, Size{32, 3}, Size{96, 3}}) {
    const int64_t N = sz.hw >= 96 ? 24 : 64;
    const Tensor images = test_images(N, sz.hw, sz.hw, sz.c, 11u + static_cast<uint32_t>(sz.hw));
    for (const std::string& name : recipe_names()) {
      CAPTURE(name);
      CAPTURE(sz.hw);
      const AugmentRecipe r = make_recipe(name, sz.hw, sz.c);
      const double ratio = compare_recipe(r, images, 2, 42, 7, DType::bf16);
      MESSAGE(name, " ", sz.hw, "x", sz.hw, "x", sz.c, " bf16: worst |err| / (2e-3 + 2^-8 |ref|) = ", ratio);
      CHECK(ratio <= 1.0);
    }
  }
  // Resize to a different size with solarize, and a scrambled source index, in bf16.
  const Tensor images = test_images(16, 40, 48, 3, 5);
  AugmentRecipe r = make_recipe("simclr", 24, 3);
  r.solarize_p = 0.5f;
  CHECK(compare_recipe(r, images, 3, 9, 1, DType::bf16) <= 1.0);
  const std::vector<int64_t> pick = {3, 15, 0, 3, 7, 7, 12, 1, 9, 15};
  std::vector<int64_t> ids(pick.size());
  for (size_t i = 0; i < pick.size(); ++i) ids[i] = static_cast<int64_t>(i);
  const auto params = sample_params(r, 40, 48, 9, 2, ids.data(), static_cast<int64_t>(ids.size()), 0);
  const Tensor index = Tensor::from_vector(pick, {static_cast<int64_t>(pick.size())});
  const Tensor cpu = apply_augment(images, r, params, index, 1);
  const Tensor gpu = apply_augment(images.to(kCuda), r, params, index.to(kCuda), 0, DType::bf16);
  CHECK(bf16_error_ratio(gpu, cpu) <= 1.0);
  // mocov1 (contrast, no blur) in bf16 needs the float32 work buffer but no blur scratch.
  const AugmentRecipe m1 = make_recipe("mocov1", 24, 3);
  CHECK(compare_recipe(m1, images, 1, 3, 4, DType::bf16) <= 1.0);
}

namespace {

ImageDataset device_test_dataset(int64_t N, int64_t H, int64_t W, int64_t C) {
  ImageDataset ds;
  ds.images = test_images(N, H, W, C, 77);
  std::vector<int64_t> labels(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) labels[i] = i % 10;
  ds.labels = Tensor::from_vector(labels, {N});
  ds.num_classes = 10;
  ds.name = "device-test";
  return ds;
}

}  // namespace

TEST_CASE("device augment: resident and streamed views equal the CPU views, batch after batch") {
  const ImageDataset ds = device_test_dataset(40, 36, 44, 3);
  const AugmentRecipe r = make_recipe("simclr", 32, 3);
  for (const DType dt : {DType::f32, DType::bf16}) {
    std::vector<std::vector<Tensor>> per_mode;
    for (const DeviceDataMode mode : {DeviceDataMode::resident, DeviceDataMode::stream}) {
      CAPTURE(device_data_mode_name(mode));
      DeviceAugmentOptions o;
      o.recipe = r;
      o.seed = 21;
      o.views = 2;
      o.device = kCuda;
      o.out_dtype = dt;
      o.max_batch = 12;
      o.mode = mode;
      DeviceAugmenter aug(ds, o);
      CHECK(aug.mode() == mode);
      MESSAGE(aug.description());
      LoaderOptions lo;
      lo.batch_size = 12;  // 40 images: 3 batches per epoch (drop_last); the 9 batches used cross epochs
      lo.seed = 5;
      lo.num_workers = 0;
      lo.gather_images = false;
      DataLoader loader(ds, lo);
      // The trainer's pattern: views(t), then stage(t + 1) while step t computes. Every other step also
      // stages two ahead (the maximum), so both slots are in flight at once.
      std::vector<Tensor> got;
      std::vector<Batch> pending;
      pending.push_back(loader.next());
      for (int t = 0; t < 7; ++t) {
        Batch b = pending.front();
        pending.erase(pending.begin());
        const std::vector<Tensor> v = aug.views(b);
        REQUIRE(v.size() == 2);
        while (pending.size() < (t % 2 == 0 ? 2u : 1u)) {
          pending.push_back(loader.next());
          aug.stage(pending.back());
        }
        // Reference: the CPU pipeline on the same batch (gathered here) with the same (seed, step, ids).
        const Tensor idx = b.indices;
        std::vector<int64_t> ids(idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + idx.numel());
        for (int view = 0; view < 2; ++view) {
          const auto params = sample_params(r, 36, 44, 21, static_cast<uint64_t>(b.step), ids.data(),
                                            static_cast<int64_t>(ids.size()), static_cast<uint32_t>(view));
          const Tensor cpu = apply_augment(ds.images, r, params, idx, 1);
          CHECK(v[view].device() == kCuda);
          CHECK(v[view].dtype() == dt);
          if (dt == DType::bf16) {
            CHECK(bf16_error_ratio(v[view], cpu) <= 1.0);
          } else {
            CHECK(max_abs_diff(v[view].to(Device::cpu()), cpu) <= kTol);
          }
          got.push_back(v[view].to(Device::cpu()));
        }
      }
      per_mode.push_back(got);
      // Misuse: views() of a batch that is not the oldest staged one, and a third staged batch.
      REQUIRE(!pending.empty());
      Batch wrong = pending.front();
      wrong.step += 100;
      CHECK_THROWS_WITH_AS(aug.views(wrong), doctest::Contains("oldest staged batch"), Error);
      while (pending.size() < 2) {
        pending.push_back(loader.next());
        aug.stage(pending.back());
      }
      CHECK_THROWS_WITH_AS(aug.stage(loader.next()), doctest::Contains("already staged"), Error);
    }
    // The two modes run the same kernel on the same bytes: bit-identical views.
    REQUIRE(per_mode.size() == 2);
    REQUIRE(per_mode[0].size() == per_mode[1].size());
    for (size_t i = 0; i < per_mode[0].size(); ++i) CHECK(per_mode[0][i].to_vector() == per_mode[1][i].to_vector());
  }
}
