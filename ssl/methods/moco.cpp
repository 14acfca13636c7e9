#include "ssl/methods/moco.h"


#include "engine/autograd/grad_mode.h"
#include "engine/data/sampler.h"
#include "engine/nn/layers.h"
#include "engine/ops/ops.h"
#include "models/heads.h"

namespace selfsup::ssl {

namespace {

constexpr uint64_t kQueueStream = 0x4d4f434f51ull;    // "MOCOQ": the queue's initial rows
constexpr uint64_t kShuffleStream = 0x4d4f434f53ull;  // "MOCOS": the key batch's permutation per step

std::shared_ptr<nn::Sequential> make_head(const MoCoOptions& o, int64_t in, Generator& gen) {
  if (o.version == 2) return models::moco_v2_head(in, o.proj_hidden, o.proj_dim, gen);
  auto head = std::make_shared<nn::Sequential>();  // v1: the ResNet's fc replaced by a 128-d Linear
  head->push_back(std::make_shared<nn::Linear>(in, o.proj_dim, /*bias=*/true, gen));
  return head;
}

Tensor index_on(const std::vector<int64_t>& idx, const Device& device) {
  return Tensor::from_vector(idx, {static_cast<int64_t>(idx.size())}).to(device);
}

// Every BatchNorm under the given modules (the key encoder and head: shuffling BN, its guard, SyncBN's reset).
std::vector<nn::BatchNorm*> batch_norms(const std::vector<nn::Module*>& modules) {
  std::vector<nn::BatchNorm*> out;
  for (nn::Module* root : modules)
    for (auto& [name, mod] : root->named_modules())
      if (auto* bn = dynamic_cast<nn::BatchNorm*>(mod)) out.push_back(bn);
  return out;
}

}  // namespace

ContrastiveResult moco_info_nce(const Tensor& q, const Tensor& k, const Tensor& queue, double temperature) {
  return info_nce(normalize(q, 1), normalize(k.detach(), 1), queue, temperature, /*grad_to_k=*/false);
}

namespace {

// Sets every BatchNorm under `modules` to per-group statistics for its lifetime, and back to 1 after (also
// when net throws).
class SampleGroupsGuard {
 public:
  SampleGroupsGuard(const std::vector<nn::Module*>& modules, int64_t groups) : bns_(batch_norms(modules)) {
    for (nn::BatchNorm* bn : bns_) bn->set_sample_groups(groups);
  }
  ~SampleGroupsGuard() {
    for (nn::BatchNorm* bn : bns_) bn->set_sample_groups(1);
  }
  SampleGroupsGuard(const SampleGroupsGuard&) = delete;
  SampleGroupsGuard& operator=(const SampleGroupsGuard&) = delete;

