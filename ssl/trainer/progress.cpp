// Progress reporter (see progress.h): rate limiting, ETA smoothing and the line text.
#include "ssl/trainer/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace selfsup::trainer {

namespace {

double steady_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

bool is_terminal(std::FILE* f) {
  if (!f) return false;
  const int fd = ::fileno(f);
  if (fd < 0 || !::isatty(fd)) return false;
  const char* term = std::getenv("TERM");
  return !(term && std::strcmp(term, "dumb") == 0);
}

// Terminal columns, 0 when unknown. A line wider than the terminal would wrap, and '\r' would then redraw
// only its last row, so the interactive line is cut to fit.
int terminal_columns(std::FILE* f) {
  struct winsize ws {};
  if (::ioctl(::fileno(f), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 0;
}

std::string format_value(double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

std::string format_rate(double r) {
  char buf[48];
  std::snprintf(buf, sizeof buf, r >= 100 ? "%.0f" : r >= 1 ? "%.1f" : "%.3g", r);
  return buf;
}

}  // namespace

std::string format_duration(double seconds) {
  // Beyond ~3 years an ETA carries no information (and llround would overflow near 1e19).
  if (!std::isfinite(seconds) || seconds < 0 || seconds >= 1e8) return "-:--:--";
  const long long s = std::llround(seconds);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  return buf;
}

std::string format_progress_line(int64_t step, int64_t total, const Metrics& metrics, double items_per_s,
                                 double eta_s, int bar_width) {
  std::string line;
  char buf[96];
  if (total > 0) {
    const double frac = std::clamp(static_cast<double>(step) / static_cast<double>(total), 0.0, 1.0);
    if (bar_width > 0) {
      const int filled = static_cast<int>(frac * bar_width);
      line += '[';
      line.append(static_cast<size_t>(filled), '#');
      line.append(static_cast<size_t>(bar_width - filled), '-');
      line += "] ";
    }
    std::snprintf(buf, sizeof buf, "%lld/%lld %.1f%%", static_cast<long long>(step),
                  static_cast<long long>(total), 100.0 * frac);
  } else {
    std::snprintf(buf, sizeof buf, "step %lld", static_cast<long long>(step));
  }
  line += buf;
  for (const auto& [name, value] : metrics) line += "  " + name + " " + format_value(value);
  if (std::isfinite(items_per_s) && items_per_s > 0) line += "  " + format_rate(items_per_s) + " items/s";
  if (total > 0) line += "  ETA " + format_duration(eta_s);
  return line;
}

Progress::Progress(int64_t total_steps, std::FILE* out, bool force_plain, Clock now)
    : total_(total_steps), out_(out), now_(now ? std::move(now) : Clock(steady_now)) {
  interactive_ = !force_plain && is_terminal(out_);
  // The loop starts now: the first update already yields a rate.
  sample_t_ = now_();
  sample_step_ = 0;
}

Progress::~Progress() {
  try {
    finish();
  } catch (...) {  // a destructor must not throw (a failing user clock is the only source)
  }
}

double Progress::eta_s() const {
  if (total_ <= 0) return -1;
  if (step_ >= total_) return 0;
  if (rate_ <= 0) return -1;
  return static_cast<double>(total_ - step_) / rate_;
}

void Progress::update(int64_t step, const Metrics& metrics, double items_per_s) {
  if (finished_) return;
  const double t = now_();

  // Rate: exponential moving average of steps/s, weighted by elapsed time (alpha = 1 - exp(-dt / tau)), so a
  // burst of updates microseconds apart counts as little as it lasted. Samples with no elapsed time are merged
  // into the next one; a step that goes backwards (a restarted loop) starts a new sample.
  // The first update only sets the baseline: a loop that starts mid-way (a resumed run, a re-created
  // reporter) must not count the steps before it as done in the moment since construction.
  if (!have_update_ || step < sample_step_) {
    sample_t_ = t, sample_step_ = step;
  } else if (t > sample_t_ && step > sample_step_) {
    const double dt = t - sample_t_;
    const double inst = static_cast<double>(step - sample_step_) / dt;
    rate_ = rate_ < 0 ? inst : rate_ + (1 - std::exp(-dt / smoothing_s_)) * (inst - rate_);
    sample_t_ = t, sample_step_ = step;
  }

  step_ = step;
  metrics_ = metrics;
  items_per_s_ = items_per_s;
  have_update_ = true;
  last_printed_ = false;

  const double interval = interactive_ ? redraw_interval_s_ : plain_interval_s_;
  const bool last = total_ > 0 && step >= total_;
  if (!printed_any_ || last || t - last_print_t_ >= interval) {
    last_print_t_ = t;
    emit(false);
  }
}

void Progress::emit(bool final_line) {
  std::string line = format_progress_line(step_, total_, metrics_, items_per_s_, eta_s(), interactive_ ? 24 : 0);
  if (interactive_) {
    const int cols = terminal_columns(out_);
    if (cols > 1 && line.size() > static_cast<size_t>(cols - 1)) line.resize(static_cast<size_t>(cols - 1));
    const size_t len = line.size();
    if (len < last_len_) line.append(last_len_ - len, ' ');  // blank what a longer previous line left behind
    last_len_ = len;
    std::fprintf(out_, "\r%s%s", line.c_str(), final_line ? "\n" : "");
  } else {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
  printed_any_ = true;
  last_printed_ = true;
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (!have_update_) return;
  if (interactive_) {
    if (!last_printed_) {
      emit(true);
    } else {
      std::fputc('\n', out_);
      std::fflush(out_);
    }
  } else if (!last_printed_) {
    emit(false);
  }
}

}  // namespace selfsup::trainer
