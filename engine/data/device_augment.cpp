// GPU views for a training loop: a device-resident dataset, or per-step uploads through two pinned buffers
// on a side stream (design and protocol in device_augment.h; docs/augmentation.md).
#include "engine/data/device_augment.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <deque>

#include "engine/core/check.h"
#include "engine/core/cuda_context.h"

#ifdef SELFSUP_HAVE_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/device.h"
#endif

namespace selfsup {

DeviceDataMode parse_device_data_mode(const std::string& s) {
  if (s == "auto" || s.empty()) return DeviceDataMode::automatic;
  if (s == "resident") return DeviceDataMode::resident;
  if (s == "stream") return DeviceDataMode::stream;
  throw_error("unknown device data mode '" + s + "': expected auto, resident or stream");
}

const char* device_data_mode_name(DeviceDataMode m) {
  switch (m) {
    case DeviceDataMode::resident: return "resident";
    case DeviceDataMode::stream: return "stream";
    default: return "auto";
  }
}

bool dataset_fits_resident(std::size_t dataset_bytes, std::size_t free_bytes, double fraction) {
  return static_cast<double>(dataset_bytes) <= fraction * static_cast<double>(free_bytes);
}

DeviceDataMode resolve_device_data_mode(DeviceDataMode requested, std::size_t dataset_bytes, std::size_t free_bytes,
                                        double fraction) {
  if (requested != DeviceDataMode::automatic) return requested;
  return dataset_fits_resident(dataset_bytes, free_bytes, fraction) ? DeviceDataMode::resident
                                                                     : DeviceDataMode::stream;
}

#ifdef SELFSUP_HAVE_CUDA

namespace kc = kernels::cuda;

namespace {

std::string mb(double bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f MB", bytes / 1e6);
  return buf;
}

constexpr std::size_t kUploadChunk = 64u << 20;  // resident upload: bytes per copy_bytes call

// Page-locked host memory owned by one object (cudaHostAlloc / cudaFreeHost).
struct PinnedHost {
  void* ptr = nullptr;
  std::size_t size = 0;
  void allocate(std::size_t n) {
    SELFSUP_CUDA_CHECK(cudaHostAlloc(&ptr, n, cudaHostAllocDefault));
    size = n;
  }
  ~PinnedHost() {
    if (ptr) SELFSUP_CUDA_WARN(cudaFreeHost(ptr));
  }
};

}  // namespace

struct DeviceAugmenter::Impl {
  ImageDataset data;  // images contiguous uint8 (N, H, W, C) on the CPU
  DeviceAugmentOptions opt;
  DeviceDataMode mode = DeviceDataMode::resident;
  int dev = 0;
  int64_t N = 0, H = 0, W = 0, C = 0, img_bytes = 0;
  std::size_t held = 0;
  std::string desc;

  Tensor store;  // resident: uint8 (N, H, W, C) on the device

  // stream: slot s = (staging count) % 2 owns pinned[s] (max_batch, H, W, C) and staging[s] (same, device).
  //   copy_done[s]: recorded on `copy` after the upload pinned[s] -> staging[s]; the compute stream waits on
  //                 it before the kernels read staging[s], and the host waits on it before it rewrites pinned[s].
  //   consumed[s]:  recorded on the compute stream after the kernels that read staging[s]; the next upload
  //                 into staging[s] waits on it (on the copy stream: no host block).
  std::unique_ptr<kc::Stream> copy;
  PinnedHost pinned[2];
  Tensor staging[2];
  std::unique_ptr<kc::Event> copy_done[2], consumed[2];

  struct Staged {
    int64_t step, count;
    int slot;
  };
  std::deque<Staged> queue;  // staged, not yet consumed (at most 2)
  int64_t stage_count = 0;

  ~Impl() {
    // Nothing may be in flight into memory this object frees: the pinned buffers (read by the copy
    // stream) and the staging tensors (written by it; the caching allocator then hands them to the
    // compute stream, which is ordered after the kernels that read them).
    if (copy) SELFSUP_CUDA_WARN(cudaStreamSynchronize(copy->get()));
  }

  cudaStream_t compute() const { return kc::current_stream(dev); }

