#include "engine/data/augment.h"

#include <algorithm>
#include <cmath>

#include "engine/core/cuda_context.h"
#include "kernels/augment_api.h"
#include "kernels/jigsaw_perms.h"
#ifdef SELFSUP_HAVE_CUDA
#include "kernels/cuda/augment_cuda.h"
#endif

namespace selfsup {

namespace kn = kernels;

int blur_kernel_size(int out_size) {
  int k = static_cast<int>(0.1 * out_size);
  if (k % 2 == 0) ++k;
  return k < 3 ? 3 : k;
}

std::vector<std::string> recipe_names() { return {"simclr", "mocov1", "mocov2", "gray", "eval"}; }

AugmentRecipe make_recipe(const std::string& name, int out_size, int channels) {
  SELFSUP_CHECK(out_size > 0, "recipe: output size must be > 0, got ", out_size);
  SELFSUP_CHECK(channels == 1 || channels == 3, "recipe: channels must be 1 or 3, got ", channels);
  AugmentRecipe r;
  r.out_h = r.out_w = out_size;
  if (channels == 3) {
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    for (int c = 0; c < 3; ++c) r.mean[c] = mean[c], r.std[c] = std[c];
  } else {
    for (int c = 0; c < 3; ++c) r.mean[c] = 0.5f, r.std[c] = 0.5f;
  }
  auto jitter = [&](float p, float b, float c, float s, float h) {
    r.jitter_p = p, r.brightness = b, r.contrast = c, r.saturation = s, r.hue = h;
  };
  if (name == "simclr") {
    r.scale_lo = 0.08f;
    jitter(0.8f, 0.8f, 0.8f, 0.8f, 0.2f);
    r.gray_p = 0.2f;
    r.blur_p = 0.5f;
    r.blur_ksize = blur_kernel_size(out_size);
  } else if (name == "mocov1") {
    r.scale_lo = 0.2f;
    jitter(1.0f, 0.4f, 0.4f, 0.4f, 0.4f);
    r.gray_p = 0.2f;
    r.gray_before_jitter = 1;
  } else if (name == "mocov2") {
    r.scale_lo = 0.2f;
    jitter(0.8f, 0.4f, 0.4f, 0.4f, 0.1f);
    r.gray_p = 0.2f;
    r.blur_p = 0.5f;
    r.blur_ksize = blur_kernel_size(out_size);
  } else if (name == "gray") {
    r.scale_lo = 0.2f;
    jitter(0.8f, 0.4f, 0.4f, 0.0f, 0.0f);
    r.blur_p = 0.5f;
    r.blur_ksize = blur_kernel_size(out_size);
  } else if (name == "eval") {
    // Square images: the whole image; others: the central square (RRC's fallback), resized.
    r.scale_lo = r.scale_hi = 1.0f;
    r.ratio_lo = r.ratio_hi = 1.0f;
    r.flip_p = 0.0f;
  } else {
    throw_error("recipe: unknown recipe '" + name + "' (expected simclr, mocov1, mocov2, gray or eval)");
  }
  return r;
}

std::vector<AugmentParams> sample_params(const AugmentRecipe& recipe, int H, int W, uint64_t seed, uint64_t step,
                                         const int64_t* sample_ids, int64_t n, uint32_t view) {
  std::vector<AugmentParams> out(static_cast<size_t>(n));
#pragma omp parallel for schedule(static) if (n > 256)
  for (int64_t i = 0; i < n; ++i)
    out[i] = kn::sample_augment_params(recipe, H, W, seed, step, static_cast<uint64_t>(sample_ids[i]), view);
  return out;
}

namespace {

void check_images(const Tensor& images, const char* op) {
  SELFSUP_CHECK(images.defined() && images.dtype() == DType::u8 && images.dim() == 4, op,
                ": expected uint8 images (N, H, W, C), got ", images.defined() ? images.str() : "undefined");
  SELFSUP_CHECK(images.size(3) == 1 || images.size(3) == 3, op, ": images must have 1 or 3 channels, got ",
                images.size(3));
}

void check_recipe(const AugmentRecipe& r) {
  SELFSUP_CHECK(r.out_h > 0 && r.out_w > 0, "augment: output size must be positive, got ", r.out_h, "x", r.out_w);
  SELFSUP_CHECK(r.blur_ksize == 0 || (r.blur_ksize % 2 == 1 && r.blur_ksize < 128),
                "augment: blur kernel size must be odd and < 128, got ", r.blur_ksize);
  for (int c = 0; c < 3; ++c) SELFSUP_CHECK(r.std[c] != 0.0f, "augment: std[", c, "] is 0");
}

void check_float_images(const Tensor& x, const char* op) {
  SELFSUP_CHECK(x.defined() && x.dtype() == DType::f32 && x.dim() == 4 && x.device().type == DeviceType::cpu, op,
                ": expected float32 CPU images (N, C, H, W), got ", x.defined() ? x.str() : "undefined");
}

std::vector<int64_t> ids_of(const Tensor& sample_ids, int64_t n, const char* op) {
  SELFSUP_CHECK(sample_ids.defined() && sample_ids.dtype() == DType::i64 && sample_ids.numel() == n, op,
                ": sample_ids must be int64 with one id per image (", n, ")");
  const Tensor c = sample_ids.to(Device::cpu()).contiguous();
  const int64_t* p = c.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) SELFSUP_CHECK(p[i] >= 0, op, ": sample id ", p[i], " is negative");
  return std::vector<int64_t>(p, p + n);
}

}  // namespace

