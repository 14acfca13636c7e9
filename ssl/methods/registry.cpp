#include "ssl/methods/registry.h"

#include <algorithm>

#include "engine/core/check.h"
#include "engine/data/augment.h"
#include "ssl/methods/context_encoder.h"
#include "ssl/methods/moco.h"
#include "ssl/methods/pirl.h"
#include "ssl/methods/jigsaw.h"
#include "ssl/methods/rotnet.h"
#include "ssl/methods/simclr.h"

namespace selfsup::ssl {

const std::vector<std::string>& method_names() {
  static const std::vector<std::string> names = {"simclr", "moco", "mocov2", "pirl", "rotnet", "jigsaw",
                                                 "context-encoder"};
  return names;
}

bool is_known_method(const std::string& name) {
  const auto& n = method_names();
  return std::find(n.begin(), n.end(), name) != n.end();
}

std::string method_list() {
  const auto& n = method_names();
  std::string s;
  for (size_t i = 0; i < n.size(); ++i) s += (i == 0 ? "" : i + 1 == n.size() ? " or " : ", ") + n[i];
  return s;
}

models::ResNetOptions encoder_options(const TrainConfig& c) {
  models::ResNetOptions eo;
  eo.depth = c.arch == "resnet18" ? 18 : c.arch == "resnet34" ? 34 : 50;
  eo.in_channels = c.in_channels;
  eo.stem = c.stem == "cifar" ? models::Stem::cifar : models::Stem::imagenet;
  eo.width = c.width;
  eo.num_classes = 0;
  eo.seed = c.seed;
  return eo;
}

namespace {

// Shuffling BN's default: 8 shards (MoCo's 8 GPUs), or the most shards up to 8 that divide the batch and
// leave each at least 2 images.
int64_t default_shuffle_bn_shards(int64_t batch) {
  for (int64_t s = std::min<int64_t>(8, batch / 2); s > 1; --s)
    if (batch % s == 0) return s;
  return 1;
}

}  // namespace

std::vector<std::string> resolve_method_config(TrainConfig& c, int64_t train_size) {
  std::vector<std::string> notes;
  if (c.method == "moco" || c.method == "mocov2") {
    if (c.queue_size > train_size) {
      notes.push_back(str_cat(c.method, ": --queue-size ", c.queue_size, " capped at the ", train_size,
                              " training images"));
      c.queue_size = train_size;
    }
    if (c.shuffle_bn_shards == 0) {
      c.shuffle_bn_shards = default_shuffle_bn_shards(c.batch);
      if (c.shuffle_bn_shards < 8)
        notes.push_back(str_cat(c.method, ": shuffling BN over ", c.shuffle_bn_shards, " shards (the most up to 8 ",
                                "that divide the batch of ", c.batch, " with at least 2 images each)"));
    }
    SELFSUP_CHECK(c.shuffle_bn_shards <= c.batch && c.batch % c.shuffle_bn_shards == 0, "train: --shuffle-bn-shards ",
                  c.shuffle_bn_shards, " must divide the batch of ", c.batch, " (every shard the same size)");
  }
  return notes;
}

std::shared_ptr<Method> make_method(const TrainConfig& c) {
  SELFSUP_CHECK(is_known_method(c.method), "train: unknown --method '", c.method, "' (expected ", method_list(), ")");
  if (c.method == "pirl") return std::make_shared<PIRL>(pirl_options(c));
  if (c.method == "context-encoder") {
    ContextEncoderOptions o;
    o.encoder = encoder_options(c);
    o.image_size = c.image_size;
    o.mask = c.mask;
    o.adv_weight = c.adv_weight;
    o.pixel_std = make_recipe(c.recipe, static_cast<int>(c.image_size), static_cast<int>(c.in_channels)).std[0];
    o.seed = c.seed;
    return std::make_shared<ContextEncoder>(o);
  }
  if (c.method == "moco" || c.method == "mocov2") {
    MoCoOptions o;
    o.encoder = encoder_options(c);
    o.version = c.method == "moco" ? 1 : 2;
    o.proj_hidden = c.proj_hidden;
    o.proj_dim = c.proj_dim;
    o.temperature = c.temperature;
    o.queue_size = c.queue_size;
    o.key_momentum = c.key_momentum;
    o.shuffle_bn_shards = c.shuffle_bn_shards == 0 ? default_shuffle_bn_shards(c.batch) : c.shuffle_bn_shards;
    o.seed = c.seed;
    return std::make_shared<MoCo>(o);
  }
  if (c.method == "rotnet") return std::make_shared<RotNet>(RotNetOptions{encoder_options(c)});
  if (c.method == "jigsaw")
    return std::make_shared<Jigsaw>(
        JigsawOptions{encoder_options(c), c.image_size, c.jigsaw_tile, c.permutations, c.proj_hidden, c.seed});
  return std::make_shared<SimCLR>(SimCLROptions{encoder_options(c), c.proj_hidden, c.proj_dim, c.temperature});
}

}  // namespace selfsup::ssl
