// Engine-level augmentation: named recipes, parameter sampling for a batch, the fused view pipeline on
// Tensors, and the pretext transforms (rotation, jigsaw, masking). The random parameters of view v of
// sample i at step t are a pure function of (seed, t, i, v) (kernels/augment_params.h), where i is the
// sample's index in the dataset, so a view does not depend on the batch it lands in, the thread count,
// the device or a resume. See docs/augmentation.md.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/tensor.h"
#include "kernels/augment_params.h"

namespace selfsup {

using kernels::AugmentParams;
using kernels::AugmentRecipe;

// ---- recipes (data; fields may be edited after creation, e.g. mean/std)
// simclr: RRC(0.08-1), flip, jitter(0.8, 0.8, 0.8, 0.2) p=0.8, gray p=0.2, blur p=0.5 (kernel ~10% of size)
// mocov1: RRC(0.2-1), gray p=0.2, then jitter(0.4, 0.4, 0.4, 0.4) always, flip
// mocov2: RRC(0.2-1), jitter(0.4, 0.4, 0.4, 0.1) p=0.8, gray p=0.2, blur p=0.5, flip
// gray:   RRC(0.2-1), flip, jitter(0.4, 0.4, 0, 0) p=0.8, blur p=0.5 (1-channel data: no hue/saturation)
// eval:   the whole image resized to out_size, normalized (no randomness)
// mean/std: ImageNet's for 3 channels, 0.5/0.5 for 1 channel.
AugmentRecipe make_recipe(const std::string& name, int out_size, int channels);
std::vector<std::string> recipe_names();
// torchvision's SimCLR-style blur kernel size for an output size: int(0.1 * size), made odd (>= 3).
int blur_kernel_size(int out_size);

// ---- parameters and the pipeline
// Parameters of view `view` for samples sample_ids[0..n) of H x W sources.
std::vector<AugmentParams> sample_params(const AugmentRecipe& recipe, int H, int W, uint64_t seed, uint64_t step,
                                         const int64_t* sample_ids, int64_t n, uint32_t view);
// images: uint8 (N, H, W, C) (or a larger store with src_index (N) int64 selecting from it); params: one
// per output image. Returns out_dtype (N, C, out_h, out_w), float32 or bfloat16 (float32 math, rounded to
// nearest even once at the end), on the images' device (the fused CUDA kernel for CUDA images, on the
// device's current stream). threads <= 0: OpenMP default (CPU only).
Tensor apply_augment(const Tensor& images, const AugmentRecipe& recipe, const std::vector<AugmentParams>& params,
                     const Tensor& src_index = Tensor(), int threads = 0, DType out_dtype = DType::f32);
// `views` views of every image: sample_params + apply_augment per view. sample_ids int64 (N).
std::vector<Tensor> augment_views(const Tensor& images, const Tensor& sample_ids, const AugmentRecipe& recipe,
                                  uint64_t seed, uint64_t step, int views, int threads = 0,
                                  DType out_dtype = DType::f32);

// ---- images of any size (an ImageSource's, e.g. an image folder's photos), one uint8 (h_k, w_k, C) each
// `views` views as augment_views makes them, each image's crop sampled from its own size: RandomResizedCrop
// takes its area fraction and aspect ratio of the original image (torchvision's semantics), then resizes
// the crop to (out_h, out_w). View v of image k equals augment_views of that image alone, bit for bit.
// Returns views x out_dtype (N, C, out_h, out_w) on the CPU; threads as in augment_views (over images).
std::vector<Tensor> augment_views_each(const std::vector<Tensor>& images, const Tensor& sample_ids,
                                       const AugmentRecipe& recipe, uint64_t seed, uint64_t step, int views,
                                       int threads = 0, DType out_dtype = DType::f32);
// The evaluation geometry of torchvision's ImageFolder recipes (Resize(R) then CenterCrop(size), R =
// floor(size / 0.875): 256 for 224): the short side resized to R, the long one to int(R * long / short),
// then the central size x size square, its corner at round((resized - size) / 2) (half to even).
struct EvalCrop {
  int32_t resized_h, resized_w, top, left;
};
EvalCrop eval_crop_geometry(int32_t h, int32_t w, int32_t size);
// Bilinear resize (align_corners=False, no antialiasing) of one uint8 (H, W, C) image to (h, w, C), rounded.
void resize_image_u8(const uint8_t* src, int H, int W, int C, uint8_t* dst, int h, int w);
// image uint8 (h, w, C) -> uint8 (size, size, C): resized (resize_image_u8) and centre-cropped by
// eval_crop_geometry.
Tensor eval_crop_u8(const Tensor& image, int32_t size);
// The evaluation input of every image: eval_crop_u8 to (out_h x out_h), then the recipe's normalisation
// (a recipe made by make_recipe("eval", ...): its crop of a square is the whole square, resized 1:1, which
// copies). Returns float (N, C, out_h, out_h) on the CPU; threads over images (<= 0: OpenMP default).
Tensor eval_views_each(const std::vector<Tensor>& images, const AugmentRecipe& eval_recipe, int threads = 0);

// ---- pretext transforms on float (N, C, H, W)
struct LabeledBatch {
  Tensor images;  // float
  Tensor labels;  // int64
};
// Rotation by k[n] * 90 degrees counter-clockwise (torch.rot90 on the last two dims); square images.
Tensor rotate90(const Tensor& x, const std::vector<uint8_t>& k);
// RotNet: every image in its 4 rotations, (4N, C, H, W) ordered [all k=0, all k=1, ...], labels k.
LabeledBatch rotations_all(const Tensor& x);
// One rotation per sample, k drawn from (seed, step, sample_ids[n]).
LabeledBatch rotate_random(const Tensor& x, const Tensor& sample_ids, uint64_t seed, uint64_t step);
// Jigsaw (Noroozi & Favaro; PIRL): 3x3 cells of (H/3, W/3), a tile x tile crop at a random offset in each
// cell, shuffled by a permutation drawn from the first num_perms rows of kernels/jigsaw_perms.h.
// images (N, 9, C, tile, tile); labels = the permutation's row.
LabeledBatch jigsaw(const Tensor& x, int tile, const Tensor& sample_ids, uint64_t seed, uint64_t step,
                    int num_perms = 100);
struct MaskedBatch {
  Tensor masked;  // float (N, C, H, W): the input with the masked pixels set to `fill`
  Tensor target;  // what the model must predict: the central region (N, C, h, w) or the whole input
  Tensor mask;    // uint8 (N, H, W): 1 where masked
};
// Context Encoder: the central fraction x fraction region (rounded to pixels) is masked; target = that region.
MaskedBatch mask_center(const Tensor& x, double fraction = 0.5, float fill = 0.0f);
// `blocks` random squares of side round(block_fraction * min(H, W)) per image (positions from
// (seed, step, sample_ids[n])); target = the whole input, the loss is usually weighted by the mask.
MaskedBatch mask_random_blocks(const Tensor& x, const Tensor& sample_ids, uint64_t seed, uint64_t step, int blocks,
                               double block_fraction, float fill = 0.0f);

}  // namespace selfsup
