#include "engine/core/allocator.h"

#include <malloc.h>

#include <cstdlib>
#include <new>

#include "engine/core/check.h"
#include "engine/core/cuda_allocator.h"

namespace selfsup {

namespace {

class CpuAllocator final : public Allocator {
 public:
  CpuAllocator() {
    // glibc serves blocks above M_MMAP_THRESHOLD (128 KiB at first, adaptive up to 32 MiB) with fresh mmaps
    // and unmaps them on free, so every training step page-faulted its activations in again: ~20% of a
    // step and half of an evaluation pass in the supervised demo. Keeping freed blocks in the heap makes
    // the next step reuse them.
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
  }
  void* allocate(std::size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    // aligned_alloc wants a size that is a multiple of the alignment.
    std::size_t rounded = (nbytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
    void* p = std::aligned_alloc(kCpuAlignment, rounded);
    SELFSUP_CHECK(p != nullptr, "cpu allocator: out of memory allocating ", nbytes, " bytes");
    return p;
  }
  void deallocate(void* ptr, std::size_t) override { std::free(ptr); }
};

}  // namespace

Allocator* allocator_for(Device device) {
  static CpuAllocator cpu;
  if (device.is_cpu()) return &cpu;
  return cuda_caching_allocator(device.index);  // throws without the CUDA backend or the device
}

}  // namespace selfsup
