// Progress reporting for long loops (training epochs, feature extraction). On a terminal one line is redrawn in
// place ('\r') at most ~10 times a second: a bar, step/total, metrics, items/s and an ETA. Anywhere else (CI
// logs, files, pipes) plain lines are printed at most every plain_interval_s seconds, plus the last one, so a
// 100k-step run leaves a log of a few hundred lines rather than 100k. The ETA comes from an exponentially
// smoothed step rate, so one slow step (a checkpoint, an evaluation) moves it only a little.
#pragma once
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace selfsup::trainer {

using Metrics = std::vector<std::pair<std::string, double>>;

// "h:mm:ss" (hours unbounded: 100000 s -> "27:46:40"); seconds are rounded to the nearest whole one.
// Negative, NaN or infinite input -> "-:--:--" (unknown).
std::string format_duration(double seconds);

// One progress line without the terminal control characters, e.g.
//   [##########----------] 500/1000 50.0%  loss 0.6931  acc 0.25  1234.5 items/s  ETA 0:00:42
// bar_width 0 leaves out the bar; total <= 0 (unknown) leaves out the percentage, and with it the bar;
// eta_s < 0 or non-finite prints "ETA -:--:--"; items_per_s <= 0 or non-finite leaves out the rate.
std::string format_progress_line(int64_t step, int64_t total, const Metrics& metrics, double items_per_s,
                                 double eta_s, int bar_width);

class Progress {
 public:
  using Clock = std::function<double()>;  // seconds, monotonic; tests inject a fake one

  // Interactive when isatty(fileno(out)) and TERM is not "dumb", unless force_plain. `now` defaults to
  // std::chrono::steady_clock.
  explicit Progress(int64_t total_steps, std::FILE* out = stdout, bool force_plain = false, Clock now = {});
  ~Progress();  // finish(): an interrupted loop still ends its line, so an error message starts on a new one
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // `step` counts completed steps (1..total). Cheap when it prints nothing: call it every step.
  void update(int64_t step, const Metrics& metrics, double items_per_s);
  // Prints the last update if it was rate-limited away and ends the line; idempotent.
  void finish();

  void set_plain_interval_s(double s) { plain_interval_s_ = s; }
  bool interactive() const { return interactive_; }
  // Seconds to completion from the smoothed rate; negative while unknown (before two timed updates).
  double eta_s() const;

 private:
  void emit(bool final_line);

  int64_t total_;
  std::FILE* out_;
  Clock now_;
  bool interactive_;
  double plain_interval_s_ = 10.0;
  double redraw_interval_s_ = 0.1;
  double smoothing_s_ = 30.0;  // time constant of the rate average (a 5 s stall: 15% of the way)

  // Last update (printed or not).
  int64_t step_ = 0;
  Metrics metrics_;
  double items_per_s_ = 0;
  bool have_update_ = false;
  bool last_printed_ = true;  // whether the last update has been written
  bool finished_ = false;

  double last_print_t_ = 0;
  bool printed_any_ = false;
  size_t last_len_ = 0;  // interactive: length of the line on screen, to blank leftovers of a longer one

  // Rate estimate (steps/s) from (time, step) samples.
  double sample_t_ = 0;
  int64_t sample_step_ = 0;
  double rate_ = -1;  // < 0: unknown
};

}  // namespace selfsup::trainer
