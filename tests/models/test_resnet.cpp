// ResNet builders: torchvision's state_dict keys and shapes at full width (resnet_keys.txt), and forward,
// backward and running statistics against torchvision at small width (resnet.ssfx), both written by
// tests/fixtures/make_model_fixtures.py. Also initialisation, options and feature extraction.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "kernels/kernel_api.h"
#include "models/resnet.h"
#include "tests/models/model_test_util.h"

using namespace selfsup;
using namespace selfsup::testing;
using models::ResNetOptions;
using models::Stem;

namespace {

// resnet_keys.txt: "resnetNN key ndim dims..." lines in torchvision's state_dict order.
std::vector<std::pair<std::string, Shape>> torchvision_keys(const std::string& model) {
  std::ifstream in(std::string(SELFSUP_FIXTURE_DIR) + "/resnet_keys.txt");
  REQUIRE_MESSAGE(in.good(), "cannot open resnet_keys.txt");
  std::vector<std::pair<std::string, Shape>> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    std::string m, key;
    int ndim = 0;
    ls >> m >> key >> ndim;
    if (m != model) continue;
    Shape s(static_cast<size_t>(ndim));
    for (auto& d : s) ls >> d;
    out.emplace_back(key, s);
  }
  return out;
}

void check_keys(const nn::Module& m, const std::string& model) {
  auto want = torchvision_keys(model);
  auto got = m.state_dict();
  REQUIRE(!want.empty());
  CHECK(got.size() == want.size());
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    CHECK_MESSAGE(got[i].first == want[i].first, "key " << i);
    CHECK_MESSAGE(got[i].second.sizes() == want[i].second,
                  got[i].first << ": " << shape_str(got[i].second.sizes()) << " vs " << shape_str(want[i].second));
  }
}

ResNetOptions options_from_attrs(const FixtureTensor& a) {
  ResNetOptions o;
  o.depth = static_cast<int>(a.data[0]);
  o.in_channels = static_cast<int64_t>(a.data[1]);
  o.stem = a.data[2] == 1 ? Stem::cifar : Stem::imagenet;
  o.width = static_cast<int64_t>(a.data[3]);
  o.num_classes = static_cast<int64_t>(a.data[4]);
  return o;
}

void run_resnet_case(const std::string& tag) {
  static const auto fx = load_fixture("resnet.ssfx");
  const FixtureTensor& a = get(fx, tag + ".attrs");
  const Shape x_shape{static_cast<int64_t>(a.data[5]), static_cast<int64_t>(a.data[1]),
                      static_cast<int64_t>(a.data[6]), static_cast<int64_t>(a.data[7])};
  // float64 is the reference precision: PyTorch and we differ only by summation order (measured < 1e-11).
  models::ResNet m64(options_from_attrs(a));
  check_model_case(m64, fx, tag, x_shape, DType::f64, 1e-10);
  // float32: training-mode BN over tiny batches amplifies rounding, hence the loose bound.
  models::ResNet m32(options_from_attrs(a));
  check_model_case(m32, fx, tag, x_shape, DType::f32, 2e-3);
}

}  // namespace

TEST_CASE("state_dict keys and shapes equal torchvision's resnet18/34/50") {
  check_keys(*models::resnet18(), "resnet18");
  check_keys(*models::resnet34(), "resnet34");
  check_keys(*models::resnet50(), "resnet50");
}

TEST_CASE("named_parameters is state_dict without the buffers, in the same order") {
  auto m = models::resnet18({.width = 8, .num_classes = 10});
  auto params = m->named_parameters();
  std::vector<std::string> from_state;
  for (auto& [k, t] : m->state_dict())
    if (t.requires_grad()) from_state.push_back(k);
  REQUIRE(params.size() == from_state.size());
  for (size_t i = 0; i < params.size(); ++i) CHECK(params[i].first == from_state[i]);
  CHECK(params.front().first == "conv1.weight");
  CHECK(params.back().first == "fc.bias");
}

