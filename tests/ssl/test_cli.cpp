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
      {"eval linear", "--checkpoint DIR is required"},
      {"eval cluster --checkpoint x", "unknown protocol 'cluster'"},
      {"embed --data fashion-mnist", "exactly one of --checkpoint DIR or --weights FILE"},
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
