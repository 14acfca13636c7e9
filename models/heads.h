// Heads that sit on an encoder's features. They are Sequentials, so their keys are PyTorch's
// nn.Sequential keys ("0.weight", "1.running_mean", ...) and a PyTorch user can rebuild them with the
// same nn.Sequential.
#pragma once
#include <memory>

#include "engine/nn/layers.h"

namespace selfsup::models {

// SimCLR projection head g(h): Linear(in, hidden, no bias) - BatchNorm1d(hidden) - ReLU - Linear(hidden, out).
// The first Linear has no bias because the BN right after it would cancel it (SimCLR's own code does the
// same). (N, in) -> (N, out). Keys: 0.weight, 1.{weight,bias,running_*,num_batches_tracked}, 3.{weight,bias}.
std::shared_ptr<nn::Sequential> simclr_projection_head(int64_t in, int64_t hidden, int64_t out,
                                                       Generator& gen = default_generator());

// MoCo v2 MLP head: Linear(in, hidden) - ReLU - Linear(hidden, out), both with bias, as in MoCo v2's code
// (which replaces the encoder's fc by this). (N, in) -> (N, out). Keys: 0.{weight,bias}, 2.{weight,bias}.
std::shared_ptr<nn::Sequential> moco_v2_head(int64_t in, int64_t hidden, int64_t out,
                                             Generator& gen = default_generator());

// Linear classifier for linear evaluation on frozen features: Linear(in, classes) with weight N(0, 0.01^2)
// and bias 0, as MoCo's and SimCLR's linear-probe code initialise it. Keys: weight, bias.
std::shared_ptr<nn::Linear> linear_classifier(int64_t in, int64_t num_classes, Generator& gen = default_generator());

}  // namespace selfsup::models
