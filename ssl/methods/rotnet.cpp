#include "ssl/methods/rotnet.h"

#include "engine/ops/ops.h"
#include "ssl/methods/pretext_util.h"

namespace selfsup::ssl {

RotNet::RotNet(const RotNetOptions& opt) {
  models::ResNetOptions eo = opt.encoder;
  eo.num_classes = 0;
  encoder_ = register_module("encoder", std::make_shared<models::ResNet>(eo));
  Generator gen(eo.seed, 0x524f5448ull);  // "ROTH": the head's init stream, apart from the encoder's
  head_ = register_module("head", std::make_shared<nn::Linear>(encoder_->feature_dim(), 4, true, gen));
}

Tensor RotNet::rotation_logits(const Tensor& x) { return head_->forward(encoder_->forward_features(x)); }

StepResult RotNet::training_step(const StepInput& in) {
  SELFSUP_CHECK(in.views.size() == 1, "rotnet: expects 1 view per image, got ", in.views.size());
  const Tensor& x = in.views[0];  // (B, C, h, w)
  // The rotations are cut on the CPU (rotations_all is a CPU transform): (4B, C, h, w) ordered
  // [all 0 degrees, all 90, all 180, all 270], labels (4B) = the quarter turns.
  const LabeledBatch rb = rotations_all(x.to(Device::cpu()));
  const Tensor logits = rotation_logits(rb.images.to(x.device()));  // (4B, 4)
  const Tensor labels = rb.labels.to(x.device());
  return {cross_entropy(logits, labels), top1_accuracy(logits, labels)};
}

}  // namespace selfsup::ssl
