// The bookkeeping of the caching CUDA allocator (cuda_allocator.cpp), kept free of CUDA so that
// tests/core drives it with fake streams and events in every build.
//
// Blocks are identified by their pointer and belong to the stream they were allocated on. A free block goes
// back to that stream's free list, and only an allocation on that stream takes it again: work on one stream
// runs in order, so the next user cannot start before the previous user's kernels have finished.
// record_stream(p, s) says that live block p is also used by work queued on another stream s (PyTorch's
// Tensor.record_stream). Freeing such a block records an event on each of those streams now and parks the
// block as *pending*; it joins its free list only once every one of those events has completed. Pending
// blocks are checked lazily, with non-blocking queries, when an allocation looks for a cached block; nothing
// here ever waits.
//
// Size rules: requests round up to 512 B below 1 MiB and to 2 MiB above; a small class is reused only on an
// exact match, a large request takes the smallest cached block of at least its size and at most 1.25x it.
// Not thread-safe: the allocator calls it under its own mutex.
#pragma once
#include <cstddef>
#include <functional>
#include <map>
#include <unordered_map>
#include <utility>
#include <vector>

namespace selfsup {

class CudaBlockCache {
 public:
  using Stream = void*;  // cudaStream_t, opaque here
  using Event = void*;   // cudaEvent_t, opaque here

  // How events are made and queried (CUDA events in the allocator, counters in tests).
  struct EventOps {
    std::function<Event(Stream)> record;  // records a new event on the stream, now
    std::function<bool(Event)> query;     // has it completed? never blocks
    std::function<void(Event)> release;   // the event is no longer needed
  };

  explicit CudaBlockCache(EventOps ops) : ops_(std::move(ops)) {}
  CudaBlockCache(const CudaBlockCache&) = delete;
  CudaBlockCache& operator=(const CudaBlockCache&) = delete;

  static std::size_t round_size(std::size_t n);
  static bool fits(std::size_t have, std::size_t want);  // can a cached `have`-byte block serve `want`?

  // A cached block for a request of `size` (already rounded) bytes on `stream`, made live; nullptr when
  // none fits. Pending blocks whose events have completed are returned to their free lists first.
  // *block_size receives the cached block's size (>= size).
  void* reuse(std::size_t size, Stream stream, std::size_t* block_size);
  // Registers a newly allocated block of `size` bytes as live on `stream`.
  void insert_live(void* p, std::size_t size, Stream stream);
  // Marks live block p as used by work on `stream` too (nothing when it is p's own stream, or already
  // recorded). False when p is not a live block.
  bool record_stream(void* p, Stream stream);
  // Frees live block p (see the header comment); returns its size, 0 when p is not live.
  std::size_t free(void* p);
  // Moves every pending block whose events have all completed to its free list.
  void collect_pending();
  // Removes every free (not pending) block and returns (pointer, size) pairs, for the caller to release.
  std::vector<std::pair<void*, std::size_t>> take_free();

  bool is_live(void* p) const { return live_.count(p) != 0; }
  std::size_t n_free() const;
  std::size_t n_pending() const { return pending_.size(); }

 private:
  struct Live {
    std::size_t size;
    Stream stream;
    std::vector<Stream> used_on;  // other streams recorded with record_stream
  };
  struct Pending {
    void* p;
    std::size_t size;
    Stream stream;
    std::vector<Event> events;  // one per stream in used_on, recorded at free time
  };

  EventOps ops_;
  std::unordered_map<void*, Live> live_;
  std::map<Stream, std::multimap<std::size_t, void*>> free_;  // per stream: size -> block
  std::vector<Pending> pending_;
};

}  // namespace selfsup
