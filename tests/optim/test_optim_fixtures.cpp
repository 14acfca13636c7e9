// SGD, AdamW (against torch.optim) and LARS (against the reference formula in make_optim_fixtures.py):
// parameters after each of 5 steps on the fixture's fixed gradients, float64, within 1e-12 relative.
// The hyperparameters of each case mirror tests/fixtures/make_optim_fixtures.py.
#include <doctest/doctest.h>

#include <functional>
#include <memory>

#include "engine/optim/adamw.h"
#include "engine/optim/lars.h"
#include "engine/optim/schedule.h"
#include "engine/optim/sgd.h"
#include "tests/support/engine_gradcheck.h"
#include "tests/support/fixture.h"

using namespace selfsup;
using namespace selfsup::testing;

namespace {

using Fixture = std::map<std::string, FixtureTensor>;
constexpr int kSteps = 5;
constexpr int kParams = 3;

const Fixture& fixture() {
  static const Fixture fx = load_fixture("optim.ssfx");
  return fx;
}

Tensor fixture_as_tensor(const std::string& name) {
  auto it = fixture().find(name);
  REQUIRE_MESSAGE(it != fixture().end(), "fixture optim.ssfx lacks ", name);
  return Tensor::from_vector(it->second.data, Shape(it->second.shape.begin(), it->second.shape.end()));
}

std::vector<Tensor> make_params() {
  std::vector<Tensor> ps;
  for (int j = 0; j < kParams; ++j) {
    Tensor p = fixture_as_tensor(str_cat("init.p", j));
    p.set_requires_grad(true);
    ps.push_back(p);
  }
  return ps;
}

void set_grads(const std::vector<Tensor>& ps, int step) {
  for (int j = 0; j < kParams; ++j) ps[j].set_grad(fixture_as_tensor(str_cat("grad.", step, ".p", j)));
}

// Runs `kSteps` steps (lr_factor, when given, sets each step's lr as a factor of the groups' initial lrs) and
// compares every parameter after every step.
void run_case(const std::string& name, Optimizer& opt, const std::vector<Tensor>& ps,
              const std::function<double(int)>& lr_factor = nullptr) {
  for (int k = 0; k < kSteps; ++k) {
    if (lr_factor) opt.set_lr_factor(lr_factor(k));
    set_grads(ps, k);
    opt.step();
    for (int j = 0; j < kParams; ++j) {
      CloseResult r = allclose(ps[j], fixture_as_tensor(str_cat(name, ".step", k, ".p", j)), 1e-13, 1e-12);
      CHECK_MESSAGE(r.ok, name, " step ", k, " p", j, ": ", r.message);
    }
  }
  CHECK(opt.steps() == kSteps);
}

// Same schedule as the script's `sched`: warmup 2 steps from 0, cosine to 0.01 at step 5 (a factor).
double sched_factor(int k) { return WarmupCosineSchedule{1.0, 2, 5, 0.01, 0.0}.value(k); }

}  // namespace

TEST_CASE("SGD matches torch.optim.SGD: plain, momentum + dampening + weight decay, Nesterov, groups") {
  {
    auto ps = make_params();
    SGD opt(ps, SgdOptions{.lr = 0.1});
    run_case("sgd_plain", opt, ps);
  }
  {
    auto ps = make_params();
    SGD opt(ps, SgdOptions{.lr = 0.05, .momentum = 0.9, .dampening = 0.2, .weight_decay = 1e-2});
    run_case("sgd_momentum_wd", opt, ps);
  }
  {
    auto ps = make_params();
    SGD opt(ps, SgdOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 5e-3, .nesterov = true});
    run_case("sgd_nesterov", opt, ps);
  }
  {
    auto ps = make_params();
    SGD opt({ParamGroup{{ps[0], ps[1]}, 0.1, 1e-3}, ParamGroup{{ps[2]}, 0.02, 0.0}},
            SgdOptions{.lr = 0.5, .momentum = 0.9});
    run_case("sgd_groups", opt, ps);
  }
  {
    auto ps = make_params();
    SGD opt(ps, SgdOptions{.lr = 0.2, .momentum = 0.9, .weight_decay = 1e-3});
    run_case("sgd_sched", opt, ps, sched_factor);
  }
}

