// IDX reader for MNIST-style data sets (MNIST, Fashion-MNIST): images in idx3 files (magic 0x00000803,
// uint8, N x H x W) and labels in idx1 files (magic 0x00000801, uint8, N), gzip-compressed or raw.
// Everything is read into memory at once: Fashion-MNIST's training images are 47 MB.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/tensor.h"
#include "engine/data/dataset.h"

namespace selfsup::data {

// The largest payload a header may claim (16 GiB; Fashion-MNIST's training images are 47 MB), and the
// largest product of its non-zero dims. A larger claim is refused before anything past the header is read.
inline constexpr uint64_t kMaxIdxBytes = uint64_t{1} << 34;

// Reads a whole IDX file (gzip-compressed or raw: zlib reads both) and checks its header against
// `expected_dims` and the file's length. Returns the dimensions; `data` receives the uint8 payload.
// Throws selfsup::Error naming the file on a missing file, a wrong magic number, a claim past kMaxIdxBytes,
// truncated or trailing data. Memory follows the bytes read (at most twice them), never the claim alone.
std::vector<int64_t> read_idx_u8(const std::string& path, int expected_dims, std::vector<uint8_t>& data);

// Images (idx3) and labels (idx1) of the same data set; the counts must agree. num_classes is the
// largest label + 1.
ImageDataset load_idx(const std::string& images_path, const std::string& labels_path, const std::string& name = "");

// The default install location of Debian's dataset-fashion-mnist package.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

// Fashion-MNIST's train (60000) or test (10000) split. `root` is a directory holding
// {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz], or "fashion-mnist" for kFashionMnistDir.
ImageDataset load_fashion_mnist(const std::string& root, bool train);

}  // namespace selfsup::data
