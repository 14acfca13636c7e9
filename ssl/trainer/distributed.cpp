#include "ssl/trainer/distributed.h"

#include <algorithm>

#include "engine/core/cuda_context.h"
#include "engine/dist/sync_batch_norm.h"
#include "ssl/methods/moco.h"

namespace selfsup::ssl {

DistributedTraining::DistributedTraining(const TrainConfig& cfg) : comm_(dist::world()), batch_(cfg.batch) {
  const int64_t w = comm_.world_size(), lower = cfg.batch / w * w;
  SELFSUP_CHECK(cfg.batch % w == 0, "train: --batch ", cfg.batch, " is the global batch and must be a multiple of the ",
                w, " ranks of this ", comm_.launcher(), " job (for example --batch ",
                lower > 0 ? str_cat(lower, " or ") : std::string(), lower + w, ")");
}

Device DistributedTraining::device(Device configured) const {
  if (!active() || !configured.is_cuda()) return configured;
  const int n = cuda_device_count();
  SELFSUP_CHECK(n > 0, "train: rank ", rank(), " has no CUDA device");
  return Device::cuda(comm_.local_rank() % n);
}

void DistributedTraining::prepare(Method& method, bool sync_bn) {
  if (!active()) return;
  auto* moco = dynamic_cast<MoCo*>(&method);
  if (moco) {
    // Shuffling BN across ranks: rank r normalises shards [r S/N, (r + 1) S/N) of the permuted global batch.
    const int64_t w = world_size(), s = std::min(moco->options().shuffle_bn_shards, batch_);
    SELFSUP_CHECK(s % w == 0 && batch_ % s == 0, "--shuffle-bn-shards ", s, " on ", w, " ranks: ",
                  method.method_name(), "'s key shards are split over the ranks, so their number must be a multiple "
                  "of ", w, " that divides --batch ", batch_, " (for example --shuffle-bn-shards ", w, ")");
  }
  if (sync_bn) {
    sync_bn_layers_ = dist::convert_sync_batch_norm(method, comm_);
    // f_k's BN normalises each shuffled shard on its own (that is what shuffling BN is); f_q's is synchronised.
    if (moco) sync_bn_layers_ -= moco->keep_key_batch_norm_local();
  }
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
