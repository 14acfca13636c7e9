#include "engine/data/loader.h"

#include <omp.h>

#include <cstring>

#include "kernels/philox.h"

namespace selfsup {

namespace {
constexpr uint64_t kShuffleStream = 0xA5ull << 56;  // Philox stream tag of the epoch shuffles
}

std::vector<int64_t> DataLoader::epoch_order(int64_t n, uint64_t seed, int64_t epoch, bool shuffle) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  if (!shuffle) return order;
  const uint64_t stream = kShuffleStream | (static_cast<uint64_t>(epoch) & ((1ull << 56) - 1));
  for (int64_t k = n - 1; k >= 1; --k) {
    // j uniform in [0, k] from 64 random bits (multiply-shift).
    const kernels::Philox4 b = kernels::philox_block(seed, stream, static_cast<uint64_t>(k));
    const uint64_t r = (static_cast<uint64_t>(b.v[0]) << 32) | b.v[1];
    const int64_t j = static_cast<int64_t>((static_cast<unsigned __int128>(r) * static_cast<uint64_t>(k + 1)) >> 64);
    std::swap(order[k], order[j]);
  }
  return order;
}

BatchTransform make_augment_transform(const AugmentRecipe& recipe, uint64_t seed, int views) {
  SELFSUP_CHECK(views >= 1, "augment transform: views must be >= 1, got ", views);
  return [recipe, seed, views](Batch& b) {
    if (!b.images.defined() && !b.sources.empty()) {
      b.views = augment_views_each(b.sources, b.indices, recipe, seed, static_cast<uint64_t>(b.step), views,
                                   omp_get_max_threads());
      return;
    }
    b.views = augment_views(b.images, b.indices, recipe, seed, static_cast<uint64_t>(b.step), views,
                            omp_get_max_threads());
  };
}

DataLoader::DataLoader(ImageDataset dataset, LoaderOptions options, BatchTransform transform)
    : dataset_(std::move(dataset)), opt_(options), transform_(std::move(transform)) {
  SELFSUP_CHECK((dataset_.images.defined() && dataset_.images.dtype() == DType::u8 && dataset_.images.dim() == 4) ||
                    (!dataset_.images.defined() && dataset_.source),
                "loader: dataset images must be uint8 (N, H, W, C), or an ImageSource");
  SELFSUP_CHECK(dataset_.labels.defined() && dataset_.labels.dtype() == DType::i64 &&
                    dataset_.labels.numel() == dataset_.size(),
                "loader: dataset labels must be int64 with one label per image");
  SELFSUP_CHECK(opt_.batch_size >= 1, "loader: batch_size must be >= 1, got ", opt_.batch_size);
  SELFSUP_CHECK(opt_.num_workers >= 0 && opt_.prefetch >= 1, "loader: num_workers must be >= 0 and prefetch >= 1");
  SELFSUP_CHECK(opt_.shards >= 1 && opt_.shard >= 0 && opt_.shard < opt_.shards && opt_.batch_size % opt_.shards == 0 &&
                    (opt_.shards == 1 || opt_.drop_last),
                "loader: shard ", opt_.shard, " of ", opt_.shards, " needs 0 <= shard < shards, shards dividing the batch ",
                opt_.batch_size, " and drop_last");
  if (dataset_.images.defined()) dataset_.images = dataset_.images.contiguous();
  dataset_.labels = dataset_.labels.contiguous();
  const int64_t n = dataset_.size();
  batches_per_epoch_ = opt_.drop_last ? n / opt_.batch_size : (n + opt_.batch_size - 1) / opt_.batch_size;
  SELFSUP_CHECK(batches_per_epoch_ >= 1, "loader: ", n, " images make no batch of ", opt_.batch_size,
                " with drop_last");
  start_workers();
}

DataLoader::~DataLoader() { stop_workers(); }

std::shared_ptr<const std::vector<int64_t>> DataLoader::order_for(int64_t epoch) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = orders_.find(epoch);
    if (it != orders_.end()) return it->second;
  }
  auto order = std::make_shared<const std::vector<int64_t>>(
      epoch_order(dataset_.size(), opt_.seed, epoch, opt_.shuffle));
  std::lock_guard<std::mutex> lk(mu_);
  auto [it, inserted] = orders_.emplace(epoch, order);
  // Keep a few epochs: workers may straddle an epoch boundary.
  while (orders_.size() > 3) orders_.erase(orders_.begin());
  return it->second;
}

