// The trainer's GPU view path (ssl/trainer/trainer.cpp + engine/data/device_augment.h) on a small slice of
// Fashion-MNIST: the held (pre-staged) batch must not shift the data position a checkpoint stores, a
// resumed GPU run must continue the same sequence, and the resident and streamed modes must train alike.
// Needs a device (test_cuda exits 77, a visible ctest skip, without one) and the Fashion-MNIST files (their
// absence fails, tests/support/fashion_mnist.h).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/io/checkpoint.h"
#include "ssl/trainer/trainer.h"
#include "tests/support/trainer_fixture.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

ssl::TrainConfig tiny_gpu(const std::string& out) {
  ssl::TrainConfig c = test::tiny_train_config(out);
  c.device = "cuda";
  return c;
}

std::string fresh_dir(const std::string& name) { return test::fresh_run_dir("cuda_trainer", name); }

// The losses of the step lines of DIR/metrics.jsonl, in order.
std::vector<double> losses(const std::string& dir) {
  std::ifstream in(dir + "/metrics.jsonl");
  std::vector<double> out;
  for (std::string line; std::getline(in, line);) {
    if (line.find("\"type\": \"step\"") == std::string::npos) continue;
    const auto at = line.find("\"loss\": ");
    out.push_back(std::strtod(line.c_str() + at + 8, nullptr));
  }
  return out;
}

// GPU kernels (cuDNN, atomics) need not be bit-reproducible run to run: compare with a tolerance that
// nevertheless catches a skipped or repeated batch (a different batch changes the loss by far more).
void check_close(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CAPTURE(i);
    CHECK(std::fabs(a[i] - b[i]) <= 2e-3 * std::fabs(a[i]) + 1e-4);
  }
}

struct EnvGuard {
  explicit EnvGuard(const char* mode) { setenv("SELFSUP_GPU_DATA", mode, 1); }
  ~EnvGuard() { unsetenv("SELFSUP_GPU_DATA"); }
};

}  // namespace

TEST_CASE("trainer on cuda: checkpoint position, resume, resident vs streamed views") {
  test::require_fashion_mnist();
  std::vector<std::vector<double>> per_mode;
  for (const char* mode : {"resident", "stream"}) {
    CAPTURE(mode);
    EnvGuard env(mode);
    const std::string a = fresh_dir(std::string("a_") + mode), b = fresh_dir(std::string("b_") + mode);
    const ssl::TrainSummary sa = ssl::train(tiny_gpu(a), {"", 0, true});
    CHECK(sa.steps == 16);
    // Interrupted after 5 steps: the trainer already holds (and has staged) batch 5, but the checkpoint
    // must say "batch 5 of epoch 0 is next", not 6.
    const ssl::TrainSummary sb1 = ssl::train(tiny_gpu(b), {"", 5, true});
    CHECK(sb1.steps == 5);
    const Checkpoint ck = load_checkpoint(b);
    CHECK(ck.step == 5);
    CHECK(ck.loader.at("epoch").item() == 0);
    CHECK(ck.loader.at("batch").item() == 5);
    const ssl::TrainSummary sb2 = ssl::train(tiny_gpu("ignored"), {b, 0, true});
    CHECK(sb2.steps == 16);
    const std::vector<double> la = losses(a), lb = losses(b);
    REQUIRE(la.size() == 16);
    check_close(la, lb);
    per_mode.push_back(la);
  }
  check_close(per_mode[0], per_mode[1]);
}
