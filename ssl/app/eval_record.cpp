#include "ssl/app/eval_record.h"

#include <ctime>
#include <fstream>
#include <sstream>

#include "engine/core/check.h"
#include "engine/io/atomic_file.h"

namespace selfsup::app {

namespace fs = std::filesystem;

namespace {

std::string today_utc() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  SELFSUP_CHECK(f.good(), p.string(), ": cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

nlohmann::json read_json_file(const fs::path& p) {
  const std::string text = slurp(p);
  try {
    return nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw Error(str_cat(p.string(), ": not valid JSON (", e.what(), ")"));
  }
}

void append_eval_record(const std::string& dir, EvalRecord r) {
  SELFSUP_CHECK(fs::is_directory(dir), "--record: ", dir, " is not a directory (record into a run directory or a ",
                "committed encoder's folder)");
  if (r.date.empty()) r.date = today_utc();
  nlohmann::json j = {{"protocol", r.protocol},       {"label_fraction", r.label_fraction},
                      {"label_seed", r.label_seed},   {"test_images", r.test_images},
                      {"test_top1", r.test_top1},     {"settings", r.settings},
                      {"date", r.date}};
  if (r.scratch_top1 >= 0) j["scratch_top1"] = r.scratch_top1;
  const fs::path path = fs::path(dir) / "evals.jsonl";
  std::string text = fs::exists(path) ? slurp(path) : std::string();
  if (!text.empty() && text.back() != '\n') text += '\n';
  text += j.dump() + "\n";
  atomic_write_file(path.string(), text.data(), text.size());
}

std::vector<EvalRecord> read_eval_records(const std::string& dir) {
  const fs::path path = fs::path(dir) / "evals.jsonl";
  std::vector<EvalRecord> out;
  if (!fs::exists(path)) return out;
  std::istringstream lines(slurp(path));
  int n = 0;
  for (std::string line; std::getline(lines, line);) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      const nlohmann::json j = nlohmann::json::parse(line);
      EvalRecord r;
      r.protocol = j.at("protocol").get<std::string>();
      r.label_fraction = j.at("label_fraction").get<double>();
      r.label_seed = j.value("label_seed", uint64_t{0});
      r.test_images = j.at("test_images").get<int64_t>();
      r.test_top1 = j.at("test_top1").get<double>();
      r.scratch_top1 = j.value("scratch_top1", -1.0);
      r.settings = j.value("settings", std::string());
      r.date = j.value("date", std::string());
      out.push_back(r);
    } catch (const std::exception& e) {
      throw Error(str_cat(path.string(), ":", n, ": not an evaluation record (", e.what(),
                          "); expected {\"protocol\", \"label_fraction\", \"test_images\", \"test_top1\", ...}"));
    }
  }
  return out;
}

}  // namespace selfsup::app
