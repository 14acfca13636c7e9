// Training-curve PNGs (read back with stb_image and checked pixel by pixel) and the progress reporter's text,
// rate limiting and ETA, driven by a fake clock (and a pseudo-terminal for the interactive mode).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <stb/stb_image.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/core/check.h"
#include "ssl/trainer/plot.h"
#include "ssl/trainer/progress.h"

using namespace selfsup;
using namespace selfsup::trainer;
namespace fs = std::filesystem;

namespace {

// A fresh directory under the system temp dir, removed with its contents at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() / ("selfsup_plot_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

struct Rgb {
  int w = 0, h = 0;
  std::vector<unsigned char> px;
  uint32_t at(int x, int y) const {
    const unsigned char* p = &px[(static_cast<size_t>(y) * w + x) * 3];
    return (uint32_t{p[0]} << 16) | (uint32_t{p[1]} << 8) | p[2];
  }
  // Bounding box and count of the pixels of exactly one colour within rows [y0, y1).
  struct Box {
    int count = 0, x0 = 1 << 30, y0 = 1 << 30, x1 = -1, y1 = -1;
  };
  Box find(uint32_t rgb, int ylo = 0, int yhi = -1) const {
    Box b;
    if (yhi < 0) yhi = h;
    for (int y = ylo; y < yhi; ++y)
      for (int x = 0; x < w; ++x)
        if (at(x, y) == rgb) {
          ++b.count;
          b.x0 = std::min(b.x0, x), b.x1 = std::max(b.x1, x), b.y0 = std::min(b.y0, y), b.y1 = std::max(b.y1, y);
        }
    return b;
  }
};

Rgb load_png(const std::string& path) {
  Rgb img;
  int n = 0;
  unsigned char* data = stbi_load(path.c_str(), &img.w, &img.h, &n, 3);
  REQUIRE_MESSAGE(data != nullptr, "stb_image could not read ", path);
  img.px.assign(data, data + static_cast<size_t>(img.w) * img.h * 3);
  stbi_image_free(data);
  return img;
}

constexpr uint32_t kRed = 0xd62728, kBlue = 0x1f77b4, kGreen = 0x2ca02c, kWhite = 0xffffff;

std::vector<Panel> training_panels() {
  Series loss{"loss", {}, {}, kRed};
  for (int s = 0; s <= 200; ++s) loss.x.push_back(s), loss.y.push_back(7.0 * std::exp(-s / 50.0) + 0.3);
  Series knn{"kNN top-1 %", {}, {}, kBlue};
  for (int e = 1; e <= 10; ++e) knn.x.push_back(e), knn.y.push_back(20.0 + 5.0 * e);
  return {Panel{"loss", "step", {loss}}, Panel{"kNN top-1 %", "epoch", {knn}}};
}

}  // namespace

TEST_CASE("line chart: size, series colours in their panels, orientation, background, no temp file left") {
  TempDir dir;
  const std::string path = dir.file("curves.png");
  write_line_chart_png(path, training_panels(), 900, 300);
  Rgb img = load_png(path);
  REQUIRE(img.w == 900);
  REQUIRE(img.h == 600);

  // The red loss curve lies in the top panel only, the blue kNN curve in the bottom one; each spans most of
  // the width (the x range maps onto the data area).
  auto red_top = img.find(kRed, 0, 300), red_bottom = img.find(kRed, 300, 600);
  auto blue_top = img.find(kBlue, 0, 300), blue_bottom = img.find(kBlue, 300, 600);
  CHECK(red_top.count > 600);
  CHECK(blue_bottom.count > 600);
  CHECK(blue_top.count == 0);  // legend swatches sit in their own panel too
  CHECK(red_bottom.count == 0);
  CHECK(red_top.x1 - red_top.x0 > 650);
  CHECK(blue_bottom.x1 - blue_bottom.x0 > 650);

  // y grows upwards: the decreasing loss starts high (small row) and ends low; the increasing kNN accuracy
  // does the opposite. Look at the leftmost and rightmost few columns of each curve (legend excluded: it sits
  // on the title row, above the axes box).
  auto column_mean_row = [&](uint32_t rgb, int x0, int x1, int ylo, int yhi) {
    double sum = 0;
    int n = 0;
    for (int y = ylo; y < yhi; ++y)
      for (int x = x0; x <= x1; ++x)
        if (img.at(x, y) == rgb) sum += y, ++n;
    return n ? sum / n : -1.0;
  };
  const int plot_top = 40;  // below the title/legend row
  const double loss_left = column_mean_row(kRed, red_top.x0, red_top.x0 + 3, plot_top, 300);
  const double loss_right = column_mean_row(kRed, red_top.x1 - 3, red_top.x1, plot_top, 300);
  CHECK(loss_left > 0);
  CHECK(loss_left + 100 < loss_right);
  const double knn_left = column_mean_row(kBlue, blue_bottom.x0, blue_bottom.x0 + 3, 300 + plot_top, 600);
  const double knn_right = column_mean_row(kBlue, blue_bottom.x1 - 3, blue_bottom.x1, 300 + plot_top, 600);
  CHECK(knn_left > knn_right + 100);

  // Background: the corners and most of the image are white; text and axes are drawn (dark pixels exist).
  CHECK(img.at(0, 0) == kWhite);
  CHECK(img.at(899, 599) == kWhite);
  CHECK(img.at(899, 0) == kWhite);
  int white = 0, dark = 0;
  for (int y = 0; y < img.h; ++y)
    for (int x = 0; x < img.w; ++x) {
      const uint32_t c = img.at(x, y);
      white += c == kWhite;
      dark += c == 0x202020 || c == 0x404040;
    }
  CHECK(white > img.w * img.h * 7 / 10);
  CHECK(dark > 2000);

  // Atomic write: only the chart is in the directory (the temp file was renamed over it).
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir.path)) {
    ++entries;
    CHECK(e.path().filename() == "curves.png");
  }
  CHECK(entries == 1);

  // Rewriting replaces the file.
  write_line_chart_png(path, {training_panels()[0]}, 400, 200);
  Rgb small = load_png(path);
  CHECK(small.w == 400);
  CHECK(small.h == 200);
}

