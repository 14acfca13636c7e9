// Module mechanics: dotted names in registration order, state_dict (parameters then buffers per module),
// strict and non-strict load_state_dict with errors naming the key and both shapes, train/eval and BN,
// num_batches_tracked, zero_grad, dtype and device moves, Sequential.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/autograd/grad_mode.h"
#include "engine/core/cuda_context.h"
#include "engine/nn/init.h"
#include "engine/nn/layers.h"
#include "tests/support/engine_gradcheck.h"
#include "tests/support/error_of.h"

using namespace selfsup;
using namespace selfsup::nn;

namespace {

// A two-level module: conv -> bn -> relu -> [linear inside a Sequential], PyTorch-style names.
class Tiny : public Module {
 public:
  Tiny() {
    Generator gen(7);
    conv = register_module("conv", std::make_shared<Conv2d>(2, 3, 3, 1, 1, true, gen));
    bn = register_module("bn", std::make_shared<BatchNorm2d>(3));
    head = register_module("head", std::make_shared<Sequential>());
    head->push_back(std::make_shared<Flatten>());
    head->push_back(std::make_shared<Linear>(3 * 4 * 4, 5, true, gen));
    register_parameter("scale", &scale, Tensor::ones({1}));
    register_buffer("step", &step, Tensor::zeros({}, DType::i64));
  }
  Tensor forward(const Tensor& x) override { return mul(head->forward(relu(bn->forward(conv->forward(x)))), scale); }
  std::string type_name() const override { return "Tiny"; }
  std::shared_ptr<Conv2d> conv;
  std::shared_ptr<BatchNorm2d> bn;
  std::shared_ptr<Sequential> head;
  Tensor scale, step;
};

std::vector<std::string> names(const NamedTensors& l) {
  std::vector<std::string> out;
  for (auto& [n, _] : l) out.push_back(n);
  return out;
}

bool allclose_ok(const Tensor& a, const Tensor& b) { return testing::allclose(a, b, 1e-6, 1e-5).ok; }

using selfsup::test::error_of;

}  // namespace

