// The trainer over damaged checkpoints and a full disk, on a small slice of Fashion-MNIST: --resume of a run
// whose newest checkpoint is damaged falls back to the older one and redoes the lost steps bit-identically
// (every tensor of the final checkpoint equals the uninterrupted run's); eval of such a run loads the older
// encoder with the warning; a save that fails for want of space stops training with a message naming the
// intact previous checkpoint, from which the run then completes identically.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "engine/io/atomic_file.h"
#include "engine/io/checkpoint.h"
#include "ssl/trainer/encoder_io.h"
#include "ssl/trainer/trainer.h"
#include "tests/support/cli_run.h"
#include "tests/support/fashion_mnist.h"
#include "tests/support/trainer_fixture.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

using test::require_fashion_mnist;

std::string fresh_dir(const std::string& name) { return test::fresh_run_dir("ckpt_fallback", name); }

bool same_bytes(const Tensor& a, const Tensor& b) {
  const Tensor x = a.contiguous(), y = b.contiguous();
  if (x.dtype() != y.dtype() || x.sizes() != y.sizes()) return false;
  const size_t bytes = static_cast<size_t>(x.numel()) * dtype_size(x.dtype());
  return bytes == 0 || std::memcmp(x.raw_data(), y.raw_data(), bytes) == 0;
}

// Bit-for-bit equality of two tensor maps: names, dtypes, shapes and every byte.
void check_bitwise_equal(const TensorMap& a, const TensorMap& b, const char* group) {
  CAPTURE(group);
  REQUIRE(a.size() == b.size());
  for (const auto& [k, t] : a) {
    CAPTURE(k);
    REQUIRE(b.count(k));
    CHECK(same_bytes(t, b.at(k)));
  }
}

// The uninterrupted 16-step run both test cases compare against (trained once per process).
const std::string& uninterrupted_run() {
  static const std::string dir = [] {
    const std::string a = fresh_dir("a");
    ssl::train(test::tiny_train_config(a), {"", 0, true});
    return a;
  }();
  return dir;
}

void check_same_state(const Checkpoint& a, const Checkpoint& b) {
  CHECK(a.step == b.step);
  CHECK(a.epoch == b.epoch);
  check_bitwise_equal(a.model, b.model, "model");
  check_bitwise_equal(a.optim, b.optim, "optim");
  check_bitwise_equal(a.method, b.method, "method");
  check_bitwise_equal(a.loader, b.loader, "loader");
  CHECK(a.rng.size() == b.rng.size());
}

void flip_byte(const std::string& path, double where) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(0, std::ios::end);
  const auto pos = static_cast<std::streamoff>(static_cast<double>(f.tellg()) * where);
  f.seekg(pos);
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x40);
  f.seekp(pos);
  f.write(&c, 1);
}

using Run = test::CliRun;
Run run_cli(const std::string& args) { return test::run_selfsup(args); }

}  // namespace

