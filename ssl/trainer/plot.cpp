// Line-chart rasteriser (see plot.h). Everything is drawn into an RGB buffer with integer geometry (no
// anti-aliasing), then PNG-encoded in memory by stb_image_write and handed to atomic_write_file, so a reader
// never sees a half-written chart.
#include "ssl/trainer/plot.h"

#include <stb/stb_image_write.h>  // implementation in Debian's libstb.so (linked by CMakeLists.txt)

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "engine/core/check.h"
#include "engine/io/atomic_file.h"

namespace selfsup::trainer {

namespace {

// ---- 5x7 bitmap font ----
// One glyph per entry: 7 rows, top row in the most significant byte, the 5 pixels of a row in bits 4..0
// (bit 4 = leftmost). Shapes follow the classic HD44780 character ROM, except that g, p, q and y keep their
// descenders: their 7 rows are drawn 2 rows lower (x-height rows 0-4, below the baseline rows 5-6). Unknown
// characters draw as '?'.
struct Glyph {
  char c;
  uint64_t rows;
};
constexpr Glyph kFont[] = {
    {' ', 0x00000000000000}, {'0', 0x0E11131519110E}, {'1', 0x040C040404040E}, {'2', 0x0E11010204081F},
    {'3', 0x1F02040201110E}, {'4', 0x02060A121F0202}, {'5', 0x1F101E0101110E}, {'6', 0x0608101E11110E},
    {'7', 0x1F010204080808}, {'8', 0x0E11110E11110E}, {'9', 0x0E11110F01020C}, {'A', 0x0E1111111F1111},
    {'B', 0x1E11111E11111E}, {'C', 0x0E11101010110E}, {'D', 0x1C12111111121C}, {'E', 0x1F10101E10101F},
    {'F', 0x1F10101E101010}, {'G', 0x0E11101711110F}, {'H', 0x1111111F111111}, {'I', 0x0E04040404040E},
    {'J', 0x0702020202120C}, {'K', 0x11121418141211}, {'L', 0x1010101010101F}, {'M', 0x111B1515111111},
    {'N', 0x11111915131111}, {'O', 0x0E11111111110E}, {'P', 0x1E11111E101010}, {'Q', 0x0E11111115120D},
    {'R', 0x1E11111E141211}, {'S', 0x0F10100E01011E}, {'T', 0x1F040404040404}, {'U', 0x1111111111110E},
    {'V', 0x11111111110A04}, {'W', 0x1111111515150A}, {'X', 0x11110A040A1111}, {'Y', 0x1111110A040404},
    {'Z', 0x1F01020408101F}, {'a', 0x00000E010F110F}, {'b', 0x1010161911111E}, {'c', 0x00000E1010110E},
    {'d', 0x01010D1311110F}, {'e', 0x00000E111F100E}, {'f', 0x0609081C080808}, {'g', 0x0F1111110F010E},
    {'h', 0x10101619111111}, {'i', 0x04000C0404040E}, {'j', 0x0200060202120C}, {'k', 0x10101214181412},
    {'l', 0x0C04040404040E}, {'m', 0x00001A15151111}, {'n', 0x00001619111111}, {'o', 0x00000E1111110E},
    {'p', 0x1E1111111E1010}, {'q', 0x0F1111110F0101}, {'r', 0x00001619101010}, {'s', 0x00000E100E011E},
    {'t', 0x08081C08080906}, {'u', 0x0000111111130D}, {'v', 0x00001111110A04}, {'w', 0x0000111115150A},
    {'x', 0x0000110A040A11}, {'y', 0x111111110F010E}, {'z', 0x00001F0204081F}, {'.', 0x00000000000C0C},
    {'-', 0x0000001F000000}, {'%', 0x18190204081303}, {':', 0x000C0C000C0C00}, {'/', 0x00010204081000},
    {'+', 0x0004041F040400}, {'(', 0x02040808080402}, {')', 0x08040202020408}, {'_', 0x0000000000001F},
    {',', 0x000000000C0408}, {'=', 0x00001F001F0000}, {'?', 0x0E110102040004},
};

uint64_t glyph_rows(char c) {
  for (const Glyph& g : kFont)
    if (g.c == c) return g.rows;
  return glyph_rows('?');
}

constexpr int kGlyphW = 5, kGlyphH = 7, kAdvance = 6;  // one blank column between characters
constexpr int kDescent = 2;                            // rows g, p, q, y reach below the baseline
bool descends(char c) { return c == 'g' || c == 'p' || c == 'q' || c == 'y'; }

int text_width(const std::string& s, int scale) {
  return s.empty() ? 0 : (static_cast<int>(s.size()) * kAdvance - 1) * scale;
}
int text_height(int scale) { return kGlyphH * scale; }  // cap height; descenders add kDescent rows below

// ---- RGB canvas with clipping ----
struct Rect {
  int x0, y0, x1, y1;  // inclusive
  bool contains(int x, int y) const { return x >= x0 && x <= x1 && y >= y0 && y <= y1; }
};

class Canvas {
 public:
  Canvas(int w, int h) : w_(w), h_(h), px_(static_cast<size_t>(w) * h * 3, 0xff) {}
  int width() const { return w_; }
  int height() const { return h_; }
  const uint8_t* data() const { return px_.data(); }

