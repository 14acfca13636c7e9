// The in-memory image dataset every reader produces (IDX, CIFAR, STL-10, image folders): uint8 pixels in
// NHWC order, as decoded, with one int64 label per image. Augmentation and the loader read this store.
// Declared in selfsup::data (where the IDX reader lives) and visible as selfsup::ImageDataset.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/tensor.h"

namespace selfsup {
namespace data {

struct ImageDataset {
  Tensor images;  // uint8 (N, H, W, C)
  Tensor labels;  // int64 (N), values in [0, num_classes); -1 where the format has none (STL-10 unlabeled)
  int64_t num_classes = 0;
  std::string name;
  std::vector<std::string> class_names;  // empty when the data set does not name its classes

  int64_t size() const { return images.defined() ? images.size(0) : 0; }
};

}  // namespace data

using data::ImageDataset;

}  // namespace selfsup
