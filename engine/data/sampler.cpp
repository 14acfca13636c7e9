// Fisher-Yates with the swap partner of position i chosen by the i-th double-precision uniform: the 53
// random bits make the bias of floor(u * (i + 1)) negligible for any data set that fits in memory.
#include "engine/data/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
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

std::vector<int64_t> class_balanced_subset(const Tensor& labels, int64_t num_classes, double fraction,
                                           uint64_t seed) {
  SELFSUP_CHECK(fraction > 0.0 && fraction <= 1.0, "label fraction must be in (0, 1], got ", fraction);
  SELFSUP_CHECK(labels.dim() == 1 && labels.dtype() == DType::i64, "label subset: labels must be int64 (N)");
  SELFSUP_CHECK(num_classes > 0, "label subset: the data set has no classes");
  const Tensor lab = labels.contiguous();
  const int64_t* lp = lab.data_ptr<int64_t>();
  std::vector<std::vector<int64_t>> members(static_cast<size_t>(num_classes));
  for (int64_t i = 0; i < lab.size(0); ++i) {
    SELFSUP_CHECK(lp[i] >= 0 && lp[i] < num_classes, "label subset: image ", i, " has label ", lp[i],
                  ", expected a class in [0, ", num_classes, ") (unlabelled data cannot be subsampled by class)");
    members[static_cast<size_t>(lp[i])].push_back(i);
  }
  std::vector<int64_t> out;
  for (int64_t c = 0; c < num_classes; ++c) {
    const std::vector<int64_t>& m = members[static_cast<size_t>(c)];
    if (m.empty()) continue;  // a class absent from this split has no share to keep
    const auto n_c = static_cast<double>(m.size());
    const auto keep = static_cast<int64_t>(std::llround(fraction * n_c));
    SELFSUP_CHECK(keep > 0, "label fraction ", fraction, " leaves class ", c, " (", m.size(),
                  " images) without a labelled image; the smallest fraction that keeps one is ", 0.5 / n_c);
    Generator gen(seed, static_cast<uint64_t>(c));
    const std::vector<int64_t> perm = randperm(static_cast<int64_t>(m.size()), gen);
    for (int64_t j = 0; j < keep; ++j) out.push_back(m[static_cast<size_t>(perm[static_cast<size_t>(j)])]);
  }
  std::sort(out.begin(), out.end());
  return out;
}

ImageDataset head_images(const ImageDataset& data, int64_t n) {
  SELFSUP_CHECK(n >= 0 && n <= data.size(), "head_images: ", n, " images of ", data.name, " (", data.size(), ")");
  ImageDataset out = data;
  if (out.images.defined()) out.images = out.images.narrow(0, 0, n);
  if (out.source) {
    std::vector<int64_t> ids(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = i;
    out.source = out.source->select(ids);
  }
  out.labels = out.labels.narrow(0, 0, n);
  return out;
}

ImageDataset select_images(const ImageDataset& data, const std::vector<int64_t>& ids) {
  if (data.source) {
    const Tensor labels = data.labels.contiguous();
    std::vector<int64_t> picked;
    for (int64_t i : ids) {
      SELFSUP_CHECK(i >= 0 && i < data.size(), "select_images: index ", i, " outside ", data.name, " (", data.size(),
                    " images)");
      picked.push_back(labels.data_ptr<int64_t>()[i]);
    }
    ImageDataset out;
    out.source = data.source->select(ids);
    out.labels = Tensor::from_vector(picked, {static_cast<int64_t>(ids.size())});
    out.num_classes = data.num_classes;
    out.class_names = data.class_names;
    out.name = data.name + " (" + std::to_string(ids.size()) + " of " + std::to_string(data.size()) + ")";
    return out;
  }
  const Tensor images = data.images.contiguous(), labels = data.labels.contiguous();
  const int64_t n = static_cast<int64_t>(ids.size()), row = images.numel() / std::max<int64_t>(data.size(), 1);
  std::vector<uint8_t> pixels(static_cast<size_t>(n * row));
  std::vector<int64_t> picked(static_cast<size_t>(n));
  const uint8_t* src = images.data_ptr<uint8_t>();
  for (int64_t j = 0; j < n; ++j) {
    const int64_t i = ids[static_cast<size_t>(j)];
    SELFSUP_CHECK(i >= 0 && i < data.size(), "select_images: index ", i, " outside ", data.name, " (", data.size(),
                  " images)");
    std::memcpy(pixels.data() + j * row, src + i * row, static_cast<size_t>(row));
    picked[static_cast<size_t>(j)] = labels.data_ptr<int64_t>()[i];
  }
  ImageDataset out;
  out.images = Tensor::from_blob(pixels.data(), {n, images.size(1), images.size(2), images.size(3)}, DType::u8);
  out.labels = Tensor::from_vector(picked, {n});
  out.num_classes = data.num_classes;
  out.class_names = data.class_names;
  out.name = data.name + " (" + std::to_string(ids.size()) + " of " + std::to_string(data.size()) + ")";
  return out;
}

}  // namespace selfsup::data
