// The CPU kernels of autocast's bf16 mixed precision (engine/autograd/autocast.h): convolution and GEMM on
// float buffers whose inputs (activations, weights, incoming gradients) are rounded to bfloat16, with
// products accumulated in float and outputs written in float (never rounded to bfloat16). Shapes and
// arguments are those of the float kernels in kernel_api.h. They are CPU-only and not in the engine's kernel
// table: on CUDA autocast casts to bfloat16 tensors for the table's cuDNN / cuBLAS bf16 kernels instead.
//
// Natively (cpu_native_bf16()) the convolutions run oneDNN's bfloat16 kernels (AVX512-BF16 or AMX), the type
// conversion folded into the layout reorders they already do. Elsewhere, and for GEMM everywhere, the inputs
// are rounded into float copies and the float kernels run on them: the same numbers (a product of two
// bfloat16 values is exact in float), at float speed plus the rounding pass.
#pragma once
#include <cstdint>

#include "kernels/kernel_api.h"

namespace selfsup::kernels {

// Whether oneDNN's effective ISA has bfloat16 kernels (avx512_core_bf16 or avx512_core_amx).
bool cpu_native_bf16();
// oneDNN's effective ISA, e.g. "avx512_core_amx", "avx2".
const char* cpu_isa_name();

void conv2d_fwd_bf16_cpu(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y);
void conv2d_bwd_data_bf16_cpu(const Conv2dShape& s, const float* dy, const float* w, float* dx);
// dbias (may be null) sums the rounded dy in float.
void conv2d_bwd_weight_bf16_cpu(const Conv2dShape& s, const float* x, const float* dy, float* dw, float* dbias);

void gemm_batched_bf16_cpu(bool trans_a, bool trans_b, int64_t batch, int64_t M, int64_t N, int64_t K, float alpha,
                           const float* A, int64_t lda, int64_t stride_a, const float* B, int64_t ldb,
                           int64_t stride_b, float beta, float* C, int64_t ldc, int64_t stride_c);

}  // namespace selfsup::kernels
