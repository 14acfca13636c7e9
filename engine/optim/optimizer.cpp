// Optimizer base: group resolution, step/zero_grad, and the named-tensor state export/import.
#include "engine/optim/optimizer.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "engine/autograd/grad_mode.h"
#include "engine/ops/ops.h"

namespace selfsup {

Optimizer::Optimizer(std::vector<ParamGroup> groups, double default_lr, double default_weight_decay)
    : groups_(std::move(groups)) {
  SELFSUP_CHECK(!groups_.empty(), "optimizer: no parameter groups");
  for (size_t g = 0; g < groups_.size(); ++g) {
    ParamGroup& pg = groups_[g];
    SELFSUP_CHECK(!pg.params.empty(), "optimizer: parameter group ", g, " has no parameters");
    if (pg.lr < 0) pg.lr = default_lr;
    if (pg.weight_decay < 0) pg.weight_decay = default_weight_decay;
    SELFSUP_CHECK(pg.lr >= 0 && std::isfinite(pg.lr), "optimizer: group ", g, ": invalid learning rate ", pg.lr);
    SELFSUP_CHECK(pg.weight_decay >= 0, "optimizer: group ", g, ": invalid weight decay ", pg.weight_decay);
    if (pg.initial_lr < 0) pg.initial_lr = pg.lr;
    for (size_t i = 0; i < pg.params.size(); ++i) {
      const Tensor& p = pg.params[i];
      SELFSUP_CHECK(p.defined(), "optimizer: group ", g, " parameter ", i, " is undefined");
      SELFSUP_CHECK(p.dtype() == DType::f32 || p.dtype() == DType::f64, "optimizer: group ", g, " parameter ", i,
                    " has dtype ", dtype_name(p.dtype()), "; parameters must be float32 or float64");
      SELFSUP_CHECK(p.is_leaf(), "optimizer: group ", g, " parameter ", i, " is not a leaf tensor");
    }
    state_.emplace_back(pg.params.size());
  }
  // The same tensor in two places would be updated twice per step.
  std::set<const TensorImpl*> seen;
  for (const ParamGroup& pg : groups_)
    for (const Tensor& p : pg.params)
      SELFSUP_CHECK(seen.insert(p.unsafe_impl()).second, "optimizer: a parameter (shape ", shape_str(p.sizes()),
                    ") appears more than once in the parameter groups");
}

void Optimizer::step() {
  NoGradGuard no_grad;
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      const Tensor& p = groups_[g].params[i];
      Tensor gr = p.grad();
      if (!gr.defined()) continue;
      SELFSUP_CHECK(gr.sizes() == p.sizes(), name(), ": group ", g, " parameter ", i, ": gradient shape ",
                    shape_str(gr.sizes()), " differs from parameter shape ", shape_str(p.sizes()));
    }
    step_group_impl(g);
  }
  ++steps_;
}

void Optimizer::zero_grad(bool set_to_none) {
  NoGradGuard no_grad;
  for (ParamGroup& pg : groups_)
    for (Tensor& p : pg.params) {
      if (set_to_none) {
        p.set_grad(Tensor());
      } else if (p.grad().defined()) {
        Tensor gr = p.grad();
        gr.zero_();
      }
    }
}

void Optimizer::set_lr_factor(double factor) {
  for (ParamGroup& pg : groups_) pg.lr = pg.initial_lr * factor;
}

void Optimizer::set_lr(double lr) {
  for (ParamGroup& pg : groups_) pg.lr = lr;
}

Tensor& Optimizer::buffer(size_t g, size_t i, const std::string& buf_name, bool* created) {
  auto& buffers = state_[g][i].buffers;
  auto it = buffers.find(buf_name);
  if (created) *created = (it == buffers.end());
  if (it == buffers.end()) {
    const Tensor& p = groups_[g].params[i];
    it = buffers.emplace(buf_name, Tensor::zeros(p.sizes(), p.dtype(), p.device())).first;
  }
  return it->second;
}

// ---------------------------------------------------------------- state export / import

namespace {
Tensor f64_scalar(double v) { return Tensor::scalar(v, DType::f64); }
Tensor i64_scalar(int64_t v) { return Tensor::from_vector(std::vector<int64_t>{v}, {}); }

// Splits "a.b.c" on dots.
std::vector<std::string> split_dots(const std::string& s) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    size_t dot = s.find('.', start);
    parts.push_back(s.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

// Parses a non-negative decimal index; -1 when `s` is not one.
int64_t parse_index(const std::string& s) {
  if (s.empty() || s.size() > 9) return -1;
  for (char c : s)
    if (c < '0' || c > '9') return -1;
  return std::stoll(s);
}

double scalar_value(const std::string& key, const Tensor& t) {
  SELFSUP_CHECK(t.numel() == 1, "optimizer load_state_dict: '", key, "' must be a scalar, got shape ",
                shape_str(t.sizes()));
  return t.item();
}
}  // namespace

TensorMap Optimizer::state_dict() const {
  TensorMap out;
  out["steps"] = i64_scalar(steps_);
  for (size_t g = 0; g < groups_.size(); ++g) {
    const std::string gp = str_cat("group.", g, ".");
    out[gp + "lr"] = f64_scalar(groups_[g].lr);
    out[gp + "initial_lr"] = f64_scalar(groups_[g].initial_lr);
    out[gp + "weight_decay"] = f64_scalar(groups_[g].weight_decay);
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      const ParamState& st = state_[g][i];
      const std::string sp = str_cat("state.", g, ".", i, ".");
      if (st.step > 0) out[sp + "step"] = i64_scalar(st.step);
      for (const auto& [bname, buf] : st.buffers) out[sp + bname] = buf.detach().clone();
    }
  }
  return out;
}

