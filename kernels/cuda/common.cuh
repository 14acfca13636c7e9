// Shared by every CUDA source of kernels/cuda/ (and by the engine's CUDA glue): the error-check macros,
// the launch check, and (device code only) warp/block reductions and 16-byte vector loads.
//
// Error scheme: ONE template, check_status<S>, handles every library's status type; the four macros only
// name the library. Every status enum used here has success == 0 (cudaSuccess, CUBLAS_STATUS_SUCCESS,
// CUDNN_STATUS_SUCCESS, ncclSuccess), and status_string() overloads give the library's own message.
// Failures throw selfsup::kernels::CudaError (a std::runtime_error: kernels/ does not see the engine's
// selfsup::Error) whose message is "<lib> error: <call text> failed at <file>:<line>: <code> (<message>)".
// The CLI and the tests catch std::exception, so both error types reach the user the same way.
#pragma once
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>

#if __has_include(<nccl.h>)
#include <nccl.h>
#define SELFSUP_HAVE_NCCL_HEADER 1
#endif

namespace selfsup::kernels {

class CudaError : public std::runtime_error {
 public:
  explicit CudaError(const std::string& msg) : std::runtime_error(msg) {}
};

namespace cuda_detail {

inline const char* status_string(cudaError_t s) { return cudaGetErrorString(s); }
inline const char* status_string(cublasStatus_t s) { return cublasGetStatusString(s); }
inline const char* status_string(cudnnStatus_t s) { return cudnnGetErrorString(s); }
#ifdef SELFSUP_HAVE_NCCL_HEADER
inline const char* status_string(ncclResult_t s) { return ncclGetErrorString(s); }
#endif

// Builds the message and throws (out of line: keeps the macro expansion small).
[[noreturn]] void throw_status(const char* lib, const char* call, const char* file, int line, long code,
                               const char* msg);

template <typename Status>
inline void check_status(Status s, const char* lib, const char* call, const char* file, int line) {
  if (s != static_cast<Status>(0)) throw_status(lib, call, file, line, static_cast<long>(s), status_string(s));
}

// cudaGetLastError, and with SELFSUP_SYNC_DEBUG=1 also a device synchronize, so an asynchronous fault is
// reported at the launch that caused it.
void launch_check(const char* file, int line);
bool sync_debug_enabled();

}  // namespace cuda_detail
}  // namespace selfsup::kernels

#define SELFSUP_GPU_CHECK_(lib, call) \
  ::selfsup::kernels::cuda_detail::check_status((call), lib, #call, __FILE__, __LINE__)
#define SELFSUP_CUDA_CHECK(call) SELFSUP_GPU_CHECK_("CUDA", call)
#define SELFSUP_CUBLAS_CHECK(call) SELFSUP_GPU_CHECK_("cuBLAS", call)
#define SELFSUP_CUDNN_CHECK(call) SELFSUP_GPU_CHECK_("cuDNN", call)
#ifdef SELFSUP_HAVE_NCCL_HEADER
#define SELFSUP_NCCL_CHECK(call) SELFSUP_GPU_CHECK_("NCCL", call)
#endif
// Every kernel launch: SELFSUP_LAUNCH(grid, block, smem_bytes, stream, kernel)(args...); then, after it,
// SELFSUP_LAUNCH_CHECK(). With nvcc this is exactly kernel<<<grid, block, smem_bytes, stream>>>(args...); in
// the CPU emulator's host build (SELFSUP_CUDA_EMU, kernels/cuda/emu/emu.h) it runs the grid on fibers.
// The kernel comes last so a template-id with commas (k<T, false>) needs no parentheses.
// Dynamic shared memory is declared with SELFSUP_DYNAMIC_SMEM(T, name) (extern __shared__ T name[] on nvcc).
#ifdef SELFSUP_CUDA_EMU
#include "kernels/cuda/emu/emu.h"
#define SELFSUP_LAUNCH(grid, block, smem, stream, ...) \
  ::selfsup::emu::launch_at(__FILE__, __LINE__, #__VA_ARGS__, grid, block, smem, stream,        \
                            [&](const auto&... a) { __VA_ARGS__(a...); })
#define SELFSUP_DYNAMIC_SMEM(T, name) SELFSUP_EMU_DYNAMIC_SMEM(T, name)
#else
#define SELFSUP_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>
#define SELFSUP_DYNAMIC_SMEM(T, name) extern __shared__ T name[]
#endif
// Device code: nvcc's device pass, or the emulator's host build of the same source.
#if defined(__CUDACC__) || defined(SELFSUP_CUDA_EMU)
#define SELFSUP_DEVICE_CODE 1
#endif
// After every kernel launch.
#define SELFSUP_LAUNCH_CHECK() ::selfsup::kernels::cuda_detail::launch_check(__FILE__, __LINE__)
// In destructors: report, never throw.
#define SELFSUP_CUDA_WARN(call)                                                                      \
  do {                                                                                             \
    cudaError_t sw_err_ = (call);                                                                     \
    if (sw_err_ != cudaSuccess)                                                                      \
      std::fprintf(stderr, "selfsup: warning: %s failed at %s:%d: %s\n", #call, __FILE__, __LINE__, \
                   cudaGetErrorString(sw_err_));                                                      \
  } while (0)

#ifdef SELFSUP_DEVICE_CODE
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace selfsup::kernels::cuda {

constexpr int kMaxDims = 8;   // dims of a strided elementwise op after coalescing
constexpr int kBlock = 256;   // default threads per block

// Blocks for n work items at `per_block` items per block, capped (grid-stride loops cover the rest).
inline unsigned grid_for(int64_t n, int64_t per_block, int64_t cap = 65536) {
  int64_t g = (n + per_block - 1) / per_block;
  if (g < 1) g = 1;
  return static_cast<unsigned>(g < cap ? g : cap);
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <typename T>
__device__ __forceinline__ T warp_max(T v) {
  for (int o = 16; o > 0; o >>= 1) {
    T w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `scratch` holds 32 values of T in shared memory.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nwarps ? scratch[lane] : T(0);
  return warp_sum(v);
}

// A 16-byte (or smaller) aligned group of V elements, loaded and stored with one instruction.
template <typename T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

template <typename T, int V>
__device__ __forceinline__ Vec<T, V> load_vec(const T* p) {
  return *reinterpret_cast<const Vec<T, V>*>(p);
}
template <typename T, int V>
__device__ __forceinline__ void store_vec(T* p, const Vec<T, V>& v) {
  *reinterpret_cast<Vec<T, V>*>(p) = v;
}

inline bool is_aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

}  // namespace selfsup::kernels::cuda
#endif  // SELFSUP_DEVICE_CODE