Batch DataLoader::build(int64_t global) {
  Batch b;
  b.epoch = global / batches_per_epoch_;
  b.batch = global % batches_per_epoch_;
  b.step = global;
  const auto order = order_for(b.epoch);
  const int64_t n = dataset_.size();
  const int64_t per_shard = opt_.batch_size / opt_.shards;
  const int64_t first = b.batch * opt_.batch_size + opt_.shard * per_shard;
  const int64_t count = std::max<int64_t>(0, std::min(per_shard, n - first));
  b.labels = Tensor::empty({count}, DType::i64);
  b.indices = Tensor::empty({count}, DType::i64);
  const int64_t* lab = dataset_.labels.data_ptr<int64_t>();
  int64_t* ol = b.labels.data_ptr<int64_t>();
  int64_t* oi = b.indices.data_ptr<int64_t>();
  for (int64_t k = 0; k < count; ++k) {
    const int64_t i = (*order)[first + k];
    ol[k] = lab[i];
    oi[k] = i;
  }
  if (opt_.gather_images && dataset_.source) {
    // Decoded here, in the worker: the only place a folder's pixels are held, for the batches in flight.
    b.sources.reserve(static_cast<size_t>(count));
    for (int64_t k = 0; k < count; ++k) b.sources.push_back(dataset_.source->load(oi[k]));
  } else if (opt_.gather_images) {
    const Tensor& imgs = dataset_.images;
    const int64_t bytes = imgs.size(1) * imgs.size(2) * imgs.size(3);
    b.images = Tensor::empty({count, imgs.size(1), imgs.size(2), imgs.size(3)}, DType::u8);
    const uint8_t* src = imgs.data_ptr<uint8_t>();
    uint8_t* dst = b.images.data_ptr<uint8_t>();
    for (int64_t k = 0; k < count; ++k) std::memcpy(dst + k * bytes, src + oi[k] * bytes, static_cast<size_t>(bytes));
  }
  if (transform_) transform_(b);
  return b;
}

void DataLoader::worker_loop() {
  omp_set_num_threads(std::max(1, opt_.worker_omp_threads));  // this thread's OpenMP teams only
  const int64_t window = static_cast<int64_t>(opt_.num_workers) * opt_.prefetch;
  for (;;) {
    int64_t g;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || next_produce_ < next_consume_ + window; });
      if (stop_) return;
      g = next_produce_++;
    }
    Slot s;
    try {
      s.batch = build(g);
    } catch (...) {
      s.error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (stop_) return;
      ready_.emplace(g, std::move(s));
    }
    cv_.notify_all();
  }
}

void DataLoader::start_workers() {
  stop_ = false;
  for (int w = 0; w < opt_.num_workers; ++w) workers_.emplace_back([this] { worker_loop(); });
}

void DataLoader::stop_workers() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

Batch DataLoader::next() {
  if (opt_.num_workers == 0) {
    const int64_t g = next_consume_++;
    return build(g);
  }
  Slot s;
  {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return ready_.count(next_consume_) > 0; });
    auto it = ready_.find(next_consume_);
    s = std::move(it->second);
    ready_.erase(it);
    ++next_consume_;
  }
  cv_.notify_all();
  if (s.error) std::rethrow_exception(s.error);
  return std::move(s.batch);
}

LoaderPosition DataLoader::position() const {
  std::lock_guard<std::mutex> lk(mu_);
  return {next_consume_ / batches_per_epoch_, next_consume_ % batches_per_epoch_};
}

void DataLoader::set_position(LoaderPosition pos) {
  SELFSUP_CHECK(pos.epoch >= 0 && pos.batch >= 0 && pos.batch < batches_per_epoch_, "loader: position (epoch ",
                pos.epoch, ", batch ", pos.batch, ") is invalid (", batches_per_epoch_, " batches per epoch)");
  stop_workers();
  ready_.clear();
  next_consume_ = next_produce_ = pos.epoch * batches_per_epoch_ + pos.batch;
  start_workers();
}

}  // namespace selfsup
