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
//   with fewer row blocks than threads (MoCo: 64 queries, 16384 queue keys) both directions split the
//   columns among the threads instead, and merge the partial row statistics / dq in thread order.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/vec_math.h"
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
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) row[c] = scale * tile_exp(row[c] - l);
    // Exclusions and the positive touch at most a few entries of the row: patch them afterwards.
    if (self_col && self_col[i] >= c0 && self_col[i] < c0 + cols) row[self_col[i] - c0] = T(0);
    for (int64_t j = c0; j < std::min(c0 + cols, n_private); ++j)
      if (j != pos[i]) row[j - c0] = T(0);
    if (pos[i] >= c0 && pos[i] < c0 + cols) row[pos[i] - c0] -= scale;
  }
}

// Running forward state of rows [r0, r0 + rows) over some of the columns: max, sum of exp(s - max),
// the positive's logit and the argmax (best logit, its column). Arrays of kRowBlock.
template <typename T>
struct RowScan {
  std::vector<T> run_max, pos_logit, best;
  std::vector<double> run_sum;
  std::vector<int64_t> best_j;
  explicit RowScan(int64_t n)
      : run_max(n, -std::numeric_limits<T>::infinity()),
        pos_logit(n, T(0)),
        best(n, -std::numeric_limits<T>::infinity()),
        run_sum(n, 0.0),
        best_j(n, -1) {}
};

// Folds the columns [c_begin, c_end) into st for rows [r0, r0 + rows), one tile of kColBlock at a time.
template <typename T>
void scan_columns(int64_t r0, int64_t rows, int64_t c_begin, int64_t c_end, int64_t D, const T* q, const T* k,
                  const int64_t* pos, const int64_t* self_col, int64_t n_private, double inv_tau, T* tile,
                  RowScan<T>& st) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  for (int64_t c0 = c_begin; c0 < c_end; c0 += kColBlock) {
    const int64_t cols = std::min(kColBlock, c_end - c0);
    logits_tile(rows, cols, D, q + r0 * D, k + c0 * D, inv_tau, tile);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = r0 + r;
      T* row = tile + r * cols;
      if (pos[i] >= c0 && pos[i] < c0 + cols) st.pos_logit[r] = row[pos[i] - c0];
      // Mask the few invalid entries to -inf, then take the tile max and the sum of exponentials.
      if (self_col && self_col[i] >= c0 && self_col[i] < c0 + cols) row[self_col[i] - c0] = kNegInf;
      for (int64_t j = c0; j < std::min(c0 + cols, n_private); ++j)
        if (j != pos[i]) row[j - c0] = kNegInf;
      // The tile max as a vector reduction; its first column only when it beats the row's best so far
      // (rarely after the first tiles), so ties still go to the lowest column.
      T tmax = kNegInf;
#pragma omp simd reduction(max : tmax)
      for (int64_t c = 0; c < cols; ++c) tmax = std::max(tmax, row[c]);
      if (tmax > st.best[r]) {
        st.best[r] = tmax;
        st.best_j[r] = c0 + (std::find(row, row + cols, tmax) - row);
      }
      if (tmax == kNegInf) continue;
      const T new_max = std::max(st.run_max[r], tmax);
      double sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t c = 0; c < cols; ++c) sum += static_cast<double>(tile_exp(row[c] - new_max));
      st.run_sum[r] = st.run_sum[r] * std::exp(static_cast<double>(st.run_max[r] - new_max)) + sum;
      st.run_max[r] = new_max;
    }
  }
}

// The column chunks of the column-split schedule: chunk t owns column blocks [t nb / n, (t + 1) nb / n).
int64_t chunk_begin(int64_t t, int64_t chunks, int64_t n_col_blocks, int64_t Ncol) {
  return std::min(Ncol, t * n_col_blocks / chunks * kColBlock);
}

// Threads for the column-split schedule, or 0 for the row-block one. With fewer row blocks than threads
// (MoCo's 64 queries against a queue of 16384 keys, PIRL's bank negatives, one rank's rows of a global
// batch) threads own row blocks would leave all but one idle: the columns are split instead, each thread
// keeping partial row statistics (forward) or a partial dq (backward), merged in thread order.
int64_t column_split_chunks(int64_t n_row_blocks, int64_t n_col_blocks) {
  const int64_t threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (threads < 2 || n_row_blocks >= threads || n_col_blocks < 2) return 0;
  return std::min(threads, n_col_blocks);
}

}  // namespace

