// bench_augment_gpu: the fused CUDA augmentation kernel (kernels/cuda/augment.cu) on issue 5's workload:
// 4096 source images of 256x256x3 uint8 -> 224x224 views, the full SimCLR recipe (RandomResizedCrop 0.08-1,
// flip, colour jitter p=0.8, grayscale p=0.2, blur p=0.5 with a 23-tap kernel, normalize), 2 views per image,
// in bf16 and float32. For bench/gpu_check.sh, next to bench/peers/torch_augment_gpu.py (torchvision.transforms
// .v2 on the GPU, per sample), which prints the same keys.
//
// Measured (CUDA events on the current stream, 3 warm-up runs, median of 10; bench/gpu_harness.h):
//   *_ms_per_view_batch   one launch: 4096 views (the kernel alone; sources resident, parameters uploaded once)
//   *_images_per_s        source images per second with both views (4096 / the time of the two launches)
//   *_floor_ms            the memory-traffic floor of one view batch: (bytes of the crop rectangles, each read
//                         once + the output written once) / 4.3 TB/s (H200 HBM3e, nominal 4.8)
//   *_floor_pct           floor / measured, in %
//   *_e2e_{resident,stream}_ms_per_step   the trainer's path (DeviceAugmenter): host parameter sampling,
//                         uploads of indices/parameters (resident) or of the 4096 source images through
//                         pinned buffers (stream), both views; host wall clock to completion, median of 5
//   h2d_pinned_805MB      GB/s of one pinned host-to-device upload of the 4096 sources (the stream mode's limit)
// Prints one JSON line per measurement ({"bench", "value", "unit"}). Built with the CUDA backend only; without
// a device it prints SKIPPED and exits 0.
#include <cstdio>
#include <cstring>
#include <vector>

#include <cuda_runtime.h>

#include "engine/core/cuda_allocator.h"
#include "engine/core/cuda_context.h"
#include "engine/data/augment.h"
#include "engine/data/device_augment.h"
#include "kernels/cuda/augment_cuda.h"
#include "kernels/cuda/common.cuh"
#include "bench/gpu_harness.h"
#include "bench/harness.h"
#include "kernels/cuda/device.h"
#include "kernels/philox.h"

using namespace selfsup;
namespace kc = selfsup::kernels::cuda;
namespace kn = selfsup::kernels;

namespace {

constexpr int64_t kN = 4096, kSrc = 256, kC = 3, kOut = 224;
constexpr double kHbmBytesPerS = 4.3e12;

void report(const std::string& bench, double value, const char* unit) {
  std::printf("{\"bench\": \"%s\", \"value\": %.3f, \"unit\": \"%s\"}\n", bench.c_str(), value, unit);
  std::fflush(stdout);
}

}  // namespace

