// The backward engine. Three steps, as in micrograd but without recursion (a 10,000-layer chain must
// not overflow the stack): (1) walk the graph from the roots with an explicit stack and count, for each
// node, how many edges point at it; (2) seed the roots' gradient buffers; (3) run nodes whose count has
// dropped to zero (Kahn's topological order), summing each node's incoming gradients before it runs, so
// every node runs exactly once per backward and a leaf's .grad is final when its AccumulateGrad runs.
#include <unordered_map>
#include <unordered_set>

#include "engine/autograd/grad_mode.h"
#include "engine/autograd/node.h"
#include "engine/ops/ops.h"

namespace selfsup {

namespace {
thread_local bool grad_mode_enabled = true;
}
bool GradMode::enabled() { return grad_mode_enabled; }
void GradMode::set_enabled(bool e) { grad_mode_enabled = e; }

namespace autograd {

SavedTensor::SavedTensor(const Tensor& t) {
  if (t.defined()) {
    data_ = t.detach();
    version_ = t.version();
  }
}

Tensor SavedTensor::unpack(const std::string& op) const {
  if (data_.defined()) {
    SELFSUP_CHECK(data_.version() == version_, "backward of '", op,
                  "': a tensor it saved (shape ", shape_str(data_.sizes()),
                  ") was modified by an in-place operation after the forward pass (version ", data_.version(),
                  ", expected ", version_, ")");
  }
  return data_;
}

std::vector<Tensor> FunctionNode::apply(const std::vector<Tensor>& grad_outputs) {
  SELFSUP_CHECK(!released_, "backward through '", name(),
                "' a second time: its saved tensors were freed by the first backward; pass retain_graph=true "
                "to the first backward");
  return fn_(grad_outputs);
}

std::vector<Tensor> AccumulateGrad::apply(const std::vector<Tensor>& grad_outputs) {
  const Tensor& g = grad_outputs[0];
  Tensor leaf(leaf_);
  if (!leaf.grad().defined()) {
    // Own the buffer: the incoming gradient may be a broadcast view or shared with another node.
    bool own = g.is_contiguous() && g.storage().use_count() == 1 && g.offset() == 0;
    leaf.set_grad(own ? g.detach() : g.detach().clone());
  } else {
    leaf.grad().add_(g);
  }
  Tensor final_grad = leaf.grad();
  for (auto& hook : leaf_->grad_ready_hooks) hook(final_grad);
  return {};
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!GradMode::enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

namespace {

std::shared_ptr<Node> grad_accumulator(const Tensor& leaf) {
  TensorImpl* impl = leaf.unsafe_impl();
  auto acc = impl->grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(leaf.impl_ptr());
    acc->outputs.push_back({leaf.sizes(), leaf.dtype(), leaf.device()});
    impl->grad_accumulator = acc;
  }
  return acc;
}

Edge edge_of(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return {};
  if (t.grad_fn()) return {t.grad_fn(), t.unsafe_impl()->output_nr};
  return {grad_accumulator(t), 0};
}

}  // namespace

void record(const char* name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
            BackwardFn fn) {
  if (!needs_grad(inputs)) return;
  auto node = std::make_shared<FunctionNode>(name, std::move(fn));
  node->next_edges.reserve(inputs.size());
  for (const Tensor& in : inputs) node->next_edges.push_back(edge_of(in));
  for (size_t i = 0; i < outputs.size(); ++i) {
    TensorImpl* impl = outputs[i].unsafe_impl();
    node->outputs.push_back({outputs[i].sizes(), outputs[i].dtype(), outputs[i].device()});
    impl->grad_fn = node;
    impl->output_nr = static_cast<uint32_t>(i);
    impl->requires_grad = true;
  }
}

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph) {
  NoGradGuard no_grad;
  // (1) dependency counts over everything reachable from the roots
  std::vector<Edge> root_edges;
  for (const Tensor& r : roots) root_edges.push_back(edge_of(r));
  std::unordered_map<Node*, int> deps;
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack;
  for (const Edge& e : root_edges)
    if (e.fn && seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next_edges) {
      if (!e.fn) continue;
      ++deps[e.fn.get()];
      if (seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
    }
  }
  // (2) seed the roots' buffers
  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  auto accumulate = [&](Node* n, uint32_t slot, const Tensor& g) {
    auto& buf = buffers[n];
    if (buf.empty()) buf.resize(n->outputs.size());
    const OutputMeta& meta = n->outputs[slot];
    SELFSUP_CHECK(g.sizes() == meta.sizes, "backward: gradient of shape ", shape_str(g.sizes()), " for output ",
                  slot, " of '", n->name(), "', expected ", shape_str(meta.sizes));
    buf[slot] = buf[slot].defined() ? add(buf[slot], g) : g;
  };
  std::vector<std::shared_ptr<Node>> ready;
  for (size_t i = 0; i < root_edges.size(); ++i) {
    const Edge& e = root_edges[i];
    if (!e.fn) continue;
    accumulate(e.fn.get(), e.input_nr, grads[i]);
  }
  for (const Edge& e : root_edges) {
    if (e.fn && deps[e.fn.get()] == 0) {
      deps[e.fn.get()] = -1;  // queued once
      ready.push_back(e.fn);
    }
  }
  // (3) run in topological order
  while (!ready.empty()) {
    std::shared_ptr<Node> node = std::move(ready.back());
    ready.pop_back();
    std::vector<Tensor> gin = std::move(buffers[node.get()]);
    buffers.erase(node.get());
    gin.resize(node->outputs.size());
    for (size_t i = 0; i < gin.size(); ++i) {
      if (!gin[i].defined()) {
        const OutputMeta& m = node->outputs[i];
        gin[i] = Tensor::zeros(m.sizes, m.dtype, m.device);
      }
    }
    std::vector<Tensor> gout = node->apply(gin);
    if (!retain_graph) node->release();
    SELFSUP_CHECK(gout.empty() || gout.size() == node->next_edges.size(), "backward of '", node->name(),
                  "' returned ", gout.size(), " gradients for ", node->next_edges.size(), " inputs");
    for (size_t i = 0; i < node->next_edges.size(); ++i) {
      const Edge& e = node->next_edges[i];
      if (!e.fn) continue;
      if (i < gout.size() && gout[i].defined()) accumulate(e.fn.get(), e.input_nr, gout[i]);
      if (--deps[e.fn.get()] == 0) ready.push_back(e.fn);
    }
  }
}

}  // namespace autograd
}  // namespace selfsup
