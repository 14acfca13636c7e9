// InfoNCE on the GPU without the (M, Ncol) logit matrix: the tiled design of docs/infonce.md (flash
// attention's online log-sum-exp) with the semantics of infonce_*_cpu (kernels/cpu/infonce.cpp).
//
// Tiles are 64 rows x 64 columns; a block has 256 threads as 16 x 16, and thread (ty, tx) owns the tile
// entries (ty + 16 i, tx + 16 j), i, j < 4. Operands live in shared memory as float rows of the whole
// feature dimension D (<= 256) with an odd row stride, so the 16 threads of a half-warp read 16 different
// banks and the other half-warp reads the same addresses (broadcast): the dot products are conflict-free FMAs.
//
// forward (grid: one block per 64 rows). The block's q rows stay in shared memory; k is streamed 64 columns
//   at a time. Logits are kept in log2 units, t = <q_i, k_j> * inv_tau * log2(e), so each exponential is
//   one exp2. Every thread keeps, per owned row, its OWN running max and sum of exp2 over the columns it
//   sees (no cross-thread traffic inside the loop), plus the running argmax and the positive's logit; the
//   16 partial states of a row are merged with shuffles at the end. Writes lse, loss, correct: O(M) output.
// backward (recomputes tiles): G_ij = inv_tau dloss_i (p_ij - [j == pos_i]), p_ij = exp2(t_ij - lse2_i).
//   dq: a block owns 64 rows and streams column tiles, dq_rows += G k_tile.
//   dk: a block owns 64 columns and streams row tiles, dk_cols += G^T q_tile (a second launch).
//   G goes through shared memory (64 x 64 floats) between the two products; the output block (64 x D) is
//   accumulated in registers (4 rows x D/16 dims per thread) and written once: no atomics, deterministic.
// Memory: O((M + Ncol) D) inputs/outputs plus O(M) statistics; nothing N x N exists anywhere.
// bf16 inputs are converted to float when a tile is loaded (fp32 FMA math); a tensor-core path is the
// next step (docs/cuda-nn-kernels.md).
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cuda/cuda_nn_api.h"
#include "kernels/cuda/nn_check.cuh"

namespace selfsup::kernels {

namespace {

constexpr int kTile = 64;      // rows and columns per tile
constexpr int kThreads = 256;  // 16 x 16 threads, a 4 x 4 micro-tile each
constexpr int kMaxD = 256;
constexpr int kGld = kTile + 1;  // row stride of the G tile in shared memory
constexpr double kLog2e = 1.4426950408889634;
constexpr float kLn2 = 0.6931471805599453f;
constexpr unsigned kFull = 0xffffffffu;

using nn_cuda::from_f;
using nn_cuda::to_f;

// Row stride of an operand tile: odd, so rows ty + 16 i of 16 threads fall in 16 different banks.
__host__ __device__ __forceinline__ int tile_ld(int D) { return D | 1; }

// Per-row statistics the backward needs for one row tile.
struct RowMeta {
  float lse2;   // lse in log2 units
  float g;      // inv_tau * dloss
  int64_t pos;  // positive column, -1 past the end
  int64_t self; // excluded column, -1 for none
};

size_t fwd_smem_bytes(int D) { return sizeof(float) * 2 * kTile * tile_ld(D); }
size_t bwd_smem_bytes(int D) {
  return sizeof(float) * (2 * kTile * tile_ld(D) + kTile * kGld) + sizeof(RowMeta) * kTile;
}

// s (64, ld) = src rows [r0, r0 + 64) (nrows, D), as float; rows past the end are zero.
template <typename T>
__device__ __forceinline__ void load_tile(float* s, int ld, const T* src, int64_t r0, int64_t nrows, int D) {
  for (int idx = threadIdx.x; idx < kTile * D; idx += kThreads) {
    const int r = idx / D, c = idx - r * D;
    const int64_t g = r0 + r;
    s[r * ld + c] = g < nrows ? to_f(src[g * D + c]) : 0.0f;  // consecutive threads: consecutive addresses
  }
}

// acc[i][j] = <a row ty + 16 i, b row tx + 16 j> over D.
__device__ __forceinline__ void tile_dot(const float* sa, const float* sb, int ld, int D, int ty, int tx,
                                         float acc[4][4]) {
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
  const float* a = sa + ty * ld;
  const float* b = sb + tx * ld;
#pragma unroll 4
  for (int c = 0; c < D; ++c) {
    float av[4], bv[4];
    for (int i = 0; i < 4; ++i) av[i] = a[16 * i * ld + c];
    for (int j = 0; j < 4; ++j) bv[j] = b[16 * j * ld + c];
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
  }
}

// Column j of row i takes part in the softmax (the CPU kernel's masking rules).
__device__ __forceinline__ bool is_valid(int64_t col, int64_t pos, int64_t self, int64_t n_private, int64_t Ncol) {
  return col < Ncol && col != self && (col >= n_private || col == pos);
}

// One thread's view of one row in the forward: online log-sum-exp (log2 units) over the columns it sees,
// the first argmax, and the positive's logit (natural units, taken before masking, as the CPU kernel).
struct RowState {
  float m = -INFINITY, l = 0.0f, best = -INFINITY, spos = -INFINITY;
  int64_t bestj = -1;

