// Storage: the bytes behind one or more tensors (views share a Storage). It carries the version counter
// that autograd uses: every in-place write bumps it, and a tensor saved for backward remembers the
// version it saw, so a later write is detected instead of silently producing wrong gradients.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "engine/core/allocator.h"

namespace selfsup {

class Storage {
 public:
  Storage(std::size_t nbytes, Device device)
      : nbytes_(nbytes), device_(device), allocator_(allocator_for(device)) {
    data_ = allocator_->allocate(nbytes);
  }
  ~Storage() { allocator_->deallocate(data_, nbytes_); }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  std::size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  uint64_t version() const { return version_.load(std::memory_order_relaxed); }
  void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }

 private:
  void* data_ = nullptr;
  std::size_t nbytes_;
  Device device_;
  Allocator* allocator_;
  std::atomic<uint64_t> version_{0};
};

}  // namespace selfsup
