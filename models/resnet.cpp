// ResNet builders. Registration order mirrors torchvision's __init__ (conv1, bn1, relu, maxpool, layer1..4,
// avgpool, fc; in blocks conv1, bn1, conv2, bn2, [conv3, bn3,] downsample), which is what makes our
// state_dict key order equal to torchvision's. Modules without state (relu, avgpool) need not be
// registered for the keys, so forward calls the ops directly.
#include "models/resnet.h"

#include "engine/autograd/grad_mode.h"
#include "engine/nn/init.h"

namespace selfsup::models {

using nn::BatchNorm2d;
using nn::Conv2d;
using nn::Sequential;

namespace {

std::shared_ptr<Conv2d> conv(int64_t in, int64_t out, int64_t k, int64_t stride, Generator& gen) {
  return std::make_shared<Conv2d>(in, out, k, stride, k / 2, /*bias=*/false, gen);
}

std::shared_ptr<Sequential> make_downsample(int64_t in, int64_t out, int64_t stride, Generator& gen) {
  auto ds = std::make_shared<Sequential>();
  ds->push_back(conv(in, out, 1, stride, gen));
  ds->push_back(std::make_shared<BatchNorm2d>(out));
  return ds;
}

}  // namespace

BasicBlock::BasicBlock(int64_t inplanes, int64_t planes, int64_t stride, bool has_downsample, Generator& gen) {
  conv1 = register_module("conv1", conv(inplanes, planes, 3, stride, gen));
  bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(planes));
  conv2 = register_module("conv2", conv(planes, planes, 3, 1, gen));
  bn2 = register_module("bn2", std::make_shared<BatchNorm2d>(planes));
  if (has_downsample) downsample = register_module("downsample", make_downsample(inplanes, planes, stride, gen));
}

// Each BN + ReLU (+ residual add) is one fused op (batch_norm_add_relu): one pass over the activation
// forward and one backward instead of three.
Tensor BasicBlock::forward(const Tensor& x) {
  Tensor out = bn1->forward_add_relu(conv1->forward(x), Tensor());  // (N, planes, H/s, W/s)
  out = conv2->forward(out);
  Tensor identity = downsample ? downsample->forward(x) : x;
  return bn2->forward_add_relu(out, identity);
}

Bottleneck::Bottleneck(int64_t inplanes, int64_t planes, int64_t stride, bool has_downsample, Generator& gen) {
  const int64_t out = planes * kExpansion;
  conv1 = register_module("conv1", conv(inplanes, planes, 1, 1, gen));
  bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(planes));
  conv2 = register_module("conv2", conv(planes, planes, 3, stride, gen));
  bn2 = register_module("bn2", std::make_shared<BatchNorm2d>(planes));
  conv3 = register_module("conv3", conv(planes, out, 1, 1, gen));
  bn3 = register_module("bn3", std::make_shared<BatchNorm2d>(out));
  if (has_downsample) downsample = register_module("downsample", make_downsample(inplanes, out, stride, gen));
}

Tensor Bottleneck::forward(const Tensor& x) {
  Tensor out = bn1->forward_add_relu(conv1->forward(x), Tensor());    // (N, planes, H, W)
  out = bn2->forward_add_relu(conv2->forward(out), Tensor());         // (N, planes, H/s, W/s)
  Tensor identity = downsample ? downsample->forward(x) : x;
  return bn3->forward_add_relu(conv3->forward(out), identity);        // (N, 4*planes, H/s, W/s)
}

namespace {

// torchvision's _make_layer: the first block changes stride/channels (with a downsample branch when
// either changes), the rest keep them.
template <typename Block>
std::shared_ptr<Sequential> make_layer(int64_t& inplanes, int64_t planes, int blocks, int64_t stride,
                                       Generator& gen) {
  auto layer = std::make_shared<Sequential>();
  const bool ds = stride != 1 || inplanes != planes * Block::kExpansion;
  layer->push_back(std::make_shared<Block>(inplanes, planes, stride, ds, gen));
  inplanes = planes * Block::kExpansion;
  for (int i = 1; i < blocks; ++i) layer->push_back(std::make_shared<Block>(inplanes, planes, 1, false, gen));
  return layer;
}

}  // namespace

