// Augmentation as data. A recipe (AugmentRecipe) describes the distributions; sampling turns it into one
// AugmentParams per (view, sample) as a pure function of (seed, step, sample, view) through Philox; a kernel
// then applies the parameters. Sampling and applying are separate so that the CPU path (kernels/cpu/augment*)
// and a CUDA kernel consume the very same parameters and produce the same views, and a resumed run the same.
// Everything here is plain data and SELFSUP_HD functions: usable from host code and from CUDA device code.
//
// The fixed application order (every recipe we ship fits it; see docs/augmentation.md):
//   crop+resize (+flip) -> [gray if gray_before_jitter] -> jitter ops in `order` -> [gray] -> blur
//   -> solarize -> normalize.
// Horizontal flip commutes with every later step (pointwise ops; a symmetric blur with symmetric padding),
// so it is folded into the crop's sampling grid whatever the recipe's position for it.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/philox.h"

namespace selfsup::kernels {

// ColorJitter's four operations; AugmentParams::order is a permutation of these (torchvision's randperm(4)).
enum AugJitterOp : uint8_t { kJitterBrightness = 0, kJitterContrast = 1, kJitterSaturation = 2, kJitterHue = 3 };

// The distributions of a recipe. Strengths follow torchvision: ColorJitter(b, c, s, h) draws the brightness,
// contrast and saturation factors from U[max(0, 1 - x), 1 + x] and the hue shift from U[-h, h].
struct AugmentRecipe {
  int32_t out_h = 32, out_w = 32;
  float scale_lo = 0.08f, scale_hi = 1.0f;                 // RandomResizedCrop: fraction of the area
  float ratio_lo = 3.0f / 4.0f, ratio_hi = 4.0f / 3.0f;    // RandomResizedCrop: aspect ratio w / h
  float flip_p = 0.5f;                                      // RandomHorizontalFlip
  float jitter_p = 0.0f;                                    // RandomApply([ColorJitter], p)
  float brightness = 0, contrast = 0, saturation = 0, hue = 0;
  float gray_p = 0.0f;                                      // RandomGrayscale
  uint8_t gray_before_jitter = 0;                           // MoCo v1 order: grayscale, then jitter
  float blur_p = 0.0f;                                      // RandomApply([GaussianBlur], p)
  float sigma_lo = 0.1f, sigma_hi = 2.0f;
  int32_t blur_ksize = 0;                                   // odd; 0 = never blur
  float solarize_p = 0.0f, solarize_threshold = 0.5f;      // RandomSolarize on [0, 1] values
  float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};           // Normalize, per output channel
};

// The parameters of one view of one sample. Identity values: flip 0, jitter 0 (or factors 1, 1, 1, 0),
// gray 0, sigma 0, solarize 0.
struct AugmentParams {
  int32_t crop_y = 0, crop_x = 0, crop_h = 0, crop_w = 0;  // source rectangle (rows, cols)
  float brightness = 1, contrast = 1, saturation = 1, hue = 0;
  float sigma = 0;       // Gaussian blur sigma, 0 = no blur (kernel size comes from the recipe)
  uint8_t flip = 0;      // horizontal flip
  uint8_t jitter = 0;    // apply the jitter ops in `order`
  uint8_t order[4] = {0, 1, 2, 3};
  uint8_t gray = 0;      // RGB -> gray, replicated to all channels
  uint8_t solarize = 0;  // x >= threshold -> 1 - x
};

// ---- the random stream layout
// Philox counter = (block, stream). stream = purpose tag (top 8 bits) | step (low 56 bits);
// block = sample << 20 | view << 4 | k, with k < 16 blocks (64 words) per (sample, view). So sample < 2^44,
// view < 2^16, step < 2^56, and each purpose (augmentation, jigsaw, masking, rotation) has its own streams.
enum AugPurpose : uint8_t { kPurposeAugment = 0xA1, kPurposeRotation = 0xA2, kPurposeJigsaw = 0xA3, kPurposeMask = 0xA4 };

SELFSUP_HD Philox4 aug_block(uint64_t seed, uint8_t purpose, uint64_t step, uint64_t sample, uint32_t view,
                             uint32_t k) {
  const uint64_t stream = (static_cast<uint64_t>(purpose) << 56) | (step & ((1ull << 56) - 1));
  const uint64_t block = (sample << 20) | (static_cast<uint64_t>(view & 0xFFFFu) << 4) | (k & 15u);
  return philox_block(seed, stream, block);
}

// Uniform integer in [0, n) from one 32-bit word (multiply-shift; bias < n / 2^32).
SELFSUP_HD uint32_t aug_uint_below(uint32_t u, uint32_t n) {
  return static_cast<uint32_t>((static_cast<uint64_t>(u) * n) >> 32);
}
SELFSUP_HD float aug_uniform(uint32_t u, float lo, float hi) { return lo + (hi - lo) * uint_to_unit_float(u); }

