#include "ssl/methods/simclr.h"

#include "engine/dist/gather.h"
#include "engine/ops/contrastive.h"
#include "engine/ops/ops.h"
#include "models/heads.h"

namespace selfsup::ssl {

SimCLR::SimCLR(const SimCLROptions& opt) : opt_(opt), comm_(&dist::world()) {
  models::ResNetOptions eo = opt.encoder;
  eo.num_classes = 0;
  encoder_ = register_module("encoder", std::make_shared<models::ResNet>(eo));
  Generator gen(eo.seed, 0x48454144ull);  // "HEAD": the head's init stream, apart from the encoder's
  head_ = register_module("head", models::simclr_projection_head(encoder_->feature_dim(), opt.proj_hidden,
                                                                 opt.proj_dim, gen));
}

StepResult SimCLR::training_step(const StepInput& in) {
  const std::vector<Tensor>& views = in.views;
  SELFSUP_CHECK(views.size() == 2, "simclr: expects 2 views per image, got ", views.size());
  Tensor x = cat(views, 0);                          // (2B, C, h, w)
  Tensor z = head_->forward(encoder_->forward_features(x));  // (2B, proj_dim)
  // Under data parallelism the rows are scored against every rank's projections (global negatives).
  ContrastiveResult r = comm_->distributed() ? dist::global_nt_xent(z, opt_.temperature, *comm_)
                                             : nt_xent(z, opt_.temperature);
  return {r.loss, r.accuracy};
}

}  // namespace selfsup::ssl
