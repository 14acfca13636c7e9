#include "ssl/trainer/encoder_io.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/io/checkpoint.h"
#include "engine/io/safetensors.h"

namespace selfsup::ssl {

std::shared_ptr<models::ResNet> build_encoder(const TrainConfig& c, uint64_t seed) {
  SELFSUP_CHECK(c.arch == "resnet18" || c.arch == "resnet34" || c.arch == "resnet50", "unknown --arch '", c.arch,
                "' (expected resnet18, resnet34 or resnet50)");
  SELFSUP_CHECK(c.stem == "cifar" || c.stem == "imagenet", "unknown --stem '", c.stem, "' (expected cifar or imagenet)");
  models::ResNetOptions o;
  o.depth = c.arch == "resnet18" ? 18 : c.arch == "resnet34" ? 34 : 50;
  o.in_channels = c.in_channels;
  o.stem = c.stem == "cifar" ? models::Stem::cifar : models::Stem::imagenet;
  o.width = c.width;
  o.num_classes = 0;
  o.seed = seed;
  return std::make_shared<models::ResNet>(o);
}

LoadedEncoder load_encoder_from_checkpoint(const std::string& dir_or_file) {
  namespace fs = std::filesystem;
  // A slim run directory (a committed encoder, models/pretrained/<name>/): the encoder weights and the
  // configuration that `selfsup train` wrote, without the training checkpoints.
  const fs::path dir(dir_or_file), weights = dir / "encoder.safetensors", config = dir / "config.json";
  if (fs::is_directory(dir) && latest_checkpoint(dir_or_file).empty() && fs::is_regular_file(weights) &&
      fs::is_regular_file(config)) {
    std::ifstream f(config);
    SELFSUP_CHECK(f.good(), config.string(), ": cannot open");
    std::stringstream text;
    text << f.rdbuf();
    return load_encoder_from_weights(weights.string(), TrainConfig::from_json(text.str(), config.string()));
  }
  Checkpoint ck = load_checkpoint(dir_or_file);
  LoadedEncoder le{nullptr, TrainConfig::from_json(ck.config_json, dir_or_file)};
  le.encoder = build_encoder(le.config, 0);
  nn::NamedTensors state;
  const std::string prefix = "encoder.";
  for (const auto& [k, v] : ck.model)
    if (k.compare(0, prefix.size(), prefix) == 0) state.emplace_back(k.substr(prefix.size()), v);
  SELFSUP_CHECK(!state.empty(), dir_or_file, ": the checkpoint holds no encoder weights (model.encoder.*)");
  le.encoder->load_state_dict(state);
  return le;
}

LoadedEncoder load_encoder_from_weights(const std::string& file, const TrainConfig& arch) {
  SafetensorsFile f = load_safetensors(file);
  // A run's checkpoint (ckpt-<step>.safetensors) holds the encoder as model.encoder.*, beside the projection
  // head (model.head.*) and the optimizer and generator state: its encoder part is the state dict.
  const auto format = f.metadata.find("format");
  const bool checkpoint = format != f.metadata.end() && format->second == "selfsup.checkpoint";
  const std::string prefix = checkpoint ? "model.encoder." : "";
  nn::NamedTensors state;
  for (const auto& [k, v] : f.tensors) {
    if (k.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string name = k.substr(prefix.size());
    if (name.compare(0, 3, "fc.") != 0) state.emplace_back(name, v);
  }
  SELFSUP_CHECK(!checkpoint || !state.empty(), file, ": the checkpoint holds no encoder weights (model.encoder.*)");
  // The stem convolution (width, in_channels, k, k) says which width, input channels and stem the weights
  // have: a wrong description is named by the option to change, not by the first mismatching key.
  const auto conv1 = std::find_if(state.begin(), state.end(), [](const auto& kv) { return kv.first == "conv1.weight"; });
  SELFSUP_CHECK(conv1 != state.end(), file, ": no conv1.weight, so not a ResNet state dict with torchvision names (",
                state.size(), " tensors", state.empty() ? "" : ", the first '" + state.front().first + "'",
                "); --weights takes a run's encoder.safetensors or ckpt-<step>.safetensors");
  const Tensor& w = conv1->second;
  SELFSUP_CHECK(w.dim() == 4, file, ": conv1.weight has shape ", shape_str(w.sizes()), ", expected 4 dimensions");
  SELFSUP_CHECK(w.size(0) == arch.width, file, ": the weights have width ", w.size(0), " (conv1.weight ",
                shape_str(w.sizes()), "), not the ", arch.width, " described: pass --width ", w.size(0));
  SELFSUP_CHECK(w.size(1) == arch.in_channels, file, ": the weights take ", w.size(1), " input channel(s) (conv1.weight ",
                shape_str(w.sizes()), "), not the ", arch.in_channels, " described: pass --in-channels ", w.size(1));
  const char* stem = w.size(3) == 3 ? "cifar" : "imagenet";  // a 3x3 stride-1 stem, or torchvision's 7x7
  SELFSUP_CHECK(arch.stem == stem, file, ": the weights have the ", stem, " stem (conv1.weight ", shape_str(w.sizes()),
                "), not the ", arch.stem, " stem described: pass --stem ", stem);
  LoadedEncoder le{build_encoder(arch, 0), arch};
  try {
    le.encoder->load_state_dict(state);
  } catch (const Error& e) {
    throw Error(str_cat(file, ": does not match ", arch.arch, " width ", arch.width, " with the ", arch.stem,
                        " stem and ", arch.in_channels, " input channel(s): ", e.what()));
  }
  return le;
}

}  // namespace selfsup::ssl
