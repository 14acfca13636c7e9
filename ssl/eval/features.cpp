#include "ssl/eval/features.h"

#include <exception>
#include <numeric>

#include "engine/autograd/grad_mode.h"
#include "engine/data/augment.h"
#include "engine/ops/ops.h"

namespace selfsup::eval {

Tensor extract_features(models::ResNet& encoder, const ImageDataset& data, int64_t image_size,
                        const std::string& recipe, int64_t limit, int64_t batch) {
  const int64_t n = limit > 0 ? std::min(limit, data.size()) : data.size();
  SELFSUP_CHECK(n > 0, "features: the data set ", data.name, " is empty");
  const int channels = static_cast<int>(data.channels());
  AugmentRecipe eval_recipe = make_recipe("eval", static_cast<int>(image_size), channels);
  const AugmentRecipe train_recipe = make_recipe(recipe, static_cast<int>(image_size), channels);
  std::copy(std::begin(train_recipe.mean), std::end(train_recipe.mean), std::begin(eval_recipe.mean));
  std::copy(std::begin(train_recipe.std), std::end(train_recipe.std), std::begin(eval_recipe.std));
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
    std::vector<int64_t> ids(static_cast<size_t>(rows));
    std::iota(ids.begin(), ids.end(), b0);
    Tensor x;  // (rows, C, s, s)
    if (data.source) {
      // Images of any size, decoded here one batch at a time: resized by the short side and centre-cropped
      // (torchvision's ImageFolder evaluation), then normalised.
      // An exception must not leave an OpenMP region: the first one (e.g. --strict's unreadable file) is
      // kept and thrown after it.
      std::vector<Tensor> images(static_cast<size_t>(rows));
      std::vector<std::exception_ptr> failed(static_cast<size_t>(rows));
#pragma omp parallel for schedule(dynamic, 4)
      for (int64_t k = 0; k < rows; ++k) {
        try {
          images[k] = data.source->load(b0 + k);
        } catch (...) {
          failed[k] = std::current_exception();
        }
      }
      for (const std::exception_ptr& e : failed)
        if (e) std::rethrow_exception(e);
      x = eval_views_each(images, eval_recipe);
    } else {
      std::vector<AugmentParams> params = sample_params(eval_recipe, static_cast<int>(data.images.size(1)),
                                                        static_cast<int>(data.images.size(2)), 0, 0, ids.data(), rows, 0);
      x = apply_augment(data.images.narrow(0, b0, rows), eval_recipe, params);
    }
    parts.push_back(encoder.forward_features(x.to(device)).to(Device::cpu()));
  }
  return cat(parts, 0);
}

}  // namespace selfsup::eval
