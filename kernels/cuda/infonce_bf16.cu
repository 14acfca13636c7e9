// InfoNCE on bf16 inputs with tensor cores: the tiled, N x N-free design of kernels/cuda/infonce.cu (online
// log-sum-exp, exp2 with log2(e)/tau folded in, backward recomputing the tiles) with every product on
// mma.sync.m16n8k16 bf16 -> fp32. docs/infonce.md ("bf16 tensor-core path") explains the design.
// STATUS: compiled for sm_90, not yet run on a GPU.
//
// Why mma.sync (inline PTX) and not nvcuda::wmma: the fragment layouts of mma.sync are specified by the PTX
// ISA, and the accumulator layout of two m16n8 tiles is exactly the A-operand layout of one m16n8k16 step
// (below). So the backward turns the logit tile S into G = dloss/dS in registers and feeds G straight into
// the second product (flash-attention-2's trick), with no shared-memory round trip. wmma fragments are
// opaque (their element-to-thread mapping is unspecified), which would force G through shared memory and
// make the per-element masking (the positive, the excluded column, padding) index arithmetic impossible
// without a store. wgmma (sm_90a, asynchronous warpgroup MMA) is faster still but needs descriptors and
// swizzled layouts we cannot validate without a GPU; mma.sync runs on sm_80+ and is the safer first step.
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16", .bf16): lane = 4 g + t (g = groupID 0..7,
// t = thread in group 0..3); a 32-bit register holds two bf16, the lower column index in the low half.
//   A (16 x 16, row-major):  a0 = A[g][2t..2t+1]     a1 = A[g+8][2t..2t+1]
//                            a2 = A[g][2t+8..2t+9]   a3 = A[g+8][2t+8..2t+9]
//   B (16 x 8, "col"):       b0 = B[2t..2t+1][g]     b1 = B[2t+8..2t+9][g]        (k index first)
//   C (16 x 8, f32):         c0, c1 = C[g][2t], C[g][2t+1]   c2, c3 = C[g+8][2t], C[g+8][2t+1]
// so the C fragments of n-tiles 2j and 2j+1 are, packed to bf16 pairs, the A fragment of k-step j.
// ldmatrix.x4 fills 4 registers from four 8 x 8 bf16 matrices whose 8 row addresses come from lanes 0-7,
// 8-15, 16-23, 24-31; lane l receives row l/4, columns 2(l%4)..+1 of each (with .trans: column l/4, rows
// 2(l%4)..+1, i.e. the transpose).
//
// Tiles. A block is 4 warps (128 threads). Shared memory holds two buffers of kBN = 64 rows of the streamed
// operand, each row kD (64 or 128, D padded with zeros) bf16 plus 8 bf16 of padding: the 272-byte (D=128)
// or 144-byte (D=64) row stride puts the 8 rows of one ldmatrix phase in 8 different 16-byte bank groups
// (stride/16 is odd), so ldmatrix is conflict-free without a swizzle. Tiles arrive with cp.async (16-byte
// chunks, zero-filled past the last row and past D) one tile ahead of the compute (double buffering).
//   forward: a warp owns 32 rows (2 m16 tiles, so every B fragment read from shared memory feeds 2 MMAs),
//     kept in registers as A fragments for the whole column sweep; block = 128 rows. Per 64-column tile:
//     S (32 x 64, fp32, 64 registers) = Q K^T, then the per-thread online log-sum-exp (each thread keeps
//     its own running max and sum for its 2 x 2 rows over the columns it holds, merged across the 4 lanes
//     of a quad once at the end), the first argmax and the positive's logit. Masking (positive, excluded
//     column, private columns, columns past Ncol) runs only on tiles that need it (warp-uniform test).
//   backward: a warp owns 16 rows of the output (dq: rows of q; dk: rows of k; sym: rows of z), block = 64.
//     Per 64-row streamed tile: S = A_own B_tile^T (tensor cores), G computed in registers, packed to bf16
//     A fragments, out += G B_tile (tensor cores, B fragments via ldmatrix.trans). The output block (16 x kD
//     fp32 per warp) lives in registers and is written once: no atomics, deterministic.
//     dq: G_ij = inv_tau dloss_i (p_ij - [j == pos_i]) with row statistics in registers.
//     dk: the same entries with the roles swapped; the streamed rows' statistics come through shared memory.
//     sym (q and k the same tensor, SimCLR): dz = dq + dk = (G + G^T) z, one recompute and one product:
//     H_ij = G_ij + G_ji, both from the same S_ij = S_ji (two exp2 per entry, no second sweep).
// Memory: the inputs, the outputs and O(M) statistics; nothing N x N exists anywhere.
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/cuda_nn_api.h"
#include "kernels/cuda/nn_check.cuh"

