// Generator: (seed, stream) plus an offset in Philox blocks that advances as numbers are drawn. Element i
// of a draw uses block offset+i, so a draw of n numbers is the same whether it is computed by one thread,
// many threads or a GPU, and saving (seed, stream, offset) is enough to resume the exact sequence.
#pragma once
#include <cstdint>

namespace selfsup {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0, uint64_t stream = 0) : seed_(seed), stream_(stream) {}
  uint64_t seed() const { return seed_; }
  uint64_t stream() const { return stream_; }
  uint64_t offset() const { return offset_; }
  void set_offset(uint64_t o) { offset_ = o; }
  // Reserves n blocks and returns the first.
  uint64_t take(uint64_t n) {
    uint64_t first = offset_;
    offset_ += n;
    return first;
  }

 private:
  uint64_t seed_, stream_, offset_ = 0;
};

// The process default generator (seed 0, stream 0); `manual_seed` resets it.
Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace selfsup
