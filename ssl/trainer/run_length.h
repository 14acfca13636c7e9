// The length of a `--minutes` run. The trainer times its first steps once, before any checkpoint exists, and
// fixes total_steps from them (the learning-rate schedule needs the length up front, and a resumed run reads it
// from the checkpoint's config, so it is never re-sized). docs/training.md, "Length of a run".
#pragma once
#include <cstdint>

namespace selfsup::ssl {

// When the trainer sizes the run: after kWarmupSteps untimed steps (plan creation, first-touch page faults
// and the loader's start make them the slowest of the run), at the first of kTimedSteps timed steps, the end of
// the timing window (min(kWindowSeconds, kWindowFraction of the budget), at least one timed step), an epoch
// end (before its kNN monitor) or a checkpoint about to be written.
inline constexpr int64_t kWarmupSteps = 3;
inline constexpr int64_t kTimedSteps = 30;
inline constexpr double kWindowSeconds = 30.0;
inline constexpr double kWindowFraction = 0.05;

struct RunLengthInput {
  int64_t step = 0;             // steps done when sizing
  double remaining_s = 0;       // what is left of the budget now
  double step_s = 0;            // one training step, timed after the warm-up
  double monitor_s = 0;         // one kNN monitor pass (0 without a monitor)
  int64_t steps_per_epoch = 1;  // the monitor runs at every epoch end before the last step, and once after it
  double safety = 0.95;         // checkpoints, plots and timing noise
};

// total_steps such that the remaining steps and the monitors they bring (mid-run epoch ends at or after
// `step`, plus the final one) fit in safety * remaining_s; never less than `step` (the run then ends now).
int64_t steps_for_budget(const RunLengthInput& in);

}  // namespace selfsup::ssl
