// oneDNN plumbing shared by the dense CPU kernels (matmul.cpp, conv.cpp): one engine, a stream per thread,
// oneDNN errors turned into std::runtime_error naming the call, a thread-safe per-shape cache of prepared
// primitives, and per-thread grow-only buffers for blocked-layout copies and scratchpads.
// Internal to kernels/cpu: nothing outside includes it.
#pragma once
#include <oneapi/dnnl/dnnl.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

namespace selfsup::kernels::dnnl_util {

// The CPU engine is created once and shared: engines are thread-safe and cheap to query.
dnnl::engine& cpu_engine();
// Streams are not documented as safe to share between threads, so each thread gets its own.
dnnl::stream& thread_stream();

[[noreturn]] void throw_dnnl(const char* call, dnnl_status_t status, const char* detail);

inline void check_status(dnnl_status_t status, const char* call) {
  if (status != dnnl_success) throw_dnnl(call, status, "");
}

// Runs f(); a dnnl::error becomes std::runtime_error("<call>: oneDNN ...") so callers never see oneDNN types.
template <typename F>
decltype(auto) checked(const char* call, F&& f) {
  try {
    return std::forward<F>(f)();
  } catch (const dnnl::error& e) {
    throw_dnnl(call, e.status, e.what());
  }
}

// Map from a shape key to an immutable prepared plan. Plans are shared_ptr so that trimming the cache never
// frees a plan another thread is executing. Creation runs outside the lock (it JIT-compiles, milliseconds);
// two threads racing on a new key both build it and the first insert wins.
template <typename Key, typename Plan>
class PlanCache {
 public:
  template <typename Make>
  std::shared_ptr<const Plan> get(const Key& key, Make&& make) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = plans_.find(key);
      if (it != plans_.end()) return it->second;
    }
    auto plan = std::make_shared<const Plan>(make());
    std::lock_guard<std::mutex> lock(mutex_);
    // A training run uses a few dozen shapes; the cap only guards against unbounded growth (e.g. varying batch).
    if (plans_.size() >= kMaxPlans) plans_.clear();
    return plans_.emplace(key, std::move(plan)).first->second;
  }

 private:
  static constexpr std::size_t kMaxPlans = 512;
  std::mutex mutex_;
  std::map<Key, std::shared_ptr<const Plan>> plans_;
};

// Per-thread, grow-only, 64-byte aligned buffer number `slot` of at least `bytes`. Reusing it avoids page
// faults on every call (a blocked copy of a batch-256 activation is ~16 MB). Valid until the same thread asks
// for the same slot again.
void* workspace(int slot, std::size_t bytes);
constexpr int kWorkspaceSlots = 8;
// Slots 6 and 7 hold the bfloat16-rounded float copies of the emulated bf16 kernels (bf16_api.h);
// the convolution's own blocked copies and scratchpads use 0-5.
constexpr int kRoundedSlotA = 6;
constexpr int kRoundedSlotB = 7;

// src[0, n) rounded to bfloat16 (nearest even) and widened back, in workspace `slot`: a float buffer holding
// exactly the values a bfloat16 kernel would read.
const float* rounded_to_bf16(int slot, const float* src, std::int64_t n);

}  // namespace selfsup::kernels::dnnl_util
