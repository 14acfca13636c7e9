// Learning-rate schedules: pure functions of the step (no state to checkpoint; a resumed run recomputes the
// lr from its step). Steps count optimizer updates from 0; value(step) is the lr to use for update `step`.
// Use with Optimizer::set_lr_factor(schedule.factor(step)) so that groups with different base lrs keep their
// ratio, or set_lr(schedule.value(step)) for one group.
#pragma once
#include <cstdint>
#include <vector>

namespace selfsup {

// Linear warmup from warmup_start_lr to base_lr over warmup_steps updates, then half-cosine from base_lr to
// final_lr at total_steps (held at final_lr after):
//   s < W:  lr = start + (base - start) * s / W
//   s >= W: lr = final + (base - final) * (1 + cos(pi * min(1, (s - W) / (T - W)))) / 2
// With W = 0 this is torch.optim.lr_scheduler.CosineAnnealingLR(T_max=T, eta_min=final) over s in [0, T].
struct WarmupCosineSchedule {
  double base_lr = 0.1;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double final_lr = 0.0;
  double warmup_start_lr = 0.0;

  double value(int64_t step) const;
  double factor(int64_t step) const { return value(step) / base_lr; }
};

// Step decay: lr = base_lr * gamma^(number of milestones <= step). With evenly spaced milestones
// (every step_size updates) this is torch's StepLR; with a list, MultiStepLR.
struct StepDecaySchedule {
  double base_lr = 0.1;
  double gamma = 0.1;
  int64_t step_size = 0;              // > 0: decay every step_size updates (milestones ignored)
  std::vector<int64_t> milestones;    // used when step_size == 0; ascending

  double value(int64_t step) const;
  double factor(int64_t step) const { return value(step) / base_lr; }
};

}  // namespace selfsup
