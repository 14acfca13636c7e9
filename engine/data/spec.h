// Data set specs as the CLI takes them: "fashion-mnist[:ROOT]", "cifar10:PATH", "cifar100:PATH",
// "stl10:PATH", "folder:PATH". One parser for every command (train, eval, embed, augment).
#pragma once
#include <string>

#include "engine/data/dataset.h"
#include "engine/data/image_folder.h"

namespace selfsup::data {

// split: "train" or "test" (STL-10 also "unlabeled" and "train+unlabeled"; folders have one split).
// Errors name the spec and list the accepted forms.
ImageDataset load_dataset(const std::string& spec, const std::string& split,
                          const ImageFolderOptions& folder = ImageFolderOptions());

}  // namespace selfsup::data
