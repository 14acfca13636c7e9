// Evaluation results kept beside the encoder they measure. `--record` makes `eval linear|knn|finetune` append
// one JSON line to <DIR>/evals.jsonl (DIR: the run directory or committed encoder given as --checkpoint);
// `selfsup compare` reads them, together with the result.json a committed encoder carries.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace selfsup::app {

struct EvalRecord {
  std::string protocol;         // linear | knn | finetune
  double label_fraction = 1.0;  // of the training labels (class-balanced subset below 1)
  uint64_t label_seed = 0;
  int64_t test_images = 0;      // how many test images the number is over
  double test_top1 = -1;        // a fraction; fine-tuning: the fine-tuned network's
  double scratch_top1 = -1;     // fine-tuning's from-scratch baseline (-1: not run)
  std::string settings;         // the protocol's options, e.g. "k=200 T=0.07" or "epochs=30 lr=0.1 wd=0.0001"
  std::string date;             // YYYY-MM-DD (UTC) of the measurement
};

// Appends `r` (dated today when r.date is empty) to dir/evals.jsonl, rewriting the file atomically so that
// the lines already there survive any failure.
void append_eval_record(const std::string& dir, EvalRecord r);
// dir/evals.jsonl's records in file order; none when the file does not exist. A malformed line is an error
// naming file and line.
std::vector<EvalRecord> read_eval_records(const std::string& dir);

// A JSON file, parsed; an error naming the file when it cannot be opened or parsed.
nlohmann::json read_json_file(const std::filesystem::path& p);

}  // namespace selfsup::app
