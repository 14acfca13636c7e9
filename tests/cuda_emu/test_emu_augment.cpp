// The fused augmentation kernel (kernels/cuda/augment.cu) on the CPU emulator against augment_views_cpu on
// the very same AugmentParams, as tests/cuda/test_cuda_augment.cpp does on a GPU: float32 output within 2e-3
// after normalization, bf16 output within 2e-3 + 2^-8 |ref|. The recipes cover every phase combination of
// the kernel (crop only; contrast; blur; contrast then blur; gray before jitter; solarize) and both channel
// counts; 24x24 views make threads loop over more pixels than the block has threads.
#include "tests/cuda_emu/emu_test_util.h"

#include <algorithm>
#include <string>

#include "kernels/augment_api.h"
#include "kernels/cuda/augment_cuda.h"
#include "kernels/philox.h"

using namespace selfsup::kernels;
using emu_test::DeviceArray;

namespace {

std::vector<uint8_t> images(int64_t N, int H, int W, int C, uint32_t seed) {
  std::vector<uint8_t> v(static_cast<size_t>(N * H * W * C));
  for (size_t i = 0; i < v.size(); ++i) {
    const int64_t x = static_cast<int64_t>(i / C) % W, y = static_cast<int64_t>(i / C / W) % H;
    const uint32_t u = philox_block(seed, 7, i).v[0];
    v[i] = static_cast<uint8_t>(std::clamp<int64_t>((255 * (x + y)) / (H + W) + u % 96 - 48, 0, 255));
  }
  return v;
}

AugmentRecipe recipe(const std::string& kind, int out) {
  AugmentRecipe r;
  r.out_h = r.out_w = out;
  for (int c = 0; c < 3; ++c) {
    r.mean[c] = 0.4f + 0.05f * c;
    r.std[c] = 0.2f + 0.03f * c;
  }
  if (kind == "crop") return r;
  r.jitter_p = 0.9f;
  r.brightness = r.contrast = r.saturation = 0.4f;
  r.hue = 0.1f;
  r.gray_p = 0.3f;
  if (kind == "mocov1") {
    r.gray_before_jitter = 1;
  } else if (kind == "blur") {  // blur, solarize, no contrast
    r.contrast = 0;
    r.blur_p = 0.7f;
    r.blur_ksize = 5;
    r.solarize_p = 0.5f;
  } else if (kind == "simclr") {  // contrast then blur (both phases 2 and 3)
    r.blur_p = 0.6f;
    r.blur_ksize = 3;
  }
  return r;
}

void check_recipe(const std::string& kind, int H, int W, int C, int out, bool with_index) {
  CAPTURE(kind);
  CAPTURE(C);
  const int64_t N = 6;
  std::vector<int64_t> index;
  if (with_index) index = {3, 0, 3, 1, 2, 0};  // views of a 4-image store, scrambled, with repeats
  const AugmentRecipe r = recipe(kind, out);
  const std::vector<uint8_t> src = images(with_index ? 4 : N, H, W, C, 11u + C);
  std::vector<AugmentParams> params(N);
  int contrast = 0, blur = 0;
  for (int64_t n = 0; n < N; ++n) {
    params[n] = sample_augment_params(r, H, W, 42, 7, 100 + n, 0);
    contrast += params[n].jitter && params[n].contrast != 1.0f;
    blur += params[n].sigma > 0;
  }
  // The recipe's phases really occur in this batch (phase 2 needs contrast, phase 3 blur).
  CHECK((contrast > 0) == (r.jitter_p > 0 && r.contrast > 0));
  CHECK((blur > 0) == (r.blur_ksize > 0));
  std::vector<float> ref(static_cast<size_t>(N * C * out * out));
  augment_views_cpu(r, N, H, W, C, src.data(), with_index ? index.data() : nullptr, params.data(), ref.data(), 1);

  const DeviceArray<uint8_t> d_src(src);
  const DeviceArray<AugmentParams> d_params(params);
  const DeviceArray<int64_t> d_index(with_index ? index : std::vector<int64_t>{0});
  const size_t elems = ref.size();
  for (const AugOutType t : {AugOutType::f32, AugOutType::bf16}) {
    const AugCudaBuffers need = augment_cuda_buffers(r, t);
    DeviceArray<float> work(need.work ? elems : 1), scratch(need.scratch ? elems : 1);
    if (t == AugOutType::f32) {
      DeviceArray<float> out(elems);
      augment_views_cuda(r, N, H, W, C, d_src.data(), with_index ? d_index.data() : nullptr, d_params.data(),
                         out.data(), t, need.work ? work.data() : nullptr, need.scratch ? scratch.data() : nullptr,
                         nullptr);
      const double e = emu_test::err_ratio(out.host(), ref, 2e-3, 0.0);
      MESSAGE(kind, " C=", C, " f32: max abs err / 2e-3 = ", e);
      CHECK(e <= 1.0);
    } else {
      DeviceArray<__nv_bfloat16> out(elems);
      augment_views_cuda(r, N, H, W, C, d_src.data(), with_index ? d_index.data() : nullptr, d_params.data(),
                         out.data(), t, need.work ? work.data() : nullptr, need.scratch ? scratch.data() : nullptr,
                         nullptr);
      const double e = emu_test::err_ratio(emu_test::as_double(out.host()), ref, 2e-3, std::ldexp(1.0, -8));
      MESSAGE(kind, " C=", C, " bf16: worst |err| / (2e-3 + 2^-8 |ref|) = ", e);
      CHECK(e <= 1.0);
    }
  }
}

}  // namespace

TEST_CASE("emulated augment kernel: every phase combination, float32 and bf16 output, C = 3 and 1") {
  for (const char* kind : {"crop", "mocov1", "blur", "simclr"}) {
    check_recipe(kind, 20, 26, 3, 24, false);
    check_recipe(kind, 18, 18, 1, 16, false);
  }
  emu_test::launches_checked();
}

TEST_CASE("emulated augment kernel: a source index with repeats") {
  check_recipe("simclr", 20, 26, 3, 16, true);
  emu_test::launches_checked();
}
