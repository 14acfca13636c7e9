// The main of test_cuda. Without a CUDA device (no driver counts as none) it prints why and exits 77, which
// ctest reports as SKIPPED (SKIP_RETURN_CODE 77), never as passed. With a device it runs every test case.
// This file carries the doctest implementation, so the shared doctest_main is not linked in.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "engine/core/cuda_context.h"

int main(int argc, char** argv) {
  if (selfsup::cuda_device_count() == 0) {
    std::printf("SKIPPED: no CUDA device (%s)\n", selfsup::cuda_no_device_reason().c_str());
    return 77;
  }
  std::printf("%s\n", selfsup::cuda_devices_summary().c_str());
  doctest::Context ctx;
  ctx.applyCommandLine(argc, argv);
  return ctx.run();
}
