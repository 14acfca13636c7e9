// RotNet (Gidaris, Singh & Komodakis, ICLR 2018): every image of the batch is shown in its four
// rotations (0, 90, 180, 270 degrees counter-clockwise) and a 4-way classifier on the trunk's pooled
// features must say which rotation it sees. Recognising "upright" needs the object's shape and parts, so
// the trunk learns them without labels. One augmented view per image (num_views() = 1); the four rotated
// copies are one (4B, C, h, w) batch, so batch norm sees all of them.
#pragma once
#include <memory>

#include "engine/data/augment.h"

#include "ssl/methods/method.h"

namespace selfsup::ssl {

struct RotNetOptions {
  models::ResNetOptions encoder;  // num_classes is forced to 0 (feature extractor)
};

class RotNet : public Method {
 public:
  explicit RotNet(const RotNetOptions& opt);
  StepResult training_step(const StepInput& in) override;
  models::ResNet& encoder() override { return *encoder_; }
  std::string method_name() const override { return "rotnet"; }
  std::string type_name() const override { return "RotNet"; }
  int num_views() const override { return 1; }
  std::string loss_title() const override { return "RotNet rotation cross-entropy"; }
  std::string accuracy_name() const override { return "rot acc"; }
  // The rotation classifier on images x (N, C, h, w): logits (N, 4) over 0, 90, 180, 270 degrees.
  Tensor rotation_logits(const Tensor& x);

 private:
  std::shared_ptr<models::ResNet> encoder_;
  std::shared_ptr<nn::Linear> head_;  // feature_dim -> 4 rotation logits
};

}  // namespace selfsup::ssl