  // t: this tile's 4 masked logits (log2 units) at columns col0 + 16 j; raw: the unscaled dot products.
  __device__ __forceinline__ void add(const float t[4], int64_t col0, int64_t pos, const float raw[4],
                                      float inv_tau) {
    float tm = -INFINITY;
    for (int j = 0; j < 4; ++j) {
      const int64_t col = col0 + 16 * j;
      if (col == pos) spos = raw[j] * inv_tau;
      tm = fmaxf(tm, t[j]);
      if (t[j] > best) {  // strict, columns increasing: the first maximum wins
        best = t[j];
        bestj = col;
      }
    }
    if (!(tm > -INFINITY)) {  // all masked, or NaN (fmaxf skips NaN): keep a NaN visible
      for (int j = 0; j < 4; ++j)
        if (t[j] != t[j]) l = NAN;
      return;
    }
    if (tm > m) {
      l *= exp2f(m - tm);
      m = tm;
    }
    for (int j = 0; j < 4; ++j) l += exp2f(t[j] - m);  // masked entries: exp2(-inf) = 0
  }

  // Merges the states of the 16 threads (tx) that share this row: lanes of the same half-warp.
  __device__ __forceinline__ void merge_half_warp() {
    for (int off = 8; off > 0; off >>= 1) {
      const float mo = __shfl_xor_sync(kFull, m, off), lo = __shfl_xor_sync(kFull, l, off);
      const float bo = __shfl_xor_sync(kFull, best, off), so = __shfl_xor_sync(kFull, spos, off);
      const long long jo = __shfl_xor_sync(kFull, static_cast<long long>(bestj), off);
      const float mn = fmaxf(m, mo);
      l = mn == -INFINITY ? l + lo : l * exp2f(m - mn) + lo * exp2f(mo - mn);
      m = mn;
      if (bo > best || (bo == best && jo < bestj)) {
        best = bo;
        bestj = jo;
      }
      spos = fmaxf(spos, so);
    }
  }

