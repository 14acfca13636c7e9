// The interface every SSL method implements for the trainer: make the loss of one batch of views, then
// run whatever must follow the optimizer step (EMA of a momentum encoder, queue updates). A method is a
// Module, so its parameters, buffers and state_dict (encoder + heads + method state) come for free.
#pragma once
#include <string>
#include <vector>

#include "engine/nn/module.h"
#include "models/resnet.h"

namespace selfsup::ssl {

struct StepResult {
  Tensor loss;      // scalar, differentiable
  double accuracy;  // the method's monitor in [0, 1] (SimCLR: positive pair ranked first)
};

class Method : public nn::Module {
 public:
  // views: one float (B, C, h, w) tensor per augmented view of the same B images.
  virtual StepResult training_step(const std::vector<Tensor>& views) = 0;
  virtual void after_step() {}
  virtual models::ResNet& encoder() = 0;
  virtual std::string method_name() const = 0;
  // The encoder is evaluated for features (kNN, linear probe); methods don't need a forward().
  Tensor forward(const Tensor& x) override { return encoder().forward_features(x); }
};

}  // namespace selfsup::ssl
