// An image folder: root/<class_name>/<image>.{png,jpg,jpeg,bmp} (torchvision's ImageFolder layout), decoded
// with stb_image in parallel (OpenMP) into uint8 (N, H, W, C). Classes are the sorted subdirectory names,
// labels their indices; files are sorted by name within a class.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
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
  bool strict = false;  // false: an unreadable/corrupt file is skipped with a warning naming it, and a count;
                        // true: it is an error naming the file (one bad file among thousands of photos is
                        // common, so skipping is the default)
};

struct ImageFolderInfo {
  std::vector<std::string> classes;  // label -> class name
  std::vector<std::string> files;    // image -> path (after skipping)
  std::vector<std::string> skipped;  // paths of skipped files, with the reason
};

// Errors: missing root, root not a directory, no class subdirectories, no images, an unreadable image
// (with strict), images of different sizes without resize.
ImageDataset load_image_folder(const std::string& root, const ImageFolderOptions& options = {},
                               ImageFolderInfo* info = nullptr);

// What a folder holds, read from the image headers only (stb_image's info: no pixels decoded, a few bytes
// per file kept), so it is cheap for 100k+ images: `selfsup info --data folder:PATH`.
struct ImageFolderCensus {
  std::vector<std::string> classes;              // label -> class name
  std::vector<int64_t> per_class;                // readable images per class
  std::map<std::pair<int, int>, int64_t> sizes;  // (width, height) -> images
  std::map<int, int64_t> channels;               // channels stored in the file (1 grey, 2 grey+alpha, 3, 4)
  std::vector<std::string> unreadable;           // "path: reason", in file order
  int64_t images() const;                        // readable images in all
};

// Errors as load_image_folder's for the layout (missing root, no classes, no image files); unreadable files
// are counted, not errors.
ImageFolderCensus census_image_folder(const std::string& root);

// Bilinear resize (align_corners=False, no antialiasing) of one uint8 (H, W, C) image to (h, w, C), rounded.
void resize_image_u8(const uint8_t* src, int H, int W, int C, uint8_t* dst, int h, int w);

}  // namespace selfsup
