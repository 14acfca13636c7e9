// Exact resume after a SIGKILL, for any method: the child-process machinery of tests/ssl/test_resume.cpp,
// shared so that each method's test (SimCLR, MoCo, PIRL, the pretext tasks) runs the same scenario. A run of
// `selfsup train --method M` in a child process is killed with SIGKILL at a step, twice, each time resumed
// from its last periodic checkpoint; the final checkpoint (weights, BN statistics, optimizer buffers, the
// method's own state such as a queue, a bank or a momentum encoder, the loader position, the RNG) and
// encoder.safetensors must be bit-identical to an uninterrupted run made by the library in this process, with
// metrics.jsonl holding each step exactly once. CPU only (tests/support/trainer_fixture.h): GPU kernels need
// not be bit-reproducible. Needs SELFSUP_BIN (the ssl tests' CMake sets it).
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/io/checkpoint.h"
#include "engine/io/safetensors.h"
#include "ssl/trainer/trainer.h"
#include "tests/support/trainer_fixture.h"

extern char** environ;

namespace selfsup::test {

// The lines of DIR/metrics.jsonl, step lines without their throughput field (wall-clock dependent).
inline std::vector<std::string> metrics_lines(const std::string& dir) {
  std::ifstream in(dir + "/metrics.jsonl");
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line.substr(0, line.find(", \"images_per_s\"")));
  return out;
}

// The steps of the step lines of DIR/metrics.jsonl, in file order (a torn last line, if any, is skipped).
inline std::vector<int64_t> logged_steps(const std::string& dir) {
  std::ifstream in(dir + "/metrics.jsonl");
  std::vector<int64_t> out;
  for (std::string line; std::getline(in, line) && !in.eof();) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value("type", "") == "step") out.push_back(j.at("step").get<int64_t>());
  }
  return out;
}

// A run's configuration without `out` (the one field two runs of the same configuration differ in).
inline nlohmann::json config_without_out(const std::string& json) {
  nlohmann::json j = nlohmann::json::parse(json);
  j.erase("out");
  return j;
}

// Bit identity: same names, dtypes, shapes and bytes (a NaN equals itself here, -0 differs from +0).
inline void check_same_bits(const TensorMap& a, const TensorMap& b, const std::string& what) {
  CAPTURE(what);
  std::vector<std::string> ka, kb;
  for (const auto& [k, _] : a) ka.push_back(k);
  for (const auto& [k, _] : b) kb.push_back(k);
  REQUIRE(ka == kb);
  for (const auto& [k, ta] : a) {
    CAPTURE(k);
    const Tensor& tb = b.at(k);
    REQUIRE(ta.dtype() == tb.dtype());
    REQUIRE(ta.sizes() == tb.sizes());
    const Tensor ca = ta.contiguous(), cb = tb.contiguous();
    CHECK(std::memcmp(ca.raw_data(), cb.raw_data(), static_cast<size_t>(ca.numel()) * dtype_size(ca.dtype())) == 0);
  }
}

