// MoCo v1 (He et al. 2019, "Momentum Contrast for Unsupervised Visual Representation Learning") and MoCo v2
// (Chen et al. 2020, "Improved Baselines with Momentum Contrastive Learning").
//
// Two views of each image: the query view goes through the query encoder f_q and its head, the key view
// through the momentum key encoder f_k and its head (a copy of f_q at init that never gets gradients: after
// every optimizer step f_k <- m f_k + (1 - m) f_q, in one ema_update call). Both outputs are L2-normalised.
// InfoNCE ranks each query's own key (the positive) against the K keys of earlier batches held in a FIFO
// queue (the negatives; the other keys of the batch are not used), at temperature tau. After the step the
// batch's keys replace the oldest K rows of the queue.
//
// Shuffling BN: one process stands in for MoCo's GPUs. The key batch is permuted, cut into S shards, each
// shard goes through f_k on its own (so BN normalises it with that shard's statistics), and the keys are put
// back in the original order. The key of image i is thus normalised with statistics of a random 1/S of the
// batch, not with those of the batch its query is normalised with. The query batch goes through f_q whole.
//
// Data parallel (N ranks, n = B / N images each; docs/distributed.md, "Methods with state"): the same S
// shards of the same permutation of the global batch, rank r running shards [r S/N, (r + 1) S/N) (MoCo's
// batch_shuffle_ddp / batch_unshuffle_ddp: gather the key views, permute, slice, gather the keys,
// un-permute). S must be a multiple of N and divide B. Every rank enqueues the keys of the whole global
// batch, so the queue is the one-process queue on every rank; f_q's BN is SyncBN (the trainer's --sync-bn),
// f_k's stays local (per shard), and its running statistics are combined into the one-process ones.
//
// v1: a linear 128-d head, tau 0.07, the mocov1 recipe, step decay. v2: a 2-layer MLP head, tau 0.2, the
// mocov2 recipe (blur, stronger jitter), cosine decay. Both: m = 0.999, K = 65536 (capped by the data set).
#pragma once
#include <functional>
#include <memory>

#include "engine/dist/communicator.h"
#include "engine/ops/contrastive.h"
#include "ssl/methods/method.h"

namespace selfsup::ssl {

struct MoCoOptions {
  models::ResNetOptions encoder;  // num_classes is forced to 0 (feature extractor)
  int version = 1;                // 1: Linear(F, proj_dim) head; 2: Linear(F, proj_hidden)-ReLU-Linear(., proj_dim)
  int64_t proj_hidden = 512;      // v2 only
  int64_t proj_dim = 128;         // D, the key and query dimension
  double temperature = 0.07;
  int64_t queue_size = 65536;    // K
  double key_momentum = 0.999;   // m
  int64_t shuffle_bn_shards = 8;  // S; 1: the key batch goes through f_k whole (no shuffling BN)
  uint64_t seed = 0;              // the queue's initial rows and the per-step key permutation
};

// InfoNCE of MoCo on head outputs: q, k (N, D) are normalised here (k is a constant), the queue (K, D) holds
// normalised keys; row i's logits are [q_i . k_i, q_i . queue_0, ..., q_i . queue_{K-1}] / tau and its
// target is column 0. loss = mean_i -log softmax(logits_i)_0; the gradient reaches q only.
ContrastiveResult moco_info_nce(const Tensor& q, const Tensor& k, const Tensor& queue, double temperature);

// Shuffling BN: net applied once to x (B, ...) permuted (row j of its input is x[perm[j]]), with every
// BatchNorm under `modules` taking its statistics per shard: shard s holds the permuted rows j with
// j mod S == s (nn::BatchNorm::set_sample_groups; S must divide B). The outputs are returned in x's order.
// One pass of B rows costs what the query's pass costs; S passes of B/S rows cost far more on a CPU (small
// GEMMs, S times the per-layer overhead). perm: a permutation of 0..B-1.
Tensor shuffled_shard_forward(const std::vector<nn::Module*>& modules, const std::function<Tensor(const Tensor&)>& net,
                              const Tensor& x, const std::vector<int64_t>& perm, int64_t shards);

class MoCo : public Method {
 public:
  explicit MoCo(const MoCoOptions& opt);
  // The job whose global batch the key pass shuffles and whose keys the queue takes (default: this
  // process's, dist::world()); a one-process reference inside a job uses Communicator::single_process().
  void set_communicator(dist::Communicator& comm) { comm_ = &comm; }
  // f_k's BatchNorms normalise each shuffled shard with that shard's statistics: a data-parallel run's SyncBN
  // conversion (which reaches every BatchNorm of the module) must leave them local. Resets their sync and
  // returns how many there are.
  int keep_key_batch_norm_local();
  // views[0]: the query view, views[1]: the key view, each (B, C, h, w).
  StepResult training_step(const StepInput& in) override;
  // f_k <- m f_k + (1 - m) f_q over every parameter of encoder and head (one ema_update call; f_k's BN running
  // statistics are its own, from its forward passes, as in MoCo's code), then the step's keys enter the queue.
  void after_step() override;
  models::ResNet& encoder() override { return *encoder_; }
  std::string method_name() const override { return opt_.version == 1 ? "moco" : "mocov2"; }
  std::string type_name() const override { return opt_.version == 1 ? "MoCo" : "MoCo v2"; }
  // The query encoder and head: the key encoder's parameters belong to the module (saved, moved) but are
  // updated only by the EMA.
  std::vector<Tensor> trainable_parameters() const override;
  // The queue's write pointer (method.queue_ptr, int64 scalar); the queue itself is the buffer model.queue.
  TensorMap method_state() const override;
  void load_method_state(const TensorMap& state) override;
  std::string loss_title() const override;
  std::string accuracy_name() const override { return "acc"; }  // the positive ranked first of 1 + K

  // The key pass of a step: this rank's key views (n, C, h, w) through f_k and its head with shuffling BN,
  // normalised; the keys of the whole global batch (B = N n, D) in one process's order (rank r's images at
  // rows [r n, (r + 1) n)), no autograd. The permutation is a pure function of (seed, step).
  Tensor keys(const Tensor& key_view, int64_t step);
  // The permutation of the (global) key batch at a step.
  std::vector<int64_t> key_permutation(int64_t batch, int64_t step) const;
  const Tensor& queue() const { return queue_; }  // (K, D)
  int64_t queue_pointer() const { return queue_ptr_; }
  const Tensor& last_keys() const { return pending_keys_; }  // the global batch's keys after_step enqueues, (B, D)
  models::ResNet& key_encoder() { return *key_encoder_; }
  nn::Sequential& head() { return *head_; }
  nn::Sequential& key_head() { return *key_head_; }
  // Parameters in matching order: query (encoder, head) and key (key_encoder, key_head).
  std::vector<Tensor> key_parameters() const;
  const MoCoOptions& options() const { return opt_; }

 private:
  MoCoOptions opt_;
  dist::Communicator* comm_;
  std::shared_ptr<models::ResNet> encoder_, key_encoder_;
  std::shared_ptr<nn::Sequential> head_, key_head_;
  Tensor queue_;            // (K, D) float, L2-normalised rows; a registered buffer
  int64_t queue_ptr_ = 0;   // the next row to write
  Tensor pending_keys_;     // (B, D) the global batch's keys of the last training_step, until after_step enqueues them
};

}  // namespace selfsup::ssl
