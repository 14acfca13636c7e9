// Linear probe on frozen features: standardise the features with the training set's mean and std, then
// train one linear layer with cross-entropy (SGD with momentum, cosine schedule, full passes over shuffled
// mini-batches) and report train and test top-1.
#pragma once
#include <cstdint>
#include <functional>

#include "engine/core/tensor.h"

namespace selfsup::eval {

struct LinearProbeOptions {
  int64_t epochs = 30;
  int64_t batch = 256;
  double lr = 0.1;
  double weight_decay = 1e-4;
  uint64_t seed = 0;
  // Called after every epoch with (epoch, train loss); may be empty.
  std::function<void(int64_t, double)> on_epoch;
};

struct LinearProbeResult {
  double train_top1;
  double test_top1;
};

LinearProbeResult linear_probe(const Tensor& train_features, const Tensor& train_labels, const Tensor& test_features,
                               const Tensor& test_labels, int64_t num_classes, const LinearProbeOptions& opt = {});

}  // namespace selfsup::eval
