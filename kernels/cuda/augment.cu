// The fused augmentation pipeline on the GPU: the CUDA twin of kernels/cpu/augment.cpp (augment_views_cpu),
// op for op with kernels/cpu/augment_ops.cpp, so the CPU and CUDA views of the same AugmentParams agree to
// float rounding (tested to <= 2e-3 after normalization in tests/cuda/test_cuda_augment.cpp).
//
// Organisation: ONE kernel launch per view batch, one thread block per output image. Inside a block the
// image goes through at most four phases separated by __syncthreads(), with the working image kept in the
// output buffer itself (the image is block-private, so it stays in L1/L2):
//   1. per output pixel (all C channels in registers): bilinear crop+resize from the uint8 source (flip
//      folded into the x grid), then the pointwise ops (gray before jitter, the jitter ops in the sampled
//      order, gray) up to the contrast op, if any; the gray sum for contrast's mean is accumulated on the way.
//   2. (contrast only) a block reduction gives the image mean; then contrast and the remaining pointwise ops.
//   3. (blur only) the separable Gaussian blur as the CPU does it: rows (reflect padding) into `scratch`,
//      then columns back, with the kernel weights computed once per block in shared memory.
//   4. solarize and normalize, fused into whichever phase writes last.
// The output is float32 or bfloat16 (template parameter T). All math is float32; a bf16 output is rounded
// to nearest even once, at the final store. Between phases the image must stay in float32: for a float32
// output that is the output buffer itself (`work` == `out`), for bf16 a separate float32 `work` buffer.
#include <cuda_bf16.h>

#include <stdexcept>

#include "kernels/cuda/augment_cuda.h"
#include "kernels/cuda/common.cuh"

