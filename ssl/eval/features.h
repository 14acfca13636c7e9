// Features of a frozen encoder for evaluation (kNN, linear probe, `selfsup embed`): the encoder in eval
// mode (batch norm on running statistics), images resized to the encoder's input size and normalised
// exactly as in training, no augmentation, no gradients. An image folder's images (any size; an
// ImageSource) are decoded a batch at a time, resized by the short side and centre-cropped (eval_views_each).
#pragma once
#include <cstdint>
#include <string>

#include "engine/data/dataset.h"
#include "models/resnet.h"

namespace selfsup::eval {

// Images [first, first + count) of `data` as the encoder sees them in evaluation: float (count, C, s, s),
// the whole image (or its central square) resized to image_size, normalised with `recipe`'s mean and std.
Tensor eval_views(const ImageDataset& data, int64_t first, int64_t count, int64_t image_size, const std::string& recipe);
// Which stage of the trunk gives the features: layer4 (the encoder's output, feature_dim channels) or
// layer3 (4 * width * expansion channels, globally average-pooled the same way). Pretext tasks make the
// last stage specific to the pretext task, so the papers probe intermediate layers too.
enum class FeatureLayer { layer3, layer4 };
// "layer3" | "layer4"; anything else is an error naming `what` (the command and option).
FeatureLayer parse_feature_layer(const std::string& name, const std::string& what);
// The features of x (N, C, H, W) at `layer`: (N, channels) after the global average pool.
Tensor forward_to_layer(models::ResNet& encoder, const Tensor& x, FeatureLayer layer);

// (min(limit, N), feature_dim) float32 features of the first `limit` images (0 = all) of `data`.
// recipe: the training recipe's name (its normalisation is reused). The encoder's train/eval mode is
// restored afterwards.
Tensor extract_features(models::ResNet& encoder, const ImageDataset& data, int64_t image_size,
                        const std::string& recipe, int64_t limit = 0, int64_t batch = 500,
                        FeatureLayer layer = FeatureLayer::layer4);

}  // namespace selfsup::eval