ResNet::ResNet(const ResNetOptions& opt) : opt_(opt) {
  SELFSUP_CHECK(opt.depth == 18 || opt.depth == 34 || opt.depth == 50, "ResNet: depth must be 18, 34 or 50, got ",
                opt.depth);
  SELFSUP_CHECK(opt.in_channels >= 1, "ResNet: in_channels must be positive, got ", opt.in_channels);
  SELFSUP_CHECK(opt.width >= 1, "ResNet: width must be positive, got ", opt.width);
  SELFSUP_CHECK(opt.num_classes >= 0, "ResNet: num_classes must be >= 0 (0 = feature extractor), got ",
                opt.num_classes);
  Generator gen(opt.seed);
  const int64_t w = opt.width;
  if (opt.stem == Stem::cifar) {
    conv1 = register_module("conv1", conv(opt.in_channels, w, 3, 1, gen));
  } else {
    conv1 = register_module("conv1", std::make_shared<Conv2d>(opt.in_channels, w, 7, 2, 3, false, gen));
  }
  bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(w));
  if (opt.stem == Stem::cifar)
    maxpool = register_module("maxpool", std::make_shared<nn::Identity>());
  else
    maxpool = register_module("maxpool", std::make_shared<nn::MaxPool2d>(3, 2, 1));

  static const int kBlocks[3][4] = {{2, 2, 2, 2}, {3, 4, 6, 3}, {3, 4, 6, 3}};
  const int* blocks = kBlocks[opt.depth == 18 ? 0 : opt.depth == 34 ? 1 : 2];
  int64_t inplanes = w;
  auto build = [&](int64_t planes, int n, int64_t stride) {
    return opt.depth == 50 ? make_layer<Bottleneck>(inplanes, planes, n, stride, gen)
                           : make_layer<BasicBlock>(inplanes, planes, n, stride, gen);
  };
  layer1 = register_module("layer1", build(w, blocks[0], 1));
  layer2 = register_module("layer2", build(2 * w, blocks[1], 2));
  layer3 = register_module("layer3", build(4 * w, blocks[2], 2));
  layer4 = register_module("layer4", build(8 * w, blocks[3], 2));
  feature_dim_ = inplanes;
  if (opt.num_classes > 0) fc = register_module("fc", std::make_shared<nn::Linear>(feature_dim_, opt.num_classes, true, gen));

  // torchvision re-initialises every conv with Kaiming normal (fan_out, relu) and every BN to (1, 0); the
  // BN defaults already are (1, 0). fc keeps nn.Linear's default.
  NoGradGuard no_grad;
  for (auto& [name, m] : named_modules()) {
    if (auto* c = dynamic_cast<Conv2d*>(m)) c->weight.copy_(nn::init::kaiming_normal_fan_out_relu(c->weight.sizes(),
                                                                                                   c->weight.dtype(), gen));
  }
  if (opt.zero_init_residual) {
    for (auto& [name, m] : named_modules()) {
      if (auto* b = dynamic_cast<BasicBlock*>(m)) b->last_bn().weight.zero_();
      if (auto* b = dynamic_cast<Bottleneck*>(m)) b->last_bn().weight.zero_();
    }
  }
}

Tensor ResNet::forward_features(const Tensor& x) {
  return adaptive_avg_pool2d(forward_map(x), {1, 1}).flatten(1);  // (N, feature_dim)
}

Tensor ResNet::forward_map(const Tensor& x) {
  SELFSUP_CHECK(x.dim() == 4 && x.size(1) == opt_.in_channels, "ResNet: expected input (N, ", opt_.in_channels,
                ", H, W), got ", shape_str(x.sizes()));
  Tensor y = bn1->forward_add_relu(conv1->forward(x), Tensor());  // (N, w, H', W'), H' = H (cifar) or H/2
  y = maxpool->forward(y);                                          // imagenet: (N, w, H/4, W/4)
  y = layer1->forward(y);
  y = layer2->forward(y);
  y = layer3->forward(y);
  return layer4->forward(y);                          // (N, feature_dim, h, w)
}

Tensor ResNet::forward(const Tensor& x) {
  Tensor f = forward_features(x);
  return fc ? fc->forward(f) : f;
}

std::shared_ptr<ResNet> resnet18(ResNetOptions opt) {
  opt.depth = 18;
  return std::make_shared<ResNet>(opt);
}
std::shared_ptr<ResNet> resnet34(ResNetOptions opt) {
  opt.depth = 34;
  return std::make_shared<ResNet>(opt);
}
std::shared_ptr<ResNet> resnet50(ResNetOptions opt) {
  opt.depth = 50;
  return std::make_shared<ResNet>(opt);
}

}  // namespace selfsup::models
