// Helpers shared by the op implementations (not part of the public API).
#pragma once
#include <initializer_list>
#include <string>
#include <vector>

#include "engine/core/tensor.h"
#include "engine/ops/dispatch.h"

namespace selfsup::ops_detail {

// A strided operand of a tensor whose shape is the loop shape.
inline kernels::StridedOperand operand(const Tensor& t) { return {t.raw_data(), t.strides().data()}; }

// Throws unless both tensors are on the same device, naming the op.
inline void check_same_device(const Tensor& a, const Tensor& b, const char* op) {
  SELFSUP_CHECK(a.device() == b.device(), op, ": tensors are on different devices (", a.device().str(), " and ",
                b.device().str(), ")");
}

inline void check_floating(const Tensor& t, const char* op, const char* what = "input") {
  SELFSUP_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f64, op, ": ", what,
                " must be float32 or float64, got ", dtype_name(t.dtype()), " with shape ", shape_str(t.sizes()));
}

inline void check_dim(const Tensor& t, int64_t ndim, const char* op, const char* what = "input") {
  SELFSUP_CHECK(t.dim() == ndim, op, ": ", what, " must have ", ndim, " dimensions, got shape ",
                shape_str(t.sizes()));
}

// The output of an elementwise op of `shape`: channels-last when an input of that shape is channels-last and
// not also contiguous (the layout flows from one convolution to the next, as PyTorch's memory format does),
// else contiguous.
inline Tensor empty_like_inputs(const Shape& shape, DType dtype, Device device, std::initializer_list<Tensor> inputs) {
  for (const Tensor& t : inputs)
    if (t.defined() && t.sizes() == shape && t.is_channels_last() && !t.is_contiguous())
      return Tensor::empty_channels_last(shape, dtype, device);
  return Tensor::empty(shape, dtype, device);
}

// Refuses an in-place write that autograd could not see.
void check_inplace(const Tensor& t, const char* op);

// Returns g reduced (summed) to `shape` by NumPy broadcasting rules: the inverse of expand.
Tensor sum_to(const Tensor& g, const Shape& shape);

// The gradient for an input: summed to its shape and cast to its dtype.
Tensor grad_like(const Tensor& g, const Tensor& input);
// Same from the input's metadata, for closures that must not keep the input's data alive.
struct InputMeta {
  Shape sizes;
  DType dtype;
  explicit InputMeta(const Tensor& t) : sizes(t.sizes()), dtype(t.dtype()) {}
};
Tensor grad_like(const Tensor& g, const InputMeta& input);

}  // namespace selfsup::ops_detail
