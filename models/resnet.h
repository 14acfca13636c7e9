// ResNet-18/34/50 with torchvision's structure and parameter names, so a state_dict moves between
// selfsup and `torchvision.models.resnet18()` unchanged (given the same stem and input channels).
//
// Options beyond torchvision:
// - in_channels: 1 (Fashion-MNIST/MNIST) or 3; only conv1.weight's shape changes.
// - stem: imagenet = conv1 7x7/2 pad 3 + maxpool 3x3/2 pad 1 (torchvision); cifar = conv1 3x3/1 pad 1 and
//   no maxpool (SimCLR's CIFAR variant), for 28x28/32x32 inputs. The CIFAR stem keeps the name `maxpool`
//   for an Identity, so the keys stay torchvision's.
// - width: channels of layer1's planes; layers 1-4 have width, 2*width, 4*width, 8*width planes (times
//   4 output channels per plane for Bottleneck). 64 is torchvision; 16 gives 16/32/64/128.
// - num_classes > 0 adds `fc`; 0 makes a feature extractor (no fc; output (N, feature_dim()) after the
//   global average pool and flatten).
#pragma once
#include <memory>
#include <string>

#include "engine/nn/layers.h"

namespace selfsup::models {

enum class Stem { imagenet, cifar };

struct ResNetOptions {
  int depth = 18;  // 18, 34 (BasicBlock) or 50 (Bottleneck)
  int64_t in_channels = 3;
  Stem stem = Stem::imagenet;
  int64_t width = 64;
  int64_t num_classes = 1000;  // 0 = feature extractor
  // Zero-init the last BN gamma of each residual branch (bn2 in BasicBlock, bn3 in Bottleneck), so each
  // block starts as the identity (Goyal et al. 2017; torchvision's zero_init_residual).
  bool zero_init_residual = false;
  uint64_t seed = 0;  // initialisation draws from Generator(seed)
};

// conv3x3 - bn - relu - conv3x3 - bn (+ identity or downsample) - relu. expansion 1.
// x (N, inplanes, H, W) -> (N, planes, H/stride, W/stride).
class BasicBlock : public nn::Module {
 public:
  static constexpr int64_t kExpansion = 1;
  BasicBlock(int64_t inplanes, int64_t planes, int64_t stride, bool downsample, Generator& gen);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "BasicBlock"; }
  nn::BatchNorm2d& last_bn() { return *bn2; }

  std::shared_ptr<nn::Conv2d> conv1, conv2;
  std::shared_ptr<nn::BatchNorm2d> bn1, bn2;
  std::shared_ptr<nn::Sequential> downsample;  // conv1x1(stride) + bn, or null
};

// conv1x1 - bn - relu - conv3x3(stride) - bn - relu - conv1x1 - bn (+ identity or downsample) - relu, the
// stride on the 3x3 (torchvision's "ResNet v1.5"). x (N, inplanes, H, W) -> (N, 4*planes, H/s, W/s).
class Bottleneck : public nn::Module {
 public:
  static constexpr int64_t kExpansion = 4;
  Bottleneck(int64_t inplanes, int64_t planes, int64_t stride, bool downsample, Generator& gen);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Bottleneck"; }
  nn::BatchNorm2d& last_bn() { return *bn3; }

  std::shared_ptr<nn::Conv2d> conv1, conv2, conv3;
  std::shared_ptr<nn::BatchNorm2d> bn1, bn2, bn3;
  std::shared_ptr<nn::Sequential> downsample;
};

class ResNet : public nn::Module {
 public:
  explicit ResNet(const ResNetOptions& opt);
  // x (N, in_channels, H, W) -> logits (N, num_classes), or features (N, feature_dim()) without fc.
  Tensor forward(const Tensor& x) override;
  // Encoder output without fc: (N, feature_dim()).
  Tensor forward_features(const Tensor& x);
  // The last feature map before the global pool: (N, feature_dim(), h, w), h = H/8 (cifar) or H/32.
  Tensor forward_map(const Tensor& x);
  std::string type_name() const override { return "ResNet"; }
  // Channels after layer4 and the global pool: 8 * width * expansion (512 / 2048 at width 64).
  int64_t feature_dim() const { return feature_dim_; }
  const ResNetOptions& options() const { return opt_; }

  std::shared_ptr<nn::Conv2d> conv1;
  std::shared_ptr<nn::BatchNorm2d> bn1;
  std::shared_ptr<nn::Module> maxpool;  // MaxPool2d (imagenet stem) or Identity (cifar stem)
  std::shared_ptr<nn::Sequential> layer1, layer2, layer3, layer4;
  std::shared_ptr<nn::Linear> fc;  // null for a feature extractor

 private:
  ResNetOptions opt_;
  int64_t feature_dim_ = 0;
};

std::shared_ptr<ResNet> resnet18(ResNetOptions opt = {});
std::shared_ptr<ResNet> resnet34(ResNetOptions opt = {});
std::shared_ptr<ResNet> resnet50(ResNetOptions opt = {});

}  // namespace selfsup::models
