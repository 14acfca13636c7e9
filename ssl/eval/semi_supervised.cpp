#include "ssl/eval/semi_supervised.h"

#include <cstdio>
#include <filesystem>
#include <vector>

#include "engine/data/sampler.h"
#include "engine/io/npy.h"

namespace selfsup::eval {

ImageDataset labelled_subset(const ImageDataset& train, int64_t limit, double fraction, uint64_t seed,
                             const std::string& out_dir) {
  const int64_t pool = limit > 0 ? std::min(limit, train.size()) : train.size();
  const std::vector<int64_t> ids =
      data::class_balanced_subset(train.labels.narrow(0, 0, pool), train.num_classes, fraction, seed);
  std::filesystem::create_directories(out_dir);
  char name[96];
  std::snprintf(name, sizeof name, "label-subset-%g-seed%llu.npy", fraction, static_cast<unsigned long long>(seed));
  const std::string path = (std::filesystem::path(out_dir) / name).string();
  save_npy(path, Tensor::from_vector(ids, {static_cast<int64_t>(ids.size())}));
  std::printf("labelled subset: %zu of %ld training images (%g of each class, seed %llu) -> %s\n", ids.size(),
              long(pool), fraction, static_cast<unsigned long long>(seed), path.c_str());
  return data::select_images(train, ids);
}

}  // namespace selfsup::eval
