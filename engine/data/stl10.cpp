#include "engine/data/stl10.h"

#include <filesystem>
#include <fstream>
#include <vector>

#include "engine/data/file_util.h"

namespace selfsup {

namespace {

constexpr int64_t kSide = 96, kImageBytes = 3 * kSide * kSide;

struct Part {
  std::string x_file, y_file;  // y_file empty: unlabeled
  int64_t count = 0;
};

Part check_part(const std::filesystem::path& dir, const std::string& name, bool labeled) {
  Part p;
  p.x_file = (dir / (name + "_X.bin")).string();
  const uint64_t size = data_detail::file_size_of(p.x_file, "stl10");
  SELFSUP_CHECK(size > 0 && size % kImageBytes == 0, "stl10: '", p.x_file, "' has ", size,
                " bytes, not a positive multiple of the ", kImageBytes, "-byte image");
  p.count = static_cast<int64_t>(size / kImageBytes);
  if (labeled) {
    p.y_file = (dir / (name + "_y.bin")).string();
    const uint64_t ny = data_detail::file_size_of(p.y_file, "stl10");
    SELFSUP_CHECK(static_cast<int64_t>(ny) == p.count, "stl10: '", p.y_file, "' has ", ny, " labels but '",
                  p.x_file, "' has ", p.count, " images");
  }
  return p;
}

// Streams one X file in chunks (the unlabeled split is 2.7 GB), transposing each image to HWC.
void read_part(const Part& p, uint8_t* out, int64_t* labels) {
  std::ifstream in(p.x_file, std::ios::binary);
  SELFSUP_CHECK(in.good(), "stl10: cannot open '", p.x_file, "'");
  constexpr int64_t kChunk = 512;
  std::vector<uint8_t> buf(static_cast<size_t>(kChunk * kImageBytes));
  for (int64_t first = 0; first < p.count; first += kChunk) {
    const int64_t n = std::min(kChunk, p.count - first);
    in.read(reinterpret_cast<char*>(buf.data()), n * kImageBytes);
    SELFSUP_CHECK(in.gcount() == n * kImageBytes, "stl10: short read of '", p.x_file, "'");
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* img = buf.data() + i * kImageBytes;
      uint8_t* o = out + (first + i) * kImageBytes;
      for (int64_t c = 0; c < 3; ++c)
        for (int64_t col = 0; col < kSide; ++col)
          for (int64_t row = 0; row < kSide; ++row)
            o[(row * kSide + col) * 3 + c] = img[c * kSide * kSide + col * kSide + row];
    }
  }
  if (p.y_file.empty()) {
    for (int64_t i = 0; i < p.count; ++i) labels[i] = -1;
    return;
  }
  const std::vector<uint8_t> y = data_detail::read_file_bytes(p.y_file, "stl10");
  for (int64_t i = 0; i < p.count; ++i) {
    SELFSUP_CHECK(y[i] >= 1 && y[i] <= 10, "stl10: '", p.y_file, "' label ", i, " is ", int(y[i]),
                  " (expected 1..10)");
    labels[i] = y[i] - 1;
  }
}

}  // namespace

ImageDataset load_stl10(const std::string& dir, const std::string& split) {
  data_detail::require_exists(dir, "stl10");
  SELFSUP_CHECK(std::filesystem::is_directory(dir), "stl10: '", dir,
                "' is not a directory (expected the stl10_binary/ directory)");
  const std::filesystem::path d(dir);
  std::vector<Part> parts;
  if (split == "train" || split == "train+unlabeled") parts.push_back(check_part(d, "train", true));
  if (split == "test") parts.push_back(check_part(d, "test", true));
  if (split == "unlabeled" || split == "train+unlabeled") parts.push_back(check_part(d, "unlabeled", false));
  SELFSUP_CHECK(!parts.empty(), "stl10: unknown split '", split,
                "' (expected train, test, unlabeled or train+unlabeled)");
  int64_t total = 0;
  for (const Part& p : parts) total += p.count;
  ImageDataset ds;
  ds.images = Tensor::empty({total, kSide, kSide, 3}, DType::u8);
  ds.labels = Tensor::empty({total}, DType::i64);
  ds.num_classes = 10;
  ds.name = "stl10-" + split;
  ds.class_names = {"airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"};
  int64_t at = 0;
  for (const Part& p : parts) {
    read_part(p, ds.images.data_ptr<uint8_t>() + at * kImageBytes, ds.labels.data_ptr<int64_t>() + at);
    at += p.count;
  }
  return ds;
}

}  // namespace selfsup
