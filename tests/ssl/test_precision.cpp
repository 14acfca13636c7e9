// `--precision bf16` end to end: a short SimCLR run in mixed bfloat16 learns, its checkpoints hold float32
// tensors (and the optimizer's float64 hyperparameter scalars) only, a bf16 run's encoder evaluates in fp32 and an fp32 run's in bf16, and the CLI validates and
// documents the flag. The numbers of the ops under autocast are tests/ops/test_autocast.cpp's.
#include <doctest/doctest.h>

#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/autograd/autocast.h"
#include "engine/data/spec.h"
#include "engine/io/checkpoint.h"
#include "engine/io/safetensors.h"
#include "ssl/methods/registry.h"
#include "ssl/trainer/encoder_io.h"
#include "ssl/trainer/trainer.h"
#include "tests/support/cli_run.h"
#include "tests/support/probe.h"
#include "tests/support/trainer_fixture.h"

using namespace selfsup;

namespace {

test::CliRun run(const std::string& args) { return test::run_selfsup(args); }

}  // namespace

TEST_CASE("a short SimCLR run with --precision bf16: the loss falls, the probe beats the untrained encoder"
          * doctest::test_suite("learning")) {
  test::require_fashion_mnist();
  const std::string dir = test::fresh_run_dir("precision", "short");
  ssl::TrainConfig c = test::tiny_train_config(dir);
  c.precision = "bf16";
  c.limit = 2048;
  c.proj_hidden = 64;
  c.epochs = 4;  // 128 steps of 64
  const ssl::TrainSummary s = ssl::train(c, {"", 0, true});
  CHECK(s.steps == 128);
  std::vector<double> loss;
  std::ifstream in(dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j["type"] == "step") loss.push_back(j["loss"].get<double>());
  }
  REQUIRE(loss.size() == 128);
  const double early = std::accumulate(loss.begin(), loss.begin() + 16, 0.0) / 16;
  const double late = std::accumulate(loss.end() - 16, loss.end(), 0.0) / 16;
  MESSAGE("bf16 SimCLR loss: first 16 steps " << early << ", last 16 " << late);
  CHECK(late < early - 0.1);
  // The stored configuration says bf16 (a resume continues in it); the tensors stay float32. The probe below
  // measured 0.653 (bf16 features), 0.655 (fp32 features), untrained 0.534 in the Release build.
  const nlohmann::json config = nlohmann::json::parse(std::ifstream(dir + "/config.json"));
  CHECK(config["precision"] == "bf16");
  const SafetensorsFile ckpt = load_safetensors(latest_checkpoint(dir));
  int64_t floating = 0;
  for (const auto& [name, t] : ckpt.tensors) {
    if (!is_floating(t.dtype())) continue;
    CAPTURE(name);
    if (name.rfind("optim.group.", 0) == 0) {
      CHECK(t.numel() == 1);  // a float64 hyperparameter (lr, weight decay ...), not data
      continue;
    }
    CHECK(t.dtype() == DType::f32);
    ++floating;
  }
  CHECK(floating > 100);  // the encoder, the head, BN statistics and the optimizer's momenta
  ssl::LoadedEncoder trained = ssl::load_encoder_from_checkpoint(dir);
  const std::shared_ptr<ssl::Method> untrained = ssl::make_method(c);  // the same initialisation, untrained
  const double p_bf16 = test::probe_top1(*trained.encoder, c, 2048, 1000, 20, DType::bf16);
  const double p_fp32 = test::probe_top1(*trained.encoder, c, 2048, 1000, 20, DType::f32);
  const double p_untrained = test::probe_top1(untrained->encoder(), c, 2048, 1000, 20, DType::bf16);
  MESSAGE("linear probe: trained (bf16 features) " << p_bf16 << ", (fp32 features) " << p_fp32 << ", untrained "
                                                   << p_untrained);
  CHECK(p_bf16 > p_untrained + 0.01);
  CHECK(p_fp32 > p_untrained + 0.01);
}

TEST_CASE("the CLI: --precision in --help, bad values named, checkpoints evaluate in the other precision") {
  for (const char* cmd : {"train --help", "eval --help", "demo --help"}) {
    CAPTURE(cmd);
    const test::CliRun h = run(cmd);
    CHECK(h.code == 0);
    CHECK(h.out.find("--precision") != std::string::npos);
  }
  struct Bad {
    const char* args;
    const char* says;
  } bad[] = {
      {"train --precision fp16 --steps 1 --out /tmp/selfsup_precision_never",
       "selfsup train: error: --precision: expected fp32 or bf16, got 'fp16'"},
      {"eval knn --checkpoint /nonexistent --precision half", "eval knn: --precision: expected fp32 or bf16, got 'half'"},
      {"demo --precision tf32 --out /tmp/selfsup_precision_never",
       "selfsup demo: error: --precision (auto, fp32 or bf16): expected fp32 or bf16, got 'tf32'"},
  };
  for (const Bad& b : bad) {
    CAPTURE(b.args);
    const test::CliRun r = run(b.args);
    CHECK(r.code != 0);
    CHECK_MESSAGE(r.out.find(b.says) != std::string::npos, r.out);
  }
  test::require_fashion_mnist();
  const std::string data = test::fashion_mnist_spec();
  for (const std::string trained_in : {"bf16", "fp32"}) {
    const std::string evaluated_in = trained_in == "bf16" ? "fp32" : "bf16";
    CAPTURE(trained_in);
    const std::string dir = test::fresh_run_dir("precision", "cli_" + trained_in);
    const test::CliRun t = run("train --data " + data + " --device cpu --limit 256 --batch 64 --width 4 --proj-hidden 32 "
                               "--proj-dim 16 --steps 4 --no-knn --precision " + trained_in + " --out " + dir);
    INFO(t.out);
    REQUIRE(t.code == 0);
    CHECK(t.out.find("precision " + trained_in) != std::string::npos);
    const test::CliRun e = run("eval knn --checkpoint " + dir + " --train-limit 500 --test-limit 200 --k 20 --precision " +
                               evaluated_in);
    INFO(e.out);
    CHECK(e.code == 0);
    CHECK(e.out.find("precision " + evaluated_in) != std::string::npos);
    CHECK(e.out.find("kNN (k=20, T=0.07) test top-1:") != std::string::npos);
  }
}
