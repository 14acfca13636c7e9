// Restoring a trained encoder for evaluation: from a training checkpoint (its stored configuration says
// which architecture to build) or from a safetensors file of torchvision-named ResNet weights.
#pragma once
#include <memory>
#include <string>

#include "models/resnet.h"
#include "ssl/trainer/config.h"

namespace selfsup::ssl {

struct LoadedEncoder {
  std::shared_ptr<models::ResNet> encoder;
  TrainConfig config;  // architecture, image size and recipe (normalisation) of the encoder
};

// A run directory or checkpoint file written by `selfsup train`, or a slim run directory holding only
// encoder.safetensors and config.json (how encoders are committed under models/pretrained/).
LoadedEncoder load_encoder_from_checkpoint(const std::string& dir_or_file);
// A torchvision-style state dict (conv1.weight, layer1.0.bn1.running_mean, ...; an `fc.*` classifier is
// ignored), or a run's checkpoint file (its model.encoder.* part), built as `arch` describes (arch, width,
// stem, in_channels, image_size, recipe). A width, input channel count or stem other than conv1.weight's is
// an error naming the option to pass; other wrong or missing keys and shapes are errors naming the key.
LoadedEncoder load_encoder_from_weights(const std::string& file, const TrainConfig& arch);
// A freshly initialised encoder of `arch`'s architecture (the from-scratch baseline of fine-tuning).
std::shared_ptr<models::ResNet> build_encoder(const TrainConfig& arch, uint64_t seed);

}  // namespace selfsup::ssl
