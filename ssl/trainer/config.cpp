#include "ssl/trainer/config.h"

#include <limits>
#include <nlohmann/json.hpp>
#include <type_traits>

#include "engine/core/check.h"

namespace selfsup::ssl {

#define SELFSUP_CONFIG_FIELDS(X)                                                                            \
  X(method) X(data) X(limit) X(arch) X(width) X(stem) X(in_channels) X(image_size) X(proj_hidden) X(proj_dim) \
  X(recipe) X(crop_min) X(mask) X(adv_weight) X(temperature) X(optimizer) X(lr) X(weight_decay) X(momentum) X(warmup_fraction)     \
  X(batch) X(epochs) X(minutes) X(steps) X(total_steps) X(device) X(seed) X(threads) X(out) X(log_every)     \
  X(checkpoint_minutes) X(checkpoint_every) X(knn_k) X(knn_train_limit) X(knn_test_limit) X(knn_every_epoch) \
  X(queue_size) X(key_momentum) X(shuffle_bn_shards) X(lr_schedule) X(dataset_size) X(bank_negatives) X(pirl_lambda) X(bank_momentum) \
  X(jigsaw_size) X(jigsaw_tile) X(permutations) X(sync_bn) X(strict) X(precision)

std::string TrainConfig::to_json() const {
  nlohmann::ordered_json j;
#define X(f) j[#f] = f;
  SELFSUP_CONFIG_FIELDS(X)
#undef X
  return j.dump(2);
}

namespace {

// Reads one field, checking its JSON type and range first: nlohmann's get_to converts any number to any
// arithmetic type, and a float outside an integer's range is undefined behaviour (the config fuzz target's
// {"limit": 1e300}).
template <typename T>
void read_field(const nlohmann::json& j, const char* name, T& out, const std::string& source) {
  if (!j.contains(name)) return;
  const nlohmann::json& v = j.at(name);
  auto wrong = [&](const char* expected) {
    throw Error(str_cat(source, ": configuration field '", name, "' is ", v.dump(), ", expected ", expected));
  };
  if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) wrong("a string");
    out = v.get<std::string>();
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) wrong("true or false");
    out = v.get<bool>();
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) wrong("a number");
    out = v.get<T>();
  } else if constexpr (std::is_unsigned_v<T>) {
    if (!v.is_number_unsigned()) wrong("a non-negative integer");
    out = v.get<T>();
  } else {
    static_assert(std::is_integral_v<T> && std::is_signed_v<T>);
    using limits = std::numeric_limits<T>;
    const bool fits = v.is_number_unsigned()
                          ? v.get<uint64_t>() <= static_cast<uint64_t>(limits::max())
                          : v.is_number_integer() && v.get<int64_t>() >= limits::min() && v.get<int64_t>() <= limits::max();
    if (!fits) wrong(limits::digits > 31 ? "a 64-bit integer" : "a 32-bit integer");
    out = static_cast<T>(v.get<int64_t>());
  }
}

}  // namespace

TrainConfig TrainConfig::from_json(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw Error(str_cat(source, ": the stored configuration is not valid JSON (", e.what(), ")"));
  }
  if (!j.is_object())
    throw Error(str_cat(source, ": the stored configuration is a JSON ", j.type_name(), ", expected an object"));
  TrainConfig c;
#define X(f) read_field(j, #f, c.f, source);
  SELFSUP_CONFIG_FIELDS(X)
#undef X
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

void apply_method_preset(TrainConfig& cfg) {
  if (cfg.method == "moco" || cfg.method == "mocov2") {
    const bool v1 = cfg.method == "moco";
    cfg.temperature = v1 ? 0.07 : 0.2;
    cfg.recipe = v1 ? "mocov1" : "mocov2";
    cfg.lr_schedule = v1 ? "step" : "cosine";
    cfg.lr = 0.03;
    cfg.weight_decay = 1e-4;
    cfg.momentum = 0.9;
    cfg.batch = 256;
    cfg.warmup_fraction = 0;
    cfg.crop_min = 0.2;
    cfg.proj_dim = 128;
  }
  if (cfg.method == "pirl") cfg.temperature = 0.07;  // PIRL's paper value (SimCLR's 0.2 is the default)
  if (cfg.method == "context-encoder") {
    // The paper trains with Adam (lr 2e-4, beta1 0.5) for long; a short CPU run learns faster at 1e-3
    // (AdamW with beta1 0.9, no weight decay), and the inpainting loss does not need SimCLR's large batches.
    cfg.optimizer = "adamw";
    cfg.lr = 1e-3;
    cfg.weight_decay = 0;
    cfg.batch = 64;
  }
  if (cfg.method == "rotnet") {
    cfg.batch = 128;
    cfg.lr = 0.1;
  } else if (cfg.method == "jigsaw") {
    cfg.batch = 256;
    cfg.lr = 0.01;
  }
}

}  // namespace selfsup::ssl