Tensor apply_augment(const Tensor& images, const AugmentRecipe& recipe, const std::vector<AugmentParams>& params,
                     const Tensor& src_index, int threads, DType out_dtype) {
  check_images(images, "augment");
  check_recipe(recipe);
  SELFSUP_CHECK(out_dtype == DType::f32 || out_dtype == DType::bf16, "augment: the output dtype must be float32 or ",
                "bfloat16, got ", dtype_name(out_dtype));
  const Tensor src = images.contiguous();
  const int64_t store = src.size(0);
  const int32_t H = static_cast<int32_t>(src.size(1)), W = static_cast<int32_t>(src.size(2)),
                C = static_cast<int32_t>(src.size(3));
  const int64_t N = src_index.defined() ? src_index.numel() : store;
  SELFSUP_CHECK(static_cast<int64_t>(params.size()) == N, "augment: ", params.size(), " parameter sets for ", N,
                " images");
  Tensor idx;
  if (src_index.defined()) {
    SELFSUP_CHECK(src_index.dtype() == DType::i64, "augment: src_index must be int64");
    idx = src_index.to(Device::cpu()).contiguous();  // validated on the host, whatever its device
    const int64_t* p = idx.data_ptr<int64_t>();
    for (int64_t i = 0; i < N; ++i)
      SELFSUP_CHECK(p[i] >= 0 && p[i] < store, "augment: src_index[", i, "] = ", p[i], " outside [0, ", store, ")");
  }
  for (int64_t i = 0; i < N; ++i) {
    const AugmentParams& p = params[i];
    SELFSUP_CHECK(p.crop_h > 0 && p.crop_w > 0 && p.crop_y >= 0 && p.crop_x >= 0 && p.crop_y + p.crop_h <= H &&
                      p.crop_x + p.crop_w <= W,
                  "augment: crop (y ", p.crop_y, ", x ", p.crop_x, ", h ", p.crop_h, ", w ", p.crop_w,
                  ") of image ", i, " is outside the ", H, "x", W, " source");
  }
  if (src.device().is_cuda()) {
#ifdef SELFSUP_HAVE_CUDA
    // The fused CUDA kernel (kernels/cuda/augment.cu) on the images' device and its current stream: the
    // parameters (and the index) are uploaded; the float32 buffers the kernel needs (blur scratch; for a
    // bf16 output, the working image when some image has contrast or blur) are allocated from the
    // parameters actually given, so hand-made parameters are covered too.
    const Device d = src.device();
    Tensor out = Tensor::empty({N, C, recipe.out_h, recipe.out_w}, out_dtype, d);
    if (N == 0) return out;
    const size_t pbytes = static_cast<size_t>(N) * sizeof(AugmentParams);
    Tensor pdev = Tensor::empty({static_cast<int64_t>(pbytes)}, DType::u8, d);
    copy_bytes(pdev.raw_data(), d, params.data(), Device::cpu(), pbytes);
    const Tensor idx_dev = idx.defined() ? idx.to(d) : Tensor();
    const kn::AugOutType otype = out_dtype == DType::bf16 ? kn::AugOutType::bf16 : kn::AugOutType::f32;
    bool any_contrast = false;
    for (const AugmentParams& p : params) any_contrast = any_contrast || (p.jitter && p.contrast != 1.0f);
    const bool need_scratch = recipe.blur_ksize > 1;  // the launcher's rule, for every output type
    const bool need_work = otype == kn::AugOutType::bf16 && (any_contrast || need_scratch);
    const Tensor scratch = need_scratch ? Tensor::empty(out.sizes(), DType::f32, d) : Tensor();
    const Tensor work = need_work ? Tensor::empty(out.sizes(), DType::f32, d) : Tensor();
    kn::augment_views_cuda(recipe, N, H, W, C, src.data_ptr<uint8_t>(),
                           idx_dev.defined() ? idx_dev.data_ptr<int64_t>() : nullptr,
                           reinterpret_cast<const AugmentParams*>(pdev.raw_data()), out.raw_data(), otype,
                           work.defined() ? work.data_ptr<float>() : nullptr,
                           scratch.defined() ? scratch.data_ptr<float>() : nullptr,
                           static_cast<cudaStream_t>(cuda_stream(d)));
    return out;
#else
    throw_error("augment: the images are on " + src.device().str() +
                " but this build has no CUDA backend (configure with -DSELFSUP_CUDA=ON)");
#endif
  }
  Tensor out = Tensor::empty({N, C, recipe.out_h, recipe.out_w}, DType::f32);
  kn::augment_views_cpu(recipe, N, H, W, C, src.data_ptr<uint8_t>(), idx.defined() ? idx.data_ptr<int64_t>() : nullptr,
                        params.data(), out.data_ptr<float>(), threads);
  // bf16 on the CPU: the same float32 views, rounded to nearest even (what the CUDA kernel's store does).
  return out_dtype == DType::f32 ? out : out.to(out_dtype);
}

