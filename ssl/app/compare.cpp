// `selfsup compare DIR...`: one table of what each encoder is worth (linear probe, kNN, fine-tuning against
// scratch at each label fraction, training speed), in the terminal, as markdown and as a PNG bar chart. It
// reads what the evaluations recorded (DIR/evals.jsonl, written by `eval ... --record`) and a committed
// encoder's result.json; with --run-missing it runs the missing evaluations first and records them.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <sstream>

#include "engine/core/check.h"
#include "engine/io/atomic_file.h"
#include "ssl/app/args.h"
#include "ssl/app/commands.h"
#include "ssl/app/eval_record.h"
#include "ssl/trainer/plot.h"

namespace selfsup::app {

namespace {

namespace fs = std::filesystem;

const char* kCompareUsage =
    "usage: selfsup compare DIR... [--fractions 0.01,0.1,1] [--run-missing] [--out DIR] [--device D]\n"
    "\n"
    "One row per encoder DIR (a run directory or a committed encoder; a folder of them, such as\n"
    "models/pretrained, stands for every run directory in it): method,\n"
    "architecture, linear probe and kNN top-1, fine-tuned and from-scratch top-1 at each label fraction,\n"
    "training images/s and minutes. Numbers come from DIR/evals.jsonl (`selfsup eval linear|knn|finetune\n"
    "--checkpoint DIR --record`; the newest record over the most test images wins) and from a committed\n"
    "encoder's result.json (linear_probe_test_top1, knn200_test_top1, images_per_s). A missing number is '-'.\n"
    "  --fractions LIST   label fractions of the fine-tuning columns (default 0.01,0.1,1)\n"
    "  --run-missing      run every missing evaluation first (with its defaults, on the whole test split) and\n"
    "                     record it; fine-tuning with all labels takes tens of minutes on a 2-core CPU\n"
    "  --device D         for --run-missing fine-tuning: auto|cpu|cuda (default auto)\n"
    "  --out DIR          compare.md and compare.png go here (default runs/compare); fine-tuning run\n"
    "                     directories of --run-missing under DIR/finetune/\n";

struct Cell {
  double top1 = NAN, scratch = NAN;
  int64_t test_images = 0;
  std::string settings;
};

struct Row {
  std::string dir, name, method, arch;
  Cell linear, knn;
  std::vector<Cell> finetune;  // one per --fractions entry
  double images_per_s = NAN, minutes = NAN;
};

std::vector<double> parse_fractions(const std::string& list) {
  std::vector<double> out;
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');) {
    char* end = nullptr;
    const double f = std::strtod(item.c_str(), &end);
    SELFSUP_CHECK(end && *end == '\0' && !item.empty() && f > 0 && f <= 1, "compare: --fractions: '", item,
                  "' is not a fraction in (0, 1] (expected a list like 0.01,0.1,1)");
    out.push_back(f);
  }
  SELFSUP_CHECK(!out.empty(), "compare: --fractions is empty");
  return out;
}

// The newest record of `protocol` at `fraction` (records are appended, so the last one).
std::optional<EvalRecord> newest(const std::vector<EvalRecord>& records, const std::string& protocol, double fraction) {
  std::optional<EvalRecord> out;
  for (const EvalRecord& r : records)
    if (r.protocol == protocol && std::abs(r.label_fraction - fraction) < 1e-12) out = r;
  return out;
}

Cell to_cell(const std::optional<EvalRecord>& r) {
  Cell c;
  if (!r) return c;
  c.top1 = r->test_top1;
  c.scratch = r->scratch_top1 >= 0 ? r->scratch_top1 : NAN;
  c.test_images = r->test_images;
  c.settings = r->settings;
  return c;
}

double number_field(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : NAN;
}

Row read_row(const std::string& dir, const std::vector<double>& fractions) {
  SELFSUP_CHECK(fs::is_directory(dir), "compare: ", dir, " is not a directory (expected a run directory or a ",
                "committed encoder's folder)");
  const fs::path config = fs::path(dir) / "config.json";
  SELFSUP_CHECK(fs::is_regular_file(config), "compare: ", dir, " has no config.json, so it is not a run directory ",
                "(nor a folder of run directories)");
  const nlohmann::json cfg = read_json_file(config);
  Row row;
  row.dir = dir;
  row.name = fs::path(dir).lexically_normal().filename().string();
  if (row.name.empty()) row.name = fs::path(dir).lexically_normal().parent_path().filename().string();
  row.method = cfg.value("method", std::string("?"));
  row.arch = cfg.value("arch", std::string("?")) + " w" + std::to_string(cfg.value("width", 0));
  const std::vector<EvalRecord> records = read_eval_records(dir);
  row.linear = to_cell(newest(records, "linear", 1.0));
  row.knn = to_cell(newest(records, "knn", 1.0));
  for (double f : fractions) row.finetune.push_back(to_cell(newest(records, "finetune", f)));
  const fs::path result = fs::path(dir) / "result.json";
  if (fs::is_regular_file(result)) {
    const nlohmann::json r = read_json_file(result);
    if (std::isnan(row.linear.top1)) row.linear.top1 = number_field(r, "linear_probe_test_top1");
    if (std::isnan(row.knn.top1)) row.knn.top1 = number_field(r, "knn200_test_top1");
    row.images_per_s = number_field(r, "images_per_s");
  }
  // Training minutes from the run's own length and speed: steps x batch images at images_per_s.
  const double steps = cfg.contains("total_steps") && cfg["total_steps"].is_number() ? cfg["total_steps"].get<double>() : NAN;
  const double batch = cfg.contains("batch") && cfg["batch"].is_number() ? cfg["batch"].get<double>() : NAN;
  if (std::isfinite(row.images_per_s) && row.images_per_s > 0 && steps < 1e15)
    row.minutes = steps * batch / row.images_per_s / 60.0;
  return row;
}

// Runs what `row` lacks through the same commands a user would type, each with --record.
void run_missing(const Row& row, const std::vector<double>& fractions, const std::string& out, const std::string& device) {
  if (std::isnan(row.linear.top1)) {
    std::printf("\n== compare: %s: linear probe ==\n", row.name.c_str());
    cmd_eval({"linear", "--checkpoint", row.dir, "--record"});
  }
  if (std::isnan(row.knn.top1)) {
    std::printf("\n== compare: %s: kNN ==\n", row.name.c_str());
    cmd_eval({"knn", "--checkpoint", row.dir, "--record"});
  }
  for (size_t i = 0; i < fractions.size(); ++i) {
    if (!std::isnan(row.finetune[i].top1)) continue;
    char tag[64];
    std::snprintf(tag, sizeof tag, "%g", fractions[i]);
    std::string ft_dir = (fs::path(out) / "finetune" / (row.name + "-" + tag)).string();
    for (int n = 2; fs::exists(fs::path(ft_dir) / "result.json"); ++n)  // never overwrite an earlier run
      ft_dir = (fs::path(out) / "finetune" / (row.name + "-" + tag + "-" + std::to_string(n))).string();
    std::printf("\n== compare: %s: fine-tuning with %s of the labels ==\n", row.name.c_str(), tag);
    cmd_finetune({"--checkpoint", row.dir, "--label-fraction", tag, "--record", "--device", device, "--out", ft_dir});
  }
}

std::string pct(double v) {
  if (!std::isfinite(v)) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", 100.0 * v);
  return buf;
}

std::string fixed(double v, const char* fmt) {
  if (!std::isfinite(v)) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

std::string frac_label(double f) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g%%", 100.0 * f);
  return buf;
}

}  // namespace

