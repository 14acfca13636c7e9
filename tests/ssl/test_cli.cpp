// The CLI's contract for bad input: one clear line on stderr, a non-zero exit, nothing written.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <string>

namespace {

struct Run {
  int code;
  std::string out;  // stdout and stderr together
};

Run run(const std::string& args) {
  std::string cmd = std::string(SELFSUP_BIN) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[512];
  while (p && std::fgets(buf, sizeof buf, p)) out += buf;
  int status = p ? pclose(p) : -1;
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
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
      {"eval linear", "--checkpoint DIR is required"},
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
  if (!std::filesystem::exists("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")) {
    MESSAGE("SKIPPED: dataset-fashion-mnist is not installed");
    return;
  }
  const std::string dir = (std::filesystem::temp_directory_path() / "selfsup_cli_run").string();
  std::filesystem::remove_all(dir);
  Run t = run("train --limit 256 --batch 64 --width 4 --proj-hidden 32 --proj-dim 16 --steps 4 --no-knn --out " + dir);
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
  Run e = run("embed --checkpoint " + dir + " --data fashion-mnist --split test --limit 10 --out " + npy);
  INFO(e.out);
  CHECK(e.code == 0);
  CHECK(e.out.find("10 x 32 features") != std::string::npos);
  // 128-byte header (64-byte multiple) + 10 x 32 float32
  CHECK(std::filesystem::file_size(npy) == 128 + 10 * 32 * 4);
  // The torchvision-named encoder weights load with a matching description, and not with another width.
  Run w = run("embed --weights " + dir + "/encoder.safetensors --width 4 --limit 5 --out " + dir + "/w.npy");
  INFO(w.out);
  CHECK(w.code == 0);
  Run bad = run("embed --weights " + dir + "/encoder.safetensors --width 8 --limit 5 --out " + dir + "/x.npy");
  CHECK(bad.code != 0);
  CHECK(bad.out.find("does not match resnet18 width 8") != std::string::npos);
  CHECK(!std::filesystem::exists(dir + "/x.npy"));
}