  void set(int x, int y, uint32_t rgb, const Rect* clip = nullptr) {
    if (x < 0 || y < 0 || x >= w_ || y >= h_) return;
    if (clip && !clip->contains(x, y)) return;
    uint8_t* p = &px_[(static_cast<size_t>(y) * w_ + x) * 3];
    p[0] = static_cast<uint8_t>(rgb >> 16);
    p[1] = static_cast<uint8_t>(rgb >> 8);
    p[2] = static_cast<uint8_t>(rgb);
  }
  void fill(int x0, int y0, int x1, int y1, uint32_t rgb, const Rect* clip = nullptr) {
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) set(x, y, rgb, clip);
  }
  void hline(int x0, int x1, int y, uint32_t rgb) { fill(std::min(x0, x1), y, std::max(x0, x1), y, rgb); }
  void vline(int x, int y0, int y1, uint32_t rgb) { fill(x, std::min(y0, y1), x, std::max(y0, y1), rgb); }

  // Bresenham with a thick x thick square pen, clipped to `clip`.
  void line(int x0, int y0, int x1, int y1, uint32_t rgb, int thick, const Rect& clip) {
    const int dx = std::abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
    const int dy = -std::abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    const int lo = -(thick - 1) / 2, hi = thick / 2;
    for (;;) {
      fill(x0 + lo, y0 + lo, x0 + hi, y0 + hi, rgb, &clip);
      if (x0 == x1 && y0 == y1) break;
      const int e2 = 2 * err;
      if (e2 >= dy) err += dy, x0 += sx;
      if (e2 <= dx) err += dx, y0 += sy;
    }
  }

  // Text with its top-left corner at (x, y), each font pixel a scale x scale block.
  void text(int x, int y, const std::string& s, uint32_t rgb, int scale) {
    for (char c : s) {
      const uint64_t rows = glyph_rows(c);
      const int y0 = y + (descends(c) ? kDescent * scale : 0);
      for (int r = 0; r < kGlyphH; ++r) {
        const unsigned bits = static_cast<unsigned>(rows >> (8 * (kGlyphH - 1 - r))) & 0x1f;
        for (int col = 0; col < kGlyphW; ++col)
          if (bits & (1u << (kGlyphW - 1 - col)))
            fill(x + col * scale, y0 + r * scale, x + (col + 1) * scale - 1, y0 + (r + 1) * scale - 1, rgb);
      }
      x += kAdvance * scale;
    }
  }

