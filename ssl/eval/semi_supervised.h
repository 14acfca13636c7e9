// The labelled training set of semi-supervised evaluation (`--label-fraction F` of eval linear, knn and
// finetune): a class-balanced, seeded fraction of the training labels (data::class_balanced_subset), whose
// indices are written next to the result so the number can be reproduced and audited.
#pragma once
#include <cstdint>
#include <string>

#include "engine/data/dataset.h"

namespace selfsup::eval {

// The class-balanced fraction of the first `limit` (0 = all) images of `train`, drawn with `seed`; its indices
// (int64 (n), ascending) go to out_dir/label-subset-<F>-seed<S>.npy, and one line says so on stdout.
ImageDataset labelled_subset(const ImageDataset& train, int64_t limit, double fraction, uint64_t seed,
                             const std::string& out_dir);

}  // namespace selfsup::eval