namespace selfsup::kernels {

namespace {

constexpr int kAugThreads = 256;
constexpr float kGrayR = 0.2989f, kGrayG = 0.587f, kGrayB = 0.114f;
constexpr uint8_t kOpGray = 4;  // after the four AugJitterOp values

__device__ __forceinline__ float clamp01(float v) { return v < 0.f ? 0.f : (v > 1.f ? 1.f : v); }

// torch's reflect padding index (no edge repeat), as in augment_ops.cpp.
__device__ __forceinline__ int32_t reflect_idx(int32_t i, int32_t n) {
  if (n == 1) return 0;
  const int32_t period = 2 * (n - 1);
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

// One axis of the bilinear resize (align_corners=False), as augment_ops.cpp's Axis::build for position r
// (already mirrored when flipping). No FMA contraction: the same float rounding as the host.
struct AxisPt {
  int32_t i0, i1;
  float l1;
};
__device__ __forceinline__ AxisPt axis_point(int32_t origin, int32_t n_in, int32_t n_out, int32_t r) {
  const float scale = __fdiv_rn(static_cast<float>(n_in), static_cast<float>(n_out));
  float s = __fadd_rn(__fmul_rn(scale, __fadd_rn(static_cast<float>(r), 0.5f)), -0.5f);
  if (s < 0) s = 0;
  int32_t a = static_cast<int32_t>(s);
  if (a > n_in - 1) a = n_in - 1;
  const int32_t b = a < n_in - 1 ? a + 1 : a;
  return AxisPt{origin + a, origin + b, __fsub_rn(s, static_cast<float>(a))};
}

__device__ __forceinline__ float gray_of(const float* v) { return kGrayR * v[0] + kGrayG * v[1] + kGrayB * v[2]; }

// torchvision's hue shift, written as aug_hue_cpu.
__device__ __forceinline__ void hue_shift(float* v, float f) {
  const float r = v[0], g = v[1], b = v[2];
  const float maxc = fmaxf(r, fmaxf(g, b));
  const float minc = fminf(r, fminf(g, b));
  const bool eqc = maxc == minc;
  const float cr = maxc - minc;
  const float s = cr / (eqc ? 1.0f : maxc);
  const float crd = eqc ? 1.0f : cr;
  const float rc = (maxc - r) / crd, gc = (maxc - g) / crd, bc = (maxc - b) / crd;
  const float h_r = bc - gc, h_g = 2.0f + rc - bc, h_b = 4.0f + gc - rc;
  float h = maxc == r ? h_r : (maxc == g ? h_g : h_b);
  h = h / 6.0f + 1.0f;
  h -= floorf(h);
  h += f;
  h -= floorf(h);
  const float vv = maxc;
  const float hi = floorf(h * 6.0f);
  const float fr = h * 6.0f - hi;
  const float sec = hi >= 6.0f ? hi - 6.0f : hi;
  const float p = clamp01(vv * (1.0f - s));
  const float q = clamp01(vv * (1.0f - s * fr));
  const float t = clamp01(vv * (1.0f - s * (1.0f - fr)));
  v[0] = ((sec == 0.0f) || (sec == 5.0f)) ? vv : (sec == 1.0f ? q : (sec == 4.0f ? t : p));
  v[1] = ((sec == 1.0f) || (sec == 2.0f)) ? vv : (sec == 0.0f ? t : (sec == 3.0f ? q : p));
  v[2] = ((sec == 3.0f) || (sec == 4.0f)) ? vv : (sec == 2.0f ? t : (sec == 5.0f ? q : p));
}

// One pointwise op on one pixel (all channels). Contrast takes its precomputed bias (1 - f) * mean.
__device__ __forceinline__ void apply_op(uint8_t op, int32_t C, float* v, const AugmentParams& p, float bias) {
  switch (op) {
    case kJitterBrightness:
      for (int c = 0; c < C; ++c) v[c] = clamp01(p.brightness * v[c]);
      break;
    case kJitterContrast:
      for (int c = 0; c < C; ++c) v[c] = clamp01(p.contrast * v[c] + bias);
      break;
    case kJitterSaturation:
      if (C == 3) {
        const float gray = gray_of(v), k = 1.0f - p.saturation;
        for (int c = 0; c < 3; ++c) v[c] = clamp01(p.saturation * v[c] + k * gray);
      }
      break;
    case kJitterHue:
      if (C == 3) hue_shift(v, p.hue);
      break;
    default:  // kOpGray
      if (C == 3) {
        const float gray = gray_of(v);
        v[0] = v[1] = v[2] = gray;
      }
      break;
  }
}

// The final store: float32 as is, bfloat16 rounded to nearest even (__float2bfloat16_rn).
__device__ __forceinline__ void store_out(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_out(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

// Solarize and normalize one pixel into the output planes o (C, HW) of type T.
template <typename T>
__device__ __forceinline__ void finish(const AugmentRecipe& r, const AugmentParams& p, int32_t C, const float* v,
                                       T* o, int64_t HW, int64_t i) {
  for (int c = 0; c < C; ++c) {
    float x = v[c];
    if (p.solarize) x = x >= r.solarize_threshold ? 1.0f - x : x;
    store_out(o + c * HW + i, (x - r.mean[c]) * (1.0f / r.std[c]));
  }
}

// out     T     (N, C, oh, ow): the views
// work    float (N, C, oh, ow): the working image between phases; == out when T is float (so no __restrict__
//                               on either), a separate buffer for bf16; may be null when no image of the
//                               batch has contrast or blur
// scratch float (N, C, oh, ow): the blur's row pass; may be null when no image is blurred
template <typename T>
__global__ void __launch_bounds__(kAugThreads)
    augment_views_kernel(AugmentRecipe r, int32_t H, int32_t W, int32_t C, const uint8_t* __restrict__ src,
                         const int64_t* __restrict__ src_index, const AugmentParams* __restrict__ params,
                         T* out, float* work, float* __restrict__ scratch) {
  __shared__ double red[32];
  __shared__ float wts[128];
  const int64_t n = blockIdx.x;
  const AugmentParams p = params[n];
  const int64_t s = src_index ? src_index[n] : n;
  const uint8_t* img = src + s * static_cast<int64_t>(H) * W * C;
  const int32_t oh = r.out_h, ow = r.out_w;
  const int64_t HW = static_cast<int64_t>(oh) * ow;
  T* o = out + n * C * HW;                          // this image's output planes (C, oh, ow)
  float* wk = work ? work + n * C * HW : nullptr;   // its float32 working planes (C, oh, ow)

  // The pointwise op list, as augment_one applies it (identity jitter factors are skipped there too).
  uint8_t ops[6];
  int nops = 0, ci = -1;
  if (p.gray && r.gray_before_jitter) ops[nops++] = kOpGray;
  if (p.jitter) {
    for (int k = 0; k < 4; ++k) {
      const uint8_t op = p.order[k];
      if ((op == kJitterBrightness && p.brightness != 1.0f) || (op == kJitterSaturation && p.saturation != 1.0f) ||
          (op == kJitterHue && p.hue != 0.0f)) {
        ops[nops++] = op;
      } else if (op == kJitterContrast && p.contrast != 1.0f) {
        ci = nops;
        ops[nops++] = op;
      }
    }
  }
  if (p.gray && !r.gray_before_jitter) ops[nops++] = kOpGray;
  const bool blur = p.sigma > 0 && r.blur_ksize > 1;
  const int end1 = ci >= 0 ? ci : nops;
  const bool final1 = ci < 0 && !blur;  // phase 1 writes the normalized result
  // The launcher checks the buffers against the recipe; parameters that ask for more than the recipe
  // allows (contrast or blur the caller did not provision for) must not write through a null pointer.
  if ((!final1 && wk == nullptr) || (blur && scratch == nullptr)) __trap();

  // Phase 1: crop + resize (+ flip), pointwise ops before contrast.
  double acc = 0;
  for (int64_t i = threadIdx.x; i < HW; i += blockDim.x) {
    const int32_t y = static_cast<int32_t>(i / ow), x = static_cast<int32_t>(i % ow);
    const AxisPt ax = axis_point(p.crop_x, p.crop_w, ow, p.flip ? ow - 1 - x : x);
    const AxisPt ay = axis_point(p.crop_y, p.crop_h, oh, y);
    const float ly1 = ay.l1, ly0 = 1.0f - ly1;
    const float wa = ly0 * (1.0f / 255.0f), wb = ly1 * (1.0f / 255.0f);
    const uint8_t* ra = img + static_cast<int64_t>(ay.i0) * W * C;
    const uint8_t* rb = img + static_cast<int64_t>(ay.i1) * W * C;
    float v[3] = {0, 0, 0};
    for (int c = 0; c < C; ++c) {
      const float a0 = ra[ax.i0 * C + c], a1 = ra[ax.i1 * C + c];
      const float b0 = rb[ax.i0 * C + c], b1 = rb[ax.i1 * C + c];
      const float ta = a0 + ax.l1 * (a1 - a0), tb = b0 + ax.l1 * (b1 - b0);
      v[c] = wa * ta + wb * tb;
    }
    for (int k = 0; k < end1; ++k) apply_op(ops[k], C, v, p, 0.0f);
    if (ci >= 0) acc += C == 3 ? static_cast<double>(gray_of(v)) : static_cast<double>(v[0]);
    if (final1) {
      finish(r, p, C, v, o, HW, i);
    } else {
      for (int c = 0; c < C; ++c) wk[c * HW + i] = v[c];
    }
  }

  // Phase 2: contrast (needs the image mean) and the ops after it. Each thread revisits its own pixels.
  if (ci >= 0) {
    const double sum = cuda::block_sum(acc, red);
    const float bias = (1.0f - p.contrast) * static_cast<float>(sum / static_cast<double>(HW));
    for (int64_t i = threadIdx.x; i < HW; i += blockDim.x) {
      float v[3] = {0, 0, 0};
      for (int c = 0; c < C; ++c) v[c] = wk[c * HW + i];
      for (int k = ci; k < nops; ++k) apply_op(ops[k], C, v, p, bias);
      if (!blur) {
        finish(r, p, C, v, o, HW, i);
      } else {
        for (int c = 0; c < C; ++c) wk[c * HW + i] = v[c];
      }
    }
  }
  if (!blur) return;

  // Phase 3: separable Gaussian blur, rows into scratch, columns back into the output; then phase 4.
  const int32_t ksize = r.blur_ksize, half = ksize / 2, k = ksize < 127 ? ksize : 127;
  if (threadIdx.x == 0) {
    float total = 0;
    for (int32_t t = 0; t < k; ++t) {
      const float xt = -0.5f * static_cast<float>(k - 1) + static_cast<float>(t);
      const float z = xt / p.sigma;
      wts[t] = expf(-0.5f * z * z);
      total += wts[t];
    }
    for (int32_t t = 0; t < k; ++t) wts[t] /= total;
  }
  __syncthreads();  // the weights, and every thread's writes of the working image
  float* sc = scratch + n * C * HW;
  for (int64_t e = threadIdx.x; e < C * HW; e += blockDim.x) {
    const int64_t c = e / HW, i = e % HW;
    const int32_t y = static_cast<int32_t>(i / ow), x = static_cast<int32_t>(i % ow);
    const float* row = wk + c * HW + static_cast<int64_t>(y) * ow;
    float a = wts[0] * row[reflect_idx(x - half, ow)];
    for (int32_t t = 1; t < k; ++t) a += wts[t] * row[reflect_idx(x - half + t, ow)];
    sc[e] = a;
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < HW; i += blockDim.x) {
    const int32_t y = static_cast<int32_t>(i / ow), x = static_cast<int32_t>(i % ow);
    float v[3] = {0, 0, 0};
    for (int c = 0; c < C; ++c) {
      const float* plane = sc + c * HW;
      float a = 0;
      for (int32_t t = 0; t < k; ++t) a += wts[t] * plane[static_cast<int64_t>(reflect_idx(y - half + t, oh)) * ow + x];
      v[c] = a;
    }
    finish(r, p, C, v, o, HW, i);
  }
}

}  // namespace

void augment_views_cuda(const AugmentRecipe& recipe, int64_t N, int32_t H, int32_t W, int32_t C,
                        const uint8_t* src, const int64_t* src_index, const AugmentParams* params, void* out,
                        AugOutType out_type, float* work, float* scratch, cudaStream_t stream) {
  if (N <= 0) return;
  if (C != 1 && C != 3) throw std::invalid_argument("augment_views_cuda: C must be 1 or 3");
  if (N > 0x7fffffffLL) throw std::invalid_argument("augment_views_cuda: more than 2^31 - 1 images in one batch");
  if (src == nullptr || params == nullptr || out == nullptr)
    throw std::invalid_argument("augment_views_cuda: null source, parameter or output pointer");
  if (recipe.blur_ksize > 1 && scratch == nullptr)
    throw std::invalid_argument("augment_views_cuda: a recipe with blur needs a scratch buffer of the output's size");
  const dim3 grid(static_cast<unsigned>(N)), block(kAugThreads);
  if (out_type == AugOutType::f32) {
    // float32: the working image lives in the output itself.
    float* o = static_cast<float*>(out);
    SELFSUP_LAUNCH(grid, block, 0, stream, augment_views_kernel<float>)(
        recipe, H, W, C, src, src_index, params, o, o, scratch);
  } else {
    if (recipe.blur_ksize > 1 && work == nullptr)
      throw std::invalid_argument("augment_views_cuda: a bf16 output with blur needs a float32 work buffer");
    SELFSUP_LAUNCH(grid, block, 0, stream, augment_views_kernel<__nv_bfloat16>)(
        recipe, H, W, C, src, src_index, params, static_cast<__nv_bfloat16*>(out), work, scratch);
  }
  SELFSUP_LAUNCH_CHECK();
}

}  // namespace selfsup::kernels