TEST_CASE("--resume over a damaged newest checkpoint redoes the lost steps bit-identically; eval falls back too") {
  require_fashion_mnist();
  const std::string& a = uninterrupted_run();
  const std::string b = fresh_dir("b");
  ssl::train(test::tiny_train_config(b), {"", 5, true});  // interrupted at 5 ...
  ssl::train(test::tiny_train_config("ignored"), {b, 5, true});  // ... and at 10: ckpt-5 and ckpt-10 kept
  const std::string c5 = b + "/ckpt-5.safetensors", c10 = b + "/ckpt-10.safetensors";
  REQUIRE(fs::exists(c5));
  REQUIRE(fs::exists(c10));
  flip_byte(c10, 0.7);  // in the data: the model's or optimizer's bytes

  // eval (any command that loads a run's encoder): the step-5 encoder, with the warning.
  const Checkpoint at5 = load_checkpoint(c5);
  ssl::LoadedEncoder le = ssl::load_encoder_from_checkpoint(b);
  for (const auto& [k, v] : le.encoder->state_dict()) {
    CAPTURE(k);
    REQUIRE(at5.model.count("encoder." + k));
    check_bitwise_equal({{k, v}}, {{k, at5.model.at("encoder." + k)}}, "encoder");
  }
  const Run ev = run_cli("eval knn --checkpoint " + b + " --train-limit 256 --test-limit 64 --k 5");
  CHECK_MESSAGE(ev.code == 0, ev.out);
  CHECK_MESSAGE(ev.out.find("warning: damaged checkpoint: safetensors '" + c10 + "': checksum mismatch") !=
                    std::string::npos,
                ev.out);
  CHECK_MESSAGE(ev.out.find("falling back to '" + c5 + "' (step 5)") != std::string::npos, ev.out);

  // --resume: continues from step 5, rewrites ckpt-10 on the way, ends where the uninterrupted run ended.
  ssl::TrainSummary s = ssl::train(test::tiny_train_config("ignored"), {b, 0, true});
  CHECK(s.steps == 16);
  CHECK(s.steps_this_run == 11);
  // The damaged file was set aside (not pruned in place of a good one): ckpt-5 and ckpt-16 are the two kept.
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(b)) {
    const std::string name = e.path().filename().string();
    if (name.find("ckpt-") == 0) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"ckpt-10.safetensors.damaged", "ckpt-16.safetensors", "ckpt-5.safetensors"});
  const Checkpoint fa = load_checkpoint(a), fb = load_checkpoint(b);
  CHECK(fa.source == a + "/ckpt-16.safetensors");
  CHECK(fb.source == b + "/ckpt-16.safetensors");
  CHECK(fb.warning.empty());
  check_same_state(fa, fb);
  // The comparison can tell runs apart: the step-5 weights differ from the final ones.
  int64_t differ = 0;
  for (const auto& [k, t] : at5.model) differ += !same_bytes(t, fa.model.at(k));
  CHECK(differ > 0);
  check_bitwise_equal(load_safetensors(a + "/encoder.safetensors").tensors,
                      load_safetensors(b + "/encoder.safetensors").tensors, "encoder.safetensors");
}

TEST_CASE("a full disk while saving stops training, naming the intact previous checkpoint; the run then completes") {
  require_fashion_mnist();
  const std::string& a = uninterrupted_run();
  const std::string c = fresh_dir("full_c");
  ssl::train(test::tiny_train_config(c), {"", 5, true});
  const std::string c5 = c + "/ckpt-5.safetensors";
  REQUIRE(fs::exists(c5));
  std::ifstream in(c5, std::ios::binary);
  const std::string before((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The resumed run rewrites config.json first (atomically too), then saves at step 7 (before the epoch's
  // plot at step 8): the budget lets config.json through and fails 1000 bytes into ckpt-7.
  set_atomic_write_fault_for_testing(static_cast<int64_t>(fs::file_size(c + "/config.json")) + 1000);
  std::string err;
  try {
    ssl::train(test::tiny_train_config("ignored"), {c, 2, true});
  } catch (const Error& e) {
    err = e.what();
  }
  set_atomic_write_fault_for_testing(-1);
  CHECK_MESSAGE(err.find("train: cannot save the checkpoint of step 7 in " + c) != std::string::npos, err);
  CHECK_MESSAGE(err.find("No space left on device") != std::string::npos, err);
  CHECK_MESSAGE(err.find("The previous checkpoint " + c5 + " is intact") != std::string::npos, err);
  CHECK_MESSAGE(err.find("--resume " + c) != std::string::npos, err);
  // Nothing half-written: the same files, ckpt-5 byte for byte.
  std::vector<std::string> ckpts;
  for (const auto& e : fs::directory_iterator(c)) {
    const std::string name = e.path().filename().string();
    if (name.find("ckpt") != std::string::npos) ckpts.push_back(name);
  }
  CHECK(ckpts == std::vector<std::string>{"ckpt-5.safetensors"});
  std::ifstream again(c5, std::ios::binary);
  CHECK(std::string((std::istreambuf_iterator<char>(again)), std::istreambuf_iterator<char>()) == before);
  // Space back: the run resumes from step 5 and ends in the uninterrupted run's state.
  ssl::train(test::tiny_train_config("ignored"), {c, 0, true});
  check_same_state(load_checkpoint(a), load_checkpoint(c));
}
