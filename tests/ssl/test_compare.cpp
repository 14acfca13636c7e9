// `selfsup compare` on fixture run directories (config.json, result.json, evals.jsonl written here): the
// table holds exactly the recorded numbers (the newest record wins, a record beats result.json, a missing
// number is '-'), compare.md and compare.png are written, bad input is a one-line error. `--record` appends
// to evals.jsonl without touching the lines already there, and refuses a partial test split.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "tests/support/cli_run.h"
#include "tests/support/fashion_mnist.h"

namespace {

namespace fs = std::filesystem;
using Run = selfsup::test::CliRun;
Run run(const std::string& args) { return selfsup::test::run_selfsup(args); }

std::string temp_dir(const std::string& tag) {
  const fs::path p = fs::temp_directory_path() / ("selfsup-" + tag + "-" + std::to_string(getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

const char* kConfigA = R"({"method": "simclr", "arch": "resnet18", "width": 8, "total_steps": 1000, "batch": 64})";
const char* kConfigB = R"({"method": "simclr", "arch": "resnet34", "width": 16, "total_steps": 50, "batch": 256})";

}  // namespace

TEST_CASE("compare: the table holds exactly what was recorded") {
  const std::string root = temp_dir("compare");
  const fs::path a = fs::path(root) / "enc-a", b = fs::path(root) / "enc-b";
  write(a / "config.json", kConfigA);
  write(a / "result.json", R"({"trained": "x", "linear_probe_test_top1": 0.8, "knn200_test_top1": 0.7,
                              "images_per_s": 1000})");
  // The older fine-tuning record at 1% is replaced by the newer one; the linear record beats result.json.
  write(a / "evals.jsonl",
        R"({"protocol": "finetune", "label_fraction": 0.01, "test_images": 10000, "test_top1": 0.1, "scratch_top1": 0.05})"
        "\n"
        R"({"protocol": "linear", "label_fraction": 1, "test_images": 10000, "test_top1": 0.8512, "settings": "epochs=30"})"
        "\n"
        R"({"protocol": "finetune", "label_fraction": 0.01, "test_images": 10000, "test_top1": 0.6234, "scratch_top1": 0.5})"
        "\n");
  write(b / "config.json", kConfigB);
  write(b / "evals.jsonl", R"({"protocol": "knn", "label_fraction": 1, "test_images": 10000, "test_top1": 0.7777})" "\n");
  const std::string out = root + "/out";
  const Run r = run("compare " + a.string() + " " + b.string() + " --fractions 0.01,0.1 --out " + out);
  INFO(r.out);
  REQUIRE(r.code == 0);
  const std::string md = slurp(out + "/compare.md");
  CHECK(md.find("| encoder | method | arch | linear | kNN | FT 1% | FT 10% | scratch 1% | scratch 10% | images/s | "
                "train min |") != std::string::npos);
  // enc-a: 1000 steps x 64 images at 1000 images/s = 64 s = 1.1 min.
  CHECK(md.find("| enc-a | simclr | resnet18 w8 | 85.12% | 70.00% | 62.34% | - | 50.00% | - | 1000 | 1.1 |") !=
        std::string::npos);
  CHECK(md.find("| enc-b | simclr | resnet34 w16 | - | 77.77% | - | - | - | - | - | - |") != std::string::npos);
  CHECK(md.find("- enc-a linear: epochs=30, 10000 test images") != std::string::npos);
  // The terminal shows the same rows, aligned.
  CHECK(r.out.find("enc-a    simclr  resnet18 w8   85.12%  70.00%  62.34%") != std::string::npos);
  // compare.png: a PNG as wide as the default chart.
  const std::string png = slurp(out + "/compare.png");
  REQUIRE(png.size() > 24);
  CHECK(png.compare(1, 3, "PNG") == 0);
  const uint32_t w = (uint32_t(uint8_t(png[16])) << 24) | (uint32_t(uint8_t(png[17])) << 16) |
                     (uint32_t(uint8_t(png[18])) << 8) | uint32_t(uint8_t(png[19]));
  CHECK(w == 900);
  // The folder holding both stands for them, in name order.
  const Run folder = run("compare " + root + " --fractions 0.01,0.1 --out " + root + "/out2");
  REQUIRE(folder.code == 0);
  CHECK(slurp(root + "/out2/compare.md") == md);
  fs::remove_all(root);
}

TEST_CASE("compare: bad input is one line naming what is wrong") {
  const std::string root = temp_dir("compare-bad");
  const fs::path good = fs::path(root) / "good", broken = fs::path(root) / "broken", empty = fs::path(root) / "empty";
  fs::create_directories(empty);
  write(good / "config.json", kConfigA);
  write(broken / "config.json", kConfigA);
  write(broken / "evals.jsonl", R"({"protocol": "knn", "label_fraction": 1, "test_images": 1, "test_top1": 0.5})"
                                "\n{\"protocol\": \"knn\"}\n");
  struct Case {
    std::string args, says;
  } cases[] = {
      {"compare", "give one or more run directories"},
      {"compare " + root + "/nowhere", "is not a directory"},
      {"compare " + empty.string(), "has no config.json, so it is not a run directory"},
      {"compare " + broken.string(), "evals.jsonl:2: not an evaluation record"},
      {"compare " + good.string() + " --fractions 0.1,2", "'2' is not a fraction in (0, 1]"},
      {"compare " + good.string() + " --fractions 0.1,x", "'x' is not a fraction"},
      {"compare " + good.string() + " --colour red", "colour"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.args);
    const Run r = run(c.args + " --out " + root + "/out");
    CHECK(r.code != 0);
    CHECK(r.out.find(c.says) != std::string::npos);
    CHECK(lines(r.out) == 1);
  }
  fs::remove_all(root);
}

TEST_CASE("eval --record appends to the encoder's evals.jsonl and compare shows it") {
  selfsup::test::require_fashion_mnist();
  const std::string root = temp_dir("record");
  const fs::path enc = fs::path(root) / "enc";
  fs::copy(std::string(SELFSUP_SOURCE_DIR) + "/models/pretrained/fmnist-cpu-w8-b64-e20", enc);
  const std::string old_line = R"({"protocol": "linear", "label_fraction": 1, "test_images": 10000, "test_top1": 0.5})";
  write(enc / "evals.jsonl", old_line + "\n");
  const std::string base = "eval knn --checkpoint " + enc.string() + " --data " + selfsup::test::fashion_mnist_spec() +
                           " --label-fraction 0.01 --k 20 --threads 2 --out " + root + "/subset";
  const Run r = run(base + " --record");
  INFO(r.out);
  REQUIRE(r.code == 0);
  const std::string text = slurp(enc / "evals.jsonl");
  REQUIRE(lines(text) == 2);
  CHECK(text.compare(0, old_line.size() + 1, old_line + "\n") == 0);
  const std::string added = text.substr(old_line.size() + 1);
  CHECK(added.find("\"protocol\":\"knn\"") != std::string::npos);
  CHECK(added.find("\"label_fraction\":0.01") != std::string::npos);
  CHECK(added.find("\"test_images\":10000") != std::string::npos);
  CHECK(added.find("\"settings\":\"k=20 T=0.07\"") != std::string::npos);
  // A partial test split is not the protocol's number: refused, nothing appended.
  const Run partial = run(base + " --record --test-limit 100");
  CHECK(partial.code != 0);
  CHECK(partial.out.find("--record needs --checkpoint DIR") != std::string::npos);
  CHECK(slurp(enc / "evals.jsonl") == text);
  // compare reads the linear record (it beats result.json's 86.56%).
  const Run c = run("compare " + enc.string() + " --out " + root + "/out");
  INFO(c.out);
  REQUIRE(c.code == 0);
  CHECK(slurp(root + "/out/compare.md").find("| enc | simclr | resnet18 w8 | 50.00% | 81.89% |") != std::string::npos);
  fs::remove_all(root);
}
