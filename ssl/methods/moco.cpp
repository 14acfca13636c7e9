#include "ssl/methods/moco.h"

#include "engine/autograd/grad_mode.h"
#include "engine/data/sampler.h"
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

}  // namespace

ContrastiveResult moco_info_nce(const Tensor& q, const Tensor& k, const Tensor& queue, double temperature) {
  return info_nce(normalize(q, 1), normalize(k.detach(), 1), queue, temperature, /*grad_to_k=*/false);
}

namespace {

// Sets every BatchNorm under `modules` to per-group statistics for its lifetime, and back to 1 after (also
// when net throws).
class SampleGroupsGuard {
 public:
  SampleGroupsGuard(const std::vector<nn::Module*>& modules, int64_t groups) {
    for (nn::Module* root : modules)
      for (auto& [name, m] : root->named_modules())
        if (auto* bn = dynamic_cast<nn::BatchNorm*>(m)) {
          bn->set_sample_groups(groups);
          bns_.push_back(bn);
        }
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

MoCo::MoCo(const MoCoOptions& opt) : opt_(opt) {
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

Tensor MoCo::keys(const Tensor& key_view, int64_t step) {
  NoGradGuard ng;
  const int64_t B = key_view.size(0);
  const int64_t shards = std::min(opt_.shuffle_bn_shards, B);
  auto key_net = [&](const Tensor& x) { return key_head_->forward(key_encoder_->forward_features(x)); };
  Tensor k = shuffled_shard_forward({key_encoder_.get(), key_head_.get()}, key_net, key_view, key_permutation(B, step),
                                    shards);  // (B, D)
  return normalize(k, 1);
}

StepResult MoCo::training_step(const StepInput& in) {
  SELFSUP_CHECK(in.views.size() == 2, method_name(), ": expects 2 views per image, got ", in.views.size());
  SELFSUP_CHECK(in.views[0].sizes() == in.views[1].sizes(), method_name(), ": the two views differ in shape");
  pending_keys_ = keys(in.views[1], in.step);                            // (B, D), constant
  Tensor q = head_->forward(encoder_->forward_features(in.views[0]));  // (B, D)
  ContrastiveResult r = moco_info_nce(q, pending_keys_, queue_, opt_.temperature);
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
