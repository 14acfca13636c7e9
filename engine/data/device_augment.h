// GPU views for a training loop: the uint8 dataset's images reach the fused CUDA augmentation kernel
// (kernels/cuda/augment.cu) in one of two ways, chosen once at construction (docs/augmentation.md):
//
//   resident  the whole dataset (N, H, W, C) is uploaded once (in 64 MiB chunks through pinned memory); each
//             step uploads only the batch's dataset indices (B int64) and parameters (views x B x 44 bytes),
//             and the kernel gathers its sources from the device store by index.
//   stream    each step's source images (B, H, W, C) are gathered on the host straight into one of TWO
//             pinned buffers and uploaded asynchronously on a side stream into one of two device staging
//             buffers; an event makes the compute stream wait for the upload, another keeps the next
//             upload into the same slot from starting before the kernels that read it are done. So the
//             upload of batch t+1 (stage) overlaps the training step of batch t.
//
// Residency rule (mode auto): resident when the dataset's bytes are at most 25% of the device's free memory
// at construction (after the model is on the device); the rest stays for activations, gradients, optimizer
// state and the caching allocator's slack.
//
// Protocol: stage(b) for a batch ahead of time (optional: views(b) stages b itself when nothing is staged),
// then views(b) in the same order; at most two batches staged and not yet consumed. Views are on the
// device's current stream, float32 or bfloat16 (N, C, h, w), parameters from (seed, b.step, dataset
// index, view): the same views as the CPU transform (make_augment_transform) to float rounding.
//
// Exists in every build; without the CUDA backend the constructor throws.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/data/dataset.h"
#include "engine/data/loader.h"

namespace selfsup {

enum class DeviceDataMode { automatic, resident, stream };

// "auto" | "resident" | "stream"; errors name the choices.
DeviceDataMode parse_device_data_mode(const std::string& s);
const char* device_data_mode_name(DeviceDataMode m);

constexpr double kResidentFraction = 0.25;  // of the free device memory
// The residency rule, a pure function (tested on the CPU).
bool dataset_fits_resident(std::size_t dataset_bytes, std::size_t free_bytes, double fraction = kResidentFraction);
// The mode `requested` resolves to for a dataset of `dataset_bytes` with `free_bytes` free.
DeviceDataMode resolve_device_data_mode(DeviceDataMode requested, std::size_t dataset_bytes, std::size_t free_bytes,
                                        double fraction = kResidentFraction);

struct DeviceAugmentOptions {
  AugmentRecipe recipe;
  uint64_t seed = 0;
  int views = 2;
  Device device = Device::cuda(0);
  DType out_dtype = DType::f32;     // f32 or bf16
  int64_t max_batch = 256;          // the largest batch views() will see (sizes the staging buffers)
  DeviceDataMode mode = DeviceDataMode::automatic;
  double resident_fraction = kResidentFraction;
};

class DeviceAugmenter {
 public:
  // images: the dataset's uint8 (N, H, W, C) on the CPU (kept by reference: Tensors share storage).
  DeviceAugmenter(const ImageDataset& data, const DeviceAugmentOptions& opt);
  ~DeviceAugmenter();
  DeviceAugmenter(const DeviceAugmenter&) = delete;
  DeviceAugmenter& operator=(const DeviceAugmenter&) = delete;

  // Starts moving what batch b (its indices; b.images is not used) needs to the device. Stream mode: waits
  // until the pinned buffer of b's slot is free (its previous upload finished), gathers b's images into
  // it, and enqueues the upload on the side stream. Resident mode: only records b.
  void stage(const Batch& b);
  // `views` tensors (B, C, out_h, out_w) of out_dtype on the device, enqueued on its current stream.
  // b must be the oldest staged batch (or, with nothing staged, is staged first).
  std::vector<Tensor> views(const Batch& b);

  DeviceDataMode mode() const;  // resident or stream (never automatic)
  std::size_t resident_bytes() const;  // device bytes held for source images (store or staging buffers)
  // One line for the log, e.g. "augmentation on cuda:0: dataset resident (47.0 MB of 140000 MB free, ...)".
  const std::string& description() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace selfsup