TEST_CASE("names are dotted and in PyTorch's order") {
  Tiny m;
  // Own parameters first, then each child's (PyTorch's named_parameters).
  CHECK(names(m.named_parameters()) ==
        std::vector<std::string>{"scale", "conv.weight", "conv.bias", "bn.weight", "bn.bias", "head.1.weight",
                                 "head.1.bias"});
  CHECK(names(m.named_buffers()) ==
        std::vector<std::string>{"step", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"});
  // state_dict: per module, parameters then buffers, then children.
  CHECK(names(m.state_dict()) ==
        std::vector<std::string>{"scale", "step", "conv.weight", "conv.bias", "bn.weight", "bn.bias",
                                 "bn.running_mean", "bn.running_var", "bn.num_batches_tracked", "head.1.weight",
                                 "head.1.bias"});
  CHECK(m.parameters().size() == 7);
  CHECK(m.num_parameters() == 1 + 3 * 2 * 9 + 3 + 3 + 3 + 5 * 48 + 5);
  for (auto& p : m.parameters()) CHECK(p.requires_grad());
  for (auto& [n, b] : m.named_buffers()) CHECK_MESSAGE(!b.requires_grad(), n);
  CHECK(find_tensor(m.state_dict(), "bn.num_batches_tracked").dtype() == DType::i64);
  CHECK(find_tensor(m.state_dict(), "bn.num_batches_tracked").dim() == 0);
  std::vector<std::string> mods;
  for (auto& [n, _] : m.named_modules()) mods.push_back(n);
  CHECK(mods == std::vector<std::string>{"", "conv", "bn", "head", "head.0", "head.1"});
  // state_dict entries share storage with the module (as PyTorch's tensors do).
  CHECK(find_tensor(m.state_dict(), "conv.weight").is_same(m.conv->weight));
}

TEST_CASE("registration rejects duplicate and dotted names") {
  class Bad : public Module {
   public:
    explicit Bad(int which) {
      register_parameter("w", &a, Tensor::ones({1}));
      if (which == 0) register_buffer("w", &b, Tensor::ones({1}));
      if (which == 1) register_module("x.y", std::make_shared<Identity>());
      if (which == 2) register_parameter("i", &b, Tensor::zeros({1}, DType::i64));
    }
    Tensor forward(const Tensor& x) override { return x; }
    std::string type_name() const override { return "Bad"; }
    Tensor a, b;
  };
  CHECK_THROWS_WITH_AS(Bad(0), doctest::Contains("name 'w' is already registered"), Error);
  CHECK_THROWS_WITH_AS(Bad(1), doctest::Contains("contain no '.'"), Error);
  CHECK_THROWS_WITH_AS(Bad(2), doctest::Contains("floating"), Error);
}

TEST_CASE("load_state_dict copies values in place; strict errors name the key and both shapes") {
  Tiny src, dst;
  {
    NoGradGuard ng;
    for (auto& [n, t] : src.state_dict())
      if (is_floating(t.dtype())) t.copy_(Tensor::randn(t.sizes(), t.dtype()));
    src.step.fill_(42);
  }
  Tensor weight_handle = dst.conv->weight;
  dst.load_state_dict(src.state_dict());
  for (auto& [n, t] : dst.state_dict()) CHECK_MESSAGE(t.to_vector() == find_tensor(src.state_dict(), n).to_vector(), n);
  CHECK(weight_handle.is_same(dst.conv->weight));  // in place: the layer's tensor is the same object
  CHECK(dst.conv->weight.requires_grad());
  CHECK(!dst.conv->weight.is_same(src.conv->weight));

  SUBCASE("missing key") {
    NamedTensors s = src.state_dict();
    s.erase(s.begin() + 3);  // conv.bias
    std::string msg = error_of([&] { dst.load_state_dict(s); });
    CHECK(msg.find("missing key(s)") != std::string::npos);
    CHECK(msg.find("'conv.bias'") != std::string::npos);
    dst.load_state_dict(s, /*strict=*/false);  // non-strict skips it
  }
  SUBCASE("unexpected key") {
    NamedTensors s = src.state_dict();
    s.emplace_back("fc.weight", Tensor::zeros({10, 4}));
    std::string msg = error_of([&] { dst.load_state_dict(s); });
    CHECK(msg.find("unexpected key(s)") != std::string::npos);
    CHECK(msg.find("'fc.weight' [10, 4]") != std::string::npos);
    dst.load_state_dict(s, /*strict=*/false);
  }
  SUBCASE("wrong shape, strict or not") {
    NamedTensors s = src.state_dict();
    for (auto& [n, t] : s)
      if (n == "head.1.weight") t = Tensor::zeros({5, 12});
    for (bool strict : {true, false}) {
      std::string msg = error_of([&] { dst.load_state_dict(s, strict); });
      CHECK(msg.find("'head.1.weight'") != std::string::npos);
      CHECK(msg.find("checkpoint has shape [5, 12]") != std::string::npos);
      CHECK(msg.find("model has shape [5, 48]") != std::string::npos);
    }
  }
  SUBCASE("a failed load changes nothing") {
    Tiny fresh;
    std::vector<double> before = fresh.bn->weight.to_vector();
    NamedTensors s = src.state_dict();
    s.pop_back();  // head.1.bias missing
    CHECK_THROWS_AS(fresh.load_state_dict(s), Error);
    CHECK(fresh.bn->weight.to_vector() == before);
  }
  SUBCASE("dtype converts; duplicate keys are refused") {
    NamedTensors s;
    for (auto& [n, t] : src.state_dict()) s.emplace_back(n, t.to(is_floating(t.dtype()) ? DType::f64 : t.dtype()));
    dst.load_state_dict(s);
    CHECK(dst.conv->weight.dtype() == DType::f32);
    s.push_back(s.front());
    CHECK_THROWS_WITH_AS(dst.load_state_dict(s), doctest::Contains("appears twice"), Error);
  }
}

TEST_CASE("train/eval switches BN between batch and running statistics") {
  Tiny m;
  Tensor x = Tensor::randn({4, 2, 4, 4}) * 3.0 + 1.0;
  CHECK(m.is_training());
  CHECK(m.bn->is_training());
  m.eval();
  CHECK(!m.bn->is_training());
  CHECK(!m.head->named_children()[1].second->is_training());
  // Eval with fresh running stats (0, 1) is conv output / sqrt(1 + eps): no normalisation.
  Tensor c = m.conv->forward(x);
  Tensor y_eval = m.bn->forward(c);
  CHECK(allclose_ok(y_eval, div(c, std::sqrt(1 + 1e-5))));
  CHECK(find_tensor(m.state_dict(), "bn.num_batches_tracked").item() == 0);
  CHECK(m.bn->running_mean.to_vector() == std::vector<double>(3, 0.0));  // eval does not update
  m.train();
  Tensor y_train = m.bn->forward(c);
  // Training: per-channel batch mean 0 and biased variance 1.
  Tensor mu = mean(y_train, {0, 2, 3});
  Tensor v = var(y_train, {0, 2, 3}, 0);
  for (double e : mu.to_vector()) CHECK(std::abs(e) < 1e-5);
  for (double e : v.to_vector()) CHECK(e == doctest::Approx(1.0).epsilon(1e-3));
  CHECK(m.bn->num_batches_tracked.item() == 1);
  // running_mean = 0.9 * 0 + 0.1 * batch mean; running_var with the unbiased variance.
  Tensor bm = mean(c, {0, 2, 3}), bv = var(c, {0, 2, 3}, 1);
  for (int i = 0; i < 3; ++i) {
    CHECK(m.bn->running_mean.to_vector()[i] == doctest::Approx(0.1 * bm.to_vector()[i]).epsilon(1e-5));
    CHECK(m.bn->running_var.to_vector()[i] == doctest::Approx(0.9 + 0.1 * bv.to_vector()[i]).epsilon(1e-5));
  }
  m.bn->forward(c);
  CHECK(m.bn->num_batches_tracked.item() == 2);
}

TEST_CASE("BatchNorm options: momentum=None (cumulative), no running stats, no affine, 1d") {
  Tensor a = Tensor::randn({8, 3}), b = Tensor::randn({8, 3}) + 2.0;
  BatchNorm1d cum(3, {.momentum = std::nullopt});
  cum.forward(a);
  cum.forward(b);
  // Cumulative average of the two batch means.
  std::vector<double> want = mul(add(mean(a, {0}), mean(b, {0})), 0.5).to_vector(), got = cum.running_mean.to_vector();
  for (int i = 0; i < 3; ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-5));

  BatchNorm1d untracked(3, {.track_running_stats = false});
  CHECK(untracked.named_buffers().empty());
  untracked.eval();  // still normalises with batch statistics
  for (double e : mean(untracked.forward(b), {0}).to_vector()) CHECK(std::abs(e) < 1e-5);

  BatchNorm2d plain(3, {.affine = false});
  CHECK(plain.named_parameters().empty());
  CHECK(names(plain.state_dict()) == std::vector<std::string>{"running_mean", "running_var", "num_batches_tracked"});
  CHECK_THROWS_WITH_AS(plain.forward(a), doctest::Contains("BatchNorm2d(3): expected input of 4 dims"), Error);
}

TEST_CASE("zero_grad drops gradients; backward reaches every parameter") {
  Tiny m;
  Tensor x = Tensor::randn({2, 2, 4, 4});
  sum(m.forward(x)).backward();
  for (auto& [n, p] : m.named_parameters()) CHECK_MESSAGE(p.grad().defined(), n);
  m.zero_grad();
  for (auto& [n, p] : m.named_parameters()) CHECK_MESSAGE(!p.grad().defined(), n);
}

TEST_CASE("to(dtype) converts floating state, keeps int64 buffers; to(cuda) moves everything, or is a clear error") {
  Tiny m;
  std::vector<double> w = m.conv->weight.to_vector();
  m.to(DType::f64);
  for (auto& [n, t] : m.state_dict())
    CHECK_MESSAGE(t.dtype() == (n.ends_with("num_batches_tracked") || n == "step" ? DType::i64 : DType::f64), n);
  CHECK(m.conv->weight.to_vector() == w);
  CHECK(m.conv->weight.requires_grad());
  CHECK(m.conv->weight.is_leaf());
  CHECK(m.forward(Tensor::randn({2, 2, 4, 4}, DType::f64)).dtype() == DType::f64);
  m.to(Device::cpu());
  if (cuda_device_count() > 0) {
    // With a device: every parameter and buffer moves, keeps its dtype and stays a leaf that wants a
    // gradient, and the way back gives the same bits.
    const nn::NamedTensors before = m.state_dict();
    m.to(Device::cuda(0));
    for (auto& [n, t] : m.state_dict()) {
      CAPTURE(n);
      CHECK(t.device() == Device::cuda(0));
    }
    for (auto& [n, p] : m.named_parameters()) {
      CAPTURE(n);
      CHECK(p.requires_grad());
      CHECK(p.is_leaf());
    }
    m.to(Device::cpu());
    const nn::NamedTensors after = m.state_dict();
    REQUIRE(after.size() == before.size());
    for (size_t i = 0; i < after.size(); ++i) {
      CAPTURE(after[i].first);
      CHECK(after[i].second.device().is_cpu());
      CHECK(after[i].second.dtype() == before[i].second.dtype());
      CHECK(after[i].second.to_vector() == before[i].second.to_vector());
    }
  } else {
    // No usable CUDA device (or no CUDA build): moving fails naming the device, nothing moves.
    CHECK_THROWS_WITH_AS(m.to(Device::cuda(0)), doctest::Contains("device cuda:0 requested"), Error);
    CHECK(m.conv->weight.device().is_cpu());
  }
}

TEST_CASE("layers: shapes, forward equals the op, PyTorch default init bounds") {
  Generator gen(3);
  Conv2d conv(nn::Conv2dOptions{4, 6, {3, 1}, {2, 1}, {1, 0}, {1, 1}, 2, true}, gen);
  CHECK(conv.weight.sizes() == Shape{6, 2, 3, 1});
  CHECK(amax(abs(conv.weight)).item() <= 1 / std::sqrt(6.0));
  CHECK(amax(abs(conv.bias)).item() <= 1 / std::sqrt(6.0));
  Tensor x = Tensor::randn({1, 4, 5, 5});
  selfsup::Conv2dOptions o;
  o.stride = {2, 1}, o.padding = {1, 0}, o.groups = 2;
  CHECK(conv.forward(x).to_vector() == conv2d(x, conv.weight, conv.bias, o).to_vector());

  Linear lin(100, 20, true, gen);
  CHECK(lin.weight.sizes() == Shape{20, 100});
  CHECK(amax(abs(lin.weight)).item() <= 0.1);
  CHECK(amax(abs(lin.weight)).item() > 0.09);  // uses the whole range
  CHECK(amax(abs(lin.bias)).item() <= 0.1);
  CHECK_THROWS_WITH_AS(lin.forward(Tensor::zeros({2, 99})), doctest::Contains("must end in 100 features"), Error);
  Linear nobias(3, 2, false, gen);
  CHECK(names(nobias.state_dict()) == std::vector<std::string>{"weight"});

  Tensor img = Tensor::randn({2, 3, 6, 6});
  CHECK(MaxPool2d(3, 2, 1).forward(img).sizes() == Shape{2, 3, 3, 3});
  CHECK(AvgPool2d(2, 2).forward(img).to_vector() == avg_pool2d(img, Pool2dOptions{}).to_vector());
  CHECK(AdaptiveAvgPool2d({1, 1}).forward(img).sizes() == Shape{2, 3, 1, 1});
  CHECK(Flatten().forward(img).sizes() == Shape{2, 108});
  CHECK(Identity().forward(img).is_same(img));
  CHECK(ReLU().forward(img).to_vector() == relu(img).to_vector());

  // Kaiming normal (fan_out, relu): std sqrt(2 / fan_out).
  Tensor k = init::kaiming_normal_fan_out_relu({64, 32, 3, 3}, DType::f64, gen);
  double s2 = 0;
  for (double e : k.to_vector()) s2 += e * e;
  CHECK(std::sqrt(s2 / static_cast<double>(k.numel())) == doctest::Approx(std::sqrt(2.0 / (64 * 9))).epsilon(0.02));
}

TEST_CASE("Sequential names children 0, 1, ... and chains them") {
  Generator gen(1);
  Sequential s({std::make_shared<Linear>(4, 3, true, gen), std::make_shared<ReLU>(),
                std::make_shared<Linear>(3, 2, true, gen)});
  CHECK(s.size() == 3);
  CHECK(names(s.state_dict()) == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  Tensor x = Tensor::randn({5, 4});
  auto l0 = std::dynamic_pointer_cast<Linear>(s[0]), l2 = std::dynamic_pointer_cast<Linear>(s[2]);
  CHECK(s.forward(x).to_vector() == l2->forward(relu(l0->forward(x))).to_vector());
  CHECK_THROWS_WITH_AS(s[3], doctest::Contains("index 3 out of range"), Error);
}
