// The fused CPU augmentation pipeline: one uint8 source image and one AugmentParams in, one normalized
// float view out, with every intermediate in a per-thread scratch image that stays in cache (a 32x32x3 view
// is 12 KB, a 224x224x3 one 600 KB). Images are independent, so OpenMP splits the batch across threads.
#include <omp.h>

#include <vector>

#include "kernels/augment_api.h"

namespace selfsup::kernels {

namespace {

void augment_one(const AugmentRecipe& r, int32_t H, int32_t W, int32_t C, const uint8_t* src,
                 const AugmentParams& p, float* out) {
  const int64_t HW = static_cast<int64_t>(r.out_h) * r.out_w;
  thread_local std::vector<float> img, scratch;
  img.resize(static_cast<size_t>(C * HW));
  aug_resized_crop_u8_cpu(C, H, W, src, p.crop_y, p.crop_x, p.crop_h, p.crop_w, p.flip != 0, r.out_h, r.out_w,
                          img.data());
  float* x = img.data();
  if (p.gray && r.gray_before_jitter) aug_grayscale_cpu(C, HW, x);
  if (p.jitter) {
    for (int k = 0; k < 4; ++k) {
      switch (p.order[k]) {
        case kJitterBrightness:
          if (p.brightness != 1.0f) aug_brightness_cpu(C, HW, x, p.brightness);
          break;
        case kJitterContrast:
          if (p.contrast != 1.0f) aug_contrast_cpu(C, HW, x, p.contrast);
          break;
        case kJitterSaturation:
          if (p.saturation != 1.0f) aug_saturation_cpu(C, HW, x, p.saturation);
          break;
        default:
          if (p.hue != 0.0f) aug_hue_cpu(C, HW, x, p.hue);
          break;
      }
    }
  }
  if (p.gray && !r.gray_before_jitter) aug_grayscale_cpu(C, HW, x);
  if (p.sigma > 0 && r.blur_ksize > 1) {
    scratch.resize(img.size());
    aug_gaussian_blur_cpu(C, r.out_h, r.out_w, x, r.blur_ksize, p.sigma, scratch.data());
  }
  if (p.solarize) aug_solarize_cpu(C, HW, x, r.solarize_threshold);
  aug_normalize_cpu(C, HW, x, r.mean, r.std, out);
}

}  // namespace

void augment_views_cpu(const AugmentRecipe& recipe, int64_t N, int32_t H, int32_t W, int32_t C,
                       const uint8_t* src, const int64_t* src_index, const AugmentParams* params, float* out,
                       int threads) {
  const int64_t in_stride = static_cast<int64_t>(H) * W * C;
  const int64_t out_stride = static_cast<int64_t>(C) * recipe.out_h * recipe.out_w;
  const int nt = threads > 0 ? threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 4) num_threads(nt) if (nt > 1 && N > 1)
  for (int64_t n = 0; n < N; ++n) {
    const int64_t s = src_index ? src_index[n] : n;
    augment_one(recipe, H, W, C, src + s * in_stride, params[n], out + n * out_stride);
  }
}

}  // namespace selfsup::kernels
