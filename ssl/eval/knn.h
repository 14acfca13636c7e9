// k-nearest-neighbour evaluation of frozen features (InstDisc, Wu et al. 2018): cosine similarity, the k
// most similar training samples vote for their class with weight exp(sim / T).
#pragma once
#include <cstdint>

#include "engine/core/tensor.h"

namespace selfsup::eval {

struct KnnOptions {
  int64_t k = 200;
  double temperature = 0.07;
  int64_t chunk = 1024;  // test rows per similarity block: memory is chunk x N_train
};

// train_features (N, D), train_labels int64 (N) in [0, num_classes), test_features (M, D), test_labels (M).
// Returns top-1 accuracy in [0, 1].
double knn_accuracy(const Tensor& train_features, const Tensor& train_labels, const Tensor& test_features,
                    const Tensor& test_labels, int64_t num_classes, const KnnOptions& opt = {});

}  // namespace selfsup::eval