  __device__ __forceinline__ float lse_nat() const { return (m + log2f(l)) * kLn2; }
};

// meta[0, 64) = statistics of rows [r0, r0 + 64); rows past M get g = 0, so their G entries vanish.
__device__ __forceinline__ void load_meta(RowMeta* meta, int64_t r0, int64_t M, const int64_t* pos,
                                          const int64_t* self_col, const float* lse, const float* dloss,
                                          float inv_tau) {
  for (int t = threadIdx.x; t < kTile; t += kThreads) {
    const int64_t row = r0 + t;
    if (row < M) {
      meta[t] = {lse[row] * static_cast<float>(kLog2e), inv_tau * dloss[row], pos[row],
                 self_col ? self_col[row] : -1};
    } else {
      meta[t] = {0.0f, 0.0f, -1, -1};
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    infonce_fwd_kernel(int64_t M, int64_t Ncol, int D, const T* q, const T* k, const int64_t* pos,
                       const int64_t* self_col, int64_t n_private, float scale2, float inv_tau, float* loss,
                       float* lse, uint8_t* correct) {
  SELFSUP_DYNAMIC_SMEM(float, smem);
  const int ld = tile_ld(D);
  float* sQ = smem;              // (64, ld) this block's rows
  float* sK = smem + kTile * ld;  // (64, ld) the current column tile
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * kTile;
  load_tile(sQ, ld, q, r0, M, D);

  RowState st[4];
  int64_t p[4], self[4];
  for (int i = 0; i < 4; ++i) {
    const int64_t row = r0 + ty + 16 * i;
    p[i] = row < M ? pos[row] : -1;
    self[i] = (row < M && self_col) ? self_col[row] : -1;
  }
  for (int64_t c0 = 0; c0 < Ncol; c0 += kTile) {
    __syncthreads();  // everyone is done with the previous sK
    load_tile(sK, ld, k, c0, Ncol, D);
    __syncthreads();
    float acc[4][4];
    tile_dot(sQ, sK, ld, D, ty, tx, acc);
    for (int i = 0; i < 4; ++i) {
      float t[4];
      for (int j = 0; j < 4; ++j) {
        const int64_t col = c0 + tx + 16 * j;
        t[j] = is_valid(col, p[i], self[i], n_private, Ncol) ? acc[i][j] * scale2 : -INFINITY;
      }
      st[i].add(t, c0 + tx, p[i], acc[i], inv_tau);
    }
  }
  for (int i = 0; i < 4; ++i) {
    st[i].merge_half_warp();
    const int64_t row = r0 + ty + 16 * i;
    if (tx == 0 && row < M) {
      const float l = st[i].lse_nat();
      lse[row] = l;
      loss[row] = l - st[i].spos;
      if (correct) correct[row] = st[i].bestj == p[i];
    }
  }
}

// kOwnRows: the block owns 64 rows and writes dq; otherwise it owns 64 columns and writes dk.
// kDPT: output dims per thread (D <= 16 kDPT).
template <typename T, bool kOwnRows, int kDPT>
__global__ void __launch_bounds__(kThreads)
    infonce_bwd_kernel(int64_t M, int64_t Ncol, int D, const T* q, const T* k, const int64_t* pos,
                       const int64_t* self_col, int64_t n_private, float scale2, float inv_tau, const float* lse,
                       const float* dloss, T* out) {
  SELFSUP_DYNAMIC_SMEM(float, smem);
  const int ld = tile_ld(D);
  float* sA = smem;                    // (64, ld) owned operand: q rows (dq) or k columns (dk)
  float* sB = sA + kTile * ld;         // (64, ld) streamed operand
  float* sG = sB + kTile * ld;         // (64, kGld) G, owned x streamed
  RowMeta* meta = reinterpret_cast<RowMeta*>(sG + kTile * kGld);  // (64) the current row tile
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  const int64_t owned_total = kOwnRows ? M : Ncol, streamed_total = kOwnRows ? Ncol : M;
  const int64_t o0 = static_cast<int64_t>(blockIdx.x) * kTile;
  load_tile(sA, ld, kOwnRows ? q : k, o0, owned_total, D);
  if (kOwnRows) load_meta(meta, o0, M, pos, self_col, lse, dloss, inv_tau);

  float out_acc[4][kDPT];
  for (int i = 0; i < 4; ++i)
    for (int e = 0; e < kDPT; ++e) out_acc[i][e] = 0.0f;

  for (int64_t s0 = 0; s0 < streamed_total; s0 += kTile) {
    __syncthreads();  // previous sB, sG, meta fully consumed
    load_tile(sB, ld, kOwnRows ? k : q, s0, streamed_total, D);
    if (!kOwnRows) load_meta(meta, s0, M, pos, self_col, lse, dloss, inv_tau);
    __syncthreads();
    float acc[4][4];  // <owned ty+16i, streamed tx+16j>
    tile_dot(sA, sB, ld, D, ty, tx, acc);
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) {
        const int lo = ty + 16 * i, ls = tx + 16 * j;  // local owned / streamed index
        const int lr = kOwnRows ? lo : ls;             // local row (for the row's statistics)
        const int64_t col = kOwnRows ? s0 + ls : o0 + lo;
        const RowMeta& rm = meta[lr];
        const float prob = is_valid(col, rm.pos, rm.self, n_private, Ncol) ? exp2f(acc[i][j] * scale2 - rm.lse2)
                                                                           : 0.0f;
        sG[lo * kGld + ls] = rm.g * (prob - (col == rm.pos ? 1.0f : 0.0f));
      }
    __syncthreads();
    // out (owned, D) += G (owned, 64) x streamed (64, D); thread owns rows ty+16i, dims tx+16e.
    for (int s = 0; s < kTile; ++s) {
      float g[4], b[kDPT];
      for (int i = 0; i < 4; ++i) g[i] = sG[(ty + 16 * i) * kGld + s];
      for (int e = 0; e < kDPT; ++e) {
        const int d = tx + 16 * e;
        b[e] = d < D ? sB[s * ld + d] : 0.0f;
      }
      for (int i = 0; i < 4; ++i)
        for (int e = 0; e < kDPT; ++e) out_acc[i][e] = fmaf(g[i], b[e], out_acc[i][e]);
    }
  }
  for (int i = 0; i < 4; ++i) {
    const int64_t o = o0 + ty + 16 * i;
    if (o >= owned_total) continue;
    for (int e = 0; e < kDPT; ++e) {
      const int d = tx + 16 * e;
      if (d < D) out[o * D + d] = from_f<T>(out_acc[i][e]);
    }
  }
}

void check_dims(int64_t M, int64_t Ncol, int64_t D, const char* who) {
  if (D < 1 || D > kMaxD)
    throw std::runtime_error(std::string(who) + ": D = " + std::to_string(D) + " outside [1, 256]");
  if ((M + kTile - 1) / kTile > 0x7fffffff || (Ncol + kTile - 1) / kTile > 0x7fffffff)
    throw std::runtime_error(std::string(who) + ": too many rows");
}

template <typename T, bool kOwnRows, int kDPT>
void launch_bwd(int64_t M, int64_t Ncol, int D, const T* q, const T* k, const int64_t* pos, const int64_t* self_col,
                int64_t n_private, float scale2, float inv_tau, const float* lse, const float* dloss, T* out,
                cudaStream_t stream) {
  const size_t bytes = bwd_smem_bytes(D);
  auto kernel = infonce_bwd_kernel<T, kOwnRows, kDPT>;
  SELFSUP_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(bytes)));
  const int64_t owned = kOwnRows ? M : Ncol;
  const unsigned grid = static_cast<unsigned>((owned + kTile - 1) / kTile);
  SELFSUP_LAUNCH(grid, kThreads, bytes, stream, kernel)(
      M, Ncol, D, q, k, pos, self_col, n_private, scale2, inv_tau, lse, dloss, out);
  SELFSUP_LAUNCH_CHECK();
}

template <typename T, bool kOwnRows>
void dispatch_bwd(int64_t M, int64_t Ncol, int D, const T* q, const T* k, const int64_t* pos, const int64_t* self_col,
                  int64_t n_private, float scale2, float inv_tau, const float* lse, const float* dloss, T* out,
                  cudaStream_t stream) {
  if (D <= 64)
    launch_bwd<T, kOwnRows, 4>(M, Ncol, D, q, k, pos, self_col, n_private, scale2, inv_tau, lse, dloss, out, stream);
  else if (D <= 128)
    launch_bwd<T, kOwnRows, 8>(M, Ncol, D, q, k, pos, self_col, n_private, scale2, inv_tau, lse, dloss, out, stream);
  else
    launch_bwd<T, kOwnRows, 16>(M, Ncol, D, q, k, pos, self_col, n_private, scale2, inv_tau, lse, dloss, out, stream);
}

}  // namespace

template <typename T>
void infonce_fwd_cuda(int64_t M, int64_t Ncol, int64_t D, const T* q, const T* k, const int64_t* pos,
                      const int64_t* self_col, int64_t n_private, double inv_tau, float* loss, float* lse,
                      uint8_t* correct, cudaStream_t stream) {
  if (M == 0) return;
  check_dims(M, Ncol, D, "infonce_fwd_cuda");
  const int d = static_cast<int>(D);
  const size_t bytes = fwd_smem_bytes(d);
  SELFSUP_CUDA_CHECK(cudaFuncSetAttribute(infonce_fwd_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(bytes)));
  const unsigned grid = static_cast<unsigned>((M + kTile - 1) / kTile);
  SELFSUP_LAUNCH(grid, kThreads, bytes, stream, infonce_fwd_kernel<T>)(M, Ncol, d, q, k, pos, self_col, n_private,
                                                           static_cast<float>(inv_tau * kLog2e),
                                                           static_cast<float>(inv_tau), loss, lse, correct);
  SELFSUP_LAUNCH_CHECK();
}

template <typename T>
void infonce_bwd_cuda(int64_t M, int64_t Ncol, int64_t D, const T* q, const T* k, const int64_t* pos,
                      const int64_t* self_col, int64_t n_private, double inv_tau, const float* lse,
                      const float* dloss, T* dq, T* dk, cudaStream_t stream) {
  if (M == 0 || Ncol == 0) {  // nothing flows: zero gradients
    if (dq) SELFSUP_CUDA_CHECK(cudaMemsetAsync(dq, 0, sizeof(T) * M * D, stream));
    if (dk) SELFSUP_CUDA_CHECK(cudaMemsetAsync(dk, 0, sizeof(T) * Ncol * D, stream));
    return;
  }
  check_dims(M, Ncol, D, "infonce_bwd_cuda");
  const int d = static_cast<int>(D);
  const float scale2 = static_cast<float>(inv_tau * kLog2e), it = static_cast<float>(inv_tau);
  if (dq) dispatch_bwd<T, true>(M, Ncol, d, q, k, pos, self_col, n_private, scale2, it, lse, dloss, dq, stream);
  if (dk) dispatch_bwd<T, false>(M, Ncol, d, q, k, pos, self_col, n_private, scale2, it, lse, dloss, dk, stream);
}

#define SELFSUP_INSTANTIATE_INFONCE_CUDA(T)                                                                     \
  template void infonce_fwd_cuda<T>(int64_t, int64_t, int64_t, const T*, const T*, const int64_t*,            \
                                    const int64_t*, int64_t, double, float*, float*, uint8_t*, cudaStream_t); \
  template void infonce_bwd_cuda<T>(int64_t, int64_t, int64_t, const T*, const T*, const int64_t*,            \
                                    const int64_t*, int64_t, double, const float*, const float*, T*, T*,       \
                                    cudaStream_t);
SELFSUP_INSTANTIATE_INFONCE_CUDA(float)
SELFSUP_INSTANTIATE_INFONCE_CUDA(__nv_bfloat16)
#undef SELFSUP_INSTANTIATE_INFONCE_CUDA

}  // namespace selfsup::kernels
