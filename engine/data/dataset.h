// The in-memory image dataset every reader produces (IDX, CIFAR, STL-10, image folders): uint8 pixels in
// NHWC order, as decoded, with one int64 label per image. Augmentation and the loader read this store.
#pragma once
#include <cstdint>
#include <string>

#include "engine/core/tensor.h"

namespace selfsup {

struct ImageDataset {
  Tensor images;  // uint8 (N, H, W, C)
  Tensor labels;  // int64 (N); -1 where the format has no label (STL-10 unlabeled)
  int64_t num_classes = 0;
  std::string name;
};

}  // namespace selfsup
