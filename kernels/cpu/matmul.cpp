// GEMM on the CPU. float goes to oneDNN's dnnl_sgemm: it JIT-compiles AVX-512 kernels and measured ~1.1-1.5x
// OpenBLAS's sgemm on this machine (docs/cpu-dense-kernels.md), and it shares the OpenMP thread pool with the
// oneDNN convolutions (OpenBLAS's own pthread pool, spinning beside OpenMP's, halved throughput when both ran in
// one process). double is the reference precision for gradient checks on small tensors: OpenBLAS dgemm.
// gemm_batched_bf16_cpu (autocast, kernels/bf16_api.h) rounds A and B to bfloat16 in float copies and runs the
// same sgemm: products of bfloat16 values are exact in float, so this is bfloat16 inputs with float
// accumulation. There is no native bfloat16 GEMM path: in the ResNet trainers the GEMMs are the projection
// heads, about 1% of a step's work.
#include <cblas.h>

#include <atomic>
#include <cstdint>
#include <type_traits>

#include "kernels/cpu/dnnl_common.h"
#include "kernels/bf16_api.h"
#include "kernels/kernel_api.h"

namespace selfsup::kernels {
namespace {

// C(M,N) *= beta, the whole answer when K == 0 (beta == 0 writes zeros, never reads C, as BLAS does).
template <typename T>
void scale_c(int64_t M, int64_t N, T beta, T* C, int64_t ldc) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) C[m * ldc + n] = beta == T(0) ? T(0) : beta * C[m * ldc + n];
}

dnnl_status_t sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                    int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  return dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void dgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
           int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, int(M),
              int(N), int(K), alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
}

// The elements a batch of row-major (rows, cols) matrices with leading dim ld and batch stride spans.
int64_t span(int64_t batch, int64_t stride, int64_t rows, int64_t cols, int64_t ld) {
  return (batch - 1) * stride + (rows - 1) * ld + cols;
}

}  // namespace

template <typename T>
void gemm_cpu(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
              const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_c(M, N, beta, C, ldc);
  if constexpr (std::is_same_v<T, float>) {
    dnnl_util::check_status(sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc), "dnnl_sgemm");
  } else {
    dgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
}

template <typename T>
void gemm_batched_cpu(bool trans_a, bool trans_b, int64_t batch, int64_t M, int64_t N, int64_t K, T alpha,
                      const T* A, int64_t lda, int64_t stride_a, const T* B, int64_t ldb, int64_t stride_b, T beta,
                      T* C, int64_t ldc, int64_t stride_c) {
  if (batch == 0 || M == 0 || N == 0) return;
  // Small float matrices: one single-threaded sgemm per OpenMP thread beats threading inside each tiny GEMM
  // (oneDNN runs sequentially inside a parallel region). Large ones: let each sgemm use every thread.
  if constexpr (std::is_same_v<T, float>) {
    if (K > 0 && batch > 1 && M * N * K < (int64_t(1) << 20)) {
      std::atomic<int> status{dnnl_success};
#pragma omp parallel for schedule(static)
      for (int64_t b = 0; b < batch; ++b) {
        const auto s = sgemm(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b, ldb, beta,
                             C + b * stride_c, ldc);
        if (s != dnnl_success) status = s;  // exceptions must not leave an OpenMP region
      }
      dnnl_util::check_status(dnnl_status_t(status.load()), "dnnl_sgemm (batched)");
      return;
    }
  }
  for (int64_t b = 0; b < batch; ++b)
    gemm_cpu<T>(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b, ldb, beta,
                C + b * stride_c, ldc);
}

template void gemm_cpu<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                              int64_t, float, float*, int64_t);
template void gemm_cpu<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                               const double*, int64_t, double, double*, int64_t);
template void gemm_batched_cpu<float>(bool, bool, int64_t, int64_t, int64_t, int64_t, float, const float*, int64_t,
                                      int64_t, const float*, int64_t, int64_t, float, float*, int64_t, int64_t);
template void gemm_batched_cpu<double>(bool, bool, int64_t, int64_t, int64_t, int64_t, double, const double*,
                                       int64_t, int64_t, const double*, int64_t, int64_t, double, double*, int64_t,
                                       int64_t);

void gemm_batched_bf16_cpu(bool trans_a, bool trans_b, int64_t batch, int64_t M, int64_t N, int64_t K, float alpha,
                           const float* A, int64_t lda, int64_t stride_a, const float* B, int64_t ldb,
                           int64_t stride_b, float beta, float* C, int64_t ldc, int64_t stride_c) {
  if (batch > 0 && M > 0 && N > 0 && K > 0) {
    // Every batch's operands rounded at once (the gaps between them too, harmlessly: nothing reads them).
    A = dnnl_util::rounded_to_bf16(dnnl_util::kRoundedSlotA, A,
                                   span(batch, stride_a, trans_a ? K : M, trans_a ? M : K, lda));
    B = dnnl_util::rounded_to_bf16(dnnl_util::kRoundedSlotB, B,
                                   span(batch, stride_b, trans_b ? N : K, trans_b ? K : N, ldb));
  }
  gemm_batched_cpu<float>(trans_a, trans_b, batch, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc,
                          stride_c);
}

}  // namespace selfsup::kernels