TEST_CASE("line chart: empty, single-point, constant, NaN and infinite series draw without error") {
  TempDir dir;
  const double nan = std::nan(""), inf = INFINITY;
  Series constant{"const", {0, 1, 2, 3, 4}, {0.5, 0.5, 0.5, 0.5, 0.5}, kRed};
  Series single{"one", {3}, {42}, kBlue};
  Series empty{"empty", {}, {}, kGreen};
  Series holes{"holes", {0, 1, 2, 3, 4, 5, 6}, {1, 2, nan, 4, inf, 6, 7}, kGreen};
  Series all_nan{"nan", {nan, 1}, {1, nan}, kRed};
  std::vector<Panel> panels = {
      Panel{"constant", "step", {constant}}, Panel{"single point", "epoch", {single}},
      Panel{"empty", "", {empty}},           Panel{"no series", "x", {}},
      Panel{"holes", "x", {holes}},          Panel{"all nan", "", {all_nan}},
  };
  const std::string path = dir.file("edge.png");
  REQUIRE_NOTHROW(write_line_chart_png(path, panels, 500, 160));
  Rgb img = load_png(path);
  REQUIRE(img.w == 500);
  REQUIRE(img.h == 160 * 6);

  // Constant: a horizontal line (2 px thick) across the data area, below the legend row.
  auto c = img.find(kRed, 30, 160);
  CHECK(c.count > 300);
  CHECK(c.y1 - c.y0 <= 1);
  CHECK(c.x1 - c.x0 > 300);
  // A single point is a visible 5x5 dot in its panel (plus the legend swatch on the title row).
  auto s = img.find(kBlue, 160 + 30, 320);
  CHECK(s.count == 25);
  // Holes: the finite runs 0-1 and 5-6 are segments; 3 has no finite neighbour and becomes a dot.
  CHECK(img.find(kGreen, 4 * 160 + 30, 5 * 160).count > 50);
  // The all-NaN panel draws no series pixels outside its legend.
  CHECK(img.find(kRed, 5 * 160 + 30, 6 * 160).count == 0);

  // Extreme ranges (overflowing hi - lo, denormal constants) stay defined.
  std::vector<Panel> extreme = {
      Panel{"huge", "x", {Series{"h", {-1e308, 1e308}, {1e308, -1e308}, kRed}}},
      Panel{"tiny", "x", {Series{"t", {1e-320, 1e-320}, {4e-320, 4e-320}, kBlue}}},
  };
  CHECK_NOTHROW(write_line_chart_png(dir.file("extreme.png"), extreme, 300, 120));
}