// The run in `got` ended exactly as the uninterrupted run in `want`: the final checkpoint (every group of
// tensors, step, epoch, configuration), encoder.safetensors and the logged steps.
inline void check_same_run(const std::string& want, const std::string& got, int64_t steps) {
  const Checkpoint a = load_checkpoint(want), b = load_checkpoint(got);
  CHECK(a.step == steps);
  CHECK(b.step == steps);
  CHECK(a.epoch == b.epoch);
  CHECK(config_without_out(a.config_json) == config_without_out(b.config_json));
  CHECK(a.model.size() > 100);  // a ResNet-18 and its head: weights, biases, BN statistics and counters
  check_same_bits(a.model, b.model, "model.*");
  CHECK(!a.optim.empty());
  check_same_bits(a.optim, b.optim, "optim.*");
  check_same_bits(a.method, b.method, "method.*");
  check_same_bits(a.loader, b.loader, "loader.*");
  REQUIRE(a.rng.size() == b.rng.size());
  const SafetensorsFile ea = load_safetensors(want + "/encoder.safetensors");
  const SafetensorsFile eb = load_safetensors(got + "/encoder.safetensors");
  check_same_bits(ea.tensors, eb.tensors, "encoder.safetensors");
  // Each step once, in order, with the same loss, accuracy and learning rate, and nothing else.
  std::ostringstream expected, logged;
  for (int64_t i = 1; i <= steps; ++i) expected << ' ' << i;
  for (int64_t i : logged_steps(got)) logged << ' ' << i;
  CHECK(logged.str() == expected.str());
  const std::vector<std::string> lines_want = metrics_lines(want), lines_got = metrics_lines(got);
  REQUIRE(lines_got.size() == lines_want.size());
  for (size_t i = 0; i < lines_want.size(); ++i) CHECK(lines_got[i] == lines_want[i]);
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Starts `selfsup ARGS...` with stdout and stderr appended to LOG; returns its pid.
inline pid_t spawn_selfsup(const std::vector<std::string>& args, const std::string& log) {
  std::vector<std::string> all = {SELFSUP_BIN};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, SELFSUP_BIN, &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  REQUIRE_MESSAGE(rc == 0, "posix_spawn " << SELFSUP_BIN << ": " << std::strerror(rc));
  return pid;
}

// Waits for the child to finish; REQUIREs exit status 0 (the log is shown otherwise).
inline void wait_success(pid_t pid, const std::string& log) {
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  INFO(read_text(log));
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
}

// SIGKILLs the child as soon as DIR/metrics.jsonl shows step `at` (polling every millisecond); returns the
// highest step logged at the kill. REQUIREs that the child was still running, so it really died by the kill.
inline int64_t kill_at_step(pid_t pid, const std::string& dir, int64_t at, const std::string& log) {
  int status = 0;
  for (int polls = 0; polls < 300000; ++polls) {  // a safety net of ~5 minutes against a hung child
    REQUIRE_MESSAGE(waitpid(pid, &status, WNOHANG) == 0, "the child ended before step " << at << ":\n" << read_text(log));
    const std::vector<int64_t> steps = logged_steps(dir);
    if (!steps.empty() && steps.back() >= at) break;
    usleep(1000);
  }
  REQUIRE(::kill(pid, SIGKILL) == 0);
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE_MESSAGE(WIFSIGNALED(status), "the child was not killed:\n" << read_text(log));
  CHECK(WTERMSIG(status) == SIGKILL);
  const std::vector<int64_t> steps = logged_steps(dir);
  return steps.empty() ? 0 : steps.back();
}

// The whole scenario for `method`. The configuration is tiny_train_config with method set, then `configure`
// (the method's own fields); the child runs `selfsup` with train_args(config) plus `method_args`, the flags
// that set those same fields. A flag missing from method_args fails the test: the child's config.json (kept
// in its checkpoint) is compared with the library run's.
//
// 3 epochs of 8 steps with a checkpoint every 3 steps. Kill points, seeded (the same every run): one in the
// first run, leaving 15 or more steps to go; one in the resumed run, past every line the first run logged (the
// resumed run rewrites those lines, and a stale one must not trigger the kill) and 4 or more steps before the
// end, so the child is still running. Seed 49 draws steps 5 and 11, each two steps past a checkpoint: two
// logged steps are taken again.
inline void check_kill_resume(const std::string& method, const std::vector<std::string>& method_args = {},
                              const std::function<void(ssl::TrainConfig&)>& configure = {}) {
  namespace fs = std::filesystem;
  require_fashion_mnist();
  CAPTURE(method);
  const int64_t total = 24, every = 3;
  const std::string ref = fresh_run_dir("kill_" + method, "ref"), dir = fresh_run_dir("kill_" + method, "killed");
  const std::string log = dir + ".log";
  fs::remove(log);
  ssl::TrainConfig c = tiny_train_config(ref);
  c.method = method;
  if (configure) configure(c);
  c.epochs = 3;
  c.checkpoint_every = every;
  // The uninterrupted run is the library's (in this process): the CLI and the library must agree too.
  CHECK(ssl::train(c, {"", 0, true}).steps == total);
  c.out = dir;
  std::vector<std::string> args = train_args(c);
  args.insert(args.end(), {"--method", method});
  args.insert(args.end(), method_args.begin(), method_args.end());
  std::mt19937 rng(49);
  const int64_t kill1 = std::uniform_int_distribution<int64_t>(every + 1, 9)(rng);
  MESSAGE(method << ": first kill at step " << kill1);
  const int64_t logged1 = kill_at_step(spawn_selfsup(args, log), dir, kill1, log);
  const int64_t from1 = load_checkpoint(dir).step;
  const int64_t kill2 = logged1 + std::uniform_int_distribution<int64_t>(4, 8)(rng);
  REQUIRE_MESSAGE(kill2 <= total - 4, "the first kill landed at step " << logged1 << ", too late for a second");
  MESSAGE(method << ": second kill at step " << kill2);
  const std::vector<std::string> resume = {"train", "--resume", dir};
  const int64_t logged2 = kill_at_step(spawn_selfsup(resume, log), dir, kill2, log);
  const int64_t from2 = load_checkpoint(dir).step;
  // The checkpoint a resume starts from is the last periodic one: written after its step's metrics line, so
  // one period back when the kill fell between the two. Steps logged after it are taken (and logged) again.
  for (const auto& [logged, from] : {std::pair{logged1, from1}, std::pair{logged2, from2}}) {
    MESSAGE("killed at step " << logged << ", last checkpoint at step " << from);
    CHECK(from % every == 0);
    CHECK(from >= logged - every);
    CHECK(from <= logged);
  }
  CHECK(from2 > from1);
  wait_success(spawn_selfsup(resume, log), log);
  check_same_run(ref, dir, total);
}

}  // namespace selfsup::test
