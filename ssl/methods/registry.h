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

// Sets the method's own defaults (its paper's, scaled for a small CPU where said) on a configuration whose
// data preset is applied: call it after reading --method and before the other options, so options win.
void apply_method_preset(TrainConfig& c);

// Builds the configured method (its encoder, heads and state), initialised from cfg.seed.
std::shared_ptr<Method> make_method(const TrainConfig& c);

}  // namespace selfsup::ssl
