// The CLI's contract for bad input: one clear line on stderr, a non-zero exit, nothing written.
#include <doctest/doctest.h>


#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "tests/support/fashion_mnist.h"
#include "tests/support/trainer_fixture.h"
#include "tests/support/cli_run.h"

namespace {

using Run = selfsup::test::CliRun;
Run run(const std::string& args) { return selfsup::test::run_selfsup(args); }

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

int lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

}  // namespace

TEST_CASE("bad command lines: one line, non-zero exit") {
  struct Case {
    const char* args;
    const char* says;
  } cases[] = {
      {"frobnicate", "unknown command 'frobnicate'"},
      {"train --method byol --steps 1 --out /tmp/selfsup_cli_never", "unknown --method 'byol'"},
      {"train --arch vgg --steps 1 --out /tmp/selfsup_cli_never", "unknown --arch 'vgg'"},
      {"train --bogus 1", "unknown option --bogus"},
      {"train --batch many", "--batch expects an integer, got 'many'"},
      {"train --data cifar10:/nonexistent --steps 1 --out /tmp/selfsup_cli_never", "/nonexistent"},
      {"train --resume /nonexistent/run", "/nonexistent/run"},
      {"train --device tpu --steps 1 --out /tmp/selfsup_cli_never", "unknown device 'tpu'"},
      {"eval linear", "give exactly one of --checkpoint DIR or --weights FILE"},
      {"eval cluster --checkpoint x", "unknown protocol 'cluster'"},
      {"embed --data fashion-mnist", "exactly one of --checkpoint DIR or --weights FILE"},
      {"demo --preset huge --out /tmp/selfsup_cli_never", "unknown --preset 'huge'"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.args);
    Run r = run(c.args);
    CHECK(r.code != 0);
    CHECK(r.out.find(c.says) != std::string::npos);
    CHECK(r.out.find("error:") != std::string::npos);
    CHECK(lines(r.out.substr(r.out.find("error:"))) == 1);
  }
  CHECK(!std::filesystem::exists("/tmp/selfsup_cli_never/ckpt-1.safetensors"));
}

TEST_CASE("every command has --help") {
  for (const char* cmd : {"train", "eval", "embed", "augment", "demo", "supervised", "info"}) {
    CAPTURE(cmd);
    Run r = run(std::string(cmd) + " --help");
    CHECK(r.code == 0);
    CHECK(r.out.find("usage: selfsup") != std::string::npos);
  }
}

TEST_CASE("train, eval knn, eval linear and embed from the command line") {
  selfsup::test::require_fashion_mnist();
  const std::string dir = selfsup::test::fresh_run_dir("cli", "run"), data = selfsup::test::fashion_mnist_spec();
  // On the CPU even where a GPU exists: the test is about the commands, not the device.
  Run t = run("train --data " + data + " --device cpu --limit 256 --batch 64 --width 4 --proj-hidden 32 --proj-dim 16 "
              "--steps 4 --no-knn --out " + dir);
  INFO(t.out);
  REQUIRE(t.code == 0);
  CHECK(t.out.find("trained 4 steps") != std::string::npos);
  Run k = run("eval knn --checkpoint " + dir + " --train-limit 500 --test-limit 200 --k 20");
  INFO(k.out);
  CHECK(k.code == 0);
  CHECK(k.out.find("kNN (k=20, T=0.07) test top-1:") != std::string::npos);
  Run l = run("eval linear --checkpoint " + dir + " --train-limit 500 --test-limit 200 --epochs 2");
  INFO(l.out);
  CHECK(l.code == 0);
  CHECK(l.out.find("linear probe: train top-1") != std::string::npos);
  const std::string npy = dir + "/feats.npy";
  Run e = run("embed --checkpoint " + dir + " --data " + data + " --split test --limit 10 --out " + npy);
  INFO(e.out);
  CHECK(e.code == 0);
  CHECK(e.out.find("10 x 32 features") != std::string::npos);
  // 128-byte header (64-byte multiple) + 10 x 32 float32
  CHECK(std::filesystem::file_size(npy) == 128 + 10 * 32 * 4);
  // --weights: the torchvision-named encoder.safetensors and the run's last checkpoint (its encoder part)
  // both load with a matching description and give the same features; another width is named as such.
  const std::string weights = " --data " + data + " --width 4 --limit 5 --out ";
  Run w = run("embed --weights " + dir + "/encoder.safetensors" + weights + dir + "/w.npy");
  INFO(w.out);
  CHECK(w.code == 0);
  Run wc = run("embed --weights " + dir + "/ckpt-4.safetensors" + weights + dir + "/wc.npy");
  INFO(wc.out);
  CHECK(wc.code == 0);
  CHECK(slurp(dir + "/w.npy") == slurp(dir + "/wc.npy"));
  CHECK(slurp(dir + "/w.npy").size() == 128 + 5 * 32 * 4);
  for (const char* file : {"/encoder.safetensors", "/ckpt-4.safetensors"}) {
    CAPTURE(file);
    Run bad = run("embed --weights " + dir + file + " --data " + data + " --width 8 --limit 5 --out " + dir + "/x.npy");
    CHECK(bad.code != 0);
    CHECK(bad.out.find("the weights have width 4 (conv1.weight [4, 1, 3, 3]), not the 8 described: pass --width 4") !=
          std::string::npos);
    CHECK(!std::filesystem::exists(dir + "/x.npy"));
  }
  // A file that is no state dict (here the run's PNG plot is not even safetensors): one error line, naming it.
  Run junk = run("embed --weights " + dir + "/metrics.png --data " + data + " --limit 5 --out " + dir + "/x.npy");
  CHECK(junk.code != 0);
  CHECK(junk.out.find(dir + "/metrics.png") != std::string::npos);
}