 private:
  int w_, h_;
  std::vector<uint8_t> px_;  // (h, w, 3)
};

// ---- layout constants (pixels at the default size; text scale 2 = 10x14 glyphs) ----
constexpr uint32_t kInk = 0x202020, kAxis = 0x404040, kGrid = 0xe4e4e4, kMuted = 0x909090, kRule = 0xc8c8c8;
constexpr int kTitleScale = 2, kLabelScale = 2;
constexpr int kPad = 10;    // outer padding
constexpr int kInset = 8;   // data area inside the axes box, so min/max points do not sit on the frame
constexpr int kTick = 5;    // tick mark length

struct Range {
  double lo = INFINITY, hi = -INFINITY;
  bool empty() const { return !(lo <= hi); }
  void add(double v) { lo = std::min(lo, v), hi = std::max(hi, v); }
  // A degenerate range (one value) is widened so the mapping never divides by zero; the value lands in the middle.
  void widen_if_flat() {
    if (empty() || hi > lo) return;
    const double pad = lo == 0 ? 1.0 : std::abs(lo) * 0.05;
    lo -= pad, hi += pad;
    if (!(hi > lo)) lo = std::nextafter(lo, -INFINITY), hi = std::nextafter(hi, INFINITY);  // |v| tiny or huge
  }
};

bool finite_point(const Series& s, size_t i) { return std::isfinite(s.x[i]) && std::isfinite(s.y[i]); }

// Maps t in [lo, hi] to a pixel in [p0, p1], clamped far outside the canvas so int conversion stays defined.
int to_pixel(double t, double lo, double hi, int p0, int p1) {
  double f = (t - lo) / (hi - lo);
  if (!std::isfinite(f)) f = 0.5;
  const double p = p0 + f * (p1 - p0);
  return static_cast<int>(std::lround(std::clamp(p, -1e6, 1e6)));
}

void draw_panel(Canvas& cv, const Panel& panel, int oy, int h) {
  const int w = cv.width();
  const int lh = text_height(kLabelScale);
  if (oy > 0) cv.hline(0, w - 1, oy, kRule);  // separates stacked panels

  // Title (left) and legend (right) share the top row; the legend drops to its own row when they would overlap.
  int y = oy + kPad;
  cv.text(kPad, y, panel.title, kInk, kTitleScale);
  constexpr int kSwatch = 18, kSwatchGap = 5, kEntryGap = 16;
  int legend_w = 0;
  for (const Series& s : panel.series)
    legend_w += (legend_w ? kEntryGap : 0) + kSwatch + kSwatchGap + text_width(s.name, kLabelScale);
  int legend_y = y;
  const int title_end = kPad + text_width(panel.title, kTitleScale);
  if (!panel.series.empty() && w - kPad - legend_w < title_end + kEntryGap) legend_y = y + text_height(kTitleScale) + 6;
  int lx = std::max(kPad, w - kPad - legend_w);
  for (const Series& s : panel.series) {
    cv.fill(lx, legend_y + lh / 2 - 1, lx + kSwatch - 1, legend_y + lh / 2 + 1, s.rgb);
    lx += kSwatch + kSwatchGap;
    cv.text(lx, legend_y, s.name, kInk, kLabelScale);
    lx += text_width(s.name, kLabelScale) + kEntryGap;
  }
  const int top = std::max(legend_y + lh, y + text_height(kTitleScale)) + 12;

  // Data ranges over every finite point of every series.
  Range xr, yr;
  size_t finite = 0;
  for (const Series& s : panel.series)
    for (size_t i = 0; i < s.x.size(); ++i)
      if (finite_point(s, i)) xr.add(s.x[i]), yr.add(s.y[i]), ++finite;
  const bool has_data = finite > 0;
  const double xmin = xr.lo, xmax = xr.hi, ymin = yr.lo, ymax = yr.hi;  // labels show the real extremes
  xr.widen_if_flat();
  yr.widen_if_flat();

  // Tick labels: the data's min, mid and max (a flat range labels its single value once).
  auto ticks = [](double lo, double hi) {
    std::vector<double> t = {lo};
    if (hi > lo) t.push_back(lo + (hi - lo) / 2), t.push_back(hi);
    return t;
  };
  std::vector<double> xt, yt;
  if (has_data) xt = ticks(xmin, xmax), yt = ticks(ymin, ymax);
  int ylab_w = 0;
  for (double v : yt) ylab_w = std::max(ylab_w, text_width(format_tick(v), kLabelScale));

  const Rect box{kPad + std::max(ylab_w, text_width("0", kLabelScale)) + kTick + 4, top, w - kPad - 8,
                 oy + h - 1 - kPad - lh - 8 - (panel.x_label.empty() ? 0 : lh + 6)};
  const Rect data{box.x0 + kInset, box.y0 + kInset, box.x1 - kInset, box.y1 - kInset};
  if (data.x1 <= data.x0 || data.y1 <= data.y0) return;  // too small to draw anything useful
  const Rect inner{box.x0 + 1, box.y0 + 1, box.x1 - 1, box.y1 - 1};

  auto px = [&](double x) { return to_pixel(x, xr.lo, xr.hi, data.x0, data.x1); };
  auto py = [&](double v) { return to_pixel(v, yr.lo, yr.hi, data.y1, data.y0); };  // y grows downwards

  // Grid lines and ticks with labels.
  for (double v : yt) {
    const int ty = py(v);
    cv.fill(inner.x0, ty, inner.x1, ty, kGrid);
    cv.hline(box.x0 - kTick, box.x0 - 1, ty, kAxis);
    const std::string s = format_tick(v);
    cv.text(box.x0 - kTick - 4 - text_width(s, kLabelScale), ty - lh / 2, s, kInk, kLabelScale);
  }
  for (double v : xt) {
    const int tx = px(v);
    cv.fill(tx, inner.y0, tx, inner.y1, kGrid);
    cv.vline(tx, box.y1 + 1, box.y1 + kTick, kAxis);
    const std::string s = format_tick(v);
    const int sw = text_width(s, kLabelScale);
    cv.text(std::clamp(tx - sw / 2, 0, std::max(0, w - sw)), box.y1 + kTick + 4, s, kInk, kLabelScale);
  }
  if (!panel.x_label.empty()) {
    const int sw = text_width(panel.x_label, kLabelScale);
    cv.text((box.x0 + box.x1) / 2 - sw / 2, box.y1 + kTick + 4 + lh + 6, panel.x_label, kMuted, kLabelScale);
  }
  cv.hline(box.x0, box.x1, box.y0, kAxis);
  cv.hline(box.x0, box.x1, box.y1, kAxis);
  cv.vline(box.x0, box.y0, box.y1, kAxis);
  cv.vline(box.x1, box.y0, box.y1, kAxis);

  if (!has_data) {
    const std::string msg = "no data";
    cv.text((box.x0 + box.x1 - text_width(msg, kLabelScale)) / 2, (box.y0 + box.y1 - lh) / 2, msg, kMuted,
            kLabelScale);
    return;
  }

  // Polylines: a non-finite point breaks the line; a point with no finite neighbour is drawn as a dot so a
  // single value (e.g. the first kNN evaluation) is visible.
  for (const Series& s : panel.series) {
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!finite_point(s, i)) continue;
      const bool prev = i > 0 && finite_point(s, i - 1);
      const bool next = i + 1 < s.x.size() && finite_point(s, i + 1);
      if (next) cv.line(px(s.x[i]), py(s.y[i]), px(s.x[i + 1]), py(s.y[i + 1]), s.rgb, 2, inner);
      if (!prev && !next) cv.fill(px(s.x[i]) - 2, py(s.y[i]) - 2, px(s.x[i]) + 2, py(s.y[i]) + 2, s.rgb, &inner);
    }
  }
}

