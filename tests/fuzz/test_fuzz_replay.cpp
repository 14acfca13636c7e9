// Replays every committed fuzz input (tests/fuzz/corpus/<target>/ seeds and tests/fuzz/regressions/<target>/,
// the inputs that once crashed a reader) through the fuzz targets' entry functions, built with the regular
// compiler and without libFuzzer: each input must either parse or throw selfsup::Error.
#include <doctest/doctest.h>

#include <algorithm>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "engine/core/check.h"
#include "tests/fuzz/fuzz_entries.h"

namespace fs = std::filesystem;

namespace {

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in.good());
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// "parsed", "error" or the failure: another exception's message.
std::string replay(const selfsup::fuzz::Target& t, const std::vector<uint8_t>& bytes) {
  try {
    t.run(bytes.data(), bytes.size());
    return "parsed";
  } catch (const selfsup::Error&) {
    return "error";
  } catch (const std::exception& e) {
    return std::string("unexpected exception: ") + e.what();
  }
}

}  // namespace

TEST_CASE("fuzz corpus and regressions: every input parses or throws selfsup::Error") {
  const fs::path root = SELFSUP_FUZZ_DIR;
  for (const auto& t : selfsup::fuzz::targets()) {
    const std::vector<fs::path> seeds = files_in(root / "corpus" / t.name);
    const std::vector<fs::path> regressions = files_in(root / "regressions" / t.name);
    INFO("target ", t.name);
    CHECK_MESSAGE(!seeds.empty(), "no seed corpus in tests/fuzz/corpus/", t.name);
    int parsed = 0;
    for (const auto* set : {&seeds, &regressions}) {
      for (const fs::path& p : *set) {
        const std::vector<uint8_t> bytes = read_bytes(p);
        CHECK_MESSAGE(bytes.size() <= t.max_len, p.string(), " is longer than the target's max_len ", t.max_len);
        const std::string outcome = replay(t, bytes);
        CHECK_MESSAGE((outcome == "parsed" || outcome == "error"), p.string(), ": ", outcome);
        parsed += outcome == "parsed";
      }
    }
    // Each corpus holds valid files of its format, so the replay reaches past the readers' first checks.
    CHECK_MESSAGE(parsed > 0, "no input of tests/fuzz/corpus/", t.name, " parsed");
  }
}
