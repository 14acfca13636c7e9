// Tensor: a handle to (storage, shape, strides, offset, dtype) plus autograd metadata. Copying a Tensor
// copies the handle (like PyTorch): both names refer to the same TensorImpl. Views (reshape, permute,
// narrow, expand, ...) are new TensorImpls that share the Storage.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/check.h"
#include "engine/core/device.h"
#include "engine/core/dtype.h"
#include "engine/core/rng.h"
#include "engine/core/shape.h"
#include "engine/core/storage.h"

namespace selfsup {

namespace autograd {
class Node;
}
class Tensor;

using GradReadyHook = std::function<void(const Tensor& grad)>;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape sizes;
  Shape strides;   // in elements
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;

  // autograd
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<autograd::Node> grad_fn;      // null for leaves
  uint32_t output_nr = 0;                       // which output of grad_fn this is
  std::weak_ptr<autograd::Node> grad_accumulator;  // leaves: the node that accumulates into .grad
  std::vector<GradReadyHook> grad_ready_hooks;     // leaves: run once per backward after .grad is final
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories (CPU unless a device is given)
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  // Channels-last: logical (N, C, H, W), stored as (N, H, W, C), strides (H*W*C, 1, W*C, C). The CPU
  // convolutions read and write it without reorders (docs/cpu-dense-kernels.md, "Channels-last activations").
  static Tensor empty_channels_last(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor arange(double start, double end, double step = 1, DType dtype = DType::f32);
  // Uniform [0, 1) and standard normal from a counter-based generator (default: the global one).
  static Tensor rand(const Shape& shape, DType dtype = DType::f32, Generator* gen = nullptr);
  static Tensor randn(const Shape& shape, DType dtype = DType::f32, Generator* gen = nullptr);
  // Copies `count` elements of `dtype` from host memory.
  static Tensor from_blob(const void* data, const Shape& shape, DType dtype);
  static Tensor from_vector(const std::vector<float>& v, const Shape& shape);
  static Tensor from_vector(const std::vector<double>& v, const Shape& shape);
  static Tensor from_vector(const std::vector<int64_t>& v, const Shape& shape);
  static Tensor scalar(double value, DType dtype = DType::f32);

  // ---- metadata
  bool defined() const { return impl_ != nullptr; }
  const Shape& sizes() const { return impl().sizes; }
  const Shape& strides() const { return impl().strides; }
  int64_t size(int64_t dim) const;
  int64_t stride(int64_t dim) const;
  int64_t dim() const { return static_cast<int64_t>(impl().sizes.size()); }
  int64_t numel() const { return shape_numel(impl().sizes); }
  int64_t offset() const { return impl().offset; }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage ? impl().storage->device() : Device::cpu(); }
  bool is_contiguous() const;
  // 4-d with channels-last strides (size-1 dims ignored, as is_contiguous does); (N, 1, H, W) is both.
  bool is_channels_last() const;
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  uint64_t version() const { return impl().storage ? impl().storage->version() : 0; }
  void bump_version() const {
    if (impl().storage) impl().storage->bump_version();
  }
  TensorImpl* unsafe_impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }
  std::string str() const;  // shape, dtype, device and a few values

  // Typed pointer to element 0 (offset applied). Checks the dtype.
  template <typename T>
  T* data_ptr() const;
  void* raw_data() const;
  // Value of a one-element tensor as double.
  double item() const;
  // All values (any layout) as doubles in row-major order; for tests and printing.
  std::vector<double> to_vector() const;

  // ---- views (share storage; differentiable)
  Tensor view(const Shape& shape) const;     // requires compatible strides; -1 allowed once
  Tensor reshape(const Shape& shape) const;  // view when possible, else a contiguous copy
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const { return transpose(0, 1); }
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor expand(const Shape& shape) const;
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor contiguous() const;
  Tensor channels_last() const;  // this when is_channels_last(), else a channels-last copy; differentiable
  Tensor clone() const;
  // Same data, no autograd history, requires_grad false.
  Tensor detach() const;
  Tensor to(DType dtype) const;
  // To another device (CPU <-> CUDA, CUDA <-> CUDA); differentiable. Uploads are asynchronous on the
  // destination's current stream; downloads wait for the data.
  Tensor to(Device device) const;

  // ---- autograd
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& set_requires_grad(bool r);
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  Tensor grad() const { return impl().grad ? Tensor(impl().grad) : Tensor(); }
  void set_grad(const Tensor& g) const { impl().grad = g.impl_; }
  const std::shared_ptr<autograd::Node>& grad_fn() const { return impl().grad_fn; }
  // Seeds with 1 for a one-element tensor; otherwise `grad` (same shape) is required.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;
  // Runs after this leaf's gradient is complete in each backward (data-parallel all-reduce overlap).
  void register_grad_ready_hook(GradReadyHook hook) const;

  // ---- in-place (bump the version counter; refused on tensors that require grad while grad mode is on)
  Tensor& zero_();
  Tensor& fill_(double value);
  Tensor& copy_(const Tensor& src);  // broadcasts src, converts dtype, moves it from another device
  Tensor& add_(const Tensor& other, double alpha = 1.0);
  Tensor& sub_(const Tensor& other, double alpha = 1.0) { return add_(other, -alpha); }
  Tensor& mul_(const Tensor& other);
  Tensor& mul_(double s);
  Tensor& div_(const Tensor& other);
  Tensor& add_(double s);
  Tensor& clamp_(double lo, double hi);
  // this += value * a * b, this += value * a / b (the optimizers' updates)
  Tensor& addcmul_(const Tensor& a, const Tensor& b, double value = 1.0);
  Tensor& addcdiv_(const Tensor& a, const Tensor& b, double value = 1.0);

 private:
  TensorImpl& impl() const {
    SELFSUP_CHECK(impl_ != nullptr, "operation on an undefined tensor");
    return *impl_;
  }
  std::shared_ptr<TensorImpl> impl_;
};

template <typename T>
struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::u8; };
template <> struct dtype_of<bf16> { static constexpr DType value = DType::bf16; };
template <> struct dtype_of<f16> { static constexpr DType value = DType::f16; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::b8; };

template <typename T>
T* Tensor::data_ptr() const {
  SELFSUP_CHECK(dtype() == dtype_of<T>::value, "data_ptr: tensor has dtype ", dtype_name(dtype()),
                ", requested ", dtype_name(dtype_of<T>::value));
  return static_cast<T*>(raw_data());
}

std::ostream& operator<<(std::ostream& os, const Tensor& t);

}  // namespace selfsup