int main() {
  if (cuda_device_count() == 0) {
    std::printf("bench_augment_gpu: SKIPPED: no CUDA device (%s)\n", cuda_no_device_reason().c_str());
    return 0;
  }
  const Device dev = Device::cuda(0);
  cudaStream_t stream = kc::current_stream(0);

  // ---- sources: uint8 (4096, 256, 256, 3), a smooth gradient plus noise (805 MB), uploaded once
  Tensor host = Tensor::empty({kN, kSrc, kSrc, kC}, DType::u8);
  {
    uint8_t* p = host.data_ptr<uint8_t>();
    const int64_t per = kSrc * kSrc * kC;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < kN; ++n)
      for (int64_t i = 0; i < per; i += 4) {
        const kn::Philox4 r = kn::philox_block(3, 9, static_cast<uint64_t>(n * per + i));
        for (int64_t k = 0; k < 4 && i + k < per; ++k)
          p[n * per + i + k] = static_cast<uint8_t>(((i + k) / kC % kSrc + n) / 2 + (r.v[k] & 63));
      }
  }
  const Tensor src = host.to(dev);

  // ---- parameters of both views, sampled and uploaded once: AugmentParams (2, 4096)
  const AugmentRecipe recipe = make_recipe("simclr", kOut, kC);
  std::vector<int64_t> ids(kN);
  for (int64_t i = 0; i < kN; ++i) ids[i] = i;
  std::vector<AugmentParams> params;
  double crop_bytes = 0;  // sum over both views of crop_h * crop_w * C
  for (uint32_t v = 0; v < 2; ++v) {
    const auto p = sample_params(recipe, kSrc, kSrc, 1234, 0, ids.data(), kN, v);
    for (const AugmentParams& q : p) crop_bytes += static_cast<double>(q.crop_h) * q.crop_w * kC;
    params.insert(params.end(), p.begin(), p.end());
  }
  Tensor pdev = Tensor::empty({static_cast<int64_t>(params.size() * sizeof(AugmentParams))}, DType::u8, dev);
  copy_bytes(pdev.raw_data(), dev, params.data(), Device::cpu(), params.size() * sizeof(AugmentParams));
  const auto* pd = reinterpret_cast<const AugmentParams*>(pdev.raw_data());
  std::printf("# %ld sources %ldx%ldx%ld -> %ldx%ld, simclr, blur kernel %d, 2 views; mean crop %.0f%% of the area\n",
              long(kN), long(kSrc), long(kSrc), long(kC), long(kOut), long(kOut), recipe.blur_ksize,
              100.0 * crop_bytes / (2.0 * kN * kSrc * kSrc * kC));

  // ---- the kernel alone, bf16 and float32
  const kn::AugCudaBuffers need_bf16 = kn::augment_cuda_buffers(recipe, kn::AugOutType::bf16);
  const Shape oshape{kN, kC, kOut, kOut};
  Tensor scratch = Tensor::empty(oshape, DType::f32, dev);
  Tensor work = need_bf16.work ? Tensor::empty(oshape, DType::f32, dev) : Tensor();
  for (const DType dt : {DType::bf16, DType::f32}) {
    const bool bf = dt == DType::bf16;
    const std::string tag = std::string("augment_simclr_") + (bf ? "bf16" : "f32");
    Tensor out[2] = {Tensor::empty(oshape, dt, dev), Tensor::empty(oshape, dt, dev)};
    auto launch = [&](int v) {
      kn::augment_views_cuda(recipe, kN, kSrc, kSrc, kC, src.data_ptr<uint8_t>(), nullptr, pd + v * kN,
                             out[v].raw_data(), bf ? kn::AugOutType::bf16 : kn::AugOutType::f32,
                             bf ? work.data_ptr<float>() : nullptr, scratch.data_ptr<float>(), stream);
    };
    const double ms1 = bench::median_gpu_ms([&] { launch(0); });
    const double ms2 = bench::median_gpu_ms([&] {
      launch(0);
      launch(1);
    });
    const double out_bytes = static_cast<double>(kN) * kC * kOut * kOut * (bf ? 2 : 4);
    const double floor_ms = (crop_bytes / 2 + out_bytes) / kHbmBytesPerS * 1e3;
    report(tag + "_ms_per_view_batch", ms1, "ms");
    report(tag + "_images_per_s", kN / (ms2 / 1e3), "img/s");
    report(tag + "_floor_ms", floor_ms, "ms");
    report(tag + "_floor_pct", 100.0 * floor_ms / ms1, "%");
  }
  scratch = work = Tensor();

  // ---- the trainer's path: DeviceAugmenter, resident and streamed, both views of one 4096 batch
  ImageDataset ds;
  ds.images = host;
  ds.labels = Tensor::zeros({kN}, DType::i64);
  ds.num_classes = 1;
  for (const DType dt : {DType::bf16, DType::f32}) {
    for (const DeviceDataMode mode : {DeviceDataMode::resident, DeviceDataMode::stream}) {
      DeviceAugmentOptions o;
      o.recipe = recipe;
      o.seed = 1234;
      o.device = dev;
      o.out_dtype = dt;
      o.max_batch = kN;
      o.mode = mode;
      DeviceAugmenter aug(ds, o);
      std::printf("# %s\n", aug.description().c_str());
      int64_t step = 0;
      const double ms = bench::median_ms(
          [&] {
            Batch b;
            b.step = step++;
            b.indices = Tensor::from_vector(ids, {kN});
            const std::vector<Tensor> v = aug.views(b);
            kc::synchronize_stream(stream);
          },
          1, 5);
      report(std::string("augment_simclr_") + (dt == DType::bf16 ? "bf16" : "f32") + "_e2e_" +
                 device_data_mode_name(mode) + "_ms_per_step",
             ms, "ms");
    }
  }

  // ---- one pinned upload of the 4096 sources (805 MB): what the stream mode is bound by
  {
    const std::size_t bytes = static_cast<std::size_t>(host.numel());
    void* pinned = nullptr;
    SELFSUP_CUDA_CHECK(cudaHostAlloc(&pinned, bytes, cudaHostAllocDefault));
    std::memcpy(pinned, host.raw_data(), bytes);
    Tensor dst = Tensor::empty({static_cast<int64_t>(bytes)}, DType::u8, dev);
    const double ms = bench::median_gpu_ms([&] {
      SELFSUP_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), pinned, bytes, cudaMemcpyHostToDevice, stream));
    }, 1, 5);
    report("h2d_pinned_805MB", static_cast<double>(bytes) / ms / 1e6, "GB/s");
    SELFSUP_CUDA_CHECK(cudaFreeHost(pinned));
  }
  std::printf("# %s\n", cuda_memory_summary(0).c_str());
  return 0;
}
