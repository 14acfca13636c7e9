// The functional op API. Every op: validates its inputs (errors name the op and the shapes), allocates
// its output, calls the device's kernel through the dispatch table, and records an autograd node when an
// input requires grad. Fused ops (conv, batch norm, softmax/cross-entropy, normalize, pooling) have
// explicit backward kernels; the others compose their backward from differentiable ops.
#pragma once
#include <array>
#include <utility>
#include <vector>

#include "engine/core/tensor.h"

namespace selfsup {

// ---- elementwise (broadcasting; mixed dtypes promote)
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor sub(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor div(const Tensor& a, double s);
Tensor pow(const Tensor& a, double exponent);
Tensor neg(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor rsqrt(const Tensor& a);
Tensor abs(const Tensor& a);
Tensor relu(const Tensor& a);
Tensor sigmoid(const Tensor& a);
Tensor tanh(const Tensor& a);
Tensor gelu(const Tensor& a);
Tensor square(const Tensor& a);
Tensor sign(const Tensor& a);
Tensor clamp(const Tensor& a, double lo, double hi);
// cond is bool/uint8; a and b broadcast with it.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// Comparisons return bool tensors.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, double s);
Tensor lt(const Tensor& a, double s);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
inline Tensor operator+(const Tensor& a, double s) { return add(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return sub(a, s); }
inline Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return div(a, s); }
inline Tensor operator*(double s, const Tensor& a) { return mul(a, s); }

// ---- reductions. `dims` empty = all dims.
Tensor sum(const Tensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Variance with Bessel's correction by default (correction = 1), as torch.var.
Tensor var(const Tensor& a, const std::vector<int64_t>& dims = {}, int64_t correction = 1, bool keepdim = false);
// Values and int64 indices of the maximum/minimum along dim (first index on ties).
std::pair<Tensor, Tensor> max(const Tensor& a, int64_t dim, bool keepdim = false);
std::pair<Tensor, Tensor> min(const Tensor& a, int64_t dim, bool keepdim = false);
Tensor amax(const Tensor& a);  // maximum of all elements
Tensor amin(const Tensor& a);
Tensor argmax(const Tensor& a, int64_t dim, bool keepdim = false);
Tensor logsumexp(const Tensor& a, int64_t dim, bool keepdim = false);

// ---- linear algebra
// (M, K) x (K, N); batched (B, M, K) x (B, K, N); (..., M, K) x (K, N) flattens the leading dims;
// 1-D operands are treated as vectors as in torch.matmul.
Tensor matmul(const Tensor& a, const Tensor& b);
Tensor bmm(const Tensor& a, const Tensor& b);  // (B, M, K) x (B, K, N) -> (B, M, N)
// x (..., in) W (out, in) b (out) -> (..., out); bias may be undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// ---- neural-network ops (NCHW)
struct Conv2dOptions {
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};
  std::array<int64_t, 2> dilation{1, 1};
  int64_t groups = 1;
};
// x (N, C, H, W), weight (K, C/groups, R, S), bias (K) or undefined -> (N, K, P, Q)
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(), const Conv2dOptions& opt = {});

// The adjoint of conv2d (PyTorch's conv_transpose2d): x (N, Cin, h, w), weight (Cin, Cout/groups, R, S),
// bias (Cout) or undefined -> (N, Cout, H, W) with H = (h - 1) stride - 2 padding + dilation (R - 1) +
// output_padding + 1. output_padding (< stride or dilation) picks one of the sizes a strided conv2d maps to h.
struct ConvTranspose2dOptions {
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};
  std::array<int64_t, 2> output_padding{0, 0};
  std::array<int64_t, 2> dilation{1, 1};
  int64_t groups = 1;
};
Tensor conv_transpose2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
                        const ConvTranspose2dOptions& opt = {});

// Resizes x (N, C, H, W) to (N, C, size) or by an integer scale, as F.interpolate with mode "nearest" or
// "bilinear" (align_corners as PyTorch's; it must be false for nearest).
enum class UpsampleMode { nearest, bilinear };
const char* upsample_mode_name(UpsampleMode mode);
Tensor upsample(const Tensor& x, std::array<int64_t, 2> size, UpsampleMode mode, bool align_corners = false);
Tensor upsample(const Tensor& x, int64_t scale, UpsampleMode mode, bool align_corners = false);

struct Pool2dOptions {
  std::array<int64_t, 2> kernel{2, 2};
  std::array<int64_t, 2> stride{0, 0};  // 0 = kernel size, as PyTorch's default
  std::array<int64_t, 2> padding{0, 0};
  std::array<int64_t, 2> dilation{1, 1};  // max pool only
  bool ceil_mode = false;
  bool count_include_pad = true;  // avg pool only
};
Tensor max_pool2d(const Tensor& x, const Pool2dOptions& opt);
Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& opt);
Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> output_size);

// x (N, C) or (N, C, H, W). training: batch statistics, and running stats (if defined) are updated in place
// with `momentum`; eval: running stats. weight/bias (C) may be undefined. weight, bias and the running stats
// have dtype batch_norm_param_dtype(x.dtype()).
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum = 0.1, double eps = 1e-5);

// relu(batch_norm(x, ...) + residual) as one op (a ResNet block's tail; residual may be undefined: then
// relu(batch_norm(x))). Training: one fused kernel forward (statistics, then normalise + add + ReLU in one
// pass) and one backward (the ReLU mask folded into batch norm's gradient sums, dresidual written in the same
// pass). Eval: composed from batch_norm, add and relu. residual has x's shape, dtype and device.
Tensor batch_norm_add_relu(const Tensor& x, const Tensor& residual, const Tensor& running_mean,
                           const Tensor& running_var, const Tensor& weight, const Tensor& bias, bool training,
                           double momentum = 0.1, double eps = 1e-5);

// The dtype of batch norm's parameters and statistics for an input dtype: the same, except that a bfloat16
// input keeps them in float32 (the kernels compute in float; PyTorch's mixed-precision rule).
inline DType batch_norm_param_dtype(DType input) { return input == DType::bf16 ? DType::f32 : input; }

Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
// Mean cross-entropy of logits (N, C) against int64 class indices (N), with optional label smoothing. The
// loss is float32 for bfloat16 logits (per-row losses and log-sum-exp are accumulated and kept in float).
Tensor cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing = 0.0);
Tensor mse_loss(const Tensor& input, const Tensor& target);  // mean squared error
// x / max(||x||_2, eps) along dim (torch.nn.functional.normalize with p=2); bfloat16 x keeps its norm in float.
Tensor normalize(const Tensor& x, int64_t dim = 1, double eps = 1e-12);

// ---- joining, splitting, indexing
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0);  // views
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim = 0);
// index: 1-D int64 with values in [0, x.size(dim)).
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// out[..., j, ...] = x[..., index[..., j, ...], ...] along dim; index has x's shape except at dim.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// Out-of-place: self + (src scattered along dim at index, summed where indices repeat).
Tensor scatter_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src);

}  // namespace selfsup
