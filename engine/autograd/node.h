// The autograd graph. Each differentiable op that sees an input requiring grad creates a Node: its
// backward function maps the gradients of the op's outputs to gradients of its inputs, and its edges
// point to the nodes that produced those inputs (or to an AccumulateGrad node for a leaf). The whole
// contract, as in micrograd: a node, its parents, a backward closure; the engine runs them in
// topological order.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/tensor.h"

namespace selfsup::autograd {

class Node;

struct Edge {
  std::shared_ptr<Node> fn;  // null: that input needs no gradient
  uint32_t input_nr = 0;     // which output of fn the input was
};

// A tensor kept for backward. It keeps the data (not the history, to avoid reference cycles) and the
// storage version it saw; unpacking after an in-place write to that storage fails with the op's name.
class SavedTensor {
 public:
  SavedTensor() = default;
  SavedTensor(const Tensor& t);  // NOLINT: implicit so ops can write `SavedTensor s = x;`
  Tensor unpack(const std::string& op) const;

 private:
  Tensor data_;
  uint64_t version_ = 0;
};

// Metadata of one output, to make a zero gradient for an output that received none.
struct OutputMeta {
  Shape sizes;
  DType dtype;
  Device device;
};

class Node {
 public:
  explicit Node(std::string name) : name_(std::move(name)) {}
  virtual ~Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const std::string& name() const { return name_; }
  // grad_outputs has one entry per output (zero-filled where none arrived); returns one per edge.
  virtual std::vector<Tensor> apply(const std::vector<Tensor>& grad_outputs) = 0;
  // Frees what backward needed; a second backward through this node then fails clearly.
  virtual void release() {}

  std::vector<Edge> next_edges;
  std::vector<OutputMeta> outputs;

 private:
  std::string name_;
};

using BackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grad_outputs)>;

// The node every op creates: backward is a closure over the SavedTensors it needs.
class FunctionNode final : public Node {
 public:
  FunctionNode(std::string name, BackwardFn fn) : Node(std::move(name)), fn_(std::move(fn)) {}
  std::vector<Tensor> apply(const std::vector<Tensor>& grad_outputs) override;
  void release() override {
    fn_ = nullptr;
    released_ = true;
  }

 private:
  BackwardFn fn_;
  bool released_ = false;
};

// Sink for a leaf: adds the incoming gradient to leaf.grad, then runs the leaf's grad-ready hooks.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf) : Node("AccumulateGrad"), leaf_(std::move(leaf)) {}
  std::vector<Tensor> apply(const std::vector<Tensor>& grad_outputs) override;

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

// True when grad mode is on and some input requires grad.
bool needs_grad(const std::vector<Tensor>& inputs);

// Connects `outputs` to a new FunctionNode named `name` over `inputs` (the differentiable inputs, in the
// order the backward function returns their gradients). No-op unless needs_grad(inputs).
void record(const char* name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs, BackwardFn fn);

// Runs backward from `roots` seeded with `grads` (same count). Leaves accumulate into .grad.
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph);

}  // namespace selfsup::autograd
