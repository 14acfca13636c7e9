#include "ssl/trainer/distributed.h"

#include "engine/core/cuda_context.h"
#include "engine/dist/sync_batch_norm.h"

namespace selfsup::ssl {

DistributedTraining::DistributedTraining(const TrainConfig& cfg) : comm_(dist::world()) {
  const int64_t w = comm_.world_size(), lower = cfg.batch / w * w;
  SELFSUP_CHECK(cfg.batch % w == 0, "train: --batch ", cfg.batch, " is the global batch and must be a multiple of the ",
                w, " ranks of this ", comm_.launcher(), " job (for example --batch ",
                lower > 0 ? str_cat(lower, " or ") : std::string(), lower + w, ")");
  // State a rank updates from its own shard alone would drift apart across ranks and no longer be the
  // one-process run: MoCo's key queue (and its shuffling BN, which must shuffle across ranks), PIRL's memory
  // bank, Context Encoder's discriminator with its own optimizer. Until those are distributed, refuse.
  const bool local_state = cfg.method == "moco" || cfg.method == "mocov2" || cfg.method == "pirl" ||
                           cfg.method == "context-encoder";
  SELFSUP_CHECK(w == 1 || !local_state, "train: --method ", cfg.method, " does not run data-parallel yet (its ",
                cfg.method == "pirl"              ? "memory bank"
                : cfg.method == "context-encoder" ? "discriminator and its optimizer"
                                                  : "key queue and shuffling BN",
                " would be updated by each rank from its own shard); run it in one process, or use simclr, rotnet "
                "or jigsaw with ", comm_.launcher());
}

Device DistributedTraining::device(Device configured) const {
  if (!active() || !configured.is_cuda()) return configured;
  const int n = cuda_device_count();
  SELFSUP_CHECK(n > 0, "train: rank ", rank(), " has no CUDA device");
  return Device::cuda(comm_.local_rank() % n);
}

void DistributedTraining::prepare(Method& method, bool sync_bn) {
  if (!active()) return;
  if (sync_bn) sync_bn_layers_ = dist::convert_sync_batch_norm(method, comm_);
  std::vector<Tensor> state;
  for (const auto& [name, t] : method.state_dict()) state.push_back(t);
  dist::broadcast_tensors(state, comm_);
  reducer_ = std::make_unique<dist::GradientReducer>(method.trainable_parameters(), comm_);
}

void DistributedTraining::reduce_gradients() {
  if (reducer_) reducer_->finish();
}

std::string DistributedTraining::describe() const {
  if (!active()) return "";
  const dist::ReducerStats s = reducer_ ? reducer_->stats() : dist::ReducerStats{};
  return str_cat("data parallel: ", world_size(), " ranks (", comm_.launcher(), "), ", s.buckets,
                 " gradient buckets (", s.bytes_per_step / 1e6, " MB per step), SyncBN ",
                 sync_bn_layers_ > 0 ? str_cat("on (", sync_bn_layers_, " layers)") : std::string("off"));
}

}  // namespace selfsup::ssl
