// The single augmentation ops on one float planar image (C, H, W) in [0, 1], written to match
// torchvision.transforms.functional on float tensors (torchvision 0.14, functional_tensor.py) op for op:
// the same formulas, the same clamps, the same interpolation convention. The fused pipeline
// (augment.cpp) chains them on a per-thread scratch image; tests compare each against torchvision.
// The values are the same either way; not modelling floating-point exception flags lets GCC if-convert
// and vectorise the selects around divisions (hue) instead of keeping a scalar loop.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/augment_api.h"

namespace selfsup::kernels {

namespace {

// One axis of a bilinear resize, align_corners=False (PyTorch's area_pixel_compute_source_index): for each
// output position, the two source positions (absolute, already offset by the crop origin) and the weight
// of the second. Output position o reads the resized position flip ? n_out-1-o : o.
struct Axis {
  std::vector<int32_t> i0, i1;
  std::vector<float> l1;
  void build(int32_t origin, int32_t n_in, int32_t n_out, bool flip) {
    i0.resize(n_out);
    i1.resize(n_out);
    l1.resize(n_out);
    const float scale = static_cast<float>(n_in) / static_cast<float>(n_out);
    for (int32_t o = 0; o < n_out; ++o) {
      const int32_t r = flip ? n_out - 1 - o : o;
      float src = scale * (static_cast<float>(r) + 0.5f) - 0.5f;
      if (src < 0) src = 0;
      int32_t a = static_cast<int32_t>(src);
      if (a > n_in - 1) a = n_in - 1;
      const int32_t b = a < n_in - 1 ? a + 1 : a;
      i0[o] = origin + a;
      i1[o] = origin + b;
      l1[o] = src - static_cast<float>(a);
    }
  }
};

// Per-thread axis tables, reused across images.
thread_local Axis t_ax, t_ay;

template <typename Read>
void resized_crop_impl(int32_t C, int32_t y, int32_t x, int32_t h, int32_t w, bool flip, int32_t out_h,
                       int32_t out_w, float out_scale, Read read, float* dst) {
  t_ax.build(x, w, out_w, flip);
  t_ay.build(y, h, out_h, false);
  const int64_t plane = static_cast<int64_t>(out_h) * out_w;
  for (int32_t r = 0; r < out_h; ++r) {
    const int32_t ya = t_ay.i0[r], yb = t_ay.i1[r];
    const float ly1 = t_ay.l1[r], ly0 = 1.0f - ly1;
    for (int32_t c = 0; c < C; ++c) {
      float* drow = dst + c * plane + static_cast<int64_t>(r) * out_w;
      for (int32_t o = 0; o < out_w; ++o) {
        const int32_t xa = t_ax.i0[o], xb = t_ax.i1[o];
        const float lx1 = t_ax.l1[o], lx0 = 1.0f - lx1;
        const float top = lx0 * read(c, ya, xa) + lx1 * read(c, ya, xb);
        const float bot = lx0 * read(c, yb, xa) + lx1 * read(c, yb, xb);
        drow[o] = (ly0 * top + ly1 * bot) * out_scale;
      }
    }
  }
}

inline float clamp01(float v) { return v < 0.f ? 0.f : (v > 1.f ? 1.f : v); }

constexpr float kGrayR = 0.2989f, kGrayG = 0.587f, kGrayB = 0.114f;

// Mirror index into [0, n) the way torch's reflect padding does (no edge repeat), for any offset.
inline int32_t reflect(int32_t i, int32_t n) {
  if (n == 1) return 0;
  const int32_t period = 2 * (n - 1);
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

}  // namespace

void aug_resized_crop_f32_cpu(int32_t C, int32_t H, int32_t W, const float* src, int32_t y, int32_t x, int32_t h,
                              int32_t w, bool flip, int32_t out_h, int32_t out_w, float* dst) {
  const int64_t plane = static_cast<int64_t>(H) * W;
  resized_crop_impl(
      C, y, x, h, w, flip, out_h, out_w, 1.0f,
      [&](int32_t c, int32_t yy, int32_t xx) { return src[c * plane + static_cast<int64_t>(yy) * W + xx]; }, dst);
}

void aug_resized_crop_u8_cpu(int32_t C, int32_t H, int32_t W, const uint8_t* src, int32_t y, int32_t x,
                             int32_t h, int32_t w, bool flip, int32_t out_h, int32_t out_w, float* dst) {
  // Interpolate the raw 0..255 values and scale once: the same as interpolating x / 255 up to rounding.
  // Rows are interpolated horizontally once per distinct source row (adjacent output rows share them),
  // into float planes, then blended vertically.
  t_ax.build(x, w, out_w, flip);
  t_ay.build(y, h, out_h, false);
  thread_local std::vector<int32_t> off0, off1;
  thread_local std::vector<float> rows;  // two cached horizontally-resized rows: (2, C, out_w)
  off0.resize(out_w);
  off1.resize(out_w);
  for (int32_t o = 0; o < out_w; ++o) off0[o] = t_ax.i0[o] * C, off1[o] = t_ax.i1[o] * C;
  rows.resize(static_cast<size_t>(2) * C * out_w);
  int32_t cached[2] = {-1, -1};
  const float* l1 = t_ax.l1.data();
  // The row sy, computing it into the slot that does not hold `keep` (the other operand of this output row).
  auto hrow = [&](int32_t sy, int32_t keep) -> const float* {
    for (int k = 0; k < 2; ++k)
      if (cached[k] == sy) return rows.data() + static_cast<size_t>(k) * C * out_w;
    const int k = cached[0] == keep ? 1 : 0;
    cached[k] = sy;
    float* out = rows.data() + static_cast<size_t>(k) * C * out_w;
    const uint8_t* line = src + static_cast<int64_t>(sy) * W * C;
    for (int32_t c = 0; c < C; ++c) {
      const uint8_t* lc = line + c;
      float* oc = out + static_cast<size_t>(c) * out_w;
      for (int32_t o = 0; o < out_w; ++o) {
        const float a = lc[off0[o]], b = lc[off1[o]];
        oc[o] = a + l1[o] * (b - a);
      }
    }
    return out;
  };
  const int64_t plane = static_cast<int64_t>(out_h) * out_w;
  for (int32_t r = 0; r < out_h; ++r) {
    const float* ra = hrow(t_ay.i0[r], -1);
    const float* rb = hrow(t_ay.i1[r], t_ay.i0[r]);
    const float ly1 = t_ay.l1[r], ly0 = 1.0f - ly1;
    const float wa = ly0 * (1.0f / 255.0f), wb = ly1 * (1.0f / 255.0f);
    for (int32_t c = 0; c < C; ++c) {
      const float* a = ra + static_cast<size_t>(c) * out_w;
      const float* b = rb + static_cast<size_t>(c) * out_w;
      float* __restrict d = dst + c * plane + static_cast<int64_t>(r) * out_w;
      for (int32_t o = 0; o < out_w; ++o) d[o] = wa * a[o] + wb * b[o];
    }
  }
}

void aug_brightness_cpu(int32_t C, int64_t HW, float* img, float f) {
  const int64_t n = C * HW;
  for (int64_t i = 0; i < n; ++i) img[i] = clamp01(f * img[i]);
}

void aug_contrast_cpu(int32_t C, int64_t HW, float* img, float f) {
  // The mean of the grayscale image (of the image itself when C = 1), unclamped, over all pixels.
  double sum = 0;
  if (C == 3) {
    const float *r = img, *g = img + HW, *b = img + 2 * HW;
    float acc = 0;  // blocks of float partial sums, added in double
    for (int64_t i = 0; i < HW; ++i) {
      acc += kGrayR * r[i] + kGrayG * g[i] + kGrayB * b[i];
      if ((i & 1023) == 1023) {
        sum += acc;
        acc = 0;
      }
    }
    sum += acc;
  } else {
    for (int64_t i = 0; i < C * HW; ++i) sum += img[i];
  }
  const float bias = (1.0f - f) * static_cast<float>(sum / static_cast<double>(HW * (C == 3 ? 1 : C)));
  const int64_t n = C * HW;
  for (int64_t i = 0; i < n; ++i) img[i] = clamp01(f * img[i] + bias);
}

void aug_saturation_cpu(int32_t C, int64_t HW, float* img, float f) {
  if (C != 3) return;  // torchvision: a no-op on 1-channel images (as PIL)
  float *r = img, *g = img + HW, *b = img + 2 * HW;
  const float k = 1.0f - f;
  for (int64_t i = 0; i < HW; ++i) {
    const float gray = kGrayR * r[i] + kGrayG * g[i] + kGrayB * b[i];
    r[i] = clamp01(f * r[i] + k * gray);
    g[i] = clamp01(f * g[i] + k * gray);
    b[i] = clamp01(f * b[i] + k * gray);
  }
}

void aug_hue_cpu(int32_t C, int64_t HW, float* img, float f) {
  if (C != 3) return;
  float* __restrict R = img;
  float* __restrict G = img + HW;
  float* __restrict B = img + 2 * HW;
  // torchvision's _rgb2hsv / _hsv2rgb written without branches so the loop vectorises. Two rewrites are
  // exact: fmod(x, 1) = x - floor(x) for x >= 0, and (int(floor(6h)) % 6) as a float compare on [0, 6].
  for (int64_t i = 0; i < HW; ++i) {
    const float r = R[i], g = G[i], b = B[i];
    const float maxc = std::max(r, std::max(g, b));
    const float minc = std::min(r, std::min(g, b));
    const bool eqc = maxc == minc;
    const float cr = maxc - minc;
    const float s = cr / (eqc ? 1.0f : maxc);
    const float crd = eqc ? 1.0f : cr;
    const float rc = (maxc - r) / crd, gc = (maxc - g) / crd, bc = (maxc - b) / crd;
    const float h_r = bc - gc, h_g = 2.0f + rc - bc, h_b = 4.0f + gc - rc;
    float h = maxc == r ? h_r : (maxc == g ? h_g : h_b);
    h = h / 6.0f + 1.0f;
    h -= std::floor(h);
    h += f;
    h -= std::floor(h);
    const float v = maxc;
    const float hi = std::floor(h * 6.0f);
    const float fr = h * 6.0f - hi;
    const float sec = hi >= 6.0f ? hi - 6.0f : hi;
    const float p = clamp01(v * (1.0f - s));
    const float q = clamp01(v * (1.0f - s * fr));
    const float t = clamp01(v * (1.0f - s * (1.0f - fr)));
    // sector:   0  1  2  3  4  5
    //   R       v  q  p  p  t  v
    //   G       t  v  v  q  p  p
    //   B       p  p  t  v  v  q
    R[i] = ((sec == 0.0f) | (sec == 5.0f)) ? v : (sec == 1.0f ? q : (sec == 4.0f ? t : p));
    G[i] = ((sec == 1.0f) | (sec == 2.0f)) ? v : (sec == 0.0f ? t : (sec == 3.0f ? q : p));
    B[i] = ((sec == 3.0f) | (sec == 4.0f)) ? v : (sec == 2.0f ? t : (sec == 5.0f ? q : p));
  }
}

void aug_grayscale_cpu(int32_t C, int64_t HW, float* img) {
  if (C != 3) return;
  float *r = img, *g = img + HW, *b = img + 2 * HW;
  for (int64_t i = 0; i < HW; ++i) {
    const float gray = kGrayR * r[i] + kGrayG * g[i] + kGrayB * b[i];
    r[i] = gray;
    g[i] = gray;
    b[i] = gray;
  }
}

void aug_gaussian_blur_cpu(int32_t C, int32_t H, int32_t W, float* img, int32_t ksize, float sigma,
                           float* scratch) {
  if (ksize <= 1 || sigma <= 0) return;
  const int32_t half = ksize / 2;
  // torchvision's _get_gaussian_kernel1d: x = linspace(-(k-1)/2, (k-1)/2, k), computed in float32.
  float wts[128];
  const int32_t k = std::min(ksize, 127);
  float total = 0;
  for (int32_t i = 0; i < k; ++i) {
    const float xi = -0.5f * static_cast<float>(k - 1) + static_cast<float>(i);
    const float z = xi / sigma;
    wts[i] = std::exp(-0.5f * z * z);
    total += wts[i];
  }
  for (int32_t i = 0; i < k; ++i) wts[i] /= total;

  // Rows: a reflect-padded copy of each row (only the edges need reflecting), then the taps accumulated
  // along x so the inner loop is a unit-stride axpy.
  thread_local std::vector<float> line;
  line.resize(static_cast<size_t>(W + 2 * half));
  for (int32_t c = 0; c < C; ++c) {
    for (int32_t y = 0; y < H; ++y) {
      const float* row = img + (static_cast<int64_t>(c) * H + y) * W;
      float* l = line.data();
      for (int32_t i = 0; i < half; ++i) {
        l[i] = row[reflect(i - half, W)];
        l[half + W + i] = row[reflect(W + i, W)];
      }
      std::memcpy(l + half, row, sizeof(float) * static_cast<size_t>(W));
      float* __restrict out = scratch + (static_cast<int64_t>(c) * H + y) * W;
      for (int32_t xo = 0; xo < W; ++xo) out[xo] = wts[0] * l[xo];
      for (int32_t t = 1; t < k; ++t) {
        const float wt = wts[t];
        const float* lt = l + t;
        for (int32_t xo = 0; xo < W; ++xo) out[xo] += wt * lt[xo];
      }
    }
  }
  // Columns: for each output row, a weighted sum of reflected source rows (vectorises along x).
  for (int32_t c = 0; c < C; ++c) {
    const float* plane = scratch + static_cast<int64_t>(c) * H * W;
    for (int32_t y = 0; y < H; ++y) {
      float* __restrict out = img + (static_cast<int64_t>(c) * H + y) * W;
      for (int32_t xo = 0; xo < W; ++xo) out[xo] = 0;
      for (int32_t t = 0; t < k; ++t) {
        const float* src = plane + static_cast<int64_t>(reflect(y - half + t, H)) * W;
        const float wt = wts[t];
        for (int32_t xo = 0; xo < W; ++xo) out[xo] += wt * src[xo];
      }
    }
  }
}

void aug_solarize_cpu(int32_t C, int64_t HW, float* img, float threshold) {
  const int64_t n = C * HW;
  for (int64_t i = 0; i < n; ++i) img[i] = img[i] >= threshold ? 1.0f - img[i] : img[i];
}

void aug_normalize_cpu(int32_t C, int64_t HW, const float* img, const float* mean, const float* std, float* out) {
  for (int32_t c = 0; c < C; ++c) {
    const float m = mean[c], inv = 1.0f / std[c];
    const float* in = img + c * HW;
    float* o = out + c * HW;
    for (int64_t i = 0; i < HW; ++i) o[i] = (in[i] - m) * inv;
  }
}

}  // namespace selfsup::kernels
