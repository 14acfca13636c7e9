// Caching CUDA allocator and pinned host pool (design in cuda_allocator.h).
#include "engine/core/cuda_allocator.h"

#include <cstdio>

#include "engine/core/check.h"
#include "engine/core/tensor.h"

#ifdef SELFSUP_HAVE_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <unordered_map>

#include "engine/core/cuda_block_cache.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/device.h"

namespace selfsup {

namespace {

namespace kc = kernels::cuda;

std::atomic<bool> g_guard_mode{false};

constexpr int kMaxDevices = 64;

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

class CudaCachingAllocator final : public Allocator {
 public:
  explicit CudaCachingAllocator(int device)
      : device_(device),
        cache_(CudaBlockCache::EventOps{[this](void* s) { return record_event(static_cast<cudaStream_t>(s)); },
                                        [](void* e) { return event_done(static_cast<cudaEvent_t>(e)); },
                                        [this](void* e) { spare_events_.push_back(static_cast<cudaEvent_t>(e)); }}) {}

  void* allocate(std::size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    if (g_guard_mode.load()) return allocate_guarded(nbytes);
    const std::size_t size = CudaBlockCache::round_size(nbytes);
    cudaStream_t stream = kc::current_stream(device_);
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.n_alloc;
    std::size_t got = 0;
    void* p = cache_.reuse(size, stream, &got);
    if (p != nullptr) {
      ++stats_.n_cache_hit;
    } else {
      p = cuda_malloc_locked(size, nbytes);
      cache_.insert_live(p, size, stream);
      got = size;
    }
    stats_.allocated += got;
    if (stats_.allocated > stats_.peak_allocated) stats_.peak_allocated = stats_.allocated;
    return p;
  }

  void deallocate(void* ptr, std::size_t) override {
    if (ptr == nullptr) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (auto g = guarded_.find(ptr); g != guarded_.end()) {
      check_guard_locked(ptr, g->second, "freed");
      kc::DeviceGuard dg(device_);
      for (cudaStream_t s : g->second.used_on) SELFSUP_CUDA_WARN(cudaStreamSynchronize(s));
      SELFSUP_CUDA_WARN(cudaStreamSynchronize(g->second.stream));
      SELFSUP_CUDA_WARN(cudaFree(g->second.base));
      stats_.allocated -= g->second.requested;
      stats_.reserved -= g->second.requested + 2 * kCudaGuardBytes;
      guarded_.erase(g);
      return;
    }
    std::size_t size = 0;
    try {  // recording the events of a cross-stream block can fail; a destructor must not throw
      size = cache_.free(ptr);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "selfsup: warning: cuda allocator: block %p leaked: %s\n", ptr, e.what());
      return;
    }
    if (size == 0) {
      std::fprintf(stderr, "selfsup: warning: cuda allocator: free of unknown pointer %p\n", ptr);
      return;
    }
    stats_.allocated -= size;
  }

  // Marks the block at ptr as used by work on `stream` as well (see cuda_record_stream).
  void record_stream(void* ptr, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto g = guarded_.find(ptr); g != guarded_.end()) {  // guard mode: synchronised at free
      if (stream != g->second.stream) g->second.used_on.push_back(stream);
      return;
    }
    SELFSUP_CHECK(cache_.record_stream(ptr, stream), "cuda_record_stream: ", ptr,
                  " is not the start of a live block of cuda:", device_);
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
  // An event recorded on `stream` now, from the pool of spare events of this device.
  cudaEvent_t record_event(cudaStream_t stream) {
    kc::DeviceGuard g(device_);  // an event is created on, and recorded on a stream of, the block's device
    cudaEvent_t e = nullptr;
    if (spare_events_.empty()) {
      SELFSUP_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    } else {
      e = spare_events_.back();
      spare_events_.pop_back();
    }
    SELFSUP_CUDA_CHECK(cudaEventRecord(e, stream));
    return e;
  }

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
    if (cache_.n_free() == 0 && cache_.n_pending() == 0) return;
    kc::DeviceGuard g(device_);
    SELFSUP_CUDA_CHECK(cudaDeviceSynchronize());  // cached blocks may still be read by queued kernels
    cache_.collect_pending();                       // every event has completed after the synchronize
    for (auto& [p, size] : cache_.take_free()) {
      SELFSUP_CUDA_CHECK(cudaFree(p));
      stats_.reserved -= size;
      ++stats_.n_cuda_free;
    }
  }

  struct Guarded {
    char* base;
    std::size_t requested;
    cudaStream_t stream;
    std::vector<cudaStream_t> used_on;  // record_stream: synchronised too before the block is freed
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
    guarded_[user] = Guarded{static_cast<char*>(base), nbytes, stream, {}};
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
  std::vector<cudaEvent_t> spare_events_;  // completed events, reused by record_event
  CudaBlockCache cache_;
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

void cuda_record_stream(const Tensor& t, void* stream) {
  if (!t.defined() || t.device().type != DeviceType::cuda || t.storage()->data() == nullptr) return;
  get(t.device().index)->record_stream(t.storage()->data(), static_cast<cudaStream_t>(stream));
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
  const std::size_t size = std::max<std::size_t>(CudaBlockCache::round_size(nbytes), 1u << 20);
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
void cuda_record_stream(const Tensor&, void*) {}
void cuda_set_guard_mode(bool) {}
std::vector<std::string> cuda_guard_check() { return {}; }
Allocator* cuda_caching_allocator(int device) {
  throw_error(str_cat("no allocator for cuda:", device, ": this build has no CUDA backend (SELFSUP_CUDA=OFF)"));
}
PinnedBuffer pinned_acquire(std::size_t) { throw_error("pinned memory needs the CUDA backend"); }
void pinned_release(const PinnedBuffer&, void*) {}
}  // namespace selfsup

#endif