  void stage(const Batch& b) {
    SELFSUP_CHECK(b.indices.defined() && b.indices.dtype() == DType::i64 && b.indices.device().is_cpu(),
                  "device augment: the batch needs int64 CPU indices");
    const int64_t B = b.indices.numel();
    SELFSUP_CHECK(B >= 1 && B <= opt.max_batch, "device augment: batch of ", B, " images, expected 1..",
                  opt.max_batch, " (max_batch)");
    SELFSUP_CHECK(queue.size() < 2, "device augment: two batches are already staged and not consumed (steps ",
                  queue.front().step, ", ", queue.back().step, ")");
    const Tensor idx = b.indices.contiguous();
    const int64_t* ip = idx.data_ptr<int64_t>();
    for (int64_t k = 0; k < B; ++k)
      SELFSUP_CHECK(ip[k] >= 0 && ip[k] < N, "device augment: dataset index ", ip[k], " outside [0, ", N, ")");
    const int slot = static_cast<int>(stage_count++ & 1);
    if (mode == DeviceDataMode::stream) {
      kc::DeviceGuard g(dev);
      // (1) The previous upload out of pinned[slot] (two stages ago) must have finished before the host
      //     overwrites the buffer. Never-recorded events count as complete.
      copy_done[slot]->synchronize();
      // (2) Gather the batch's images into pinned[slot] (B, H, W, C).
      const uint8_t* src = data.images.data_ptr<uint8_t>();
      uint8_t* dst = static_cast<uint8_t*>(pinned[slot].ptr);
      const int64_t ib = img_bytes;
#pragma omp parallel for schedule(static) if (B * ib > (1 << 20))
      for (int64_t k = 0; k < B; ++k) std::memcpy(dst + k * ib, src + ip[k] * ib, static_cast<size_t>(ib));
      // (3) The copy stream waits until the kernels that read staging[slot] last are done (consumed[slot]
      //     was recorded in views() of the batch two stages ago, which the queue bound guarantees has run),
      //     then uploads and marks the upload.
      consumed[slot]->wait(copy->get());
      SELFSUP_CUDA_CHECK(cudaMemcpyAsync(staging[slot].raw_data(), pinned[slot].ptr, static_cast<size_t>(B * ib),
                                         cudaMemcpyHostToDevice, copy->get()));
      copy_done[slot]->record(copy->get());
    }
    queue.push_back(Staged{b.step, B, slot});
  }

  std::vector<Tensor> views(const Batch& b) {
    if (queue.empty()) stage(b);
    const Staged st = queue.front();
    SELFSUP_CHECK(st.step == b.step && st.count == b.indices.numel(), "device augment: views() of the batch at step ",
                  b.step, " but the oldest staged batch is step ", st.step, " (", st.count, " images)");
    kc::DeviceGuard g(dev);
    Tensor images, index;
    if (mode == DeviceDataMode::stream) {
      copy_done[st.slot]->wait(compute());  // the kernels below start after staging[slot] is uploaded
      images = staging[st.slot].narrow(0, 0, st.count);  // (B, H, W, C), contiguous
    } else {
      images = store;      // (N, H, W, C)
      index = b.indices;   // (B) int64, validated and uploaded by apply_augment
    }
    const Tensor ids = b.indices.contiguous();
    std::vector<Tensor> out;
    out.reserve(static_cast<size_t>(opt.views));
    for (int v = 0; v < opt.views; ++v) {
      const auto params = sample_params(opt.recipe, static_cast<int>(H), static_cast<int>(W), opt.seed,
                                        static_cast<uint64_t>(b.step), ids.data_ptr<int64_t>(), st.count,
                                        static_cast<uint32_t>(v));
      out.push_back(apply_augment(images, opt.recipe, params, index, 0, opt.out_dtype));
    }
    if (mode == DeviceDataMode::stream) consumed[st.slot]->record(compute());  // after every kernel above
    queue.pop_front();
    return out;
  }
};

DeviceAugmenter::DeviceAugmenter(const ImageDataset& data, const DeviceAugmentOptions& opt)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  SELFSUP_CHECK(opt.device.is_cuda(), "device augment: needs a CUDA device, got ", opt.device.str());
  check_device(opt.device);
  SELFSUP_CHECK(data.images.defined() && data.images.dtype() == DType::u8 && data.images.dim() == 4 &&
                    data.images.device().is_cpu(),
                "device augment: the dataset must be uint8 (N, H, W, C) on the CPU");
  SELFSUP_CHECK(data.images.size(3) == 1 || data.images.size(3) == 3, "device augment: 1 or 3 channels, got ",
                data.images.size(3));
  SELFSUP_CHECK(opt.views >= 1 && opt.max_batch >= 1, "device augment: views and max_batch must be >= 1");
  SELFSUP_CHECK(opt.out_dtype == DType::f32 || opt.out_dtype == DType::bf16,
                "device augment: views are float32 or bfloat16, got ", dtype_name(opt.out_dtype));
  m.opt = opt;
  m.dev = opt.device.index;
  m.data = data;
  m.data.images = data.images.contiguous();
  m.N = m.data.images.size(0), m.H = m.data.images.size(1), m.W = m.data.images.size(2), m.C = m.data.images.size(3);
  m.img_bytes = m.H * m.W * m.C;
  const std::size_t total = static_cast<std::size_t>(m.N * m.img_bytes);

