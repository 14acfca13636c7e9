// The length of a --minutes run (ssl/trainer/run_length.h): the sizing arithmetic against hand-counted
// budgets, and the trainer's use of it: the run is sized before its first checkpoint, so a run stopped
// before the timing window closes resumes to a finite, recorded length.
#include <doctest/doctest.h>

#include <limits>

#include "engine/io/checkpoint.h"
#include "ssl/trainer/run_length.h"
#include "ssl/trainer/trainer.h"
#include "tests/support/trainer_fixture.h"

using namespace selfsup;

namespace {

ssl::RunLengthInput input(int64_t step, double remaining_s, double step_s, double monitor_s, int64_t spe) {
  ssl::RunLengthInput in;
  in.step = step;
  in.remaining_s = remaining_s;
  in.step_s = step_s;
  in.monitor_s = monitor_s;
  in.steps_per_epoch = spe;
  in.safety = 1.0;
  return in;
}

}  // namespace

TEST_CASE("steps_for_budget: steps and kNN monitors fill the budget, never more") {
  // No monitor: 10.05 s left at 0.1 s a step from step 30 -> 100 more steps.
  CHECK(ssl::steps_for_budget(input(30, 10.05, 0.1, 0.0, 1000)) == 130);
  // The final monitor of 1 s (no epoch ends inside the run): 90 more steps.
  CHECK(ssl::steps_for_budget(input(30, 10.05, 0.1, 1.0, 1000)) == 120);
  // Epochs of 100 steps, monitors of 2 s, from step 1: 320 more steps pass the epoch ends 100, 200 and 300,
  // which with the final monitor make 32 s + 4 * 2 s = 40 s; one more step would be 40.1 s.
  CHECK(ssl::steps_for_budget(input(1, 40.05, 0.1, 2.0, 100)) == 321);
  // Each candidate length obeys the budget and one more step would not.
  for (double monitor : {0.0, 0.5, 3.0}) {
    const ssl::RunLengthInput in = input(7, 60.0, 0.037, monitor, 64);
    const int64_t t = ssl::steps_for_budget(in);
    auto cost = [&](int64_t total) {
      int64_t monitors = 1;
      for (int64_t b = 64; b < total; b += 64) monitors += b >= in.step;
      return double(total - in.step) * in.step_s + double(monitors) * monitor;
    };
    CAPTURE(monitor);
    CHECK(t > in.step);
    CHECK(cost(t) <= 60.0 + 1e-9);
    CHECK(cost(t + 1) > 60.0);
  }
  // A budget already spent ends the run where it is; the safety factor scales what is available.
  CHECK(ssl::steps_for_budget(input(12, -5.0, 0.1, 0.0, 10)) == 12);
  CHECK(ssl::steps_for_budget(input(12, 0.05, 0.1, 0.0, 10)) == 12);
  ssl::RunLengthInput safe = input(0, 10.1, 0.1, 0.0, 1000);
  safe.safety = 0.5;
  CHECK(ssl::steps_for_budget(safe) == 50);
}

TEST_CASE("a --minutes run is sized before its first checkpoint and resumes to the recorded length") {
  test::require_fashion_mnist();
  ssl::TrainConfig c = test::tiny_train_config(test::fresh_run_dir("run_length", "stopped"));
  c.epochs = 0;
  c.minutes = 0.05;  // 3 s
  c.knn_every_epoch = true;
  c.knn_test_limit = 256;
  // Stopped after 2 steps: before the warm-up ends, so the stop itself sizes the run.
  ssl::TrainSummary first = ssl::train(c, {"", 2, true});
  CHECK(first.steps == 2);
  const Checkpoint ck = load_checkpoint(c.out);
  CHECK(ck.step == 2);
  const ssl::TrainConfig recorded = ssl::TrainConfig::from_json(ck.config_json, "checkpoint");
  REQUIRE(recorded.total_steps >= 2);
  REQUIRE(recorded.total_steps < 100000);  // unsized, the resume below would never end
  ssl::TrainSummary resumed = ssl::train(test::tiny_train_config("ignored"), {c.out, 0, true});
  CHECK(resumed.steps == recorded.total_steps);

  // Uninterrupted: sized once, ends exactly at the length config.json records.
  ssl::TrainConfig u = c;
  u.out = test::fresh_run_dir("run_length", "whole");
  ssl::TrainSummary whole = ssl::train(u, {"", 0, true});
  const ssl::TrainConfig written = ssl::TrainConfig::from_json(load_checkpoint(u.out).config_json, "checkpoint");
  CHECK(written.total_steps == whole.steps);
  CHECK(whole.steps > ssl::kWarmupSteps);
}