TEST_CASE("line chart: errors name the path or the series") {
  TempDir dir;
  const std::string bad = (dir.path / "no_such_dir" / "chart.png").string();
  try {
    write_line_chart_png(bad, training_panels());
    FAIL("expected an Error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find(bad) != std::string::npos);
  }
  CHECK_THROWS_AS(write_line_chart_png(dir.file("x.png"), {}), Error);
  CHECK_THROWS_AS(write_line_chart_png(dir.file("x.png"), training_panels(), 10, 10), Error);
  Panel mismatched{"p", "x", {Series{"bad series", {1, 2, 3}, {1, 2}, kRed}}};
  try {
    write_line_chart_png(dir.file("x.png"), {mismatched});
    FAIL("expected an Error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("bad series") != std::string::npos);
  }
  CHECK(fs::is_empty(dir.path));  // nothing written, no temp files left
}

TEST_CASE("tick labels: 4 significant digits, no exponent in the usual range") {
  CHECK(format_tick(0) == "0");
  CHECK(format_tick(-0.0) == "0");
  CHECK(format_tick(2.5) == "2.5");
  CHECK(format_tick(0.693147) == "0.6931");
  CHECK(format_tick(7.3) == "7.3");
  CHECK(format_tick(12345) == "12345");
  CHECK(format_tick(100000) == "100000");
  CHECK(format_tick(-0.25) == "-0.25");
  CHECK(format_tick(1.5e-5) == "1.5e-05");
  CHECK(format_tick(3e9) == "3e+09");
  CHECK(format_tick(std::nan("")) == "nan");
}

TEST_CASE("format_duration: h:mm:ss, unknown for negative or non-finite") {
  CHECK(format_duration(0) == "0:00:00");
  CHECK(format_duration(83) == "0:01:23");
  CHECK(format_duration(59.6) == "0:01:00");
  CHECK(format_duration(3600) == "1:00:00");
  CHECK(format_duration(100000) == "27:46:40");
  CHECK(format_duration(-1) == "-:--:--");
  CHECK(format_duration(std::nan("")) == "-:--:--");
  CHECK(format_duration(INFINITY) == "-:--:--");
  CHECK(format_duration(1e12) == "-:--:--");
}

TEST_CASE("format_progress_line: bar, counts, metrics, rate, ETA") {
  CHECK(format_progress_line(500, 1000, {{"loss", 0.693147}, {"lr", 0.05}}, 1234.4, 42, 20) ==
        "[##########----------] 500/1000 50.0%  loss 0.6931  lr 0.05  1234 items/s  ETA 0:00:42");
  CHECK(format_progress_line(1, 3, {}, 12.34, 3725, 0) == "1/3 33.3%  12.3 items/s  ETA 1:02:05");
  CHECK(format_progress_line(0, 10, {}, 0, -1, 4) == "[----] 0/10 0.0%  ETA -:--:--");
  CHECK(format_progress_line(12, 10, {}, 0.5, 0, 4) == "[####] 12/10 100.0%  0.5 items/s  ETA 0:00:00");
  CHECK(format_progress_line(7, 0, {{"loss", 1}}, std::nan(""), 5, 8) == "step 7  loss 1");
}

TEST_CASE("Progress, plain mode: one line per interval plus the last, ETA from the smoothed rate") {
  std::FILE* f = std::tmpfile();
  REQUIRE(f != nullptr);
  double t = 100;
  {
    Progress p(100, f, /*force_plain=*/false, [&] { return t; });  // tmpfile is no terminal: plain anyway
    CHECK_FALSE(p.interactive());
    for (int s = 1; s <= 100; ++s) {
      t += 0.5;  // 2 steps/s
      p.update(s, {{"loss", 1.0 / s}}, 64.0);
    }
    CHECK(p.eta_s() == 0);
    p.finish();
    p.finish();  // idempotent
  }
  std::rewind(f);
  std::vector<std::string> lines;
  char buf[512];
  while (std::fgets(buf, sizeof buf, f)) lines.emplace_back(buf);
  std::fclose(f);
  // Printed at steps 1 (first), 21, 41, 61, 81 (10 s apart) and 100 (the last).
  REQUIRE(lines.size() == 6);
  CHECK(lines[0].rfind("1/100 1.0%", 0) == 0);
  CHECK(lines[1].rfind("21/100 21.0%", 0) == 0);
  CHECK(lines[1].find("ETA 0:00:40") != std::string::npos);  // 79 steps at 2/s = 39.5 s
  CHECK(lines[1].find("64.0 items/s") != std::string::npos);
  CHECK(lines[4].rfind("81/100", 0) == 0);
  CHECK(lines[5] == "100/100 100.0%  loss 0.01  64.0 items/s  ETA 0:00:00\n");
  CHECK(lines[0].find('\r') == std::string::npos);
}

TEST_CASE("Progress, plain mode: finish prints a rate-limited last update; the interval is configurable") {
  std::FILE* f = std::tmpfile();
  REQUIRE(f != nullptr);
  double t = 0;
  {
    Progress p(1000, f, true, [&] { return t; });
    p.set_plain_interval_s(2.5);
    for (int s = 1; s <= 50; ++s) {
      t += 0.125;  // exact in binary, so the interval boundaries are exact
      p.update(s, {}, 0);
    }
    // Destructor finishes: step 50 was not printed (last print at step 41, 1.125 s earlier).
  }
  std::rewind(f);
  std::vector<std::string> lines;
  char buf[512];
  while (std::fgets(buf, sizeof buf, f)) lines.emplace_back(buf);
  std::fclose(f);
  REQUIRE(lines.size() == 4);  // steps 1, 21, 41 and 50
  CHECK(lines[1].rfind("21/1000", 0) == 0);
  CHECK(lines[2].rfind("41/1000", 0) == 0);
  CHECK(lines[3].rfind("50/1000", 0) == 0);
}

TEST_CASE("Progress: the smoothed rate shrugs off one slow step and follows a lasting change") {
  std::FILE* f = std::tmpfile();
  REQUIRE(f != nullptr);
  double t = 0;
  Progress p(100000, f, true, [&] { return t; });
  CHECK(p.eta_s() < 0);  // unknown before the first update
  int64_t s = 0;
  for (int i = 0; i < 100; ++i) t += 0.5, p.update(++s, {}, 0);  // 2 steps/s
  CHECK(p.eta_s() == doctest::Approx((100000 - 100) / 2.0));
  t += 5, p.update(++s, {}, 0);  // one 5 s step (a checkpoint)
  const double rate_after_stall = static_cast<double>(100000 - s) / p.eta_s();
  CHECK(rate_after_stall > 1.6);
  CHECK(rate_after_stall < 2.0);
  for (int i = 0; i < 300; ++i) t += 1, p.update(++s, {}, 0);  // now 1 step/s for 300 s
  CHECK(static_cast<double>(100000 - s) / p.eta_s() == doctest::Approx(1.0).epsilon(0.01));
  // Updates with no elapsed time merge into the next timed one instead of dividing by zero.
  p.update(++s, {}, 0);
  p.update(++s, {}, 0);
  CHECK(std::isfinite(p.eta_s()));
  p.finish();
  std::fclose(f);
}

TEST_CASE("Progress, terminal mode: redrawn in place at most ~10 times a second, cut to the terminal width") {
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || ::grantpt(master) != 0 || ::unlockpt(master) != 0) {
    if (master >= 0) ::close(master);
    MESSAGE("no pseudo-terminal available; skipped");
    return;
  }
  struct winsize ws {};
  ws.ws_col = 60, ws.ws_row = 24;
  ::ioctl(master, TIOCSWINSZ, &ws);
  const int slave = ::open(::ptsname(master), O_RDWR | O_NOCTTY);
  REQUIRE(slave >= 0);
  std::FILE* tty = ::fdopen(slave, "w");
  REQUIRE(tty != nullptr);
  const char* old_term = std::getenv("TERM");
  const std::string saved = old_term ? old_term : "";
  ::setenv("TERM", "xterm", 1);

  double t = 0;
  {
    Progress p(1000, tty, false, [&] { return t; });
    CHECK(p.interactive());
    for (int s = 1; s <= 128; ++s) {  // 128 updates over 1 s: redraws at 1, 14, 27, ..., 118 (every 13)
      t += 1.0 / 128;
      p.update(s, {{"loss", 0.5}, {"knn", 12.5}}, 2048);
    }
    p.finish();
  }
  std::fclose(tty);
  if (old_term) ::setenv("TERM", saved.c_str(), 1);
  else ::unsetenv("TERM");

  std::string out;
  ::fcntl(master, F_SETFL, O_NONBLOCK);
  char buf[4096];
  for (ssize_t n; (n = ::read(master, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(master);

  // Each redraw starts with '\r' and a bar; the tty turns the final '\n' into "\r\n".
  int redraws = 0;
  size_t longest = 0;
  for (size_t pos = 0; (pos = out.find("\r[", pos)) != std::string::npos; ++pos) {
    ++redraws;
    const size_t end = out.find('\r', pos + 1);
    longest = std::max(longest, (end == std::string::npos ? out.size() : end) - pos - 1);
  }
  CHECK(redraws == 11);  // 10 timed redraws + the final one from finish() (step 128)
  CHECK(longest <= 59);  // cut to the 60-column terminal, leaving the last column free
  CHECK(out.find("128/1000") != std::string::npos);
  CHECK(out.size() >= 2);
  CHECK(out.substr(out.size() - 2) == "\r\n");
}
