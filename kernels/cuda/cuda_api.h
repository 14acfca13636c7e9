// CUDA launchers of the elementwise, reduction, index, random and GEMM families. Each mirrors its CPU
// kernel in kernels/kernel_api.h (same arguments, same semantics, same shape glossary) with a `_cuda`
// suffix and a trailing stream. Pointers are device pointers; `sizes`/`strides` arrays are HOST memory:
// the launcher coalesces dimensions (as kernels/cpu/strided_loop.h does) and passes them by value, up to
// kMaxDims (8) dimensions after coalescing (more throws a clear error).
//
// Element types: T = float, double, bf16 (selfsup::bf16, the 2-byte storage struct; device code reads it
// as __nv_bfloat16) and, for binary/compare/where, int32_t, int64_t, uint8_t. Half-precision inputs are
// computed in float. The nn-level launchers (conv, batch norm, pooling, softmax/cross-entropy, normalize,
// InfoNCE, EMA) live in cuda_nn_api.h.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/kernel_api.h"

namespace selfsup::kernels {

// ---- elementwise (kernels/cuda/elementwise.cu)
template <typename T>
void unary_cuda(UnaryOp op, int ndim, const int64_t* sizes, StridedOperand out, StridedOperand in, double a,
                double b, cudaStream_t stream);
template <typename T>
void unary_bwd_cuda(UnaryBwdOp op, int ndim, const int64_t* sizes, StridedOperand dx, StridedOperand dy,
                    StridedOperand x, StridedOperand y, double a, double b, cudaStream_t stream);
template <typename T>
void binary_cuda(BinaryOp op, int ndim, const int64_t* sizes, StridedOperand out, StridedOperand a,
                 StridedOperand b, cudaStream_t stream);
template <typename T>
void compare_cuda(BinaryOp op, int ndim, const int64_t* sizes, StridedOperand out, StridedOperand a,
                  StridedOperand b, cudaStream_t stream);
template <typename T>
void where_cuda(int ndim, const int64_t* sizes, StridedOperand out, StridedOperand cond, StridedOperand a,
                StridedOperand b, cudaStream_t stream);

// ---- copies with dtype conversion (kernels/cuda/copy.cu): every dtype pair, same rules as copy_cast_cpu
void copy_cast_cuda(int ndim, const int64_t* sizes, DType out_dtype, StridedOperand out, DType in_dtype,
                    StridedOperand in, cudaStream_t stream);

// ---- reductions (kernels/cuda/reduce.cu): float and double; sums accumulate in double as on the CPU
template <typename T>
void reduce_cuda(ReduceOp op, int64_t outer, int64_t dim, int64_t inner, const T* in, T* out, int64_t* idx,
                 cudaStream_t stream);

// ---- indexing (kernels/cuda/index.cu); index arrays are device memory, already validated
void index_select_cuda(int64_t outer, int64_t in_dim, int64_t inner, int64_t elem_size, const void* in,
                       int64_t n_index, const int64_t* index, void* out, cudaStream_t stream);
void gather_cuda(int64_t outer, int64_t in_dim, int64_t out_dim, int64_t inner, int64_t elem_size, const void* in,
                 const int64_t* index, void* out, cudaStream_t stream);
// atomicAdd: the order of the additions (hence the last bits of float sums) is not deterministic.
template <typename T>
void scatter_add_cuda(int64_t outer, int64_t self_dim, int64_t src_dim, int64_t inner, T* self,
                      const int64_t* index, const T* src, cudaStream_t stream);

// ---- random fill (kernels/cuda/random.cu): bit-identical to fill_*_cpu (kernels/philox.h holds the formulas)
template <typename T>
void fill_uniform_cuda(int64_t n, uint64_t seed, uint64_t stream_id, uint64_t offset, T* out, cudaStream_t stream);
template <typename T>
void fill_normal_cuda(int64_t n, uint64_t seed, uint64_t stream_id, uint64_t offset, T* out, cudaStream_t stream);

// ---- GEMM (kernels/cuda/cublas.cpp): row-major, same arguments as gemm_batched_cpu except that alpha and
// beta are doubles for every T (bf16 would round them). float: TF32 tensor cores unless SELFSUP_TF32=0;
// bf16: bf16 inputs/outputs, float accumulation; double: FP64.
template <typename T>
void gemm_batched_cuda(bool trans_a, bool trans_b, int64_t batch, int64_t M, int64_t N, int64_t K, double alpha,
                       const T* A, int64_t lda, int64_t stride_a, const T* B, int64_t ldb, int64_t stride_b,
                       double beta, T* C, int64_t ldc, int64_t stride_c, cudaStream_t stream);
// Whether float GEMMs use TF32 (SELFSUP_TF32, default 1); set_tf32 overrides it for the process.
bool tf32_enabled();
void set_tf32(bool on);

}  // namespace selfsup::kernels
