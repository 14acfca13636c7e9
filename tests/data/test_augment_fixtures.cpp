// Each augmentation op against torchvision.transforms.functional on the same parameters
// (tests/fixtures/augment.ssfx, made by make_augment_fixtures.py on float64 tensors).
// Tolerances: max abs error <= 1e-5 on [0, 1] images for the colour ops and resizes (float32 arithmetic vs
// torchvision's float64), 2e-5 for blur and hue (more float32 operations per pixel), and <= 1e-4 after
// normalisation for the whole pipeline (errors divided by std >= 0.2, a few clamps and a blur in between).
#include <cstring>

#include "engine/data/augment.h"
#include "kernels/augment_api.h"
#include "tests/data/data_test_util.h"

using namespace selfsup;
using namespace selfsup::kernels;
using namespace selfsup::testing;

namespace {

std::vector<uint8_t> to_u8_hwc_from_chw(const FixtureTensor& t) {
  const int64_t C = t.shape[0], H = t.shape[1], W = t.shape[2];
  std::vector<uint8_t> out(static_cast<size_t>(C * H * W));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = 0; i < H * W; ++i) out[i * C + c] = static_cast<uint8_t>(t.data[c * H * W + i]);
  return out;
}

}  // namespace

TEST_CASE("resized crop + flip matches torchvision resized_crop (bilinear, antialias=False) + hflip") {
  const FixtureTensor& x = fx_get("rc.x");
  const int32_t C = 3, H = 13, W = 17;
  const std::vector<float> xf = to_float(x.data, 1.0 / 255.0);
  const std::vector<uint8_t> xu = to_u8_hwc_from_chw(x);
  for (int k = 0; k < 6; ++k) {
    const auto a = fx_get("rc." + std::to_string(k) + ".attrs").data;
    const auto& want = fx_get("rc." + std::to_string(k) + ".y").data;
    const int32_t oh = static_cast<int32_t>(a[4]), ow = static_cast<int32_t>(a[5]);
    std::vector<float> y(static_cast<size_t>(C * oh * ow)), yu(y.size());
    aug_resized_crop_f32_cpu(C, H, W, xf.data(), int(a[0]), int(a[1]), int(a[2]), int(a[3]), a[6] != 0, oh, ow,
                             y.data());
    check_max_abs(y, want, 1e-5, "resized_crop f32 case " + std::to_string(k));
    aug_resized_crop_u8_cpu(C, H, W, xu.data(), int(a[0]), int(a[1]), int(a[2]), int(a[3]), a[6] != 0, oh, ow,
                            yu.data());
    check_max_abs(yu, want, 1e-5, "resized_crop u8 case " + std::to_string(k));
  }
}

TEST_CASE("colour ops match torchvision adjust_* on float images") {
  const auto x3 = to_float(fx_get("color.x3").data), x1 = to_float(fx_get("color.x1").data);
  const int64_t HW = 90;
  for (int k = 0; k < 4; ++k) {
    const std::string s = std::to_string(k);
    const float f = static_cast<float>(fx_get("brightness." + s + ".f").data[0]);
    auto a = x3, b = x1;
    aug_brightness_cpu(3, HW, a.data(), f);
    aug_brightness_cpu(1, HW, b.data(), f);
    check_max_abs(a, fx_get("brightness." + s + ".y3").data, 1e-6, "brightness rgb " + s);
    check_max_abs(b, fx_get("brightness." + s + ".y1").data, 1e-6, "brightness gray " + s);
    a = x3, b = x1;
    aug_contrast_cpu(3, HW, a.data(), f);
    aug_contrast_cpu(1, HW, b.data(), f);
    check_max_abs(a, fx_get("contrast." + s + ".y3").data, 1e-5, "contrast rgb " + s);
    check_max_abs(b, fx_get("contrast." + s + ".y1").data, 1e-5, "contrast gray " + s);
    a = x3;
    aug_saturation_cpu(3, HW, a.data(), f);
    check_max_abs(a, fx_get("saturation." + s + ".y3").data, 1e-5, "saturation " + s);
  }
  for (int k = 0; k < 5; ++k) {
    const std::string s = std::to_string(k);
    auto a = x3;
    aug_hue_cpu(3, HW, a.data(), static_cast<float>(fx_get("hue." + s + ".f").data[0]));
    check_max_abs(a, fx_get("hue." + s + ".y3").data, 2e-5, "hue " + s);
  }
  auto g = x3;
  aug_grayscale_cpu(3, HW, g.data());
  check_max_abs(g, fx_get("gray.y3").data, 1e-6, "grayscale");
  for (int k = 0; k < 2; ++k) {
    const std::string s = std::to_string(k);
    auto a = x3;
    aug_solarize_cpu(3, HW, a.data(), static_cast<float>(fx_get("solarize." + s + ".t").data[0]));
    check_max_abs(a, fx_get("solarize." + s + ".y3").data, 1e-6, "solarize " + s);
  }
  const auto mean = to_float(fx_get("normalize.mean").data), std = to_float(fx_get("normalize.std").data);
  std::vector<float> n(x3.size());
  aug_normalize_cpu(3, HW, x3.data(), mean.data(), std.data(), n.data());
  check_max_abs(n, fx_get("normalize.y3").data, 1e-5, "normalize");
}

