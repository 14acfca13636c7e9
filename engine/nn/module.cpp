// Module mechanics: registration, dotted names, state_dict/load_state_dict, modes, dtype/device moves.
#include "engine/nn/module.h"

#include <map>
#include <set>

#include "engine/autograd/grad_mode.h"

namespace selfsup::nn {

namespace {
std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}
}  // namespace

void Module::check_new_name(const std::string& name) const {
  SELFSUP_CHECK(!name.empty() && name.find('.') == std::string::npos, type_name(),
                ": a registered name must be non-empty and contain no '.', got '", name, "'");
  auto taken = [&](const auto& list) {
    for (const auto& [n, _] : list)
      if (n == name) return true;
    return false;
  };
  SELFSUP_CHECK(!taken(params_) && !taken(buffers_) && !taken(children_), type_name(), ": name '", name,
                "' is already registered");
}

Tensor& Module::register_parameter(const std::string& name, Tensor* slot, Tensor value) {
  check_new_name(name);
  SELFSUP_CHECK(value.defined() && is_floating(value.dtype()), type_name(), ": parameter '", name,
                "' must be a defined floating tensor");
  // A parameter is a leaf of its own: detach so it never carries the history of its initialisation.
  *slot = value.detach();
  slot->set_requires_grad(true);
  params_.emplace_back(name, slot);
  return *slot;
}

Tensor& Module::register_buffer(const std::string& name, Tensor* slot, Tensor value) {
  check_new_name(name);
  SELFSUP_CHECK(value.defined(), type_name(), ": buffer '", name, "' must be a defined tensor");
  *slot = value.detach();
  buffers_.emplace_back(name, slot);
  return *slot;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  check_new_name(name);
  SELFSUP_CHECK(m != nullptr, type_name(), ": child module '", name, "' is null");
  m->train(training_);
  children_.emplace_back(name, std::move(m));
}

void Module::collect(const std::string& prefix, bool params, bool buffers, NamedTensors& out) const {
  if (params)
    for (const auto& [n, t] : params_) out.emplace_back(join(prefix, n), *t);
  if (buffers)
    for (const auto& [n, t] : buffers_) out.emplace_back(join(prefix, n), *t);
  for (const auto& [n, c] : children_) c->collect(join(prefix, n), params, buffers, out);
}

void Module::collect_slots(const std::string& prefix, std::vector<std::pair<std::string, Tensor*>>& out, bool params,
                           bool buffers) {
  if (params)
    for (auto& [n, t] : params_) out.emplace_back(join(prefix, n), t);
  if (buffers)
    for (auto& [n, t] : buffers_) out.emplace_back(join(prefix, n), t);
  for (auto& [n, c] : children_) c->collect_slots(join(prefix, n), out, params, buffers);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", true, false, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [_, t] : named_parameters()) out.push_back(t);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", false, true, out);
  return out;
}

NamedTensors Module::state_dict() const {
  NamedTensors out;
  collect("", true, true, out);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (auto& [n, c] : children_)
    for (auto& [sub, m] : c->named_modules()) out.emplace_back(sub.empty() ? n : n + "." + sub, m);
  return out;
}

void Module::load_state_dict(const NamedTensors& state, bool strict) {
  std::vector<std::pair<std::string, Tensor*>> slots;
  collect_slots("", slots, true, true);
  std::map<std::string, const Tensor*> given;
  for (const auto& [n, t] : state) {
    SELFSUP_CHECK(given.emplace(n, &t).second, "load_state_dict: key '", n, "' appears twice in the state");
  }
  // Check everything before writing anything, so a failed strict load leaves the module untouched.
  std::set<std::string> mine;
  std::vector<std::string> missing;
  for (auto& [n, slot] : slots) {
    mine.insert(n);
    auto it = given.find(n);
    if (it == given.end()) {
      missing.push_back(n);
      continue;
    }
    const Tensor& src = *it->second;
    SELFSUP_CHECK(src.defined(), "load_state_dict: key '", n, "' holds an undefined tensor");
    // Shape mismatches are errors even when not strict (as in PyTorch).
    SELFSUP_CHECK(src.sizes() == slot->sizes(), "load_state_dict: size mismatch for '", n, "': checkpoint has shape ",
                  shape_str(src.sizes()), ", model has shape ", shape_str(slot->sizes()));
  }
  if (strict) {
    if (!missing.empty()) {
      std::string list;
      for (const auto& m : missing) list += (list.empty() ? "'" : ", '") + m + "'";
      throw_error(str_cat("load_state_dict: missing key(s) in state: ", list, " (", missing.size(), " of ",
                          slots.size(), ")"));
    }
    std::string unexpected;
    for (const auto& [n, t] : state)
      if (!mine.count(n)) unexpected += (unexpected.empty() ? "'" : ", '") + n + "' " + shape_str(t.sizes());
    SELFSUP_CHECK(unexpected.empty(), "load_state_dict: unexpected key(s) in state: ", unexpected);
  }
  NoGradGuard no_grad;
  for (auto& [n, slot] : slots) {
    auto it = given.find(n);
    if (it == given.end()) continue;
    slot->copy_(it->second->detach());
  }
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [_, c] : children_) c->train(on);
}

void Module::zero_grad() {
  for (auto& [_, t] : named_parameters()) t.set_grad(Tensor());
}

void Module::to(DType dtype) {
  SELFSUP_CHECK(is_floating(dtype), type_name(), ".to: target dtype must be floating, got ", dtype_name(dtype));
  for (auto& [_, t] : params_) {
    if (t->dtype() == dtype) continue;
    Tensor converted = t->detach().to(dtype);
    converted.set_requires_grad(true);
    *t = converted;
  }
  for (auto& [_, t] : buffers_)
    if (is_floating(t->dtype()) && t->dtype() != dtype) *t = t->detach().to(dtype);
  for (auto& [_, c] : children_) c->to(dtype);
}

void Module::to(Device device) {
  // Like to(DType): the parameters are replaced by leaves on the device (build optimizers afterwards).
  for (auto& [_, t] : params_) {
    if (t->device() == device) continue;
    Tensor moved = t->detach().to(device);
    moved.set_requires_grad(true);
    *t = moved;
  }
  for (auto& [_, t] : buffers_)
    if (t->device() != device) *t = t->detach().to(device);
  for (auto& [_, c] : children_) c->to(device);
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [_, t] : named_parameters()) n += t.numel();
  return n;
}

const Tensor& find_tensor(const NamedTensors& list, const std::string& name) {
  for (const auto& [n, t] : list)
    if (n == name) return t;
  throw_error(str_cat("no tensor named '", name, "'"));
}

}  // namespace selfsup::nn
