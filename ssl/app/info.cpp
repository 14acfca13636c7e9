// `selfsup info`: version, build options and devices; with --data folder:PATH, what an image folder holds.
#include <omp.h>

#include <algorithm>
#include <cstdio>

#include "engine/core/check.h"
#include "engine/core/cuda_context.h"
#include "engine/data/image_folder.h"
#include "engine/dist/communicator.h"
#include "ssl/app/commands.h"

namespace selfsup::app {

namespace {

const char* kInfoUsage =
    "usage: selfsup info [--data folder:PATH]\n"
    "\n"
    "Prints the version, the build options and the devices. With --data folder:PATH: the images per class,\n"
    "the distribution of their sizes and channel counts, and the files that cannot be read (from the image\n"
    "headers only, so it is quick for 100k+ images).\n";

// The census as text: counts per class, the most common sizes, ranges, channels, unreadable files.
void print_census(const std::string& root, const ImageFolderCensus& c) {
  std::printf("folder:   %s: %lld images in %zu classes, %zu unreadable\n", root.c_str(),
              static_cast<long long>(c.images()), c.classes.size(), c.unreadable.size());
  std::printf("classes: ");
  for (size_t k = 0; k < c.classes.size(); ++k)
    std::printf("%s %s %lld", k ? "," : "", c.classes[k].c_str(), static_cast<long long>(c.per_class[k]));
  std::printf("\n");
  if (!c.sizes.empty()) {
    std::vector<std::pair<int64_t, std::pair<int, int>>> by_count;  // (count, (w, h)), most common first
    std::vector<int> shorts;                                       // the short side of every image
    for (const auto& [wh, n] : c.sizes) {
      by_count.push_back({n, wh});
      shorts.insert(shorts.end(), static_cast<size_t>(n), std::min(wh.first, wh.second));
    }
    std::sort(by_count.begin(), by_count.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    std::printf("sizes:    %zu distinct (width x height); most common:", by_count.size());
    for (size_t k = 0; k < by_count.size() && k < 5; ++k)
      std::printf("%s %dx%d (%lld)", k ? "," : "", by_count[k].second.first, by_count[k].second.second,
                  static_cast<long long>(by_count[k].first));
    std::sort(shorts.begin(), shorts.end());
    std::printf("\n          short side min %d, median %d, max %d\n", shorts.front(), shorts[shorts.size() / 2],
                shorts.back());
  }
  std::printf("channels:");
  for (const auto& [ch, n] : c.channels) {
    const char* name = ch == 1 ? "grey" : ch == 2 ? "grey+alpha" : ch == 3 ? "RGB" : "RGBA";
    std::printf(" %s %lld", name, static_cast<long long>(n));
  }
  std::printf("\n");
  for (size_t k = 0; k < c.unreadable.size() && k < 20; ++k) std::printf("unreadable: %s\n", c.unreadable[k].c_str());
  if (c.unreadable.size() > 20) std::printf("unreadable: ... and %zu more\n", c.unreadable.size() - 20);
}

}  // namespace

int cmd_info(const std::vector<std::string>& args) {
  std::string data;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::printf("%s", kInfoUsage);
      return 0;
    }
    if (a == "--data") {
      SELFSUP_CHECK(i + 1 < args.size(), "info: --data expects folder:PATH");
      data = args[++i];
      SELFSUP_CHECK(data.rfind("folder:", 0) == 0 && data.size() > 7, "info: --data '", data,
                    "': only folder:PATH is described (the other data sets have fixed sizes)");
      continue;
    }
    throw Error("info: unknown option '" + a + "'");
  }
  if (!data.empty()) {
    const std::string root = data.substr(7);
    print_census(root, census_image_folder(root));
    return 0;
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
  std::printf("parallel: MPI backend %s, NCCL backend %s (mpirun -np N selfsup train; docs/distributed.md)\n",
              dist::mpi_built() ? "compiled" : "not compiled", dist::nccl_built() ? "compiled" : "not compiled");
  return 0;
}

}  // namespace selfsup::app
