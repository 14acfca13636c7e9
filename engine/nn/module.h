// Module: the unit models are built from, with PyTorch's mechanics so that our state_dict keys are
// torchvision's keys. A module registers its parameters (tensors that require grad and that optimizers
// update), buffers (state that is saved but not trained: BN running stats, num_batches_tracked) and child
// modules, each under a name. Names compose with dots ("layer1.0.conv1.weight"), and every listing walks
// in registration order, so the order matches PyTorch's `named_parameters()` and `state_dict()`.
//
// Registration stores a pointer to the member Tensor (as PyTorch stores attributes), so `to(dtype)` and
// `load_state_dict` can replace or overwrite the tensors the layer's forward reads. Hence modules are not
// copyable or movable; they live behind std::shared_ptr.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/core/tensor.h"

namespace selfsup::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }
  // Short type name for error messages and printing ("Conv2d", "BatchNorm2d", ...).
  virtual std::string type_name() const = 0;

  // ---- named state, recursive, dotted names, registration order
  NamedTensors named_parameters() const;
  std::vector<Tensor> parameters() const;
  NamedTensors named_buffers() const;
  // PyTorch's order: per module its parameters, then its buffers, then its children.
  NamedTensors state_dict() const;
  // Copies values in place (under NoGradGuard; dtype converted, shape must match). strict: every key of
  // this module must be present and no other key may appear. Errors name the key and both shapes.
  void load_state_dict(const NamedTensors& state, bool strict = true);
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named_children() const { return children_; }
  // Every module below (and including) this one, with "" for this one.
  std::vector<std::pair<std::string, Module*>> named_modules();

  // ---- modes and housekeeping
  // Sets the training flag of this module and every child (BN: batch stats in training, running in eval).
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  // Drops every parameter's gradient (PyTorch's set_to_none=True: the next backward allocates fresh).
  void zero_grad();
  // Converts floating parameters and buffers (integer buffers such as num_batches_tracked stay int64).
  // Parameters are replaced by converted leaves that require grad; gradients are dropped.
  void to(DType dtype);
  // CPU only for now: moving to a CUDA device throws (tensors have no CUDA backend yet).
  void to(Device device);
  // Total number of parameter elements.
  int64_t num_parameters() const;

 protected:
  // Registers a member tensor as a parameter (sets requires_grad) or buffer; returns it for chaining.
  Tensor& register_parameter(const std::string& name, Tensor* slot, Tensor value);
  Tensor& register_buffer(const std::string& name, Tensor* slot, Tensor value);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  void check_new_name(const std::string& name) const;
  void collect(const std::string& prefix, bool params, bool buffers, NamedTensors& out) const;
  // Every registered slot (parameters and buffers), with dotted names, for in-place updates.
  void collect_slots(const std::string& prefix, std::vector<std::pair<std::string, Tensor*>>& out, bool params,
                     bool buffers);

  std::vector<std::pair<std::string, Tensor*>> params_;
  std::vector<std::pair<std::string, Tensor*>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// Looks up `name` in a NamedTensors list; throws selfsup::Error naming it when absent.
const Tensor& find_tensor(const NamedTensors& list, const std::string& name);

}  // namespace selfsup::nn