TEST_CASE("ResNet-18 forward/backward match torchvision (float64 tight, float32 loose)") {
  SUBCASE("cifar stem, 1 channel, 28x28") { run_resnet_case("r18_cifar_c1"); }
  SUBCASE("cifar stem, 3 channels, 32x32") { run_resnet_case("r18_cifar_c3"); }
  SUBCASE("imagenet stem, 3 channels, 64x64") { run_resnet_case("r18_imagenet_c3"); }
  SUBCASE("feature extractor (no fc)") { run_resnet_case("r18_features_c3"); }
}

TEST_CASE("ResNet-34 and ResNet-50 forward/backward match torchvision") {
  SUBCASE("resnet34 cifar") { run_resnet_case("r34_cifar_c3"); }
  SUBCASE("resnet50 cifar") { run_resnet_case("r50_cifar_c3"); }
  SUBCASE("resnet50 imagenet") { run_resnet_case("r50_imagenet_c3"); }
}

TEST_CASE("options: stems, input channels, width, feature extractor") {
  auto c1 = models::resnet18({.in_channels = 1, .stem = Stem::cifar, .width = 16, .num_classes = 10});
  CHECK(c1->conv1->weight.sizes() == Shape{16, 1, 3, 3});
  CHECK(c1->layer1->named_children().size() == 2);
  // width 16: layers have 16/32/64/128 channels.
  CHECK(nn::find_tensor(c1->state_dict(), "layer2.0.conv1.weight").sizes() == Shape{32, 16, 3, 3});
  CHECK(nn::find_tensor(c1->state_dict(), "layer4.1.bn2.running_mean").sizes() == Shape{128});
  CHECK(c1->feature_dim() == 128);
  CHECK(c1->forward(Tensor::zeros({2, 1, 28, 28})).sizes() == Shape{2, 10});
  // CIFAR stem keeps the resolution through the stem: layer4 of a 28x28 input is 4x4 (28 -> 14 -> 7 -> 4).

  auto im = models::resnet50({.width = 8, .num_classes = 0});
  CHECK(im->conv1->weight.sizes() == Shape{8, 3, 7, 7});
  CHECK(im->feature_dim() == 8 * 8 * 4);
  CHECK(im->fc == nullptr);
  for (auto& [k, t] : im->state_dict()) CHECK_MESSAGE(k.rfind("fc.", 0) != 0, k);
  CHECK(im->forward(Tensor::zeros({2, 3, 32, 32})).sizes() == Shape{2, 256});

  CHECK_THROWS_WITH_AS(models::ResNet({.depth = 101}), doctest::Contains("depth must be 18, 34 or 50"), Error);
  CHECK_THROWS_WITH_AS(c1->forward(Tensor::zeros({2, 3, 28, 28})), doctest::Contains("expected input (N, 1, H, W)"),
                       Error);
}

TEST_CASE("initialisation follows torchvision: Kaiming normal (fan_out) convs, BN (1, 0), default Linear") {
  auto m = models::resnet18({.width = 32, .num_classes = 10, .seed = 3});
  for (auto& [k, t] : m->state_dict()) {
    std::vector<double> v = t.to_vector();
    if (t.dim() == 4) {  // conv: N(0, 2 / fan_out), fan_out = out * kh * kw
      const double want = std::sqrt(2.0 / static_cast<double>(t.size(0) * t.size(2) * t.size(3)));
      double s2 = 0, s1 = 0;
      for (double e : v) s1 += e, s2 += e * e;
      const double n = static_cast<double>(v.size()), sd = std::sqrt(s2 / n);
      CHECK_MESSAGE(std::abs(sd / want - 1) < 6.0 / std::sqrt(2 * n) + 0.01, k << " std " << sd << " want " << want);
      CHECK_MESSAGE(std::abs(s1 / n) < 6 * want / std::sqrt(n), k << " mean " << s1 / n);
    } else if (k.find("bn") != std::string::npos || k.find("downsample.1") != std::string::npos) {
      const bool is_one = k.ends_with(".weight") || k.ends_with("running_var");
      for (double e : v) CHECK_MESSAGE(e == (is_one ? 1.0 : 0.0), k);
    } else if (k.rfind("fc.", 0) == 0) {  // U(-1/sqrt(in), 1/sqrt(in))
      const double bound = 1.0 / std::sqrt(static_cast<double>(m->feature_dim()));
      double mx = 0;
      for (double e : v) mx = std::max(mx, std::abs(e));
      CHECK_MESSAGE(mx <= bound, k);
      CHECK_MESSAGE(mx > 0.8 * bound, k);
    }
  }
  // Same seed, same weights; another seed, other weights.
  auto same = models::resnet18({.width = 32, .num_classes = 10, .seed = 3});
  auto other = models::resnet18({.width = 32, .num_classes = 10, .seed = 4});
  CHECK(same->layer3->named_children()[0].second->named_parameters()[0].second.to_vector() ==
        m->layer3->named_children()[0].second->named_parameters()[0].second.to_vector());
  CHECK(other->conv1->weight.to_vector() != m->conv1->weight.to_vector());
}

