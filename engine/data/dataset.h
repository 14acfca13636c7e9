// The image dataset every reader produces: IDX, CIFAR and STL-10 hold uint8 pixels in NHWC order in memory;
// an image folder holds its files, decoded on demand at their own sizes (an ImageSource). One int64 label
// per image either way. Augmentation, the loader and the feature extraction read both.
// Declared in selfsup::data (where the IDX reader lives) and visible as selfsup::ImageDataset.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/tensor.h"

namespace selfsup {
namespace data {

// Images decoded when asked for, each at its own size: the photos of an image folder differ in size, and 100k+
// of them would not fit in memory decoded. Thread-safe (the loader's workers decode concurrently).
class ImageSource {
 public:
  virtual ~ImageSource() = default;
  virtual int64_t size() const = 0;
  virtual int channels() const = 0;  // C of every image load() returns
  // Image i as uint8 (h_i, w_i, C), a fresh tensor.
  virtual Tensor load(int64_t i) const = 0;
  // The images at `ids`, in that order (sharing whatever state the source keeps).
  virtual std::shared_ptr<const ImageSource> select(const std::vector<int64_t>& ids) const = 0;
};

struct ImageDataset {
  Tensor images;  // uint8 (N, H, W, C); undefined when `source` holds the images
  std::shared_ptr<const ImageSource> source;  // images of any size, decoded on demand (image folders)
  Tensor labels;  // int64 (N), values in [0, num_classes); -1 where the format has none (STL-10 unlabeled)
  int64_t num_classes = 0;
  std::string name;
  std::vector<std::string> class_names;  // empty when the data set does not name its classes

  int64_t size() const { return images.defined() ? images.size(0) : (source ? source->size() : 0); }
  int64_t channels() const { return images.defined() ? images.size(3) : (source ? source->channels() : 0); }
};

}  // namespace data

using data::ImageDataset;
using data::ImageSource;

}  // namespace selfsup
