// Pretext-task transforms on float (N, C, H, W) batches: RotNet's rotations, the Jigsaw/PIRL tile shuffle
// and Context Encoder masking. They run after the view pipeline, so they are plain gathers/fills.
#include "kernels/augment_api.h"

namespace selfsup::kernels {

void rotate90_cpu(int64_t N, int32_t C, int32_t H, int32_t W, const float* in, const uint8_t* k, float* out) {
  const int64_t plane = static_cast<int64_t>(H) * W;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    for (int32_t c = 0; c < C; ++c) {
      const float* x = in + (n * C + c) * plane;
      float* y = out + (n * C + c) * plane;
      const int kk = k[n] & 3;
      // torch.rot90 with dims (H, W): k = 1 is flip(W) then transpose, so y[i][j] = x[j][W-1-i].
      // For odd k the output is (W, H); callers pass H == W.
      for (int32_t i = 0; i < (kk & 1 ? W : H); ++i) {
        for (int32_t j = 0; j < (kk & 1 ? H : W); ++j) {
          float v;
          switch (kk) {
            case 0: v = x[static_cast<int64_t>(i) * W + j]; break;
            case 1: v = x[static_cast<int64_t>(j) * W + (W - 1 - i)]; break;
            case 2: v = x[static_cast<int64_t>(H - 1 - i) * W + (W - 1 - j)]; break;
            default: v = x[static_cast<int64_t>(H - 1 - j) * W + i]; break;
          }
          y[static_cast<int64_t>(i) * (kk & 1 ? H : W) + j] = v;
        }
      }
    }
  }
}

void jigsaw_tiles_cpu(int64_t N, int32_t C, int32_t H, int32_t W, const float* in, int32_t grid, int32_t tile,
                      const uint8_t* perms, const int32_t* perm_index, const int32_t* offsets, float* out) {
  const int32_t G = grid * grid;
  const int32_t ch = H / grid, cw = W / grid;
  const int64_t plane = static_cast<int64_t>(H) * W, tplane = static_cast<int64_t>(tile) * tile;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    for (int32_t pos = 0; pos < G; ++pos) {
      const int32_t cell = perms[static_cast<int64_t>(perm_index[n]) * G + pos];
      const int32_t oy = (cell / grid) * ch + offsets[(n * G + cell) * 2 + 0];
      const int32_t ox = (cell % grid) * cw + offsets[(n * G + cell) * 2 + 1];
      for (int32_t c = 0; c < C; ++c) {
        const float* x = in + (n * C + c) * plane;
        float* y = out + ((n * G + pos) * C + c) * tplane;
        for (int32_t i = 0; i < tile; ++i)
          for (int32_t j = 0; j < tile; ++j) y[i * tile + j] = x[static_cast<int64_t>(oy + i) * W + ox + j];
      }
    }
  }
}

void apply_mask_cpu(int64_t N, int32_t C, int32_t H, int32_t W, float* img, const uint8_t* mask,
                    const float* fill) {
  const int64_t plane = static_cast<int64_t>(H) * W;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    for (int32_t c = 0; c < C; ++c) {
      float* x = img + (n * C + c) * plane;
      const uint8_t* m = mask + n * plane;
      const float f = fill[c];
      for (int64_t i = 0; i < plane; ++i)
        if (m[i]) x[i] = f;
    }
  }
}

}  // namespace selfsup::kernels
