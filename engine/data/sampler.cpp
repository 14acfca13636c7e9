// Fisher-Yates with the swap partner of position i chosen by the i-th double-precision uniform: the 53
// random bits make the bias of floor(u * (i + 1)) negligible for any data set that fits in memory.
#include "engine/data/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "engine/core/check.h"
#include "engine/core/tensor.h"

namespace selfsup::data {

std::vector<int64_t> randperm(int64_t n, Generator& gen) {
  SELFSUP_CHECK(n >= 0, "randperm: n must be non-negative, got ", n);
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  if (n < 2) return perm;
  Tensor u = Tensor::rand({n}, DType::f64, &gen);  // (n)
  const double* up = u.data_ptr<double>();
  for (int64_t i = n - 1; i > 0; --i) {
    int64_t j = std::min(i, static_cast<int64_t>(std::floor(up[i] * static_cast<double>(i + 1))));
    std::swap(perm[i], perm[j]);
  }
  return perm;
}

}  // namespace selfsup::data