TEST_CASE("zero_init_residual zeroes the last BN gamma of every block, only those") {
  auto basic = models::resnet18({.width = 8, .zero_init_residual = true});
  auto bottleneck = models::resnet50({.width = 8, .zero_init_residual = true});
  for (auto* m : {static_cast<nn::Module*>(basic.get()), static_cast<nn::Module*>(bottleneck.get())}) {
    const std::string last = m == basic.get() ? ".bn2.weight" : ".bn3.weight";
    int zeroed = 0;
    for (auto& [k, t] : m->named_parameters()) {
      if (t.dim() != 1 || k.rfind("layer", 0) != 0 || !k.ends_with(".weight")) continue;
      const double mx = amax(abs(t)).item();
      if (k.ends_with(last)) {
        CHECK_MESSAGE(mx == 0.0, k);
        ++zeroed;
      } else {
        CHECK_MESSAGE(mx == 1.0, k);
      }
    }
    CHECK(zeroed == (m == basic.get() ? 8 : 16));
  }
  // Each block then starts as relu(identity or downsample): a block without downsample passes relu(x).
  models::BasicBlock& b = *std::dynamic_pointer_cast<models::BasicBlock>(basic->layer1->named_children()[1].second);
  b.eval();
  Tensor x = Tensor::randn({2, 8, 5, 5});
  CHECK(b.forward(x).to_vector() == relu(x).to_vector());
}

TEST_CASE("a width-8 ResNet-18 trains the same with channels-last convolutions as with NCHW ones") {
  // The CPU's channels-last path (docs/cpu-dense-kernels.md) against the NCHW one, whole network, training
  // mode: the output, every parameter's gradient and the BN running statistics. float32; training-mode BN
  // over a batch of 8 amplifies the different summation order's rounding (measured: 3.2e-6 scaled).
  Generator g(31);
  const Tensor x = Tensor::randn({8, 1, 28, 28}, DType::f32, &g), probe = Tensor::randn({8, 10}, DType::f32, &g);
  auto run = [&](bool channels_last) {
    selfsup::kernels::set_cpu_conv_channels_last(channels_last);
    auto m = models::resnet18({.in_channels = 1, .stem = models::Stem::cifar, .width = 8, .num_classes = 10});
    Tensor out = m->forward(x);
    sum(mul(out, probe)).backward();
    std::vector<Tensor> got{out.detach()};
    for (auto& [name, p] : m->named_parameters()) got.push_back(p.grad());
    for (auto& [name, t] : m->state_dict())
      if (name.find("running_mean") != std::string::npos) got.push_back(t.detach().clone());
    selfsup::kernels::set_cpu_conv_channels_last(true);
    return got;
  };
  const auto nchw = run(false), cl = run(true);
  REQUIRE(nchw.size() == cl.size());
  double worst = 0;
  for (size_t i = 0; i < cl.size(); ++i) {
    const auto a = cl[i].to_vector(), b = nchw[i].to_vector();
    double diff = 0, scale = 0;
    for (size_t j = 0; j < a.size(); ++j) {
      diff = std::max(diff, std::abs(a[j] - b[j]));
      scale = std::max(scale, std::abs(b[j]));
    }
    CAPTURE(i);
    CHECK(diff <= 1e-4 * std::max(scale, 1e-3));  // measured 3.2e-6
    worst = std::max(worst, diff / std::max(scale, 1e-3));
  }
  MESSAGE("channels-last vs NCHW, worst scaled difference over output, gradients, running means: ", worst);
}
