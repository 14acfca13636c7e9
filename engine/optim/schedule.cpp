// Closed forms of the schedules in schedule.h.
#include "engine/optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "engine/core/check.h"

namespace selfsup {

double WarmupCosineSchedule::value(int64_t step) const {
  SELFSUP_CHECK(step >= 0, "warmup-cosine schedule: negative step ", step);
  SELFSUP_CHECK(warmup_steps >= 0 && total_steps > warmup_steps, "warmup-cosine schedule: need 0 <= warmup_steps (",
                warmup_steps, ") < total_steps (", total_steps, ")");
  if (step < warmup_steps)
    return warmup_start_lr + (base_lr - warmup_start_lr) * static_cast<double>(step) / warmup_steps;
  const double progress =
      std::min(1.0, static_cast<double>(step - warmup_steps) / static_cast<double>(total_steps - warmup_steps));
  return final_lr + (base_lr - final_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

double StepDecaySchedule::value(int64_t step) const {
  SELFSUP_CHECK(step >= 0, "step-decay schedule: negative step ", step);
  int64_t decays = 0;
  if (step_size > 0) {
    decays = step / step_size;
  } else {
    SELFSUP_CHECK(std::is_sorted(milestones.begin(), milestones.end()),
                  "step-decay schedule: milestones must be ascending");
    decays = std::upper_bound(milestones.begin(), milestones.end(), step) - milestones.begin();
  }
  return base_lr * std::pow(gamma, static_cast<double>(decays));
}

}  // namespace selfsup
