#include "ssl/methods/context_encoder.h"

#include <algorithm>
#include <cmath>

#include "engine/autograd/grad_mode.h"
#include "engine/dist/ddp.h"
#include "engine/nn/decoder_layers.h"
#include "engine/ops/ops.h"

namespace selfsup::ssl {

namespace {

// The spatial size of the trunk's last map for a size x size input: conv1 (stride 2 with the ImageNet stem,
// then the 3x3/2 max pool), then layer2..4 each halve with stride 2 and padding 1 (ceil division).
int64_t map_size(int64_t size, models::Stem stem) {
  auto half = [](int64_t s) { return (s + 1) / 2; };
  int64_t s = stem == models::Stem::imagenet ? half(half(size)) : size;
  for (int i = 0; i < 3; ++i) s = half(s);
  return s;
}

// ConvT 3x3 / 2 with padding 1 maps h to 2h - 1, plus output_padding 0 or 1: the sizes from the trunk's map
// to the image, each the ceil-half of the next (28: 4, 7, 14, 28).
std::vector<int64_t> decoder_sizes(int64_t from, int64_t size) {
  std::vector<int64_t> sizes{size};
  while (sizes.back() > from) sizes.push_back((sizes.back() + 1) / 2);
  SELFSUP_CHECK(sizes.back() == from, "context-encoder: cannot grow the trunk's ", from, "x", from, " map to ", size,
                "x", size, " by doublings");
  std::reverse(sizes.begin(), sizes.end());
  return sizes;
}

}  // namespace

ContextEncoder::ContextEncoder(const ContextEncoderOptions& opt) : opt_(opt), comm_(&dist::world()) {
  SELFSUP_CHECK(opt.mask == "center" || opt.mask == "blocks", "context-encoder: unknown --mask '", opt.mask,
                "' (expected center or blocks)");
  SELFSUP_CHECK(opt.adv_weight >= 0 && opt.adv_weight < 1, "context-encoder: --adv ", opt.adv_weight,
                " must be in [0, 1) (lambda_rec = 1 - lambda_adv)");
  SELFSUP_CHECK(opt.image_size >= 8, "context-encoder: the image size must be >= 8, got ", opt.image_size);
  models::ResNetOptions eo = opt.encoder;
  eo.num_classes = 0;
  encoder_ = register_module("encoder", std::make_shared<models::ResNet>(eo));
  Generator gen(eo.seed, 0x44454344ull);  // "DECD": the decoder's and discriminator's init stream
  const std::vector<int64_t> sizes = decoder_sizes(map_size(opt.image_size, eo.stem), opt.image_size);
  decoder_ = register_module("decoder", std::make_shared<nn::Sequential>());
  int64_t ch = encoder_->feature_dim();
  for (size_t i = 1; i < sizes.size(); ++i) {
    const int64_t out = std::max(eo.width, ch / 2);
    const int64_t output_padding = sizes[i] - (2 * sizes[i - 1] - 1);
    decoder_->push_back(std::make_shared<nn::ConvTranspose2d>(ch, out, 3, 2, 1, output_padding, false, gen));
    decoder_->push_back(std::make_shared<nn::BatchNorm2d>(out));
    decoder_->push_back(std::make_shared<nn::ReLU>());
    ch = out;
  }
  decoder_->push_back(std::make_shared<nn::Conv2d>(ch, eo.in_channels, 3, 1, 1, true, gen));
  if (opt.adv_weight > 0) {
    disc_ = register_module("discriminator", std::make_shared<nn::Sequential>());
    int64_t c = eo.in_channels;
    for (int64_t out : {eo.width, 2 * eo.width, 4 * eo.width}) {
      disc_->push_back(std::make_shared<nn::Conv2d>(c, out, 4, 2, 1, true, gen));
      disc_->push_back(std::make_shared<nn::LeakyReLU>(0.2));
      c = out;
    }
    disc_->push_back(std::make_shared<nn::AdaptiveAvgPool2d>(std::array<int64_t, 2>{1, 1}));
    disc_->push_back(std::make_shared<nn::Flatten>());
    disc_->push_back(std::make_shared<nn::Linear>(c, 1, true, gen));
  }
}

std::vector<Tensor> ContextEncoder::trainable_parameters() const {
  std::vector<Tensor> p = encoder_->parameters(), d = decoder_->parameters();
  p.insert(p.end(), d.begin(), d.end());
  return p;
}

void ContextEncoder::ensure_disc_optimizer() {
  if (disc_ && !disc_optim_)
    disc_optim_ = std::make_unique<AdamW>(disc_->parameters(), AdamWOptions{opt_.disc_lr, 0.5, 0.999, 1e-8, 0.0});
}

TensorMap ContextEncoder::method_state() const {
  TensorMap m;
  if (disc_optim_)
    for (auto& [k, v] : disc_optim_->state_dict()) m["disc_optim." + k] = v;
  return m;
}

void ContextEncoder::load_method_state(const TensorMap& state) {
  ensure_disc_optimizer();
  TensorMap d;
  for (const auto& [k, v] : state) {
    SELFSUP_CHECK(k.rfind("disc_optim.", 0) == 0 && disc_optim_, "context-encoder: unexpected method state '", k,
                  "' in the checkpoint", disc_ ? "" : " (this run has no discriminator: --adv 0)");
    d[k.substr(11)] = v;
  }
  if (disc_optim_) {
    SELFSUP_CHECK(!d.empty(), "context-encoder: the checkpoint has no discriminator optimizer state (disc_optim.*)");
    disc_optim_->load_state_dict(d);
  }
}

Tensor ContextEncoder::make_mask(int64_t batch, int64_t step) const {
  const int64_t s = opt_.image_size;
  std::vector<float> m(static_cast<size_t>(batch * s * s), 0.0f);
  if (opt_.mask == "center") {
    const int64_t side = s / 2, lo = (s - side) / 2;
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t y = lo; y < lo + side; ++y)
        std::fill_n(m.begin() + (b * s + y) * s + lo, side, 1.0f);
  } else {
    // Squares of side s/4 at uniform positions until a quarter of the image is hidden (they may overlap;
    // 64 squares always suffice for 1/4 of the image: 64 (s/4)^2 = 4 s^2).
    const int64_t side = std::max<int64_t>(1, s / 4), target = (s * s + 3) / 4, kMax = 64;
    Generator gen(opt_.seed ^ 0x4d41534bull, static_cast<uint64_t>(step));  // "MASK", one stream per step
    const std::vector<double> u = Tensor::rand({batch, kMax, 2}, DType::f64, &gen).to_vector();
    for (int64_t b = 0; b < batch; ++b) {
      float* mb = m.data() + b * s * s;
      int64_t hidden = 0;
      for (int64_t k = 0; k < kMax && hidden < target; ++k) {
        const int64_t y0 = static_cast<int64_t>(u[(b * kMax + k) * 2] * static_cast<double>(s - side + 1));
        const int64_t x0 = static_cast<int64_t>(u[(b * kMax + k) * 2 + 1] * static_cast<double>(s - side + 1));
        for (int64_t y = y0; y < y0 + side; ++y)
          for (int64_t x = x0; x < x0 + side; ++x) {
            hidden += mb[y * s + x] == 0.0f;
            mb[y * s + x] = 1.0f;
          }
      }
    }
  }
  return Tensor::from_vector(m, {batch, 1, s, s});
}

