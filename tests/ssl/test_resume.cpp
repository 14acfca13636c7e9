// Exact resume, tested as users break it: a run stopped cleanly (--stop-after) and a run whose process is
// killed with SIGKILL at a random step, twice, each resumed from its last periodic checkpoint. Both must end
// bit-identical to an uninterrupted run in every tensor of the final checkpoint (weights, batch-norm running
// statistics, momentum buffers, loader position) and of encoder.safetensors, with metrics.jsonl holding each
// step exactly once. On the CPU (tests/support/trainer_fixture.h): GPU kernels need not be bit-reproducible.
// The SIGKILL scenario is tests/support/kill_resume.h's, which every method's test runs.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "engine/io/checkpoint.h"
#include "ssl/trainer/encoder_io.h"
#include "ssl/trainer/trainer.h"
#include "tests/support/kill_resume.h"
#include "tests/support/trainer_fixture.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

std::string fresh_dir(const std::string& name) { return test::fresh_run_dir("resume", name); }

}  // namespace

TEST_CASE("a run stopped after 5 steps and resumed ends bit-identical to the uninterrupted run") {
  test::require_fashion_mnist();
  const std::string a = fresh_dir("a"), b = fresh_dir("b");
  ssl::TrainSummary sa = ssl::train(test::tiny_train_config(a), {"", 0, true});
  CHECK(sa.steps == 16);
  ssl::TrainSummary sb1 = ssl::train(test::tiny_train_config(b), {"", 5, true});
  CHECK(sb1.steps == 5);
  CHECK(load_checkpoint(b).step == 5);
  // What a kill after that checkpoint would leave: lines past it (a step and an epoch line) and a torn last
  // line. The resumed run must drop all three.
  {
    std::ofstream m(b + "/metrics.jsonl", std::ios::app);
    m << "{\"type\": \"step\", \"step\": 6, \"epoch\": 0, \"loss\": 1, \"acc\": 0, \"lr\": 0.1, \"images_per_s\": 1}\n"
      << "{\"type\": \"epoch\", \"epoch\": 1, \"step\": 6, \"knn_top1\": 0.5}\n"
      << "{\"type\": \"step\", \"st";
  }
  ssl::TrainSummary sb2 = ssl::train(test::tiny_train_config("ignored"), {b, 0, true});
  CHECK(sb2.steps == 16);
  CHECK(sb2.steps_this_run == 11);
  test::check_same_run(a, b, 16);
  // What a run leaves behind.
  for (const char* f : {"config.json", "metrics.jsonl", "metrics.png", "encoder.safetensors", "latest"})
    CHECK(fs::exists(fs::path(a) / f));
  CHECK(latest_checkpoint(a).find("ckpt-16.safetensors") != std::string::npos);
  ssl::LoadedEncoder le = ssl::load_encoder_from_checkpoint(a);
  CHECK(le.config.width == 4);
  CHECK(le.encoder->feature_dim() == 32);
}

TEST_CASE("a run killed with SIGKILL at random steps resumes from its last periodic checkpoint, bit-identical") {
  test::check_kill_resume("simclr");
}
