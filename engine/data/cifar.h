// CIFAR-10 and CIFAR-100 in their binary distribution (cifar-10-batches-bin/, cifar-100-binary/).
// Records: CIFAR-10 <1 label byte><3072 pixel bytes>, CIFAR-100 <coarse><fine><3072>; pixels are planar
// (1024 R, 1024 G, 1024 B, each 32x32 row-major) and become uint8 (N, 32, 32, 3).
#pragma once
#include <string>
#include <vector>

#include "engine/data/dataset.h"

namespace selfsup {

enum class CifarKind { cifar10, cifar100 };

// `path` is a directory (cifar-10: data_batch_1..5.bin for train, test_batch.bin for test; cifar-100:
// train.bin / test.bin) or one .bin file (then `train` is ignored). CIFAR-100 labels are the fine (100)
// classes, or the coarse (20) ones when `coarse`. Errors name the file: missing, or a size that is not a
// multiple of the record (3073 / 3074 bytes), or a label out of range.
ImageDataset load_cifar(CifarKind kind, const std::string& path, bool train, bool coarse = false);
// Reads the given record files in order into one dataset.
ImageDataset load_cifar_files(CifarKind kind, const std::vector<std::string>& files, bool coarse = false);

}  // namespace selfsup
