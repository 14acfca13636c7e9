// `selfsup eval knn|linear` end to end on Fashion-MNIST with the committed encoder
// models/pretrained/fmnist-cpu-w8-b64-e20: the printed top-1 must be far above chance (10%), which fails
// if labels and features fall out of step, the normalisation is wrong or the weights do not load. The
// encoder scored kNN-200 81.9% and probe 86.6% on the full data when committed (its result.json); on the
// 2000/500-image subsets used here (about 8 s together) it measured kNN-20 82.2% and probe 85.0%, so the
// bound of 70% leaves room for other summation orders without letting a broken pipeline through.
// `eval` has no --device option: it always builds the encoder on the CPU (ssl/trainer/encoder_io.cpp).
// Fashion-MNIST is a declared dependency: without it these tests fail, saying how to install it.
#include <doctest/doctest.h>


#include <cstdio>
#include <filesystem>
#include <regex>
#include <string>

#include "tests/support/cli_run.h"
#include "tests/support/fashion_mnist.h"

namespace {

const std::string kEncoder = std::string(SELFSUP_SOURCE_DIR) + "/models/pretrained/fmnist-cpu-w8-b64-e20";

using Run = selfsup::test::CliRun;
Run run(const std::string& args) { return selfsup::test::run_selfsup(args); }

void require_inputs() {
  selfsup::test::require_fashion_mnist();
  REQUIRE_MESSAGE(std::filesystem::exists(kEncoder + "/encoder.safetensors"), "committed encoder missing: ", kEncoder);
}

// The percentage after `label` in the output, e.g. "test top-1: 82.20%" -> 82.2; -1 when absent.
double percent_after(const std::string& out, const std::string& label) {
  std::smatch m;
  if (!std::regex_search(out, m, std::regex(label + R"(\s*([0-9.]+)%)"))) return -1.0;
  return std::stod(m[1].str());
}

}  // namespace

TEST_CASE("selfsup eval knn on Fashion-MNIST: top-1 far above chance") {
  require_inputs();
  Run r = run("eval knn --checkpoint " + kEncoder + " --data " + selfsup::test::fashion_mnist_spec() + " --train-limit 2000 --test-limit 500 --k 20");
  INFO(r.out);
  REQUIRE(r.code == 0);
  const double top1 = percent_after(r.out, R"(kNN \(k=20, T=0\.07\) test top-1:)");
  CHECK(top1 > 70.0);
  CHECK(top1 <= 100.0);
}

TEST_CASE("selfsup eval linear on Fashion-MNIST: train and test top-1 far above chance") {
  require_inputs();
  Run r = run("eval linear --checkpoint " + kEncoder + " --data " + selfsup::test::fashion_mnist_spec() + " --train-limit 2000 --test-limit 500 --epochs 10");
  INFO(r.out);
  REQUIRE(r.code == 0);
  const double train = percent_after(r.out, "train top-1"), test = percent_after(r.out, "test top-1");
  CHECK(train > 70.0);
  CHECK(test > 70.0);
  CHECK(test <= 100.0);
}
