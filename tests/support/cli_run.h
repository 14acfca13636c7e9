// Running the selfsup binary from a test: the CLI tests check its exit code and what it prints, exactly
// as a user sees them (stdout and stderr together, in order).
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace selfsup::test {

struct CliRun {
  int code;         // the exit status; -1 when the process did not exit normally
  std::string out;  // stdout and stderr together
};

// `selfsup ARGS` through the shell (SELFSUP_BIN is the built binary, set by CMake for the ssl tests).
inline CliRun run_selfsup(const std::string& args) {
  const std::string cmd = std::string(SELFSUP_BIN) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[512];
  while (p && std::fgets(buf, sizeof buf, p)) out += buf;
  const int status = p ? pclose(p) : -1;
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace selfsup::test
