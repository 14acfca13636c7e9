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

namespace {

using bf16 = __nv_bfloat16;

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kBN = 64;          // streamed rows per tile (the forward's columns)
constexpr int kFwdMT = 2;        // m16 tiles per warp in the forward: 32 rows
constexpr int kBwdRows = 16 * kWarps;  // owned rows per block in the backward (one m16 tile per warp)
constexpr int kChunk = 32;             // streamed rows per backward step inside a tile (kBN / kChunk steps)
// Resident blocks per SM asked of the register allocator (ptxas, sm_90, kD = 128): 2 -> 196-231 registers,
// no spills, 8 warps per SM; 3 -> 168 registers with 4-12 bytes of spills, 12 warps. A knob for the GPU session.
constexpr int kBwdMinBlocks = 2;
constexpr int kMaxRows = 1 << 30;      // row/column indices are int inside the kernels
constexpr double kLog2e = 1.4426950408889634;
constexpr float kLn2 = 0.6931471805599453f;
constexpr unsigned kFull = 0xffffffffu;

enum BwdMode { kRows = 0, kCols = 1, kSym = 2 };  // output: dq, dk, dz = dq + dk (q == k)

// ------------------------------------------------------------------ PTX wrappers
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, bypassing L1; src_bytes = 0 writes 16 zero bytes and reads nothing.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
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

// ------------------------------------------------------------------ tiles
// s (kRows, kD + 8) = rows [r0, r0 + kRows) of src (nrows, D) in 16-byte chunks; rows >= nrows and columns
// in [D, kD) are zero. D % 8 == 0 and a 16-byte aligned src make every chunk aligned. Consecutive threads
// take consecutive chunks of a row: 128 threads read 8 rows (2 KB when D = 128) contiguously.
template <int kD, int kRows>
__device__ __forceinline__ void load_tile_async(bf16* s, const bf16* src, int r0, int nrows, int D) {
  constexpr int kChunks = kD / 8, kLd = kD + 8;
  static_assert((kRows * kChunks) % kThreads == 0, "the tile splits evenly over the block");
#pragma unroll
  for (int it = 0; it < kRows * kChunks / kThreads; ++it) {
    const int idx = it * kThreads + static_cast<int>(threadIdx.x);
    const int r = idx / kChunks, c = (idx % kChunks) * 8;
    const int row = r0 + r;
    const bool ok = row < nrows && c < D;
    const bf16* p = ok ? src + static_cast<int64_t>(row) * D + c : src;
    cp_async16(smem_u32(s + r * kLd + c), p, ok ? 16 : 0);
  }
}

// The A fragments (16 rows x kD) of rows [row0, row0 + 16) of a staged tile.
template <int kD>
__device__ __forceinline__ void load_a_frags(uint32_t (&af)[kD / 16][4], const bf16* s, int row0, int lane) {
  constexpr int kLd = kD + 8;
#pragma unroll
  for (int kk = 0; kk < kD / 16; ++kk)
    ldsm_x4(af[kk], smem_u32(s + (row0 + (lane & 15)) * kLd + kk * 16 + (lane >> 4) * 8));
}

// acc[kMT][kNT][4] = A (kMT x 16 rows, registers) x tile^T (the first 8 kNT rows of the staged tile as
// the columns). One ldmatrix.x4 gives b0, b1 of two n8 tiles: matrices (rows n0..+7, k0), (n0..+7, k0+8),
// (n0+8.., k0), (n0+8.., k0+8), so lane l addresses row n0 + (l & 7) + 8 (l >> 4), column k0 + 8 ((l >> 3) & 1).
template <int kD, int kMT, int kNT>
__device__ __forceinline__ void mma_abt(float (&acc)[kMT][kNT][4], const uint32_t (&af)[kMT][kD / 16][4],
                                        const bf16* tile, int lane) {
  constexpr int kLd = kD + 8;
  static_assert(kNT % 2 == 0, "n8 tiles come in pairs");
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.0f;
  const int lrow = (lane & 7) + ((lane >> 4) << 3), lcol = ((lane >> 3) & 1) * 8;
#pragma unroll
  for (int kk = 0; kk < kD / 16; ++kk) {
#pragma unroll
    for (int np = 0; np < kNT / 2; ++np) {
      uint32_t b[4];
      ldsm_x4(b, smem_u32(tile + (np * 16 + lrow) * kLd + kk * 16 + lcol));
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        mma_bf16(acc[mt][2 * np], af[mt][kk], b[0], b[1]);
        mma_bf16(acc[mt][2 * np + 1], af[mt][kk], b[2], b[3]);
      }
    }
  }
}