std::vector<Tensor> augment_views(const Tensor& images, const Tensor& sample_ids, const AugmentRecipe& recipe,
                                  uint64_t seed, uint64_t step, int views, int threads, DType out_dtype) {
  check_images(images, "augment");
  SELFSUP_CHECK(views >= 1, "augment: views must be >= 1, got ", views);
  const std::vector<int64_t> ids = ids_of(sample_ids, images.size(0), "augment");
  std::vector<Tensor> out;
  for (int v = 0; v < views; ++v) {
    const auto params = sample_params(recipe, static_cast<int>(images.size(1)), static_cast<int>(images.size(2)),
                                      seed, step, ids.data(), static_cast<int64_t>(ids.size()), v);
    out.push_back(apply_augment(images, recipe, params, Tensor(), threads, out_dtype));
  }
  return out;
}

// ---------------------------------------------------------------- pretext

Tensor rotate90(const Tensor& x, const std::vector<uint8_t>& k) {
  check_float_images(x, "rotate90");
  const Tensor in = x.contiguous();
  SELFSUP_CHECK(static_cast<int64_t>(k.size()) == in.size(0), "rotate90: ", k.size(), " rotations for ",
                in.size(0), " images");
  SELFSUP_CHECK(in.size(2) == in.size(3), "rotate90: images must be square, got ", in.size(2), "x", in.size(3));
  Tensor out = Tensor::empty(in.sizes(), DType::f32);
  kn::rotate90_cpu(in.size(0), static_cast<int32_t>(in.size(1)), static_cast<int32_t>(in.size(2)),
                   static_cast<int32_t>(in.size(3)), in.data_ptr<float>(), k.data(), out.data_ptr<float>());
  return out;
}

