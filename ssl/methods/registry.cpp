#include "ssl/methods/registry.h"

#include <algorithm>

#include "engine/core/check.h"
#include "engine/data/augment.h"
#include "ssl/methods/context_encoder.h"
#include "ssl/methods/simclr.h"

namespace selfsup::ssl {

const std::vector<std::string>& method_names() {
  static const std::vector<std::string> names = {"simclr", "context-encoder"};
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

void apply_method_preset(TrainConfig& c) {
  if (c.method == "context-encoder") {
    // The paper trains with Adam (lr 2e-4, beta1 0.5) for long; a short CPU run learns faster at 1e-3
    // (AdamW with beta1 0.9, no weight decay), and the inpainting loss does not need SimCLR's large batches.
    c.optimizer = "adamw";
    c.lr = 1e-3;
    c.weight_decay = 0;
    c.batch = 64;
  }
}

std::shared_ptr<Method> make_method(const TrainConfig& c) {
  SELFSUP_CHECK(is_known_method(c.method), "train: unknown --method '", c.method, "' (expected ", method_list(), ")");
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
  return std::make_shared<SimCLR>(SimCLROptions{encoder_options(c), c.proj_hidden, c.proj_dim, c.temperature});
}

}  // namespace selfsup::ssl