__device__ __forceinline__ bool in_range(int x, int lo, int n) { return static_cast<unsigned>(x - lo) < static_cast<unsigned>(n); }

// Column col takes part in row r's softmax (the CPU kernel's masking rules).
__device__ __forceinline__ bool is_valid(int col, int pos, int self, int n_private, int Ncol) {
  return col < Ncol && col != self && (col >= n_private || col == pos);
}

// ------------------------------------------------------------------ forward
// One thread's view of one row: running max m of the raw dot products over the valid columns it has seen,
// the sum l of exp2((s - m) scale2), the first column reaching m, and the positive's raw dot product.
struct FwdRow {
  float m, l, tpos;
  int bestj;
};

// Folds this thread's 16 entries of one row of a tile (s[nt][2h + e], column c0 + 8 nt + 2t + e).
template <bool kMasked>
__device__ __forceinline__ void fwd_row_update(FwdRow& st, const float (&s)[8][4], int h, int c0, int t,
                                               float scale2, int pos, int self, int n_private, int Ncol) {
  float v[16];
  bool nan_seen = false;
#pragma unroll
  for (int nt = 0; nt < 8; ++nt)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      float a = s[nt][2 * h + e];
      if (kMasked) {
        const int col = c0 + nt * 8 + 2 * t + e;
        if (col == pos) st.tpos = a;  // taken before masking, as the CPU kernel does
        a = is_valid(col, pos, self, n_private, Ncol) ? a : -INFINITY;
        nan_seen |= a != a;
      }
      v[nt * 2 + e] = a;
    }
  float tm = v[0];
#pragma unroll
  for (int i = 1; i < 16; ++i) tm = fmaxf(tm, v[i]);  // fmaxf skips NaN; NaN reaches l below
  if (tm > st.m) {  // a new maximum (rare after the first tiles): rescale, find its first column
    st.l *= ex2((st.m - tm) * scale2);  // m = -inf: exp2(-inf) = 0 and l was 0
    st.m = tm;
#pragma unroll
    for (int i = 15; i >= 0; --i)
      if (v[i] == tm) st.bestj = c0 + (i >> 1) * 8 + 2 * t + (i & 1);  // last write = lowest column
  }
  if (st.m == -INFINITY) {  // everything masked so far
    if (nan_seen) st.l = NAN;
    return;
  }
  const float ms = st.m * scale2;
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < 16; ++i) sum += ex2(fmaf(v[i], scale2, -ms));  // masked: exp2(-inf) = 0
  st.l += sum;
}

// Merges the states of the 4 lanes of a quad (they share rows and hold disjoint columns).
__device__ __forceinline__ void fwd_row_merge(FwdRow& st, float scale2) {
#pragma unroll
  for (int off = 1; off <= 2; off <<= 1) {
    const float mo = __shfl_xor_sync(kFull, st.m, off), lo = __shfl_xor_sync(kFull, st.l, off);
    const float po = __shfl_xor_sync(kFull, st.tpos, off);
    const int jo = __shfl_xor_sync(kFull, st.bestj, off);
    if (mo > st.m || (mo == st.m && jo < st.bestj)) st.bestj = jo;  // ties: the lower column
    const float mn = fmaxf(st.m, mo);
    st.l = mn == -INFINITY ? st.l + lo : st.l * ex2((st.m - mn) * scale2) + lo * ex2((mo - mn) * scale2);
    st.m = mn;
    st.tpos = fmaxf(st.tpos, po);  // -inf except in the lane that saw the positive
  }
}