template <typename T>
void infonce_fwd_cpu(int64_t M, int64_t Ncol, int64_t D, const T* q, const T* k, const int64_t* pos,
                     const int64_t* self_col, int64_t n_private, double inv_tau, T* loss, T* lse, uint8_t* correct) {
  const int64_t n_row_blocks = (M + kRowBlock - 1) / kRowBlock, n_col_blocks = (Ncol + kColBlock - 1) / kColBlock;
  const auto finish = [&](int64_t i, const RowScan<T>& st, int64_t r) {
    lse[i] = static_cast<T>(st.run_max[r] + std::log(st.run_sum[r]));
    loss[i] = lse[i] - st.pos_logit[r];
    if (correct) correct[i] = st.best_j[r] == pos[i];
  };
  const int64_t chunks = column_split_chunks(n_row_blocks, n_col_blocks);
  if (chunks == 0) {
#pragma omp parallel
    {
      std::vector<T> tile(static_cast<size_t>(kRowBlock * kColBlock));
#pragma omp for schedule(dynamic, 1)
      for (int64_t rb = 0; rb < n_row_blocks; ++rb) {
        const int64_t r0 = rb * kRowBlock, rows = std::min(kRowBlock, M - r0);
        RowScan<T> st(kRowBlock);
        scan_columns(r0, rows, 0, Ncol, D, q, k, pos, self_col, n_private, inv_tau, tile.data(), st);
        for (int64_t r = 0; r < rows; ++r) finish(r0 + r, st, r);
      }
    }
    return;
  }
  // Column split: part[t] holds chunk t's statistics of all M rows (M < kRowBlock * threads).
  std::vector<RowScan<T>> part;
  for (int64_t t = 0; t < chunks; ++t) part.emplace_back(M);
#pragma omp parallel for num_threads(chunks) schedule(static, 1)
  for (int64_t t = 0; t < chunks; ++t) {
    std::vector<T> tile(static_cast<size_t>(kRowBlock * kColBlock));
    const int64_t c_begin = chunk_begin(t, chunks, n_col_blocks, Ncol), c_end = chunk_begin(t + 1, chunks, n_col_blocks, Ncol);
    for (int64_t r0 = 0; r0 < M; r0 += kRowBlock) {
      RowScan<T> st(kRowBlock);
      scan_columns(r0, std::min(kRowBlock, M - r0), c_begin, c_end, D, q, k, pos, self_col, n_private, inv_tau,
                   tile.data(), st);
      for (int64_t r = 0; r < std::min(kRowBlock, M - r0); ++r) {
        part[t].run_max[r0 + r] = st.run_max[r];
        part[t].run_sum[r0 + r] = st.run_sum[r];
        part[t].pos_logit[r0 + r] = st.pos_logit[r];
        part[t].best[r0 + r] = st.best[r];
        part[t].best_j[r0 + r] = st.best_j[r];
      }
    }
  }
  // Merge in column order: the log-sum-exp of the chunks' (max, sum) pairs; the first strictly larger best
  // (so ties go to the lowest column, as in one sweep); the positive's logit from the chunk holding it.
  RowScan<T> all(M);
  for (int64_t i = 0; i < M; ++i) {
    T m = -std::numeric_limits<T>::infinity();
    for (const RowScan<T>& p : part) m = std::max(m, p.run_max[i]);
    double sum = 0;
    for (int64_t t = 0; t < chunks; ++t) {
      const RowScan<T>& p = part[static_cast<size_t>(t)];
      if (p.run_max[i] != -std::numeric_limits<T>::infinity())
        sum += p.run_sum[i] * std::exp(static_cast<double>(p.run_max[i] - m));
      if (p.best[i] > all.best[i]) {
        all.best[i] = p.best[i];
        all.best_j[i] = p.best_j[i];
      }
      if (pos[i] >= chunk_begin(t, chunks, n_col_blocks, Ncol) && pos[i] < chunk_begin(t + 1, chunks, n_col_blocks, Ncol))
        all.pos_logit[i] = p.pos_logit[i];
    }
    all.run_max[i] = m;
    all.run_sum[i] = sum;
    finish(i, all, i);
  }
}

template <typename T>
void infonce_bwd_cpu(int64_t M, int64_t Ncol, int64_t D, const T* q, const T* k, const int64_t* pos,
                     const int64_t* self_col, int64_t n_private, double inv_tau, const T* lse, const T* dloss, T* dq,
                     T* dk) {
  const int64_t n_row_blocks = (M + kRowBlock - 1) / kRowBlock, n_col_blocks = (Ncol + kColBlock - 1) / kColBlock;
  const int64_t chunks = column_split_chunks(n_row_blocks, n_col_blocks);
  if (chunks > 0) {
    // Column split: each thread owns whole column blocks, so its dk rows are its own; dq is summed from the
    // threads' partial (M, D) products in thread order.
    std::vector<std::vector<T>> dq_part(dq ? static_cast<size_t>(chunks) : 0);
#pragma omp parallel for num_threads(chunks) schedule(static, 1)
    for (int64_t t = 0; t < chunks; ++t) {
      std::vector<T> tile(static_cast<size_t>(kRowBlock * kColBlock));
      T* dq_mine = nullptr;
      if (dq) {
        dq_part[static_cast<size_t>(t)].assign(static_cast<size_t>(M * D), T(0));
        dq_mine = dq_part[static_cast<size_t>(t)].data();
      }
      const int64_t c_end = chunk_begin(t + 1, chunks, n_col_blocks, Ncol);
      for (int64_t c0 = chunk_begin(t, chunks, n_col_blocks, Ncol); c0 < c_end; c0 += kColBlock) {
        const int64_t cols = std::min(kColBlock, c_end - c0);
        for (int64_t r0 = 0; r0 < M; r0 += kRowBlock) {
          const int64_t rows = std::min(kRowBlock, M - r0);
          logits_tile(rows, cols, D, q + r0 * D, k + c0 * D, inv_tau, tile.data());
          tile_to_grad(r0, rows, c0, cols, tile.data(), pos, self_col, n_private, inv_tau, lse, dloss);
          if (dq_mine)  // dq_mine (rows, D) += G (rows, cols) k (cols, D)
            gemm_cpu<T>(false, false, rows, D, cols, T(1), tile.data(), cols, k + c0 * D, D, T(1), dq_mine + r0 * D, D);
          if (dk)  // dk (cols, D) (+)= G^T (cols, rows) q (rows, D)
            gemm_cpu<T>(true, false, cols, D, rows, T(1), tile.data(), cols, q + r0 * D, D, r0 == 0 ? T(0) : T(1),
                        dk + c0 * D, D);
        }
      }
    }
    if (dq)
      for (int64_t e = 0; e < M * D; ++e) {
        T acc = T(0);
        for (const std::vector<T>& part : dq_part) acc += part[static_cast<size_t>(e)];
        dq[e] = acc;
      }
    return;
  }
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
