// Bias add and bias gradient of a convolution output y (N, K, PQ), PQ = P*Q, used by conv_cudnn.cpp for
// float and bf16 alike: cuDNN's legacy cudnnAddTensor / cudnnConvolutionBackwardBias do not document
// bf16 support, and these two passes are simple enough to own (and are deterministic: no atomics).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace selfsup::kernels {

// y[n, k, s] += bias[k], computed in float and rounded once. bias (K), y (N, K, PQ).
template <typename T>
void conv_bias_add_cuda(int64_t N, int64_t K, int64_t PQ, const T* bias, T* y, cudaStream_t stream);
// dbias[k] = sum over n, s of dy[n, k, s], accumulated in float. dy (N, K, PQ), dbias (K).
template <typename T>
void conv_bias_grad_cuda(int64_t N, int64_t K, int64_t PQ, const T* dy, T* dbias, cudaStream_t stream);

}  // namespace selfsup::kernels
