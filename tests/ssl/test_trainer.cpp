// The training loop on a small slice of Fashion-MNIST: exact resume, the files a run writes, a non-finite
// loss stop, and the errors bad configurations must raise.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/io/checkpoint.h"
#include "ssl/trainer/encoder_io.h"
#include "ssl/trainer/trainer.h"
#include "tests/support/engine_gradcheck.h"
#include "tests/support/trainer_fixture.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

bool have_fashion_mnist() { return fs::exists("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"); }

ssl::TrainConfig tiny(const std::string& out) { return test::tiny_train_config(out); }

std::string fresh_dir(const std::string& name) { return test::fresh_run_dir("trainer", name); }

// The step lines of metrics.jsonl without the throughput field (wall-clock dependent).
std::vector<std::string> step_lines(const std::string& dir) {
  std::ifstream in(dir + "/metrics.jsonl");
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);)
    if (line.find("\"type\": \"step\"") != std::string::npos) out.push_back(line.substr(0, line.find(", \"images_per_s\"")));
  return out;
}

}  // namespace

TEST_CASE("a resumed run reproduces the uninterrupted run's losses bit for bit") {
  if (!have_fashion_mnist()) {
    MESSAGE("SKIPPED: dataset-fashion-mnist is not installed");
    return;
  }
  const std::string a = fresh_dir("a"), b = fresh_dir("b");
  ssl::TrainSummary sa = ssl::train(tiny(a), {"", 0, true});
  CHECK(sa.steps == 16);
  ssl::TrainSummary sb1 = ssl::train(tiny(b), {"", 5, true});
  CHECK(sb1.steps == 5);
  ssl::TrainSummary sb2 = ssl::train(tiny("ignored"), {b, 0, true});
  CHECK(sb2.steps == 16);
  CHECK(sb2.steps_this_run == 11);
  std::vector<std::string> la = step_lines(a), lb = step_lines(b);
  REQUIRE(la.size() == 16);
  CHECK(la == lb);
  // What a run leaves behind.
  for (const char* f : {"config.json", "metrics.jsonl", "metrics.png", "encoder.safetensors", "latest"})
    CHECK(fs::exists(fs::path(a) / f));
  CHECK(latest_checkpoint(a).find("ckpt-16.safetensors") != std::string::npos);
  ssl::LoadedEncoder le = ssl::load_encoder_from_checkpoint(a);
  CHECK(le.config.width == 4);
  CHECK(le.encoder->feature_dim() == 32);
}

TEST_CASE("a non-finite loss stops training, naming the step, and keeps the last good checkpoint") {
  if (!have_fashion_mnist()) {
    MESSAGE("SKIPPED: dataset-fashion-mnist is not installed");
    return;
  }
  const std::string d = fresh_dir("nan");
  ssl::TrainConfig c = tiny(d);
  ssl::train(c, {"", 3, true});  // a good checkpoint at step 3
  const std::string good = latest_checkpoint(d);
  ssl::TrainConfig bad = c;
  bad.lr = 1e30;  // diverges at once
  bad.warmup_fraction = 0;
  const std::string d2 = fresh_dir("nan2");
  bad.out = d2;
  CHECK_THROWS_WITH_AS(ssl::train(bad, {"", 0, true}), doctest::Contains("at step"), Error);
  CHECK(latest_checkpoint(d2).empty());  // nothing written for a diverged run
  CHECK(latest_checkpoint(d) == good);
}

TEST_CASE("bad configurations fail with one clear message and write nothing over") {
  if (!have_fashion_mnist()) {
    MESSAGE("SKIPPED: dataset-fashion-mnist is not installed");
    return;
  }
  const std::string d = fresh_dir("bad");
  ssl::TrainConfig c = tiny(d);
  c.method = "byol";
  CHECK_THROWS_WITH_AS(ssl::train(c, {"", 0, true}), doctest::Contains("unknown --method 'byol'"), Error);
  c = tiny(d);
  c.arch = "vgg16";
  CHECK_THROWS_WITH_AS(ssl::train(c, {"", 0, true}), doctest::Contains("unknown --arch 'vgg16'"), Error);
  c = tiny(d);
  c.batch = 1024;  // more than the 512 images
  CHECK_THROWS_WITH_AS(ssl::train(c, {"", 0, true}), doctest::Contains("--batch 1024 is larger than the 512"), Error);
  c = tiny(d);
  c.data = "cifar10:/nonexistent/cifar";
  CHECK_THROWS_AS(ssl::train(c, {"", 0, true}), Error);
  c = tiny(d);
  c.data = "fashion-mnist:/nonexistent";
  CHECK_THROWS_WITH_AS(ssl::train(c, {"", 0, true}), doctest::Contains("dataset-fashion-mnist"), Error);
  // --resume of a directory without a checkpoint.
  const std::string empty = fresh_dir("empty");
  fs::create_directories(empty);
  CHECK_THROWS_WITH_AS(ssl::train(tiny(d), {empty, 0, true}), doctest::Contains("no checkpoint"), Error);
  // A finished run is not overwritten by a new one.
  const std::string done = fresh_dir("done");
  ssl::train(tiny(done), {"", 2, true});
  const std::string before = latest_checkpoint(done);
  CHECK_THROWS_WITH_AS(ssl::train(tiny(done), {"", 0, true}), doctest::Contains("already holds a run"), Error);
  CHECK(latest_checkpoint(done) == before);
}

TEST_CASE("weights of another architecture are refused, naming the key") {
  if (!have_fashion_mnist()) {
    MESSAGE("SKIPPED: dataset-fashion-mnist is not installed");
    return;
  }
  const std::string d = fresh_dir("arch");
  ssl::train(tiny(d), {"", 2, true});
  ssl::TrainConfig other = tiny(d);
  other.width = 8;
  CHECK_THROWS_WITH_AS(ssl::load_encoder_from_weights(latest_checkpoint(d), other), doctest::Contains("does not match"),
                       Error);
}

TEST_CASE("a slim run directory (encoder.safetensors + config.json) loads the encoder the checkpoint holds") {
  if (!have_fashion_mnist()) {
    MESSAGE("SKIPPED: dataset-fashion-mnist is not installed");
    return;
  }
  // The layout of a committed encoder (models/pretrained/<name>/): no checkpoint, no `latest`.
  const std::string d = fresh_dir("slim_src"), slim = fresh_dir("slim");
  ssl::train(tiny(d), {"", 0, true});  // encoder.safetensors is written at the end of a run
  fs::create_directories(slim);
  for (const char* f : {"encoder.safetensors", "config.json"}) fs::copy_file(fs::path(d) / f, fs::path(slim) / f);
  ssl::LoadedEncoder from_ckpt = ssl::load_encoder_from_checkpoint(d);
  ssl::LoadedEncoder from_slim = ssl::load_encoder_from_checkpoint(slim);
  CHECK(from_slim.config.width == 4);
  CHECK(from_slim.config.recipe == from_ckpt.config.recipe);
  const nn::NamedTensors a = from_ckpt.encoder->state_dict(), b = from_slim.encoder->state_dict();
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].first == b[i].first);
    CHECK(testing::allclose(a[i].second, b[i].second, 0.0, 0.0).ok);
  }
  // Without config.json the folder is neither a run nor a slim run: the checkpoint error names it.
  fs::remove(fs::path(slim) / "config.json");
  CHECK_THROWS_WITH_AS(ssl::load_encoder_from_checkpoint(slim), doctest::Contains("no checkpoint"), Error);
}
