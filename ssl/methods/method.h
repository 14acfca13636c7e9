// The interface every SSL method implements for the trainer: make the loss of one batch, then run whatever
// must follow the optimizer step (EMA of a momentum encoder, queue or memory-bank updates). A method is a
// Module, so its parameters, buffers and state_dict (encoder + heads + registered buffers such as a queue)
// come for free and are checkpointed under model.*; state that is not a tensor of the module (a second
// optimizer, a queue pointer kept as an integer) goes through method_state() into the checkpoint's method.*.
#pragma once
#include <string>
#include <vector>

#include "engine/core/tensor_map.h"
#include "engine/nn/module.h"
#include "models/resnet.h"

namespace selfsup::ssl {

// What the trainer hands a method for one optimizer step.
struct StepInput {
  const std::vector<Tensor>& views;  // num_views() float (B, C, h, w) tensors, on the model's device
  const Tensor& indices;             // int64 (B) on the CPU: dataset indices (memory-bank rows, per-sample seeds)
  int64_t step;                      // the optimizer step being taken (0-based): counter for the method's RNG
  double lr_factor;                  // the schedule's factor at this step, for optimizers the method owns
};

struct StepResult {
  Tensor loss;      // scalar, differentiable
  double accuracy;  // the method's monitor in [0, 1] (SimCLR: positive pair ranked first)
};

class Method : public nn::Module {
 public:
  virtual StepResult training_step(const StepInput& in) = 0;
  virtual void after_step() {}
  virtual models::ResNet& encoder() = 0;
  virtual std::string method_name() const = 0;  // the --method value
  // How many augmented views of each image the loader makes (SimCLR, MoCo: 2; pretext tasks: 1).
  virtual int num_views() const { return 2; }
  // The tensors the trainer's optimizer updates. A momentum encoder's parameters are parameters of the
  // module (so they are saved and moved with it) but are not trained: such a method leaves them out here.
  virtual std::vector<Tensor> trainable_parameters() const { return parameters(); }
  // State a checkpoint carries beyond state_dict(), and its restore (strict: a missing entry is an error).
  virtual TensorMap method_state() const { return {}; }
  virtual void load_method_state(const TensorMap& state) { (void)state; }
  // Names for the progress line and the plot: the loss panel's title and what `accuracy` measures.
  virtual std::string loss_title() const { return type_name() + " loss"; }
  virtual std::string accuracy_name() const { return "acc"; }
  // The encoder is evaluated for features (kNN, linear probe); methods don't need a forward().
  Tensor forward(const Tensor& x) override { return encoder().forward_features(x); }
};

}  // namespace selfsup::ssl
