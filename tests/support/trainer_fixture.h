// What the trainer tests (tests/ssl, tests/cuda) share: a tiny SimCLR configuration and per-process run
// directories.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

#include "ssl/trainer/trainer.h"

namespace selfsup::test {

// 512 Fashion-MNIST images, 8 batches of 64 per epoch, 2 epochs, a width-4 encoder: seconds on a CPU.
inline ssl::TrainConfig tiny_train_config(const std::string& out) {
  ssl::TrainConfig c;
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

// An empty path under the temp directory, per process (worktrees and parallel ctest runs share /tmp):
// <tmp>/selfsup_<prefix>_<pid>_<name>, removed if it exists.
inline std::string fresh_run_dir(const std::string& prefix, const std::string& name) {
  namespace fs = std::filesystem;
  const fs::path p = fs::temp_directory_path() / ("selfsup_" + prefix + "_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  return p.string();
}

}  // namespace selfsup::test
