#include "ssl/trainer/run_length.h"

#include <algorithm>

namespace selfsup::ssl {

int64_t steps_for_budget(const RunLengthInput& in) {
  const int64_t spe = std::max<int64_t>(1, in.steps_per_epoch);
  const double step_s = std::max(in.step_s, 1e-9);
  const double available = in.safety * in.remaining_s;
  // kNN monitors a run ending at `total` still has to do: the epoch ends b = k * spe with step <= b < total,
  // then the final one.
  auto monitors = [&](int64_t total) -> int64_t {
    if (total <= in.step) return 0;
    const int64_t first = (in.step + spe - 1) / spe, last = (total - 1) / spe;
    return std::max<int64_t>(0, last - first + 1) + 1;
  };
  auto cost = [&](int64_t total) {
    return static_cast<double>(total - in.step) * step_s + static_cast<double>(monitors(total)) * in.monitor_s;
  };
  if (available <= 0) return in.step;
  int64_t total = in.step + static_cast<int64_t>(available / step_s);
  // Each pass removes at least the overshoot's worth of steps; fewer steps never bring more monitors.
  while (total > in.step && cost(total) > available)
    total -= std::max<int64_t>(1, static_cast<int64_t>((cost(total) - available) / step_s));
  // A pass may remove more than needed where it crosses an epoch end (one monitor fewer): take back what fits.
  while (cost(total + 1) <= available) ++total;
  return std::max(total, in.step);
}

}  // namespace selfsup::ssl
