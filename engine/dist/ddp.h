// Data-parallel gradients: every rank holds the whole model, computes gradients on its shard of the global
// batch, and the reducer averages them so every rank takes the same optimizer step.
//
// Buckets: parameters are grouped, in reverse registration order (the order backward produces their
// gradients), into flat buffers of about `bucket_bytes` (25 MB, PyTorch DDP's default) of one dtype and
// device. Each parameter's grad-ready hook (Tensor::register_grad_ready_hook, run by the autograd engine once
// the parameter's .grad is final) copies its gradient into its bucket; when a bucket is full its all-reduce
// starts at once (MPI_Iallreduce on the CPU, the NCCL stream on a GPU) while backward goes on with the
// layers below. Buckets start in index order on every rank (collectives must match across ranks); every
// later hook tests the ones in flight, which is what makes MPI progress them. finish() (before the
// optimizer step) starts what is left (a parameter that got no gradient counts as zeros), waits, divides by
// the world size and writes the mean back into each .grad.
#pragma once
#include <memory>
#include <vector>

#include "engine/dist/communicator.h"

namespace selfsup::dist {

struct ReducerStats {
  int64_t buckets = 0;
  int64_t bytes_per_step = 0;      // gradient bytes all-reduced per step (one rank's contribution)
  int64_t steps = 0;
  int64_t buckets_started_in_backward = 0;  // over all steps: started by a hook, not by finish()
  double wait_s = 0;               // over all steps: time finish() spent waiting for the all-reduces
};

class GradientReducer {
 public:
  // params: the parameters the optimizer updates (leaves that require grad), as they will be during training
  // (after any move to a device). overlap false starts every bucket in finish() (for measuring the overlap).
  GradientReducer(std::vector<Tensor> params, Communicator& comm, int64_t bucket_bytes = 25 << 20,
                  bool overlap = true);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Waits for every bucket and replaces each parameter's .grad with the mean over ranks.
  void finish();
  // false: buckets start in finish() only, after backward (bench_dist measures what the overlap hides).
  void set_overlap(bool on);
  ReducerStats stats() const;

  struct State;

 private:
  std::shared_ptr<State> state_;  // hooks hold it weakly: a hook that outlives the reducer does nothing
};

// Replaces each parameter's .grad by its mean over ranks, in one blocking all_reduce of all of them (a
// parameter without a gradient counts as zeros and gets the mean). For a few small parameters stepped inside
// a method (Context Encoder's discriminator, whose backward is not the trainer's): no hooks, no buckets.
// Parameters of one dtype and device.
void all_reduce_gradients(const std::vector<Tensor>& params, Communicator& comm);

// Copies rank 0's values of `tensors` (parameters, buffers such as BN running statistics) to every rank,
// in place: the start of a data-parallel run, so every replica begins identical.
void broadcast_tensors(const std::vector<Tensor>& tensors, Communicator& comm, int root = 0);

}  // namespace selfsup::dist
