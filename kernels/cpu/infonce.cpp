// InfoNCE on the CPU without the (M, Ncol) logit matrix. The rows are cut into blocks of kRowBlock and the
// columns into blocks of kColBlock; one (kRowBlock, kColBlock) tile of logits at a time is computed with a
// GEMM, consumed, and overwritten, so memory is O((M + Ncol) D) plus one tile per thread.
//   forward: per row, a running max and a running sum of exponentials (online log-sum-exp), the positive's
//            logit, and the running argmax; lse is all backward needs.
//   backward: recompute each tile, turn it into G = dloss/dlogits = inv_tau dloss_i (p_ij - [j == pos_i]),
//            then dq += G k (threads own row blocks) and dk += G^T q, either into a per-thread (Ncol, D)
//            accumulator in the same sweep (summed in thread order at the end), or, when those would be
//            too large, in a second sweep where threads own column blocks. No two threads write the same
//            output row, and the result does not depend on scheduling.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/kernel_api.h"

namespace selfsup::kernels {

namespace {

constexpr int64_t kRowBlock = 128;
constexpr int64_t kColBlock = 512;

// tile (rows, cols) = inv_tau * q[r0:r0+rows] k[c0:c0+cols]^T
template <typename T>
void logits_tile(int64_t rows, int64_t cols, int64_t D, const T* q, const T* k, double inv_tau, T* tile) {
  gemm_cpu<T>(false, true, rows, cols, D, static_cast<T>(inv_tau), q, D, k, D, T(0), tile, cols);
}

// Turns a logits tile into G = inv_tau dloss_i (p_ij - [j == pos_i]) in place.
template <typename T>
void tile_to_grad(int64_t r0, int64_t rows, int64_t c0, int64_t cols, T* tile, const int64_t* pos,
                  const int64_t* self_col, int64_t n_private, double inv_tau, const T* lse, const T* dloss) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = r0 + r;
    const T scale = static_cast<T>(inv_tau) * dloss[i];
    const T l = lse[i];
    T* row = tile + r * cols;
    for (int64_t c = 0; c < cols; ++c) row[c] = scale * std::exp(row[c] - l);
    // Exclusions and the positive touch at most a few entries of the row: patch them afterwards.
    if (self_col && self_col[i] >= c0 && self_col[i] < c0 + cols) row[self_col[i] - c0] = T(0);
    for (int64_t j = c0; j < std::min(c0 + cols, n_private); ++j)
      if (j != pos[i]) row[j - c0] = T(0);
    if (pos[i] >= c0 && pos[i] < c0 + cols) row[pos[i] - c0] -= scale;
  }
}

}  // namespace

template <typename T>
void infonce_fwd_cpu(int64_t M, int64_t Ncol, int64_t D, const T* q, const T* k, const int64_t* pos,
                     const int64_t* self_col, int64_t n_private, double inv_tau, T* loss, T* lse, uint8_t* correct) {
  const int64_t n_row_blocks = (M + kRowBlock - 1) / kRowBlock;
#pragma omp parallel
  {
    std::vector<T> tile(static_cast<size_t>(kRowBlock * kColBlock));
    std::vector<T> run_max(kRowBlock), pos_logit(kRowBlock), best(kRowBlock);
    std::vector<double> run_sum(kRowBlock);
    std::vector<int64_t> best_j(kRowBlock);
#pragma omp for schedule(dynamic, 1)
    for (int64_t rb = 0; rb < n_row_blocks; ++rb) {
      const int64_t r0 = rb * kRowBlock, rows = std::min(kRowBlock, M - r0);
      std::fill(run_max.begin(), run_max.end(), -std::numeric_limits<T>::infinity());
      std::fill(best.begin(), best.end(), -std::numeric_limits<T>::infinity());
      std::fill(run_sum.begin(), run_sum.end(), 0.0);
      std::fill(best_j.begin(), best_j.end(), -1);
      for (int64_t c0 = 0; c0 < Ncol; c0 += kColBlock) {
        const int64_t cols = std::min(kColBlock, Ncol - c0);
        logits_tile(rows, cols, D, q + r0 * D, k + c0 * D, inv_tau, tile.data());
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t i = r0 + r;
          T* row = tile.data() + r * cols;
          if (pos[i] >= c0 && pos[i] < c0 + cols) pos_logit[r] = row[pos[i] - c0];
          // Mask the few invalid entries to -inf, then take the tile max and the sum of exponentials.
          if (self_col && self_col[i] >= c0 && self_col[i] < c0 + cols)
            row[self_col[i] - c0] = -std::numeric_limits<T>::infinity();
          for (int64_t j = c0; j < std::min(c0 + cols, n_private); ++j)
            if (j != pos[i]) row[j - c0] = -std::numeric_limits<T>::infinity();
          T tmax = -std::numeric_limits<T>::infinity();
          int64_t targ = -1;
          for (int64_t c = 0; c < cols; ++c)
            if (row[c] > tmax) {
              tmax = row[c];
              targ = c;
            }
          if (tmax > best[r]) {
            best[r] = tmax;
            best_j[r] = c0 + targ;
          }
          if (tmax == -std::numeric_limits<T>::infinity()) continue;
          const T new_max = std::max(run_max[r], tmax);
          double s = 0;
          for (int64_t c = 0; c < cols; ++c) s += std::exp(row[c] - new_max);
          run_sum[r] = run_sum[r] * std::exp(static_cast<double>(run_max[r] - new_max)) + s;
          run_max[r] = new_max;
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = r0 + r;
        lse[i] = static_cast<T>(run_max[r] + std::log(run_sum[r]));
        loss[i] = lse[i] - pos_logit[r];
        if (correct) correct[i] = best_j[r] == pos[i];
      }
    }
  }
}