LabeledBatch rotations_all(const Tensor& x) {
  check_float_images(x, "rotations_all");
  const Tensor in = x.contiguous();
  const int64_t N = in.size(0);
  std::vector<uint8_t> k(static_cast<size_t>(4 * N));
  std::vector<int64_t> labels(static_cast<size_t>(4 * N));
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t n = 0; n < N; ++n) k[r * N + n] = static_cast<uint8_t>(r), labels[r * N + n] = r;
  // Four copies of the batch, then one rotation pass.
  Tensor rep = Tensor::empty({4 * N, in.size(1), in.size(2), in.size(3)}, DType::f32);
  for (int64_t r = 0; r < 4; ++r) rep.narrow(0, r * N, N).copy_(in);
  return {rotate90(rep, k), Tensor::from_vector(labels, {4 * N})};
}

LabeledBatch rotate_random(const Tensor& x, const Tensor& sample_ids, uint64_t seed, uint64_t step) {
  check_float_images(x, "rotate_random");
  const std::vector<int64_t> ids = ids_of(sample_ids, x.size(0), "rotate_random");
  std::vector<uint8_t> k(ids.size());
  std::vector<int64_t> labels(ids.size());
  for (size_t n = 0; n < ids.size(); ++n) {
    const kn::Philox4 b = kn::aug_block(seed, kn::kPurposeRotation, step, static_cast<uint64_t>(ids[n]), 0, 0);
    k[n] = static_cast<uint8_t>(kn::aug_uint_below(b.v[0], 4));
    labels[n] = k[n];
  }
  return {rotate90(x, k), Tensor::from_vector(labels, {x.size(0)})};
}

LabeledBatch jigsaw(const Tensor& x, int tile, const Tensor& sample_ids, uint64_t seed, uint64_t step,
                    int num_perms) {
  check_float_images(x, "jigsaw");
  const Tensor in = x.contiguous();
  const int64_t N = in.size(0);
  const int32_t C = static_cast<int32_t>(in.size(1)), H = static_cast<int32_t>(in.size(2)),
                W = static_cast<int32_t>(in.size(3));
  const int32_t ch = H / 3, cw = W / 3;
  SELFSUP_CHECK(tile >= 1 && tile <= ch && tile <= cw, "jigsaw: tile ", tile, " must be in [1, ", std::min(ch, cw),
                "] for ", H, "x", W, " images (cells of ", ch, "x", cw, ")");
  SELFSUP_CHECK(num_perms >= 1 && num_perms <= kn::kJigsawPermCount, "jigsaw: num_perms must be in [1, ",
                kn::kJigsawPermCount, "], got ", num_perms);
  const std::vector<int64_t> ids = ids_of(sample_ids, N, "jigsaw");
  std::vector<int32_t> perm(static_cast<size_t>(N)), offsets(static_cast<size_t>(N * 9 * 2));
  std::vector<int64_t> labels(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) {
    // block 0: the permutation; blocks 1..5: two words (row, col offset) per cell.
    const uint64_t id = static_cast<uint64_t>(ids[n]);
    const kn::Philox4 b0 = kn::aug_block(seed, kn::kPurposeJigsaw, step, id, 0, 0);
    perm[n] = static_cast<int32_t>(kn::aug_uint_below(b0.v[0], static_cast<uint32_t>(num_perms)));
    labels[n] = perm[n];
    for (int c = 0; c < 9; ++c) {
      const kn::Philox4 b = kn::aug_block(seed, kn::kPurposeJigsaw, step, id, 0, 1 + c / 2);
      offsets[(n * 9 + c) * 2 + 0] = static_cast<int32_t>(kn::aug_uint_below(b.v[(c % 2) * 2], ch - tile + 1));
      offsets[(n * 9 + c) * 2 + 1] = static_cast<int32_t>(kn::aug_uint_below(b.v[(c % 2) * 2 + 1], cw - tile + 1));
    }
  }
  Tensor out = Tensor::empty({N, 9, C, tile, tile}, DType::f32);
  kn::jigsaw_tiles_cpu(N, C, H, W, in.data_ptr<float>(), 3, tile, &kn::kJigsawPerms[0][0], perm.data(),
                       offsets.data(), out.data_ptr<float>());
  return {out, Tensor::from_vector(labels, {N})};
}

