// The caching CUDA allocator's bookkeeping (engine/core/cuda_block_cache.h) with fake streams and events,
// so the cross-stream rules (record_stream) are tested in every build, with or without a GPU.
#include <doctest/doctest.h>

#include <cstdint>
#include <map>

#include "engine/core/cuda_block_cache.h"

using selfsup::CudaBlockCache;

namespace {

// Events are integers cast to pointers; the test decides when each one completes.
struct FakeEvents {
  std::map<uintptr_t, bool> done;  // event -> completed
  std::map<uintptr_t, void*> on;   // event -> stream it was recorded on
  int released = 0;
  uintptr_t next = 1;
  CudaBlockCache::EventOps ops() {
    return {[this](void* s) {
              const uintptr_t e = next++;
              done[e] = false;
              on[e] = s;
              return reinterpret_cast<void*>(e);
            },
            [this](void* e) { return done.at(reinterpret_cast<uintptr_t>(e)); },
            [this](void* e) {
              done.erase(reinterpret_cast<uintptr_t>(e));
              ++released;
            }};
  }
  void complete_all() {
    for (auto& [e, d] : done) d = true;
  }
};

void* const kS1 = reinterpret_cast<void*>(0x100);
void* const kS2 = reinterpret_cast<void*>(0x200);
void* const kS3 = reinterpret_cast<void*>(0x300);
void* block(uintptr_t i) { return reinterpret_cast<void*>(0x10000 * i); }

}  // namespace

TEST_CASE("cuda block cache: size classes") {
  CHECK(CudaBlockCache::round_size(1) == 512);
  CHECK(CudaBlockCache::round_size(513) == 1024);
  CHECK(CudaBlockCache::round_size((1u << 20) - 1) == (1u << 20));
  CHECK(CudaBlockCache::round_size((1u << 20) + 1) == (2u << 20));  // 2 MiB classes above 1 MiB
  CHECK(CudaBlockCache::fits(1024, 1024));
  CHECK_FALSE(CudaBlockCache::fits(1536, 1024));  // small: exact class only
  CHECK(CudaBlockCache::fits(10u << 20, 8u << 20));   // large: up to 1.25x
  CHECK_FALSE(CudaBlockCache::fits(12u << 20, 8u << 20));
}

TEST_CASE("cuda block cache: a freed block is reused on its own stream only") {
  FakeEvents ev;
  CudaBlockCache c(ev.ops());
  std::size_t got = 0;
  CHECK(c.reuse(1024, kS1, &got) == nullptr);
  c.insert_live(block(1), 1024, kS1);
  CHECK(c.free(block(1)) == 1024);
  CHECK(c.n_free() == 1);
  CHECK(c.reuse(1024, kS2, &got) == nullptr);  // another stream never takes it
  CHECK(c.reuse(1024, kS1, &got) == block(1));
  CHECK(got == 1024);
  CHECK(c.is_live(block(1)));
  CHECK(c.free(block(2)) == 0);  // unknown pointer
  CHECK(ev.on.empty());          // no cross-stream use: no event at all
}

TEST_CASE("cuda block cache: record_stream holds a block until the other streams' events complete") {
  FakeEvents ev;
  CudaBlockCache c(ev.ops());
  std::size_t got = 0;
  c.insert_live(block(1), 4096, kS1);
  CHECK(c.record_stream(block(1), kS2));
  CHECK(c.record_stream(block(1), kS2));  // recorded once
  CHECK(c.record_stream(block(1), kS1));  // its own stream: nothing to do
  CHECK(c.record_stream(block(1), kS3));
  CHECK_FALSE(c.record_stream(block(9), kS2));  // not a live block
  CHECK(c.free(block(1)) == 4096);
  REQUIRE(ev.on.size() == 2);  // one event on each other stream, recorded at free time
  CHECK(ev.on.at(1) == kS2);
  CHECK(ev.on.at(2) == kS3);
  CHECK(c.n_pending() == 1);
  CHECK(c.n_free() == 0);
  CHECK(c.reuse(4096, kS1, &got) == nullptr);  // neither event has completed
  ev.done[1] = true;
  CHECK(c.reuse(4096, kS1, &got) == nullptr);  // S3's work may still read it
  CHECK(ev.released == 1);                      // the completed event went back
  CHECK(c.n_pending() == 1);
  ev.done[2] = true;
  CHECK(c.reuse(4096, kS2, &got) == nullptr);  // ready now, but it belongs to S1's free list
  CHECK(c.n_pending() == 0);
  CHECK(c.n_free() == 1);
  CHECK(c.reuse(4096, kS1, &got) == block(1));
  CHECK(ev.released == 2);
  // Reused: the stream marks of its previous life are gone.
  CHECK(c.free(block(1)) == 4096);
  CHECK(c.n_free() == 1);
  CHECK(ev.on.size() == 2);
}

TEST_CASE("cuda block cache: take_free leaves pending blocks until collected") {
  FakeEvents ev;
  CudaBlockCache c(ev.ops());
  c.insert_live(block(1), 512, kS1);
  c.insert_live(block(2), 2u << 20, kS1);
  c.record_stream(block(2), kS2);
  c.free(block(1));
  c.free(block(2));
  auto freed = c.take_free();
  REQUIRE(freed.size() == 1);
  CHECK(freed[0].first == block(1));
  CHECK(c.n_pending() == 1);
  ev.complete_all();  // what a device synchronize guarantees
  c.collect_pending();
  freed = c.take_free();
  REQUIRE(freed.size() == 1);
  CHECK(freed[0].first == block(2));
  CHECK(freed[0].second == (2u << 20));
  CHECK(c.n_free() == 0);
  CHECK(c.n_pending() == 0);
}
