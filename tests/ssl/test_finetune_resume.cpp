// `eval finetune` stopped (--stop-after: a checkpoint, then exit, as a kill right after a periodic checkpoint
// leaves it) and resumed twice, once inside the fine-tuned run and once inside the scratch run, ends with the
// same bytes as an uninterrupted run: both weight files, metrics.jsonl (each step once) and result.json. The
// lines a kill leaves past the checkpoint (planted here, with a torn last line) are dropped on resume.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "tests/support/cli_run.h"
#include "tests/support/fashion_mnist.h"

namespace {

namespace fs = std::filesystem;
using selfsup::test::run_selfsup;

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "missing " << p.string());
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::string fresh(const std::string& tag) {
  const fs::path p = fs::temp_directory_path() / ("selfsup-ftres-" + tag + "-" + std::to_string(getpid()));
  fs::remove_all(p);
  return p.string();
}

}  // namespace

TEST_CASE("eval finetune: stopped twice and resumed, bit-identical to an uninterrupted run") {
  selfsup::test::require_fashion_mnist();
  // 600 images, batch 128: 4 steps per epoch, 6 epochs = 24 steps per network, checkpoints every 4 steps.
  const std::string base = "eval finetune --checkpoint " + std::string(SELFSUP_SOURCE_DIR) +
                           "/models/pretrained/fmnist-cpu-w8-b64-e20 --data " + selfsup::test::fashion_mnist_spec() +
                           " --label-fraction 0.01 --epochs 6 --test-limit 500 --threads 2 --device cpu "
                           "--checkpoint-every 4";
  const std::string ref = fresh("ref"), dir = fresh("stopped");
  const auto r0 = run_selfsup(base + " --out " + ref);
  INFO(r0.out);
  REQUIRE(r0.code == 0);

  const auto r1 = run_selfsup(base + " --out " + dir + " --stop-after 7");
  INFO(r1.out);
  REQUIRE(r1.code == 0);
  CHECK(r1.out.find("stopped after step 7 of the finetuned run") != std::string::npos);
  CHECK_FALSE(fs::exists(dir + "/result.json"));
  // What a kill after that checkpoint would leave: a step line, an eval line and a torn line past step 7.
  std::ofstream(dir + "/metrics.jsonl", std::ios::app)
      << "{\"type\": \"step\", \"run\": \"finetuned\", \"step\": 10, \"loss\": 9}\n"
      << "{\"type\": \"eval\", \"run\": \"finetuned\", \"step\": 8, \"epoch\": 2, \"test_top1\": 0.01}\n"
      << "{\"type\": \"step\", \"run\": \"fine";

  // 17 steps finish the fine-tuned network, 3 more stop the scratch one.
  const auto r2 = run_selfsup("eval finetune --resume " + dir + " --stop-after 20");
  INFO(r2.out);
  REQUIRE(r2.code == 0);
  CHECK(r2.out.find("finetuned: test top-1") != std::string::npos);
  CHECK(r2.out.find("stopped after step 3 of the scratch run") != std::string::npos);
  CHECK(fs::exists(dir + "/finetuned.safetensors"));
  CHECK_FALSE(fs::exists(dir + "/ckpt-finetuned"));  // a finished network's checkpoints are removed

  const auto r3 = run_selfsup("eval finetune --resume " + dir);
  INFO(r3.out);
  REQUIRE(r3.code == 0);
  CHECK(r3.out.find("finetuned: finished earlier") != std::string::npos);
  for (const char* f : {"finetuned.safetensors", "scratch.safetensors", "metrics.jsonl", "result.json"}) {
    CAPTURE(f);
    CHECK(slurp(ref + "/" + f) == slurp(dir + "/" + f));
  }

  // --resume takes the run's own arguments: anything but --stop-after beside it is refused, as is a directory
  // without a run, and a new run into a directory that holds one.
  const auto extra = run_selfsup("eval finetune --resume " + dir + " --epochs 3");
  CHECK(extra.code != 0);
  CHECK(extra.out.find("--epochs") != std::string::npos);
  const auto none = run_selfsup("eval finetune --resume " + fresh("nothing"));
  CHECK(none.code != 0);
  CHECK(none.out.find("holds no fine-tuning run to resume") != std::string::npos);
  const auto again = run_selfsup(base + " --out " + dir);
  CHECK(again.code != 0);
  CHECK(again.out.find("already holds a fine-tuning run (finetune.json); --resume") != std::string::npos);
  fs::remove_all(ref);
  fs::remove_all(dir);
}
