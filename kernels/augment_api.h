// Signatures of the augmentation kernels (kernels/cpu/augment*.cpp). Like kernel_api.h: raw pointers and
// sizes, no Tensor. Kept in their own header so the parameter structs (augment_params.h) stay the only thing
// a CUDA kernel needs to include besides this.
//
// Layouts: a source batch is uint8 (N, H, W, C), C = 1 or 3, as the datasets store it; a working image is
// float planar (C, H, W) with values in [0, 1]; the output is float (N, C, out_h, out_w) normalized.
#pragma once
#include <cstdint>

#include "kernels/augment_params.h"

namespace selfsup::kernels {

// ============================ the fused per-view pipeline (kernels/cpu/augment.cpp)
// out[n] = normalize(solarize(blur(gray/jitter(resized_crop(src[idx[n]])))) with params[n] (see the order in
// augment_params.h). src_index (N) selects source images from a larger store (null: image n). Parallel over
// images with OpenMP (threads <= 0: the OpenMP default; 1: serial, for callers that are threads already).
void augment_views_cpu(const AugmentRecipe& recipe, int64_t N, int32_t H, int32_t W, int32_t C,
                       const uint8_t* src, const int64_t* src_index, const AugmentParams* params, float* out,
                       int threads);

// ============================ single ops on one float planar image (kernels/cpu/augment_ops.cpp)
// These are the building blocks of the pipeline, exported for tests (each against torchvision) and for
// callers that compose their own order.
// Crop (y, x, h, w) of src (C, H, W) resized to (C, out_h, out_w) with bilinear interpolation,
// align_corners=False, no antialiasing (torch.nn.functional.interpolate / torchvision's tensor resize),
// mirrored horizontally when flip. The uint8 variant reads (H, W, C) and scales by 1/255.
void aug_resized_crop_f32_cpu(int32_t C, int32_t H, int32_t W, const float* src, int32_t y, int32_t x, int32_t h,
                              int32_t w, bool flip, int32_t out_h, int32_t out_w, float* dst);
void aug_resized_crop_u8_cpu(int32_t C, int32_t H, int32_t W, const uint8_t* src, int32_t y, int32_t x,
                             int32_t h, int32_t w, bool flip, int32_t out_h, int32_t out_w, float* dst);
// In place on img (C, HW). Brightness: clamp(f x, 0, 1). Contrast: clamp(f x + (1 - f) mean(gray(x)), 0, 1).
// Saturation: clamp(f x + (1 - f) gray(x), 0, 1) (C = 3 only). Hue: shift H in HSV by f (C = 3 only).
// Grayscale: every channel = 0.2989 r + 0.587 g + 0.114 b (C = 3; C = 1 is unchanged).
void aug_brightness_cpu(int32_t C, int64_t HW, float* img, float f);
void aug_contrast_cpu(int32_t C, int64_t HW, float* img, float f);
void aug_saturation_cpu(int32_t C, int64_t HW, float* img, float f);
void aug_hue_cpu(int32_t C, int64_t HW, float* img, float f);
void aug_grayscale_cpu(int32_t C, int64_t HW, float* img);
// Gaussian blur with torchvision's kernel (ksize odd, weights exp(-x^2 / 2 sigma^2) normalised) and
// reflect padding; separable (rows then columns). scratch holds C*H*W floats.
void aug_gaussian_blur_cpu(int32_t C, int32_t H, int32_t W, float* img, int32_t ksize, float sigma,
                           float* scratch);
// x >= threshold -> 1 - x.
void aug_solarize_cpu(int32_t C, int64_t HW, float* img, float threshold);
// out[c] = (img[c] - mean[c]) / std[c]; out may alias img.
void aug_normalize_cpu(int32_t C, int64_t HW, const float* img, const float* mean, const float* std, float* out);

// ============================ pretext transforms (kernels/cpu/augment_pretext.cpp), float (N, C, H, W)
// Rotation by k[n] * 90 degrees counter-clockwise (torch.rot90(x, k, dims=(-2, -1))); H == W when any k is odd.
void rotate90_cpu(int64_t N, int32_t C, int32_t H, int32_t W, const float* in, const uint8_t* k, float* out);
// Jigsaw: the image is cut into a grid x grid array of cells of (H / grid, W / grid) pixels; the tile taken
// from cell c is the tile x tile square at offset (offsets[n, c, 0], offsets[n, c, 1]) inside the cell.
// Output position p receives the tile of cell perms[perm_index[n] * grid^2 + p]:
// out (N, grid^2, C, tile, tile).
void jigsaw_tiles_cpu(int64_t N, int32_t C, int32_t H, int32_t W, const float* in, int32_t grid, int32_t tile,
                      const uint8_t* perms, const int32_t* perm_index, const int32_t* offsets, float* out);
// Masking in place: pixels whose mask (N, H, W) is 1 are set to fill[c] (per channel, e.g. the normalized
// mean, i.e. 0). The caller keeps the unmasked input (or a crop of it) as the target.
void apply_mask_cpu(int64_t N, int32_t C, int32_t H, int32_t W, float* img, const uint8_t* mask,
                    const float* fill);

}  // namespace selfsup::kernels
