// Fashion-MNIST for the tests that read or train on the real data set. It is a declared dependency of the
// tests (Debian's dataset-fashion-mnist, installed by scripts/install-deps.sh), so its absence FAILS the test
// that needs it, with a message saying how to install it: a test that returned early would count as passed
// and take the end-to-end and resume checks out of a green run without a trace.
#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "engine/data/idx.h"

namespace selfsup::test {

// SELFSUP_FMNIST_DIR when set (a GPU machine without Debian's data sets: bench/gpu_check.sh points it at the
// copy it carries), else where dataset-fashion-mnist installs the files.
inline std::string fashion_mnist_dir() {
  const char* dir = std::getenv("SELFSUP_FMNIST_DIR");
  return dir && *dir ? dir : data::kFashionMnistDir;
}

// The --data spec for that directory: plain "fashion-mnist" (the engine's default location) unless
// SELFSUP_FMNIST_DIR moves it.
inline std::string fashion_mnist_spec() {
  const char* dir = std::getenv("SELFSUP_FMNIST_DIR");
  return dir && *dir ? "fashion-mnist:" + std::string(dir) : "fashion-mnist";
}

// "" when the four .gz files are there, else what is missing and how to install it.
inline std::string fashion_mnist_missing() {
  for (const char* f : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                        "t10k-labels-idx1-ubyte.gz"}) {
    const std::filesystem::path p = std::filesystem::path(fashion_mnist_dir()) / f;
    if (!std::filesystem::is_regular_file(p))
      return "Fashion-MNIST is missing (" + p.string() +
             " not found); the tests need it: sudo apt-get install dataset-fashion-mnist (or set "
             "SELFSUP_FMNIST_DIR to a directory holding the four .gz files)";
  }
  return "";
}

// Ends the current test case as FAILED when the data set is missing.
inline void require_fashion_mnist() {
  const std::string missing = fashion_mnist_missing();
  REQUIRE_MESSAGE(missing.empty(), missing);
}

}  // namespace selfsup::test
