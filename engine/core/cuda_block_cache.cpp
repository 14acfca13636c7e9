// The caching allocator's bookkeeping (design in cuda_block_cache.h).
#include "engine/core/cuda_block_cache.h"

#include <algorithm>

namespace selfsup {

namespace {
constexpr std::size_t kSmallLimit = 1u << 20;  // 1 MiB
constexpr std::size_t kSmallRound = 512;
constexpr std::size_t kLargeRound = 2u << 20;  // 2 MiB
}  // namespace

std::size_t CudaBlockCache::round_size(std::size_t n) {
  if (n < kSmallLimit) return (n + kSmallRound - 1) / kSmallRound * kSmallRound;
  return (n + kLargeRound - 1) / kLargeRound * kLargeRound;
}

bool CudaBlockCache::fits(std::size_t have, std::size_t want) {
  if (want < kSmallLimit) return have == want;
  return have >= want && have <= want + want / 4;
}

void* CudaBlockCache::reuse(std::size_t size, Stream stream, std::size_t* block_size) {
  if (!pending_.empty()) collect_pending();
  auto bins = free_.find(stream);
  if (bins == free_.end()) return nullptr;
  auto it = bins->second.lower_bound(size);
  if (it == bins->second.end() || !fits(it->first, size)) return nullptr;
  void* p = it->second;
  *block_size = it->first;
  live_[p] = Live{it->first, stream, {}};
  bins->second.erase(it);
  return p;
}

void CudaBlockCache::insert_live(void* p, std::size_t size, Stream stream) { live_[p] = Live{size, stream, {}}; }

bool CudaBlockCache::record_stream(void* p, Stream stream) {
  auto it = live_.find(p);
  if (it == live_.end()) return false;
  Live& b = it->second;
  if (stream != b.stream && std::find(b.used_on.begin(), b.used_on.end(), stream) == b.used_on.end())
    b.used_on.push_back(stream);
  return true;
}

std::size_t CudaBlockCache::free(void* p) {
  auto it = live_.find(p);
  if (it == live_.end()) return 0;
  Live b = std::move(it->second);
  live_.erase(it);
  if (b.used_on.empty()) {
    free_[b.stream].emplace(b.size, p);
  } else {
    Pending pend{p, b.size, b.stream, {}};
    for (Stream s : b.used_on) pend.events.push_back(ops_.record(s));  // after the work queued there so far
    pending_.push_back(std::move(pend));
  }
  return b.size;
}

void CudaBlockCache::collect_pending() {
  auto ready = [this](Pending& pend) {
    // Drop the completed events; the block is ready when none is left (queries only, never waits).
    auto done = std::remove_if(pend.events.begin(), pend.events.end(), [this](Event e) {
      if (!ops_.query(e)) return false;
      ops_.release(e);
      return true;
    });
    pend.events.erase(done, pend.events.end());
    return pend.events.empty();
  };
  auto keep = std::remove_if(pending_.begin(), pending_.end(), [&](Pending& pend) {
    if (!ready(pend)) return false;
    free_[pend.stream].emplace(pend.size, pend.p);
    return true;
  });
  pending_.erase(keep, pending_.end());
}

std::vector<std::pair<void*, std::size_t>> CudaBlockCache::take_free() {
  std::vector<std::pair<void*, std::size_t>> out;
  for (auto& [stream, bins] : free_) {
    for (auto& [size, p] : bins) out.emplace_back(p, size);
    bins.clear();
  }
  return out;
}

std::size_t CudaBlockCache::n_free() const {
  std::size_t n = 0;
  for (const auto& [stream, bins] : free_) n += bins.size();
  return n;
}

}  // namespace selfsup