 private:
  std::vector<nn::BatchNorm*> bns_;
};

}  // namespace

Tensor shuffled_shard_forward(const std::vector<nn::Module*>& modules, const std::function<Tensor(const Tensor&)>& net,
                              const Tensor& x, const std::vector<int64_t>& perm, int64_t shards) {
  const int64_t B = x.size(0);
  SELFSUP_CHECK(static_cast<int64_t>(perm.size()) == B, "shuffled_shard_forward: permutation of ", perm.size(),
                " rows for a batch of ", B);
  SELFSUP_CHECK(shards >= 1 && shards <= B && B % shards == 0, "shuffled_shard_forward: ", shards,
                " shards do not divide a batch of ", B);
  std::vector<int64_t> inverse(static_cast<size_t>(B), -1);
  for (int64_t j = 0; j < B; ++j) {
    SELFSUP_CHECK(perm[j] >= 0 && perm[j] < B && inverse[perm[j]] < 0, "shuffled_shard_forward: not a permutation");
    inverse[perm[j]] = j;
  }
  if (shards == 1) return net(x);
  Tensor shuffled = index_select(x, 0, index_on(perm, x.device()));  // row j = x[perm[j]]
  Tensor y;
  {
    SampleGroupsGuard guard(modules, shards);
    y = net(shuffled);
  }
  // y[j] belongs to x row perm[j]; the row of x's sample i is y[inverse[i]].
  return index_select(y, 0, index_on(inverse, x.device()));
}

namespace {

// Shuffling BN across ranks (MoCo's batch_shuffle_ddp / batch_unshuffle_ddp). x (n, ...) is this rank's part
// of the global batch (B = W n, rank r's rows at [r n, (r + 1) n)). Every rank gathers the batch and permutes
// it with the same perm; rank r takes the permuted rows j with j mod W == r, which are exactly the shards
// s with s mod W == r of one process's grouping (shard of j = j mod S, and W divides S): its local row l is
// j = l W + r, in local group l mod (S / W) = global shard W (l mod S/W) + r. It runs them in one grouped pass
// of S / W groups, the outputs are gathered (rank-major) and un-permuted: (B, ...) in the global order, every
// shard normalised as in one process's shuffled_shard_forward. Each rank's key BN running statistics moved
// by the mean of its S / W shards' statistics; their mean over the ranks is one process's update (the mean
// over all S), so the running means and variances are averaged over the ranks after the pass.
Tensor shuffled_shard_forward_ranks(const std::vector<nn::Module*>& modules,
                                    const std::function<Tensor(const Tensor&)>& net, const Tensor& x,
                                    const std::vector<int64_t>& perm, int64_t shards, dist::Communicator& comm) {
  const int64_t W = comm.world_size(), r = comm.rank(), n = x.size(0), B = W * n;
  SELFSUP_CHECK(static_cast<int64_t>(perm.size()) == B, "moco: permutation of ", perm.size(), " rows for a batch of ", B);
  SELFSUP_CHECK(shards % W == 0 && B % shards == 0, "moco: --shuffle-bn-shards ", shards, " on ", W,
                " ranks: the key batch's shards are split over the ranks, so their number must be a multiple of ", W,
                " and divide the global batch ", B, " (for example --shuffle-bn-shards ", W, ")");
  std::vector<int64_t> mine(static_cast<size_t>(n)), inverse(static_cast<size_t>(B));
  for (int64_t l = 0; l < n; ++l) mine[l] = perm[l * W + r];
  // Gathered output row r' n + l holds permuted row l W + r', image perm[l W + r'].
  for (int64_t rr = 0; rr < W; ++rr)
    for (int64_t l = 0; l < n; ++l) inverse[perm[l * W + rr]] = rr * n + l;
  Tensor global = comm.all_gather(x.contiguous());  // (B, ...)
  Tensor y;
  {
    SampleGroupsGuard guard(modules, shards / W);
    y = net(index_select(global, 0, index_on(mine, x.device())));  // (n, D)
  }
  for (nn::BatchNorm* bn : batch_norms(modules))
    if (bn->running_mean.defined()) {
      comm.all_reduce(bn->running_mean, dist::ReduceOp::mean);
      comm.all_reduce(bn->running_var, dist::ReduceOp::mean);
    }
  return index_select(comm.all_gather(y.contiguous()), 0, index_on(inverse, x.device()));
}

}  // namespace

MoCo::MoCo(const MoCoOptions& opt) : opt_(opt), comm_(&dist::world()) {
  SELFSUP_CHECK(opt.version == 1 || opt.version == 2, "moco: version must be 1 or 2, got ", opt.version);
  SELFSUP_CHECK(opt.queue_size >= 1 && opt.proj_dim >= 1, "moco: --queue-size and --proj-dim must be >= 1, got ",
                opt.queue_size, " and ", opt.proj_dim);
  SELFSUP_CHECK(opt.key_momentum >= 0 && opt.key_momentum < 1, "moco: --key-momentum must be in [0, 1), got ",
                opt.key_momentum);
  SELFSUP_CHECK(opt.shuffle_bn_shards >= 1, "moco: --shuffle-bn-shards must be >= 1, got ", opt.shuffle_bn_shards);
  models::ResNetOptions eo = opt.encoder;
  eo.num_classes = 0;
  encoder_ = register_module("encoder", std::make_shared<models::ResNet>(eo));
  Generator gen(eo.seed, 0x48454144ull);  // "HEAD": the head's init stream, apart from the encoder's
  head_ = register_module("head", make_head(opt, encoder_->feature_dim(), gen));
  // The key encoder and head start as exact copies of the query's (MoCo's param_k.data.copy_(param_q.data)).
  key_encoder_ = register_module("key_encoder", std::make_shared<models::ResNet>(eo));
  Generator gen_k(eo.seed, 0x48454144ull);
  key_head_ = register_module("key_head", make_head(opt, encoder_->feature_dim(), gen_k));
  key_encoder_->load_state_dict(encoder_->state_dict());
  key_head_->load_state_dict(head_->state_dict());
  NoGradGuard ng;
  Generator qgen(opt.seed, kQueueStream);
  register_buffer("queue", &queue_, normalize(Tensor::randn({opt.queue_size, opt.proj_dim}, DType::f32, &qgen), 1));
}

std::vector<Tensor> MoCo::trainable_parameters() const {
  std::vector<Tensor> p = encoder_->parameters(), h = head_->parameters();
  p.insert(p.end(), h.begin(), h.end());
  return p;
}

std::vector<Tensor> MoCo::key_parameters() const {
  std::vector<Tensor> p = key_encoder_->parameters(), h = key_head_->parameters();
  p.insert(p.end(), h.begin(), h.end());
  return p;
}

std::vector<int64_t> MoCo::key_permutation(int64_t batch, int64_t step) const {
  Generator gen(opt_.seed, kShuffleStream);
  gen.set_offset(static_cast<uint64_t>(step) * static_cast<uint64_t>(batch));  // randperm takes `batch` blocks
  return data::randperm(batch, gen);
}

int MoCo::keep_key_batch_norm_local() {
  const std::vector<nn::BatchNorm*> bns = batch_norms({key_encoder_.get(), key_head_.get()});
  for (nn::BatchNorm* bn : bns) bn->set_sync(nullptr);
  return static_cast<int>(bns.size());
}

Tensor MoCo::keys(const Tensor& key_view, int64_t step) {
  NoGradGuard ng;
  const int64_t B = key_view.size(0) * comm_->world_size();
  const int64_t shards = std::min(opt_.shuffle_bn_shards, B);
  auto key_net = [&](const Tensor& x) { return key_head_->forward(key_encoder_->forward_features(x)); };
  const std::vector<nn::Module*> modules = {key_encoder_.get(), key_head_.get()};
  for (nn::BatchNorm* bn : batch_norms(modules))
    SELFSUP_CHECK(bn->sync() == nullptr, method_name(), ": the key encoder's BatchNorm is synchronised over ranks; "
                  "shuffling BN needs each shard's own statistics (keep_key_batch_norm_local)");
  Tensor k = comm_->distributed()
                 ? shuffled_shard_forward_ranks(modules, key_net, key_view, key_permutation(B, step), shards, *comm_)
                 : shuffled_shard_forward(modules, key_net, key_view, key_permutation(B, step), shards);  // (B, D)
  return normalize(k, 1);
}

StepResult MoCo::training_step(const StepInput& in) {
  SELFSUP_CHECK(in.views.size() == 2, method_name(), ": expects 2 views per image, got ", in.views.size());
  SELFSUP_CHECK(in.views[0].sizes() == in.views[1].sizes(), method_name(), ": the two views differ in shape");
  const int64_t n = in.views[0].size(0);
  pending_keys_ = keys(in.views[1], in.step);                            // (B, D) global, constant
  Tensor q = head_->forward(encoder_->forward_features(in.views[0]));  // (n, D)
  // This rank's queries against their own keys: InfoNCE's mean over the n rows; the reducer's mean over ranks
  // makes the gradient that of the mean over the global batch.
  const Tensor own_keys = pending_keys_.narrow(0, comm_->rank() * n, n);
  ContrastiveResult r = moco_info_nce(q, own_keys, queue_, opt_.temperature);
  return {r.loss, r.accuracy};
}

void MoCo::after_step() {
  SELFSUP_CHECK(pending_keys_.defined(), method_name(), ": after_step without a training_step");
  // Read the lists now: Module::to replaces parameter tensors, so they must not be cached.
  std::vector<Tensor> target = key_parameters(), online = trainable_parameters();
  NoGradGuard ng;  // the key parameters are leaves that require grad (Module::to makes every parameter one)
  ema_update(target, online, opt_.key_momentum);
  queue_ptr_ = ring_enqueue(queue_, queue_ptr_, pending_keys_);
  pending_keys_ = Tensor();
}

TensorMap MoCo::method_state() const {
  return {{"queue_ptr", Tensor::from_vector(std::vector<int64_t>{queue_ptr_}, {})}};
}

void MoCo::load_method_state(const TensorMap& state) {
  auto it = state.find("queue_ptr");
  SELFSUP_CHECK(it != state.end(), method_name(), ": the checkpoint has no method.queue_ptr (the key queue's pointer)");
  const int64_t p = static_cast<int64_t>(it->second.item());
  SELFSUP_CHECK(p >= 0 && p < queue_.size(0), method_name(), ": method.queue_ptr ", p, " is outside the queue [0, ",
                queue_.size(0), ")");
  queue_ptr_ = p;
}

std::string MoCo::loss_title() const {
  return str_cat(type_name(), " InfoNCE loss (K = ", queue_.size(0), ", tau = ", opt_.temperature, ")");
}

}  // namespace selfsup::ssl
