// What the trainer tests (tests/ssl, tests/cuda) share: a tiny SimCLR configuration, the `selfsup train`
// command line that makes the same run in a child process, and per-process run directories.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "ssl/trainer/trainer.h"
#include "tests/support/fashion_mnist.h"

namespace selfsup::test {

// 512 Fashion-MNIST images, 8 batches of 64 per epoch, 2 epochs, a width-4 encoder: seconds on a CPU.
// On the CPU whatever the machine has (`auto` would pick a GPU, whose results are not bit-reproducible):
// the CUDA tests set device themselves.
inline ssl::TrainConfig tiny_train_config(const std::string& out) {
  ssl::TrainConfig c;
  c.data = fashion_mnist_spec();
  c.device = "cpu";
  c.limit = 512;
  c.batch = 64;
  c.width = 4;
  c.proj_hidden = 32;
  c.proj_dim = 16;
  c.epochs = 2;
  c.log_every = 1;
  c.knn_every_epoch = false;
  c.out = out;
  return c;
}

// `selfsup train` flags for the fields a tiny_train_config (possibly changed: epochs, checkpoint_every) sets,
// for a run in a child process. A field missing here would silently take the CLI's default: the tests that
// use it compare the child's config.json with the configuration they meant.
inline std::vector<std::string> train_args(const ssl::TrainConfig& c) {
  std::vector<std::string> a = {"train", "--data", c.data, "--device", c.device, "--limit", std::to_string(c.limit),
                                "--batch", std::to_string(c.batch), "--width", std::to_string(c.width),
                                "--proj-hidden", std::to_string(c.proj_hidden), "--proj-dim", std::to_string(c.proj_dim),
                                "--log-every", std::to_string(c.log_every), "--checkpoint-every",
                                std::to_string(c.checkpoint_every), "--out", c.out};
  if (c.epochs > 0) a.insert(a.end(), {"--epochs", std::to_string(c.epochs)});
  if (c.steps > 0) a.insert(a.end(), {"--steps", std::to_string(c.steps)});
  if (!c.knn_every_epoch) a.push_back("--no-knn");
  return a;
}

// An empty path under the temp directory, per process (worktrees and parallel ctest runs share /tmp):
// <tmp>/selfsup_<prefix>_<pid>_<name>, removed if it exists.
inline std::string fresh_run_dir(const std::string& prefix, const std::string& name) {
  namespace fs = std::filesystem;
  const fs::path p = fs::temp_directory_path() / ("selfsup_" + prefix + "_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  return p.string();
}

}  // namespace selfsup::test