// torchvision's RandomResizedCrop.get_params given the draws of its 10 attempts: per attempt k, the area
// fraction scale[k] (already in [scale_lo, scale_hi]), the log aspect ratio logr[k], and two words for the
// row/column draws. Python's round() is half-to-even: rint under the default rounding mode.
struct CropBox {
  int32_t y, x, h, w;
};
SELFSUP_HD CropBox rrc_from_draws(int32_t H, int32_t W, float ratio_lo, float ratio_hi, const float* scale,
                                  const float* logr, const uint32_t* row_word, const uint32_t* col_word) {
  const double area = static_cast<double>(H) * W;
  for (int k = 0; k < 10; ++k) {
    const double target_area = area * static_cast<double>(scale[k]);
    const double aspect = static_cast<double>(::expf(logr[k]));
    const int32_t w = static_cast<int32_t>(::rint(::sqrt(target_area * aspect)));
    const int32_t h = static_cast<int32_t>(::rint(::sqrt(target_area / aspect)));
    if (0 < w && w <= W && 0 < h && h <= H) {
      return CropBox{static_cast<int32_t>(aug_uint_below(row_word[k], static_cast<uint32_t>(H - h + 1))),
                     static_cast<int32_t>(aug_uint_below(col_word[k], static_cast<uint32_t>(W - w + 1))), h, w};
    }
  }
  // Fallback: a central crop clamped to the ratio range.
  const double in_ratio = static_cast<double>(W) / H;
  int32_t w = W, h = H;
  if (in_ratio < ratio_lo) {
    h = static_cast<int32_t>(::rint(W / static_cast<double>(ratio_lo)));
  } else if (in_ratio > ratio_hi) {
    w = static_cast<int32_t>(::rint(H * static_cast<double>(ratio_hi)));
  }
  return CropBox{(H - h) / 2, (W - w) / 2, h, w};
}

// Samples the parameters of view `view` of sample `sample` at step `step` for a source of H x W pixels.
// Word use (block k of this (sample, view)): k = 0..9 the crop attempts (scale, log-ratio, row, col);
// k = 10 (flip, jitter?, gray?, blur?); k = 11 (brightness, contrast, saturation, hue); k = 12 (three words
// for the jitter order, sigma); k = 13 (solarize?).
SELFSUP_HD AugmentParams sample_augment_params(const AugmentRecipe& r, int32_t H, int32_t W, uint64_t seed,
                                               uint64_t step, uint64_t sample, uint32_t view) {
  AugmentParams p;
  float scale[10], logr[10];
  uint32_t rows[10], cols[10];
  const float lr_lo = ::logf(r.ratio_lo), lr_hi = ::logf(r.ratio_hi);
  for (int k = 0; k < 10; ++k) {
    const Philox4 b = aug_block(seed, kPurposeAugment, step, sample, view, k);
    scale[k] = aug_uniform(b.v[0], r.scale_lo, r.scale_hi);
    logr[k] = aug_uniform(b.v[1], lr_lo, lr_hi);
    rows[k] = b.v[2];
    cols[k] = b.v[3];
  }
  const CropBox box = rrc_from_draws(H, W, r.ratio_lo, r.ratio_hi, scale, logr, rows, cols);
  p.crop_y = box.y;
  p.crop_x = box.x;
  p.crop_h = box.h;
  p.crop_w = box.w;

  const Philox4 coin = aug_block(seed, kPurposeAugment, step, sample, view, 10);
  p.flip = uint_to_unit_float(coin.v[0]) < r.flip_p;
  p.jitter = uint_to_unit_float(coin.v[1]) < r.jitter_p;
  p.gray = uint_to_unit_float(coin.v[2]) < r.gray_p;
  const bool blur = r.blur_ksize > 0 && uint_to_unit_float(coin.v[3]) < r.blur_p;

  const Philox4 f = aug_block(seed, kPurposeAugment, step, sample, view, 11);
  const Philox4 o = aug_block(seed, kPurposeAugment, step, sample, view, 12);
  if (p.jitter) {
    // A strength of 0 leaves the op out (torchvision passes None); the factor then stays the identity.
    if (r.brightness > 0) p.brightness = aug_uniform(f.v[0], ::fmaxf(0.f, 1.f - r.brightness), 1.f + r.brightness);
    if (r.contrast > 0) p.contrast = aug_uniform(f.v[1], ::fmaxf(0.f, 1.f - r.contrast), 1.f + r.contrast);
    if (r.saturation > 0) p.saturation = aug_uniform(f.v[2], ::fmaxf(0.f, 1.f - r.saturation), 1.f + r.saturation);
    if (r.hue > 0) p.hue = aug_uniform(f.v[3], -r.hue, r.hue);
    // Uniform random order: Fisher-Yates with words 0..2.
    for (uint32_t k = 3; k >= 1; --k) {
      const uint32_t j = aug_uint_below(o.v[3 - k], k + 1);
      const uint8_t t = p.order[k];
      p.order[k] = p.order[j];
      p.order[j] = t;
    }
  }
  if (blur) p.sigma = aug_uniform(o.v[3], r.sigma_lo, r.sigma_hi);
  const Philox4 s = aug_block(seed, kPurposeAugment, step, sample, view, 13);
  p.solarize = uint_to_unit_float(s.v[0]) < r.solarize_p;
  return p;
}

}  // namespace selfsup::kernels
