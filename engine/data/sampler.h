// Random order of a data set: a permutation drawn from the engine's counter-based generator, so the
// order of every epoch is a pure function of (seed, stream, offset) and a run with the same seed visits
// the samples in the same order on any machine and any number of threads.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/core/rng.h"

namespace selfsup::data {

// A uniformly random permutation of 0..n-1 (Fisher-Yates over n uniforms drawn from `gen`, which
// advances by n blocks).
std::vector<int64_t> randperm(int64_t n, Generator& gen);

}  // namespace selfsup::data