int cmd_compare(const std::vector<std::string>& argv) {
  std::vector<std::string> dirs, options;
  for (size_t i = 0; i < argv.size(); ++i) {
    // Options take a value except the switches; everything else is a directory.
    if (argv[i].rfind("--", 0) == 0) {
      options.push_back(argv[i]);
      const bool takes_value = argv[i] != "--run-missing" && argv[i] != "--help" && argv[i].find('=') == std::string::npos;
      if (takes_value && i + 1 < argv.size()) options.push_back(argv[++i]);
    } else if (argv[i] == "-h") {
      options.push_back("--help");
    } else {
      dirs.push_back(argv[i]);
    }
  }
  Args a(options, "compare");
  if (a.help()) {
    std::printf("%s", kCompareUsage);
    return 0;
  }
  const std::vector<double> fractions = parse_fractions(a.str("fractions", "0.01,0.1,1"));
  const bool missing = a.flag("run-missing");
  const std::string out = a.str("out", "runs/compare"), device = a.str("device", "auto");
  a.finish();
  SELFSUP_CHECK(!dirs.empty(), "compare: give one or more run directories (e.g. models/pretrained/*)");

  // A folder of run directories (models/pretrained) stands for the run directories in it, in name order.
  std::vector<std::string> runs;
  for (const std::string& d : dirs) {
    std::vector<std::string> inside;
    if (fs::is_directory(d) && !fs::exists(fs::path(d) / "config.json"))
      for (const auto& e : fs::directory_iterator(d))
        if (e.is_directory() && fs::exists(e.path() / "config.json")) inside.push_back(e.path().string());
    std::sort(inside.begin(), inside.end());
    if (inside.empty()) inside.push_back(d);
    runs.insert(runs.end(), inside.begin(), inside.end());
  }
  std::vector<Row> rows;
  for (const std::string& d : runs) {
    Row row = read_row(d, fractions);
    if (missing) {
      run_missing(row, fractions, out, device);
      row = read_row(d, fractions);
    }
    rows.push_back(row);
  }

  // The table: header, then one row per encoder; the same cells in the terminal and in markdown.
  std::vector<std::string> header{"encoder", "method", "arch", "linear", "kNN"};
  for (double f : fractions) header.push_back("FT " + frac_label(f));
  for (double f : fractions) header.push_back("scratch " + frac_label(f));
  header.push_back("images/s");
  header.push_back("train min");
  std::vector<std::vector<std::string>> cells;
  for (const Row& r : rows) {
    std::vector<std::string> c{r.name, r.method, r.arch, pct(r.linear.top1), pct(r.knn.top1)};
    for (const Cell& f : r.finetune) c.push_back(pct(f.top1));
    for (const Cell& f : r.finetune) c.push_back(pct(f.scratch));
    c.push_back(fixed(r.images_per_s, "%.0f"));
    c.push_back(fixed(r.minutes, "%.1f"));
    cells.push_back(c);
  }
  std::vector<size_t> width(header.size());
  for (size_t k = 0; k < header.size(); ++k) {
    width[k] = header[k].size();
    for (const auto& c : cells) width[k] = std::max(width[k], c[k].size());
  }
  auto print_line = [&](const std::vector<std::string>& c) {
    for (size_t k = 0; k < c.size(); ++k) std::printf("%s%-*s", k ? "  " : "", static_cast<int>(width[k]), c[k].c_str());
    std::printf("\n");
  };
  std::printf("\n");
  print_line(header);
  for (const auto& c : cells) print_line(c);

  std::string md = "|";
  for (const std::string& h : header) md += " " + h + " |";
  md += "\n|";
  for (size_t k = 0; k < header.size(); ++k) md += "---|";
  md += "\n";
  for (const auto& c : cells) {
    md += "|";
    for (const std::string& v : c) md += " " + v + " |";
    md += "\n";
  }
  md += "\nTop-1 on the whole test split; FT = fine-tuned from the encoder, scratch = the same network and recipe from random "
        "initialisation, at the label fraction shown (class-balanced, label seed 0). Settings per record:\n";
  for (const Row& r : rows) {
    auto note = [&](const char* what, const Cell& c) {
      if (c.test_images > 0)
        md += "- " + r.name + " " + what + ": " + c.settings + ", " + std::to_string(c.test_images) + " test images\n";
    };
    note("linear", r.linear);
    note("kNN", r.knn);
    for (size_t i = 0; i < fractions.size(); ++i) note(("FT " + frac_label(fractions[i])).c_str(), r.finetune[i]);
  }
  fs::create_directories(out);
  const std::string md_path = (fs::path(out) / "compare.md").string();
  atomic_write_file(md_path, md.data(), md.size());

  std::vector<std::string> groups;
  for (const Row& r : rows) groups.push_back(r.name);
  const uint32_t colours[] = {0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0x7f7f7f};
  std::vector<trainer::BarSeries> bars{{"linear", {}, colours[0]}, {"kNN", {}, colours[1]}};
  const size_t nf = fractions.size();
  for (size_t i = 0; i < nf; ++i) bars.push_back({"FT " + frac_label(fractions[i]), {}, colours[(2 + i) % 8]});
  for (size_t i = 0; i < nf; ++i) bars.push_back({"scratch " + frac_label(fractions[i]), {}, colours[(2 + nf + i) % 8]});
  for (const Row& r : rows) {
    bars[0].values.push_back(100.0 * r.linear.top1);
    bars[1].values.push_back(100.0 * r.knn.top1);
    for (size_t i = 0; i < nf; ++i) {
      bars[2 + i].values.push_back(100.0 * r.finetune[i].top1);
      bars[2 + nf + i].values.push_back(100.0 * r.finetune[i].scratch);
    }
  }
  const std::string png_path = (fs::path(out) / "compare.png").string();
  trainer::write_bar_chart_png(png_path, "test top-1 %", groups, bars, std::max(900, 300 * static_cast<int>(rows.size())));
  std::printf("\n-> %s, %s\n", md_path.c_str(), png_path.c_str());
  return 0;
}

}  // namespace selfsup::app