void append_bytes(void* ctx, void* data, int size) {
  auto* out = static_cast<std::vector<unsigned char>*>(ctx);
  const auto* p = static_cast<const unsigned char*>(data);
  out->insert(out->end(), p, p + size);
}

void write_png(const std::string& path, const Canvas& cv) {
  std::vector<unsigned char> png;
  SELFSUP_CHECK(stbi_write_png_to_func(append_bytes, &png, cv.width(), cv.height(), 3, cv.data(), cv.width() * 3) != 0,
                "plot '", path, "': PNG encoding failed");
  atomic_write_file(path, png.data(), png.size());
}

}  // namespace

std::string format_tick(double v) {
  if (!std::isfinite(v)) return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
  if (v == 0) return "0";
  char buf[64];
  const double a = std::abs(v);
  if (a < 1e-3 || a >= 1e7) {
    std::snprintf(buf, sizeof buf, "%.3g", v);
    return buf;
  }
  // 4 significant digits as fixed point, trailing zeros (and a trailing '.') removed.
  const int decimals = std::clamp(3 - static_cast<int>(std::floor(std::log10(a))), 0, 6);
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  std::string s = buf;
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  return s == "-0" ? "0" : s;
}

void write_line_chart_png(const std::string& path, const std::vector<Panel>& panels, int width,
                          int height_per_panel) {
  SELFSUP_CHECK(!panels.empty(), "plot '", path, "': no panels to draw");
  SELFSUP_CHECK(width >= 160 && height_per_panel >= 100 && width <= 16384 && height_per_panel <= 16384,
                "plot '", path, "': size ", width, "x", height_per_panel,
                " per panel out of range (width 160..16384, height 100..16384)");
  SELFSUP_CHECK(panels.size() <= static_cast<size_t>(65536 / height_per_panel), "plot '", path, "': ",
                panels.size(), " panels of height ", height_per_panel, " exceed 65536 pixels");
  for (const Panel& p : panels)
    for (const Series& s : p.series)
      SELFSUP_CHECK(s.x.size() == s.y.size(), "plot '", path, "': series '", s.name, "' in panel '", p.title,
                    "' has ", s.x.size(), " x values but ", s.y.size(), " y values");

  const int h = height_per_panel * static_cast<int>(panels.size());
  Canvas cv(width, h);
  for (size_t i = 0; i < panels.size(); ++i)
    draw_panel(cv, panels[i], static_cast<int>(i) * height_per_panel, height_per_panel);

  write_png(path, cv);
}

