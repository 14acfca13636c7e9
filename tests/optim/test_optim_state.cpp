// Optimizer mechanics: state export/import (a resumed optimizer takes the identical next step), validation
// errors, zero_grad, parameters without gradients, version counters, lr factors.
#include <doctest/doctest.h>

#include <memory>

#include "engine/autograd/grad_mode.h"
#include "engine/ops/ops.h"
#include "engine/optim/adamw.h"
#include "engine/optim/lars.h"
#include "engine/optim/sgd.h"
#include "tests/support/engine_gradcheck.h"

using namespace selfsup;
using namespace selfsup::testing;

namespace {

std::vector<Tensor> random_params(uint64_t seed, DType dt = DType::f64) {
  Generator gen(seed);
  std::vector<Tensor> ps = {Tensor::randn({5, 4}, dt, &gen), Tensor::randn({4}, dt, &gen),
                            Tensor::randn({3, 2, 2}, dt, &gen)};
  for (auto& p : ps) p.set_requires_grad(true);
  return ps;
}

void random_grads(const std::vector<Tensor>& ps, uint64_t seed) {
  Generator gen(seed, 1);
  for (const auto& p : ps) p.set_grad(Tensor::randn(p.sizes(), p.dtype(), &gen));
}

std::vector<Tensor> clone_params(const std::vector<Tensor>& ps) {
  std::vector<Tensor> out;
  for (const auto& p : ps) out.push_back(p.detach().clone().set_requires_grad(true));
  return out;
}

using Factory = std::function<std::unique_ptr<Optimizer>(const std::vector<Tensor>&)>;

// Steps an optimizer 3 times, exports its state, builds a fresh optimizer over copies of the parameters,
// imports the state, and checks both take bit-identical 4th and 5th steps.
void check_round_trip(const Factory& make) {
  auto ps = random_params(1);
  auto opt = make(ps);
  for (int k = 0; k < 3; ++k) {
    random_grads(ps, 100 + k);
    opt->step();
  }
  TensorMap sd = opt->state_dict();
  auto ps2 = clone_params(ps);
  auto opt2 = make(ps2);
  opt2->load_state_dict(sd);
  CHECK(opt2->steps() == 3);
  for (int k = 3; k < 5; ++k) {
    random_grads(ps, 100 + k);
    random_grads(ps2, 100 + k);
    opt->step();
    opt2->step();
  }
  for (size_t j = 0; j < ps.size(); ++j) CHECK(ps[j].to_vector() == ps2[j].to_vector());
  // The export is a copy: stepping does not change a state_dict taken earlier.
  TensorMap sd_after = opt->state_dict();
  for (const auto& [k, t] : sd)
    if (k.rfind("state.", 0) == 0 && k.find(".step") == std::string::npos)
      CHECK_MESSAGE(t.to_vector() != sd_after.at(k).to_vector(), k);
}

}  // namespace

TEST_CASE("state round trip: export, new optimizer, import, identical next steps") {
  SUBCASE("sgd nesterov") {
    check_round_trip([](const std::vector<Tensor>& ps) {
      return std::make_unique<SGD>(ps, SgdOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-4, .nesterov = true});
    });
  }
  SUBCASE("lars with groups") {
    check_round_trip([](const std::vector<Tensor>& ps) {
      return std::make_unique<LARS>(std::vector<ParamGroup>{ParamGroup{{ps[0], ps[1]}}, ParamGroup{{ps[2]}, 0.3}},
                                    LarsOptions{.lr = 1.0, .weight_decay = 1e-3});
    });
  }
  SUBCASE("adamw") {
    check_round_trip([](const std::vector<Tensor>& ps) {
      return std::make_unique<AdamW>(ps, AdamWOptions{.lr = 1e-2});
    });
  }
}

TEST_CASE("state_dict names and contents") {
  auto ps = random_params(2);
  AdamW opt({ParamGroup{{ps[0]}}, ParamGroup{{ps[1], ps[2]}, 1e-3, 0.0}}, AdamWOptions{.lr = 1e-2});
  random_grads(ps, 7);
  ps[2].set_grad(Tensor());  // no gradient: skipped, no state
  opt.step();
  TensorMap sd = opt.state_dict();
  std::vector<std::string> keys;
  for (const auto& [k, t] : sd) keys.push_back(k);
  CHECK(keys == std::vector<std::string>{"group.0.initial_lr", "group.0.lr", "group.0.weight_decay",
                                         "group.1.initial_lr", "group.1.lr", "group.1.weight_decay",
                                         "state.0.0.exp_avg", "state.0.0.exp_avg_sq", "state.0.0.step",
                                         "state.1.0.exp_avg", "state.1.0.exp_avg_sq", "state.1.0.step", "steps"});
  CHECK(sd.at("state.0.0.step").dtype() == DType::i64);
  CHECK(sd.at("state.0.0.step").item() == 1);
  CHECK(sd.at("group.1.lr").item() == 1e-3);
  CHECK(sd.at("state.1.0.exp_avg").sizes() == Shape{4});
}

