// load_encoder_from_weights on a torchvision-layout file that carries a classifier (ssl/trainer/encoder_io.h:
// "an `fc.*` classifier is ignored"): every encoder tensor is taken from the file unchanged, fc.* is
// dropped, and any other key the encoder lacks is still an error naming it.
#include <doctest/doctest.h>

#include "engine/autograd/grad_mode.h"
#include "engine/io/safetensors.h"
#include "models/resnet.h"
#include "ssl/trainer/encoder_io.h"
#include "tests/io/io_test_util.h"

using namespace selfsup;
using namespace selfsup::testing;

namespace {

// A ResNet-18 with torchvision's names and a 10-class fc (fc.weight (10, 32), fc.bias (10)), width 4,
// CIFAR stem, 1 input channel; one training-mode forward gives the batch-norm running statistics values
// other than their 0/1 initialisation, so a loader that skipped buffers would be caught.
std::shared_ptr<models::ResNet> classifier() {
  models::ResNetOptions o;
  o.depth = 18;
  o.in_channels = 1;
  o.stem = models::Stem::cifar;
  o.width = 4;
  o.num_classes = 10;
  o.seed = 11;
  auto net = std::make_shared<models::ResNet>(o);
  Generator g(12, 0);
  NoGradGuard ng;
  net->forward(Tensor::randn({4, 1, 12, 12}, DType::f32, &g));
  return net;
}

ssl::TrainConfig arch() {
  ssl::TrainConfig c;
  c.arch = "resnet18";
  c.width = 4;
  c.stem = "cifar";
  c.in_channels = 1;
  c.image_size = 12;
  return c;
}

TensorMap as_map(const nn::NamedTensors& state) { return TensorMap(state.begin(), state.end()); }

}  // namespace

TEST_CASE("load_encoder_from_weights: a torchvision file with fc.* loads the encoder and ignores fc") {
  TempDir dir;
  auto net = classifier();
  const TensorMap file_tensors = as_map(net->state_dict());
  REQUIRE(file_tensors.count("fc.weight"));
  REQUIRE(file_tensors.count("fc.bias"));
  const std::string path = dir.file("resnet18_with_fc.safetensors");
  save_safetensors(path, file_tensors);

  ssl::LoadedEncoder le = ssl::load_encoder_from_weights(path, arch());
  const TensorMap loaded = as_map(le.encoder->state_dict());
  // Every tensor of the file except fc.* is in the encoder, bit for bit, and the encoder has nothing else.
  size_t encoder_keys = 0;
  for (const auto& [k, t] : file_tensors) {
    CAPTURE(k);
    if (k.rfind("fc.", 0) == 0) {
      CHECK(loaded.count(k) == 0);
      continue;
    }
    ++encoder_keys;
    REQUIRE(loaded.count(k) == 1);
    CHECK(loaded.at(k).sizes() == t.sizes());
    CHECK(loaded.at(k).to_vector() == t.to_vector());
  }
  CHECK(loaded.size() == encoder_keys);
  // The features the loaded encoder computes are the classifier's own (eval mode, running statistics).
  net->eval();
  le.encoder->eval();
  Generator g(13, 0);
  Tensor x = Tensor::randn({3, 1, 12, 12}, DType::f32, &g);
  NoGradGuard ng;
  CHECK(le.encoder->forward(x).to_vector() == net->forward_features(x).to_vector());
}

TEST_CASE("load_encoder_from_weights: a key other than fc.* that the encoder lacks is an error naming it") {
  TempDir dir;
  TensorMap file_tensors = as_map(classifier()->state_dict());
  file_tensors["fc_extra.weight"] = Tensor::zeros({2});  // not under "fc.": not the classifier
  const std::string path = dir.file("extra.safetensors");
  save_safetensors(path, file_tensors);
  CHECK_THROWS_WITH_AS(ssl::load_encoder_from_weights(path, arch()),
                       doctest::Contains("unexpected key(s) in state: 'fc_extra.weight' [2]"), Error);
}
