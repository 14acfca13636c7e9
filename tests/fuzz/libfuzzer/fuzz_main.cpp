// libFuzzer's entry point for one target of tests/fuzz/fuzz_entries.cpp, chosen at build time
// (SELFSUP_FUZZ_TARGET). A selfsup::Error is the expected answer to a bad input; any other exception
// escapes, and libFuzzer reports it (with the input) as a crash.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "engine/core/check.h"
#include "tests/fuzz/fuzz_entries.h"

namespace {

const selfsup::fuzz::Target& target() {
  static const selfsup::fuzz::Target* t = [] {
    const selfsup::fuzz::Target* found = selfsup::fuzz::find_target(SELFSUP_FUZZ_TARGET);
    if (!found) {
      std::fprintf(stderr, "fuzz: no target named '%s' in tests/fuzz/fuzz_entries.cpp\n", SELFSUP_FUZZ_TARGET);
      std::abort();
    }
    return found;
  }();
  return *t;
}

}  // namespace

// Adds -max_len=<the target's> unless the command line sets one (libFuzzer lets this hook edit argv).
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  static std::vector<char*> args(*argv, *argv + *argc);
  static std::string max_len = "-max_len=" + std::to_string(target().max_len);
  for (char* a : args)
    if (std::strncmp(a, "-max_len=", 9) == 0) return 0;
  args.insert(args.begin() + 1, max_len.data());
  args.push_back(nullptr);
  *argc = static_cast<int>(args.size()) - 1;
  *argv = args.data();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    target().run(data, size);
  } catch (const selfsup::Error&) {
  }
  return 0;
}