// grid: ceil(M / 128) blocks of 128 threads; static shared memory 2 x 64 x (kD + 8) bf16 (34.8 KB at kD=128).
template <int kD>
__global__ void __launch_bounds__(kThreads)
    infonce_tc_fwd_kernel(int M, int Ncol, int D, const bf16* __restrict__ q, const bf16* __restrict__ k,
                          const int64_t* __restrict__ pos, const int64_t* __restrict__ self_col, int n_private,
                          float scale2, float inv_tau, float* __restrict__ loss, float* __restrict__ lse,
                          uint8_t* __restrict__ correct) {
  constexpr int kLd = kD + 8, kMT = kFwdMT, kBM = kWarps * 16 * kMT;
  static_assert(kBM <= 2 * kBN, "the row tile is staged in the two column buffers");
  __shared__ __align__(16) bf16 sbuf[2 * kBN * kLd];
  const int warp = static_cast<int>(threadIdx.x) >> 5, lane = static_cast<int>(threadIdx.x) & 31;
  const int g = lane >> 2, t = lane & 3;
  const int r0 = static_cast<int>(blockIdx.x) * kBM, wrow = warp * 16 * kMT;

  // This block's q rows -> registers (A fragments), through the (still unused) column buffers.
  load_tile_async<kD, kBM>(sbuf, q, r0, M, D);
  cp_async_commit();
  cp_async_wait_all();
  __syncthreads();
  uint32_t qf[kMT][kD / 16][4];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) load_a_frags<kD>(qf[mt], sbuf, wrow + mt * 16, lane);
  __syncthreads();  // the buffers now take k tiles

  FwdRow st[kMT][2];
  int prow[kMT][2], srow[kMT][2];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = r0 + wrow + mt * 16 + g + 8 * h;
      prow[mt][h] = row < M ? static_cast<int>(pos[row]) : -1;
      srow[mt][h] = (row < M && self_col) ? static_cast<int>(self_col[row]) : -1;
      st[mt][h] = {-INFINITY, 0.0f, -INFINITY, -1};
    }

  const int ntiles = (Ncol + kBN - 1) / kBN;
  load_tile_async<kD, kBN>(sbuf, k, 0, Ncol, D);
  cp_async_commit();
  for (int it = 0; it < ntiles; ++it) {
    cp_async_wait_all();
    __syncthreads();  // tile it landed for every thread; everyone is done with tile it - 1's buffer
    if (it + 1 < ntiles) load_tile_async<kD, kBN>(sbuf + ((it + 1) & 1) * kBN * kLd, k, (it + 1) * kBN, Ncol, D);
    cp_async_commit();
    const int c0 = it * kBN;
    float s[kMT][8][4];
    mma_abt<kD, kMT, 8>(s, qf, sbuf + (it & 1) * kBN * kLd, lane);

    // Masking is needed when a row of this warp has its positive or excluded column here, or the tile holds
    // private columns or runs past Ncol; the test is warp-uniform, so the branch does not diverge.
    bool special = false;
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) special |= in_range(prow[mt][h], c0, kBN) || in_range(srow[mt][h], c0, kBN);
    special = __any_sync(kFull, special) || c0 < n_private || c0 + kBN > Ncol;
    if (special) {
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          fwd_row_update<true>(st[mt][h], s[mt], h, c0, t, scale2, prow[mt][h], srow[mt][h], n_private, Ncol);
    } else {
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h) fwd_row_update<false>(st[mt][h], s[mt], h, c0, t, scale2, -1, -1, 0, Ncol);
    }
  }

#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      fwd_row_merge(st[mt][h], scale2);
      const int row = r0 + wrow + mt * 16 + g + 8 * h;
      if (t == 0 && row < M) {
        const float l = (st[mt][h].m * scale2 + log2f(st[mt][h].l)) * kLn2;
        lse[row] = l;
        loss[row] = l - st[mt][h].tpos * inv_tau;
        if (correct) correct[row] = st[mt][h].bestj == prow[mt][h];
      }
    }
}

