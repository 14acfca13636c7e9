#include "ssl/trainer/config.h"

#include <nlohmann/json.hpp>

#include "engine/core/check.h"

namespace selfsup::ssl {

#define SELFSUP_CONFIG_FIELDS(X)                                                                            \
  X(method) X(data) X(limit) X(arch) X(width) X(stem) X(in_channels) X(image_size) X(proj_hidden) X(proj_dim) \
  X(recipe) X(crop_min) X(temperature) X(optimizer) X(lr) X(weight_decay) X(momentum) X(warmup_fraction)     \
  X(batch) X(epochs) X(minutes) X(steps) X(total_steps) X(device) X(seed) X(threads) X(out) X(log_every)     \
  X(checkpoint_minutes) X(checkpoint_every) X(knn_k) X(knn_train_limit) X(knn_test_limit) X(knn_every_epoch)

std::string TrainConfig::to_json() const {
  nlohmann::ordered_json j;
#define X(f) j[#f] = f;
  SELFSUP_CONFIG_FIELDS(X)
#undef X
  return j.dump(2);
}

TrainConfig TrainConfig::from_json(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw Error(str_cat(source, ": the stored configuration is not valid JSON (", e.what(), ")"));
  }
  TrainConfig c;
  try {
#define X(f) \
  if (j.contains(#f)) j.at(#f).get_to(c.f);
    SELFSUP_CONFIG_FIELDS(X)
#undef X
  } catch (const std::exception& e) {
    throw Error(str_cat(source, ": a configuration field has the wrong type (", e.what(), ")"));
  }
  return c;
}

void apply_data_preset(TrainConfig& cfg) {
  const std::string kind = cfg.data.substr(0, cfg.data.find(':'));
  if (kind == "cifar10" || kind == "cifar100") {
    cfg.in_channels = 3;
    cfg.image_size = 32;
    cfg.recipe = "simclr";
    cfg.stem = "cifar";
  } else if (kind == "stl10") {
    cfg.in_channels = 3;
    cfg.image_size = 96;
    cfg.recipe = "simclr";
    cfg.stem = "imagenet";
  } else if (kind == "folder") {
    cfg.in_channels = 3;
    cfg.recipe = "simclr";
  }
}

}  // namespace selfsup::ssl