void write_bar_chart_png(const std::string& path, const std::string& title, const std::vector<std::string>& groups,
                         const std::vector<BarSeries>& series, int width, int height) {
  SELFSUP_CHECK(!groups.empty() && !series.empty(), "plot '", path, "': no bars to draw");
  SELFSUP_CHECK(width >= 160 && height >= 160 && width <= 16384 && height <= 16384, "plot '", path, "': size ",
                width, "x", height, " out of range (160..16384)");
  double top = 0;
  for (const BarSeries& s : series) {
    SELFSUP_CHECK(s.values.size() == groups.size(), "plot '", path, "': series '", s.name, "' has ",
                  s.values.size(), " values for ", groups.size(), " groups");
    for (double v : s.values)
      if (std::isfinite(v)) top = std::max(top, v);
  }
  if (top <= 0) top = 1;
  Canvas cv(width, height);
  const int lh = text_height(kLabelScale), line = lh + kDescent * kLabelScale + 6;
  cv.text(kPad, kPad, title, kInk, kTitleScale);
  // Legend: one row of swatches under the title.
  int lx = kPad;
  const int ly = kPad + line;
  for (const BarSeries& s : series) {
    cv.fill(lx, ly, lx + lh - 1, ly + lh - 1, s.rgb);
    cv.text(lx + lh + 4, ly, s.name, kInk, kLabelScale);
    lx += lh + 4 + text_width(s.name, kLabelScale) + 16;
  }
  const int y_top = ly + line + lh, y_axis = height - kPad - line;  // bars stand on y_axis
  const int x0 = kPad + text_width(format_tick(top), kLabelScale) + kTick + 4, x1 = width - kPad;
  cv.vline(x0, y_top, y_axis, kAxis);
  cv.hline(x0, x1, y_axis, kAxis);
  for (double t : {0.0, top / 2, top}) {
    const int y = to_pixel(t, 0, top, y_axis, y_top);
    cv.hline(x0 + 1, x1, y, t == 0 ? kAxis : kGrid);
    const std::string label = format_tick(t);
    cv.text(x0 - kTick - 4 - text_width(label, kLabelScale), y - lh / 2, label, kMuted, kLabelScale);
  }
  const double group_w = static_cast<double>(x1 - x0) / static_cast<double>(groups.size());
  const int bar_w = std::max(1, static_cast<int>(group_w * 0.8 / static_cast<double>(series.size())));
  for (size_t g = 0; g < groups.size(); ++g) {
    const int gx = x0 + static_cast<int>(group_w * static_cast<double>(g) + group_w * 0.1);
    for (size_t k = 0; k < series.size(); ++k) {
      const double v = series[k].values[g];
      if (!std::isfinite(v)) continue;
      const int bx = gx + static_cast<int>(k) * bar_w, by = to_pixel(std::max(v, 0.0), 0, top, y_axis, y_top);
      cv.fill(bx + 1, by, bx + bar_w - 2, y_axis - 1, series[k].rgb);
      const std::string label = format_tick(v);
      if (text_width(label, 1) <= bar_w) cv.text(bx + (bar_w - text_width(label, 1)) / 2, by - 9, label, kInk, 1);
    }
    const int center = x0 + static_cast<int>(group_w * (static_cast<double>(g) + 0.5));
    cv.text(center - text_width(groups[g], kLabelScale) / 2, y_axis + 6, groups[g], kInk, kLabelScale);
  }
  write_png(path, cv);
}

}  // namespace selfsup::trainer
