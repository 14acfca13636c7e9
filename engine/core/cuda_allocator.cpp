// Caching CUDA allocator and pinned host pool (design in cuda_allocator.h).
#include "engine/core/cuda_allocator.h"

#include <cstdio>

#include "engine/core/check.h"

#ifdef SELFSUP_HAVE_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <unordered_map>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/device.h"

namespace selfsup {

namespace {

namespace kc = kernels::cuda;

std::atomic<bool> g_guard_mode{false};

constexpr std::size_t kSmallLimit = 1u << 20;  // 1 MiB
constexpr std::size_t kSmallRound = 512;
constexpr std::size_t kLargeRound = 2u << 20;  // 2 MiB
constexpr int kMaxDevices = 64;

std::size_t round_size(std::size_t n) {
  if (n < kSmallLimit) return (n + kSmallRound - 1) / kSmallRound * kSmallRound;
  return (n + kLargeRound - 1) / kLargeRound * kLargeRound;
}

// Can a cached block of `have` bytes serve a request rounded to `want`?
bool fits(std::size_t have, std::size_t want) {
  if (want < kSmallLimit) return have == want;
  return have >= want && have <= want + want / 4;
}

std::string human(std::size_t b) {
  char buf[64];
  if (b >= (1ull << 30)) {
    std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(b) / (1ull << 30));
  } else if (b >= (1ull << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(b) / (1ull << 20));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(b) / 1024.0);
  }
  return buf;
}

class CudaCachingAllocator final : public Allocator {
 public:
  explicit CudaCachingAllocator(int device) : device_(device) {}

  void* allocate(std::size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    if (g_guard_mode.load()) return allocate_guarded(nbytes);
    const std::size_t size = round_size(nbytes);
    cudaStream_t stream = kc::current_stream(device_);
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.n_alloc;
    void* p = nullptr;
    auto bins = free_.find(stream);
    if (bins != free_.end()) {
      auto it = bins->second.lower_bound(size);
      if (it != bins->second.end() && fits(it->first, size)) {
        p = it->second;
        live_[p] = Block{it->first, stream};
        stats_.allocated += it->first;
        bins->second.erase(it);
        ++stats_.n_cache_hit;
      }
    }
    if (p == nullptr) {
      p = cuda_malloc_locked(size, nbytes);
      live_[p] = Block{size, stream};
      stats_.allocated += size;
    }
    if (stats_.allocated > stats_.peak_allocated) stats_.peak_allocated = stats_.allocated;
    return p;
  }

  void deallocate(void* ptr, std::size_t) override {
    if (ptr == nullptr) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (auto g = guarded_.find(ptr); g != guarded_.end()) {
      check_guard_locked(ptr, g->second, "freed");
      kc::DeviceGuard dg(device_);
      SELFSUP_CUDA_WARN(cudaStreamSynchronize(g->second.stream));
      SELFSUP_CUDA_WARN(cudaFree(g->second.base));
      stats_.allocated -= g->second.requested;
      stats_.reserved -= g->second.requested + 2 * kCudaGuardBytes;
      guarded_.erase(g);
      return;
    }
    auto it = live_.find(ptr);
    if (it == live_.end()) {
      std::fprintf(stderr, "selfsup: warning: cuda allocator: free of unknown pointer %p\n", ptr);
      return;
    }
    stats_.allocated -= it->second.size;
    free_[it->second.stream].emplace(it->second.size, ptr);
    live_.erase(it);
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    release_cached_locked();
  }