Tensor ContextEncoder::reconstruct(const Tensor& x, const Tensor& mask) {
  Tensor keep = sub(Tensor::ones({1}, x.dtype(), x.device()), mask);  // (B, 1, s, s): 1 = visible
  return decoder_->forward(encoder_->forward_map(mul(x, keep)));     // hidden pixels = 0 = the data mean
}

Tensor ContextEncoder::masked_l2(const Tensor& x_hat, const Tensor& x, const Tensor& mask) {
  return masked_l2(x_hat, x, mask, sum(mask).item());
}

Tensor ContextEncoder::masked_l2(const Tensor& x_hat, const Tensor& x, const Tensor& mask, double hidden) {
  SELFSUP_CHECK(hidden > 0, "context-encoder: the mask hides no pixel");
  return div(sum(mul(square(sub(x_hat, x)), mask)), hidden * static_cast<double>(x.size(1)));
}

Tensor ContextEncoder::bce_with_logits(const Tensor& z, double target) {
  // log(1 + exp(z)) - t z = max(z, 0) + log(1 + exp(-|z|)) - t z: no exp of a large positive number.
  Tensor softplus = add(relu(z), log(add(exp(neg(abs(z))), 1.0)));
  return mean(target == 0 ? softplus : sub(softplus, mul(z, target)));
}

StepResult ContextEncoder::training_step(const StepInput& in) {
  SELFSUP_CHECK(in.views.size() == 1, "context-encoder: expects 1 view per image, got ", in.views.size());
  const Tensor& x = in.views[0];  // (B, C, s, s)
  SELFSUP_CHECK(x.size(2) == opt_.image_size && x.size(3) == opt_.image_size, "context-encoder: views of ",
                shape_str(x.sizes()), " but the decoder paints ", opt_.image_size, "x", opt_.image_size);
  const int64_t n = x.size(0), W = comm_->world_size();
  // The global batch's masks (B = W n): this rank's image i is row r n + i, the mask one process gives it.
  const Tensor global_mask = make_mask(n * W, in.step);  // (B, 1, s, s)
  const Tensor mask = global_mask.narrow(0, comm_->rank() * n, n).contiguous().to(x.dtype()).to(x.device());
  const double hidden = sum(global_mask).item() / static_cast<double>(W);  // this rank's share of the count
  const Tensor x_hat = reconstruct(x, mask);
  Tensor loss = masked_l2(x_hat, x, mask, hidden);
  if (disc_) {
    ensure_disc_optimizer();
    const Tensor completed = add(mul(x, sub(Tensor::ones({1}, x.dtype(), x.device()), mask)), mul(x_hat, mask));
    // The discriminator's step first, on the completed images with no gradient to the generator.
    disc_optim_->set_lr_factor(in.lr_factor);
    disc_optim_->zero_grad();
    Tensor d_loss = add(bce_with_logits(disc_->forward(x), 1.0), bce_with_logits(disc_->forward(completed.detach()), 0.0));
    d_loss.backward();
    // Each rank's BCE is the mean over its n images: the mean over ranks is one process's gradient, and
    // every rank takes the same Adam step.
    if (comm_->distributed()) dist::all_reduce_gradients(disc_->parameters(), *comm_);
    disc_optim_->step();
    // The generator's adversarial term against the updated discriminator (non-saturating: -log D(G)). Its
    // backward also leaves gradients on the discriminator; they are dropped by the zero_grad above next step.
    loss = add(mul(loss, 1.0 - opt_.adv_weight), mul(bce_with_logits(disc_->forward(completed), 1.0), opt_.adv_weight));
  }
  // Monitor: masked pixels reconstructed within 0.1 of the [0, 1] range.
  double within = 0;
  {
    NoGradGuard ng;
    const Tensor close = lt(abs(sub(x_hat, x)), 0.1 / opt_.pixel_std).to(x.dtype());
    within = sum(mul(close, mask)).item() / (hidden * static_cast<double>(x.size(1)));  // mean over ranks: global
  }
  return {loss, within};
}

}  // namespace selfsup::ssl