namespace {

MaskedBatch finish_mask(const Tensor& in, Tensor mask, Tensor target, float fill) {
  const int32_t C = static_cast<int32_t>(in.size(1));
  Tensor masked = in.clone();
  std::vector<float> f(static_cast<size_t>(C), fill);
  kn::apply_mask_cpu(in.size(0), C, static_cast<int32_t>(in.size(2)), static_cast<int32_t>(in.size(3)),
                     masked.data_ptr<float>(), mask.data_ptr<uint8_t>(), f.data());
  return {masked, target, mask};
}

}  // namespace

MaskedBatch mask_center(const Tensor& x, double fraction, float fill) {
  check_float_images(x, "mask_center");
  SELFSUP_CHECK(fraction > 0 && fraction < 1, "mask_center: fraction must be in (0, 1), got ", fraction);
  const Tensor in = x.contiguous();
  const int64_t N = in.size(0), H = in.size(2), W = in.size(3);
  const int64_t h = std::max<int64_t>(1, std::llround(fraction * H)), w = std::max<int64_t>(1, std::llround(fraction * W));
  const int64_t y0 = (H - h) / 2, x0 = (W - w) / 2;
  Tensor mask = Tensor::zeros({N, H, W}, DType::u8);
  mask.narrow(1, y0, h).narrow(2, x0, w).fill_(1);
  Tensor target = in.narrow(2, y0, h).narrow(3, x0, w).contiguous();
  return finish_mask(in, mask, target, fill);
}

MaskedBatch mask_random_blocks(const Tensor& x, const Tensor& sample_ids, uint64_t seed, uint64_t step, int blocks,
                               double block_fraction, float fill) {
  check_float_images(x, "mask_random_blocks");
  SELFSUP_CHECK(blocks >= 1 && blocks <= 64, "mask_random_blocks: blocks must be in [1, 64], got ", blocks);
  SELFSUP_CHECK(block_fraction > 0 && block_fraction <= 1, "mask_random_blocks: block_fraction must be in (0, 1], got ",
                block_fraction);
  const Tensor in = x.contiguous();
  const int64_t N = in.size(0), H = in.size(2), W = in.size(3);
  const int64_t side = std::max<int64_t>(1, std::llround(block_fraction * std::min(H, W)));
  const std::vector<int64_t> ids = ids_of(sample_ids, N, "mask_random_blocks");
  Tensor mask = Tensor::zeros({N, H, W}, DType::u8);
  uint8_t* m = mask.data_ptr<uint8_t>();
  for (int64_t n = 0; n < N; ++n) {
    for (int b = 0; b < blocks; ++b) {
      // Two blocks' positions per Philox block (4 words): block b uses view b / 32, k = (b % 32) / 2.
      const kn::Philox4 r = kn::aug_block(seed, kn::kPurposeMask, step, static_cast<uint64_t>(ids[n]),
                                          static_cast<uint32_t>(b / 32), static_cast<uint32_t>((b % 32) / 2));
      const int64_t y0 = kn::aug_uint_below(r.v[(b % 2) * 2], static_cast<uint32_t>(H - side + 1));
      const int64_t x0 = kn::aug_uint_below(r.v[(b % 2) * 2 + 1], static_cast<uint32_t>(W - side + 1));
      for (int64_t yy = y0; yy < y0 + side; ++yy)
        for (int64_t xx = x0; xx < x0 + side; ++xx) m[(n * H + yy) * W + xx] = 1;
    }
  }
  return finish_mask(in, mask, in, fill);
}

}  // namespace selfsup
