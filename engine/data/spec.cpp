#include "engine/data/spec.h"

#include "engine/data/cifar.h"
#include "engine/data/idx.h"
#include "engine/data/stl10.h"

namespace selfsup::data {

ImageDataset load_dataset(const std::string& spec, const std::string& split, const ImageFolderOptions& folder) {
  const size_t colon = spec.find(':');
  const std::string kind = spec.substr(0, colon), path = colon == std::string::npos ? "" : spec.substr(colon + 1);
  SELFSUP_CHECK(split == "train" || split == "test" || (kind == "stl10" && (split == "unlabeled" ||
                                                                              split == "train+unlabeled")),
                "data: unknown split '", split, "' for ", kind, " (expected train or test",
                kind == "stl10" ? ", unlabeled or train+unlabeled)" : ")");
  const bool train = split != "test";
  if (kind == "fashion-mnist") return load_fashion_mnist(path.empty() ? "fashion-mnist" : path, train);
  SELFSUP_CHECK(kind == "cifar10" || kind == "cifar100" || kind == "stl10" || kind == "folder", "data: unknown --data '",
                spec, "' (expected fashion-mnist, cifar10:PATH, cifar100:PATH, stl10:PATH or folder:PATH)");
  SELFSUP_CHECK(!path.empty(), "data: --data ", kind, " needs a path, e.g. ", kind, ":/data/", kind);
  if (kind == "cifar10") return load_cifar(CifarKind::cifar10, path, train);
  if (kind == "cifar100") return load_cifar(CifarKind::cifar100, path, train);
  if (kind == "stl10") return load_stl10(path, split);
  return open_image_folder(path, folder);
}

}  // namespace selfsup::data