TEST_CASE("1-channel images: saturation, hue and grayscale are the identity (torchvision/PIL)") {
  auto x1 = to_float(fx_get("color.x1").data);
  const auto before = x1;
  aug_saturation_cpu(1, 90, x1.data(), 0.3f);
  aug_hue_cpu(1, 90, x1.data(), 0.3f);
  aug_grayscale_cpu(1, 90, x1.data());
  CHECK(x1 == before);
}

TEST_CASE("gaussian blur matches torchvision gaussian_blur (reflect padding)") {
  const auto x3 = to_float(fx_get("color.x3").data);
  for (int k = 0; k < 4; ++k) {
    const std::string s = std::to_string(k);
    const auto a = fx_get("blur." + s + ".attrs").data;
    auto y = x3;
    std::vector<float> scratch(y.size());
    aug_gaussian_blur_cpu(3, 9, 10, y.data(), static_cast<int32_t>(a[0]), static_cast<float>(a[1]), scratch.data());
    check_max_abs(y, fx_get("blur." + s + ".y3").data, 2e-5, "blur k=" + std::to_string(int(a[0])));
  }
}

TEST_CASE("the fused pipeline matches torchvision's composition on the same parameters") {
  for (int k = 0; k < 24; ++k) {
    const std::string s = "pipe." + std::to_string(k);
    const FixtureTensor& x = fx_get(s + ".x");  // (H, W, C)
    const auto rr = fx_get(s + ".recipe").data;
    const auto pp = fx_get(s + ".params").data;
    const int64_t H = x.shape[0], W = x.shape[1], C = x.shape[2];
    AugmentRecipe r;
    r.out_h = int(rr[0]), r.out_w = int(rr[1]);
    r.gray_before_jitter = rr[2] != 0;
    r.blur_ksize = int(rr[3]);
    r.solarize_threshold = float(rr[4]);
    for (int c = 0; c < 3; ++c) r.mean[c] = float(rr[5 + c]), r.std[c] = float(rr[8 + c]);
    AugmentParams p;
    p.crop_y = int(pp[0]), p.crop_x = int(pp[1]), p.crop_h = int(pp[2]), p.crop_w = int(pp[3]);
    p.flip = pp[4] != 0;
    p.jitter = pp[5] != 0;
    for (int o = 0; o < 4; ++o) p.order[o] = static_cast<uint8_t>(pp[6 + o]);
    p.brightness = float(pp[10]), p.contrast = float(pp[11]), p.saturation = float(pp[12]), p.hue = float(pp[13]);
    p.gray = pp[14] != 0;
    p.sigma = float(pp[15]);
    p.solarize = pp[16] != 0;
    std::vector<uint8_t> px(x.data.size());
    for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(x.data[i]);
    Tensor images = Tensor::from_blob(px.data(), {1, H, W, C}, DType::u8);
    Tensor out = apply_augment(images, r, {p});
    const float* o = out.data_ptr<float>();
    check_max_abs(std::vector<float>(o, o + out.numel()), fx_get(s + ".y").data, 1e-4, s);
  }
}

TEST_CASE("RandomResizedCrop sampling reproduces torchvision's get_params on the same draws") {
  for (int k = 0; k < 7; ++k) {
    const std::string s = "rrc." + std::to_string(k);
    const auto a = fx_get(s + ".attrs").data;
    const auto sc = fx_get(s + ".scale").data, lr = fx_get(s + ".logr").data, words = fx_get(s + ".words").data;
    const auto want = fx_get(s + ".expect").data;
    float scale[10], logr[10];
    uint32_t rows[10], cols[10];
    for (int i = 0; i < 10; ++i) {
      scale[i] = static_cast<float>(sc[i]);
      logr[i] = static_cast<float>(lr[i]);
      rows[i] = static_cast<uint32_t>(words[2 * i]);
      cols[i] = static_cast<uint32_t>(words[2 * i + 1]);
    }
    const CropBox b = rrc_from_draws(int(a[0]), int(a[1]), float(a[4]), float(a[5]), scale, logr, rows, cols);
    CHECK_MESSAGE(b.y == int(want[0]), s);
    CHECK_MESSAGE(b.x == int(want[1]), s);
    CHECK_MESSAGE(b.h == int(want[2]), s);
    CHECK_MESSAGE(b.w == int(want[3]), s);
  }
}

TEST_CASE("rotate90 matches torch.rot90 on the last two dims") {
  const FixtureTensor& x = fx_get("rot.x");  // (2, 5, 5)
  const auto xf = to_float(x.data);
  Tensor in = Tensor::from_blob(xf.data(), {1, 2, 5, 5}, DType::f32);
  for (uint8_t k = 0; k < 4; ++k) {
    Tensor out = rotate90(in, {k});
    const float* o = out.data_ptr<float>();
    check_max_abs(std::vector<float>(o, o + out.numel()), fx_get("rot." + std::to_string(k) + ".y").data, 0,
                  "rot90 k=" + std::to_string(k));
  }
}