  // Checks every live guarded block; appends violations to `out` with those recorded at free time.
  void guard_check(std::vector<std::string>& out) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [ptr, g] : guarded_) check_guard_locked(ptr, g, "live");
    out.insert(out.end(), violations_.begin(), violations_.end());
    violations_.clear();
  }

  CudaMemoryStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peak_allocated = stats_.allocated;
    stats_.peak_reserved = stats_.reserved;
  }

 private:
  struct Block {
    std::size_t size;
    cudaStream_t stream;
  };

  void* cuda_malloc_locked(std::size_t size, std::size_t requested) {
    kc::DeviceGuard g(device_);
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, size);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      release_cached_locked();
      e = cudaMalloc(&p, size);
    }
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      throw_error(str_cat("cuda:", device_, " out of memory allocating ", requested, " bytes (", human(size),
                          " rounded): ", cudaGetErrorString(e), "; allocated ", human(stats_.allocated), ", reserved ",
                          human(stats_.reserved), " (cached blocks were already released)"));
    }
    ++stats_.n_cuda_malloc;
    stats_.reserved += size;
    if (stats_.reserved > stats_.peak_reserved) stats_.peak_reserved = stats_.reserved;
    return p;
  }

  void release_cached_locked() {
    bool any = false;
    for (auto& [stream, bins] : free_) any = any || !bins.empty();
    if (!any) return;
    kc::DeviceGuard g(device_);
    SELFSUP_CUDA_CHECK(cudaDeviceSynchronize());  // cached blocks may still be read by queued kernels
    for (auto& [stream, bins] : free_) {
      for (auto& [size, p] : bins) {
        SELFSUP_CUDA_CHECK(cudaFree(p));
        stats_.reserved -= size;
        ++stats_.n_cuda_free;
      }
      bins.clear();
    }
  }

  struct Guarded {
    char* base;
    std::size_t requested;
    cudaStream_t stream;
  };
  static constexpr unsigned char kPattern = 0xA5;

  void* allocate_guarded(std::size_t nbytes) {
    cudaStream_t stream = kc::current_stream(device_);
    std::lock_guard<std::mutex> lock(mu_);
    kc::DeviceGuard dg(device_);
    const std::size_t total = nbytes + 2 * kCudaGuardBytes;
    void* base = nullptr;
    SELFSUP_CUDA_CHECK(cudaMalloc(&base, total));
    SELFSUP_CUDA_CHECK(cudaMemsetAsync(base, kPattern, total, stream));
    char* user = static_cast<char*>(base) + kCudaGuardBytes;
    guarded_[user] = Guarded{static_cast<char*>(base), nbytes, stream};
    ++stats_.n_alloc;
    ++stats_.n_cuda_malloc;
    stats_.allocated += nbytes;
    stats_.reserved += total;
    if (stats_.allocated > stats_.peak_allocated) stats_.peak_allocated = stats_.allocated;
    if (stats_.reserved > stats_.peak_reserved) stats_.peak_reserved = stats_.reserved;
    return user;
  }

  // Downloads both guard regions (after the block's stream finished) and records any changed byte.
  void check_guard_locked(void* user, const Guarded& g, const char* when) {
    kc::DeviceGuard dg(device_);
    unsigned char before[kCudaGuardBytes], after[kCudaGuardBytes];
    if (cudaStreamSynchronize(g.stream) != cudaSuccess ||
        cudaMemcpy(before, g.base, kCudaGuardBytes, cudaMemcpyDeviceToHost) != cudaSuccess ||
        cudaMemcpy(after, g.base + kCudaGuardBytes + g.requested, kCudaGuardBytes, cudaMemcpyDeviceToHost) !=
            cudaSuccess) {
      violations_.push_back(str_cat("guard check of a ", g.requested, "-byte block failed: ",
                                    cudaGetErrorString(cudaGetLastError())));
      return;
    }
    for (std::size_t i = 0; i < kCudaGuardBytes; ++i) {
      if (before[i] != kPattern) {
        violations_.push_back(str_cat("write before a ", g.requested, "-byte block (", when, ", ", user,
                                      "): guard byte -", kCudaGuardBytes - i));
        break;
      }
    }
    for (std::size_t i = 0; i < kCudaGuardBytes; ++i) {
      if (after[i] != kPattern) {
        violations_.push_back(str_cat("write after a ", g.requested, "-byte block (", when, ", ", user,
                                      "): guard byte +", i));
        break;
      }
    }
  }

  std::unordered_map<void*, Guarded> guarded_;
  std::vector<std::string> violations_;

  int device_;
  std::mutex mu_;
  std::unordered_map<void*, Block> live_;
  std::map<cudaStream_t, std::multimap<std::size_t, void*>> free_;
  CudaMemoryStats stats_;
};

std::once_flag g_alloc_once[kMaxDevices];
CudaCachingAllocator* g_alloc[kMaxDevices] = {};

CudaCachingAllocator* get(int device) {
  SELFSUP_CHECK(device >= 0 && device < kc::device_count(), "cuda:", device, " does not exist (",
                kc::device_count(), " CUDA device(s)",
                kc::device_count() == 0 ? ": " + kc::no_device_reason() : std::string(), ")");
  // Leaked on purpose: tensors may be freed during static destruction, after the CUDA runtime is gone.
  std::call_once(g_alloc_once[device], [device] { g_alloc[device] = new CudaCachingAllocator(device); });
  return g_alloc[device];
}

// ---- pinned host pool
constexpr int kPinnedSlots = 4;
constexpr std::size_t kPinnedMaxPooled = 256u << 20;  // bigger buffers are not kept

struct PinnedSlot {
  void* ptr = nullptr;
  std::size_t size = 0;
  cudaEvent_t done = nullptr;  // recorded after the copy that reads the buffer
  bool in_use = false;
};
std::mutex g_pinned_mu;
PinnedSlot g_pinned[kPinnedSlots];

