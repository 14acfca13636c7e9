#include "ssl/eval/features.h"

#include <exception>
#include <exception>
#include <numeric>

#include "engine/autograd/grad_mode.h"
#include "engine/data/augment.h"
#include "engine/ops/ops.h"

namespace selfsup::eval {

FeatureLayer parse_feature_layer(const std::string& name, const std::string& what) {
  if (name == "layer3") return FeatureLayer::layer3;
  SELFSUP_CHECK(name == "layer4", what, ": unknown --features '", name, "' (expected layer3 or layer4)");
  return FeatureLayer::layer4;
}

Tensor forward_to_layer(models::ResNet& encoder, const Tensor& x, FeatureLayer layer) {
  if (layer == FeatureLayer::layer4) return encoder.forward_features(x);
  SELFSUP_CHECK(x.dim() == 4 && x.size(1) == encoder.options().in_channels, "features: expected input (N, ",
                encoder.options().in_channels, ", H, W), got ", shape_str(x.sizes()));
  // The stages of ResNet::forward_features up to layer3.
  Tensor y = encoder.maxpool->forward(relu(encoder.bn1->forward(encoder.conv1->forward(x))));
  y = encoder.layer3->forward(encoder.layer2->forward(encoder.layer1->forward(y)));  // (N, 4w * expansion, h, w)
  return adaptive_avg_pool2d(y, {1, 1}).flatten(1);
}

Tensor eval_views(const ImageDataset& data, int64_t first, int64_t count, int64_t image_size, const std::string& recipe) {
  SELFSUP_CHECK(first >= 0 && count >= 0 && first + count <= data.size(), "features: images [", first, ", ",
                first + count, ") of ", data.name, ", which has ", data.size());
  const int channels = static_cast<int>(data.channels());
  AugmentRecipe eval_recipe = make_recipe("eval", static_cast<int>(image_size), channels);
  const AugmentRecipe train_recipe = make_recipe(recipe, static_cast<int>(image_size), channels);
  std::copy(std::begin(train_recipe.mean), std::end(train_recipe.mean), std::begin(eval_recipe.mean));
  std::copy(std::begin(train_recipe.std), std::end(train_recipe.std), std::begin(eval_recipe.std));
  if (data.source) {
    // Images of any size, decoded here one batch at a time: resized by the short side and centre-cropped
    // (torchvision's ImageFolder evaluation), then normalised.
    // An exception must not leave an OpenMP region: the first one (e.g. --strict's unreadable file) is
    // kept and thrown after it.
    std::vector<Tensor> images(static_cast<size_t>(count));
    std::vector<std::exception_ptr> failed(static_cast<size_t>(count));
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t k = 0; k < count; ++k) {
      try {
        images[k] = data.source->load(first + k);
      } catch (...) {
        failed[k] = std::current_exception();
      }
    }
    for (const std::exception_ptr& e : failed)
      if (e) std::rethrow_exception(e);
    return eval_views_each(images, eval_recipe);
  }
  std::vector<int64_t> ids(static_cast<size_t>(count));
  std::iota(ids.begin(), ids.end(), first);
  std::vector<AugmentParams> params = sample_params(eval_recipe, static_cast<int>(data.images.size(1)),
                                                    static_cast<int>(data.images.size(2)), 0, 0, ids.data(), count, 0);
  return apply_augment(data.images.narrow(0, first, count), eval_recipe, params);  // (count, C, s, s)
}

Tensor extract_features(models::ResNet& encoder, const ImageDataset& data, int64_t image_size,
                        const std::string& recipe, int64_t limit, int64_t batch, FeatureLayer layer) {
  const int64_t n = limit > 0 ? std::min(limit, data.size()) : data.size();
  SELFSUP_CHECK(n > 0, "features: the data set ", data.name, " is empty");
  // Eval mode for the extraction; the caller's mode comes back however this returns (an encoder that
  // throws, e.g. on a channel mismatch, must not be left in eval mode for a training loop that goes on).
  struct ModeGuard {
    models::ResNet& m;
    bool was_training;
    ~ModeGuard() { m.train(was_training); }
  } mode{encoder, encoder.is_training()};
  // Images are prepared on the CPU and moved to the encoder's device; features come back to the CPU.
  const Device device = encoder.parameters().front().device();
  encoder.eval();
  NoGradGuard ng;
  std::vector<Tensor> parts;
  for (int64_t b0 = 0; b0 < n; b0 += batch) {
    const int64_t rows = std::min(batch, n - b0);
    Tensor x = eval_views(data, b0, rows, image_size, recipe);  // (rows, C, s, s)
    parts.push_back(forward_to_layer(encoder, x.to(device), layer).to(Device::cpu()));
  }
  return cat(parts, 0);
}

}  // namespace selfsup::eval
