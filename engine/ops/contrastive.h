// Contrastive losses over large negative sets (InfoNCE family) and the momentum-encoder helpers.
// The losses stream over tiles of the logit matrix (kernels/cpu/infonce.cpp); memory is O((M + Ncol) D).
#pragma once
#include <vector>

#include "engine/core/tensor.h"

namespace selfsup {

struct ContrastiveResult {
  Tensor loss;      // scalar: mean over rows
  double accuracy;  // fraction of rows whose highest logit is their positive (a monitor, no gradient)
};

// The general form: rows q (M, D) against columns k (Ncol, D); pos (M) int64 gives each row's positive
// column; self_col (M) int64 (optional, -1 = none) a column to exclude; columns [0, n_private) are valid
// for row i only when they are its positive. Gradients flow to q and k (the same tensor may be both).
ContrastiveResult contrastive_loss(const Tensor& q, const Tensor& k, const Tensor& pos, const Tensor& self_col,
                                   int64_t n_private, double temperature);

// SimCLR's NT-Xent: z (2N, D) holds two views, row i's positive is row (i + N) mod 2N, the other 2N - 2 rows
// are negatives. With normalize, rows are L2-normalised first (cosine similarity).
ContrastiveResult nt_xent(const Tensor& z, double temperature, bool normalize = true);

// MoCo: q, k (N, D); the positive of q_i is k_i, the negatives are the rows of queue (K, D) (constant).
// The gradient reaches k only when grad_to_k (MoCo's key encoder gets none).
ContrastiveResult info_nce(const Tensor& q, const Tensor& k, const Tensor& queue, double temperature,
                           bool grad_to_k = false);

// PIRL's memory-bank NCE: positives bank[pos_index[i]] and shared negatives bank[neg_index], bank constant.
ContrastiveResult memory_bank_nce(const Tensor& q, const Tensor& bank, const Tensor& pos_index,
                                  const Tensor& neg_index, double temperature);

// target_t = m target_t + (1 - m) online_t for every pair, in one kernel call; no autograd.
void ema_update(const std::vector<Tensor>& target, const std::vector<Tensor>& online, double m);

// The FIFO write of a ring buffer of rows: rows (B, D) overwrite ring (K, D) from row `pointer` on, wrapping
// around past row K - 1 (when B > K only the newest K rows survive); in place, no autograd. Returns the new
// pointer, (pointer + B) mod K. FeatureQueue below and a method whose queue is a module buffer (ssl/methods/
// moco.h, so that it moves to the device and is checkpointed with the model) share it.
int64_t ring_enqueue(const Tensor& ring, int64_t pointer, const Tensor& rows);

// MoCo's queue of keys: a ring buffer (K, D) with a write pointer. enqueue(keys (B, D)) overwrites the
// oldest rows, wrapping around when B does not divide K.
class FeatureQueue {
 public:
  FeatureQueue(int64_t size, int64_t dim, DType dtype = DType::f32, uint64_t seed = 0);
  void enqueue(const Tensor& keys);
  const Tensor& buffer() const { return buffer_; }
  int64_t pointer() const { return ptr_; }
  void set_state(const Tensor& buffer, int64_t pointer);

 private:
  Tensor buffer_;  // (K, D), starts as L2-normalised random rows as MoCo does
  int64_t ptr_ = 0;
};

}  // namespace selfsup
