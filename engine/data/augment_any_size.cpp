// The view pipeline for images that differ in size (an image folder's photos, decoded one by one): each
// image goes through the same CPU kernel as a uniform batch (kernels/cpu/augment.cpp), as a batch of one
// with its own H x W, so its crop parameters come from its own size. Evaluation crops follow torchvision's
// ImageFolder recipes (Resize + CenterCrop). See docs/augmentation.md, "Image folders".
#include <omp.h>

#include <cmath>

#include "engine/data/augment.h"
#include "kernels/augment_api.h"

namespace selfsup {

namespace kn = kernels;

namespace {

// The checks augment_views makes of a batch, per image: uint8 (h, w, C), one C for all, 1 or 3.
int check_each(const std::vector<Tensor>& images, const char* op) {
  SELFSUP_CHECK(!images.empty(), op, ": no images");
  const int64_t C = images[0].defined() && images[0].dim() == 3 ? images[0].size(2) : 0;
  for (size_t k = 0; k < images.size(); ++k) {
    const Tensor& im = images[k];
    SELFSUP_CHECK(im.defined() && im.dtype() == DType::u8 && im.dim() == 3 && im.device().is_cpu() &&
                      im.size(0) > 0 && im.size(1) > 0 && im.is_contiguous(),
                  op, ": image ", k, " must be a contiguous CPU uint8 (h, w, C) tensor, got ",
                  im.defined() ? im.str() : "undefined");
    SELFSUP_CHECK(im.size(2) == C && (C == 1 || C == 3), op, ": image ", k, " has ", im.size(2),
                  " channels; every image must have the same 1 or 3");
  }
  return static_cast<int>(C);
}

}  // namespace

std::vector<Tensor> augment_views_each(const std::vector<Tensor>& images, const Tensor& sample_ids,
                                       const AugmentRecipe& recipe, uint64_t seed, uint64_t step, int views,
                                       int threads, DType out_dtype) {
  const int C = check_each(images, "augment");
  const int64_t N = static_cast<int64_t>(images.size());
  SELFSUP_CHECK(views >= 1, "augment: views must be >= 1, got ", views);
  SELFSUP_CHECK(out_dtype == DType::f32 || out_dtype == DType::bf16, "augment: the output dtype must be float32 or ",
                "bfloat16, got ", dtype_name(out_dtype));
  SELFSUP_CHECK(recipe.out_h > 0 && recipe.out_w > 0, "augment: output size must be positive, got ", recipe.out_h,
                "x", recipe.out_w);
  SELFSUP_CHECK(recipe.blur_ksize == 0 || (recipe.blur_ksize % 2 == 1 && recipe.blur_ksize < 128),
                "augment: blur kernel size must be odd and < 128, got ", recipe.blur_ksize);
  for (int c = 0; c < 3; ++c) SELFSUP_CHECK(recipe.std[c] != 0.0f, "augment: std[", c, "] is 0");
  SELFSUP_CHECK(sample_ids.defined() && sample_ids.dtype() == DType::i64 && sample_ids.numel() == N,
                "augment: sample_ids must be int64 with one id per image (", N, ")");
  const Tensor ids = sample_ids.to(Device::cpu()).contiguous();
  const int64_t* id = ids.data_ptr<int64_t>();
  for (int64_t k = 0; k < N; ++k) SELFSUP_CHECK(id[k] >= 0, "augment: sample id ", id[k], " is negative");
  const int64_t plane = static_cast<int64_t>(C) * recipe.out_h * recipe.out_w;
  const int nt = threads > 0 ? threads : omp_get_max_threads();
  std::vector<Tensor> out;
  for (int v = 0; v < views; ++v) {
    Tensor o = Tensor::empty({N, C, recipe.out_h, recipe.out_w}, DType::f32);  // (N, C, out_h, out_w)
    float* po = o.data_ptr<float>();
#pragma omp parallel for schedule(dynamic, 4) num_threads(nt) if (nt > 1 && N > 1)
    for (int64_t k = 0; k < N; ++k) {
      const int32_t h = static_cast<int32_t>(images[k].size(0)), w = static_cast<int32_t>(images[k].size(1));
      const AugmentParams p = kn::sample_augment_params(recipe, h, w, seed, step, static_cast<uint64_t>(id[k]),
                                                        static_cast<uint32_t>(v));
      kn::augment_views_cpu(recipe, 1, h, w, C, images[k].data_ptr<uint8_t>(), nullptr, &p, po + k * plane, 1);
    }
    out.push_back(out_dtype == DType::f32 ? o : o.to(out_dtype));
  }
  return out;
}

EvalCrop eval_crop_geometry(int32_t h, int32_t w, int32_t size) {
  SELFSUP_CHECK(h > 0 && w > 0 && size > 0, "eval crop: sizes must be positive, got ", h, "x", w, " to ", size);
  const int32_t R = static_cast<int32_t>(std::floor(size / 0.875));
  // torchvision.transforms.functional._compute_resized_output_size with an int size: the short side to R,
  // the long side to int(R * long / short) (Python's float division, truncated).
  const bool tall = w <= h;
  const int32_t shorter = tall ? w : h, longer = tall ? h : w;
  const int32_t new_long = static_cast<int32_t>(static_cast<double>(R) * longer / shorter);
  EvalCrop c;
  c.resized_h = tall ? new_long : R;
  c.resized_w = tall ? R : new_long;
  // CenterCrop: int(round((resized - size) / 2.0)), round half to even (rint in the default mode).
  c.top = static_cast<int32_t>(std::nearbyint((c.resized_h - size) / 2.0));
  c.left = static_cast<int32_t>(std::nearbyint((c.resized_w - size) / 2.0));
  return c;
}

void resize_image_u8(const uint8_t* src, int H, int W, int C, uint8_t* dst, int h, int w) {
  std::vector<float> planar(static_cast<size_t>(C) * h * w);  // (C, h, w) in [0, 1]
  kn::aug_resized_crop_u8_cpu(C, H, W, src, 0, 0, H, W, false, h, w, planar.data());
  const int64_t plane = static_cast<int64_t>(h) * w;
  for (int64_t i = 0; i < plane; ++i)
    for (int c = 0; c < C; ++c) {
      const float v = planar[c * plane + i] * 255.0f + 0.5f;
      dst[i * C + c] = static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
    }
}

namespace {

// eval_crop_u8 of a checked image into dst (size, size, C); throws nothing (it runs inside OpenMP loops).
void eval_crop_into(const Tensor& image, int32_t size, int C, uint8_t* dst) {
  const int32_t h = static_cast<int32_t>(image.size(0)), w = static_cast<int32_t>(image.size(1));
  const EvalCrop g = eval_crop_geometry(h, w, size);
  std::vector<uint8_t> resized(static_cast<size_t>(g.resized_h) * g.resized_w * C);  // (rh, rw, C)
  resize_image_u8(image.data_ptr<uint8_t>(), h, w, C, resized.data(), g.resized_h, g.resized_w);
  const int64_t row = static_cast<int64_t>(size) * C;
  for (int32_t y = 0; y < size; ++y)
    std::copy_n(resized.data() + ((static_cast<int64_t>(g.top) + y) * g.resized_w + g.left) * C, row, dst + y * row);
}

}  // namespace

Tensor eval_crop_u8(const Tensor& image, int32_t size) {
  const int C = check_each({image}, "eval crop");
  SELFSUP_CHECK(size > 0, "eval crop: the size must be positive, got ", size);
  Tensor out = Tensor::empty({size, size, C}, DType::u8);
  eval_crop_into(image, size, C, out.data_ptr<uint8_t>());
  return out;
}

Tensor eval_views_each(const std::vector<Tensor>& images, const AugmentRecipe& eval_recipe, int threads) {
  const int C = check_each(images, "eval views");
  const int32_t s = eval_recipe.out_h;
  SELFSUP_CHECK(s > 0 && eval_recipe.out_w == s, "eval views: the recipe's output must be square, got ",
                eval_recipe.out_h, "x", eval_recipe.out_w);
  const int64_t N = static_cast<int64_t>(images.size());
  Tensor crops = Tensor::empty({N, s, s, C}, DType::u8);  // (N, s, s, C)
  uint8_t* pc = crops.data_ptr<uint8_t>();
  const int64_t bytes = static_cast<int64_t>(s) * s * C;
  const int nt = threads > 0 ? threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 4) num_threads(nt) if (nt > 1 && N > 1)
  for (int64_t k = 0; k < N; ++k) eval_crop_into(images[k], s, C, pc + k * bytes);
  // The eval recipe's parameters of an s x s square: the whole square (scale 1, ratio 1), no flip.
  const std::vector<AugmentParams> params(static_cast<size_t>(N), kn::sample_augment_params(eval_recipe, s, s, 0, 0, 0, 0));
  return apply_augment(crops, eval_recipe, params, Tensor(), threads);
}

}  // namespace selfsup