// ------------------------------------------------------------------ backward
// d loss / d s for one entry (row r, column col) from the raw dot product a: g_r (p - [col == pos_r]),
// p = exp2(a scale2 - lse2_r) on valid columns, 0 elsewhere. Unmasked: the tile holds no special column.
template <bool kMasked>
__device__ __forceinline__ float grad_entry(float a, float scale2, float lse2, float gr, int col, int pos, int self,
                                            int n_private, int Ncol) {
  if (!kMasked) return gr * ex2(fmaf(a, scale2, -lse2));
  const float p = is_valid(col, pos, self, n_private, Ncol) ? ex2(fmaf(a, scale2, -lse2)) : 0.0f;
  return gr * (p - (col == pos ? 1.0f : 0.0f));
}

// Turns one S chunk (this warp's 16 owned x kChunk streamed, in place) into the gradient chunk. s0 is the
// chunk's first streamed index; the streamed statistics pointers are already offset to the chunk.
//   kRows: entry (o, s) is G[o][s]: row o (statistics in registers), column s.
//   kCols: entry (o, s) is G[s][o]: row s (statistics from shared memory), column o.
//   kSym:  both, summed.
template <int kMode, bool kMasked>
__device__ __forceinline__ void grad_chunk(float (&s)[1][kChunk / 8][4], int ow, int s0, int g, int t,
                                           float scale2, const float (&lse2o)[2], const float (&go)[2],
                                           const int (&po)[2], const int (&so)[2], const float* sl2, const float* sg,
                                           const int* sp, const int* ss, int n_private, int Ncol) {
#pragma unroll
  for (int nt = 0; nt < kChunk / 8; ++nt) {
    const int sl = nt * 8 + 2 * t;  // streamed local index of e = 0
    float2 l2s = make_float2(0.f, 0.f), gs = make_float2(0.f, 0.f);
    if (kMode != kRows) {
      l2s = *reinterpret_cast<const float2*>(sl2 + sl);
      gs = *reinterpret_cast<const float2*>(sg + sl);
    }
#pragma unroll
    for (int e2 = 0; e2 < 4; ++e2) {
      const int h = e2 >> 1, e = e2 & 1;
      const float a = s[0][nt][e2];
      const int o = ow + g + 8 * h, si = s0 + sl + e;
      float v = 0.0f;
      if (kMode != kCols)
        v += grad_entry<kMasked>(a, scale2, lse2o[h], go[h], si, po[h], so[h], n_private, Ncol);
      if (kMode != kRows) {
        const int pj = kMasked ? sp[sl + e] : -1, sj = kMasked ? ss[sl + e] : -1;
        v += grad_entry<kMasked>(a, scale2, e ? l2s.y : l2s.x, e ? gs.y : gs.x, o, pj, sj, n_private, Ncol);
      }
      s[0][nt][e2] = v;
    }
  }
}