namespace selfsup::kernels {

namespace infonce_tc {

using bf16 = __nv_bfloat16;

#define TC_DEV __device__ __forceinline__
#define TC_UNROLL _Pragma("unroll")
#define TC_NO_UNROLL _Pragma("unroll 1")
#define TC_SMEM __shared__
#define TC_SMEM16 __shared__ __align__(16)

__device__ __forceinline__ int tc_tid() { return static_cast<int>(threadIdx.x); }
__device__ __forceinline__ int tc_bid() { return static_cast<int>(blockIdx.x); }
__device__ __forceinline__ void tc_sync() { __syncthreads(); }
__device__ __forceinline__ float tc_shfl_xor(float v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }
__device__ __forceinline__ int tc_shfl_xor(int v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }
__device__ __forceinline__ bool tc_any(bool p) { return __any_sync(0xffffffffu, p) != 0; }

// ------------------------------------------------------------------ primitives (see infonce_bf16_impl.cuh)
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, bypassing L1; src_bytes = 0 writes 16 zero bytes and reads nothing.
__device__ __forceinline__ void cp_async16(bf16* dst, const bf16* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const bf16* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(row)));
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const bf16* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(row)));
}

// c (16 x 8 f32) += a (16 x 16 bf16, row) * b (16 x 8 bf16, col).
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%10, %11, %12, %13};\n"
      : "=f"(c[0]), "=f"(c[1]), "=f"(c[2]), "=f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
}

// 2^x on the special-function unit (relative error ~2^-22); exp2(-inf) = 0, NaN stays NaN.
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Two floats -> one register of two bf16 (round to nearest even), lo in the low half (the lower column).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

#include "kernels/cuda/infonce_bf16_impl.cuh"

// sm_80+ instructions (cp.async, mma.sync bf16): a build that also targets an older architecture gets a
// trap there, and infonce_tc_supported() sends such devices to the CUDA-core kernel instead.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#define TC_BODY(call) __trap()
#else
#define TC_BODY(call) call
#endif

template <int kD>
__global__ void __launch_bounds__(kThreads)
    infonce_tc_fwd_kernel(int M, int Ncol, int D, const bf16* __restrict__ q, const bf16* __restrict__ k,
                          const int64_t* __restrict__ pos, const int64_t* __restrict__ self_col, int n_private,
                          float scale2, float inv_tau, float* __restrict__ loss, float* __restrict__ lse,
                          uint8_t* __restrict__ correct) {
  TC_BODY((fwd_body<kD>(M, Ncol, D, q, k, pos, self_col, n_private, scale2, inv_tau, loss, lse, correct)));
}

template <int kD, int kMode>
__global__ void __launch_bounds__(kThreads, kBwdMinBlocks)
    infonce_tc_bwd_kernel(int M, int Ncol, int D, const bf16* __restrict__ q, const bf16* __restrict__ k,
                          const int64_t* __restrict__ pos, const int64_t* __restrict__ self_col, int n_private,
                          float scale2, float inv_tau, const float* __restrict__ lse,
                          const float* __restrict__ dloss, bf16* __restrict__ out) {
  TC_BODY((bwd_body<kD, kMode>(M, Ncol, D, q, k, pos, self_col, n_private, scale2, inv_tau, lse, dloss, out)));
}
#undef TC_BODY

// ------------------------------------------------------------------ launchers
void check_tc(int64_t M, int64_t Ncol, int64_t D, const void* q, const void* k, const char* who) {
  if (!infonce_tc_supported(M, Ncol, D, q, k))
    throw std::runtime_error(std::string(who) + ": the bf16 tensor-core InfoNCE needs D % 8 == 0, 8 <= D <= " +
                             std::to_string(kInfonceTcMaxD) + ", rows and columns < 2^30 and 16-byte aligned q, k; got D = " +
                             std::to_string(D) + " (infonce_fwd_cuda<__nv_bfloat16> handles the other cases)");
}

template <int kD, int kMode>
void launch_bwd(int64_t M, int64_t Ncol, int64_t D, const bf16* q, const bf16* k, const int64_t* pos,
                const int64_t* self_col, int64_t n_private, double inv_tau, const float* lse, const float* dloss,
                bf16* out, cudaStream_t stream) {
  const int64_t owned = kMode == kCols ? Ncol : M;
  const unsigned grid = static_cast<unsigned>((owned + kBwdRows - 1) / kBwdRows);
  SELFSUP_LAUNCH(grid, kThreads, 0, stream, infonce_tc_bwd_kernel<kD, kMode>)(
      static_cast<int>(M), static_cast<int>(Ncol), static_cast<int>(D), q, k, pos, self_col,
      static_cast<int>(n_private), static_cast<float>(inv_tau * kLog2e), static_cast<float>(inv_tau), lse, dloss,
      out);
  SELFSUP_LAUNCH_CHECK();
}