bool event_done(cudaEvent_t e) {
  if (e == nullptr) return true;
  cudaError_t r = cudaEventQuery(e);
  if (r == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  SELFSUP_CUDA_CHECK(r);
  return true;
}

}  // namespace

Allocator* cuda_caching_allocator(int device) { return get(device); }

CudaMemoryStats cuda_memory_stats(int device) {
  if (device < 0 || device >= kc::device_count()) return {};
  return get(device)->stats();
}
void cuda_reset_peak_memory_stats(int device) {
  if (device >= 0 && device < kc::device_count()) get(device)->reset_peak();
}
std::string cuda_memory_summary(int device) {
  if (device < 0 || device >= kc::device_count()) return str_cat("cuda:", device, " memory: no such device");
  CudaMemoryStats s = cuda_memory_stats(device);
  return str_cat("cuda:", device, " memory: allocated ", human(s.allocated), " (peak ", human(s.peak_allocated),
                 "), reserved ", human(s.reserved), " (peak ", human(s.peak_reserved), "), ", s.n_alloc,
                 " allocations, ", s.n_cache_hit, " from the cache, ", s.n_cuda_malloc, " cudaMalloc");
}
void cuda_empty_cache() {
  for (int d = 0; d < kc::device_count(); ++d)
    if (g_alloc[d]) g_alloc[d]->empty_cache();
}

void cuda_set_guard_mode(bool on) { g_guard_mode.store(on); }

std::vector<std::string> cuda_guard_check() {
  std::vector<std::string> out;
  for (int d = 0; d < kc::device_count(); ++d)
    if (g_alloc[d]) g_alloc[d]->guard_check(out);
  return out;
}

PinnedBuffer pinned_acquire(std::size_t nbytes) {
  std::lock_guard<std::mutex> lock(g_pinned_mu);
  int reuse = -1, replace = -1;
  for (int i = 0; i < kPinnedSlots; ++i) {
    PinnedSlot& s = g_pinned[i];
    if (s.in_use || !event_done(s.done)) continue;
    if (s.ptr != nullptr && s.size >= nbytes) {
      if (reuse < 0 || s.size < g_pinned[reuse].size) reuse = i;
    } else if (replace < 0) {
      replace = i;
    }
  }
  if (reuse >= 0) {
    g_pinned[reuse].in_use = true;
    return {g_pinned[reuse].ptr, g_pinned[reuse].size, reuse};
  }
  const std::size_t size = std::max<std::size_t>(round_size(nbytes), 1u << 20);
  void* p = nullptr;
  SELFSUP_CUDA_CHECK(cudaHostAlloc(&p, size, cudaHostAllocDefault));
  if (replace >= 0 && size <= kPinnedMaxPooled) {
    PinnedSlot& s = g_pinned[replace];
    if (s.ptr) SELFSUP_CUDA_CHECK(cudaFreeHost(s.ptr));
    s.ptr = p;
    s.size = size;
    s.in_use = true;
    return {p, size, replace};
  }
  return {p, size, -1};  // not pooled: freed on release
}

void pinned_release(const PinnedBuffer& b, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (b.slot < 0) {
    SELFSUP_CUDA_CHECK(cudaStreamSynchronize(s));
    SELFSUP_CUDA_CHECK(cudaFreeHost(b.data));
    return;
  }
  std::lock_guard<std::mutex> lock(g_pinned_mu);
  PinnedSlot& slot = g_pinned[b.slot];
  // A fresh event on the current device (the caller's DeviceGuard selects the stream's device): an event
  // can only be recorded on a stream of the device it was created on.
  if (slot.done) SELFSUP_CUDA_CHECK(cudaEventDestroy(slot.done));
  slot.done = nullptr;
  SELFSUP_CUDA_CHECK(cudaEventCreateWithFlags(&slot.done, cudaEventDisableTiming));
  SELFSUP_CUDA_CHECK(cudaEventRecord(slot.done, s));
  slot.in_use = false;
}

}  // namespace selfsup

#else  // no CUDA backend: the statistics API reports nothing

namespace selfsup {
CudaMemoryStats cuda_memory_stats(int) { return {}; }
void cuda_reset_peak_memory_stats(int) {}
std::string cuda_memory_summary(int device) { return str_cat("cuda:", device, " memory: CUDA backend not compiled"); }
void cuda_empty_cache() {}
void cuda_set_guard_mode(bool) {}
std::vector<std::string> cuda_guard_check() { return {}; }
Allocator* cuda_caching_allocator(int device) {
  throw_error(str_cat("no allocator for cuda:", device, ": this build has no CUDA backend (SELFSUP_CUDA=OFF)"));
}
PinnedBuffer pinned_acquire(std::size_t) { throw_error("pinned memory needs the CUDA backend"); }
void pinned_release(const PinnedBuffer&, void*) {}
}  // namespace selfsup

#endif
