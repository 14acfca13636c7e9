// The trainer's data-parallel path (`mpirun -np N selfsup train ...`, or srun): what the training loop asks
// of engine/dist, in one place, so trainer.cpp stays one loop for one process and for N.
//
// - --batch is the global batch: each rank takes its contiguous shard [rank B/N, (rank + 1) B/N) of every
//   global batch, whose order and augmentation are keyed by the global sample id (the loader's
//   shard option), so N ranks together see exactly the views one process sees.
// - Rank 0's initial parameters and buffers are broadcast; BatchNorm becomes SyncBN (--sync-bn, default on);
//   gradients are averaged in buckets overlapped with backward; SimCLR scores its rows against the global
//   batch (engine/dist/gather.h). The logged loss and monitor are means over ranks.
// - Methods with state keep one global copy of it on every rank, updated from the whole global batch: MoCo
//   shuffles its keys across ranks (its key encoder's BN stays per shard, not SyncBN) and enqueues the global
//   batch's keys, PIRL writes the global batch's bank rows, Context Encoder averages its discriminator's
//   gradients (the methods do this through their communicator, dist::world()).
// - Rank 0 alone writes config, logs, plots, checkpoints and prints progress.
// - Resuming with another world size is supported: every piece of a checkpoint is global (the model and the
//   optimizer are the same on every rank, the data position counts global batches), so a run saved by N
//   ranks continues on M ranks as long as M divides --batch.
#pragma once
#include <memory>

#include "engine/core/device.h"
#include "engine/dist/ddp.h"
#include "ssl/methods/method.h"
#include "ssl/trainer/config.h"

namespace selfsup::ssl {

class DistributedTraining {
 public:
  // Checks that the world size divides cfg.batch (a clear error otherwise).
  explicit DistributedTraining(const TrainConfig& cfg);
  bool active() const { return comm_.distributed(); }
  bool is_root() const { return comm_.is_root(); }
  int rank() const { return comm_.rank(); }
  int world_size() const { return comm_.world_size(); }
  // This rank's device: cuda:<local rank> when the configuration asks for CUDA in a multi-rank job.
  Device device(Device configured) const;
  // After the model is on its device and before the optimizer's first step: SyncBN (except MoCo's key
  // encoder), broadcast from rank 0, the gradient reducer's hooks. Nothing in a single process.
  void prepare(Method& method, bool sync_bn);
  // After backward, before the optimizer step: every rank's gradients become their mean.
  void reduce_gradients();
  double mean(double v) { return comm_.mean(v); }
  int64_t from_root(int64_t v) { return comm_.broadcast_value(v); }
  // Every rank waits here while rank 0 does work of its own (the kNN monitor, a plot): a barrier with a
  // deadline of an hour, not the collectives' SELFSUP_DIST_TIMEOUT, which bounds the wait for a peer.
  void wait_for_root() {
    if (active()) comm_.barrier(3600);
  }
  std::string describe() const;

 private:
  dist::Communicator& comm_;
  int64_t batch_;  // the global batch
  std::unique_ptr<dist::GradientReducer> reducer_;
  int sync_bn_layers_ = 0;
};

}  // namespace selfsup::ssl