TEST_CASE("AdamW matches torch.optim.AdamW: defaults, groups with their own lr and weight decay") {
  {
    auto ps = make_params();
    AdamW opt(ps, AdamWOptions{.lr = 1e-2, .weight_decay = 0.05});
    run_case("adamw", opt, ps);
  }
  {
    auto ps = make_params();
    AdamW opt({ParamGroup{{ps[0]}, 1e-2, 0.1}, ParamGroup{{ps[1], ps[2]}, 3e-3, 0.0}},
              AdamWOptions{.lr = 1.0, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6, .weight_decay = 0.3});
    run_case("adamw_groups", opt, ps);
  }
}

TEST_CASE("LARS matches the SimCLR reference formula: 1-D params excluded, Nesterov, eps, excluded group") {
  {
    auto ps = make_params();
    LARS opt(ps, LarsOptions{.lr = 2.0, .momentum = 0.9, .weight_decay = 1e-2, .eta = 0.001});
    CHECK(!opt.excluded(0, 0));
    CHECK(opt.excluded(0, 1));  // the bias
    run_case("lars", opt, ps);
  }
  {
    auto ps = make_params();
    ParamGroup excluded{{ps[2]}, 0.75};
    excluded.exclude_from_adaptation = true;
    LARS opt({ParamGroup{{ps[0], ps[1]}}, excluded},
             LarsOptions{.lr = 1.5, .momentum = 0.8, .weight_decay = 1e-3, .eta = 0.02, .eps = 1e-3, .nesterov = true});
    CHECK(opt.excluded(1, 0));
    run_case("lars_nesterov_groups", opt, ps);
  }
  {
    auto ps = make_params();
    LARS opt(ps, LarsOptions{.lr = 2.0, .momentum = 0.9, .weight_decay = 1e-2, .eta = 0.001});
    run_case("lars_sched", opt, ps, sched_factor);
  }
}

TEST_CASE("schedules match torch.optim.lr_scheduler (cosine, StepLR, MultiStepLR, LinearLR + cosine)") {
  auto check_values = [](const std::string& key, const std::function<double(int64_t)>& f) {
    std::vector<double> expected = fixture_as_tensor(key).to_vector(), actual;
    for (size_t s = 0; s < expected.size(); ++s) actual.push_back(f(static_cast<int64_t>(s)));
    CloseResult r = allclose(actual, expected, 1e-15, 1e-12);
    CHECK_MESSAGE(r.ok, key, ": ", r.message);
  };
  WarmupCosineSchedule cosine{.base_lr = 0.4, .warmup_steps = 0, .total_steps = 20, .final_lr = 0.004};
  check_values("sched.cosine", [&](int64_t s) { return cosine.value(s); });
  StepDecaySchedule step{.base_lr = 0.4, .gamma = 0.5, .step_size = 3};
  check_values("sched.step", [&](int64_t s) { return step.value(s); });
  StepDecaySchedule multi{.base_lr = 0.4, .gamma = 0.1, .milestones = {2, 5, 9}};
  check_values("sched.multistep", [&](int64_t s) { return multi.value(s); });
  WarmupCosineSchedule warm{.base_lr = 0.4, .warmup_steps = 5, .total_steps = 20, .final_lr = 0.004,
                            .warmup_start_lr = 0.04};
  check_values("sched.warmup_cosine", [&](int64_t s) { return warm.value(s); });
  CHECK(warm.value(0) == doctest::Approx(0.04));
  CHECK(warm.value(5) == doctest::Approx(0.4));
  CHECK(warm.value(20) == doctest::Approx(0.004));
  CHECK(warm.value(1000) == doctest::Approx(0.004));  // held at the final lr
  CHECK(warm.factor(5) == doctest::Approx(1.0));
  CHECK_THROWS_WITH_AS(warm.value(-1), doctest::Contains("negative step"), Error);
  WarmupCosineSchedule bad{.warmup_steps = 10, .total_steps = 10};
  CHECK_THROWS_WITH_AS(bad.value(0), doctest::Contains("warmup_steps (10) < total_steps (10)"), Error);
}
