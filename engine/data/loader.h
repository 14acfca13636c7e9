// DataLoader: batches of a uint8 ImageDataset, built by worker threads ahead of the consumer.
//
// Order: epoch e visits the dataset in epoch_order(n, seed, e), a Fisher-Yates shuffle driven by Philox, so
// the order is a pure function of (seed, epoch). Batch b of epoch e holds positions [b*B, (b+1)*B) of that
// order (the last one shorter unless drop_last). The global step is e * batches_per_epoch + b.
// Position: (epoch, batch) of the next batch next() returns; a checkpoint stores it and set_position()
// restores it exactly (nothing else is stateful: worker scheduling never changes what a batch holds).
//
// Augmentation: an optional BatchTransform runs inside the worker that built the batch (so it overlaps with
// the consumer), with the batch's dataset indices and step; make_augment_transform() fills batch.views with
// the recipe's views, whose parameters are (seed, step, dataset index, view) — the same on any worker count.
// Each worker runs its transform with `worker_omp_threads` OpenMP threads (1 by default: the parallelism is
// across batches); with num_workers = 0 the batch is built in next() and the transform uses every thread.
// A dataset with an ImageSource (an image folder) is decoded in the worker that builds the batch: only the
// batches in flight are ever decoded, whatever the dataset's size.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/data/augment.h"
#include "engine/data/dataset.h"

namespace selfsup {

struct LoaderOptions {
  int64_t batch_size = 256;
  bool shuffle = true;
  bool drop_last = true;
  uint64_t seed = 0;
  int num_workers = 2;          // 0: synchronous
  int prefetch = 2;             // batches in flight or ready per worker
  int worker_omp_threads = 1;   // OpenMP threads of the transform inside a worker
  // false: batches carry labels and indices only (images undefined), for a consumer that fetches the images
  // itself by index, e.g. the GPU augmentation (engine/data/device_augment.h) from a device-resident store.
  bool gather_images = true;
  // Data parallelism: this process builds only its shard of every batch, positions
  // [shard B / shards, (shard + 1) B / shards) of the global batch of B = batch_size (which shards must
  // divide; batches_per_epoch is that of the global batch). Sample ids stay global, so the views are the
  // ones a single process would make for the same positions.
  int64_t shard = 0;
  int64_t shards = 1;
};

struct LoaderPosition {
  int64_t epoch = 0;
  int64_t batch = 0;
  bool operator==(const LoaderPosition&) const = default;
};

struct Batch {
  Tensor images;   // uint8 (B, H, W, C); undefined when LoaderOptions::gather_images is false, or when the
                   // dataset decodes on demand (ImageSource): then `sources` holds the images
  std::vector<Tensor> sources;  // uint8 (h_k, w_k, C) per sample, decoded by the worker (ImageSource data sets)
  Tensor labels;   // int64 (B)
  Tensor indices;  // int64 (B): dataset indices (the augmentation's sample ids)
  int64_t epoch = 0, batch = 0, step = 0;
  std::vector<Tensor> views;  // filled by the transform, e.g. float (B, C, h, w) per view
};

using BatchTransform = std::function<void(Batch&)>;

// views x (B, C, out_h, out_w) float views of each batch with the recipe; threads as in augment_views.
// A batch of decoded sources (images of different sizes) goes through augment_views_each, each image's
// crop sampled from its own size.
BatchTransform make_augment_transform(const AugmentRecipe& recipe, uint64_t seed, int views);

class DataLoader {
 public:
  DataLoader(ImageDataset dataset, LoaderOptions options, BatchTransform transform = nullptr);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // The next batch (blocking); continues into the next epoch after the last batch of one.
  Batch next();
  LoaderPosition position() const;
  // Discards prefetched batches; the next batch is (epoch, batch).
  void set_position(LoaderPosition pos);
  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  const ImageDataset& dataset() const { return dataset_; }

  // The visiting order of epoch `epoch`: identity when !shuffle, else a Philox-driven Fisher-Yates shuffle.
  static std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch, bool shuffle);

 private:
  struct Slot {
    Batch batch;
    std::exception_ptr error;
  };
  Batch build(int64_t global);  // the batch with global step number `global`
  std::shared_ptr<const std::vector<int64_t>> order_for(int64_t epoch);
  void worker_loop();
  void start_workers();
  void stop_workers();

  ImageDataset dataset_;
  LoaderOptions opt_;
  BatchTransform transform_;
  int64_t batches_per_epoch_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  int64_t next_consume_ = 0;  // global batch number next() returns next
  int64_t next_produce_ = 0;  // next global batch number a worker takes
  std::map<int64_t, Slot> ready_;
  std::map<int64_t, std::shared_ptr<const std::vector<int64_t>>> orders_;
  std::vector<std::thread> workers_;
};

}  // namespace selfsup
