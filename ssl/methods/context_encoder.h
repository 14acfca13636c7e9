// Context Encoder (Pathak et al. 2016): inpainting as a pretext task. Part of each image is masked out
// (filled with the data set mean, 0 after normalisation), the trunk encodes what is left, a decoder of
// transposed convolutions paints the whole image back, and the loss is
//   lambda_rec * L2 over the masked pixels only + lambda_adv * adversarial loss,
// the adversarial term from a small discriminator that tells real images from completed ones (the
// reconstruction pasted into the hole). Paper: lambda_rec 0.999, lambda_adv 0.001; adv_weight 0 trains
// with L2 alone and builds no discriminator.
//
// Shapes for Fashion-MNIST (width w, ResNet-18 CIFAR stem, 28x28):
//   x (B, 1, 28, 28) -> mask m (B, 1, 28, 28), 1 = hidden -> trunk map (B, 8w, 4, 4)
//   decoder: ConvT 8w->4w (4 -> 7), 4w->2w (7 -> 14), 2w->w (14 -> 28), each + BN + ReLU, then a 3x3 conv
//   w -> 1: x_hat (B, 1, 28, 28) in normalised pixel units
//   discriminator: conv 4x4/2 (1 -> w, 14x14) - LReLU - (w -> 2w, 7x7) - LReLU - (2w -> 4w, 4x4) - LReLU -
//   global mean - Linear(4w, 1): one logit per image.
// The discriminator has its own Adam (the paper's optimiser, lr 2e-4 x the schedule's factor, beta1 0.5),
// stepped inside training_step; its parameters are not the trainer's, and its optimizer state goes into
// method_state() so a resume is exact.
//
// Data parallel (N ranks, n = B / N images each; docs/distributed.md, "Methods with state"): rank r's image i
// is row r n + i of the global batch and gets that row's mask; the masked L2 divides by the global batch's
// hidden-pixel count (known on every rank: each draws the whole batch's masks), so the mean of the ranks'
// losses is one process's loss; the discriminator's gradients are averaged over ranks before its Adam step,
// so it and its moments stay one process's on every rank. It has no BatchNorm (nothing to synchronise); the
// decoder's BN is SyncBN with the trunk's.
#pragma once
#include <memory>
#include <string>

#include "engine/dist/communicator.h"
#include "engine/optim/adamw.h"
#include "ssl/methods/method.h"

namespace selfsup::ssl {

struct ContextEncoderOptions {
  models::ResNetOptions encoder;  // num_classes is forced to 0
  int64_t image_size = 28;
  // blocks (the default): random squares of side size/4 until >= 1/4 of the pixels are hidden, the paper's
  // choice for feature learning ("random region"); center: the central square of side size/2 (1/4 of the
  // pixels), whose hole boundary the paper found the network latches on to.
  std::string mask = "blocks";
  double adv_weight = 0.001;    // lambda_adv; lambda_rec = 1 - lambda_adv
  double disc_lr = 2e-4;
  double pixel_std = 1;  // the recipe's std: the monitor counts masked pixels within 0.1 of the [0, 1] range
  uint64_t seed = 0;     // masks are drawn from (seed, step)
};

class ContextEncoder : public Method {
 public:
  explicit ContextEncoder(const ContextEncoderOptions& opt);
  // The job whose global batch the loss and the discriminator's step span (default: dist::world()).
  void set_communicator(dist::Communicator& comm) { comm_ = &comm; }
  StepResult training_step(const StepInput& in) override;
  int num_views() const override { return 1; }
  models::ResNet& encoder() override { return *encoder_; }
  std::string method_name() const override { return "context-encoder"; }
  std::string type_name() const override { return "ContextEncoder"; }
  std::string loss_title() const override { return "Context Encoder loss (masked L2 + adversarial)"; }
  std::string accuracy_name() const override { return "px<.1"; }
  std::vector<Tensor> trainable_parameters() const override;
  TensorMap method_state() const override;
  void load_method_state(const TensorMap& state) override;

  // The mask of a step: float (B, 1, size, size), 1 where the pixel is hidden; a pure function of (seed, step).
  Tensor make_mask(int64_t batch, int64_t step) const;
  // x (B, C, size, size) normalised, mask from make_mask -> x_hat (B, C, size, size): the decoder's image.
  Tensor reconstruct(const Tensor& x, const Tensor& mask);
  // sum(m (x_hat - x)^2) / (C sum(m)): the mean squared error over the hidden pixels only.
  static Tensor masked_l2(const Tensor& x_hat, const Tensor& x, const Tensor& mask);
  // sum(m (x_hat - x)^2) / (C hidden): a rank's share of the global batch's masked mean (hidden: the global
  // hidden-pixel count / N).
  static Tensor masked_l2(const Tensor& x_hat, const Tensor& x, const Tensor& mask, double hidden);
  // mean over the batch of log(1 + exp(-z)) (target 1) or log(1 + exp(z)) (target 0), stable for any z.
  static Tensor bce_with_logits(const Tensor& z, double target);
  nn::Module& discriminator() { return *disc_; }

 private:
  void ensure_disc_optimizer();

  ContextEncoderOptions opt_;
  dist::Communicator* comm_;
  std::shared_ptr<models::ResNet> encoder_;
  std::shared_ptr<nn::Sequential> decoder_;
  std::shared_ptr<nn::Sequential> disc_;  // null when adv_weight == 0
  // Made on first use: the trainer moves the module to its device after construction, which replaces the
  // parameter tensors the optimizer would hold.
  std::unique_ptr<AdamW> disc_optim_;
};

}  // namespace selfsup::ssl
