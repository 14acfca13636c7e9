#include "ssl/methods/registry.h"

#include <algorithm>

#include "engine/core/check.h"
#include "ssl/methods/jigsaw.h"
#include "ssl/methods/rotnet.h"
#include "ssl/methods/simclr.h"

namespace selfsup::ssl {

const std::vector<std::string>& method_names() {
  static const std::vector<std::string> names = {"simclr", "rotnet", "jigsaw"};
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

std::shared_ptr<Method> make_method(const TrainConfig& c) {
  SELFSUP_CHECK(is_known_method(c.method), "train: unknown --method '", c.method, "' (expected ", method_list(), ")");
  if (c.method == "rotnet") return std::make_shared<RotNet>(RotNetOptions{encoder_options(c)});
  if (c.method == "jigsaw")
    return std::make_shared<Jigsaw>(
        JigsawOptions{encoder_options(c), c.image_size, c.jigsaw_tile, c.permutations, c.proj_hidden, c.seed});
  return std::make_shared<SimCLR>(SimCLROptions{encoder_options(c), c.proj_hidden, c.proj_dim, c.temperature});
}

}  // namespace selfsup::ssl