  kc::DeviceGuard g(m.dev);
  std::size_t free_b = 0, total_b = 0;
  kc::memory_info(m.dev, &free_b, &total_b);
  m.mode = resolve_device_data_mode(opt.mode, total, free_b, opt.resident_fraction);
  const std::string rule = str_cat(static_cast<int>(opt.resident_fraction * 100 + 0.5), "% of the ",
                                   mb(static_cast<double>(free_b)), " free");
  const char* how = opt.mode == DeviceDataMode::automatic ? "auto" : "forced";
  if (m.mode == DeviceDataMode::resident) {
    // One upload, in chunks (copy_bytes stages each through the pinned pool, asynchronously on the
    // compute stream, which is also where the kernels read the store: ordered without events).
    m.store = Tensor::empty({m.N, m.H, m.W, m.C}, DType::u8, opt.device);
    const uint8_t* src = m.data.images.data_ptr<uint8_t>();
    uint8_t* dst = static_cast<uint8_t*>(m.store.raw_data());
    for (std::size_t off = 0; off < total; off += kUploadChunk)
      copy_bytes(dst + off, opt.device, src + off, Device::cpu(), std::min(kUploadChunk, total - off));
    kc::synchronize_stream(m.compute());  // surface an upload error here, not at the first step
    m.held = total;
    m.desc = str_cat("augmentation on ", opt.device.str(), ": dataset RESIDENT on the device, ", mb(double(total)),
                     " (", how, "; rule: resident when <= ", rule, "); per step only indices and parameters are ",
                     "uploaded; ", opt.views, " views ", dtype_name(opt.out_dtype));
  } else {
    const std::size_t slot_bytes = static_cast<std::size_t>(opt.max_batch * m.img_bytes);
    m.copy = std::make_unique<kc::Stream>(m.dev);
    for (int s = 0; s < 2; ++s) {
      m.pinned[s].allocate(slot_bytes);
      m.staging[s] = Tensor::empty({opt.max_batch, m.H, m.W, m.C}, DType::u8, opt.device);
      m.copy_done[s] = std::make_unique<kc::Event>(false);
      m.consumed[s] = std::make_unique<kc::Event>(false);
      // The staging blocks come from the caching allocator on the compute stream: a block may have been
      // freed there by a tensor whose kernels are still queued, so the first upload (on the copy stream)
      // must wait for the compute stream as it is now.
      m.consumed[s]->record(m.compute());
    }
    m.held = 2 * slot_bytes;
    m.desc = str_cat("augmentation on ", opt.device.str(), ": dataset STREAMED, ", mb(double(total)), " stays on ",
                     "the host (", how, "; rule: resident when <= ", rule, "); per step ", opt.max_batch,
                     " images go through 2 pinned buffers, async upload on a side stream, 0.0 MB dataset ",
                     "resident, ", mb(double(m.held)), " of staging; ", opt.views, " views ",
                     dtype_name(opt.out_dtype));
  }
}

DeviceAugmenter::~DeviceAugmenter() = default;
void DeviceAugmenter::stage(const Batch& b) { impl_->stage(b); }
std::vector<Tensor> DeviceAugmenter::views(const Batch& b) { return impl_->views(b); }
DeviceDataMode DeviceAugmenter::mode() const { return impl_->mode; }
std::size_t DeviceAugmenter::resident_bytes() const { return impl_->held; }
const std::string& DeviceAugmenter::description() const { return impl_->desc; }

#else  // no CUDA backend

struct DeviceAugmenter::Impl {
  std::string desc;
};

DeviceAugmenter::DeviceAugmenter(const ImageDataset&, const DeviceAugmentOptions& opt) {
  throw_error("device augment on " + opt.device.str() +
              ": this build has no CUDA backend (configure with -DSELFSUP_CUDA=ON)");
}
DeviceAugmenter::~DeviceAugmenter() = default;
void DeviceAugmenter::stage(const Batch&) {}
std::vector<Tensor> DeviceAugmenter::views(const Batch&) { return {}; }
DeviceDataMode DeviceAugmenter::mode() const { return DeviceDataMode::stream; }
std::size_t DeviceAugmenter::resident_bytes() const { return 0; }
const std::string& DeviceAugmenter::description() const { return impl_->desc; }

#endif

}  // namespace selfsup
