// `selfsup info`: version, build options and devices.
#include <omp.h>

#include <cstdio>

#include "engine/core/check.h"
#include "engine/core/cuda_context.h"
#include "ssl/app/commands.h"

namespace selfsup::app {

int cmd_info(const std::vector<std::string>& args) {
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h") {
      std::printf("usage: selfsup info\n\nPrints the version, the build options and the devices.\n");
      return 0;
    }
    throw Error("info: unknown option '" + a + "'");
  }
  std::printf("selfsup %s\n", SELFSUP_VERSION);
#ifdef SELFSUP_HAVE_CUDA
  std::printf("build:   CUDA backend compiled\n");
#else
  std::printf("build:   CPU only (CUDA backend not compiled)\n");
#endif
  std::printf("cuda:    %s\n", cuda_devices_summary().c_str());
  std::printf("device:  --device auto selects %s\n", default_device().str().c_str());
  std::printf("cpu:     %d OpenMP threads (OMP_NUM_THREADS), oneDNN for float32 GEMM/convolution\n",
              omp_get_max_threads());
  return 0;
}

}  // namespace selfsup::app
