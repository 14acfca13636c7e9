// What the data-parallel test files share: the job's communicator, tensors that are the same on every rank,
// a rank's shard of a global batch, and the relative error the tolerances are written in.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/core/rng.h"
#include "engine/core/tensor.h"
#include "engine/dist/communicator.h"

namespace selfsup::test_dist {

inline dist::Communicator& comm() { return dist::world(); }

// The same tensor on every rank: drawn from Generator(seed, stream).
inline Tensor global_randn(const Shape& shape, uint64_t seed, DType dt) {
  Generator g(seed, 0x44495354ull);  // "DIST"
  return Tensor::randn(shape, DType::f64, &g).to(dt);
}

// Rows [r n, (r + 1) n) of a global (W n, ...) tensor: this rank's shard.
inline Tensor shard(const Tensor& global) {
  const int64_t n = global.size(0) / comm().world_size();
  return global.narrow(0, comm().rank() * n, n).contiguous();
}

// max |a - b| / max |b|: relative error of a tensor as a whole (an elementwise ratio is meaningless at zeros).
inline double rel_err(const Tensor& a, const Tensor& b) {
  REQUIRE(a.sizes() == b.sizes());
  const std::vector<double> va = a.to_vector(), vb = b.to_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    num = std::max(num, std::abs(va[i] - vb[i]));
    den = std::max(den, std::abs(vb[i]));
  }
  return den > 0 ? num / den : num;
}

}  // namespace selfsup::test_dist
