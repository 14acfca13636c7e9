// The methods `selfsup train --method` knows: one place that maps a configuration to its Method, so the
// trainer, the CLI's --help and the checks never list methods themselves. A new method adds its line to
// kMethods (registry.cpp) and its branch to make_method.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "ssl/methods/method.h"
#include "ssl/trainer/config.h"

namespace selfsup::ssl {

// The --method values, in the order --help lists them.
const std::vector<std::string>& method_names();
bool is_known_method(const std::string& name);
// "simclr, moco or pirl": for error messages.
std::string method_list();

// The encoder options every method shares (arch, width, stem, channels, seed).
models::ResNetOptions encoder_options(const TrainConfig& c);

// Settles the method's sizes that depend on the data and the batch, before make_method, and returns a note
// for each change (the trainer prints them; config.json keeps the settled values). moco/mocov2: the queue is
// capped at the training set's size (more keys than images would hold every image's key twice), and
// --shuffle-bn-shards 0 becomes 8, or the largest S < 8 that leaves at least 2 images per shard.
std::vector<std::string> resolve_method_config(TrainConfig& c, int64_t train_size);

// Builds the configured method (its encoder, heads and state), initialised from cfg.seed.
std::shared_ptr<Method> make_method(const TrainConfig& c);

}  // namespace selfsup::ssl
