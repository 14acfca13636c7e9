// The encoder an evaluation command works on, named the same way by every one of them (eval linear|knn|
// finetune, embed): --checkpoint DIR (a run directory, a checkpoint file or a committed encoder) or --weights
// FILE (torchvision-named ResNet weights, or a run's ckpt-<step>.safetensors) described by --arch --width --stem
// --in-channels --image-size --recipe.
#pragma once
#include <string>

#include "ssl/app/args.h"
#include "ssl/trainer/encoder_io.h"

namespace selfsup::app {

struct EncoderArg {
  std::string checkpoint, weights;
  ssl::TrainConfig arch;  // the architecture --weights describes; arch.data is --data ("" = the run's)
  std::string source() const { return checkpoint.empty() ? weights : checkpoint; }
};

// Reads the options (before Args::finish, so a misspelt one is reported first); exactly one of the two sources.
EncoderArg read_encoder_arg(Args& a, const std::string& command);
ssl::LoadedEncoder load_encoder(const EncoderArg& e);
// The data set spec to evaluate on: --data, else the data the run was trained on.
std::string data_spec(const EncoderArg& e, const ssl::LoadedEncoder& le);

}  // namespace selfsup::app
