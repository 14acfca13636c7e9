// Every kernel's signature, in one place. kernels/ knows nothing of Tensor or autograd: plain functions
// over pointers and sizes, so each kernel can be benchmarked and taught on its own.
//
// Shape glossary (all buffers are contiguous row-major unless a stride argument says otherwise):
//   N batch, C input channels, H W input height/width, K output channels, R S filter height/width,
//   P Q output height/width, M N K of a GEMM as usual (C(M,N) = A(M,K) B(K,N)).
//   "outer, dim, inner": a contiguous tensor viewed as (outer, dim, inner) to reduce/normalise along dim.
// Float kernels are templates instantiated for float and double (double is the reference precision for
// gradient checks); CUDA launchers (kernels/cuda/) take the same arguments plus a cudaStream_t.
// Backward kernels overwrite their outputs (they do not accumulate); the engine accumulates.
#pragma once
#include <cstdint>

#include "kernels/dtype.h"

namespace selfsup::kernels {

// ============================ elementwise, reductions, copies (kernels/cpu/elementwise.cpp, reduce.cpp)
// Strided N-d iteration: sizes[ndim] shared by all operands, strides in elements per operand (0 = broadcast).
enum class UnaryOp : uint8_t {
  neg, exp, log, sqrt, rsqrt, abs, relu, sigmoid, tanh, gelu, sign, square, reciprocal,
  pow_scalar,  // x ^ a
  clamp,       // min(max(x, a), b)
  affine,      // a * x + b
  fill,        // a (ignores x)
};
enum class BinaryOp : uint8_t { add, sub, mul, div, pow, maximum, minimum, eq, ne, lt, le, gt, ge };
// Derivative of a unary op: dx = dy * f'(x) (y = f(x) is passed too; some derivatives read it).
enum class UnaryBwdOp : uint8_t { exp, log, sqrt, rsqrt, abs, relu, sigmoid, tanh, gelu, pow_scalar, clamp };

struct StridedOperand {
  void* data;
  const int64_t* strides;  // (ndim) in elements
};

template <typename T>
void unary_cpu(UnaryOp op, int ndim, const int64_t* sizes, StridedOperand out, StridedOperand in, double a,
               double b);
template <typename T>
void unary_bwd_cpu(UnaryBwdOp op, int ndim, const int64_t* sizes, StridedOperand dx, StridedOperand dy,
                   StridedOperand x, StridedOperand y, double a, double b);
// binary_cpu takes the arithmetic ops (add .. minimum); compare_cpu the comparisons (eq .. ge), writing
// 1/0 as uint8. Both and where_cpu are instantiated for float, double, int32, int64 and uint8.
template <typename T>
void binary_cpu(BinaryOp op, int ndim, const int64_t* sizes, StridedOperand out, StridedOperand a,
                StridedOperand b);
template <typename T>
void compare_cpu(BinaryOp op, int ndim, const int64_t* sizes, StridedOperand out, StridedOperand a,
                 StridedOperand b);
// out = cond ? a : b, cond is uint8/bool.
template <typename T>
void where_cpu(int ndim, const int64_t* sizes, StridedOperand out, StridedOperand cond, StridedOperand a,
               StridedOperand b);
// Strided copy with dtype conversion (any dtype to any dtype).
void copy_cast_cpu(int ndim, const int64_t* sizes, DType out_dtype, StridedOperand out, DType in_dtype,
                   StridedOperand in);

enum class ReduceOp : uint8_t { sum, max, min, logsumexp };
// Reduce a contiguous (outer, dim, inner) over dim into out (outer, inner); argmax/argmin written to idx
// (outer, inner) when idx is non-null and op is max/min (first index on ties). Sums accumulate in double.
template <typename T>
void reduce_cpu(ReduceOp op, int64_t outer, int64_t dim, int64_t inner, const T* in, T* out, int64_t* idx);

// ============================ indexing (kernels/cpu/index.cpp), contiguous (outer, dim, inner) layouts
// Indices are already validated by the caller. index_select and gather copy raw elements of elem_size bytes.
// out (outer, n_index, inner) = in (outer, in_dim, inner) [:, index[j], :]
void index_select_cpu(int64_t outer, int64_t in_dim, int64_t inner, int64_t elem_size, const void* in,
                      int64_t n_index, const int64_t* index, void* out);
// out (outer, out_dim, inner)[o, j, i] = in (outer, in_dim, inner)[o, index[o, j, i], i]
void gather_cpu(int64_t outer, int64_t in_dim, int64_t out_dim, int64_t inner, int64_t elem_size, const void* in,
                const int64_t* index, void* out);
// self (outer, self_dim, inner)[o, index[o, j, i], i] += src (outer, src_dim, inner)[o, j, i]
template <typename T>
void scatter_add_cpu(int64_t outer, int64_t self_dim, int64_t src_dim, int64_t inner, T* self, const int64_t* index,
                     const T* src);

// ============================ random fill (kernels/cpu/random.cpp), Philox (kernels/philox.h)
// Element i uses Philox block `offset + i` of (seed, stream): uniform [0, 1) from its first word (float) or
// first two words (double); normal by Box-Muller from its first two (float) or four (double) words.
template <typename T>
void fill_uniform_cpu(int64_t n, uint64_t seed, uint64_t stream, uint64_t offset, T* out);
template <typename T>
void fill_normal_cpu(int64_t n, uint64_t seed, uint64_t stream, uint64_t offset, T* out);

// ============================ GEMM (kernels/cpu/matmul.cpp)
// C(M,N) = alpha * op(A) op(B) + beta * C, row-major; op(A) is (M,K): A is (M,K) with lda, or (K,M) when
// trans_a. Batched: matrices of batch b start at A + b*stride_a etc. float uses oneDNN (or BLAS), double
// uses BLAS.
template <typename T>
void gemm_cpu(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
              const T* B, int64_t ldb, T beta, T* C, int64_t ldc);
template <typename T>
void gemm_batched_cpu(bool trans_a, bool trans_b, int64_t batch, int64_t M, int64_t N, int64_t K, T alpha,
                      const T* A, int64_t lda, int64_t stride_a, const T* B, int64_t ldb, int64_t stride_b, T beta,
                      T* C, int64_t ldc, int64_t stride_c);

// ============================ convolution (kernels/cpu/conv.cpp), NCHW, weight (K, C/groups, R, S)
struct Conv2dShape {
  int64_t N, C, H, W;      // input
  int64_t K, R, S;         // output channels, filter size
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
  int64_t P, Q;            // output size, P = (H + 2 pad_h - dil_h (R-1) - 1) / stride_h + 1
  // Memory layout of x and dx (x_nhwc), y and dy (y_nhwc): false NCHW, true channels-last (N, H, W, C).
  // conv2d_*_cpu<float> only; the double reference, the bf16 kernels and CUDA take NCHW.
  bool x_nhwc = false, y_nhwc = false;
};
// Whether the float CPU convolution of `s` (its layouts ignored) computes fastest channels-last, so the
// engine should give it a channels-last output (docs/cpu-dense-kernels.md, "Channels-last activations").
// SELFSUP_CONV_LAYOUT=nchw in the environment, or set_cpu_conv_channels_last(false), turns it off.
bool conv2d_channels_last_cpu(const Conv2dShape& s);
void set_cpu_conv_channels_last(bool on);
template <typename T>
void conv2d_fwd_cpu(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y);  // bias may be null
template <typename T>
void conv2d_bwd_data_cpu(const Conv2dShape& s, const T* dy, const T* w, T* dx);
template <typename T>
void conv2d_bwd_weight_cpu(const Conv2dShape& s, const T* x, const T* dy, T* dw, T* dbias);  // dbias may be null

// ============================ pooling (kernels/cpu/pool.cpp), NCHW
struct Pool2dShape {
  int64_t N, C, H, W;
  int64_t kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;  // dilation: max pool only
  int64_t P, Q;                                                    // output size (ceil_mode already applied)
  bool count_include_pad;                                          // avg pool only
};
// argmax (N,C,P,Q) receives the flat index h*W+w of each window's maximum (the first one on ties; -1 with
// y = -inf for a window that dilation places entirely in the padding).
template <typename T>
void max_pool2d_fwd_cpu(const Pool2dShape& s, const T* x, T* y, int64_t* argmax);
template <typename T>
void max_pool2d_bwd_cpu(const Pool2dShape& s, const T* dy, const int64_t* argmax, T* dx);
template <typename T>
void avg_pool2d_fwd_cpu(const Pool2dShape& s, const T* x, T* y);
template <typename T>
void avg_pool2d_bwd_cpu(const Pool2dShape& s, const T* dy, T* dx);
// Adaptive average pooling (N,C,H,W) -> (N,C,P,Q) with PyTorch's bins: [floor(i*H/P), ceil((i+1)*H/P)).
template <typename T>
void adaptive_avg_pool2d_fwd_cpu(int64_t N, int64_t C, int64_t H, int64_t W, int64_t P, int64_t Q, const T* x,
                                 T* y);
template <typename T>
void adaptive_avg_pool2d_bwd_cpu(int64_t N, int64_t C, int64_t H, int64_t W, int64_t P, int64_t Q, const T* dy,
                                 T* dx);

// ============================ batch norm (kernels/cpu/norm.cpp), x viewed as (N, C, S), S = H*W (1 for 1d)
// Training: normalise with batch statistics (biased variance), write save_mean/save_invstd (C), and when
// running_mean/var are non-null update them in place: r = (1-momentum) r + momentum * stat, the variance
// stat being unbiased (n/(n-1)) as PyTorch does. gamma/beta may be null (no affine).
template <typename T>
void batch_norm_fwd_train_cpu(int64_t N, int64_t C, int64_t S, const T* x, const T* gamma, const T* beta,
                              double eps, double momentum, T* y, T* save_mean, T* save_invstd, T* running_mean,
                              T* running_var);
template <typename T>
void batch_norm_fwd_eval_cpu(int64_t N, int64_t C, int64_t S, const T* x, const T* gamma, const T* beta,
                             const T* running_mean, const T* running_var, double eps, T* y);
// Training-mode backward. dgamma/dbeta may be null.
template <typename T>
void batch_norm_bwd_cpu(int64_t N, int64_t C, int64_t S, const T* dy, const T* x, const T* gamma,
                        const T* save_mean, const T* save_invstd, T* dx, T* dgamma, T* dbeta);
// Fused training batch norm + residual add + ReLU (a ResNet block's tail): y = max(0, bn(x) + residual) in
// one elementwise pass after the statistics; residual (N, C, S) or null (then y = max(0, bn(x))). Statistics
// and running stats as batch_norm_fwd_train_cpu.
template <typename T>
void batch_norm_add_relu_fwd_train_cpu(int64_t N, int64_t C, int64_t S, const T* x, const T* residual,
                                       const T* gamma, const T* beta, double eps, double momentum, T* y,
                                       T* save_mean, T* save_invstd, T* running_mean, T* running_var);
// Its backward from the forward's output y: dz = dy [y > 0], dx = batch norm's backward of dz, and
// dresidual = dz when non-null. dgamma/dbeta may be null.
template <typename T>
void batch_norm_add_relu_bwd_cpu(int64_t N, int64_t C, int64_t S, const T* dy, const T* y, const T* x,
                                 const T* gamma, const T* save_mean, const T* save_invstd, T* dx, T* dresidual,
                                 T* dgamma, T* dbeta);

// ============================ softmax and cross-entropy (kernels/cpu/softmax_xent.cpp)
// softmax / log_softmax of a contiguous (outer, dim, inner) along dim.
template <typename T>
void softmax_fwd_cpu(int64_t outer, int64_t dim, int64_t inner, const T* x, T* y, bool log);
// dx from y (the forward output) and dy. softmax: dx = y (dy - sum(dy y)); log: dx = dy - exp(y) sum(dy).
template <typename T>
void softmax_bwd_cpu(int64_t outer, int64_t dim, int64_t inner, const T* y, const T* dy, T* dx, bool log);
// Per-row cross-entropy of logits (N, C) with class targets (N) in [0, C) and label smoothing eps:
// loss_i = lse_i - (1-eps) x_{i,t_i} - eps/C sum_c x_{i,c}. Writes loss (N) and lse (N, kept for backward).
template <typename T>
void cross_entropy_fwd_cpu(int64_t N, int64_t C, const T* logits, const int64_t* target, double label_smoothing,
                           T* loss, T* lse);
// dlogits_{i,c} = dloss_i (softmax_{i,c} - (1-eps) [c == t_i] - eps/C).
template <typename T>
void cross_entropy_bwd_cpu(int64_t N, int64_t C, const T* logits, const int64_t* target, double label_smoothing,
                           const T* lse, const T* dloss, T* dlogits);

// ============================ L2 normalisation (kernels/cpu/normalize.cpp)
// y = x / max(||x||_2, eps) along dim of a contiguous (outer, dim, inner); norm (outer, inner) is saved.
template <typename T>
void l2_normalize_fwd_cpu(int64_t outer, int64_t dim, int64_t inner, const T* x, double eps, T* y, T* norm);
// dx = (dy - y <y, dy>) / norm where norm > eps, else dy / eps.
template <typename T>
void l2_normalize_bwd_cpu(int64_t outer, int64_t dim, int64_t inner, const T* y, const T* norm, double eps,
                          const T* dy, T* dx);

// ============================ contrastive losses (kernels/cpu/infonce.cpp)
// InfoNCE of M rows q (M, D) against Ncol columns k (Ncol, D), never holding the (M, Ncol) logit matrix:
// tiles of logits s_ij = <q_i, k_j> * inv_tau are recomputed block by block with an online log-sum-exp.
// Row i's positive is column pos[i]. Column self_col[i] (when self_col is non-null and the entry >= 0) is
// excluded (SimCLR's own view); columns [0, n_private) are "private": valid for row i only when j == pos[i]
// (MoCo's batch keys: each query sees only its own key, plus every queue column after them).
// loss_i = lse_i - s_{i,pos_i}; lse (M) is saved for backward; correct_i = (argmax over valid j == pos_i).
// The same kernel serves "local rows x all-gathered global columns" across processes.
template <typename T>
void infonce_fwd_cpu(int64_t M, int64_t Ncol, int64_t D, const T* q, const T* k, const int64_t* pos,
                     const int64_t* self_col, int64_t n_private, double inv_tau, T* loss, T* lse, uint8_t* correct);
// Given dloss (M): dq (M, D) and/or dk (Ncol, D) (either may be null), overwritten:
// dq_i = inv_tau dloss_i (sum_j p_ij k_j - k_pos_i), dk_j = inv_tau sum_i dloss_i (p_ij - [j == pos_i]) q_i,
// with p_ij = exp(s_ij - lse_i) over valid columns.
template <typename T>
void infonce_bwd_cpu(int64_t M, int64_t Ncol, int64_t D, const T* q, const T* k, const int64_t* pos,
                     const int64_t* self_col, int64_t n_private, double inv_tau, const T* lse, const T* dloss, T* dq,
                     T* dk);

// ============================ momentum encoder (kernels/cpu/momentum.cpp)
// For every tensor t of a list, target[t] = m * target[t] + (1 - m) * online[t]: one call (one kernel
// launch on CUDA) over all parameters of an encoder.
template <typename T>
void ema_update_cpu(int64_t n_tensors, T* const* target, const T* const* online, const int64_t* numel, double m);

}  // namespace selfsup::kernels
