// A PNG contact sheet of normalised images: rows x cols cells of s x s pixels, each zoomed by nearest
// neighbour to about 96 px and separated by dark-grey lines. `selfsup augment` (original | views) and
// `selfsup inpaint` (original | masked | completed | decoder output) write their previews with it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace selfsup::app {

class ImageGrid {
 public:
  ImageGrid(int rows, int cols, int size, int channels);
  // Puts a float (C, s, s) image, normalised as (pixel - mean) / std, into cell (row, col), clamped to [0, 1].
  void put(int row, int col, const float* chw, const float* mean, const float* std);
  // Writes the grid as a PNG; an error names the file.
  void write_png(const std::string& path) const;
  int width() const { return w_; }
  int height() const { return h_; }

 private:
  int rows_, cols_, size_, channels_, zoom_, pad_ = 2, w_, h_;
  std::vector<uint8_t> pixels_;  // (h, w, C) uint8
};

}  // namespace selfsup::app
