// SimCLR (Chen et al. 2020): two augmented views of each image go through the encoder f and the
// projection head g; NT-Xent pulls each view's projection towards its twin's and away from the other
// 2B - 2 projections in the batch. Both views are one (2B, C, h, w) batch, so batch norm sees both.
#pragma once
#include <memory>

#include "engine/dist/communicator.h"
#include "ssl/methods/method.h"

namespace selfsup::ssl {

struct SimCLROptions {
  models::ResNetOptions encoder;  // num_classes is forced to 0 (feature extractor)
  int64_t proj_hidden = 512;
  int64_t proj_dim = 128;
  double temperature = 0.2;
};

class SimCLR : public Method {
 public:
  explicit SimCLR(const SimCLROptions& opt);
  StepResult training_step(const StepInput& in) override;
  models::ResNet& encoder() override { return *encoder_; }
  std::string method_name() const override { return "simclr"; }
  std::string type_name() const override { return "SimCLR"; }
  // The job whose global batch NT-Xent spans (default: this process's, dist::world()).
  void set_communicator(dist::Communicator& comm) { comm_ = &comm; }

 private:
  SimCLROptions opt_;
  std::shared_ptr<models::ResNet> encoder_;
  std::shared_ptr<nn::Sequential> head_;
  dist::Communicator* comm_;
};

}  // namespace selfsup::ssl
