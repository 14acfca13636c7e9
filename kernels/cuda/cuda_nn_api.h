// CUDA launchers of the nn kernels: convolution (cuDNN), pooling, batch norm, softmax / cross-entropy,
// L2 normalisation, InfoNCE and the momentum-encoder update. Each mirrors its CPU kernel in
// kernels/kernel_api.h (same arguments, same semantics; read that file for what each computes) with a
// `_cuda` suffix and a trailing stream. Every pointer is a device pointer unless noted; each launcher
// enqueues work on `stream` and returns without synchronising; errors throw std::runtime_error.
//
// Types: instantiated for float, and for __nv_bfloat16 where a kernel is on a bf16 training hot path.
// bf16 kernels compute in float, and the values whose precision matters stay float for every T: batch norm
// parameters and statistics, the cross-entropy loss / lse / dloss, the L2 norm, the InfoNCE loss / lse /
// dloss. For T = float every signature is exactly the CPU one plus the stream.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/kernel_api.h"

namespace selfsup::kernels {

// ============================ convolution (kernels/cuda/conv_cudnn.cpp): cuDNN v9, NCHW, T = float, bf16
// Algorithms are measured once per (device, shape, dtype, math mode) and cached with their descriptors.
template <typename T>
void conv2d_fwd_cuda(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y, cudaStream_t stream);
template <typename T>
void conv2d_bwd_data_cuda(const Conv2dShape& s, const T* dy, const T* w, T* dx, cudaStream_t stream);
template <typename T>
void conv2d_bwd_weight_cuda(const Conv2dShape& s, const T* x, const T* dy, T* dw, T* dbias, cudaStream_t stream);
// float convolutions may use TF32 tensor cores (PyTorch's default for cuDNN). Off by default so that float
// results match the CPU reference to float tolerance; benchmarks against PyTorch turn it on. Process-wide.
void conv2d_cuda_set_allow_tf32(bool allow);
// Drops every cached descriptor/algorithm (they are also freed at exit).
void conv2d_cuda_clear_cache();

// ============================ pooling (kernels/cuda/pool.cu), NCHW, T = float, bf16
template <typename T>
void max_pool2d_fwd_cuda(const Pool2dShape& s, const T* x, T* y, int64_t* argmax, cudaStream_t stream);
template <typename T>
void max_pool2d_bwd_cuda(const Pool2dShape& s, const T* dy, const int64_t* argmax, T* dx, cudaStream_t stream);
template <typename T>
void avg_pool2d_fwd_cuda(const Pool2dShape& s, const T* x, T* y, cudaStream_t stream);
template <typename T>
void avg_pool2d_bwd_cuda(const Pool2dShape& s, const T* dy, T* dx, cudaStream_t stream);
template <typename T>
void adaptive_avg_pool2d_fwd_cuda(int64_t N, int64_t C, int64_t H, int64_t W, int64_t P, int64_t Q, const T* x,
                                  T* y, cudaStream_t stream);
template <typename T>
void adaptive_avg_pool2d_bwd_cuda(int64_t N, int64_t C, int64_t H, int64_t W, int64_t P, int64_t Q, const T* dy,
                                  T* dx, cudaStream_t stream);

// ============================ batch norm (kernels/cuda/norm.cu), x (N, C, S), T = float, bf16
// gamma, beta, save_*, running_* are float for every T. N*S < 2 in training throws (as on the CPU).
template <typename T>
void batch_norm_fwd_train_cuda(int64_t N, int64_t C, int64_t S, const T* x, const float* gamma, const float* beta,
                               double eps, double momentum, T* y, float* save_mean, float* save_invstd,
                               float* running_mean, float* running_var, cudaStream_t stream);
template <typename T>
void batch_norm_fwd_eval_cuda(int64_t N, int64_t C, int64_t S, const T* x, const float* gamma, const float* beta,
                              const float* running_mean, const float* running_var, double eps, T* y,
                              cudaStream_t stream);
template <typename T>
void batch_norm_bwd_cuda(int64_t N, int64_t C, int64_t S, const T* dy, const T* x, const float* gamma,
                         const float* save_mean, const float* save_invstd, T* dx, float* dgamma, float* dbeta,
                         cudaStream_t stream);
// Fused batch norm + residual add + ReLU, the semantics of batch_norm_add_relu_*_cpu (residual and dresidual
// may be null).
template <typename T>
void batch_norm_add_relu_fwd_train_cuda(int64_t N, int64_t C, int64_t S, const T* x, const T* residual,
                                        const float* gamma, const float* beta, double eps, double momentum, T* y,
                                        float* save_mean, float* save_invstd, float* running_mean,
                                        float* running_var, cudaStream_t stream);
template <typename T>
void batch_norm_add_relu_bwd_cuda(int64_t N, int64_t C, int64_t S, const T* dy, const T* y, const T* x,
                                  const float* gamma, const float* save_mean, const float* save_invstd, T* dx,
                                  T* dresidual, float* dgamma, float* dbeta, cudaStream_t stream);

// ============================ softmax and cross-entropy (kernels/cuda/softmax_xent.cu), T = float, bf16
template <typename T>
void softmax_fwd_cuda(int64_t outer, int64_t dim, int64_t inner, const T* x, T* y, bool log, cudaStream_t stream);
template <typename T>
void softmax_bwd_cuda(int64_t outer, int64_t dim, int64_t inner, const T* y, const T* dy, T* dx, bool log,
                      cudaStream_t stream);
// loss, lse, dloss are float for every T. Targets are on the device and cannot be validated without a
// synchronisation: a row whose target lies outside [0, C) gets NaN loss/lse (forward) and NaN dlogits
// (backward) instead of the CPU's exception; the engine validates targets before calling when it needs to.
template <typename T>
void cross_entropy_fwd_cuda(int64_t N, int64_t C, const T* logits, const int64_t* target, double label_smoothing,
                            float* loss, float* lse, cudaStream_t stream);
template <typename T>
void cross_entropy_bwd_cuda(int64_t N, int64_t C, const T* logits, const int64_t* target, double label_smoothing,
                            const float* lse, const float* dloss, T* dlogits, cudaStream_t stream);

// ============================ L2 normalisation (kernels/cuda/normalize.cu), T = float, bf16; norm is float
template <typename T>
void l2_normalize_fwd_cuda(int64_t outer, int64_t dim, int64_t inner, const T* x, double eps, T* y, float* norm,
                           cudaStream_t stream);
template <typename T>
void l2_normalize_bwd_cuda(int64_t outer, int64_t dim, int64_t inner, const T* y, const float* norm, double eps,
                           const T* dy, T* dx, cudaStream_t stream);

// ============================ contrastive losses (kernels/cuda/infonce.cu), T = float, bf16; D <= 256
// Tiled, online log-sum-exp, no (M, Ncol) buffer: O((M + Ncol) D) memory. pos, self_col (may be null) are
// device arrays (M). loss, lse, dloss are float for every T; correct may be null.
template <typename T>
void infonce_fwd_cuda(int64_t M, int64_t Ncol, int64_t D, const T* q, const T* k, const int64_t* pos,
                      const int64_t* self_col, int64_t n_private, double inv_tau, float* loss, float* lse,
                      uint8_t* correct, cudaStream_t stream);
// dq (M, D) and/or dk (Ncol, D) may be null; both are overwritten.
template <typename T>
void infonce_bwd_cuda(int64_t M, int64_t Ncol, int64_t D, const T* q, const T* k, const int64_t* pos,
                      const int64_t* self_col, int64_t n_private, double inv_tau, const float* lse,
                      const float* dloss, T* dq, T* dk, cudaStream_t stream);

// ---- bf16 tensor-core path (kernels/cuda/infonce_bf16.cu; compiled, not yet run on a GPU): the same
// semantics with every product on mma.sync m16n8k16 (bf16 in, fp32 accumulate) and exp2 on the SFU. Needs
// D % 8 == 0, 8 <= D <= kInfonceTcMaxD, M and Ncol < 2^30 and 16-byte aligned q, k (infonce_tc_supported);
// the launchers throw otherwise, and callers fall back to infonce_*_cuda<__nv_bfloat16> above. loss, lse,
// dloss are float; dq, dk, dz are bf16 (fp32 accumulation, one rounding at the store).
constexpr int64_t kInfonceTcMaxD = 128;
bool infonce_tc_supported(int64_t M, int64_t Ncol, int64_t D, const void* q, const void* k);
void infonce_tc_fwd_cuda(int64_t M, int64_t Ncol, int64_t D, const __nv_bfloat16* q, const __nv_bfloat16* k,
                         const int64_t* pos, const int64_t* self_col, int64_t n_private, double inv_tau, float* loss,
                         float* lse, uint8_t* correct, cudaStream_t stream);
// dq (M, D) and/or dk (Ncol, D) may be null; both are overwritten.
void infonce_tc_bwd_cuda(int64_t M, int64_t Ncol, int64_t D, const __nv_bfloat16* q, const __nv_bfloat16* k,
                         const int64_t* pos, const int64_t* self_col, int64_t n_private, double inv_tau,
                         const float* lse, const float* dloss, __nv_bfloat16* dq, __nv_bfloat16* dk,
                         cudaStream_t stream);
// q and k the same tensor z (M, D) (SimCLR): dz = dq + dk in one sweep (one recompute, one product, two
// exp2 per entry) instead of two. dz (M, D) is overwritten.
void infonce_tc_bwd_sym_cuda(int64_t M, int64_t D, const __nv_bfloat16* z, const int64_t* pos,
                             const int64_t* self_col, int64_t n_private, double inv_tau, const float* lse,
                             const float* dloss, __nv_bfloat16* dz, cudaStream_t stream);

// ============================ momentum encoder (kernels/cuda/momentum.cu), T = float
// target, online and numel are HOST arrays (n_tensors) holding device pointers / sizes, as the engine has
// them; the (tensor, chunk) table travels in the kernel's parameters, so up to 960 tensors take ONE launch
// (more take ceil(n / 960)). Results are bit-identical to ema_update_cpu (no fused multiply-add).
template <typename T>
void ema_update_cuda(int64_t n_tensors, T* const* target, const T* const* online, const int64_t* numel, double m,
                     cudaStream_t stream);

}  // namespace selfsup::kernels
