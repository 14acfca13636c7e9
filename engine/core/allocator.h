// Allocator interface: a Storage asks its allocator for bytes and gives them back. The CPU allocator
// aligns to 64 bytes (one cache line, one AVX-512 vector); CUDA devices get the caching allocator of
// engine/core/cuda_allocator.h.
#pragma once
#include <cstddef>

#include "engine/core/device.h"

namespace selfsup {

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(std::size_t nbytes) = 0;
  virtual void deallocate(void* ptr, std::size_t nbytes) = 0;
};

// The process-wide allocator for a device type (the CPU one always exists).
Allocator* allocator_for(Device device);

constexpr std::size_t kCpuAlignment = 64;

}  // namespace selfsup
