#include "ssl/app/encoder_arg.h"

#include "engine/core/check.h"

namespace selfsup::app {

EncoderArg read_encoder_arg(Args& a, const std::string& command) {
  EncoderArg e;
  e.checkpoint = a.str("checkpoint", "");
  e.weights = a.str("weights", "");
  SELFSUP_CHECK(e.checkpoint.empty() != e.weights.empty(), command,
                ": give exactly one of --checkpoint DIR or --weights FILE");
  // Weights carry no configuration: the data set's preset (channels, image size, stem, recipe) fills in what
  // the options leave out, and torchvision's width 64.
  e.arch.data = a.str("data", e.checkpoint.empty() ? "fashion-mnist" : "");
  ssl::apply_data_preset(e.arch);
  e.arch.arch = a.str("arch", "resnet18");
  e.arch.width = a.integer("width", 64);
  e.arch.stem = a.str("stem", e.arch.stem);
  e.arch.in_channels = a.integer("in-channels", e.arch.in_channels);
  e.arch.image_size = a.integer("image-size", e.arch.image_size);
  e.arch.recipe = a.str("recipe", e.arch.recipe);
  return e;
}

ssl::LoadedEncoder load_encoder(const EncoderArg& e) {
  return e.checkpoint.empty() ? ssl::load_encoder_from_weights(e.weights, e.arch)
                              : ssl::load_encoder_from_checkpoint(e.checkpoint);
}

std::string data_spec(const EncoderArg& e, const ssl::LoadedEncoder& le) {
  return e.arch.data.empty() ? le.config.data : e.arch.data;
}

}  // namespace selfsup::app
