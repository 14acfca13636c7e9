// Features of a frozen encoder for evaluation (kNN, linear probe, `selfsup embed`): the encoder in eval
// mode (batch norm on running statistics), images resized to the encoder's input size and normalised
// exactly as in training, no augmentation, no gradients. An image folder's images (any size; an
// ImageSource) are decoded a batch at a time, resized by the short side and centre-cropped (eval_views_each).
#pragma once
#include <cstdint>

#include "engine/data/dataset.h"
#include "models/resnet.h"

namespace selfsup::eval {

// (min(limit, N), feature_dim) float32 features of the first `limit` images (0 = all) of `data`.
// recipe: the training recipe's name (its normalisation is reused). The encoder's train/eval mode is
// restored afterwards.
Tensor extract_features(models::ResNet& encoder, const ImageDataset& data, int64_t image_size,
                        const std::string& recipe, int64_t limit = 0, int64_t batch = 500);

}  // namespace selfsup::eval
