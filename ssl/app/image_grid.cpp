#include "ssl/app/image_grid.h"

#include <stb/stb_image_write.h>

#include <algorithm>

#include "engine/core/check.h"

namespace selfsup::app {

ImageGrid::ImageGrid(int rows, int cols, int size, int channels)
    : rows_(rows), cols_(cols), size_(size), channels_(channels), zoom_(std::max(1, (96 + size - 1) / size)) {
  SELFSUP_CHECK(rows >= 1 && cols >= 1 && size >= 1 && (channels == 1 || channels == 3), "image grid: ", rows, "x",
                cols, " cells of ", size, " px with ", channels, " channels (expected 1 or 3)");
  const int cell = size_ * zoom_;
  w_ = pad_ + cols_ * (cell + pad_);
  h_ = pad_ + rows_ * (cell + pad_);
  pixels_.assign(static_cast<size_t>(w_) * h_ * channels_, 40);  // dark grey separators
}

void ImageGrid::put(int row, int col, const float* chw, const float* mean, const float* std) {
  SELFSUP_CHECK(row >= 0 && row < rows_ && col >= 0 && col < cols_, "image grid: cell (", row, ", ", col,
                ") outside ", rows_, "x", cols_);
  const int cell = size_ * zoom_, s = size_;
  const int y0 = pad_ + row * (cell + pad_), x0 = pad_ + col * (cell + pad_);
  for (int y = 0; y < cell; ++y)
    for (int x = 0; x < cell; ++x)
      for (int c = 0; c < channels_; ++c) {
        const float v = chw[(static_cast<int64_t>(c) * s + y / zoom_) * s + x / zoom_] * std[c] + mean[c];
        pixels_[(static_cast<size_t>(y0 + y) * w_ + x0 + x) * channels_ + c] =
            static_cast<uint8_t>(std::clamp(v, 0.0f, 1.0f) * 255.0f + 0.5f);
      }
}

void ImageGrid::write_png(const std::string& path) const {
  SELFSUP_CHECK(stbi_write_png(path.c_str(), w_, h_, channels_, pixels_.data(), w_ * channels_) != 0,
                "cannot write the PNG '", path, "'");
}

}  // namespace selfsup::app
