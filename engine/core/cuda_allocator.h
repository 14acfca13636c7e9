// The caching CUDA allocator behind Storage on cuda:i, and a small pool of pinned host buffers for uploads.
//
// cudaMalloc/cudaFree are slow and synchronise the device, so freed blocks are kept and reused:
//   - size classes: requests round up to 512 B below 1 MiB and to 2 MiB above, so the same tensor
//     shapes step after step map to the same class;
//   - a freed block goes back to the free list of the stream it was allocated on, and only an allocation
//     on that same stream reuses it: work on one stream runs in order, so the next user of the block
//     cannot start before the previous user's kernels finished;
//   - cross-stream use (PyTorch's record_stream): cuda_record_stream(t, s) marks t's block as used by work
//     on stream s too; when the block is freed an event is recorded on s, and the block is reused only after
//     that event has completed (checked without waiting at later allocations);
//   - small classes are reused only on an exact class match; a large request takes the smallest cached
//     block of at least its size and at most 1.25x it (no splitting: simple, bounded waste);
// The bookkeeping (sizes, free lists, pending blocks) is CudaBlockCache (cuda_block_cache.h), CUDA-free.
//   - when cudaMalloc fails, every cached block of the device is freed (after a device synchronize) and
//     the allocation retried once; the error then reports the statistics.
// Statistics per device: bytes allocated (handed out, in rounded sizes), reserved (held from cudaMalloc),
// their peaks, and counts. Compiled only with the CUDA backend; the functions below exist in every build
// (without CUDA they report zeros) so callers need no #ifdef.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/allocator.h"

namespace selfsup {

struct CudaMemoryStats {
  std::size_t allocated = 0, reserved = 0;            // bytes now
  std::size_t peak_allocated = 0, peak_reserved = 0;  // bytes, since start or reset_peak
  uint64_t n_alloc = 0, n_cache_hit = 0, n_cuda_malloc = 0, n_cuda_free = 0;
};

CudaMemoryStats cuda_memory_stats(int device = 0);
void cuda_reset_peak_memory_stats(int device = 0);
// One line, e.g. "cuda:0 memory: allocated 1.2 GiB (peak 3.4 GiB), reserved 4.0 GiB (peak 4.0 GiB), ...".
std::string cuda_memory_summary(int device = 0);
// Returns every cached (free) block of every device to the driver.
void cuda_empty_cache();

class Tensor;
// Tells the allocator that t's storage is used by work queued on `stream` (a cudaStream_t of t's device)
// besides the stream it was allocated on: when the storage is freed, its block waits for that work before
// it is reused. Call it when handing a tensor to a side stream (copies, NCCL, a prefetching loader), as
// PyTorch's Tensor.record_stream. Nothing for CPU tensors or in a build without CUDA.
void cuda_record_stream(const Tensor& t, void* stream /* cudaStream_t */);

// Test hook (tests/cuda): while guard mode is on, every new CUDA allocation bypasses the cache and gets
// kCudaGuardBytes of a known pattern before and after the requested bytes. The guards are verified when
// the block is freed and by cuda_guard_check(), which returns the violations found since the last call
// (in live blocks and in blocks freed meanwhile), each naming the block size and the side that changed.
constexpr std::size_t kCudaGuardBytes = 256;  // keeps the user pointer 256-byte aligned
void cuda_set_guard_mode(bool on);
std::vector<std::string> cuda_guard_check();

// The allocator of cuda:device (what allocator_for(Device::cuda(i)) returns).
Allocator* cuda_caching_allocator(int device);

// Pinned (page-locked) host memory for uploads: acquire a buffer of at least n bytes; release it with the
// stream whose copy reads it, and it becomes reusable once that copy has finished (an event tracks it).
// The pool keeps at most a few buffers; larger or surplus ones are freed.
struct PinnedBuffer {
  void* data = nullptr;
  std::size_t size = 0;
  int slot = -1;  // pool bookkeeping
};
PinnedBuffer pinned_acquire(std::size_t nbytes);
void pinned_release(const PinnedBuffer& b, void* stream /* cudaStream_t */);

}  // namespace selfsup
