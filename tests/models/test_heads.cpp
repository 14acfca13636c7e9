// SSL heads (SimCLR projection, MoCo v2 MLP, linear classifier): structure, keys, initialisation, and
// forward/backward in eval and train mode against PyTorch (heads.ssfx from make_model_fixtures.py).
#include <doctest/doctest.h>

#include <cmath>

#include "models/heads.h"
#include "tests/models/model_test_util.h"

using namespace selfsup;
using namespace selfsup::testing;

namespace {
std::vector<std::string> keys(const nn::Module& m) {
  std::vector<std::string> out;
  for (auto& [k, _] : m.state_dict()) out.push_back(k);
  return out;
}
}  // namespace

TEST_CASE("head keys are nn.Sequential's") {
  CHECK(keys(*models::simclr_projection_head(12, 10, 6)) ==
        std::vector<std::string>{"0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                                 "1.num_batches_tracked", "3.weight", "3.bias"});
  CHECK(keys(*models::moco_v2_head(12, 12, 6)) == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  CHECK(keys(*models::linear_classifier(12, 5)) == std::vector<std::string>{"weight", "bias"});
}

TEST_CASE("heads match PyTorch in eval and train mode, float64 and float32") {
  const auto fx = load_fixture("heads.ssfx");
  Generator gen(1);
  auto run = [&](const std::string& tag, auto make) {
    auto m64 = make();
    check_model_case(*m64, fx, tag, {4, 12}, DType::f64, 1e-10);
    auto m32 = make();
    check_model_case(*m32, fx, tag, {4, 12}, DType::f32, 1e-4);
  };
  SUBCASE("simclr") { run("simclr", [&] { return models::simclr_projection_head(12, 10, 6, gen); }); }
  SUBCASE("moco v2") { run("moco", [&] { return models::moco_v2_head(12, 12, 6, gen); }); }
  SUBCASE("linear") { run("linear", [&] { return models::linear_classifier(12, 5, gen); }); }
}

TEST_CASE("linear classifier init: weight N(0, 0.01^2), bias 0") {
  Generator gen(5);
  auto fc = models::linear_classifier(256, 100, gen);
  std::vector<double> w = fc->weight.to_vector();
  double s2 = 0;
  for (double e : w) s2 += e * e;
  CHECK(std::sqrt(s2 / static_cast<double>(w.size())) == doctest::Approx(0.01).epsilon(0.03));
  CHECK(amax(abs(fc->bias)).item() == 0.0);
}
