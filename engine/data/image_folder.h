// An image folder: root/<class_name>/<image>.{png,jpg,jpeg,bmp} (torchvision's ImageFolder layout). Classes
// are the sorted subdirectory names, labels their indices; files are sorted by name within a class. Images
// may differ in size and channel count: opening a folder reads the headers only, and each image is decoded
// (stb_image) when the loader's worker or the feature extraction asks for it, so memory stays bounded by
// the batches in flight however many files the folder holds (docs/augmentation.md, "Image folders").
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
  int channels = 3;     // 1 or 3: stb converts every file (grey, grey+alpha, RGB, RGBA) to this many
  bool strict = false;  // false: an unreadable/corrupt file is skipped with a warning naming it, and a count;
                        // true: it is an error naming the file (one bad file among thousands of photos is
                        // common, so skipping is the default)
};

struct ImageFolderInfo {
  std::vector<std::string> classes;  // label -> class name
  std::vector<std::string> files;    // image -> path (after skipping)
  std::vector<std::string> skipped;  // "path: reason" of the files skipped when the folder was opened
};

// The folder as an ImageDataset whose `source` decodes image i on demand as uint8 (h_i, w_i, channels).
// Opening reads each file's header (format, size; in parallel): a file that is no PNG/JPEG/BMP, is cut
// before its size, is empty or is larger than kMaxImagePixels is skipped (or, strict, an error). A file
// whose header is sound but whose pixels do not decode is found when it is first loaded: strict, the load
// throws an Error naming it; otherwise a warning names it with the count skipped so far, and image i is
// decoded from the next readable file (i + 1, i + 2, ... cyclically), so batches keep their size and every
// view stays a pure function of (seed, step, index).
// Errors: missing root, root not a directory, no class subdirectories, no images, no readable image.
ImageDataset open_image_folder(const std::string& root, const ImageFolderOptions& options = {},
                               ImageFolderInfo* info = nullptr);

// One image file decoded as uint8 (h, w, channels), with every check the folder reader makes (format by the
// leading bytes, header size limits, the structural checks on PNG chunks, JPEG tables and BMP rows that keep
// stb_image 2.27 from misbehaving; docs/hardening.md). Throws an Error naming the file and the reason.
Tensor decode_image_file(const std::string& path, int channels);

// What a folder holds, read from the image headers only (the checks open_image_folder makes: no pixels
// decoded, a few bytes per file kept), so it is cheap for 100k+ images: `selfsup info --data folder:PATH`.
struct ImageFolderCensus {
  std::vector<std::string> classes;              // label -> class name
  std::vector<int64_t> per_class;                // readable images per class
  std::map<std::pair<int, int>, int64_t> sizes;  // (width, height) -> images
  std::map<int, int64_t> channels;               // channels stored in the file (1 grey, 2 grey+alpha, 3, 4)
  std::vector<std::string> unreadable;           // "path: reason", in file order
  int64_t images() const;                        // readable images in all
};

// Errors as open_image_folder's for the layout (missing root, no classes, no image files); unreadable files
// are counted, not errors.
ImageFolderCensus census_image_folder(const std::string& root);

}  // namespace selfsup
