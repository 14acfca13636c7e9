// The message of the selfsup::Error a callable throws, for tests that assert what an error says.
#pragma once

#include <doctest/doctest.h>

#include <string>

#include "engine/core/check.h"

namespace selfsup::test {

// Fails the current test case when `f` throws nothing (or something other than selfsup::Error escapes).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("expected a selfsup::Error");
  return "";
}

}  // namespace selfsup::test
