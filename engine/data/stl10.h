// STL-10 binary (stl10_binary/): {train,test,unlabeled}_X.bin hold uint8 images of 3x96x96 stored per image
// as three planes, each plane column-major (the MATLAB layout); {train,test}_y.bin hold labels 1..10.
// Images become uint8 (N, 96, 96, 3) row-major, labels 0..9 (-1 for unlabeled).
#pragma once
#include <string>

#include "engine/data/dataset.h"

namespace selfsup {

// split: "train", "test", "unlabeled" or "train+unlabeled" (the usual SSL pre-training set). `dir` is the
// stl10_binary directory. Errors name the file: missing, a size not a multiple of 27648 bytes, a label file
// whose count differs from the images', a label outside 1..10.
ImageDataset load_stl10(const std::string& dir, const std::string& split);

}  // namespace selfsup
