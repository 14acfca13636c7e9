// Random order of a data set: a permutation drawn from the engine's counter-based generator, so the
// order of every epoch is a pure function of (seed, stream, offset) and a run with the same seed visits
// the samples in the same order on any machine and any number of threads.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/core/rng.h"
#include "engine/core/tensor.h"
#include "engine/data/dataset.h"

namespace selfsup::data {

// A uniformly random permutation of 0..n-1 (Fisher-Yates over n uniforms drawn from `gen`, which
// advances by n blocks).
std::vector<int64_t> randperm(int64_t n, Generator& gen);

// The labelled subset of semi-supervised evaluation (the "1% / 10% of labels" of the SSL literature):
// from each class c with n_c images, round(fraction * n_c) of them, drawn without replacement by a
// permutation of that class's images from Generator(seed, c). Class-balanced (every class keeps its share),
// deterministic per seed, and a pure function of (labels, fraction, seed), so the subset is reproducible
// from the two numbers alone. Returns ascending indices into `labels` (int64 (N), values in
// [0, num_classes)). fraction must be in (0, 1]; a fraction that leaves a class without any image is an
// error naming the class and the smallest fraction that would not.
std::vector<int64_t> class_balanced_subset(const Tensor& labels, int64_t num_classes, double fraction,
                                           uint64_t seed);

// The images and labels at `ids` (in that order), with the data set's classes and a name that says it is a
// subset. A copy: (ids.size(), H, W, C) uint8; of an ImageSource, a source of those images (nothing decoded).
ImageDataset select_images(const ImageDataset& data, const std::vector<int64_t>& ids);
// The first n images (n <= size), sharing memory with `data` (or its image source's state).
ImageDataset head_images(const ImageDataset& data, int64_t n);

}  // namespace selfsup::data
