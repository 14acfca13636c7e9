// Features of a frozen encoder for evaluation (kNN, linear probe, `selfsup embed`): the encoder in eval
// mode (batch norm on running statistics), images resized to the encoder's input size and normalised
// exactly as in training, no augmentation, no gradients.
#pragma once
#include <cstdint>

#include "engine/data/dataset.h"
#include "models/resnet.h"

namespace selfsup::eval {

// Images [first, first + count) of `data` as the encoder sees them in evaluation: float (count, C, s, s),
// the whole image (or its central square) resized to image_size, normalised with `recipe`'s mean and std.
Tensor eval_views(const ImageDataset& data, int64_t first, int64_t count, int64_t image_size, const std::string& recipe);

// (min(limit, N), feature_dim) float32 features of the first `limit` images (0 = all) of `data`.
// recipe: the training recipe's name (its normalisation is reused). The encoder's train/eval mode is
// restored afterwards.
Tensor extract_features(models::ResNet& encoder, const ImageDataset& data, int64_t image_size,
                        const std::string& recipe, int64_t limit = 0, int64_t batch = 500);

}  // namespace selfsup::eval