// grid: ceil(owned / 64) blocks of 128 threads. Owned: rows of q (kRows, kSym) or of k (kCols); streamed:
// the other side (kSym: z itself). out (owned, D) is overwritten.
template <int kD, int kMode>
__global__ void __launch_bounds__(kThreads, kBwdMinBlocks)
    infonce_tc_bwd_kernel(int M, int Ncol, int D, const bf16* __restrict__ q, const bf16* __restrict__ k,
                          const int64_t* __restrict__ pos, const int64_t* __restrict__ self_col, int n_private,
                          float scale2, float inv_tau, const float* __restrict__ lse,
                          const float* __restrict__ dloss, bf16* __restrict__ out) {
  constexpr int kLd = kD + 8, kKS = kD / 16, kNT = kD / 8;
  constexpr bool kStreamStats = kMode != kRows;  // streamed rows are softmax rows: their statistics are needed
  __shared__ __align__(16) bf16 sbuf[2 * kBN * kLd];
  __shared__ __align__(16) float s_lse2[2][kBN];
  __shared__ __align__(16) float s_g[2][kBN];
  __shared__ int s_pos[2][kBN], s_self[2][kBN];
  const int warp = static_cast<int>(threadIdx.x) >> 5, lane = static_cast<int>(threadIdx.x) & 31;
  const int g = lane >> 2, t = lane & 3;
  const bf16* own = kMode == kCols ? k : q;
  const bf16* str = kMode == kRows ? k : q;
  const int n_own = kMode == kCols ? Ncol : M, n_str = kMode == kRows ? Ncol : M;
  const int o0 = static_cast<int>(blockIdx.x) * kBwdRows, ow = o0 + warp * 16;

  load_tile_async<kD, kBwdRows>(sbuf, own, o0, n_own, D);
  cp_async_commit();
  cp_async_wait_all();
  __syncthreads();
  uint32_t af[1][kKS][4];
  load_a_frags<kD>(af[0], sbuf, warp * 16, lane);
  __syncthreads();

  // Statistics of the owned rows when they are softmax rows (kRows, kSym). Rows past M: g = 0, so their
  // entries vanish whatever p is (their operand rows are zero, p stays finite).
  float lse2o[2] = {0.f, 0.f}, go[2] = {0.f, 0.f};
  int po[2] = {-1, -1}, so[2] = {-1, -1};
  if (kMode != kCols) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = ow + g + 8 * h;
      if (row < M) {
        lse2o[h] = lse[row] * static_cast<float>(kLog2e);
        go[h] = inv_tau * dloss[row];
        po[h] = static_cast<int>(pos[row]);
        so[h] = self_col ? static_cast<int>(self_col[row]) : -1;
      }
    }
  }
  // Statistics of streamed rows [s0, s0 + 64) into buffer b (plain stores, ordered by the loop's barrier).
  auto load_stats = [&](int b, int s0) {
    for (int r = static_cast<int>(threadIdx.x); r < kBN; r += kThreads) {
      const int row = s0 + r;
      const bool ok = row < M;
      s_lse2[b][r] = ok ? lse[row] * static_cast<float>(kLog2e) : 0.0f;
      s_g[b][r] = ok ? inv_tau * dloss[row] : 0.0f;
      s_pos[b][r] = ok ? static_cast<int>(pos[row]) : -1;
      s_self[b][r] = (ok && self_col) ? static_cast<int>(self_col[row]) : -1;
    }
  };

  float oacc[kNT][4];