template <int kMode>
void dispatch_bwd(int64_t M, int64_t Ncol, int64_t D, const bf16* q, const bf16* k, const int64_t* pos,
                  const int64_t* self_col, int64_t n_private, double inv_tau, const float* lse, const float* dloss,
                  bf16* out, cudaStream_t stream) {
  if (D <= 64)
    launch_bwd<64, kMode>(M, Ncol, D, q, k, pos, self_col, n_private, inv_tau, lse, dloss, out, stream);
  else
    launch_bwd<128, kMode>(M, Ncol, D, q, k, pos, self_col, n_private, inv_tau, lse, dloss, out, stream);
}

}  // namespace infonce_tc

using namespace infonce_tc;

bool infonce_tc_supported(int64_t M, int64_t Ncol, int64_t D, const void* q, const void* k) {
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (!(D >= 8 && D <= kInfonceTcMaxD && D % 8 == 0 && M >= 0 && M < kMaxRows && Ncol >= 0 && Ncol < kMaxRows &&
        aligned(q) && aligned(k)))
    return false;
  int dev = 0, major = 0;  // cp.async and mma.sync bf16 need sm_80 or newer
  SELFSUP_CUDA_CHECK(cudaGetDevice(&dev));
  SELFSUP_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  return major >= 8;
}

void infonce_tc_fwd_cuda(int64_t M, int64_t Ncol, int64_t D, const bf16* q, const bf16* k, const int64_t* pos,
                         const int64_t* self_col, int64_t n_private, double inv_tau, float* loss, float* lse,
                         uint8_t* correct, cudaStream_t stream) {
  if (M == 0) return;
  check_tc(M, Ncol, D, q, k, "infonce_tc_fwd_cuda");
  const unsigned grid = static_cast<unsigned>((M + kWarps * 16 * kFwdMT - 1) / (kWarps * 16 * kFwdMT));
  const float scale2 = static_cast<float>(inv_tau * kLog2e), it = static_cast<float>(inv_tau);
  const int m = static_cast<int>(M), nc = static_cast<int>(Ncol), d = static_cast<int>(D),
            np = static_cast<int>(n_private);
  if (D <= 64)
    SELFSUP_LAUNCH(grid, kThreads, 0, stream, infonce_tc_fwd_kernel<64>)(
        m, nc, d, q, k, pos, self_col, np, scale2, it, loss, lse, correct);
  else
    SELFSUP_LAUNCH(grid, kThreads, 0, stream, infonce_tc_fwd_kernel<128>)(
        m, nc, d, q, k, pos, self_col, np, scale2, it, loss, lse, correct);
  SELFSUP_LAUNCH_CHECK();
}

void infonce_tc_bwd_cuda(int64_t M, int64_t Ncol, int64_t D, const bf16* q, const bf16* k, const int64_t* pos,
                         const int64_t* self_col, int64_t n_private, double inv_tau, const float* lse,
                         const float* dloss, bf16* dq, bf16* dk, cudaStream_t stream) {
  if (M == 0 || Ncol == 0) {
    if (dq) SELFSUP_CUDA_CHECK(cudaMemsetAsync(dq, 0, sizeof(bf16) * M * D, stream));
    if (dk) SELFSUP_CUDA_CHECK(cudaMemsetAsync(dk, 0, sizeof(bf16) * Ncol * D, stream));
    return;
  }
  check_tc(M, Ncol, D, q, k, "infonce_tc_bwd_cuda");
  if (dq) dispatch_bwd<kRows>(M, Ncol, D, q, k, pos, self_col, n_private, inv_tau, lse, dloss, dq, stream);
  if (dk) dispatch_bwd<kCols>(M, Ncol, D, q, k, pos, self_col, n_private, inv_tau, lse, dloss, dk, stream);
}

void infonce_tc_bwd_sym_cuda(int64_t M, int64_t D, const bf16* z, const int64_t* pos, const int64_t* self_col,
                             int64_t n_private, double inv_tau, const float* lse, const float* dloss, bf16* dz,
                             cudaStream_t stream) {
  if (M == 0) return;
  check_tc(M, M, D, z, z, "infonce_tc_bwd_sym_cuda");
  dispatch_bwd<kSym>(M, M, D, z, z, pos, self_col, n_private, inv_tau, lse, dloss, dz, stream);
}

}  // namespace selfsup::kernels
