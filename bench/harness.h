// Shared by the bench/ programs: median timing after warm-up, and running a PyTorch peer script that
// prints one flat JSON object per line (the peer measures the same work on the same machine in the same run).
#pragma once
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace selfsup::bench {

// One line naming the CPU this runs on: model, logical CPUs, and the vector/matrix extensions that decide
// which kernels oneDNN and the compiler pick (results from different machines are not comparable; the
// same build directory has run on an AVX-512/AMX Xeon and on an AVX2-only EPYC).
inline std::string cpu_description() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, model = "unknown CPU", flags;
  while (std::getline(in, line)) {
    const auto value = [&] { return line.substr(line.find(':') + 2); };
    if (line.rfind("model name", 0) == 0 && model == "unknown CPU") model = value();
    if (line.rfind("flags", 0) == 0 && flags.empty()) flags = " " + value() + " ";
  }
  std::string isa;
  for (const char* f : {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})
    if (flags.find(std::string(" ") + f + " ") != std::string::npos) isa += std::string(isa.empty() ? "" : " ") + f;
  std::ostringstream os;
  os << "cpu: " << model << ", " << sysconf(_SC_NPROCESSORS_ONLN) << " logical CPUs, " << (isa.empty() ? "no AVX2" : isa);
  return os.str();
}

// Median wall time in milliseconds of `runs` calls after `warmup` untimed ones.
inline double median_ms(const std::function<void()>& fn, int warmup, int runs) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Median of `v` (the mean of the middle two for an even count); 0 when empty.
inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Calls `ours(round)` and `peer(round)` for `rounds` rounds in the order A B, B A, A B, ...: ours first in
// even rounds, the peer first in odd ones. The shared development host's speed drifts within minutes (the
// same binary moved 25% between runs); with a fixed order that drift lands on one side of the ratio, with
// the mirrored order it lands on both. Benchmarks print each side's median over the rounds and the ratio
// of every round, so the spread is visible next to the number.
inline void alternate(int rounds, const std::function<void(int)>& ours, const std::function<void(int)>& peer) {
  for (int r = 0; r < rounds; ++r) {
    if (r % 2 == 0) {
      ours(r);
      peer(r);
    } else {
      peer(r);
      ours(r);
    }
  }
}

// "x, y, ...": `values` with `decimals` decimals and `suffix` each, for the per-round columns.
inline std::string list(const std::vector<double>& values, int decimals, const char* suffix = "") {
  std::string out;
  char buf[64];
  for (double v : values) {
    std::snprintf(buf, sizeof buf, "%.*f%s", decimals, v, suffix);
    out += (out.empty() ? "" : ", ") + std::string(buf);
  }
  return out;
}

// Reads `"name": <number>` from a flat JSON line; 0 when absent.
inline double json_number(const std::string& line, const char* name) {
  const auto at = line.find("\"" + std::string(name) + "\":");
  return at == std::string::npos ? 0.0 : std::strtod(line.c_str() + at + std::strlen(name) + 3, nullptr);
}

inline std::string json_string(const std::string& line, const char* name) {
  const std::string tag = "\"" + std::string(name) + "\": \"";
  const auto at = line.find(tag);
  if (at == std::string::npos) return "";
  const auto begin = at + tag.size();
  return line.substr(begin, line.find('"', begin) - begin);
}

// bench/peers/<name>: SELFSUP_PEER_DIR when set, else the source tree's bench/peers (an absolute path CMake
// compiles in, so programs run from any directory).
#ifndef SELFSUP_BENCH_DIR
#error "bench programs are built by CMake, which defines SELFSUP_BENCH_DIR"
#endif
inline std::string peer_script(const char* name) {
  const char* dir = std::getenv("SELFSUP_PEER_DIR");
  return std::string(dir && *dir ? dir : SELFSUP_BENCH_DIR "/peers") + "/" + name;
}

// Runs `/usr/bin/python3 script args` with 2 threads and returns its stdout lines; empty when the peer
// (Python or the script) is unavailable, so the caller can print "peer: PyTorch not available".
// SELFSUP_PYTHON names another interpreter (the GPU machine's PyTorch lives in a virtual environment), and
// SELFSUP_PEER_LD_LIBRARY_PATH, when set, replaces LD_LIBRARY_PATH for the peer: bench/gpu_env.sh puts
// carried Debian libraries there for our programs, which must not shadow Python's own.
inline std::vector<std::string> run_peer(const std::string& script, const std::string& args) {
  std::vector<std::string> lines;
  const char* env_python = std::getenv("SELFSUP_PYTHON");
  const std::string python = env_python && *env_python ? env_python : "/usr/bin/python3";
  if (access(python.c_str(), X_OK) != 0 || access(script.c_str(), R_OK) != 0) return lines;
  const char* peer_ld = std::getenv("SELFSUP_PEER_LD_LIBRARY_PATH");
  const std::string ld = peer_ld ? "LD_LIBRARY_PATH='" + std::string(peer_ld) + "' " : "";
  const std::string cmd = ld + "OMP_NUM_THREADS=2 " + python + " " + script + " " + args + " 2>/dev/null";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return lines;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, pipe)) lines.emplace_back(buf);
  pclose(pipe);
  return lines;
}

}  // namespace selfsup::bench