template <typename T>
void infonce_bwd_cpu(int64_t M, int64_t Ncol, int64_t D, const T* q, const T* k, const int64_t* pos,
                     const int64_t* self_col, int64_t n_private, double inv_tau, const T* lse, const T* dloss, T* dq,
                     T* dk) {
  const int64_t n_row_blocks = (M + kRowBlock - 1) / kRowBlock, n_col_blocks = (Ncol + kColBlock - 1) / kColBlock;
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  // With both gradients wanted, one sweep over row blocks serves both when every thread may keep its own
  // (Ncol, D) dk accumulator: each tile is then computed and exponentiated once instead of twice. The
  // static schedule fixes which rows each thread owns and the partial sums are added in thread order, so
  // the result is the same on every run with the same thread count.
  const bool fuse_dk = dq && dk &&
                       static_cast<double>(threads) * static_cast<double>(Ncol * D) * sizeof(T) <= 256.0 * (1 << 20);
  if (dq) {
    std::vector<std::vector<T>> partial(fuse_dk ? static_cast<size_t>(threads) : 0);  // per-thread (Ncol, D)
#pragma omp parallel num_threads(threads)
    {
      std::vector<T> tile(static_cast<size_t>(kRowBlock * kColBlock));
      T* dk_part = nullptr;
      if (fuse_dk) {
        std::vector<T>& mine = partial[static_cast<size_t>(omp_get_thread_num())];
        mine.assign(static_cast<size_t>(Ncol * D), T(0));
        dk_part = mine.data();
      }
#pragma omp for schedule(static)
      for (int64_t rb = 0; rb < n_row_blocks; ++rb) {
        const int64_t r0 = rb * kRowBlock, rows = std::min(kRowBlock, M - r0);
        for (int64_t c0 = 0; c0 < Ncol; c0 += kColBlock) {
          const int64_t cols = std::min(kColBlock, Ncol - c0);
          logits_tile(rows, cols, D, q + r0 * D, k + c0 * D, inv_tau, tile.data());
          tile_to_grad(r0, rows, c0, cols, tile.data(), pos, self_col, n_private, inv_tau, lse, dloss);
          // dq (rows, D) (+)= G (rows, cols) k (cols, D)
          gemm_cpu<T>(false, false, rows, D, cols, T(1), tile.data(), cols, k + c0 * D, D, c0 == 0 ? T(0) : T(1),
                      dq + r0 * D, D);
          // dk_part (cols, D) += G^T (cols, rows) q (rows, D)
          if (dk_part)
            gemm_cpu<T>(true, false, cols, D, rows, T(1), tile.data(), cols, q + r0 * D, D, T(1), dk_part + c0 * D, D);
        }
      }
    }
    if (fuse_dk) {
      const int64_t n = Ncol * D;
#pragma omp parallel for schedule(static)
      for (int64_t e = 0; e < n; ++e) {
        T acc = T(0);
        for (const std::vector<T>& part : partial) acc += part.empty() ? T(0) : part[e];
        dk[e] = acc;
      }
      return;
    }
  }
  if (dk) {
#pragma omp parallel
    {
      std::vector<T> tile(static_cast<size_t>(kRowBlock * kColBlock));
#pragma omp for schedule(dynamic, 1)
      for (int64_t cb = 0; cb < n_col_blocks; ++cb) {
        const int64_t c0 = cb * kColBlock, cols = std::min(kColBlock, Ncol - c0);
        for (int64_t r0 = 0; r0 < M; r0 += kRowBlock) {
          const int64_t rows = std::min(kRowBlock, M - r0);
          logits_tile(rows, cols, D, q + r0 * D, k + c0 * D, inv_tau, tile.data());
          tile_to_grad(r0, rows, c0, cols, tile.data(), pos, self_col, n_private, inv_tau, lse, dloss);
          // dk (cols, D) (+)= G^T (cols, rows) q (rows, D)
          gemm_cpu<T>(true, false, cols, D, rows, T(1), tile.data(), cols, q + r0 * D, D, r0 == 0 ? T(0) : T(1),
                      dk + c0 * D, D);
        }
      }
    }
  }
}

template void infonce_fwd_cpu<float>(int64_t, int64_t, int64_t, const float*, const float*, const int64_t*,
                                     const int64_t*, int64_t, double, float*, float*, uint8_t*);
template void infonce_fwd_cpu<double>(int64_t, int64_t, int64_t, const double*, const double*, const int64_t*,
                                      const int64_t*, int64_t, double, double*, double*, uint8_t*);
template void infonce_bwd_cpu<float>(int64_t, int64_t, int64_t, const float*, const float*, const int64_t*,
                                     const int64_t*, int64_t, double, const float*, const float*, float*, float*);
template void infonce_bwd_cpu<double>(int64_t, int64_t, int64_t, const double*, const double*, const int64_t*,
                                      const int64_t*, int64_t, double, const double*, const double*, double*,
                                      double*);

}  // namespace selfsup::kernels
