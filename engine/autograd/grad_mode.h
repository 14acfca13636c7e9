// Grad mode: while disabled (NoGradGuard), ops record no history. Backward runs with it disabled, and so
// do optimizer updates. Thread-local, like PyTorch's, so loader threads are unaffected.
#pragma once

namespace selfsup {

class GradMode {
 public:
  static bool enabled();
  static void set_enabled(bool e);
};

class NoGradGuard {
 public:
  NoGradGuard() : prev_(GradMode::enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

}  // namespace selfsup
