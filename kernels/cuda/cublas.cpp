// GEMM on cuBLAS: gemm_batched_cuda with gemm_batched_cpu's row-major semantics.
//
// Row-major to column-major: a row-major (M, N) matrix with leading dimension ldc is, read column-major,
// its transpose (N, M) with the same ld. So C = op(A) op(B) (row-major) is computed as
// C^T = op(B)^T op(A)^T (column-major): cuBLAS gets B first, with m = N, n = M, and each operand keeps
// its own transpose flag. One cublasGemmStridedBatchedEx call covers every batch (stride 0 broadcasts).
//
// Precision: float uses TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32) unless SELFSUP_TF32=0 or
// set_tf32(false); bf16 multiplies bf16 inputs with float accumulation into a bf16 output; double is FP64.
// cuBLAS calls cublasLt underneath; the handle gets a 32 MiB workspace (what cuBLAS recommends on Hopper)
// so its Lt heuristics can pick split-K kernels.
//
// One handle per device, created on first use and kept for the life of the process (destroying cuBLAS
// handles from static destructors races the CUDA runtime's own teardown). Each call binds the handle to
// the caller's stream; the mutex makes the (handle, stream, workspace) triple safe across host threads.
#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_api.h"
#include "kernels/cuda/device.h"

namespace selfsup::kernels {

namespace {

constexpr size_t kWorkspaceBytes = 32u << 20;
constexpr int kMaxDevices = 64;

struct CublasState {
  std::mutex mu;
  cublasHandle_t handle = nullptr;
  void* workspace = nullptr;
};

CublasState g_state[kMaxDevices];

std::atomic<int>& tf32_flag() {
  static std::atomic<int> flag = [] {
    const char* v = std::getenv("SELFSUP_TF32");
    return (v != nullptr && std::strcmp(v, "0") == 0) ? 0 : 1;
  }();
  return flag;
}

// The device's state, its handle created on first use; the caller holds s.mu.
void ensure_handle(CublasState& s, int device) {
  if (s.handle == nullptr) {
    cuda::DeviceGuard g(device);
    SELFSUP_CUBLAS_CHECK(cublasCreate(&s.handle));
    SELFSUP_CUDA_CHECK(cudaMalloc(&s.workspace, kWorkspaceBytes));
  }
}

// cuBLAS insists on ld >= rows of the column-major view even when the view has a single column (where
// ld is never used to address anything); tensors with a size-1 dimension can carry any stride there.
int64_t fix_ld(int64_t ld, int64_t rows, int64_t cols) { return cols == 1 && ld < rows ? rows : ld; }

void check_int(int64_t v, const char* what) {
  if (v < 0 || v > INT_MAX)
    throw CudaError(std::string("gemm_batched_cuda: ") + what + " = " + std::to_string(v) +
                    " does not fit cuBLAS's 32-bit int");
}

template <typename T>
struct GemmTypes;
template <>
struct GemmTypes<float> {
  static constexpr cudaDataType_t data = CUDA_R_32F;
};
template <>
struct GemmTypes<double> {
  static constexpr cudaDataType_t data = CUDA_R_64F;
};
template <>
struct GemmTypes<bf16> {
  static constexpr cudaDataType_t data = CUDA_R_16BF;
};

}  // namespace

bool tf32_enabled() { return tf32_flag().load() != 0; }
void set_tf32(bool on) { tf32_flag().store(on ? 1 : 0); }

template <typename T>
void gemm_batched_cuda(bool trans_a, bool trans_b, int64_t batch, int64_t M, int64_t N, int64_t K, double alpha,
                       const T* A, int64_t lda, int64_t stride_a, const T* B, int64_t ldb, int64_t stride_b,
                       double beta, T* C, int64_t ldc, int64_t stride_c, cudaStream_t stream) {
  if (batch <= 0 || M <= 0 || N <= 0) return;
  check_int(M, "M");
  check_int(N, "N");
  check_int(K, "K");
  check_int(batch, "batch");
  // Column-major views: A is (K, M) (or (M, K) when trans_a), B is (N, K) (or (K, N)), C is (N, M).
  lda = fix_ld(lda, trans_a ? M : K, trans_a ? K : M);
  ldb = fix_ld(ldb, trans_b ? K : N, trans_b ? N : K);
  ldc = fix_ld(ldc, N, M);
  check_int(lda, "lda");
  check_int(ldb, "ldb");
  check_int(ldc, "ldc");
  const int device = cuda::current_device();
  if (device < 0 || device >= kMaxDevices) throw CudaError("cuBLAS: bad device index " + std::to_string(device));
  CublasState& s = g_state[device];
  std::lock_guard<std::mutex> lock(s.mu);
  ensure_handle(s, device);
  SELFSUP_CUBLAS_CHECK(cublasSetStream(s.handle, stream));
  SELFSUP_CUBLAS_CHECK(cublasSetWorkspace(s.handle, s.workspace, kWorkspaceBytes));

  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;  // first cuBLAS operand is B
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  constexpr cudaDataType_t dt = GemmTypes<T>::data;
  if constexpr (std::is_same_v<T, double>) {
    SELFSUP_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        s.handle, op_b, op_a, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), &alpha, B, dt,
        static_cast<int>(ldb), stride_b, A, dt, static_cast<int>(lda), stride_a, &beta, C, dt, static_cast<int>(ldc),
        stride_c, static_cast<int>(batch), CUBLAS_COMPUTE_64F, CUBLAS_GEMM_DEFAULT));
  } else {
    const float fa = static_cast<float>(alpha), fb = static_cast<float>(beta);
    const cublasComputeType_t compute =
        std::is_same_v<T, float> && tf32_enabled() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    SELFSUP_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        s.handle, op_b, op_a, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), &fa, B, dt,
        static_cast<int>(ldb), stride_b, A, dt, static_cast<int>(lda), stride_a, &fb, C, dt, static_cast<int>(ldc),
        stride_c, static_cast<int>(batch), compute, CUBLAS_GEMM_DEFAULT));
  }
  if (cuda_detail::sync_debug_enabled()) SELFSUP_CUDA_CHECK(cudaStreamSynchronize(stream));
}

template void gemm_batched_cuda<float>(bool, bool, int64_t, int64_t, int64_t, int64_t, double, const float*, int64_t,
                                       int64_t, const float*, int64_t, int64_t, double, float*, int64_t, int64_t,
                                       cudaStream_t);
template void gemm_batched_cuda<double>(bool, bool, int64_t, int64_t, int64_t, int64_t, double, const double*,
                                        int64_t, int64_t, const double*, int64_t, int64_t, double, double*, int64_t,
                                        int64_t, cudaStream_t);
template void gemm_batched_cuda<bf16>(bool, bool, int64_t, int64_t, int64_t, int64_t, double, const bf16*, int64_t,
                                      int64_t, const bf16*, int64_t, int64_t, double, bf16*, int64_t, int64_t,
                                      cudaStream_t);

}  // namespace selfsup::kernels