TEST_CASE("load_state_dict errors name the key and both shapes, and change nothing") {
  auto ps = random_params(3);
  SGD opt(ps, SgdOptions{.lr = 0.1, .momentum = 0.9});
  random_grads(ps, 1);
  opt.step();
  const TensorMap good = opt.state_dict();

  auto ps2 = random_params(3);
  SGD fresh(ps2, SgdOptions{.lr = 0.5, .momentum = 0.9});
  TensorMap bad = good;
  bad["state.0.0.momentum_buffer"] = Tensor::zeros({4, 5}, DType::f64);
  CHECK_THROWS_WITH_AS(fresh.load_state_dict(bad),
                       doctest::Contains("'state.0.0.momentum_buffer' has shape [4, 5] but its parameter has shape [5, 4]"),
                       Error);
  bad = good;
  bad["state.0.7.momentum_buffer"] = Tensor::zeros({1}, DType::f64);
  CHECK_THROWS_WITH_AS(fresh.load_state_dict(bad), doctest::Contains("unexpected key 'state.0.7.momentum_buffer'"),
                       Error);
  bad = good;
  bad["state.0.0.exp_avg"] = Tensor::zeros({5, 4}, DType::f64);
  CHECK_THROWS_WITH_AS(fresh.load_state_dict(bad), doctest::Contains("sgd keeps no buffer 'exp_avg'"), Error);
  bad = good;
  bad["group.3.lr"] = Tensor::scalar(0.1, DType::f64);
  CHECK_THROWS_WITH_AS(fresh.load_state_dict(bad), doctest::Contains("has 1 parameter group(s)"), Error);
  bad = good;
  bad.erase("group.0.lr");
  CHECK_THROWS_WITH_AS(fresh.load_state_dict(bad), doctest::Contains("missing key 'group.0.lr'"), Error);
  bad = good;
  bad["bogus"] = Tensor::scalar(1);
  CHECK_THROWS_WITH_AS(fresh.load_state_dict(bad), doctest::Contains("unexpected key 'bogus'"), Error);
  // Nothing was changed by the failed loads.
  CHECK(fresh.param_groups()[0].lr == 0.5);
  CHECK(fresh.steps() == 0);
  CHECK(fresh.state_dict().count("state.0.0.momentum_buffer") == 0);
  fresh.load_state_dict(good);
  CHECK(fresh.param_groups()[0].lr == 0.1);
}

TEST_CASE("float32 parameters, grad-less parameters, zero_grad, version counter, lr factor") {
  auto ps = random_params(4, DType::f32);
  SGD opt({ParamGroup{{ps[0], ps[1]}, 0.1}, ParamGroup{{ps[2]}, 0.01}}, SgdOptions{.lr = 0.1, .momentum = 0.9});
  auto before = ps[1].to_vector();
  random_grads(ps, 3);
  ps[1].set_grad(Tensor());
  const uint64_t v0 = ps[0].version();
  auto p0 = ps[0].to_vector();
  auto g0 = ps[0].grad().to_vector();
  opt.step();  // grad mode is on: the optimizer's updates still run (under NoGradGuard)
  CHECK(GradMode::enabled());
  CHECK(ps[0].version() > v0);
  CHECK(ps[1].to_vector() == before);
  auto p0_after = ps[0].to_vector();
  for (size_t i = 0; i < p0.size(); ++i) CHECK(p0_after[i] == doctest::Approx(p0[i] - 0.1 * g0[i]).epsilon(1e-6));
  CHECK(!ps[0].grad_fn());  // no history recorded

  opt.zero_grad(/*set_to_none=*/false);
  CHECK(ps[0].grad().defined());
  CHECK(sum(abs(ps[0].grad())).item() == 0);
  opt.zero_grad();
  CHECK(!ps[0].grad().defined());

  opt.set_lr_factor(0.5);
  CHECK(opt.param_groups()[0].lr == 0.05);
  CHECK(opt.param_groups()[1].lr == 0.005);
  CHECK(opt.param_groups()[1].initial_lr == 0.01);
}

TEST_CASE("optimizer argument errors") {
  auto ps = random_params(5);
  CHECK_THROWS_WITH_AS(SGD(std::vector<ParamGroup>{}, SgdOptions{}), doctest::Contains("no parameter groups"), Error);
  CHECK_THROWS_WITH_AS(SGD({ParamGroup{{ps[0]}}, ParamGroup{{ps[0]}}}, SgdOptions{}),
                       doctest::Contains("appears more than once"), Error);
  CHECK_THROWS_WITH_AS(SGD(ps, SgdOptions{.lr = 0.1, .nesterov = true}),
                       doctest::Contains("Nesterov momentum requires momentum > 0"), Error);
  CHECK_THROWS_WITH_AS(AdamW(ps, AdamWOptions{.beta2 = 1.0}), doctest::Contains("invalid beta2"), Error);
  Tensor ints = Tensor::zeros({3}, DType::i64);
  CHECK_THROWS_WITH_AS(SGD({ints}, SgdOptions{}), doctest::Contains("must be float32 or float64"), Error);
  SGD opt(ps, SgdOptions{});
  ps[0].set_grad(Tensor::zeros({4, 5}, DType::f64));
  CHECK_THROWS_WITH_AS(opt.step(), doctest::Contains("gradient shape [4, 5] differs from parameter shape [5, 4]"),
                       Error);
}
