// The training loop on a small slice of Fashion-MNIST: a non-finite loss stop, the errors bad configurations
// must raise, and loading the encoder a run wrote (exact resume is tests/ssl/test_resume.cpp).
#include <doctest/doctest.h>

#include <filesystem>

#include "engine/io/checkpoint.h"
#include "ssl/trainer/encoder_io.h"
#include "ssl/trainer/trainer.h"
#include "tests/support/engine_gradcheck.h"
#include "tests/support/trainer_fixture.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

ssl::TrainConfig tiny(const std::string& out) { return test::tiny_train_config(out); }

std::string fresh_dir(const std::string& name) { return test::fresh_run_dir("trainer", name); }

}  // namespace

TEST_CASE("a non-finite loss stops training, naming the step, and keeps the last good checkpoint") {
  test::require_fashion_mnist();
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
  test::require_fashion_mnist();
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

TEST_CASE("encoder weights of another width are refused naming the width; a run's checkpoint loads as weights") {
  test::require_fashion_mnist();
  const std::string d = fresh_dir("arch");
  ssl::TrainConfig c = tiny(d);
  c.epochs = 0;
  c.steps = 2;  // a finished run: ckpt-2.safetensors and encoder.safetensors
  ssl::train(c, {"", 0, true});
  const std::string encoder = d + "/encoder.safetensors", ckpt = latest_checkpoint(d);
  REQUIRE(ckpt.find("ckpt-2.safetensors") != std::string::npos);
  // Both files hold every key a width-8 ResNet-18 has: only conv1.weight's shape tells the width.
  for (const std::string& f : {encoder, ckpt}) {
    CAPTURE(f);
    ssl::TrainConfig other = c;
    other.width = 8;
    CHECK_THROWS_WITH_AS(ssl::load_encoder_from_weights(f, other),
                         doctest::Contains("the weights have width 4 (conv1.weight [4, 1, 3, 3]), not the 8 "
                                           "described: pass --width 4"),
                         Error);
    other = c;
    other.in_channels = 3;
    CHECK_THROWS_WITH_AS(ssl::load_encoder_from_weights(f, other),
                         doctest::Contains("take 1 input channel(s) (conv1.weight [4, 1, 3, 3]), not the 3 described"),
                         Error);
    other = c;
    other.stem = "imagenet";
    CHECK_THROWS_WITH_AS(ssl::load_encoder_from_weights(f, other),
                         doctest::Contains("have the cifar stem (conv1.weight [4, 1, 3, 3]), not the imagenet stem"),
                         Error);
    // Another depth with the same stem: the first key the file lacks is named.
    other = c;
    other.arch = "resnet34";
    CHECK_THROWS_WITH_AS(ssl::load_encoder_from_weights(f, other),
                         doctest::Contains("does not match resnet34 width 4 with the cifar stem and 1 input "
                                           "channel(s): load_state_dict: missing key(s) in state: 'layer1.2."),
                         Error);
  }
  // Described correctly, the checkpoint's encoder part and encoder.safetensors load the same weights, bit for
  // bit, as the checkpoint read as a run.
  const nn::NamedTensors from_run = ssl::load_encoder_from_checkpoint(d).encoder->state_dict();
  for (const std::string& f : {encoder, ckpt}) {
    CAPTURE(f);
    const nn::NamedTensors got = ssl::load_encoder_from_weights(f, c).encoder->state_dict();
    REQUIRE(got.size() == from_run.size());
    for (size_t i = 0; i < got.size(); ++i) {
      CAPTURE(got[i].first);
      CHECK(got[i].first == from_run[i].first);
      CHECK(testing::allclose(got[i].second, from_run[i].second, 0.0, 0.0).ok);
    }
  }
  // A safetensors file that is no ResNet state dict, and a checkpoint without an encoder: errors that say so.
  const std::string other_file = d + "/other.safetensors";
  save_safetensors(other_file, {{"weight", Tensor::zeros({2, 2})}});
  CHECK_THROWS_WITH_AS(ssl::load_encoder_from_weights(other_file, c),
                       doctest::Contains("no conv1.weight, so not a ResNet state dict with torchvision names (1 "
                                         "tensors, the first 'weight'); --weights takes a run's encoder.safetensors "
                                         "or ckpt-<step>.safetensors"),
                       Error);
  Checkpoint headless;
  headless.model["head.fc1.weight"] = Tensor::zeros({2, 2});
  const std::string headless_file = save_checkpoint(d + "/headless.safetensors", headless);
  CHECK_THROWS_WITH_AS(ssl::load_encoder_from_weights(headless_file, c),
                       doctest::Contains("the checkpoint holds no encoder weights (model.encoder.*)"), Error);
}

TEST_CASE("a slim run directory (encoder.safetensors + config.json) loads the encoder the checkpoint holds") {
  test::require_fashion_mnist();
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
