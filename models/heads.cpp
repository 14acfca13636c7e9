// SSL heads as Sequentials of engine/nn layers.
#include "models/heads.h"

#include "engine/autograd/grad_mode.h"
#include "engine/nn/init.h"

namespace selfsup::models {

std::shared_ptr<nn::Sequential> simclr_projection_head(int64_t in, int64_t hidden, int64_t out, Generator& gen) {
  auto head = std::make_shared<nn::Sequential>();
  head->push_back(std::make_shared<nn::Linear>(in, hidden, /*bias=*/false, gen));
  head->push_back(std::make_shared<nn::BatchNorm1d>(hidden));
  head->push_back(std::make_shared<nn::ReLU>());
  head->push_back(std::make_shared<nn::Linear>(hidden, out, /*bias=*/true, gen));
  return head;
}

std::shared_ptr<nn::Sequential> moco_v2_head(int64_t in, int64_t hidden, int64_t out, Generator& gen) {
  auto head = std::make_shared<nn::Sequential>();
  head->push_back(std::make_shared<nn::Linear>(in, hidden, true, gen));
  head->push_back(std::make_shared<nn::ReLU>());
  head->push_back(std::make_shared<nn::Linear>(hidden, out, true, gen));
  return head;
}

std::shared_ptr<nn::Linear> linear_classifier(int64_t in, int64_t num_classes, Generator& gen) {
  auto fc = std::make_shared<nn::Linear>(in, num_classes, true, gen);
  NoGradGuard no_grad;
  fc->weight.copy_(nn::init::normal(fc->weight.sizes(), 0.01, fc->weight.dtype(), gen));
  fc->bias.zero_();
  return fc;
}

}  // namespace selfsup::models
