// The linear probe the short training runs of tests/ssl judge an encoder by: test top-1 of a linear classifier
// on frozen features of the first images of the run's data set (the demo's probe, on a few thousand images).
#pragma once

#include <cstdint>

#include "engine/autograd/autocast.h"
#include "engine/data/spec.h"
#include "ssl/eval/features.h"
#include "ssl/eval/linear_probe.h"
#include "ssl/trainer/config.h"

namespace selfsup::test {

// Features of the first n_train training and n_test test images of c.data (c.image_size, c.recipe's
// normalisation), computed under `features` precision (autocast); the probe itself runs in float32.
inline double probe_top1(models::ResNet& encoder, const ssl::TrainConfig& c, int64_t n_train, int64_t n_test,
                         int64_t epochs = 20, DType features = DType::f32) {
  const ImageDataset train = data::load_dataset(c.data, "train"), test = data::load_dataset(c.data, "test");
  Tensor ftr, fte;
  {
    AutocastGuard autocast(features);
    ftr = eval::extract_features(encoder, train, c.image_size, c.recipe, n_train);
    fte = eval::extract_features(encoder, test, c.image_size, c.recipe, n_test);
  }
  eval::LinearProbeOptions po;
  po.epochs = epochs;
  return eval::linear_probe(ftr, train.labels.narrow(0, 0, n_train), fte, test.labels.narrow(0, 0, n_test),
                            train.num_classes, po)
      .test_top1;
}

}  // namespace selfsup::test
