// An image folder: root/<class_name>/<image>.{png,jpg,jpeg,bmp} (torchvision's ImageFolder layout), decoded
// with stb_image in parallel (OpenMP) into uint8 (N, H, W, C). Classes are the sorted subdirectory names,
// labels their indices; files are sorted by name within a class.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/data/dataset.h"

namespace selfsup {

// The largest image the reader decodes (8192 x 8192): a larger header is refused before any pixel memory is
// allocated, so a 100-byte file cannot ask for gigabytes. Only PNG, JPEG and BMP contents are decoded.
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 26;

struct ImageFolderOptions {
  int channels = 3;              // 1 or 3; stb converts (gray <-> RGB, alpha dropped)
  int resize_h = 0, resize_w = 0;  // both > 0: every image resized (bilinear) to this size; 0: keep sizes,
                                   // which must then all be equal
  bool skip_bad_images = false;  // unreadable/corrupt files: skipped with a warning each and a count,
                                 // instead of an error naming the file
};

struct ImageFolderInfo {
  std::vector<std::string> classes;  // label -> class name
  std::vector<std::string> files;    // image -> path (after skipping)
  std::vector<std::string> skipped;  // paths of skipped files, with the reason
};

// Errors: missing root, root not a directory, no class subdirectories, no images, an unreadable image
// (unless skip_bad_images), images of different sizes without resize.
ImageDataset load_image_folder(const std::string& root, const ImageFolderOptions& options = {},
                               ImageFolderInfo* info = nullptr);

// Bilinear resize (align_corners=False, no antialiasing) of one uint8 (H, W, C) image to (h, w, C), rounded.
void resize_image_u8(const uint8_t* src, int H, int W, int C, uint8_t* dst, int h, int w);

}  // namespace selfsup
