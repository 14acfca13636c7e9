// Optimizer: parameter groups, per-parameter state, and the public step()/zero_grad()/state_dict() that every
// optimizer shares. Concrete optimizers (sgd.h, lars.h, adamw.h) implement step_group_impl(); the base runs it
// under NoGradGuard so the in-place updates record no history and are allowed on parameters that require grad.
//
// State export: state_dict() flattens everything a resumed run needs into named tensors (scalars are 0-d
// tensors), so a checkpoint (engine/io/checkpoint.h) can store it under the prefix "optim.":
//   group.<g>.lr, group.<g>.initial_lr, group.<g>.weight_decay   float64 scalars
//   state.<g>.<i>.step                                           int64 scalar (updates applied to that param)
//   state.<g>.<i>.<buffer>                                       param-shaped (momentum_buffer, exp_avg, ...)
//   steps                                                        int64 scalar (calls to step())
// <g> is the group index, <i> the parameter's index within its group (PyTorch's order).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/core/tensor.h"
#include "engine/core/tensor_map.h"

namespace selfsup {

struct ParamGroup {
  std::vector<Tensor> params;
  // Negative = the optimizer's default (from its options). Resolved in the optimizer's constructor.
  double lr = -1;
  double weight_decay = -1;
  // LARS: no trust-ratio scaling and no weight decay for this group (biases, BN parameters). LARS also
  // excludes every 1-D parameter by default (LarsOptions::exclude_1d). Other optimizers ignore it.
  bool exclude_from_adaptation = false;
  // The lr a schedule scales: set to lr at construction; set_lr_factor(f) makes lr = initial_lr * f.
  double initial_lr = -1;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient (parameters without .grad are skipped, as in PyTorch).
  void step();
  // Clears gradients: set_to_none drops them (PyTorch >= 2.0's default), otherwise zero-fills them.
  void zero_grad(bool set_to_none = true);

  std::vector<ParamGroup>& param_groups() { return groups_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  // Every group's lr = its initial_lr * factor (schedules return a factor or an lr; see schedule.h).
  void set_lr_factor(double factor);
  // Every group's lr = lr (single-group use).
  void set_lr(double lr);
  int64_t steps() const { return steps_; }
  virtual const char* name() const = 0;

  // Everything needed to resume (see the header comment), as named tensors owned by the caller (clones).
  TensorMap state_dict() const;
  // Replaces the state. Validates everything before changing anything: an unexpected or missing key, a group
  // or parameter index out of range, or a buffer whose shape differs from its parameter throws selfsup::Error
  // naming the key (and both shapes).
  void load_state_dict(const TensorMap& state);

 protected:
  // Resolves defaults and validates the groups (non-empty, defined floating tensors, lr/weight decay >= 0).
  Optimizer(std::vector<ParamGroup> groups, double default_lr, double default_weight_decay);
  // Updates group g's parameters (runs with grad mode off). Use buffer() for per-parameter state.
  virtual void step_group_impl(size_t g) = 0;
  // The state buffers this optimizer keeps per parameter (for load_state_dict validation).
  virtual std::vector<std::string> buffer_names() const = 0;

  struct ParamState {
    std::map<std::string, Tensor> buffers;
    int64_t step = 0;
  };
  ParamState& state(size_t g, size_t i) { return state_[g][i]; }
  // The named buffer of parameter (g, i); `created` is set when it did not exist yet (then it is zeros).
  Tensor& buffer(size_t g, size_t i, const std::string& name, bool* created = nullptr);

 private:
  std::vector<ParamGroup> groups_;
  std::vector<std::vector<ParamState>> state_;  // [group][param]
  int64_t steps_ = 0;
};

// ||t||_2 over all elements, accumulated in float64.
double l2_norm(const Tensor& t);

}  // namespace selfsup