#pragma unroll
  for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) oacc[nt][e] = 0.0f;

  const int ntiles = (n_str + kBN - 1) / kBN;
  load_tile_async<kD, kBN>(sbuf, str, 0, n_str, D);
  if (kStreamStats) load_stats(0, 0);
  cp_async_commit();
  for (int it = 0; it < ntiles; ++it) {
    cp_async_wait_all();
    __syncthreads();  // tile and statistics it are visible; tile it - 1's buffers are free
    const int b = it & 1, s0 = it * kBN;
    if (it + 1 < ntiles) {
      load_tile_async<kD, kBN>(sbuf + (b ^ 1) * kBN * kLd, str, s0 + kBN, n_str, D);
      if (kStreamStats) load_stats(b ^ 1, s0 + kBN);
    }
    cp_async_commit();
    const bf16* tile = sbuf + b * kBN * kLd;

    // Warp-uniform: does any entry of this warp's 16 x 64 block need the masked formula?
    bool special = false;
    if (kMode != kCols)
#pragma unroll
      for (int h = 0; h < 2; ++h) special |= in_range(po[h], s0, kBN) || in_range(so[h], s0, kBN);
    if (kStreamStats)
#pragma unroll
      for (int r = lane; r < kBN; r += 32) special |= in_range(s_pos[b][r], ow, 16) || in_range(s_self[b][r], ow, 16);
    special = __any_sync(kFull, special);
    if (kMode != kCols) special |= s0 < n_private || s0 + kBN > Ncol;  // streamed indices are columns
    if (kMode != kRows) special |= ow < n_private || ow + 16 > Ncol;   // owned indices are columns

    // The tile in chunks of kChunk streamed rows (a rolled loop: it bounds the registers live at once to one
    // chunk's S, G and B fragments, next to the 16 x kD output accumulators and the A fragments).
#pragma unroll 1
    for (int c = 0; c < kBN; c += kChunk) {
      const bf16* ct = tile + c * kLd;
      float s[1][kChunk / 8][4];
      mma_abt<kD, 1, kChunk / 8>(s, af, ct, lane);
      if (special)
        grad_chunk<kMode, true>(s, ow, s0 + c, g, t, scale2, lse2o, go, po, so, s_lse2[b] + c, s_g[b] + c,
                                s_pos[b] + c, s_self[b] + c, n_private, Ncol);
      else
        grad_chunk<kMode, false>(s, ow, s0 + c, g, t, scale2, lse2o, go, po, so, s_lse2[b] + c, s_g[b] + c,
                                 s_pos[b] + c, s_self[b] + c, n_private, Ncol);

      // out (16 x kD) += G (16 x kChunk, the accumulators packed as A fragments) x chunk (kChunk x kD).
      // B(k = streamed row, n = feature) is the chunk read transposed: matrices (k0.., n0), (k0+8.., n0),
      // (k0.., n0+8), (k0+8.., n0+8), so lane l addresses row k0 + (l & 7) + 8 ((l >> 3) & 1), column
      // n0 + 8 (l >> 4).
      const int trow = (lane & 7) + ((lane >> 3) & 1) * 8, tcol = (lane >> 4) * 8;
#pragma unroll
      for (int kk = 0; kk < kChunk / 16; ++kk) {
        const uint32_t pa[4] = {pack_bf16(s[0][2 * kk][0], s[0][2 * kk][1]),
                                pack_bf16(s[0][2 * kk][2], s[0][2 * kk][3]),
                                pack_bf16(s[0][2 * kk + 1][0], s[0][2 * kk + 1][1]),
                                pack_bf16(s[0][2 * kk + 1][2], s[0][2 * kk + 1][3])};
#pragma unroll
        for (int dp = 0; dp < kD / 16; ++dp) {
          uint32_t bt[4];
          ldsm_x4_trans(bt, smem_u32(ct + (kk * 16 + trow) * kLd + dp * 16 + tcol));
          mma_bf16(oacc[2 * dp], pa, bt[0], bt[1]);
          mma_bf16(oacc[2 * dp + 1], pa, bt[2], bt[3]);
        }
      }
    }
  }

  // oacc[nt][e]: row ow + g + 8 (e >> 1), feature 8 nt + 2t + (e & 1); pairs go out as one bf16x2 store.
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = ow + g + 8 * h;
    if (row >= n_own) continue;
    bf16* dst = out + static_cast<int64_t>(row) * D;
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt) {
      const int d = nt * 8 + 2 * t;
      if (d < D)
        *reinterpret_cast<__nv_bfloat162*>(dst + d) = __floats2bfloat162_rn(oacc[nt][2 * h], oacc[nt][2 * h + 1]);
    }
  }
}

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
  infonce_tc_bwd_kernel<kD, kMode><<<grid, kThreads, 0, stream>>>(
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

}  // namespace

bool infonce_tc_supported(int64_t M, int64_t Ncol, int64_t D, const void* q, const void* k) {
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return D >= 8 && D <= kInfonceTcMaxD && D % 8 == 0 && M >= 0 && M < kMaxRows && Ncol >= 0 && Ncol < kMaxRows &&
         aligned(q) && aligned(k);
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
    infonce_tc_fwd_kernel<64><<<grid, kThreads, 0, stream>>>(m, nc, d, q, k, pos, self_col, np, scale2, it, loss,
                                                             lse, correct);
  else
    infonce_tc_fwd_kernel<128><<<grid, kThreads, 0, stream>>>(m, nc, d, q, k, pos, self_col, np, scale2, it, loss,
                                                              lse, correct);
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