void Optimizer::load_state_dict(const TensorMap& sd) {
  const std::vector<std::string> known = buffer_names();
  std::vector<std::vector<ParamState>> new_state(groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g) new_state[g].resize(groups_[g].params.size());
  struct GroupScalars {
    double lr = -1, initial_lr = -1, weight_decay = -1;
  };
  std::vector<GroupScalars> scalars(groups_.size());
  int64_t steps = -1;

  for (const auto& [key, t] : sd) {
    SELFSUP_CHECK(t.defined(), "optimizer load_state_dict: '", key, "' is undefined");
    std::vector<std::string> parts = split_dots(key);
    if (key == "steps") {
      steps = static_cast<int64_t>(scalar_value(key, t));
      continue;
    }
    if (parts.size() == 3 && parts[0] == "group") {
      int64_t g = parse_index(parts[1]);
      SELFSUP_CHECK(g >= 0 && g < static_cast<int64_t>(groups_.size()), "optimizer load_state_dict: unexpected key '",
                    key, "': this ", name(), " optimizer has ", groups_.size(), " parameter group(s)");
      double v = scalar_value(key, t);
      if (parts[2] == "lr") scalars[g].lr = v;
      else if (parts[2] == "initial_lr") scalars[g].initial_lr = v;
      else if (parts[2] == "weight_decay") scalars[g].weight_decay = v;
      else throw_error(str_cat("optimizer load_state_dict: unexpected key '", key, "'"));
      continue;
    }
    SELFSUP_CHECK(parts.size() == 4 && parts[0] == "state", "optimizer load_state_dict: unexpected key '", key, "'");
    int64_t g = parse_index(parts[1]), i = parse_index(parts[2]);
    SELFSUP_CHECK(g >= 0 && g < static_cast<int64_t>(groups_.size()), "optimizer load_state_dict: unexpected key '",
                  key, "': this ", name(), " optimizer has ", groups_.size(), " parameter group(s)");
    SELFSUP_CHECK(i >= 0 && i < static_cast<int64_t>(groups_[g].params.size()),
                  "optimizer load_state_dict: unexpected key '", key, "': group ", g, " has ",
                  groups_[g].params.size(), " parameter(s)");
    const Tensor& p = groups_[g].params[i];
    ParamState& st = new_state[g][i];
    if (parts[3] == "step") {
      st.step = static_cast<int64_t>(scalar_value(key, t));
      continue;
    }
    SELFSUP_CHECK(std::find(known.begin(), known.end(), parts[3]) != known.end(),
                  "optimizer load_state_dict: unexpected key '", key, "': ", name(), " keeps no buffer '", parts[3],
                  "'");
    SELFSUP_CHECK(t.sizes() == p.sizes(), "optimizer load_state_dict: '", key, "' has shape ", shape_str(t.sizes()),
                  " but its parameter has shape ", shape_str(p.sizes()));
    Tensor buf = Tensor::empty(p.sizes(), p.dtype(), p.device());
    {
      NoGradGuard no_grad;
      buf.copy_(t.detach());
    }
    st.buffers[parts[3]] = buf;
  }
  SELFSUP_CHECK(steps >= 0, "optimizer load_state_dict: missing key 'steps'");
  for (size_t g = 0; g < groups_.size(); ++g) {
    SELFSUP_CHECK(scalars[g].lr >= 0, "optimizer load_state_dict: missing key 'group.", g, ".lr'");
    SELFSUP_CHECK(scalars[g].initial_lr >= 0, "optimizer load_state_dict: missing key 'group.", g, ".initial_lr'");
    SELFSUP_CHECK(scalars[g].weight_decay >= 0, "optimizer load_state_dict: missing key 'group.", g,
                  ".weight_decay'");
  }
  // Everything validated: commit.
  for (size_t g = 0; g < groups_.size(); ++g) {
    groups_[g].lr = scalars[g].lr;
    groups_[g].initial_lr = scalars[g].initial_lr;
    groups_[g].weight_decay = scalars[g].weight_decay;
  }
  state_ = std::move(new_state);
  steps_ = steps;
}

double l2_norm(const Tensor& t) {
  NoGradGuard no_grad;
  Tensor d = t.detach();
  if (d.dtype() != DType::f64) d = d.to(DType::f64);
  return std::sqrt(sum(square(d)).item());
}

}  // namespace selfsup
