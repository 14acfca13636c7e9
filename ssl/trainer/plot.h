// Training curves as a PNG, with no plotting dependency: the trainer writes "loss" vs step and "kNN top-1 %"
// vs epoch next to its checkpoints so a run can be judged from an image viewer (or a CI artifact). Panels are
// stacked vertically; each has axes, min/mid/max tick labels, a title and a legend drawn with a built-in 5x7
// bitmap font. PNG encoding is stb_image_write (Debian's libstb); the file is replaced atomically.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace selfsup::trainer {

struct Series {
  std::string name;
  std::vector<double> x, y;  // same length; a point with a non-finite x or y is skipped (it breaks the line)
  uint32_t rgb = 0x1f77b4;   // 0xRRGGBB
};

struct Panel {
  std::string title;
  std::string x_label;
  std::vector<Series> series;
};

// Renders the panels (width x height_per_panel pixels each) into an RGB PNG at `path`, written atomically
// (temp file + rename). Empty series, single points, constant values and NaNs are all drawn without error.
// Throws selfsup::Error naming the path when the file cannot be written, or naming the series when its x and
// y lengths differ; width must be >= 160 and height_per_panel >= 100.
void write_line_chart_png(const std::string& path, const std::vector<Panel>& panels, int width = 900,
                          int height_per_panel = 300);

// A grouped bar chart: one group of bars per `groups` entry (labelled below it), one bar per series in each
// group (values[g] for group g; a non-finite value leaves its slot empty), a y axis from 0 to the largest
// value, each bar's value printed on top. Written atomically like the line chart.
struct BarSeries {
  std::string name;
  std::vector<double> values;  // one per group
  uint32_t rgb = 0x1f77b4;
};
void write_bar_chart_png(const std::string& path, const std::string& title, const std::vector<std::string>& groups,
                         const std::vector<BarSeries>& series, int width = 900, int height = 420);

// The tick label text for a value: up to 4 significant digits, no exponent for |v| in [1e-3, 1e7) ("0.6931",
// "12345", "2.5", "-0.25"), "%.3g" outside that range ("1.5e-05"). Exposed for tests.
std::string format_tick(double v);

}  // namespace selfsup::trainer
