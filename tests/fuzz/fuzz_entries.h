// The entry functions of the fuzz targets (docs/hardening.md): each feeds one input, as the bytes of a file
// from outside, through a reader of the engine. The contract every reader must keep: for any input it
// returns or throws selfsup::Error, never crashes, never allocates past a stated bound, never hangs.
//
// The same functions run under libFuzzer (tests/fuzz/libfuzzer/fuzz_main.cpp, `make fuzz`, clang) and in
// the regular suite (tests/fuzz/test_fuzz_replay.cpp, gcc), which replays every committed corpus and
// regression file through them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace selfsup::fuzz {

using EntryFn = void (*)(const uint8_t* data, size_t size);

struct Target {
  const char* name;  // the directory name under tests/fuzz/corpus/ and tests/fuzz/regressions/
  EntryFn run;
  size_t max_len;  // libFuzzer's -max_len for this target
};

// Every target, in the order `make fuzz` runs them.
const std::vector<Target>& targets();
// The target called `name`, or nullptr.
const Target* find_target(const std::string& name);

}  // namespace selfsup::fuzz
